"""torch.autograd.functional: jacobian, hessian, vjp, jvp, hvp built on reverse mode."""
import numpy as np


def _as_inputs(inputs):
    from ..tensor import Tensor
    is_tuple = isinstance(inputs, (tuple, list))
    xs = tuple(inputs) if is_tuple else (inputs,)
    return is_tuple, tuple(Tensor._wrap(np.array(x._data), requires_grad=True) for x in xs)


def _grads(outputs, inputs, seeds, create_graph):
    from . import grad
    from ..tensor import Tensor
    gs = grad(outputs, inputs, seeds, retain_graph=True, create_graph=create_graph,
              allow_unused=True)
    return tuple(Tensor._wrap(np.zeros(x.shape, x._data.dtype)) if g is None else g
                 for g, x in zip(gs, inputs))


def _unpack(is_tuple, values):
    return tuple(values) if is_tuple else values[0]


def _detached(values, create_graph):
    return values if create_graph else tuple(v.detach() for v in values)


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J).

    Args:
        func: a function of Tensors returning a Tensor (or a tuple of Tensors).
        inputs: a Tensor or a tuple of Tensors.
        v: the vector, shaped like func's output (may be omitted when that has one element).
        create_graph: keep the result differentiable.
        strict: accepted for PyTorch compatibility.

    Returns:
        (func(inputs), v^T J) with v^T J shaped like inputs.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.autograd.functional import vjp
        >>> vjp(lambda x: x ** 2, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))
        (tensor([1., 4.]), tensor([2., 4.]))
    """
    is_tuple, xs = _as_inputs(inputs)
    out = func(*xs)
    grads = _grads(out, xs, v, create_graph)
    return out.detach() if not create_graph else out, _unpack(is_tuple, _detached(grads, create_graph))


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v), by differentiating the vjp with respect to its cotangent.

    Args:
        func: a function of Tensors returning a Tensor (or a tuple of Tensors).
        inputs: a Tensor or a tuple of Tensors.
        v: the vector, shaped like inputs (may be omitted when that has one element).
        create_graph: keep the result differentiable.
        strict: accepted for PyTorch compatibility.

    Returns:
        (func(inputs), J v) with J v shaped like func's output.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.autograd.functional import jvp
        >>> jvp(lambda x: x ** 2, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))
        (tensor([1., 4.]), tensor([2., 4.]))
    """
    from ..tensor import Tensor
    is_tuple, xs = _as_inputs(inputs)
    out = func(*xs)
    u = Tensor._wrap(np.zeros(out.shape, out._data.dtype), requires_grad=True)
    grads = _grads(out, xs, u, create_graph=True)
    vs = (v if isinstance(v, (tuple, list)) else (v,)) if v is not None else tuple(
        Tensor._wrap(np.ones(x.shape, x._data.dtype)) for x in xs)
    from . import grad
    jv, = grad(grads, (u,), tuple(vs), create_graph=create_graph, allow_unused=True)
    if jv is None:
        jv = Tensor._wrap(np.zeros(out.shape, out._data.dtype))
    return (out if create_graph else out.detach()), (jv if create_graph else jv.detach())


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False):
    """d func / d inputs with shape out.shape + input.shape (a tuple per input/output pair).

    Args:
        func: a function of Tensors returning a Tensor (or a tuple of Tensors).
        inputs: a Tensor or a tuple of Tensors.
        create_graph: keep the result differentiable.
        strict: accepted for PyTorch compatibility.
        vectorize: accepted for PyTorch compatibility.

    Returns:
        The Jacobian Tensor (nested tuples for tuple inputs or outputs).

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.autograd.functional import jacobian
        >>> jacobian(lambda x: x ** 2, torch.tensor([1.0, 2.0]))
        tensor([[2., 0.],
                [0., 4.]])
    """
    from ..tensor import Tensor
    is_tuple, xs = _as_inputs(inputs)
    outs = func(*xs)
    outs_tuple = isinstance(outs, tuple)
    outs = outs if outs_tuple else (outs,)
    table = []
    for out in outs:
        rows = [[] for _ in xs]
        for j in range(out.numel()):
            seed = np.zeros(out.numel(), out._data.dtype)
            seed[j] = 1
            gs = _grads(out, xs, Tensor._wrap(seed.reshape(out.shape)), create_graph)
            for k, g in enumerate(gs):
                rows[k].append(g)
        row = []
        for x, gs in zip(xs, rows):
            from ..functions import stack
            stacked = stack(gs) if gs else Tensor._wrap(np.zeros((0,) + tuple(x.shape)))
            row.append(stacked.reshape(tuple(out.shape) + tuple(x.shape)))
        table.append(_unpack(is_tuple, _detached(row, create_graph)))
    return tuple(table) if outs_tuple else table[0]


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False):
    """The Jacobian of the gradient of a scalar function.

    Args:
        func: a function of Tensors returning a Tensor (or a tuple of Tensors).
        inputs: a Tensor or a tuple of Tensors.
        create_graph: keep the result differentiable.
        strict: accepted for PyTorch compatibility.
        vectorize: accepted for PyTorch compatibility.

    Returns:
        The Hessian, shaped input.shape + input.shape (nested tuples for tuple inputs).

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.autograd.functional import hessian
        >>> hessian(lambda x: (x ** 3).sum(), torch.tensor([1.0, 2.0]))
        tensor([[ 6.,  0.],
                [ 0., 12.]])
    """
    is_tuple, _ = _as_inputs(inputs)

    def gradient(*xs):
        out = func(*xs)
        if out.numel() != 1:
            raise RuntimeError("The function given to hessian should return a single element "
                               f"Tensor, but it returned a Tensor with {out.numel()} elements")
        gs = _grads(out, xs, None, create_graph=True)
        return gs if is_tuple else gs[0]

    return jacobian(gradient, inputs, create_graph=create_graph)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for a scalar function, by a second reverse sweep.

    Args:
        func: a function of Tensors returning a Tensor (or a tuple of Tensors).
        inputs: a Tensor or a tuple of Tensors.
        v: the vector, shaped like inputs (may be omitted when that has one element).
        create_graph: keep the result differentiable.
        strict: accepted for PyTorch compatibility.

    Returns:
        (func(inputs), H v) with H v shaped like inputs.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.autograd.functional import hvp
        >>> hvp(lambda x: (x ** 3).sum(), torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))
        (tensor(9.), tensor([ 6., 12.]))
    """
    from . import grad
    is_tuple, xs = _as_inputs(inputs)
    out = func(*xs)
    gs = _grads(out, xs, None, create_graph=True)
    vs = v if isinstance(v, (tuple, list)) else (v,)
    hv = grad(gs, xs, tuple(vs), create_graph=create_graph, allow_unused=True)
    hv = tuple(h if h is not None else x.detach() * 0 for h, x in zip(hv, xs))
    return (out if create_graph else out.detach()), _unpack(is_tuple, _detached(hv, create_graph))


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H): the Hessian is symmetric, so this is hvp.

    Args:
        func: a function of Tensors returning a one-element Tensor.
        inputs: a Tensor or a tuple of Tensors.
        v: the vector, shaped like inputs.
        create_graph: keep the result differentiable.
        strict: accepted for PyTorch compatibility.

    Returns:
        (func(inputs), v^T H) with v^T H shaped like inputs.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.autograd.functional import vhp
        >>> vhp(lambda x: (x ** 3).sum(), torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))
        (tensor(9.), tensor([ 6., 12.]))
    """
    return hvp(func, inputs, v, create_graph, strict)
