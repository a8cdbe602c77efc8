"""Tensor methods of PyTorch's eager face beyond the arithmetic core (a mixin of Tensor).

Everything here is built from registry primitives, so gradients come from the registry's rules;
the few operations no primitive covers (cumsum, tril, repeat, ...) record a `ComposedNode` whose
backward is written with these same methods, so it works under create_graph too.
"""
import collections

import numpy as np

from . import dtypes
from . import primitives as P
from .autograd import graph
from .autograd.grad_mode import is_grad_enabled


def _tensor_cls():
    return graph.Tensor


def _dim(dim, ndim):
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n


def _data(x):
    return x._data if isinstance(x, graph.Tensor) else np.asarray(x)


def _wrap(data):
    return graph.Tensor._wrap(np.asarray(data))


def shown_as(out, name, *inputs):
    """out, its last node renamed to PyTorch's grad_fn name for the fused operation it ends
    (only a node made for out: never an input's)."""
    node = getattr(out, "grad_fn", None)
    if (all(out is not x for x in inputs) and isinstance(node, graph.PrimitiveNode)
            and type(node).__slots__ == ()):
        node.__class__ = graph.node_class(name)
    return out


def _rebuild_tensor(data, requires_grad):
    return graph.Tensor._wrap(data, requires_grad)


def _zero_grad_op(name, np_fn):
    """Rounding-like methods: PyTorch records them with a zero gradient (floor(x) requires grad
    when x does); the registry's primitive has no rule, so the node is composed here."""
    def method(self, *args):
        return composed(name, (self,), np_fn(self._data, *args),
                        lambda g: (g * 0,))
    return method


class ComposedNode(graph.Node):
    """grad_fn of an operation outside the registry: `backward(g)` returns one cotangent per
    input (Tensors, so a create_graph backward records its own graph), or None."""
    __slots__ = ("backward", "n_inputs", "freed")

    def input_grads(self, g, create_graph):
        if self.freed:
            raise RuntimeError(graph._FREED_MESSAGE)
        Tensor = graph.Tensor
        g = g if isinstance(g, Tensor) else Tensor._wrap(g)
        grads = self.backward(g)
        out = []
        for (nxt, _), gx in zip(self.next_functions, grads):
            if nxt is None or gx is None:
                out.append(None)
            else:
                out.append(gx if create_graph else _data(gx))
        return out


_composed_classes = {}


def composed(name, inputs, out, backward):
    """A Tensor holding `out`, recorded as `name` (PyTorch's grad_fn name) over `inputs`."""
    Tensor = graph.Tensor
    needs = [isinstance(x, Tensor) and x.requires_grad for x in inputs]
    if not (any(needs) and is_grad_enabled() and np.asarray(out).dtype.kind == "f"):
        return Tensor._wrap(np.asarray(out))
    cls = _composed_classes.get(name)
    if cls is None:
        cls = _composed_classes[name] = type(name, (ComposedNode,), {"__slots__": ()})
    node = object.__new__(cls)
    node._seq = next(graph._sequence)
    node.next_functions = tuple((graph.node_of(x), 0) if need else (None, 0)
                                for x, need in zip(inputs, needs))
    node._pre_hooks = None
    node._retained = None
    node.freed = False
    node.backward = backward
    node.n_inputs = len(inputs)
    return Tensor._from_node(np.asarray(out), node)


def return_type(name, fields):
    """A named tuple printed as PyTorch's torch.return_types.NAME(...)."""
    base = collections.namedtuple(name, fields)

    def __repr__(self):
        body = ",\n".join(f"{k}={v!r}" for k, v in zip(self._fields, self))
        return f"torch.return_types.{name}(\n{body})"
    def __reduce__(self):
        return _rebuild_return_type, (name, tuple(self._fields), tuple(self))
    key = (name, tuple(fields))
    if key not in _return_types:
        _return_types[key] = type(name, (base,), {"__slots__": (), "__repr__": __repr__,
                                                  "__str__": __repr__, "__reduce__": __reduce__})
    return _return_types[key]


_return_types = {}


def _rebuild_return_type(name, fields, values):
    return return_type(name, fields)(*values)


_SortResult = return_type("sort", ["values", "indices"])
_TopkResult = return_type("topk", ["values", "indices"])
_KthvalueResult = return_type("kthvalue", ["values", "indices"])
_MedianResult = return_type("median", ["values", "indices"])
_CummaxResult = return_type("cummax", ["values", "indices"])
_CumminResult = return_type("cummin", ["values", "indices"])
_AminmaxResult = return_type("aminmax", ["min", "max"])
_SvdResult = return_type("svd", ["U", "S", "V"])


def _unary_in_place(prim):
    def method(self):
        return self._inplace(prim, (self,), {})
    return method


def _lifted(np_fn, name):
    """An elementwise NumPy function with no gradient (bitwise ops, integer results)."""
    def method(self, *args, **kwargs):
        return _wrap(np_fn(self._data, *(_data(a) for a in args), **kwargs))
    method.__name__ = name
    return method


def legacy_new(np_dtype, args, kwargs):
    """torch.Tensor(...) / torch.FloatTensor(...): from data (a list, an array, a Tensor) or, given
    sizes, an uninitialised tensor of that shape (zeros here)."""
    device = kwargs.pop("device", None)
    if kwargs:
        raise TypeError(f"new() received an invalid combination of arguments: {sorted(kwargs)}")
    from ._device import check_device
    check_device(device)
    if len(args) == 1 and not isinstance(args[0], (int, np.integer)):
        data = args[0]
        array = np.array(_data(data) if isinstance(data, graph.Tensor) else data, np_dtype)
        return graph.Tensor._wrap(array)
    if not all(isinstance(n, (int, np.integer)) for n in args):
        raise TypeError("new(): expected sizes (ints) or one sequence of data, got "
                        f"({', '.join(type(a).__name__ for a in args)})")
    shape = tuple(int(n) for n in args) if args else (0,)
    return graph.Tensor._wrap(np.zeros(shape, np_dtype))


class _TensorType(type):
    # classes print under PyTorch's names: <class 'torch.Tensor'>
    def __repr__(cls):
        if cls is graph.Tensor:
            return "<class 'torch.Tensor'>"
        module = cls.__module__
        if module.startswith("tapegrad."):
            module = "torch." + module[len("tapegrad."):]
        return f"<class '{module}.{cls.__qualname__}'>"


class TensorMethods(metaclass=_TensorType):
    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        # torch.Tensor(data) / torch.Tensor(2, 3): the legacy constructor, of the default dtype
        from .functions import _DEFAULT_FLOAT
        return legacy_new(_DEFAULT_FLOAT[0], args, kwargs)

    # ------------------------------------------------------------------ format
    def __format__(self, spec):
        # PyTorch formats a 0-d tensor as its number (f"{loss:>7f}"); others only with no spec
        if self.ndim == 0:
            return self.item().__format__(spec)
        if spec:
            raise TypeError("unsupported format string passed to Tensor.__format__")
        return repr(self)

    # ------------------------------------------------------------------ matrix products
    def mm(self, mat2):
        if self.ndim != 2:
            raise RuntimeError("self must be a matrix")
        if mat2.ndim != 2:
            raise RuntimeError("mat2 must be a matrix")
        return self @ mat2

    def bmm(self, mat2):
        if self.ndim != 3:
            raise RuntimeError("batch1 must be a 3D tensor")
        if mat2.ndim != 3:
            raise RuntimeError("batch2 must be a 3D tensor")
        return self @ mat2

    def mv(self, vec):
        if self.ndim != 2 or vec.ndim != 1:
            raise RuntimeError(f"vector + matrix @ vector expected, got {self.ndim}, {vec.ndim}")
        return self @ vec

    def dot(self, other):
        if self.ndim != 1 or other.ndim != 1:
            raise RuntimeError(f"1D tensors expected, but got {self.ndim}D and {other.ndim}D "
                               "tensors")
        return self @ other

    def outer(self, vec2):
        return self.reshape(-1, 1) * vec2.reshape(1, -1)

    ger = outer

    def addmm(self, mat1, mat2, *, beta=1, alpha=1):
        prod = mat1.mm(mat2)
        prod = prod if alpha == 1 else prod * alpha
        return prod + (self if beta == 1 else self * beta)

    def cross(self, other, dim=None):
        if dim is None:   # torch.cross's default: the first dimension of size 3
            dim = next(i for i, n in enumerate(self.shape) if n == 3)
        dim = _dim(dim, self.ndim)
        a = [self.select(dim, i) for i in range(3)]
        b = [other.select(dim, i) for i in range(3)]
        parts = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
        from .functions import stack
        return stack(parts, dim)

    def trace(self):
        if self.ndim != 2:
            raise RuntimeError("trace: expected a matrix")
        return self.diagonal().sum()

    def diagonal(self, offset=0, dim1=0, dim2=1):
        d1, d2 = _dim(dim1, self.ndim), _dim(dim2, self.ndim)
        n1, n2 = self.shape[d1], self.shape[d2]
        i = np.arange(max(0, -offset), min(n1, n2 - offset))
        index = [slice(None)] * self.ndim
        index[d1], index[d2] = i, i + offset
        out = self[tuple(index)]
        # NumPy moves the advanced axis first when d1, d2 are apart; PyTorch puts it last
        first = 0 if d2 - d1 != 1 and d1 != d2 else d1
        return out.movedim(first, -1)

    def diag(self, diagonal=0):
        if self.ndim == 1:
            n = self.shape[0] + abs(diagonal)
            index = np.arange(self.shape[0])
            rows, cols = (index, index + diagonal) if diagonal >= 0 else (index - diagonal, index)
            mask = np.zeros((n, n), bool)
            mask[rows, cols] = True
            placement = np.zeros((n, n), np.int64)
            placement[rows, cols] = index
            return P.where(mask, self[placement], 0)
        return self.diagonal(diagonal)

    # ------------------------------------------------------------------ shapes
    def select(self, dim, index):
        dim = _dim(dim, self.ndim)
        return self[(slice(None),) * dim + (index,)]

    def narrow(self, dim, start, length):
        dim = _dim(dim, self.ndim)
        return self[(slice(None),) * dim + (slice(start, start + length),)]

    def movedim(self, source, destination):
        order = list(range(self.ndim))
        s, d = _dim(source, self.ndim), _dim(destination, self.ndim)
        order.insert(d, order.pop(s))
        return self.permute(*order)

    moveaxis = movedim

    def swapaxes(self, axis0, axis1):
        return self.transpose(axis0, axis1)

    swapdims = swapaxes

    def flip(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        index = [slice(None)] * self.ndim
        for d in dims:
            index[_dim(d, self.ndim)] = slice(None, None, -1)
        return self[tuple(index)]

    def fliplr(self):
        return self.flip(1)

    def flipud(self):
        return self.flip(0)

    def roll(self, shifts, dims=None):
        if dims is None:
            return self.flatten().roll(shifts, 0).reshape(self.shape)
        shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        out = self
        for s, d in zip(shifts, dims):
            d = _dim(d, self.ndim)
            n = self.shape[d]
            index = [slice(None)] * self.ndim
            index[d] = (np.arange(n) - s) % n
            out = out[tuple(index)]
        return out

    def repeat(self, *sizes):
        sizes = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) \
            else sizes
        if len(sizes) < self.ndim:
            raise RuntimeError("Number of dimensions of repeat dims can not be smaller than "
                               "number of dimensions of tensor")
        x = self.reshape((1,) * (len(sizes) - self.ndim) + tuple(self.shape))
        # (a, b) repeated (r, s): expand to (r, a, s, b), then merge each pair
        shape = []
        for r, n in zip(sizes, x.shape):
            shape += [r, n]
        inter = x.reshape(tuple(v for n in x.shape for v in (1, n))).expand(*shape)
        return inter.reshape(tuple(r * n for r, n in zip(sizes, x.shape)))

    def tile(self, *dims):
        dims = tuple(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        dims = (1,) * (self.ndim - len(dims)) + dims
        return self.repeat(*dims)

    def repeat_interleave(self, repeats, dim=None):
        x = self.flatten() if dim is None else self
        dim = 0 if dim is None else _dim(dim, x.ndim)
        counts = _data(repeats)
        index = np.repeat(np.arange(x.shape[dim]), counts)
        return x[(slice(None),) * dim + (index,)]

    def unflatten(self, dim, sizes):
        dim = _dim(dim, self.ndim)
        shape = tuple(self.shape)
        return self.reshape(shape[:dim] + tuple(sizes) + shape[dim + 1:])

    def ravel(self):
        return self.reshape(-1)

    def type_as(self, other):
        return self.to(other.dtype)

    def unsqueeze_(self, dim):
        return self._reshape_(self.unsqueeze(dim))

    def squeeze_(self, dim=None):
        return self._reshape_(self.squeeze() if dim is None else self.squeeze(dim))

    def t_(self):
        return self._reshape_(self.t())

    def transpose_(self, dim0, dim1):
        return self._reshape_(self.transpose(dim0, dim1))

    def _reshape_(self, new):
        # an in-place change of the tensor's view of its memory (the memory is the same)
        if self.requires_grad and self.is_leaf and is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                               "operation.")
        self._data = new._data
        if new.grad_fn is not None:
            self.grad_fn = new.grad_fn
        return self

    # ------------------------------------------------------------------ elementwise
    floor = _zero_grad_op("FloorBackward0", np.floor)
    ceil = _zero_grad_op("CeilBackward0", np.ceil)
    trunc = _zero_grad_op("TruncBackward0", np.trunc)
    _round = _zero_grad_op("RoundBackward0", np.round)
    _round_decimals = _zero_grad_op("RoundBackward1", np.round)

    def round(self, decimals=0):
        return self._round_decimals(decimals) if decimals else self._round()

    def frac(self):
        return self - self.trunc()

    def clamp_min(self, min):
        return self.clamp(min=min)

    def clamp_max(self, max):
        return self.clamp(max=max)

    def lerp(self, end, weight):
        return self + weight * (end - self)

    def isnan(self):
        return P.isnan(self)

    def isinf(self):
        return P.isinf(self)

    def isfinite(self):
        return P.isfinite(self)

    def nan_to_num(self, nan=0.0, posinf=None, neginf=None):
        big = np.finfo(self.np_dtype).max if self.is_floating_point() else 0
        out = P.where(P.isnan(self), nan, self)
        out = P.where(out == np.inf, big if posinf is None else posinf, out)
        return P.where(out == -np.inf, -big if neginf is None else neginf, out)

    def logical_and(self, other):
        return P.logical_and(self, other)

    def logical_or(self, other):
        return P.logical_or(self, other)

    def logical_not(self):
        return P.logical_not(self)

    def logical_xor(self, other):
        return P.ne(P.logical_not(P.logical_not(self)), P.logical_not(P.logical_not(other)))

    bitwise_and = _lifted(np.bitwise_and, "bitwise_and")
    bitwise_or = _lifted(np.bitwise_or, "bitwise_or")
    bitwise_xor = _lifted(np.bitwise_xor, "bitwise_xor")
    bitwise_not = _lifted(np.invert, "bitwise_not")
    __xor__ = bitwise_xor

    exp_, log_, sin_, cos_, tan_, tanh_, sqrt_ = map(
        _unary_in_place, (P.exp, P.log, P.sin, P.cos, P.tan, P.tanh, P.sqrt))
    log1p_, expm1_ = map(_unary_in_place, (P.log1p, P.expm1))

    # rounding in place keeps the tensor in the graph, with a zero gradient, as in PyTorch
    def floor_(self):
        return self.copy_(self.floor())

    def ceil_(self):
        return self.copy_(self.ceil())

    def trunc_(self):
        return self.copy_(self.trunc())

    def round_(self, decimals=0):
        return self.copy_(self.round(decimals))

    def __reduce_ex__(self, protocol):
        # data and requires_grad, as PyTorch pickles a tensor (never its graph, nor a view's
        # link to its base)
        return _rebuild_tensor, (np.array(self._data), self.requires_grad)

    def masked_fill(self, mask, value):
        return P.where(mask, value, self)

    def masked_fill_(self, mask, value):
        return self.copy_(self.masked_fill(mask, value))

    def masked_select(self, mask):
        mask = np.broadcast_to(_data(mask), self.shape)
        return self[mask]

    # ------------------------------------------------------------------ indexing
    def gather(self, dim, index):
        # advanced indexing, whose rule adds up repeated indices (take_along_axis's assumes a
        # permutation)
        dim = _dim(dim, self.ndim)
        index = _data(index)
        grid = np.indices(index.shape, sparse=True)
        where = tuple(index if d == dim else grid[d] for d in range(self.ndim))
        return shown_as(self[where], "GatherBackward0", self)

    def index_select(self, dim, index):
        return self[(slice(None),) * _dim(dim, self.ndim) + (_data(index),)]

    def scatter(self, dim, index, src=None, value=None, reduce=None):
        dim = _dim(dim, self.ndim)
        index = _data(index)
        if src is None:
            src = value
        if reduce not in (None, "add", "sum"):
            raise NotImplementedError(f"scatter: reduce={reduce!r} is not supported")
        full = np.indices(index.shape, sparse=True)
        where = tuple(index if d == dim else full[d] for d in range(self.ndim))
        if not isinstance(src, graph.Tensor):
            src = np.broadcast_to(np.asarray(src, self.np_dtype), index.shape)
        else:
            src = src[tuple(slice(0, n) for n in index.shape)]
        if reduce is None:
            return P.setitem(self, src, index=where)
        return self.index_put(where, src, accumulate=True)

    def scatter_(self, dim, index, src=None, value=None, reduce=None):
        return self.copy_(self.scatter(dim, index, src, value, reduce))

    def scatter_add(self, dim, index, src):
        return self.scatter(dim, index, src, reduce="add")

    def scatter_add_(self, dim, index, src):
        return self.copy_(self.scatter_add(dim, index, src))

    def index_put(self, indices, values, accumulate=False):
        indices = tuple(_data(i) if isinstance(i, graph.Tensor) else i for i in indices)
        if accumulate:
            return P.index_add(self, values, index=indices)
        return P.setitem(self, values, index=indices)

    def index_put_(self, indices, values, accumulate=False):
        return self.copy_(self.index_put(indices, values, accumulate))

    def index_add(self, dim, index, source, *, alpha=1):
        where = (slice(None),) * _dim(dim, self.ndim) + (_data(index),)
        return P.index_add(self, source if alpha == 1 else source * alpha, index=where)

    def nonzero(self, *, as_tuple=False):
        idx = np.nonzero(self._data)
        if as_tuple:
            return tuple(_wrap(i) for i in idx)
        return _wrap(np.stack(idx, axis=1) if idx else np.zeros((0, 0), np.int64))

    def argwhere(self):
        return self.nonzero()

    def count_nonzero(self, dim=None):
        axis = None if dim is None else _dim(dim, self.ndim)
        return _wrap(np.count_nonzero(self._data, axis=axis))

    # ------------------------------------------------------------------ sorting
    def sort(self, dim=-1, descending=False, stable=False):
        dim = _dim(dim, self.ndim)
        key = -self._data if descending and self._data.dtype.kind != "b" else self._data
        order = np.argsort(key, axis=dim, kind="stable")
        if descending and self._data.dtype.kind == "b":
            order = np.flip(order, dim)
        return _SortResult(self.gather(dim, order), _wrap(order))

    def argsort(self, dim=-1, descending=False, stable=False):
        return self.sort(dim, descending, stable).indices

    def msort(self):
        return self.sort(0).values

    def topk(self, k, dim=-1, largest=True, sorted=True):
        dim = _dim(dim, self.ndim)
        values, indices = self.sort(dim, descending=largest)
        return _TopkResult(values.narrow(dim, 0, k), indices.narrow(dim, 0, k))

    def kthvalue(self, k, dim=-1, keepdim=False):
        dim = _dim(dim, self.ndim)
        values, indices = self.sort(dim)
        v, i = values.select(dim, k - 1), indices.select(dim, k - 1)
        if keepdim:
            v, i = v.unsqueeze(dim), i.unsqueeze(dim)
        return _KthvalueResult(v, i)

    def median(self, dim=None, keepdim=False):
        if dim is None:
            flat = self.flatten()
            return flat.sort().values[(flat.numel() - 1) // 2]
        dim = _dim(dim, self.ndim)
        return _MedianResult(*self.kthvalue((self.shape[dim] + 1) // 2, dim, keepdim))

    def unique(self, sorted=True, return_inverse=False, return_counts=False, dim=None):
        values, inverse, counts = np.unique(self._data, return_inverse=True, return_counts=True,
                                            axis=dim)
        out = [_wrap(values)]
        if return_inverse:
            out.append(_wrap(inverse.reshape(self.shape if dim is None else -1)))
        if return_counts:
            out.append(_wrap(counts))
        return out[0] if len(out) == 1 else tuple(out)

    # ------------------------------------------------------------------ scans
    def cumsum(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        dim = _dim(dim, x.ndim)
        out = np.cumsum(x._data, axis=dim, dtype=x.np_dtype)

        def backward(g):
            return (g.flip(dim).cumsum(dim).flip(dim),)
        return composed("CumsumBackward0", (x,), out, backward)

    def cumprod(self, dim, dtype=None):
        x = self if dtype is None else self.to(dtype)
        dim = _dim(dim, x.ndim)
        out = np.cumprod(x._data, axis=dim, dtype=x.np_dtype)

        def backward(g):
            # sum_{j >= i} g_j * prod_{k <= j, k != i} x_k, by products of the other elements
            n = x.shape[dim]
            parts = []
            for i in range(n):
                others = x.index_fill(dim, i, 1).cumprod(dim)
                parts.append((g * others).narrow(dim, i, n - i).sum(dim, keepdim=True))
            from .functions import cat
            return (cat(parts, dim),)
        return composed("CumprodBackward0", (x,), out, backward)

    def index_fill(self, dim, index, value):
        mask = np.zeros(self.shape[_dim(dim, self.ndim)], bool)
        mask[_data(index)] = True
        shape = [1] * self.ndim
        shape[_dim(dim, self.ndim)] = -1
        return P.where(mask.reshape(shape), value, self)

    def cummax(self, dim):
        return _CummaxResult(*self._cum_extremum(dim, np.maximum))

    def cummin(self, dim):
        return _CumminResult(*self._cum_extremum(dim, np.minimum))

    def _cum_extremum(self, dim, op):
        dim = _dim(dim, self.ndim)
        data = np.moveaxis(self._data, dim, -1)
        best = op.accumulate(data, axis=-1)
        pos = np.arange(data.shape[-1])
        hit = np.where(data == best, pos, -1)
        idx = np.maximum.accumulate(hit, axis=-1)
        indices = np.moveaxis(idx, -1, dim)
        return self.gather(dim, indices), _wrap(indices)

    def logcumsumexp(self, dim):
        dim = _dim(dim, self.ndim)
        top = self.detach().amax(dim, keepdim=True)
        return (self - top).exp().cumsum(dim).log() + top

    def diff(self, n=1, dim=-1, prepend=None, append=None):
        from .functions import cat
        dim = _dim(dim, self.ndim)
        x = self
        if prepend is not None or append is not None:
            x = cat([p for p in (prepend, x, append) if p is not None], dim)
        for _ in range(n):
            m = x.shape[dim]
            x = x.narrow(dim, 1, m - 1) - x.narrow(dim, 0, m - 1)
        return x

    # ------------------------------------------------------------------ triangles
    def tril(self, diagonal=0):
        return self._triangle(np.tril, diagonal, "TrilBackward0")

    def triu(self, diagonal=0):
        return self._triangle(np.triu, diagonal, "TriuBackward0")

    def _triangle(self, np_fn, diagonal, name):
        if self.ndim < 2:
            raise RuntimeError(f"{name[:4].lower()}: input tensor must have at least 2 dimensions")
        keep = np_fn(np.ones(self.shape[-2:], bool), diagonal)
        return composed(name, (self,), np.where(keep, self._data, 0).astype(self.np_dtype),
                        lambda g: (P.where(keep, g, 0),))

    def tril_(self, diagonal=0):
        return self.copy_(self.tril(diagonal))

    def triu_(self, diagonal=0):
        return self.copy_(self.triu(diagonal))

    # ------------------------------------------------------------------ reductions
    def aminmax(self, *, dim=None, keepdim=False):
        if dim is None:
            return _AminmaxResult(self.amin(), self.amax())
        return _AminmaxResult(self.amin(dim, keepdim), self.amax(dim, keepdim))

    def nansum(self, dim=None, keepdim=False):
        return P.where(P.isnan(self), 0, self).sum(dim, keepdim)

    def nanmean(self, dim=None, keepdim=False):
        valid = P.logical_not(P.isnan(self))
        return self.nansum(dim, keepdim) / _wrap(valid._data.astype(self.np_dtype)).sum(dim,
                                                                                         keepdim)

    def count(self):
        return self.numel()

    # ------------------------------------------------------------------ more of torch.Tensor
    def addcdiv(self, tensor1, tensor2, *, value=1):
        return self + value * (tensor1 / tensor2)

    def addcmul(self, tensor1, tensor2, *, value=1):
        return self + value * (tensor1 * tensor2)

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
        prod = batch1.bmm(batch2)
        return (self if beta == 1 else self * beta) + (prod if alpha == 1 else prod * alpha)

    def allclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return bool(np.allclose(self._data, _data(other), rtol, atol, equal_nan))

    def isclose(self, other, rtol=1e-05, atol=1e-08, equal_nan=False):
        return _wrap(np.isclose(self._data, _data(other), rtol, atol, equal_nan))

    def equal(self, other):
        return self.shape == other.shape and bool(np.array_equal(self._data, _data(other)))

    def deg2rad(self):
        return self * (np.pi / 180)

    def rad2deg(self):
        return self * (180 / np.pi)

    def det(self):
        return P.det(self)

    def inverse(self):
        return P.inv(self)

    def logdet(self):
        from .functions import logdet
        return logdet(self)

    def slogdet(self):
        from .functions import slogdet
        return slogdet(self)

    def pinverse(self, rcond=1e-15):
        return P.pinv(self, rcond=float(rcond))

    def svd(self, some=True, compute_uv=True):
        from .functions import svd
        return svd(self, some, compute_uv)

    def matrix_power(self, n):
        if n < 0:
            return self.inverse().matrix_power(-n)
        from .functions import eye
        out = eye(self.shape[-1], dtype=self.dtype).expand(*self.shape) if n == 0 else self
        for _ in range(n - 1):
            out = out @ self
        return out

    def diag_embed(self, offset=0, dim1=-2, dim2=-1):
        if offset or (dim1, dim2) != (-2, -1):
            raise NotImplementedError("diag_embed: only offset=0, dim1=-2, dim2=-1")
        n = self.shape[-1]
        return self.unsqueeze(-1) * _wrap(np.eye(n, dtype=self.np_dtype))

    def fill_diagonal_(self, fill_value, wrap=False):
        mask = np.zeros(self.shape, bool)
        np.fill_diagonal(mask, True, wrap=wrap)
        return self.copy_(P.where(mask, fill_value, self))

    def dist(self, other, p=2):
        diff = self - other
        if p in (1, 2, np.inf):
            return diff.norm(p)
        if p == 0:
            return _wrap(np.asarray(np.count_nonzero(diff._data), self.np_dtype))
        return (diff.abs() ** p).sum() ** (1.0 / p)

    def inner(self, other):
        from .functions import tensordot
        if self.ndim == 0 or other.ndim == 0:
            return self * other
        return tensordot(self, other, ([-1], [-1]))

    def vdot(self, other):
        return self.dot(other)

    def kron(self, other):
        a, b = self, other
        nd = max(a.ndim, b.ndim)
        a = a.reshape((1,) * (nd - a.ndim) + tuple(a.shape))
        b = b.reshape((1,) * (nd - b.ndim) + tuple(b.shape))
        inter = a.reshape(tuple(v for n in a.shape for v in (n, 1))) * \
            b.reshape(tuple(v for n in b.shape for v in (1, n)))
        return inter.reshape(tuple(m * n for m, n in zip(a.shape, b.shape)))

    def hardshrink(self, lambd=0.5):
        return P.where(self.abs() > lambd, self, 0)

    def logit(self, eps=None):
        x = self if eps is None else self.clamp(eps, 1 - eps)
        return (x / (1 - x)).log()

    def xlogy(self, other):
        return P.where(self == 0, 0, self * (other if isinstance(other, graph.Tensor)
                                            else _wrap(np.asarray(other, self.np_dtype))).log())

    def sinc(self):
        scaled = self * np.pi
        safe = P.where(self == 0, 1.0, scaled)
        return P.where(self == 0, 1.0, safe.sin() / safe)

    def sgn(self):
        return self.sign()

    def signbit(self):
        return _wrap(np.signbit(self._data))

    def negative(self):
        return -self

    def true_divide(self, other):
        return self / other

    def take(self, index):
        return self.flatten()[_data(index)]

    def take_along_dim(self, indices, dim=None):
        if dim is None:
            return self.flatten().gather(0, _data(indices).reshape(-1))
        return self.gather(dim, indices)

    def index_copy(self, dim, index, source):
        where = (slice(None),) * _dim(dim, self.ndim) + (_data(index),)
        return P.setitem(self, source, index=where)

    def tensor_split(self, indices_or_sections, dim=0):
        dim = _dim(dim, self.ndim)
        n = self.shape[dim]
        if isinstance(indices_or_sections, int):
            k = indices_or_sections
            sizes = [n // k + 1] * (n % k) + [n // k] * (k - n % k)
            bounds = list(np.cumsum([0] + sizes))
        else:
            bounds = [0] + [min(int(i), n) for i in indices_or_sections] + [n]
        return tuple(self.narrow(dim, a, max(b - a, 0)) for a, b in zip(bounds, bounds[1:]))

    def unfold(self, dimension, size, step):
        dim = _dim(dimension, self.ndim)
        starts = np.arange(0, self.shape[dim] - size + 1, step)
        windows = starts[:, None] + np.arange(size)
        out = self[(slice(None),) * dim + (windows,)]   # (..., count, size, ...)
        return out.movedim(dim + 1, -1)

    def rot90(self, k=1, dims=(0, 1)):
        a, b = dims
        k %= 4
        if k == 1:
            return self.flip(b).transpose(a, b)
        if k == 2:
            return self.flip(a, b)
        if k == 3:
            return self.transpose(a, b).flip(b)
        return self

    def quantile(self, q, dim=None, keepdim=False, *, interpolation="linear"):
        if interpolation != "linear":
            raise NotImplementedError("quantile: tapegrad interpolates linearly only")
        x = self.flatten() if dim is None else self
        d = 0 if dim is None else _dim(dim, self.ndim)
        values = x.sort(d).values
        n = x.shape[d]
        qs = np.atleast_1d(_data(q)).astype(np.float64)
        if ((qs < 0) | (qs > 1)).any():
            raise RuntimeError("quantile() q values must be in the range [0, 1]")
        parts = []
        for one in qs:
            pos = one * (n - 1)
            lo, hi = int(np.floor(pos)), int(np.ceil(pos))
            low, high = values.select(d, lo), values.select(d, hi)
            part = low + (high - low) * float(pos - lo)
            parts.append(part.unsqueeze(d) if keepdim else part)
        if np.ndim(_data(q)) == 0:
            return parts[0]
        from .functions import stack
        return stack(parts, 0)

    def nanmedian(self, dim=None, keepdim=False):
        if not np.isnan(self._data).any():
            return self.median(dim, keepdim)
        raise NotImplementedError("nanmedian: tensors holding NaN are not supported")

    def bincount(self, weights=None, minlength=0):
        return _wrap(np.bincount(self._data, None if weights is None else _data(weights),
                                 minlength))

    def histc(self, bins=100, min=0, max=0):
        lo, hi = (float(self._data.min()), float(self._data.max())) if min == max == 0 \
            else (min, max)
        counts, _ = np.histogram(self._data, bins, (lo, hi))
        return _wrap(counts.astype(self.np_dtype))

    def unique_consecutive(self, return_inverse=False, return_counts=False, dim=None):
        flat = self._data.reshape(-1)
        keep = np.ones(flat.shape, bool)
        keep[1:] = flat[1:] != flat[:-1]
        out = [_wrap(flat[keep])]
        if return_inverse:
            out.append(_wrap(np.cumsum(keep).reshape(self.shape) - 1))
        if return_counts:
            out.append(_wrap(np.diff(np.append(np.nonzero(keep)[0], flat.size))))
        return out[0] if len(out) == 1 else tuple(out)

    def multinomial(self, num_samples, replacement=False, *, generator=None):
        from .functions import _generator
        rows = np.atleast_2d(self._data).astype(np.float64)
        draws = [_generator().choice(rows.shape[1], num_samples, replace=replacement,
                                     p=r / r.sum()) for r in rows]
        out = np.array(draws, np.int64)
        return _wrap(out if self.ndim == 2 else out[0])

    def _fill_random(self, sample):
        return self._inplace(P.setitem, (self, sample.astype(self.np_dtype)),
                             {"index": (Ellipsis,)})

    def bernoulli_(self, p=0.5, *, generator=None):
        from .functions import _generator
        return self._fill_random(_generator().random(self.shape) < _data(p))

    def exponential_(self, lambd=1.0, *, generator=None):
        from .functions import _generator
        return self._fill_random(_generator().exponential(1.0 / lambd, self.shape))

    def geometric_(self, p, *, generator=None):
        from .functions import _generator
        return self._fill_random(_generator().geometric(p, self.shape))

    def log_normal_(self, mean=1.0, std=2.0, *, generator=None):
        from .functions import _generator
        return self._fill_random(_generator().lognormal(mean, std, self.shape))

    def random_(self, from_=0, to=None, *, generator=None):
        from .functions import _generator
        if to is None:
            from_, to = 0, (from_ if from_ else 2 ** 24 if self.is_floating_point() else
                            np.iinfo(self.np_dtype).max)
        return self._fill_random(_generator().integers(from_, to, self.shape))

    def is_complex(self):
        return self._data.dtype.kind == "c"

    def sum_to_size(self, *size):
        size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        lead = self.ndim - len(size)
        axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(size)
                                          if n == 1 and self.shape[lead + i] != 1)
        out = self.sum(axes, keepdim=True) if axes else self
        return out.reshape(size)

    # ------------------------------------------------------------------ dtypes
    def byte(self):
        return self.to(dtypes.uint8)

    def char(self):
        return self.to(dtypes.int8)

    def short(self):
        return self.to(dtypes.int16)

    def is_contiguous(self, memory_format=None):
        return bool(self._data.flags.c_contiguous)

    def data_ptr(self):
        return int(self._data.__array_interface__["data"][0])

    def stride(self, dim=None):
        strides = tuple(s // self._data.itemsize for s in self._data.strides)
        return strides if dim is None else strides[_dim(dim, self.ndim)]

    def storage_offset(self):
        return 0

    def pin_memory(self):
        return self

    def share_memory_(self):
        return self

    def is_pinned(self):
        return False

    @property
    def is_sparse(self):
        return False

    @property
    def layout(self):
        from . import _device
        return getattr(_device, "strided", "torch.strided")

    @property
    def names(self):
        return (None,) * self.ndim

    @property
    def itemsize(self):
        return self._data.itemsize

    @property
    def nbytes(self):
        return self._data.nbytes

    def get_device(self):
        return -1
