"""The torch.* namespace: factories, random numbers, and functions that mirror Tensor methods."""
import builtins
import functools
import math

import numpy as np

from . import dtypes
from . import primitives as P
from .operators import PrimitiveOperators
from .tensor import _COMPLEX_GRAD, Tensor, _View, _dim, _size_args, matmul as _tensor_matmul

_rng = [np.random.default_rng()]


def _generator():
    return _rng[0]


def manual_seed(seed):
    """Seed tapegrad's random generator, for repeatable ``randn``, ``rand``, ``randint``.

    tapegrad draws from NumPy's PCG64, so the numbers differ from PyTorch's for the same seed.

    Args:
        seed: an int.

    Returns:
        The new ``numpy.random.Generator``.

    Example:
        >>> import tapegrad as torch
        >>> _ = torch.manual_seed(0)
        >>> a = torch.randn(2)
        >>> _ = torch.manual_seed(0)
        >>> bool((torch.randn(2) == a).all())
        True
    """
    _rng[0] = np.random.default_rng(seed)
    return _rng[0]


def seed():
    return manual_seed(None)


# ---------------------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------------------

def _infer_dtype(data):
    """PyTorch's inference: floats -> float32, ints -> int64, bools -> bool; arrays keep theirs."""
    if isinstance(data, (np.ndarray, np.generic)):     # a NumPy scalar keeps its dtype too
        return data.dtype
    if isinstance(data, (list, tuple)):
        items = list(_flatten(data))
        if builtins.any(isinstance(x, np.generic) for x in items):
            # PyTorch promotes the elements' own types: NumPy scalars their dtypes, Python
            # numbers the defaults ([np.float16(1), np.float16(2)] stays float16)
            return functools.reduce(_promote, [_infer_dtype(x) for x in items])
    arr = np.asarray(data)
    if arr.dtype.kind == "f":
        return _DEFAULT_FLOAT[0]
    if arr.dtype.kind in "iu":
        return np.dtype(np.int64)
    if arr.dtype.kind == "b":
        return np.dtype(np.bool_)
    raise TypeError(f"tapegrad.tensor: could not infer dtype of {type(data).__name__}; pass "
                    "numbers, nested lists of numbers, or a NumPy array")


def _finish(data, requires_grad):
    t = Tensor._wrap(data)
    if requires_grad and data.dtype.kind == "c":
        raise RuntimeError(_COMPLEX_GRAD)
    if requires_grad and data.dtype.kind != "f":  # the factories' wording in PyTorch
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    if requires_grad:
        t.requires_grad_(True)
    return t


_DEFAULT_FLOAT = [np.dtype(np.float32)]   # torch.set_default_dtype changes it


def _resolve_dtype(dtype, default=None):
    if dtype is not None:
        return dtypes.to_numpy_dtype(dtype)
    return _DEFAULT_FLOAT[0] if default is None else np.dtype(default)


def set_default_dtype(d):
    """The float dtype of new tensors made from Python floats and of the factories (float32 or
    float64), as torch.set_default_dtype.

    Args:
        d: ``torch.float32`` or ``torch.float64``.

    Returns:
        None.

    Example:
        >>> import tapegrad as torch
        >>> torch.set_default_dtype(torch.float64)
        >>> torch.tensor([1.5]).dtype
        torch.float64
        >>> torch.set_default_dtype(torch.float32)
    """
    np_dtype = dtypes.to_numpy_dtype(d)
    if np_dtype not in (np.float32, np.float64):
        raise TypeError("only floating-point types are supported as the default type "
                        "(tapegrad: float32 or float64)")
    _DEFAULT_FLOAT[0] = np.dtype(np_dtype)
    from . import _tensor_str
    _tensor_str.DEFAULT_FLOAT[0] = np.dtype(np_dtype)


def get_default_dtype():
    return dtypes.from_numpy_dtype(_DEFAULT_FLOAT[0])


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new Tensor holding a copy of `data`.

    Args:
        data: a number, a (nested) list or tuple of numbers, a NumPy array or a Tensor.
        dtype: the dtype; by default floats become ``float32``, ints ``int64``, as in PyTorch.
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the Tensor are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.tensor([[1, 2], [3, 4]])
        tensor([[1, 2],
                [3, 4]])
        >>> torch.tensor([1.5], requires_grad=True)
        tensor([1.5000], requires_grad=True)
    """
    if isinstance(data, Tensor):
        data = data._data
    elif isinstance(data, (list, tuple)) and builtins.any(isinstance(x, Tensor)
                                                  for x in _flatten(data)):
        data = np.asarray([x.item() if isinstance(x, Tensor) else x for x in data])
    np_dtype = _resolve_dtype(dtype, _infer_dtype(data))
    return _finish(np.array(data, dtype=np_dtype, copy=True), requires_grad)


def _flatten(seq):
    for x in seq:
        if isinstance(x, (list, tuple)):
            yield from _flatten(x)
        else:
            yield x


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor) and dtype is None:
        return data
    if isinstance(data, np.ndarray) and (dtype is None or dtypes.to_numpy_dtype(dtype) == data.dtype):
        return Tensor._wrap(data)
    return tensor(data, dtype=dtype)


def from_numpy(array):
    dtypes.from_numpy_dtype(array.dtype)
    return Tensor._wrap(array)


def is_tensor(obj):
    return isinstance(obj, Tensor)


def _filled(size, value, dtype, requires_grad):
    shape = _size_args(size)
    return _finish(np.full(shape, value, dtype=_resolve_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    """A Tensor of ones.

    Args:
        *size: the shape, as ints or one sequence of ints.
        dtype: the dtype (default ``float32``, as in PyTorch).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.ones(2, 2, requires_grad=True)
        tensor([[1., 1.],
                [1., 1.]], requires_grad=True)
    """
    return _filled(size, 1, dtype, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    """A Tensor of zeros.

    Args:
        *size: the shape, as ints or one sequence of ints.
        dtype: the dtype (default ``float32``, as in PyTorch).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.zeros(3)
        tensor([0., 0., 0.])
    """
    return _filled(size, 0, dtype, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _filled(size, 0, dtype, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """A Tensor of shape `size` filled with `fill_value`.

    Args:
        size: the shape, a sequence of ints.
        fill_value: the number to fill with; its type gives the dtype unless `dtype` is given.
        dtype: the dtype.
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.full([1], 2.0, requires_grad=True)
        tensor([2.], requires_grad=True)
    """
    if dtype is None:
        dtype = _infer_dtype(fill_value)
    return _finish(np.full(_size_args((size,)), fill_value, dtype=_resolve_dtype(dtype)),
                   requires_grad)


def _like(name, summary, example, printed):
    """zeros_like & co.: `name`(input) is the factory `name` at input's shape and dtype."""
    fill = globals()[name]

    def factory(input, dtype=None, device=None, requires_grad=False):
        return fill(input.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)
    factory.__name__ = factory.__qualname__ = name + "_like"
    factory.__doc__ = summary + "\n" + _LIKE_DOC.format(example=example, printed=printed)
    return factory


_LIKE_DOC = """
    Args:
        input: the Tensor whose shape (and, by default, dtype) the result takes.
        dtype: the dtype (default: input's dtype).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> {example}
        {printed}
"""


def rand(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """A Tensor of uniform samples in [0, 1) from tapegrad's generator (see ``manual_seed``).

    Args:
        *size: the shape, as ints or one sequence of ints.
        dtype: the dtype (default ``float32``, as in PyTorch).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.
        generator: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.rand(2, 3).shape
        torch.Size([2, 3])
    """
    data = _generator().random(_size_args(size)).astype(_resolve_dtype(dtype))
    return _finish(data, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False, generator=None):
    """A Tensor of standard normal samples from tapegrad's generator (see ``manual_seed``).

    Args:
        *size: the shape, as ints or one sequence of ints.
        dtype: the dtype (default ``float32``, as in PyTorch).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.
        generator: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.randn(2, 3).shape
        torch.Size([2, 3])
    """
    data = _generator().standard_normal(_size_args(size)).astype(_resolve_dtype(dtype))
    return _finish(data, requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None, requires_grad=False,
            generator=None):
    if isinstance(high, (tuple, list)) and size == ():   # torch.randint(high, size)
        high, size = None, high
    low, high = (0, low) if high is None else (low, high)
    data = _generator().integers(low, high, _size_args((size,)))
    return _finish(data.astype(_resolve_dtype(dtype, np.int64)), requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    """A Tensor shaped like `input`, every element `fill_value`.

    Args:
        input: the Tensor whose shape (and, by default, dtype) the result takes.
        fill_value: the value of every element.
        dtype: the dtype (default: input's dtype).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.full_like(torch.tensor([1.0, 2.0]), 7)
        tensor([7., 7.])
    """
    return full(input.shape, fill_value, dtype=dtype or input.dtype, requires_grad=requires_grad)


ones_like = _like("ones", "A Tensor of ones shaped like `input`.",
                  "torch.ones_like(torch.tensor([1.0, 2.0]))", "tensor([1., 1.])")
zeros_like = _like("zeros", "A Tensor of zeros shaped like `input`.",
                   "torch.zeros_like(torch.tensor([1.0, 2.0]))", "tensor([0., 0.])")
empty_like = zeros_like
rand_like = _like("rand", "A Tensor of uniform samples in [0, 1) shaped like `input`.",
                  "torch.rand_like(torch.tensor([1.0, 2.0])).shape", "torch.Size([2])")
randn_like = _like("randn", "A Tensor of standard normal samples shaped like `input`.",
                   "torch.randn_like(torch.tensor([1.0, 2.0])).shape", "torch.Size([2])")


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """A 1-d Tensor of the numbers from `start` (inclusive) to `end` (exclusive) by `step`.

    Args:
        start: the first number, or the end when `end` is not given (then the start is 0).
        end: the end, not included.
        step: the spacing.
        dtype: the dtype (default ``int64`` for integer arguments, else ``float32``).
        device: accepted for PyTorch compatibility.
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.arange(4)
        tensor([0, 1, 2, 3])
    """
    start, end = (0, start) if end is None else (start, end)
    is_int = builtins.all(isinstance(v, (int, np.integer)) for v in (start, end, step))
    data = np.arange(start, end, step).astype(_resolve_dtype(dtype, np.int64 if is_int else None))
    return _finish(data, requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """A 1-d Tensor of `steps` evenly spaced numbers from `start` to `end`, both included.

    Args:
        start: the first number.
        end: the last number.
        steps: how many numbers.
        dtype: the dtype (default ``float32``, as in PyTorch).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.linspace(0, 1, 3)
        tensor([0.0000, 0.5000, 1.0000])
    """
    return _finish(np.linspace(start, end, steps).astype(_resolve_dtype(dtype)), requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    """A 2-d Tensor with ones on the diagonal and zeros elsewhere.

    Args:
        n: the number of rows.
        m: the number of columns (default n).
        dtype: the dtype (default ``float32``, as in PyTorch).
        device: accepted for PyTorch compatibility (tapegrad Tensors live on the CPU).
        requires_grad: whether operations on the result are recorded for gradients.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> torch.eye(2)
        tensor([[1., 0.],
                [0., 1.]])
    """
    return _finish(np.eye(n, m, dtype=_resolve_dtype(dtype)), requires_grad)


# ---------------------------------------------------------------------------------------------
# Functions over tensors
# ---------------------------------------------------------------------------------------------

def _method(name):
    """torch.NAME(input, ...) calls input.NAME(...), wrapping Python numbers and arrays first."""
    def general(input, *args, out=None, **kwargs):
        # a traced value (tg.exp(x) inside tg.jit) takes its own method, as a Tensor does
        if not isinstance(input, (Tensor, PrimitiveOperators)):
            input = as_tensor(input)
        result = getattr(input, name)(*args, **kwargs)
        # out= handled here, not by a wrapper: one Python frame per torch.NAME call
        return result if out is None else _write_out(result, out)

    prim = _UNARY_PRIMS.get(name)
    if prim is None:
        function = general
    else:
        def function(input, *args, out=None, **kwargs):
            # a plain tensor alone: what input.NAME() binds, one frame less (scalar graphs)
            if type(input) in _PLAIN and out is None and not args and not kwargs:
                return Tensor._bind(prim, (input,), {})
            return general(input, *args, out=out, **kwargs)
    function.__name__ = name
    function.__doc__ = f"torch.{name}: see Tensor.{name}."
    return function


_PLAIN = frozenset({Tensor, _View})  # (Tensor._bind serves both)
# elementwise methods whose Tensor form binds one primitive (PrimitiveOperators' t.exp() and
# friends, where Tensor keeps them)
_UNARY_PRIMS = {name: prim for name, prim in (
    ("exp", P.exp), ("log", P.log), ("log1p", P.log1p), ("expm1", P.expm1), ("sqrt", P.sqrt),
    ("sin", P.sin), ("cos", P.cos), ("tan", P.tan), ("tanh", P.tanh), ("sigmoid", P.sigmoid),
    ("relu", P.relu)) if getattr(Tensor, name) is getattr(PrimitiveOperators, name)}


_METHOD_FUNCTIONS = (
    "add sub mul div pow neg exp log log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid relu abs erf "
    "sign square reciprocal clamp clip sum mean prod amax amin max min argmax argmin logsumexp "
    "norm softmax log_softmax std var reshape flatten squeeze unsqueeze t transpose permute "
    "unbind split chunk numel maximum minimum logaddexp logaddexp2 clone detach "
    "asin arcsin acos arccos atan arctan asinh arcsinh acosh arccosh atanh arctanh sinh cosh "
    "log2 log10 exp2 trunc ceil atan2 arctan2 hypot fmax fmin remainder fmod erfc lgamma "
    "digamma").split()
globals().update({name: _method(name) for name in _METHOD_FUNCTIONS})
subtract, multiply, divide, absolute = sub, mul, div, abs  # noqa: F821 (made just above)


def polygamma(n, input):
    """torch.polygamma(n, input): the n-th derivative of digamma."""
    return (input if isinstance(input, Tensor) else as_tensor(input)).polygamma(n)


def where(condition, input=None, other=None):
    """Elements of `input` where `condition` holds, else of `other`; with `condition` alone, the
    indices where it holds.

    Args:
        condition: a bool Tensor (or array), broadcast against the others.
        input: values where `condition` is true.
        other: values where it is false.

    Returns:
        The Tensor of chosen values (gradients flow to `input` and `other` where chosen), or a
        tuple of index Tensors, one per axis.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([-1.0, 2.0])
        >>> torch.where(x > 0, x, torch.zeros(2))
        tensor([0., 2.])
    """
    if input is None:
        return tuple(Tensor._wrap(i) for i in np.nonzero(_data_of(condition)))
    return P.where(condition, input, other)


def _data_of(x):
    return x._data if isinstance(x, Tensor) else np.asarray(x)


def cat(tensors, dim=0):
    """Join Tensors of the same shape (but for `dim`) along the existing axis `dim`.

    Args:
        tensors: a non-empty sequence of Tensors.
        dim: the axis to join along.

    Returns:
        The joined Tensor; gradients flow back to each part.

    Example:
        >>> import tapegrad as torch
        >>> torch.cat([torch.ones(1), torch.zeros(2)])
        tensor([1., 0., 0.])
    """
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if getattr(t, "ndim", 1) == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be "
                               "concatenated")
    axis = _dim(dim, tensors[0].ndim)
    first = tuple(tensors[0].shape)
    for i, t in enumerate(tensors[1:], 1):
        shape = tuple(t.shape)
        if len(shape) != len(first):
            raise RuntimeError("Tensors must have same number of dimensions: got "
                               f"{len(first)} and {len(shape)}")
        for d, (n, m) in enumerate(zip(first, shape)):
            if d != axis and n != m:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {axis}. "
                                   f"Expected size {n} but got size {m} for tensor number {i} "
                                   "in the list.")
    return P.cat(*tensors, axis=axis)


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join Tensors of one shape along a new axis `dim`.

    Args:
        tensors: a non-empty sequence of Tensors of the same shape.
        dim: the position of the new axis.

    Returns:
        The stacked Tensor; gradients flow back to each part.

    Example:
        >>> import tapegrad as torch
        >>> torch.stack([torch.ones(2), torch.zeros(2)])
        tensor([[1., 1.],
                [0., 0.]])
    """
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise RuntimeError("stack expects each tensor to be equal size, but got "
                               f"{list(tensors[0].shape)} at entry 0 and {list(t.shape)} at "
                               f"entry {i}")
    return P.stack(*tensors, axis=_dim(dim, tensors[0].ndim + 1))


def broadcast_to(input, shape):
    return input.expand(shape)


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return builtins.bool(np.allclose(_data_of(a), _data_of(b), rtol, atol, equal_nan))


def equal(a, b):
    return builtins.bool(np.array_equal(_data_of(a), _data_of(b)))


def is_grad_enabled():
    from .autograd.grad_mode import is_grad_enabled as enabled
    return enabled()


# ---------------------------------------------------------------------------------------------
# out= arguments, legacy constructors, and the rest of the torch.* breadth
# ---------------------------------------------------------------------------------------------

def _write_out(result, out):
    """PyTorch's out=: the result is written into `out` (resized if its shape differs), and `out`
    itself is returned."""
    if out is None:
        return result
    if not isinstance(out, Tensor):
        raise TypeError(f"argument 'out' must be Tensor, not {type(out).__name__}")
    from .autograd.grad_mode import is_grad_enabled as enabled
    if enabled() and (out.requires_grad or result.requires_grad):
        raise RuntimeError("functions with out=... arguments don't support automatic "
                           "differentiation, but one of the arguments requires grad.")
    data = result._data
    if out._data.shape != data.shape:
        out._data = np.empty(data.shape, out._data.dtype)
    np.copyto(out._data, data, casting="unsafe")
    out._version_counter[0] += 1
    return out


def _accepts_out(fn, checks_device=False):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, out=None, **kwargs):
        if checks_device:
            from ._device import check_device
            check_device(kwargs.get("device"))
            if out is not None and kwargs.get("dtype") is None:
                kwargs["dtype"] = out.dtype
        return _write_out(fn(*args, **kwargs), out)
    return wrapper


def matmul(input, other, *, out=None):
    """Matrix product with NumPy's broadcasting rules (torch.matmul).

    Args:
        input: the first Tensor.
        other: the second Tensor.
        out: a Tensor to write the result into.

    Returns:
        The product (or `out`).

    Example:
        >>> import tapegrad as torch
        >>> torch.matmul(torch.ones(2, 3), torch.ones(3))
        tensor([3., 3.])
    """
    return _write_out(_tensor_matmul(input, other), out)


def logspace(start, end, steps, base=10.0, dtype=None, device=None, requires_grad=False):
    data = np.logspace(start, end, steps, base=base).astype(_resolve_dtype(dtype))
    return _finish(data, requires_grad)


def randperm(n, dtype=None, device=None, requires_grad=False, generator=None):
    return _finish(_generator().permutation(n).astype(_resolve_dtype(dtype, np.int64)),
                   requires_grad)


def range(start, end=None, step=1, dtype=None, device=None, requires_grad=False):  # noqa: A001
    """torch.range (deprecated in PyTorch): like arange, but `end` is included."""
    start, end = (0, start) if end is None else (start, end)
    count = int(math.floor((end - start) / step)) + 1
    data = (start + step * np.arange(count)).astype(_resolve_dtype(dtype))
    return _finish(data, requires_grad)


def normal(mean, std=1.0, size=None, *, generator=None, out=None, dtype=None):
    m, s = _data_of(mean) if isinstance(mean, Tensor) else mean, \
        _data_of(std) if isinstance(std, Tensor) else std
    shape = size if size is not None else np.broadcast(np.asarray(m), np.asarray(s)).shape
    like = mean if isinstance(mean, Tensor) else std if isinstance(std, Tensor) else None
    kind = like.np_dtype if like is not None else _resolve_dtype(dtype)
    return _write_out(Tensor._wrap(_generator().normal(m, s, shape).astype(kind)), out)


def poisson(input, generator=None):
    return Tensor._wrap(_generator().poisson(input._data).astype(input.np_dtype))


def bernoulli(input, p=None, *, generator=None):
    prob = input._data if p is None else np.full(input.shape, p)
    return Tensor._wrap((_generator().random(input.shape) < prob).astype(input.np_dtype))


def randint_like(input, low=0, high=None, dtype=None, device=None, requires_grad=False):
    low, high = (0, low) if high is None else (low, high)
    data = _generator().integers(low, high, tuple(input.shape))
    return _finish(data.astype(_resolve_dtype(dtype, input.np_dtype)), requires_grad)


def hstack(tensors):
    tensors = list(tensors)
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


row_stack = vstack


def dstack(tensors):
    parts = [t.reshape(1, -1, 1) if t.ndim < 2 else (t.unsqueeze(-1) if t.ndim == 2 else t)
             for t in tensors]
    return cat(parts, 2)


def column_stack(tensors):
    return cat([t.reshape(-1, 1) if t.ndim < 2 else t for t in tensors], 1)


def diagflat(input, offset=0):
    return input.flatten().diag(offset)


def isin(elements, test_elements, *, assume_unique=False, invert=False):
    return Tensor._wrap(np.isin(_data_of(elements), _data_of(test_elements), invert=invert))


def searchsorted(sorted_sequence, values, *, out_int32=False, right=False, side=None,
                 sorter=None):
    side = side or ("right" if right else "left")
    seq, vals = _data_of(sorted_sequence), _data_of(values)
    if seq.ndim == 1:
        found = np.searchsorted(seq, vals, side=side)
    else:
        found = np.stack([np.searchsorted(s, v, side=side) for s, v in
                          zip(seq.reshape(-1, seq.shape[-1]), vals.reshape(-1, vals.shape[-1]))]
                         ).reshape(vals.shape)
    return Tensor._wrap(np.asarray(found, np.int32 if out_int32 else np.int64))


def trapezoid(y, x=None, *, dx=None, dim=-1):
    dim = _dim(dim, y.ndim)
    n = y.shape[dim]
    mids = (y.narrow(dim, 1, n - 1) + y.narrow(dim, 0, n - 1)) / 2
    if x is None:
        return (mids * (1.0 if dx is None else dx)).sum(dim)
    return (mids * x.diff(dim=-1 if x.ndim == 1 else dim)).sum(dim)


trapz = trapezoid


class inference_mode:
    """torch.inference_mode: here the same as no_grad (no graph is recorded)."""

    def __init__(self, mode=True):
        from .autograd.grad_mode import no_grad
        self.mode, self._inner = mode, no_grad()

    def __enter__(self):
        if self.mode:
            self._inner.__enter__()

    def __exit__(self, *exc):
        if self.mode:
            self._inner.__exit__(*exc)

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(self.mode):
                return fn(*args, **kwargs)
        return wrapper


_settings = {"deterministic": False, "matmul_precision": "highest"}


def use_deterministic_algorithms(mode, *, warn_only=False):
    """Recorded only: tapegrad's CPU kernels are deterministic already."""
    _settings["deterministic"] = builtins.bool(mode)


def are_deterministic_algorithms_enabled():
    return _settings["deterministic"]


def set_float32_matmul_precision(precision):
    if precision not in ("highest", "high", "medium"):
        raise RuntimeError(f"Invalid float32 matmul precision: {precision}")
    _settings["matmul_precision"] = precision   # NumPy's matmul is full precision regardless


def get_float32_matmul_precision():
    return _settings["matmul_precision"]


def get_num_threads():
    import os
    return os.cpu_count() or 1


def set_num_threads(n):
    """Accepted: NumPy's BLAS threads are set by its environment (OMP_NUM_THREADS)."""
    if n < 1:
        raise RuntimeError("set_num_threads expects a positive integer")


def is_inference_mode_enabled():
    return False


def initial_seed():
    return _generator().bit_generator.seed_seq.entropy


def get_rng_state():
    """The generator's state as a uint8 tensor (tapegrad's PCG64 state, not PyTorch's)."""
    import pickle
    return Tensor._wrap(np.frombuffer(pickle.dumps(_generator().bit_generator.state),
                                      np.uint8).copy())


def set_rng_state(new_state):
    import pickle
    _generator().bit_generator.state = pickle.loads(_data_of(new_state).tobytes())


class finfo:
    """Floating-point limits of a dtype, under PyTorch's attribute names."""

    def __init__(self, type=None):
        self.dtype = dtypes.float32 if type is None else type
        info = np.finfo(dtypes.to_numpy_dtype(self.dtype))
        self.bits, self.eps, self.max, self.min = info.bits, float(info.eps), float(info.max), \
            float(info.min)
        self.tiny = self.smallest_normal = float(info.tiny)
        self.resolution = float(info.resolution)

    def __repr__(self):
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, "
                f"eps={self.eps:g}, smallest_normal={self.tiny:g}, tiny={self.tiny:g}, "
                f"dtype={self.dtype.name})")


class iinfo:
    def __init__(self, type):
        info = np.iinfo(dtypes.to_numpy_dtype(type))
        self.dtype, self.bits, self.max, self.min = type, info.bits, int(info.max), int(info.min)

    def __repr__(self):
        return f"iinfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype.name})"


def _promote(a, b):
    # PyTorch: a float meets an integer or bool -> that float (NumPy would widen int64 + float32)
    if (a.kind == "f") != (b.kind == "f"):
        return a if a.kind == "f" else b
    return np.promote_types(a, b)


def promote_types(type1, type2):
    return dtypes.from_numpy_dtype(_promote(dtypes.to_numpy_dtype(type1),
                                            dtypes.to_numpy_dtype(type2)))


def can_cast(from_, to):
    return builtins.bool(np.can_cast(dtypes.to_numpy_dtype(from_), dtypes.to_numpy_dtype(to),
                                     "same_kind"))


def result_type(tensor1, tensor2):
    return (tensor1 + tensor2).dtype if isinstance(tensor1, Tensor) or isinstance(
        tensor2, Tensor) else dtypes.from_numpy_dtype(np.result_type(tensor1, tensor2))


_FACTORIES = "ones zeros empty full rand randn randint arange linspace eye logspace randperm".split()
_METHOD_FUNCTIONS = _METHOD_FUNCTIONS + (
    "floor round frac eq ne lt le gt ge isnan isinf isfinite nan_to_num logical_and logical_or "
    "logical_not logical_xor bitwise_and bitwise_or bitwise_xor bitwise_not mm bmm mv dot outer "
    "ger addmm cross trace diagonal diag select narrow movedim moveaxis swapaxes swapdims flip "
    "fliplr flipud roll repeat_interleave tile unflatten ravel masked_fill masked_select gather "
    "index_select scatter scatter_add index_add nonzero argwhere count_nonzero sort argsort msort "
    "topk kthvalue median unique cumsum cumprod cummax cummin logcumsumexp diff tril triu "
    "aminmax nansum nanmean clamp_min clamp_max lerp exp_ log_ sin_ cos_ tan_ tanh_ sqrt_ "
    "sigmoid_ relu_ floor_ ceil_ trunc_ round_ square addcdiv addcmul baddbmm isclose deg2rad "
    "rad2deg dist inner vdot kron logit xlogy sinc sgn signbit take take_along_dim index_copy "
    "tensor_split rot90 quantile nanmedian bincount histc unique_consecutive multinomial "
    "diag_embed matrix_power all any hardshrink".split())
for _name in _METHOD_FUNCTIONS:
    globals()[_name] = _method(_name)
for _name in _FACTORIES:
    globals()[_name] = _accepts_out(globals()[_name], checks_device=True)
subtract, multiply, divide, absolute = sub, mul, div, abs  # noqa: F821
clip = clamp  # noqa: F821
true_divide = div  # noqa: F821
negative = neg  # noqa: F821
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne  # noqa: F821


def einsum(equation, *operands):
    """Einstein summation over Tensors (torch.einsum), built from products, sums and permutes.

    Args:
        equation: e.g. 'ij,jk->ik'.
        *operands: the Tensors (or one sequence of them).

    Returns:
        The Tensor; gradients flow to every operand.

    Example:
        >>> import tapegrad as torch
        >>> torch.einsum('ij,j->i', torch.ones(2, 3), torch.ones(3))
        tensor([3., 3.])
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError(f"einsum(): {len(terms)} operands in the equation but "
                           f"{len(operands)} given")
    if "." in equation:
        raise NotImplementedError("einsum: ellipsis ('...') is not supported")
    if not arrow:
        counts = {}
        for c in lhs.replace(",", ""):
            counts[c] = counts.get(c, 0) + 1
        rhs = "".join(sorted(c for c, n in counts.items() if n == 1))
    letters = []
    for c in lhs.replace(",", "") + rhs:
        if c not in letters:
            letters.append(c)
    product = None
    for term, x in zip(terms, operands):
        x = x if isinstance(x, Tensor) else as_tensor(x)
        # a repeated letter in one term is a diagonal
        for c in set(term):
            while term.count(c) > 1:
                i = term.index(c)
                j = term.index(c, i + 1)
                x = x.diagonal(0, i, j)
                term = term[:i] + term[i + 1:j] + term[j + 1:] + c
        order = [term.index(c) for c in letters if c in term]
        x = x.permute(*order) if order != list(builtins.range(len(order))) else x
        shape = [x.shape[[c for c in letters if c in term].index(c)] if c in term else 1
                 for c in letters]
        x = x.reshape(shape)
        product = x if product is None else product * x
    summed = tuple(i for i, c in enumerate(letters) if c not in rhs)
    if summed:
        product = product.sum(summed)
    kept = [c for c in letters if c in rhs]
    return product.permute(*[kept.index(c) for c in rhs]) if kept != list(rhs) else product


def tensordot(a, b, dims=2):
    """Sums of products over the last `dims` axes of a and the first of b (or the given axes)."""
    if isinstance(dims, int):
        dims = (list(builtins.range(a.ndim - dims, a.ndim)), list(builtins.range(dims)))
    da, db = ([d % a.ndim for d in dims[0]], [d % b.ndim for d in dims[1]])
    free_a = [d for d in builtins.range(a.ndim) if d not in da]
    free_b = [d for d in builtins.range(b.ndim) if d not in db]
    k = int(np.prod([a.shape[d] for d in da]))
    left = a.permute(*(free_a + da)).reshape(-1, k)
    right = b.permute(*(db + free_b)).reshape(k, -1)
    shape = tuple(a.shape[d] for d in free_a) + tuple(b.shape[d] for d in free_b)
    return (left @ right).reshape(shape)


def meshgrid(*tensors, indexing="ij"):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    n = len(tensors)
    shape = [t.numel() for t in tensors]
    if indexing == "xy" and n >= 2:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for i, t in enumerate(tensors):
        view = [1] * n
        axis = i if indexing == "ij" or n < 2 else (1 - i if i < 2 else i)
        view[axis] = -1
        out.append(t.reshape(view).expand(*shape))
    return tuple(out)


def svd(input, some=True, compute_uv=True):
    """torch.svd: U, S, V with input = U diag(S) V^T (V, not V^T, as torch.svd returns)."""
    from ._tensor_methods import _SvdResult
    if not some:
        raise NotImplementedError("torch.svd(some=False): tapegrad computes the thin SVD")
    return _SvdResult(P.svd_u(input), P.svd_values(input), P.svd_vt(input).mT)


def std_mean(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    """(std, mean) over `dim`, as torch.std_mean returns them."""
    unbiased = correction != 0 if unbiased is None else unbiased
    return (input.std(dim, keepdim=keepdim, unbiased=unbiased),
            input.mean(dim, keepdim=keepdim))


def var_mean(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    """(var, mean) over `dim`, as torch.var_mean returns them."""
    unbiased = correction != 0 if unbiased is None else unbiased
    return (input.var(dim, keepdim=keepdim, unbiased=unbiased),
            input.mean(dim, keepdim=keepdim))


def det(input):
    return P.det(input)


def logdet(input):
    sign = P.sign(P.det(input))
    return P.where(sign > 0, P.logabsdet(input), np.nan)


def slogdet(input):
    from ._tensor_methods import return_type
    from . import linalg
    return return_type("slogdet", ["sign", "logabsdet"])(*linalg.slogdet(input))


def inverse(input):
    return P.inv(input)


def pinverse(input, rcond=1e-15):
    return P.pinv(input, rcond=float(rcond))


def cholesky(input, upper=False):
    lower = P.cholesky(input)
    return lower.mT if upper else lower


def numel(input):
    return input.numel()


def is_floating_point(input):
    return input.is_floating_point()


def is_nonzero(input):
    return builtins.bool(input)


def chain_matmul(*matrices):
    out = matrices[0]
    for m in matrices[1:]:
        out = out @ m
    return out


def block_diag(*tensors):
    rows = builtins.sum(t.shape[0] for t in tensors)
    parts, start = [], 0
    cols = builtins.sum(t.shape[1] for t in tensors)
    for t in tensors:
        left = zeros(t.shape[0], start, dtype=t.dtype)
        right = zeros(t.shape[0], cols - start - t.shape[1], dtype=t.dtype)
        parts.append(cat([left, t, right], 1))
        start += t.shape[1]
    out = cat(parts, 0)
    assert out.shape[0] == rows
    return out


def cdist(x1, x2, p=2.0):
    diff = x1.unsqueeze(-2) - x2.unsqueeze(-3)
    if p == 2.0:
        return (diff * diff).sum(-1).sqrt()
    return (diff.abs() ** p).sum(-1) ** (1.0 / p)


def from_dlpack(ext):
    return from_numpy(np.from_dlpack(ext))


class _LegacyTensorType(type):
    """torch.FloatTensor and kin: calling one builds a tensor of its dtype; isinstance checks
    the dtype, as in PyTorch."""
    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj.np_dtype == cls.np_dtype

    def __call__(cls, *args, **kwargs):
        from ._tensor_methods import legacy_new
        return legacy_new(cls.np_dtype, args, kwargs)

    def __repr__(cls):
        return f"<class 'torch.{cls.__name__}'>"


def _legacy(name, np_dtype):
    return _LegacyTensorType(name, (), {"np_dtype": np.dtype(np_dtype)})


FloatTensor = _legacy("FloatTensor", np.float32)
DoubleTensor = _legacy("DoubleTensor", np.float64)
HalfTensor = _legacy("HalfTensor", np.float16)
LongTensor = _legacy("LongTensor", np.int64)
IntTensor = _legacy("IntTensor", np.int32)
ShortTensor = _legacy("ShortTensor", np.int16)
CharTensor = _legacy("CharTensor", np.int8)
ByteTensor = _legacy("ByteTensor", np.uint8)
BoolTensor = _legacy("BoolTensor", np.bool_)


pi = math.pi
inf = math.inf
nan = math.nan
e = math.e


__all__ = sorted(name for name, value in globals().items()
                 if not name.startswith("_") and not isinstance(value, type(np))
                 and name not in {"builtins", "P", "Tensor", "dtypes"}
                 and not isinstance(value, _LegacyTensorType))
