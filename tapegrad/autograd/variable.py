"""torch.autograd.Variable: since PyTorch 0.4 a Variable is a Tensor; the name stays for old code."""
from . import graph


class _VariableMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, graph.Tensor)

    def __call__(cls, data, requires_grad=False, volatile=False):
        # a new leaf sharing `data`'s memory, as PyTorch's Variable(t) returns
        if not isinstance(data, graph.Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(data).__name__}")
        out = data.detach()
        out.requires_grad = requires_grad
        return out


class Variable(metaclass=_VariableMeta):
    pass
