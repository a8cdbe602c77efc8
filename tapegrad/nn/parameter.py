"""nn.Parameter: a leaf Tensor that a Module registers when assigned as an attribute."""
from ..tensor import Tensor


class Parameter(Tensor):
    __slots__ = ()
    # results of operations on parameters are plain tensors (the dispatch calls type(arg)._bind)
    _bind = staticmethod(Tensor._bind)

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from ..functions import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a Tensor, got {type(data).__name__}; wrap it "
                            "with tapegrad.tensor(...) first")
        # shares data's memory, as PyTorch's Parameter(t) does
        return cls._wrap(data.detach()._data, requires_grad=requires_grad)

    def __init__(self, data=None, requires_grad=True):
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        return (Parameter, (self.detach(), self.requires_grad))

    def __deepcopy__(self, memo):
        if id(self) not in memo:
            memo[id(self)] = Parameter(self.detach().clone(), self.requires_grad)
        return memo[id(self)]

