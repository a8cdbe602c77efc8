"""torch.autograd: backward, grad, custom Functions, gradcheck, anomaly detection, functional API."""
import numpy as np

from . import graph
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .function import Function
from .variable import Variable
from . import profiler
from .gradcheck import gradcheck, gradgradcheck
from .anomaly import detect_anomaly
from . import functional

__all__ = ["backward", "grad", "Function", "gradcheck", "gradgradcheck", "detect_anomaly",
           "functional", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _root_grads(outputs, grad_outputs, create_graph):
    """The gradient fed to each output: given, or 1 for a scalar; PyTorch's errors otherwise."""
    Tensor = graph.Tensor
    grads = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not out.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have "
                               "a grad_fn")
        if g is None:
            data = out._data
            if data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = np.empty(data.shape, dtype=data.dtype)
            g.fill(1)
            grads.append(Tensor._wrap(g) if create_graph else g)
            continue
        g_data = g._data if isinstance(g, Tensor) else np.asarray(g, dtype=out._data.dtype)
        if g_data.shape != out._data.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                               f"{out.shape.__class__(g_data.shape)} and output[{i}] has a shape of {out.shape}.")
        if create_graph:
            grads.append(g if isinstance(g, Tensor) else Tensor._wrap(g_data))
        else:
            grads.append(g_data.astype(out._data.dtype, copy=False))
    return grads


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of `tensors` into the ``.grad`` of the leaves of their graph.

    Args:
        tensors: a Tensor or a sequence of Tensors to differentiate.
        grad_tensors: the gradient with respect to each tensor (required for non-scalars).
        retain_graph: keep the graph for another backward (default: `create_graph`).
        create_graph: record the backward pass itself, for higher derivatives.
        inputs: accumulate into these Tensors only.

    Returns:
        None; the gradients are in ``.grad``.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> torch.autograd.backward((x ** 3).sum())
        >>> x.grad
        tensor([ 3., 12.])
    """
    if (grad_tensors is None and inputs is None and isinstance(tensors, graph.Tensor)
            and tensors._requires_grad and tensors._data.size == 1):
        # the common case, `loss.backward()`: one scalar root, its gradient implied (as _root_grads)
        data = tensors._data
        g = np.empty(data.shape, dtype=data.dtype)
        g.fill(1)
        retain = create_graph if retain_graph is None else retain_graph
        graph.run_backward([graph.node_of(tensors)], [graph.Tensor._wrap(g) if create_graph else g],
                           retain, create_graph)
        return
    tensors = _as_tuple(tensors)
    grad_tensors = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(tensors)
    retain = create_graph if retain_graph is None else retain_graph
    roots = _root_grads(tensors, grad_tensors, create_graph)
    if inputs is not None:
        inputs = _as_tuple(inputs)
        captured = grad(tensors, inputs, grad_tensors, retain, create_graph, allow_unused=True)
        for x, g in zip(inputs, captured):
            if g is not None:
                x.grad = g if x.grad is None else x.grad + g
        return
    graph.run_backward([graph.node_of(t) for t in tensors], roots, retain, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, materialize_grads=False):
    """The gradients of `outputs` with respect to `inputs`, returned rather than accumulated.

    Args:
        outputs: a Tensor or sequence of Tensors to differentiate.
        inputs: the Tensors to differentiate with respect to.
        grad_outputs: the gradient with respect to each output (required for non-scalars).
        retain_graph: keep the graph for another backward (default: `create_graph`).
        create_graph: record the backward pass itself, for higher derivatives.
        allow_unused: return None (instead of raising) for inputs the outputs do not use.
        materialize_grads: return zeros instead of None for unused inputs.

    Returns:
        A tuple with one gradient Tensor (or None) per input.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> torch.autograd.grad((x * x).sum(), [x])
        (tensor([2., 4.]),)
    """
    from ..tensor import Tensor
    outputs, inputs = _as_tuple(outputs), _as_tuple(inputs)
    grad_outputs = (_as_tuple(grad_outputs) if grad_outputs is not None
                    else (None,) * len(outputs))
    retain = create_graph if retain_graph is None else retain_graph
    for x in inputs:
        if not x.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    roots = _root_grads(outputs, grad_outputs, create_graph)
    capture = {graph.node_of(x): None for x in inputs}
    graph.run_backward([graph.node_of(t) for t in outputs], roots, retain, create_graph, capture)
    result = []
    for i, x in enumerate(inputs):
        g = capture[graph.node_of(x)]
        if g is None:
            if materialize_grads:
                result.append(Tensor._wrap(np.zeros(x.shape, x._data.dtype)))
                continue
            if not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (input {i}) appears to not have been used "
                    "in the graph. Set allow_unused=True if this is the desired behavior.")
            result.append(None)
        elif isinstance(g, Tensor):
            result.append(g)
        else:
            result.append(Tensor._wrap(np.array(g, dtype=x._data.dtype)))
    return tuple(result)

