"""Python operators and elementwise methods as registry primitives: one mixin for Tensors and tracers.

Each operator binds a primitive, so the value kind of the operands (see core.bind) decides whether
it computes, records a graph node, records a tape instruction or writes source text.
"""
from . import primitives as P


def _binary(prim, reflected=False):
    if reflected:
        def method(self, other):
            return prim(other, self)
    else:
        def method(self, other):
            return prim(self, other)
    return method


def _unary(prim):
    def method(self):
        return prim(self)
    method.__name__ = prim.name
    return method


class PrimitiveOperators:
    __slots__ = ()

    __add__, __radd__ = _binary(P.add), _binary(P.add, reflected=True)
    __sub__, __rsub__ = _binary(P.sub), _binary(P.sub, reflected=True)
    __mul__, __rmul__ = _binary(P.mul), _binary(P.mul, reflected=True)
    __truediv__, __rtruediv__ = _binary(P.div), _binary(P.div, reflected=True)
    __pow__, __rpow__ = _binary(P.pow_), _binary(P.pow_, reflected=True)
    __matmul__, __rmatmul__ = _binary(P.matmul), _binary(P.matmul, reflected=True)
    __lt__, __le__ = _binary(P.lt), _binary(P.le)
    __gt__, __ge__ = _binary(P.gt), _binary(P.ge)
    __eq__, __ne__ = _binary(P.eq), _binary(P.ne)
    __and__, __or__ = _binary(P.logical_and), _binary(P.logical_or)
    __hash__ = object.__hash__  # defining __eq__ would otherwise make values unhashable

    def __neg__(self):
        return P.neg(self)

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
