"""The eager Tensor: a NumPy array plus PyTorch's autograd bookkeeping.

Every operation binds a primitive of the registry (primitives.py); `Tensor._bind` runs its NumPy
forward and, when grad mode is on and an input requires grad, hangs a graph node on the result.

In-place operations (`+=`, `add_`, `x[i] = v`, ...) write into the tensor's memory, bump its
version counter and rebase its history, as PyTorch does. Indexing, reshape, transpose and expand
return views (class _View) sharing memory and version counter with their root; a write through a
view rewrites the root's history (CopySlices) and other views catch up when next read.
"""
import copy
import itertools
import math
import warnings

import numpy as np

from . import _device, dtypes
from . import numpy_api
from . import primitives as P
from ._tensor_str import DEFAULT_FLOAT, format_tensor
from .operators import PrimitiveOperators, binary_operator
from ._tensor_methods import TensorMethods, return_type
from . import autograd
from .autograd import graph
from .autograd.grad_mode import _state as _grad_mode_state, is_grad_enabled
from .core import _ERROR_STATE, _QUIET


class Size(tuple):
    """torch.Size: a tuple that prints as PyTorch prints it."""

    def __repr__(self):
        return f"torch.Size({list(self)})"

    def numel(self):
        return int(np.prod(self, dtype=np.int64))


_BROADCASTING = frozenset({"add", "sub", "mul", "div", "pow", "maximum", "minimum", "where", "lt",
                           "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "mse_loss"})

_handle_ids = itertools.count()
_FLOAT64 = np.dtype(np.float64)
_CAST = P.cast
_node_classes = graph._node_classes  # name -> grad_fn class, read directly on the hot path
_READS_NO_INPUT = graph.READS_NO_INPUT
_node_sequence = graph._sequence
_NOT_TRACKED = object()
_weak_scalar, _weak_cache = graph.weak_scalar, graph._weak_cache
# the registry's grad_fn names of a full and a partial mean, read once (not per call)
_MEAN_NAMES = tuple(P.mean.torch_name((), {"axis": axis}) for axis in (None, (0,)))
_EAGER_INFO = {}  # primitive -> what _bind reads of it on every call (see _eager_info)


def _eager_info(prim):
    """(forward, its function without core.quiet's wrapper or None, whether the rule reads the
    inputs, the grad_fn class: None where the name depends on the arguments, False for a
    primitive with no derivative, whether a Python number operand may pass as a 0-d array),
    read once per primitive: the hot path reads one dict."""
    impl = prim.eager_impl
    name = prim.grad_fn_name
    if not prim.differentiable:
        node_class = False
    elif isinstance(name, str):
        node_class = _node_classes.get(name) or graph.node_class(name)
    else:
        node_class = None
    info = _EAGER_INFO[prim] = (impl, getattr(impl, "quiet_fn", None),
                                prim.name not in _READS_NO_INPUT, node_class,
                                prim.name in graph.WEAK_SCALAR_OPS)
    return info


class RemovableHandle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


def _weak_float_fix(out, args):
    """PyTorch computes in the widest float of the dimensioned tensors; Python floats and 0-d
    tensors do not widen them, and integer tensors mixed with Python floats give the default dtype."""
    dimensioned = [a.dtype for a in args if isinstance(a, (Tensor, np.ndarray)) and a.ndim > 0]
    zero_d = [a.dtype for a in args if isinstance(a, (Tensor, np.ndarray)) and a.ndim == 0]
    for group in (dimensioned, zero_d):
        floats = [d for d in group if _np(d).kind == "f"]
        if floats:
            return out if any(_np(d) == np.float64 for d in floats) else out.astype(np.result_type(*[_np(d) for d in floats]))
    return out.astype(DEFAULT_FLOAT[0])   # torch.get_default_dtype()


def _cpp_name(d):
    return {"float64": "double", "float32": "float", "float16": "c10::Half", "int64": "long int",
            "int32": "int", "int16": "short int", "int8": "signed char",
            "uint8": "unsigned char", "bool": "bool"}[d.name]


def _np(d):
    return d.np_dtype if isinstance(d, dtypes.dtype) else np.dtype(d)


def _broadcast_error(args):
    return _shapes_error([a.shape for a in args if hasattr(a, "shape")])


def _shapes_error(shapes):
    """PyTorch's error for shapes that do not broadcast: a is the first size met, b the other."""
    nd = max(len(s) for s in shapes)
    for dim in range(1, nd + 1):
        sizes = [s[-dim] for s in shapes if len(s) >= dim and s[-dim] != 1]
        others = [n for n in sizes if n != sizes[0]] if sizes else []
        if others:
            return RuntimeError(f"The size of tensor a ({sizes[0]}) must match the size of tensor "
                                f"b ({others[0]}) at non-singleton dimension {nd - dim}")
    return None


# exact operand types whose arithmetic skips dispatch (Tensor joins once it is defined)
_FAST_OPERANDS = {int, float}


def _fast_operator(prim, reflected=False):
    return binary_operator(prim, reflected, shortcut_types=_FAST_OPERANDS)


# in-place forms whose PyTorch node keeps the result (exp_, tanh_, ...): a later write is an error
_IN_PLACE_KEEPS_RESULT = frozenset({"exp", "expm1", "sqrt", "tan", "tanh", "sigmoid", "relu"})


def _unary_in_place(prim):
    def method(self):
        return self._inplace(prim, (self,), {})
    method.__name__ = prim.name.rstrip("_") + "_"
    return method


def _boolean_only(prim, symbol):
    """&, |, ~ on tensors: logical on bools (PyTorch's result); on other dtypes PyTorch's result
    is bitwise, which has no primitive here: refused, not computed as logical ([5, 7] & [2, 3]
    gave [True, True] where PyTorch gives [0, 3])."""
    def method(*args):
        for a in args:
            data = a._data if isinstance(a, Tensor) else getattr(a, "_value", a)
            dtype = np.dtype(data.dtype) if hasattr(data, "dtype") else np.asarray(data).dtype
            if dtype.kind != "b":
                raise TypeError(
                    f"tapegrad: `{symbol}` on {dtype.name} values is bitwise in PyTorch, which "
                    "tapegrad does not compute; compare first (x > 0) and combine bools, or use "
                    "torch.logical_and/logical_or/logical_not")
        return prim(*args)
    return method


def _augmented(method):
    def operator(self, other):
        if getattr(type(other), "_bind_level", 0) > 1:
            # a traced value: no memory to write into; Python falls back to `self <op> other`
            return NotImplemented
        return method(self, other)
    return operator


_COMPLEX_GRAD = ("tapegrad: complex tensors cannot require gradients (eager autograd is real-valued); "
                 "keep the real and imaginary parts as two float tensors that require grad")


class Tensor(TensorMethods, PrimitiveOperators):
    _bind_level = 1
    __array_priority__ = 1000
    # _view (a _ViewOf) is set only on views (class _View), so creating other tensors costs
    # nothing for it; read it with getattr
    __slots__ = ("_data", "_requires_grad", "grad_fn", "_grad", "_version_counter",
                 "_accumulator", "_view", "__weakref__")

    # ------------------------------------------------------------------ construction
    @classmethod
    def _wrap(cls, data, requires_grad=False):
        t = object.__new__(cls)
        t._data = data
        t._requires_grad = requires_grad
        t.grad_fn = None
        t._grad = None
        t._version_counter = {0: 0}  # see _bind
        t._accumulator = None
        return t

    @classmethod
    def _from_node(cls, data, node):
        t = cls._wrap(data, requires_grad=True)
        t.grad_fn = node
        return t

    @classmethod
    def _bind(cls, prim, args, params, name=None):
        info = _EAGER_INFO.get(prim)
        if info is None:
            info = _eager_info(prim)
        impl, quiet_fn, reads_inputs, node_class, weak_ops = info
        # the graph's next nodes are gathered in the same pass as the operands' data
        recording = node_class is not False and _grad_mode_state.enabled
        data_args = []
        next_nodes = []
        # each input's version (the op wrote none), kept where the rule reads inputs: a later
        # in-place write to one must fail in backward
        versions = [] if reads_inputs and recording else None
        tracked = False
        widths = 0  # 0: no array operand, 1: all float64, 2: others (a float64 result may narrow)
        number = None  # where a Python number operand of add/sub/mul/div sits
        for a in args:
            if isinstance(a, Tensor):
                data = a._data
                data_args.append(data)
                if recording:
                    if a.__class__ is _View:  # its history catches up with its root's, once
                        _catch_up(a)
                        node = _GRAD_FN_OF(a) if _REQUIRES_GRAD_OF(a) else _NOT_TRACKED
                    else:
                        node = a.grad_fn if a._requires_grad else _NOT_TRACKED
                    if node is _NOT_TRACKED:
                        node = None
                    else:
                        tracked = True
                        if node is None:
                            node = a._accumulator
                            if node is None:
                                node = a._grad_accumulator()
                    next_nodes.append(node)
                    if versions is not None:
                        versions.append(a._version_counter[0])
                if data.dtype is not _FLOAT64:
                    widths = 2
                elif not widths:
                    widths = 1
            else:
                if weak_ops and (a.__class__ is float or a.__class__ is int):
                    number = len(data_args)
                data_args.append(a)
                if recording:
                    next_nodes.append(None)
                    if versions is not None:
                        versions.append(None)
                if isinstance(a, np.ndarray):
                    widths = 2
        if number is not None and len(data_args) == 2:
            # the number as a cached 0-d array of the other operand's dtype: NumPy's weak cast
            # (NEP 50) of it, without the ufunc's slow path for Python scalars
            other = data_args[1 - number]
            if other.__class__ is np.ndarray:
                table = _weak_cache.get(other.dtype)  # graph.weak_scalar's common case inlined
                if table is not None:
                    value = data_args[number]
                    weak = table.get(value)
                    if weak is None or not value:  # not cached yet, or maybe -0.0
                        weak = _weak_scalar(other.dtype, value)
                    if weak is not None:
                        data_args[number] = weak
        try:
            if quiet_fn is not None:  # core.quiet's wrapper, inlined
                token = _ERROR_STATE.set(_QUIET)
                try:
                    out = quiet_fn(*data_args, **params) if params else quiet_fn(*data_args)
                finally:
                    _ERROR_STATE.reset(token)
            else:
                out = impl(*data_args, **params) if params else impl(*data_args)
        except ValueError:
            error = _broadcast_error(args) if prim.name in _BROADCASTING else None
            if error is None:
                raise
            raise error from None
        if not isinstance(out, np.ndarray):
            out = np.asarray(out)
        # a cast's dtype is what was asked; float64 operands only give float64 (no weak fix)
        if widths != 1 and out.dtype == _FLOAT64 and prim is not _CAST:
            out = _weak_float_fix(out, args)
        if tracked and out.dtype.kind == "f":
            if name:
                node_class = _node_classes.get(name) or graph.node_class(name)
            elif node_class is None:  # a name that depends on the arguments
                name = prim.grad_fn_name(args, params)
                node_class = _node_classes.get(name) or graph.node_class(name)
            node = object.__new__(node_class)
            node._seq = next(_node_sequence)  # graph.PrimitiveNode's slots, set here: no frame
            node.prim = prim
            node.inputs = args
            node.ans = out
            node.params = params
            node._next = tuple(next_nodes)
            node.versions = None if versions is None else tuple(versions)  # (a tuple of ints
            # leaves the collector's lists at its first collection; a list stays)
            node.freed = False
            node._pre_hooks = None
            node._retained = None
            t = object.__new__(cls)
            t._data = out
            t._requires_grad = True
            t.grad_fn = node
            t._grad = None
            # the node keeps `out`'s memory: writes are watched. The counter is read and bumped as
            # counter[0]; a dict of ints, which the cyclic collector never walks (a list it walks
            # in every collection: graphs of small ops spent a third of their time there)
            t._version_counter = node.out_version = {0: 0}
            t._accumulator = None
            return t
        return cls._wrap(out)

    def _grad_accumulator(self):
        if self._accumulator is None:
            with graph.leaf_grad_lock:  # threads sharing a leaf must share its one accumulator
                if self._accumulator is None:
                    self._accumulator = graph.AccumulateGrad(self)
        return self._accumulator

    # ------------------------------------------------------------------ autograd attributes
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        if not self.is_leaf:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach().")
        if flag and self._data.dtype.kind == "c":   # no operation would record it: grad stays None
            raise RuntimeError(_COMPLEX_GRAD)
        if flag and self._data.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients "
                               f"(got {self.dtype})")
        self._requires_grad = bool(flag)

    def requires_grad_(self, requires_grad=True):
        """Switch recording for gradients on (or off) for this leaf tensor, in place.

        Args:
            requires_grad: whether operations on the tensor are recorded.

        Returns:
            The tensor itself.

        Example:
            >>> import tapegrad as torch
            >>> torch.zeros(1).requires_grad_()
            tensor([0.], requires_grad=True)
        """
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def grad(self):
        node = self.grad_fn
        if node is not None and node._retained is None:  # not a leaf, nor retaining its grad
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its "
                ".grad attribute won't be populated during autograd.backward(). If you indeed want "
                "the .grad field to be populated for a non-leaf Tensor, use .retain_grad() on the "
                "non-leaf Tensor.", UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                kind = type(value)
                kind = kind.__name__ if kind.__module__ == "builtins" else \
                    f"{kind.__module__}.{kind.__qualname__}"
                raise TypeError("assigned grad expected to be a Tensor or None but got grad of "
                                f"type {kind}")
            if value.shape != self.shape:
                raise RuntimeError(f"attempting to assign a gradient of size '{list(value.shape)}'"
                                   f" to a tensor of size '{list(self.shape)}'. Please ensure "
                                   "that the gradient and the tensor are the same size")
            if value.dtype != self.dtype:
                raise RuntimeError(  # PyTorch names the dtypes as C++ does, then as ScalarType
                    f"attempting to assign a gradient with dtype '{_cpp_name(value.dtype)}' to "
                    f"a tensor with grad_dtype '{self.dtype.tensor_type[:-6]}'. The gradient must match the tensor's "
                    "grad_dtype (defaults to the tensor's dtype).")
        self._grad = value

    @property
    def _version(self):
        return self._version_counter[0]

    @property
    def data(self):
        # unlike detach(), .data does not share the version counter (PyTorch's documented escape)
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        self._data = value._data if isinstance(value, Tensor) else np.asarray(value)

    @property
    def _base(self):
        view = getattr(self, "_view", None)
        return None if view is None else view.root

    def _is_view(self):
        return getattr(self, "_view", None) is not None

    def detach(self):
        """A tensor sharing this one's memory and version counter, cut from the graph.

        Returns:
            The Tensor, with requires_grad False and no grad_fn.

        Example:
            >>> import tapegrad as torch
            >>> x = torch.tensor([1.0], requires_grad=True)
            >>> (x * 2).detach()
            tensor([2.])
        """
        t = Tensor._wrap(self._data)
        t._version_counter = self._version_counter
        return t

    def detach_(self):
        self.grad_fn = None
        self._requires_grad = False
        return self

    def retain_grad(self):
        """Keep the gradient of this non-leaf tensor in its ``.grad`` during backward.

        Returns:
            None.

        Example:
            >>> import tapegrad as torch
            >>> x = torch.ones(2, requires_grad=True)
            >>> y = x * 2
            >>> y.retain_grad()
            >>> y.sum().backward()
            >>> y.grad
            tensor([1., 1.])
        """
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if not self.is_leaf:
            graph.retain(self.grad_fn, self)

    @property
    def retains_grad(self):
        return not self.is_leaf and self.grad_fn._retained is not None

    def register_hook(self, hook):
        """Call `hook` with this tensor's gradient during backward; its result, if not None,
        replaces the gradient.

        Args:
            hook: a function of the gradient Tensor.

        Returns:
            A handle whose ``.remove()`` unregisters the hook.

        Example:
            >>> import tapegrad as torch
            >>> x = torch.ones(2, requires_grad=True)
            >>> handle = x.register_hook(lambda g: g * 10)
            >>> x.sum().backward()
            >>> x.grad
            tensor([10., 10.])
        """
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        node = graph.node_of(self)
        if node._pre_hooks is None:
            node._pre_hooks = {}
        key = next(_handle_ids)
        node._pre_hooks[key] = hook
        return RemovableHandle(node._pre_hooks, key)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate the gradient of this tensor into the ``.grad`` of the leaves it depends on.

        Args:
            gradient: the gradient with respect to this tensor; needed unless it has one element.
            retain_graph: keep the graph for another backward (default: `create_graph`).
            create_graph: record the backward pass itself, for higher derivatives.
            inputs: accumulate into these tensors only.

        Returns:
            None; the gradients are in ``.grad``.

        Example:
            >>> import tapegrad as torch
            >>> x = torch.ones(2, requires_grad=True)
            >>> (x * 3).sum().backward()
            >>> x.grad
            tensor([3., 3.])
        """
        autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    # ------------------------------------------------------------------ metadata
    @property
    def shape(self):
        return Size(self._data.shape)

    def size(self, dim=None):
        """The shape, or one dimension's length.

        Args:
            dim: the dimension (negative counts from the end); None for the whole shape.

        Returns:
            A torch.Size, or an int when dim is given.

        Example:
            >>> import tapegrad as torch
            >>> x = torch.zeros(1, 2)
            >>> x.size(), x.size(-1)
            (torch.Size([1, 2]), 2)
        """
        return self.shape if dim is None else self._data.shape[_dim(dim, self.ndim)]

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        """The number of dimensions.

        Returns:
            An int.

        Example:
            >>> import tapegrad as torch
            >>> torch.zeros(1, 2).dim()
            2
        """
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    @property
    def dtype(self):
        return dtypes.from_numpy_dtype(self._data.dtype)

    @property
    def np_dtype(self):
        return self._data.dtype

    @property
    def device(self):
        return _device.CPU

    is_cuda = False

    def is_floating_point(self):
        return self._data.dtype.kind == "f"

    def element_size(self):
        return self._data.dtype.itemsize

    def type(self, dtype=None):
        if dtype is None:
            return "torch." + self.dtype.tensor_type
        return self.to(dtype)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __repr__(self):
        name = self.grad_fn.name() if self.grad_fn is not None else None
        return format_tensor(self._data, requires_grad=self._requires_grad, grad_fn_name=name)

    __str__ = __repr__

    # ------------------------------------------------------------------ conversion
    def item(self):
        """The value of a one-element tensor as a Python number.

        Returns:
            A float, int or bool.

        Example:
            >>> import tapegrad as torch
            >>> torch.tensor([2.5]).item()
            2.5
        """
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted "
                               "to Scalar")
        return self._data.reshape(()).item()

    def tolist(self):
        return self._data.tolist()

    def numpy(self, force=False):
        """The tensor's data as a NumPy array sharing its memory.

        Args:
            force: accepted for PyTorch compatibility; a tensor that requires grad needs
                ``.detach()`` first, as in PyTorch, unless `force` is true.

        Returns:
            A ``numpy.ndarray``.

        Example:
            >>> import tapegrad as torch
            >>> torch.ones(2).numpy()
            array([1., 1.], dtype=float32)
        """
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        return self._data

    def __array__(self, dtype=None, copy=None):
        data = self.numpy()
        return data if dtype is None else data.astype(dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        prim = numpy_api.ufunc_rule(ufunc)
        if prim is None or method != "__call__" or kwargs:
            return NotImplemented
        return prim(*inputs)

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def to(self, *args, dtype=None, **kwargs):
        for a in args:
            if isinstance(a, dtypes.dtype):
                dtype = a
            elif isinstance(a, Tensor):
                dtype = a.dtype
            else:
                _device.check_device(a)
        _device.check_device(kwargs.pop("device", None))
        if dtype is None or dtypes.to_numpy_dtype(dtype) == self._data.dtype:
            return self
        return P.cast(self, dtype=dtypes.to_numpy_dtype(dtype).name)

    def cpu(self):
        return self

    def cuda(self, device=None, non_blocking=False):
        _device.check_device("cuda" if device is None else device)
        return self

    # new_* keep this tensor's dtype unless told otherwise (nn code builds constants with them)
    def new_tensor(self, data, dtype=None, device=None, requires_grad=False):
        from .functions import tensor
        return tensor(data, dtype=self.dtype if dtype is None else dtype,
                      requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False):
        from .functions import full
        return full(size, fill_value, dtype=self.dtype if dtype is None else dtype,
                    requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_full(_size_args(size), 1, dtype, device, requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_full(_size_args(size), 0, dtype, device, requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_full(_size_args(size), 0, dtype, device, requires_grad)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool)

    def clone(self):
        return P.clone(self)

    def contiguous(self):
        # a copy where the memory is not in C order (a transpose, a strided slice), so writes to
        # it leave the original alone, as in PyTorch
        if self._data.flags.c_contiguous:
            return self
        return Tensor._bind(_C_ORDER_CLONE, (self,), {}, "CloneBackward0")

    # ------------------------------------------------------------------ arithmetic
    # (operators come from PrimitiveOperators; matmul adds PyTorch's shape errors)
    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    # the commonest operators skip core.bind when every operand is a Tensor or a Python number
    # (those are exactly the cases bind would hand to Tensor._bind); anything else still binds
    # `2 * x` is x.__rmul__(2), which PyTorch records as mul(x, 2): next_functions[0] is x's
    __add__ = __radd__ = _fast_operator(P.add)
    __sub__, __rsub__ = _fast_operator(P.sub), _fast_operator(P.sub, reflected=True)
    __mul__ = __rmul__ = _fast_operator(P.mul)
    __truediv__, __rtruediv__ = _fast_operator(P.div), _fast_operator(P.div, reflected=True)

    # PyTorch's method names for the operators
    _ops = PrimitiveOperators
    add, sub, mul, div, pow = __add__, __sub__, __mul__, __truediv__, _ops.__pow__
    neg, matmul = _ops.__neg__, __matmul__
    lt, le, gt, ge, eq, ne = _ops.__lt__, _ops.__le__, _ops.__gt__, _ops.__ge__, _ops.__eq__, _ops.__ne__
    del _ops

    def square(self):
        return P.pow_(self, 2)

    def rsqrt(self):
        return 1 / P.sqrt(self)

    def reciprocal(self):
        return 1 / self

    def clamp(self, min=None, max=None):
        if min is None and max is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        if isinstance(min, Tensor) or isinstance(max, Tensor):
            # Tensor bounds broadcast and get gradients (torch's ClampBackward0)
            return P.clip(self, -np.inf if min is None else min, np.inf if max is None else max)
        return P.clamp(self, min=_scalar(min), max=_scalar(max))

    clip = clamp

    def maximum(self, other):
        return P.maximum(self, other)

    def minimum(self, other):
        return P.minimum(self, other)

    def logaddexp(self, other):
        return P.logaddexp(self, other)

    def logaddexp2(self, other):
        return P.logaddexp2(self, other)

    def where(self, condition, other):
        return P.where(condition, self, other)

    # ------------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        return P.sum_(x, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def mean(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        if x._data.dtype.kind not in "fc":
            raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either "
                               f"a floating point or complex dtype. Got: {x.dtype.tensor_type[:-6]}")
        # a lone Tensor argument: bind would hand the call to its _bind
        axis = None if dim is None else _axes(dim, self.ndim)
        return type(x)._bind(P.mean, (x,), {"axis": axis, "keepdims": keepdim},
                             _MEAN_NAMES[axis is not None])

    def prod(self, dim=None, keepdim=False, dtype=None):
        x = self if dtype is None else self.to(dtype)
        return P.prod(x, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def amax(self, dim=(), keepdim=False):
        # dim=() means every dim; dim=0 is a dim (so no `dim or None`)
        return P.amax(self, axis=_axes(None if dim == () else dim, self.ndim), keepdims=keepdim)

    def amin(self, dim=(), keepdim=False):
        return P.amin(self, axis=_axes(None if dim == () else dim, self.ndim), keepdims=keepdim)

    def max(self, dim=None, keepdim=False):
        return _extremum(self, dim, keepdim, P.amax, np.argmax, "max")

    def min(self, dim=None, keepdim=False):
        return _extremum(self, dim, keepdim, P.amin, np.argmin, "min")

    def argmax(self, dim=None, keepdim=False):
        return _arg_extremum(self, dim, keepdim, np.argmax)

    def argmin(self, dim=None, keepdim=False):
        return _arg_extremum(self, dim, keepdim, np.argmin)

    def logsumexp(self, dim, keepdim=False):
        return P.logsumexp(self, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def norm(self, p="fro", dim=None, keepdim=False):
        """The vector or matrix norm, differentiable.

        Args:
            p: 'fro' or 2 (Euclidean / Frobenius), 1, or inf.
            dim: the dimension(s) reduced; None for all elements.
            keepdim: keep the reduced dimensions with length 1.

        Returns:
            The Tensor of norms.

        Example:
            >>> import tapegrad as torch
            >>> torch.tensor([3.0, 4.0]).norm()
            tensor(5.)
        """
        ord_ = {"fro": 2, 2: 2, 1: 1, float("inf"): np.inf}.get(p)
        if ord_ is None:
            raise ValueError(f"tapegrad: norm supports p = 'fro', 2, 1 and inf, not {p!r}")
        return P.norm(self, ord=ord_, axis=_axes(dim, self.ndim), keepdims=keepdim)

    def softmax(self, dim):
        return P.softmax(self, axis=_dim(dim, self.ndim))

    def log_softmax(self, dim):
        return P.log_softmax(self, axis=_dim(dim, self.ndim))

    def std(self, dim=None, keepdim=False, unbiased=True):
        centered = self - self.mean(dim, keepdim=True)
        count = self.numel() if dim is None else np.prod([self.shape[d] for d in _axes(dim, self.ndim)])
        return ((centered * centered).sum(dim, keepdim=keepdim) / (count - int(unbiased))).sqrt()

    def var(self, dim=None, keepdim=False, unbiased=True):
        return self.std(dim, keepdim, unbiased) ** 2

    def all(self, dim=None, keepdim=False):
        axis = None if dim is None else _axes(dim, self.ndim)
        return Tensor._wrap(np.asarray(np.all(self._data, axis=axis, keepdims=keepdim)))

    def any(self, dim=None, keepdim=False):
        axis = None if dim is None else _axes(dim, self.ndim)
        return Tensor._wrap(np.asarray(np.any(self._data, axis=axis, keepdims=keepdim)))

    # ------------------------------------------------------------------ shapes
    def _view_op(self, prim, params, name=None, multi=None):
        """A shape primitive with PyTorch's view semantics: where NumPy can, the result shares this
        tensor's memory and version counter, and an in-place write to either side reaches the
        other's history. multi: (op name, output index) for ops returning several views."""
        if prim is P.getitem and P._is_advanced(params["index"]):
            return Tensor._bind(prim, (self,), params, name)  # advanced indexing copies
        prim = _VIEW_FORMS.get(prim, prim)
        out = Tensor._bind(prim, (self,), params, name)
        if np.may_share_memory(out._data, self._data):
            _attach_view(out, self, prim, params, multi)
        return out

    def reshape(self, *shape):
        return self._view_op(P.reshape, {"shape": _resolve_shape(_size_args(shape), self.numel())})

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], dtypes.dtype):
            raise NotImplementedError("tapegrad: view(dtype) reinterprets memory; use .to(dtype)")
        out = self.reshape(*shape)
        if out._data.size and not np.may_share_memory(out._data, self._data):
            # NumPy had to copy: a view would silently stop seeing writes, so refuse as PyTorch
            raise RuntimeError("view size is not compatible with input tensor's size and stride "
                               "(at least one dimension spans across two contiguous subspaces). "
                               "Use .reshape(...) instead.")
        return out

    def view_as(self, other):
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _dim(start_dim, self.ndim), _dim(end_dim, self.ndim)
        if start == end:
            return self  # nothing to merge: PyTorch returns the tensor itself
        shape = self.shape[:start] + (-1,) + self.shape[end + 1:]
        return self.reshape(shape)

    def squeeze(self, dim=None):
        # PyTorch names the three overloads: all dims, one dim, a tuple of dims
        if dim is None:
            shape, name = tuple(n for n in self.shape if n != 1), "SqueezeBackward0"
        else:
            dims = _axes(dim, self.ndim) or ()
            shape = tuple(n for i, n in enumerate(self.shape) if not (i in dims and n == 1))
            name = "SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2"
        return self._view_op(P.reshape, {"shape": shape}, name)

    def unsqueeze(self, dim):
        d = _dim(dim, self.ndim + 1)
        return self._view_op(P.reshape, {"shape": self.shape[:d] + (1,) + self.shape[d:]},
                             "UnsqueezeBackward0")

    def expand(self, *sizes):
        sizes = _size_args(sizes)
        lead = len(sizes) - self.ndim
        shape = tuple(self.shape[i - lead] if n == -1 else n for i, n in enumerate(sizes))
        for i, n in enumerate(self.shape):
            if n != 1 and n != shape[lead + i]:
                raise RuntimeError(
                    f"The expanded size of the tensor ({shape[lead + i]}) must match the existing "
                    f"size ({n}) at non-singleton dimension {lead + i}.  Target sizes: "
                    f"{list(shape)}.  Tensor sizes: {list(self.shape)}")
        return self._view_op(P.broadcast_to, {"shape": shape})

    def expand_as(self, other):
        return self.expand(other.shape)

    def broadcast_to(self, shape):
        return self.expand(shape)

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self if self.ndim < 2 else self._view_op(P.transpose, {"axes": (1, 0)})

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim))) if self.ndim > 1 else self

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def transpose(self, dim0, dim1):
        axes = list(range(self.ndim))
        a, b = _dim(dim0, self.ndim), _dim(dim1, self.ndim)
        axes[a], axes[b] = axes[b], axes[a]
        return self._view_op(P.transpose, {"axes": tuple(axes)}, "TransposeBackward0")

    def permute(self, *dims):
        dims = tuple(_dim(d, self.ndim) for d in _size_args(dims))
        if len(set(dims)) != len(dims):
            raise RuntimeError("permute(): duplicate dims are not allowed.")
        if len(dims) != self.ndim:
            raise RuntimeError("permute(sparse_coo): number of dimensions in the tensor input does "
                               "not match the length of the desired ordering of dimensions i.e. "
                               f"input.dim() = {self.ndim} is not equal to len(dims) = {len(dims)}")
        return self._view_op(P.transpose, {"axes": dims}, "PermuteBackward0")

    def unbind(self, dim=0):
        d = _dim(dim, self.ndim)
        return tuple(self._view_op(P.getitem, {"index": (slice(None),) * d + (i,)},
                                   "UnbindBackward0", multi=("Unbind", i))
                     for i in range(self.shape[d]))

    def split(self, split_size, dim=0):
        d = _dim(dim, self.ndim)
        n = self.shape[d]
        if isinstance(split_size, int):
            sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else [])
            name = "SplitBackward0"
        else:
            sizes, name = list(split_size), "SplitWithSizesBackward0"
            if sum(sizes) != n:
                raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                                   f"(input tensor's size at dimension {d}), but got "
                                   f"split_sizes={sizes}")
        starts = np.cumsum([0] + sizes[:-1])
        return tuple(self._view_op(P.getitem,
                                   {"index": (slice(None),) * d + (slice(int(s), int(s + k)),)},
                                   name, multi=(name[:-9], i))
                     for i, (s, k) in enumerate(zip(starts, sizes)))

    def chunk(self, chunks, dim=0):
        n = self.shape[_dim(dim, self.ndim)]
        return self.split(-(-n // chunks), dim)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    # ------------------------------------------------------------------ indexing
    def __getitem__(self, index):
        try:
            if type(index) is int:  # x[i], the commonest read: a basic index, PyTorch's select
                params = {"index": (index,)}
                out = Tensor._bind(_SELECT_VIEW, (self,), params, "SelectBackward0")
                _attach_view(out, self, _SELECT_VIEW, params, None)  # (basic indexing: a view)
                return out
            index = _normalise_index(index)
            integers, rest = _integers_first(index)
            if integers is not None:
                return self._view_op(P.getitem, {"index": integers})._view_op(P.getitem,
                                                                              {"index": rest})
            return self._view_op(P.getitem, {"index": index})
        except IndexError as e:  # NumPy's words for PyTorch's
            message = str(e).replace("for axis", "for dimension")
            if message.startswith("too many indices"):
                message = (_ZERO_DIM_INDEX if self.ndim == 0 and type(index) is int
                           else f"too many indices for tensor of dimension {self.ndim}")
            raise IndexError(message) from None

    def __setitem__(self, index, value):
        if isinstance(value, Tensor) and value.dtype != self.dtype:
            value = value.to(self.dtype)
        index = _normalise_index(index)
        name = "IndexPutBackward0" if P._is_advanced(index) else "CopySlices"
        self._inplace(P.setitem, (self, value), {"index": index}, name)

    # ------------------------------------------------------------------ in-place
    def _inplace(self, prim, args, params, name=None):
        """Compute out of place, write the result into this tensor's memory, rebase its history
        (for a view, its base's history: PyTorch's CopySlices; views catch up when next read)."""
        view = getattr(self, "_view", None)
        grad_mode = is_grad_enabled()
        needs_graph = grad_mode and any(isinstance(a, Tensor) and a._requires_grad for a in args)
        if grad_mode:
            _check_inplace_allowed(self, view, needs_graph)
        if needs_graph:
            # the node must see the old value, which the write overwrites (unless its rule reads
            # none), and must not hold self or its root (a reference cycle once they are rebased
            # onto it); self as another operand stays itself, so a node that saved it fails
            # loudly in backward, as in PyTorch
            copy = prim.name not in graph.SAVES_NOTHING
            if view is None:
                first = _stand_in(self, copy)
            else:
                chain = _replay(view)
                first = _stand_in(chain[-1], copy)
            args = (first,) + tuple(args[1:])
        result = Tensor._bind(prim, args, params, name)
        out = result._data
        if out.shape != self._data.shape:
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast "
                               f"shape {list(out.shape)}")
        if not np.can_cast(out.dtype, self._data.dtype, "same_kind"):
            raise RuntimeError(f"result type {result.dtype.tensor_type[:-6]} can't be cast to the "
                               f"desired output type {self.dtype.tensor_type[:-6]}")
        if not self._data.flags.writeable:
            if any(st == 0 and n > 1 for st, n in zip(self._data.strides, self._data.shape)):
                raise RuntimeError(  # an expanded tensor: NumPy's read-only broadcast view
                    "unsupported operation: more than one element of the written-to tensor refers "
                    "to a single memory location. Please clone() the tensor before performing the "
                    "operation.")
            raise RuntimeError("tapegrad: this tensor's memory is read-only (it wraps a NumPy "
                               "array that is not writeable); clone() it before writing to it in "
                               "place")
        np.copyto(self._data, out, casting="unsafe")
        self._version_counter[0] += 1
        if needs_graph:
            if view is None:
                _rebase(self, result.grad_fn)
            else:
                _rebase(view.root, _write_back(view, chain, result).grad_fn)
                _catch_up(self)  # now: its old history is on the new one's path (retain_grad)
            if (prim.name in _IN_PLACE_KEEPS_RESULT
                    or prim is P.pow_ and isinstance(args[1], Tensor)):
                # PyTorch's node keeps the result here (pow_: with a tensor exponent): a later
                # write must fail in backward
                result.grad_fn.out_version = graph.VersionSince(
                    self._version_counter, self._version_counter[0], self.grad_fn.name())
        return self

    def add_(self, other, alpha=1):
        return self._inplace(P.add, (self, other if alpha == 1 else other * alpha), {})

    def sub_(self, other, alpha=1):
        return self._inplace(P.sub, (self, other if alpha == 1 else other * alpha), {})

    def mul_(self, other):
        return self._inplace(P.mul, (self, other), {})

    def div_(self, other):
        return self._inplace(P.div, (self, other), {})

    def pow_(self, other):
        return self._inplace(P.pow_, (self, other), {})

    def neg_(self):
        return self._inplace(P.neg, (self,), {})

    def remainder_(self, other):
        return self._inplace(P.remainder, (self, other), {})

    def fmod_(self, other):
        return self._inplace(P.fmod, (self, other), {})

    def square_(self):
        return self._inplace(P.pow_, (self, 2), {})

    def clamp_(self, min=None, max=None):
        return self._inplace(P.clamp, (self,), {"min": _scalar(min), "max": _scalar(max)})

    def zero_(self):
        # written, not multiplied by 0: inf and NaN entries become 0 too
        return self._inplace(P.setitem, (self, 0), {"index": (Ellipsis,)}, "ZeroBackward0")

    def fill_(self, value):
        name = "FillBackward3" if isinstance(value, Tensor) else "FillBackward2"
        return self._inplace(P.setitem, (self, value), {"index": (Ellipsis,)}, name)

    def copy_(self, src):
        return self._inplace(P.setitem, (self, src), {"index": (Ellipsis,)}, "CopyBackwards")

    def normal_(self, mean=0.0, std=1.0):
        from .functions import _generator
        sample = _generator().normal(mean, std, self.shape).astype(self._data.dtype)
        return self._inplace(P.setitem, (self, sample), {"index": (Ellipsis,)})

    def uniform_(self, a=0.0, b=1.0):
        from .functions import _generator
        sample = _generator().uniform(a, b, self.shape).astype(self._data.dtype)
        return self._inplace(P.setitem, (self, sample), {"index": (Ellipsis,)})

    exp_, log_, log1p_ = map(_unary_in_place, (P.exp, P.log, P.log1p))
    expm1_, sqrt_ = map(_unary_in_place, (P.expm1, P.sqrt))
    sin_, cos_, tan_, tanh_ = map(_unary_in_place, (P.sin, P.cos, P.tan, P.tanh))
    sigmoid_, relu_, abs_, erf_ = map(_unary_in_place, (P.sigmoid, P.relu, P.abs_, P.erf))

    # augmented assignment is in place, as in PyTorch (`w -= lr * w.grad` keeps w's identity);
    # `@=` is not: torch.Tensor has no __imatmul__, so Python rebinds through __matmul__
    __iadd__, __isub__, __imul__, __itruediv__, __ipow__, __imod__ = map(
        _augmented, (add_, sub_, mul_, div_, pow_, remainder_))

    __and__ = __rand__ = _boolean_only(P.logical_and, "&")
    __or__ = __ror__ = _boolean_only(P.logical_or, "|")
    __invert__ = _boolean_only(P.logical_not, "~")

    def __iand__(self, other):
        return self._logical_in_place(P.logical_and, other)

    def __ior__(self, other):
        return self._logical_in_place(P.logical_or, other)

    def _logical_in_place(self, prim, other):
        # `&` and `|` are logical here, which is PyTorch's bitwise result for bools only: other
        # dtypes keep the old rebinding through __and__/__or__
        bools = isinstance(other, bool) or isinstance(other, Tensor) and other.dtype == dtypes.bool
        if self._data.dtype != np.bool_ or not bools:
            return NotImplemented
        return self._inplace(prim, (self, other), {})


graph.Tensor = Tensor
_FAST_OPERANDS.add(Tensor)


# ---------------------------------------------------------------------------------------------
# Views and in-place writes
# ---------------------------------------------------------------------------------------------

def _eager_form(prim, impl):
    """A copy of a registry primitive with another eager forward (a NumPy view for Tensor views, a
    C-ordered copy); its name and derivative rules are the registry's (set when it loaded)."""
    form = copy.copy(prim)
    form.impl = form.eager_impl = impl
    return form


def _getitem_view(x, index):
    # a trailing Ellipsis makes NumPy return a 0-d view rather than a scalar for x[i] of a vector
    return x[index] if any(i is Ellipsis for i in index) else x[index + (Ellipsis,)]


def _broadcast_view(x, shape):
    return x if x.shape == tuple(shape) else np.broadcast_to(x, shape)  # read-only, as expand()


_ZERO_DIM_INDEX = ("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
                   "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number")
_SELECT_VIEW = _eager_form(P.getitem, lambda x, index: x[index + (Ellipsis,)])  # x[i], i an int
_VIEW_FORMS = {P.getitem: _eager_form(P.getitem, _getitem_view),
               P.broadcast_to: _eager_form(P.broadcast_to, _broadcast_view)}
_C_ORDER_CLONE = _eager_form(P.clone, np.ascontiguousarray)


class _ViewOf:
    """What makes a tensor a view: its root base, the shape ops from the root's data to its own
    (`steps`), whether grad mode was on when it was made, (op name, output index) for multi-view
    ops, and the root's grad_fn its own history was built on.

    The steps are its base's (`base_steps`, () for a view of the root) and its own op, joined
    when read (catch-up and in-place writes): x[i] of a root makes no tuples the cyclic collector
    must walk."""
    __slots__ = ("root", "base_steps", "prim", "params", "grad_mode", "multi", "built_on")

    @property
    def steps(self):
        return self.base_steps + ((self.prim, self.params),)


_GRAD_FN_SLOT = Tensor.__dict__["grad_fn"]
_REQUIRES_GRAD_SLOT = Tensor.__dict__["_requires_grad"]
_GRAD_FN_OF, _REQUIRES_GRAD_OF = _GRAD_FN_SLOT.__get__, _REQUIRES_GRAD_SLOT.__get__  # (no catch-up)


def _caught_up(slot):
    """A view's attribute: the slot, read after the view's history caught up with its root's."""
    def read(self):
        _catch_up(self)
        return slot.__get__(self)
    return property(read, slot.__set__)


class _View(Tensor):
    """A Tensor sharing another's memory. After an in-place write to its root (or through another
    view) its history is rebuilt from the root's new one when next read, as PyTorch regenerates a
    view's grad_fn (AsStridedBackward0); plain tensors keep plain slots on the hot path."""
    __slots__ = ()

    grad_fn = _caught_up(_GRAD_FN_SLOT)
    _requires_grad = _caught_up(_REQUIRES_GRAD_SLOT)

    @classmethod
    def _bind(cls, prim, args, params, name=None):
        return Tensor._bind(prim, args, params, name)  # results are plain tensors


_FAST_OPERANDS.add(_View)


def _attach_view(out, base, prim, params, multi):
    if base.__class__ is _View:
        info = base._view
        root, base_steps = info.root, info.steps
        if multi is None:
            multi = info.multi
    else:  # base is no view: it is the root
        root, base_steps = base, ()
    view = object.__new__(_ViewOf)  # (its slots set here: no __init__ frame)
    view.root, view.base_steps, view.prim, view.params = root, base_steps, prim, params
    view.grad_mode, view.multi, view.built_on = _grad_mode_state.enabled, multi, root.grad_fn
    out._version_counter = base._version_counter  # PyTorch: a view and its base share one
    out.__class__ = _View
    out._view = view


def _catch_up(v):
    """Rebuild a view's history from its root's if the root's changed since (an in-place write)."""
    info = v._view
    node = info.root.grad_fn  # a root is never a view: a plain slot
    if node is info.built_on or not info.grad_mode:
        return  # (a view made under no_grad keeps none, as in PyTorch)
    info.built_on = node
    previous = is_grad_enabled()
    graph._set_enabled(True)  # read under no_grad too, the history is the one grad mode builds
    try:
        t, last = info.root, len(info.steps) - 1
        for i, (prim, params) in enumerate(info.steps):
            t = Tensor._bind(prim, (t,), params, "AsStridedBackward0" if i == last else None)
    finally:
        graph._set_enabled(previous)
    new = t.grad_fn
    _move_retain(v, _GRAD_FN_SLOT.__get__(v), new)
    _GRAD_FN_SLOT.__set__(v, new)
    _REQUIRES_GRAD_SLOT.__set__(v, t._requires_grad)


_NO_GRAD_VIEW = ("A view was created in no_grad mode and is being modified inplace with grad "
                 "mode enabled. Given that this use case is ambiguous and error-prone, it is "
                 "forbidden. You can clarify your code by moving both the view and the inplace "
                 "either both inside the no_grad block (if you don't want the inplace to be "
                 "tracked) or both outside (if you want the inplace to be tracked).")


def _check_inplace_allowed(t, view, needs_graph):
    """PyTorch's refusals of an in-place write in grad mode."""
    if view is None:
        if needs_graph and t.grad_fn is None and t._requires_grad:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                               "operation.")
        return
    root = view.root
    if not view.grad_mode and root._requires_grad:
        raise RuntimeError(_NO_GRAD_VIEW)
    if not needs_graph:
        return
    if root.grad_fn is None and root._requires_grad:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    if view.multi is not None:
        op, index = view.multi
        raise RuntimeError(
            f"Output {index} of {op} is a view and is being modified inplace. This view is the "
            "output of a function that returns multiple views. Such functions do not allow the "
            "output views to be modified inplace. You should replace the inplace operation by an "
            "out-of-place one.")


def _stand_in(t, copy=True):
    """A new tensor carrying t's history, for a node of a write to t: with a copy of t's value
    when the node reads it, else sharing t's memory (the node reads only its shape)."""
    s = Tensor._wrap(t._data.copy() if copy else t._data, t._requires_grad)
    s.grad_fn = t.grad_fn
    if t.grad_fn is None and t._requires_grad:
        s._accumulator = t._grad_accumulator()
    return s


def _move_retain(t, old, new):
    """retain_grad() follows a tensor from its old history to its new one, as in PyTorch."""
    if old is not None and old._retained is not None and old._retained() is t:
        if new is not None:
            new._retained = old._retained
        old._retained = None


def _rebase(t, node):
    """t's history is now `node`."""
    _move_retain(t, t.grad_fn, node)
    t.grad_fn, t._requires_grad = node, node is not None


def _replay(view):
    """The view's shape ops applied to a stand-in of its root: [root, ..., the view], as graph
    tensors sharing the root's memory (the ops and their rules read no values)."""
    chain = [_stand_in(view.root, copy=False)]
    for prim, params in view.steps:
        chain.append(Tensor._bind(prim, (chain[-1],), params))
    return chain


def _write_back(view, chain, value):
    """The root's new value as a graph: `value` written through the view's shape ops into the
    root's old value (PyTorch's CopySlices), so gradients reach the root's old history too.
    chain: _replay(view) from before the write."""
    parents = chain[:-1]
    for (prim, params), parent in zip(reversed(view.steps), reversed(parents)):
        name = "CopySlices" if parent is parents[0] else None
        if prim.name == "getitem":
            value = Tensor._bind(P.setitem, (parent, value), {"index": params["index"]}, name)
        elif prim.name == "transpose":
            inverse = tuple(np.argsort(params["axes"]).tolist())
            value = Tensor._bind(P.transpose, (value,), {"axes": inverse}, name)
        else:  # reshape, or an expand that broadcast nothing (a real one is read-only)
            value = Tensor._bind(P.reshape, (value,), {"shape": parent._data.shape}, name)
    return value


# ---------------------------------------------------------------------------------------------
# Argument normalisation shared by methods and functions
# ---------------------------------------------------------------------------------------------

def _dim(d, ndim):
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {d})")
    return d % n


def _axes(dim, ndim):
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    axes = [_dim(d, ndim) for d in dims]
    if len(set(axes)) != len(axes):
        repeated = next(a for a in axes if axes.count(a) > 1)
        raise RuntimeError(f"dim {repeated} appears multiple times in the list of dims")
    return tuple(sorted(axes)) if ndim else None


def _size_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        return tuple(shape[0])
    return tuple(int(n) for n in shape)


def _resolve_shape(shape, numel):
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = math.prod([n for n in shape if n != -1])  # (exact ints; np.prod's call costs 2 us)
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if n == -1 else n for n in shape)
    elif known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _scalar(v):
    return v.item() if isinstance(v, Tensor) else v


def _normalise_index(index):
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for item in items:
        if isinstance(item, Tensor):
            item = item._data
        elif isinstance(item, list):
            item = np.asarray(item)
        if isinstance(item, np.ndarray) and item.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        out.append(item)
    return tuple(out)


def _integers_first(index):
    """Split an index mixing integers with index arrays: PyTorch selects with the integers first,
    where NumPy would broadcast them with the arrays (x[1, :, idx] differs in layout)."""
    if not (P._is_advanced(index) and any(isinstance(i, (int, np.integer)) for i in index)):
        return None, index
    integers, rest = [], []
    for item in index:
        if isinstance(item, (int, np.integer)):
            integers.append(item)
            continue
        rest.append(item)
        if item is Ellipsis:
            integers.append(item)
        elif isinstance(item, np.ndarray) and item.dtype == np.bool_:
            integers.extend([slice(None)] * item.ndim)
        elif item is not None:
            integers.append(slice(None))
    return tuple(integers), tuple(rest)


_ReturnTypes = {name: return_type(name, ["values", "indices"]) for name in ("max", "min")}


def _extremum(x, dim, keepdim, prim, arg_fn, name):
    if dim is None:
        return Tensor._bind(prim, (x,), {"axis": None, "keepdims": False},
                            name.capitalize() + "Backward1")
    d = _dim(dim, x.ndim)
    indices = _arg_extremum(x, d, keepdim, arg_fn)
    # PyTorch's max(dim) selects one element per slice (the first of ties, the first NaN), so its
    # gradient is one-hot at `indices`: gather them (torch.amax shares ties instead)
    index = ()
    if x.ndim:
        grids = np.indices(indices.shape, sparse=True)
        rest = grids[d + 1:] if keepdim else grids[d:]
        index = tuple(grids[:d]) + (indices._data,) + tuple(rest)
    values = Tensor._bind(P.getitem, (x,), {"index": index}, name.capitalize() + "Backward0")
    return _ReturnTypes[name](values, indices)


def _arg_extremum(x, dim, keepdim, arg_fn):
    if dim is None:
        return Tensor._wrap(np.asarray(arg_fn(x._data)))
    d = _dim(dim, x.ndim)
    return Tensor._wrap(np.asarray(arg_fn(x._data, axis=d, keepdims=keepdim)))


def matmul(a, b):
    """torch.matmul, with PyTorch's error for shapes that cannot be multiplied.

    Args:
        a: the left Tensor (1-d or more; leading dimensions broadcast).
        b: the right Tensor (1-d or more).

    Returns:
        The matrix product a @ b.

    Example:
        >>> import tapegrad as torch
        >>> torch.matmul(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0], [4.0]]))
        tensor([[11.]])
    """
    sa, sb = np.shape(a), np.shape(b)
    if not sa or not sb:
        raise RuntimeError("both arguments to matmul need to be at least 1D, but they are "
                           f"{len(sa)}D and {len(sb)}D")
    error = _matmul_error(tuple(sa), tuple(sb))
    if error is not None:
        raise error
    return P.matmul(a, b)


def _matmul_error(sa, sb):
    """PyTorch's message for each way its matmul dispatches (dot, mv, mm with folding, bmm)."""
    na, nb = len(sa), len(sb)
    k_a, k_b = sa[-1], sb[-2] if nb > 1 else sb[0]
    if na > 2 or nb > 2:
        if nb > 2 or na == 1:  # batched: broadcast the batch dims, then bmm
            batch_error = _shapes_error([sa[:-2], sb[:-2]])
            if batch_error is not None:
                raise batch_error
            if k_a != k_b:
                batch = int(np.prod(np.broadcast_shapes(sa[:-2], sb[:-2]), dtype=np.int64))
                return RuntimeError("Expected size for first two dimensions of batch2 tensor to "
                                    f"be: [{batch}, {k_a}] but got: [{batch}, {k_b}].")
            return None
        sa = (int(np.prod(sa[:-1], dtype=np.int64)), k_a)  # PyTorch folds the batch into rows
    if k_a == k_b:
        return None
    if na == 1 and nb == 1:
        return RuntimeError(f"inconsistent tensor size, expected tensor [{k_a}] and src [{k_b}] to "
                            f"have the same number of elements, but got {k_a} and {k_b} elements "
                            "respectively")
    if nb == 1:
        return RuntimeError(f"size mismatch, got input ({sa[0]}), mat ({sa[0]}x{k_a}), "
                            f"vec ({k_b})")
    left = "x".join(map(str, sa if len(sa) > 1 else (1,) + sa))
    return RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({left} and "
                        f"{'x'.join(map(str, sb))})")
