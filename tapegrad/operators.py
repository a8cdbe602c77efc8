"""Python operators and elementwise methods as registry primitives: one mixin for Tensors and tracers.

Each operator binds a primitive, so the value kind of the operands (see core.bind) decides whether
it computes, records a graph node, records a tape instruction or writes source text.
"""
import numpy as np

from . import numpy_api
from . import primitives as P


def binary_operator(prim, reflected=False, shortcut_types=None, handle=None):
    """The method `self <op> other` (or `other <op> self` when reflected), binding prim.

    shortcut_types: for hot paths (eager ops, tracing), a set of exact types; when both operands'
    types are in it, the call goes straight to handle(prim, args, params) (default: the owner's
    _bind), which is what dispatch would pick anyway. The owner may add itself to the set once
    its class exists.
    """
    if shortcut_types is None:
        if reflected:
            def method(self, other):
                return prim(other, self)
        else:
            def method(self, other):
                return prim(self, other)
        return method
    if reflected:
        def method(self, other):
            if type(self) in shortcut_types and type(other) in shortcut_types:
                return (handle or type(self)._bind)(prim, (other, self), {})
            return prim(other, self)
    else:
        def method(self, other):
            if type(self) in shortcut_types and type(other) in shortcut_types:
                return (handle or type(self)._bind)(prim, (self, other), {})
            return prim(self, other)
    return method


def _unary(prim):
    def method(self):
        return type(self)._bind(prim, (self,), {})  # one operand: its type is who dispatch picks
    method.__name__ = prim.name
    return method


class PrimitiveOperators:
    __slots__ = ()

    __add__, __radd__ = binary_operator(P.add), binary_operator(P.add, reflected=True)
    __sub__, __rsub__ = binary_operator(P.sub), binary_operator(P.sub, reflected=True)
    __mul__, __rmul__ = binary_operator(P.mul), binary_operator(P.mul, reflected=True)
    __truediv__, __rtruediv__ = binary_operator(P.div), binary_operator(P.div, reflected=True)
    __pow__, __rpow__ = binary_operator(P.pow_), binary_operator(P.pow_, reflected=True)
    __matmul__, __rmatmul__ = binary_operator(P.matmul), binary_operator(P.matmul, reflected=True)
    # np.remainder's composition: integers by zero give 0 in the compiled backends too
    __mod__ = binary_operator(numpy_api.COMPOSED_UFUNCS[np.remainder])
    __rmod__ = binary_operator(numpy_api.COMPOSED_UFUNCS[np.remainder], reflected=True)
    # // as np.floor_divide: NumPy's values, no gradient (as in NumPy, JAX and PyTorch)
    __floordiv__ = binary_operator(numpy_api.COMPOSED_UFUNCS[np.floor_divide])
    __rfloordiv__ = binary_operator(numpy_api.COMPOSED_UFUNCS[np.floor_divide], reflected=True)
    __lt__, __le__ = binary_operator(P.lt), binary_operator(P.le)
    __gt__, __ge__ = binary_operator(P.gt), binary_operator(P.ge)
    __eq__, __ne__ = binary_operator(P.eq), binary_operator(P.ne)
    __and__, __or__ = binary_operator(P.logical_and), binary_operator(P.logical_or)
    __hash__ = object.__hash__  # defining __eq__ would otherwise make values unhashable

    def __neg__(self):
        return type(self)._bind(P.neg, (self,), {})

    def __pos__(self):
        return self

    def __abs__(self):
        return P.abs_(self)

    def __invert__(self):
        return P.logical_not(self)

    # elementwise methods with the same name on Tensors and tracers (x.exp(), x.tanh(), ...)
    exp, log, log1p, expm1 = _unary(P.exp), _unary(P.log), _unary(P.log1p), _unary(P.expm1)
    sqrt, sin, cos, tan, tanh = _unary(P.sqrt), _unary(P.sin), _unary(P.cos), _unary(P.tan), _unary(P.tanh)
    erf, sigmoid, relu = _unary(P.erf), _unary(P.sigmoid), _unary(P.relu)
    abs, sign = _unary(P.abs_), _unary(P.sign)
    # PyTorch's names and their NumPy aliases (torch.arcsin is torch.asin)
    asin = arcsin = _unary(P.arcsin)
    acos = arccos = _unary(P.arccos)
    atan = arctan = _unary(P.arctan)
    asinh = arcsinh = _unary(P.arcsinh)
    acosh = arccosh = _unary(P.arccosh)
    atanh = arctanh = _unary(P.arctanh)
    sinh, cosh, log2, log10 = _unary(P.sinh), _unary(P.cosh), _unary(P.log2), _unary(P.log10)
    exp2, trunc, ceil = _unary(P.exp2), _unary(P.trunc), _unary(P.ceil)
    atan2 = arctan2 = binary_operator(P.arctan2)
    hypot, fmax, fmin = binary_operator(P.hypot), binary_operator(P.fmax), binary_operator(P.fmin)
    remainder, fmod = binary_operator(P.remainder), binary_operator(P.fmod)
    erfc, lgamma = _unary(P.erfc), _unary(P.lgamma)

    def digamma(self):
        return P.polygamma(self, n=0)

    def polygamma(self, n):
        return P.polygamma(self, n=n)
