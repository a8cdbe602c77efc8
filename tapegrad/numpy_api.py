"""THE table of the NumPy API that tapegrad differentiates: each NumPy function -> registry primitives.

Read by the tracer (`Tracer.__array_ufunc__`), by Tensors (`Tensor.__array_ufunc__`) and by the
source face (`source/table.py`), so a function added here is known to every face at once.

    UFUNCS            ufunc -> one registry primitive, called with the ufunc's positional arguments
    COMPOSED_UFUNCS   ufunc -> a composition of primitives (argument normalisation, NumPy's dtypes)
    MATH_FUNCTIONS    math.* scalar functions -> the primitive of the same operation
    CANNOT_EMIT       (face, function) -> why that face refuses it and what to write instead

Primitive rules come from primitives.py; nothing here defines a derivative.
"""
import math

import numpy as np

from . import primitives as P
from .core import dtype_of

UFUNCS = {
    # arithmetic
    np.add: P.add, np.subtract: P.sub, np.multiply: P.mul, np.true_divide: P.div,
    np.divide: P.div, np.negative: P.neg, np.power: P.pow_, np.remainder: P.remainder,
    np.fmod: P.fmod, np.matmul: P.matmul,
    # exponents and logarithms
    np.exp: P.exp, np.exp2: P.exp2, np.expm1: P.expm1, np.log: P.log, np.log2: P.log2,
    np.log10: P.log10, np.log1p: P.log1p, np.logaddexp: P.logaddexp,
    np.logaddexp2: P.logaddexp2, np.sqrt: P.sqrt, np.cbrt: P.cbrt,
    # trigonometric, hyperbolic and their inverses
    np.sin: P.sin, np.cos: P.cos, np.tan: P.tan, np.arcsin: P.arcsin, np.arccos: P.arccos,
    np.arctan: P.arctan, np.arctan2: P.arctan2, np.hypot: P.hypot, np.sinh: P.sinh,
    np.cosh: P.cosh, np.tanh: P.tanh, np.arcsinh: P.arcsinh, np.arccosh: P.arccosh,
    np.arctanh: P.arctanh,
    # extrema (maximum/minimum propagate NaN, fmax/fmin ignore it), sign
    np.maximum: P.maximum, np.minimum: P.minimum, np.fmax: P.fmax, np.fmin: P.fmin,
    np.absolute: P.abs_, np.sign: P.sign,
    # piecewise constant: no gradient
    np.floor: P.floor, np.ceil: P.ceil, np.trunc: P.trunc,
    # comparisons and logic: boolean results
    np.less: P.lt, np.less_equal: P.le, np.greater: P.gt, np.greater_equal: P.ge,
    np.equal: P.eq, np.not_equal: P.ne, np.logical_and: P.logical_and,
    np.logical_or: P.logical_or, np.logical_not: P.logical_not, np.isnan: P.isnan,
}


def in_result_dtype(ufunc, x):
    """x cast to the dtype NumPy's ufunc gives for it (fabs of integers is float64, square of
    booleans int8), so the primitives composing it compute in that dtype."""
    with np.errstate(all="ignore"):
        dtype = ufunc(np.ones((), dtype_of(x))).dtype
    return x if dtype == dtype_of(x) else P.cast(x, dtype=dtype.name)


def _scaled(ufunc, factor):
    def composed(x):
        return in_result_dtype(ufunc, x) * factor
    composed.__name__ = ufunc.__name__
    return composed


def _at_least_float64(x):
    dtype = np.result_type(dtype_of(x), np.float64)
    if isinstance(x, (int, float)):
        return float(x)
    return x if dtype == dtype_of(x) else P.cast(x, dtype=dtype.name)


def _float_power(x, y):
    # NumPy computes float_power in float64 at least (complex is not traced)
    return P.pow_(_at_least_float64(x), _at_least_float64(y))


_TO_RADIANS, _TO_DEGREES = math.pi / 180, 180 / math.pi

COMPOSED_UFUNCS = {
    np.fabs: lambda x: P.abs_(in_result_dtype(np.fabs, x)),
    np.deg2rad: _scaled(np.deg2rad, _TO_RADIANS), np.radians: _scaled(np.radians, _TO_RADIANS),
    np.rad2deg: _scaled(np.rad2deg, _TO_DEGREES), np.degrees: _scaled(np.degrees, _TO_DEGREES),
    np.float_power: _float_power,
    np.positive: P.clone,
}

MATH_FUNCTIONS = {
    math.sin: P.sin, math.cos: P.cos, math.tan: P.tan, math.asin: P.arcsin,
    math.acos: P.arccos, math.atan: P.arctan, math.atan2: P.arctan2, math.hypot: P.hypot,
    math.sinh: P.sinh, math.cosh: P.cosh, math.tanh: P.tanh, math.asinh: P.arcsinh,
    math.acosh: P.arccosh, math.atanh: P.arctanh, math.exp: P.exp, math.expm1: P.expm1,
    math.log: P.log, math.log1p: P.log1p, math.log2: P.log2, math.log10: P.log10,
    math.sqrt: P.sqrt, math.fmod: P.fmod, math.erf: P.erf, math.pow: P.pow_,
    math.fabs: P.abs_,
}

CANNOT_EMIT = {
    ("source", np.float_power): "the source face computes in float64 already: write x ** y",
    ("source", np.positive): "write +x or x",
}


def source_elementwise():
    """Ufuncs and math functions the source face emits as one differentiable primitive each:
    {function: primitive}. Comparisons and piecewise-constant functions are the source face's own
    (they carry no adjoint)."""
    table = {}
    for fn, prim in list(UFUNCS.items()) + list(MATH_FUNCTIONS.items()):
        if (prim.differentiable and prim.kind == "elementwise" and prim.source
                and ("source", fn) not in CANNOT_EMIT):
            table[fn] = prim
    return table


def describe(face, fn):
    """Why `face` cannot run `fn`, or None if it can."""
    return CANNOT_EMIT.get((face, fn))
