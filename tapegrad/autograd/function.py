"""autograd.Function: user-defined forward and backward, as in PyTorch."""
import numpy as np

from .grad_mode import is_grad_enabled, no_grad
from . import graph


class FunctionCtx:
    """The `ctx` handed to forward and backward."""

    def __init__(self):
        self._saved, self._saved_versions = (), ()
        self.needs_input_grad = ()
        self.materialize_grads = True

    def save_for_backward(self, *tensors):
        self._saved = tensors
        self._saved_versions = tuple(getattr(t, "_version", None) for t in tensors)

    @property
    def saved_tensors(self):
        # PyTorch refuses to hand back a saved tensor that was written in place since
        for t, version in zip(self._saved, self._saved_versions):
            if version is not None and t._version != version:
                raise graph._modified_error(t.type(), t.shape, t.grad_fn, t._version, version,
                                            "it was saved with ctx.save_for_backward")
        return self._saved

    def mark_non_differentiable(self, *tensors):
        self.non_differentiable = tensors

    def set_materialize_grads(self, value):
        self.materialize_grads = value


class _FunctionNode(graph.Node):
    """Graph node for a custom Function: backward calls the user's rule."""

    __slots__ = ("fn", "ctx", "inputs", "freed")

    def __init__(self, fn, ctx, inputs, next_functions):
        self._seq = next(graph._sequence)
        self.fn, self.ctx, self.inputs = fn, ctx, inputs
        self.next_functions = next_functions
        self._pre_hooks = None
        self._retained = None
        self.freed = False

    def name(self):
        return type(self).__name__

    def input_grads(self, g, create_graph):
        from ..tensor import Tensor
        if self.freed:
            raise RuntimeError(graph._FREED_MESSAGE)
        g_tensor = g if isinstance(g, Tensor) else Tensor._wrap(g)
        grads = self.fn.backward(self.ctx, g_tensor)
        grads = grads if isinstance(grads, tuple) else (grads,)
        if len(grads) != len(self.inputs):
            raise RuntimeError(
                f"function {self.fn.__name__}Backward returned an incorrect number of gradients "
                f"(expected {len(self.inputs)}, got {len(grads)})")
        out = []
        for nxt, x, gx in zip(self._next, self.inputs, grads):
            if nxt is None or gx is None:
                out.append(None)
                continue
            if tuple(gx.shape) != tuple(x.shape):
                raise RuntimeError(
                    f"Function {self.fn.__name__}Backward returned an invalid gradient at index "
                    f"{len(out)} - got {list(gx.shape)} but expected shape compatible with "
                    f"{list(x.shape)}")
            out.append(gx if create_graph else gx._data)
        return out


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, *grad_outputs)`; call `.apply`.

    Returns:
        ``Subclass.apply(*args)`` returns forward's output, recorded with backward as its rule.

    Example:
        >>> import tapegrad as torch
        >>> class Exp(torch.autograd.Function):
        ...     @staticmethod
        ...     def forward(ctx, x):
        ...         y = x.exp()
        ...         ctx.save_for_backward(y)
        ...         return y
        ...     @staticmethod
        ...     def backward(ctx, grad):
        ...         y, = ctx.saved_tensors
        ...         return grad * y
        >>> x = torch.tensor([0.0], requires_grad=True)
        >>> Exp.apply(x).sum().backward()
        >>> x.grad
        tensor([1.])
    """

    @classmethod
    def apply(cls, *args):
        from ..tensor import Tensor
        from ..trace import Tracer
        if any(isinstance(a, Tracer) for a in args):     # inside tg.grad / tg.jit: on the tape
            from ..custom_rules import function_on_tape
            return function_on_tape(cls, args)
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with no_grad():
            result = cls.forward(ctx, *args)
        if not (is_grad_enabled() and any(ctx.needs_input_grad)):
            return result
        if not isinstance(result, Tensor):
            raise TypeError(f"tapegrad: {cls.__name__}.forward must return one Tensor "
                            f"(got {type(result).__name__})")
        next_functions = tuple((graph.node_of(a), 0) if needs else (None, 0)
                               for a, needs in zip(args, ctx.needs_input_grad))
        node_type = _custom_node_class(cls)
        out = Tensor._wrap(np.asarray(result._data))
        out._requires_grad = True
        out.grad_fn = node_type(cls, ctx, args, next_functions)
        return out


_custom_classes = {}


def _custom_node_class(fn):
    cls = _custom_classes.get(fn)
    if cls is None:
        cls = _custom_classes[fn] = type(fn.__name__ + "Backward", (_FunctionNode,),
                                         {"__slots__": ()})
    return cls
