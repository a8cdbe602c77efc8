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
import sys
from collections import namedtuple

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
    np.floor: P.floor, np.ceil: P.ceil, np.trunc: P.trunc, np.rint: P.rint,
    np.isfinite: P.isfinite, np.isinf: P.isinf,
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


def _integer_safe(prim):
    """remainder/fmod: integers by zero give 0 in NumPy, where the compiled backends (which
    compute in float64) would give NaN; a zero divisor is masked for integer operands."""
    def apply(x, y):
        if dtype_of(x).kind in "iu" and dtype_of(y).kind in "iu":
            zero = y == 0
            return P.where(zero, np.zeros((), np.result_type(dtype_of(x), dtype_of(y))),
                           prim(x, P.where(zero, np.ones((), dtype_of(y)), y)))
        return prim(x, y)
    apply.__name__ = prim.name
    return apply


_TO_RADIANS, _TO_DEGREES = math.pi / 180, 180 / math.pi

COMPOSED_UFUNCS = {
    np.fabs: lambda x: P.abs_(in_result_dtype(np.fabs, x)),
    np.deg2rad: _scaled(np.deg2rad, _TO_RADIANS), np.radians: _scaled(np.radians, _TO_RADIANS),
    np.rad2deg: _scaled(np.rad2deg, _TO_DEGREES), np.degrees: _scaled(np.degrees, _TO_DEGREES),
    np.float_power: _float_power,
    np.positive: lambda x: P.clone(in_result_dtype(np.positive, x)),  # booleans refused
    # real values (complex ones are refused); booleans in int8, as NumPy
    np.conjugate: lambda x: P.clone(in_result_dtype(np.conjugate, _real_value("np.conjugate", x))),
    # on traced values these take precedence over UFUNCS' single primitives
    np.remainder: _integer_safe(P.remainder), np.fmod: _integer_safe(P.fmod),
    np.floor_divide: _integer_safe(P.floor_divide),
}

def _xlogy(x, y):
    # 0 where x == 0 (y's gradient too), as scipy.special.xlogy and torch.xlogy; NaN for y NaN
    return P.where(P.logical_and(x == 0, P.logical_not(P.isnan(y))), 0.0, x * P.log(y))


def _xlog1py(x, y):
    return P.where(P.logical_and(x == 0, P.logical_not(P.isnan(y))), 0.0, x * P.log1p(y))


def _entr(x):
    """-x log x on x > 0, 0 at 0, -inf below (scipy.special.entr); NaN stays NaN."""
    x = _float(x)
    inside = x > 0
    safe = P.where(inside, x, 1.0)         # the other branches never see log of x <= 0
    return P.where(inside, -safe * P.log(safe), P.where(x == 0, 0.0, P.where(
        P.isnan(x), np.nan, -np.inf)))


def _relative_entropy(extra):
    """scipy.special.rel_entr (extra False) and kl_div (extra: - x + y): x log(x / y) where
    both are positive, the y == 0 limits at x == 0, inf elsewhere."""
    def entropy(x, y):
        x, y = _float(x), _float(y)
        inside = P.logical_and(x > 0, y > 0)
        xs, ys = P.where(inside, x, 1.0), P.where(inside, y, 1.0)
        value = xs * P.log(xs / ys)
        at_zero = P.logical_and(x == 0, y >= 0)
        if extra:
            value = value - xs + ys
        edge = P.where(at_zero, y if extra else 0.0, P.where(
            P.logical_or(P.isnan(x), P.isnan(y)), np.nan, np.inf))
        return P.where(inside, value, edge)
    return entropy


def _ndtr(x):
    return 0.5 * P.erfc(-_float(x) * math.sqrt(0.5))


def _logit(p):
    return P.log(p) - P.log1p(-p)


# Giles' single-precision erfinv (w = -log(1 - x^2)): a start for Newton's steps on erf
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                   0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def _horner(coefficients, w):
    out = coefficients[0]
    for c in coefficients[1:]:
        out = out * w + c
    return out


def _erfinv_central(x):
    """erfinv on |x| <= 0.5: Giles' start, two Newton steps on erf (well conditioned here)."""
    y = _horner(_ERFINV_CENTRAL, -P.log1p(-x * x) - 2.5) * x
    for _ in range(2):
        y = y - (P.erf(y) - x) / (_TWO_OVER_SQRT_PI * P.exp(-y * y))
    return y


def _erfcinv_small(y):
    """erfcinv on 0 < y <= 0.5: Newton on log(erfc(z)) = log(y) (nearly linear in z^2, so it
    converges from the asymptotic start erfc(z) ~ exp(-z^2) / (z sqrt(pi)))."""
    t = -P.log(y)
    z = P.sqrt(P.abs_(t - P.log(P.sqrt(t) * math.sqrt(math.pi))))
    for _ in range(5):
        log_erfc = P.log(P.erfc(z))
        # (log erfc(z) - log y) / (d/dz log erfc(z)), without exp(-z^2) underflowing
        z = z + (log_erfc + t) * P.exp(log_erfc + z * z) / _TWO_OVER_SQRT_PI
    return z


def _erfinv(x):
    """scipy.special.erfinv, from erf and erfc: double precision, and the derivative
    sqrt(pi)/2 exp(y^2) through the Newton steps (each branch sees only its own inputs, so the
    other's NaN never reaches a gradient)."""
    x = _float(x)
    a = P.abs_(x)
    central = a <= 0.5
    tail = P.logical_and(a > 0.5, a < 1.0)
    y_central = _erfinv_central(P.where(central, x, 0.0))
    y_tail = _erfcinv_small(P.where(tail, 1.0 - a, 0.25))     # 1 - |x| is exact here
    edge = P.where(a == 1.0, P.where(x < 0, -np.inf, np.inf), np.nan)   # NaN beyond +-1
    return P.where(central, y_central, P.where(tail, P.where(x < 0, -y_tail, y_tail), edge))


def _erfcinv(y):
    """scipy.special.erfcinv: erfinv(1 - y) in the middle (exact subtraction), erfc's own
    Newton steps in both tails."""
    y = _float(y)
    middle = P.logical_and(y >= 0.5, y <= 1.5)
    low = P.logical_and(y > 0.0, y < 0.5)
    high = P.logical_and(y > 1.5, y < 2.0)
    z_middle = _erfinv_central(P.where(middle, 1.0 - y, 0.0))
    z_low = _erfcinv_small(P.where(low, y, 0.25))
    z_high = -_erfcinv_small(P.where(high, 2.0 - y, 0.25))     # erfc(-z) = 2 - erfc(z)
    edge = P.where(y == 0.0, np.inf, P.where(y == 2.0, -np.inf, np.nan))
    return P.where(middle, z_middle, P.where(low, z_low, P.where(high, z_high, edge)))


def _chebyshev(x, coefficients):
    """Clenshaw's sum of a Chebyshev series (NumPy's _chbevl), on traced values."""
    b0, b1, b2 = coefficients[0], 0.0, 0.0
    for c in coefficients[1:]:
        b2, b1 = b1, b0
        b0 = x * b1 - b2 + c
    return 0.5 * (b0 - b2)


def _chebyshev_and_slope(x, coefficients):
    """Clenshaw's sum and its derivative in x, the recurrence differentiated alongside."""
    b0, b1, b2, d0, d1, d2 = coefficients[0], 0.0, 0.0, 0.0, 0.0, 0.0
    for c in coefficients[1:]:
        b2, b1, d2, d1 = b1, b0, d1, d0
        b0, d0 = x * b1 - b2 + c, b1 + x * d1 - d2
    return 0.5 * (b0 - b2), 0.5 * (d0 - d2)


def _i1_scaled(x):
    """exp(-|x|) I1(x) as the derivative of NumPy's series for I0 (I0' = I1), to 1e-15."""
    from numpy.lib import _function_base_impl as impl
    if dtype_of(x).kind == "c":
        raise TypeError("i1 not supported for complex values")
    x = _float(x)
    a = P.abs_(x)
    small = a <= 8.0
    near_a = P.where(small, a, 0.0)
    near, near_slope = _chebyshev_and_slope(near_a / 2.0 - 2, impl._i0A)
    far_a = P.where(small, 9.0, a)
    far, far_slope = _chebyshev_and_slope(32.0 / far_a - 2.0, impl._i0B)
    root = P.sqrt(far_a)
    # d/da [exp(a) f(a)] / exp(a) = f + f' for each branch's f
    near_value = near + near_slope * 0.5
    far_value = (far - far_slope * 32.0 / (far_a * far_a)) / root - far / (2.0 * far_a * root)
    # near 0, f + f' cancels: the power series x/2 sum (x^2/4)^k / (k! (k+1)!) instead
    tiny = a <= 1.0
    t = P.where(tiny, x, 0.0)
    q, term, series = t * t * 0.25, 1.0, 1.0
    for k in range(1, 13):
        term = term * q / (k * (k + 1))
        series = series + term
    series = 0.5 * t * series * P.exp(-P.abs_(t))
    return P.where(tiny, series, P.where(x < 0, -1.0, 1.0) * P.where(
        small, near_value, far_value)), a


def _i1(x):
    scaled, a = _i1_scaled(x)
    return P.exp(a) * scaled


_BESSEL_MAX_ORDER = 10


def _bessel_j(order, x):
    """J_n(x) for constant integer orders |n| <= 10: Bessel's integral (1/2pi) int cos(n t -
    x sin t) dt by the trapezoid rule (exact to rounding for |x| <= 25: the integrand is periodic),
    Hankel's asymptotic series beyond; absolute error ~1e-15 against scipy up to |x| = 200."""
    from .trace import Tracer
    n = np.asarray(order, dtype=float) if not isinstance(order, Tracer) else None
    if n is None or not np.all(n == np.round(n)) or np.any(np.abs(n) > _BESSEL_MAX_ORDER):
        raise TypeError("tapegrad: scipy.special.jv/jn is traced for constant integer orders "
                        f"|n| <= {_BESSEL_MAX_ORDER} (no gradient in the order)")
    x = _float(x)
    shape = np.broadcast_shapes(n.shape, _shape(x))
    points = 64 + 2 * int(np.max(np.abs(n), initial=0))
    t = 2.0 * np.pi * np.arange(points) / points
    a = P.abs_(x)
    small = a <= 25.0
    xs = P.where(small, x, 0.0)
    phase = n[..., None] * t - P.reshape(xs, shape=_shape(x) + (1,)) * np.sin(t)
    quad = P.mean(P.cos(phase), axis=(len(shape),), keepdims=False)
    xl = P.where(small, 30.0, a)
    mu = 4.0 * n * n
    p_sum, q_sum, term = 1.0, 0.0, 1.0
    for k in range(1, 24):
        term = term * (mu - (2 * k - 1) ** 2) / (8.0 * k * xl)
        sign = 1.0 if (k // 2) % 2 == 0 else -1.0
        if k % 2:
            q_sum = q_sum + sign * term
        else:
            p_sum = p_sum + sign * term
    chi = xl - (2.0 * n + 1.0) * (np.pi / 4.0)
    far = P.sqrt(2.0 / (np.pi * xl)) * (p_sum * P.cos(chi) - q_sum * P.sin(chi))
    odd = np.mod(n, 2) == 1                   # J_n(-x) = (-1)^n J_n(x)
    far = P.where(P.logical_and(x < 0, odd), -far, far)
    return P.where(small, quad, far)


def _i0_scaled(x):
    """exp(-|x|) I0(x) by NumPy's own steps (Cephes' Chebyshev series), from which np.i0,
    scipy.special.i0 and i0e follow; each branch sees only its own inputs."""
    from numpy.lib import _function_base_impl as impl       # NumPy's coefficients
    if dtype_of(x).kind == "c":
        raise TypeError("i0 not supported for complex values")
    a = P.abs_(_float(x))
    small = a <= 8.0
    near = _chebyshev(P.where(small, a, 0.0) / 2.0 - 2, impl._i0A)
    far_a = P.where(small, 9.0, a)
    far = _chebyshev(32.0 / far_a - 2.0, impl._i0B) / P.sqrt(far_a)
    return P.where(small, near, far), a


def _i0(x):
    scaled, a = _i0_scaled(x)
    return P.exp(a) * scaled


def _gammasgn(x):
    # the sign of Gamma: +1 right of 0, alternating between the poles left of it (NaN at them)
    x = _float(x)
    below = P.floor(x)
    odd = P.remainder(below, 2.0) == 1.0
    negative = P.where(odd, -1.0, 1.0)
    return P.where(x >= 0, 1.0, P.where(x == below, np.nan, negative))


def _gamma(x):
    return _gammasgn(x) * P.exp(P.lgamma(x))


def _rgamma(x):
    # 0 at the poles (0, -1, -2, ...), where 1 / Gamma vanishes
    x = _float(x)
    pole = P.logical_and(x <= 0, x == P.floor(x))
    return P.where(pole, 0.0, P.where(pole, 1.0, _gammasgn(x)) * P.exp(-P.lgamma(x)))


def _betaln(a, b):
    return P.lgamma(a) + P.lgamma(b) - P.lgamma(a + b)


def _beta(a, b):
    return _gammasgn(a) * _gammasgn(b) * _gammasgn(a + b) * P.exp(_betaln(a, b))


def _scipy_ufuncs():
    """scipy.special's ufuncs, read only once scipy.special is imported (by the user)."""
    special = sys.modules.get("scipy.special")
    if special is None:
        return {}
    return {special.expit: P.sigmoid, special.erf: P.erf, special.erfc: P.erfc,
            special.gammaln: P.lgamma, special.digamma: lambda x: P.polygamma(x, n=0),
            special.psi: lambda x: P.polygamma(x, n=0), special.xlogy: _xlogy,
            special.logit: _logit, special.gamma: _gamma,
            special.rgamma: _rgamma, special.gammasgn: _gammasgn,
            special.beta: _beta, special.betaln: _betaln, special.erfinv: _erfinv,
            special.erfcinv: _erfcinv, special.i0: _i0,
            special.i0e: lambda x: _i0_scaled(x)[0], special.i1: _i1,
            special.i1e: lambda x: _i1_scaled(x)[0], special.jv: _bessel_j,
            special.j0: lambda x: _bessel_j(0, x), special.j1: lambda x: _bessel_j(1, x), special.xlog1py: _xlog1py, special.entr: _entr,
            special.rel_entr: _relative_entropy(False), special.kl_div: _relative_entropy(True),
            special.ndtr: _ndtr, special.ndtri: lambda p: 0.0 - math.sqrt(2.0) * _erfcinv(2.0 * p),   # +0 at 1/2
            special.log_expit: lambda x: -P.softplus(-x), special.gammainc: P.gammainc,
            special.gammaincc: P.gammaincc, special.betainc: P.betainc}


def ufunc_rule(ufunc):
    """The primitive or composition computing `ufunc`, or None: the NumPy table, then scipy's."""
    rule = UFUNCS.get(ufunc) or COMPOSED_UFUNCS.get(ufunc)
    return rule if rule is not None else _scipy_ufuncs().get(ufunc)


MATH_FUNCTIONS = {
    math.sin: P.sin, math.cos: P.cos, math.tan: P.tan, math.asin: P.arcsin,
    math.acos: P.arccos, math.atan: P.arctan, math.atan2: P.arctan2, math.hypot: P.hypot,
    math.sinh: P.sinh, math.cosh: P.cosh, math.tanh: P.tanh, math.asinh: P.arcsinh,
    math.acosh: P.arccosh, math.atanh: P.arctanh, math.exp: P.exp, math.expm1: P.expm1,
    math.log: P.log, math.log1p: P.log1p, math.log2: P.log2, math.log10: P.log10,
    math.sqrt: P.sqrt, math.fmod: P.fmod, math.erf: P.erf, math.erfc: P.erfc,
    math.lgamma: P.lgamma, math.pow: P.pow_,
    math.fabs: P.abs_,
}

CANNOT_EMIT = {
    ("source", np.float_power): "the source face computes in float64 already: write x ** y",
    ("source", np.positive): "write +x or x",
    # its derivative is digamma, which neither NumPy, math nor Numba has
    ("source", math.lgamma): "use the traced face (tg.grad) for log-gamma",
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


# ---------------------------------------------------------------------------------------------
# Array functions (NumPy's __array_function__ protocol): compositions of primitives
# ---------------------------------------------------------------------------------------------

# where NumPy's atleast_Nd puts the new axes of length 1: (N,) -> (1, N) -> (1, N, 1)
ATLEAST_NEW_AXES = {(1, 0): (0,), (2, 0): (0, 1), (2, 1): (0,), (3, 0): (0, 1, 2), (3, 1): (0, 2),
                    (3, 2): (2,)}


def _shape(x):
    return tuple(getattr(x, "shape", ()))


def _axes(axis, ndim):
    """axis (None, an int or a tuple, negative ones too) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = tuple(int(a) % ndim if ndim else 0 for a in (
        axis if isinstance(axis, (tuple, list)) else (axis,)))
    if len(set(axes)) != len(axes):
        raise ValueError("repeated axis")
    return tuple(sorted(axes))


def _unsupported(name, **options):
    given = [k for k, v in options.items() if v is not None and v is not True]
    if given:
        raise TypeError(f"tapegrad: np.{name}({', '.join(given)}=...) is not traced; compute "
                        f"without it")


def _float(x):
    """x in the float dtype NumPy's mean/var give it (float64 for integers and booleans)."""
    return x if dtype_of(x).kind == "f" else P.cast(x, dtype="float64")


def _var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True):
    _unsupported("var", out=out, where=where)
    x = _float(a) if dtype is None else P.cast(a, dtype=np.dtype(dtype).name)
    axes = _axes(axis, len(_shape(x)))
    n = math.prod(_shape(x)[i] for i in axes)
    d = x - P.mean(x, axis=axes, keepdims=True)
    return P.sum_(d * d, axis=axes, keepdims=bool(keepdims)) / max(n - ddof, 0)


def _std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, *, where=True):
    x = _float(a) if dtype is None else P.cast(a, dtype=np.dtype(dtype).name)
    axes = _axes(axis, len(_shape(x)))
    if math.prod(_shape(x)[i] for i in axes) == 1:
        # one element per slice: std is the constant 0 (NaN with ddof=1), so its gradient is 0,
        # where sqrt(var)'s rule would give 0 * inf
        _unsupported("std", out=out, where=where)
        d = P.abs_(x - P.mean(x, axis=axes, keepdims=True))
        return P.sum_(d, axis=axes, keepdims=bool(keepdims)) / math.sqrt(max(1 - ddof, 0))
    return P.sqrt(_var(a, axis, dtype, out, ddof, keepdims, where=where))


def _moved_last(x, axis):
    """x with `axis` moved last, and the permutation that moves it back."""
    ndim = len(_shape(x))
    order = [i for i in range(ndim) if i != axis] + [axis]
    back = tuple(int(i) for i in np.argsort(order))
    return (P.transpose(x, axes=tuple(order)) if axis != ndim - 1 else x), back


def _scan(combine, identity):
    """cumsum / cumprod along an axis as log2(n) steps of shifted combines (Hillis-Steele):
    primitives only, so every face and backend runs them, and the gradient of a product with
    zeros is exact (no division)."""
    def scan(a, axis=None, dtype=None, out=None):
        _unsupported("cumsum", out=out)
        if dtype is not None:
            a = P.cast(a, dtype=np.dtype(dtype).name)
        elif dtype_of(a).kind == "b" or (dtype_of(a).kind in "iu" and dtype_of(a).itemsize < 8):
            a = P.cast(a, dtype="int64")  # NumPy accumulates small integers in int64
        if axis is None:
            a, axis = P.reshape(a, shape=(math.prod(_shape(a)),)), 0
        axis = int(axis) % len(_shape(a))
        y, back = _moved_last(a, axis)
        n = _shape(y)[-1]
        k = 1
        while k < n:
            pad = np.full(_shape(y)[:-1] + (k,), identity, dtype=dtype_of(y))
            y = combine(y, P.cat(pad, P.getitem(y, index=(Ellipsis, slice(0, n - k))),
                                 axis=len(_shape(y)) - 1))
            k *= 2
        return P.transpose(y, axes=back) if back != tuple(range(len(back))) else y
    return scan


def _gather(a, positions):
    """a's elements at the flat positions `positions` (an int array of the result's shape): every
    rearrangement (flip, roll, tile, repeat, diagonal, ...) as one gather, whose gradient
    scatter-adds back."""
    flat = P.reshape(a, shape=(math.prod(_shape(a)),))
    return P.getitem(flat, index=(np.asarray(positions, dtype=np.intp),))


def _rearranged(np_fn):
    """A NumPy function that only moves elements, traced as a gather of the positions it moves
    them to (np_fn applied to the array of positions)."""
    def rearranged(a, *args, **kwargs):
        shape = _shape(a)
        positions = np_fn(np.arange(math.prod(shape)).reshape(shape), *args, **kwargs)
        if isinstance(positions, (list, tuple)):  # split and friends: a list of pieces
            return [_gather(a, p) for p in positions]
        return _gather(a, positions)
    rearranged.__name__ = np_fn.__name__
    return rearranged


def _transposed(perm_of):
    def apply(a, *args, **kwargs):
        perm = perm_of(len(_shape(a)), *args, **kwargs)
        return P.transpose(a, axes=tuple(int(i) for i in perm))
    return apply


def _permutation(np_fn):
    """The axes permutation np_fn (moveaxis, swapaxes, rollaxis) makes, read off the shape it
    gives a view whose axis k has length k + 1 (a broadcast view: no memory)."""
    def perm(ndim, *args, **kwargs):
        view = np.broadcast_to(np.empty(()), tuple(range(1, ndim + 1)))
        return [n - 1 for n in np_fn(view, *args, **kwargs).shape]
    return perm


def _atleast(n):
    def atleast(*arys):
        out = []
        for a in arys:
            ndim = len(_shape(a))
            if ndim >= n:
                out.append(a)
                continue
            new, rest = ATLEAST_NEW_AXES[n, ndim], iter(_shape(a))
            out.append(P.reshape(a, shape=tuple(1 if i in new else next(rest)
                                                for i in range(n))))
        return out[0] if len(out) == 1 else out
    return atleast


_atleast_1d, _atleast_2d, _atleast_3d = _atleast(1), _atleast(2), _atleast(3)


def _concat(arrays, axis):
    arrays = list(arrays)
    return arrays[0] if len(arrays) == 1 else P.cat(*arrays, axis=axis)


def _hstack(tup, **unused):
    arrays = [_atleast_1d(a) for a in tup]
    return _concat(arrays, 0 if len(_shape(arrays[0])) == 1 else 1)


def _column_stack(tup):
    arrays = [P.reshape(a, shape=(_shape(a) or (1,)) + (1,)) if len(_shape(a)) < 2 else a
              for a in (tup if isinstance(tup, (list, tuple)) else list(tup))]
    return _concat(arrays, 1)


def as_traced(x):
    """A list or tuple (nested too) holding traced values as one traced array, as np.array
    gives it (NumPy never dispatches np.array); anything else as it is."""
    if not isinstance(x, (list, tuple)):
        return x
    from .trace import lift_objects
    return lift_objects(np.array(x))


def _append(arr, values, axis=None):
    arr, values = as_traced(arr), as_traced(values)
    if axis is None:
        return _concat([P.reshape(v, shape=(math.prod(_shape(v)),)) for v in (arr, values)], 0)
    return _concat([arr, values], int(axis) % len(_shape(arr)))


def _tri_mask(lower):
    def tri(m, k=0):
        n_rows, n_cols = _shape(m)[-2:]
        mask = np.tri(n_rows, n_cols, k, dtype=bool)
        return P.where(mask if lower else ~np.tri(n_rows, n_cols, k - 1, dtype=bool), m,
                       np.zeros((), dtype_of(m)))
    return tri


def _diagonal(a, offset=0, axis1=0, axis2=1):
    return _rearranged(np.diagonal)(a, offset, axis1, axis2)


def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _unsupported("trace", out=out)
    return P.sum_(_diagonal(a, offset, axis1, axis2), axis=(len(_shape(a)) - 2,),
                  keepdims=False)


def _diag(v, k=0):
    if len(_shape(v)) != 1:
        return _diagonal(v, k)
    n = _shape(v)[0] + abs(k)
    rows, cols = np.arange(_shape(v)[0]) + max(-k, 0), np.arange(_shape(v)[0]) + max(k, 0)
    return P.setitem(np.zeros((n, n), dtype_of(v)), v, index=(rows, cols))


def _diff(a, n=1, axis=-1, prepend=None, append=None):
    _unsupported("diff", prepend=prepend, append=append)
    axis = int(axis) % len(_shape(a))
    lead = (slice(None),) * axis
    # NumPy's diff of booleans is `!=` (booleans do not subtract)
    step = P.ne if dtype_of(a).kind == "b" else P.sub
    for _ in range(n):
        m = _shape(a)[axis]
        a = step(P.getitem(a, index=lead + (slice(1, m),)),
                 P.getitem(a, index=lead + (slice(0, m - 1),)))
    return a


def _pad(array, pad_width, mode="constant", constant_values=0, **unused):
    if mode != "constant" or unused or np.ndim(constant_values):
        raise TypeError("tapegrad: np.pad is traced with mode='constant' and one constant "
                        "value; write other modes with np.concatenate")
    shape = _shape(array)
    widths = np.broadcast_to(np.asarray(pad_width, dtype=int), (len(shape), 2))
    out = np.full(tuple(int(n + lo + hi) for n, (lo, hi) in zip(shape, widths)),
                  constant_values, dtype=dtype_of(array))
    index = tuple(slice(int(lo), int(lo) + n) for n, (lo, _) in zip(shape, widths))
    return P.setitem(out, array, index=index)


def _nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    big = np.finfo(dtype_of(x)).max if dtype_of(x).kind == "f" else None
    if big is None:
        return x
    posinf = big if posinf is None else posinf
    neginf = -big if neginf is None else neginf
    return P.where(P.isnan(x), nan, P.where(x == np.inf, posinf,
                                             P.where(x == -np.inf, neginf, x)))


def _tensordot(a, b, axes=2):
    if isinstance(axes, int):
        axes_a, axes_b = list(range(-axes, 0)), list(range(axes))
    else:
        axes_a, axes_b = (list(x) if isinstance(x, (list, tuple)) else [x] for x in axes)
    na, nb = len(_shape(a)), len(_shape(b))
    axes_a, axes_b = [i % na for i in axes_a], [i % nb for i in axes_b]
    free_a = [i for i in range(na) if i not in axes_a]
    free_b = [i for i in range(nb) if i not in axes_b]
    k = math.prod(_shape(a)[i] for i in axes_a)
    a2 = P.reshape(P.transpose(a, axes=tuple(free_a + axes_a)),
                   shape=(math.prod(_shape(a)[i] for i in free_a), k))
    b2 = P.reshape(P.transpose(b, axes=tuple(axes_b + free_b)),
                   shape=(k, math.prod(_shape(b)[i] for i in free_b)))
    return P.reshape(P.matmul(a2, b2), shape=tuple(_shape(a)[i] for i in free_a)
                     + tuple(_shape(b)[i] for i in free_b))


def _inner(a, b):
    if not _shape(a) or not _shape(b):
        return a * b
    return _tensordot(a, b, axes=([-1], [-1]))


def _kron(a, b):
    nd = max(len(_shape(a)), len(_shape(b)))
    sa, sb = (1,) * (nd - len(_shape(a))) + _shape(a), (1,) * (nd - len(_shape(b))) + _shape(b)
    a = P.reshape(a, shape=tuple(x for n in sa for x in (n, 1)))
    b = P.reshape(b, shape=tuple(x for n in sb for x in (1, n)))
    return P.reshape(a * b, shape=tuple(x * y for x, y in zip(sa, sb)))


def _sublist_letters(sublist):
    return "".join("..." if k is Ellipsis else _EINSUM_LETTERS[k] for k in sublist)


_EINSUM_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _einsum_subscripts(args):
    """einsum's interleaved form (op0, sublist0, op1, sublist1, ..., [out]) as subscripts."""
    if isinstance(args[0], str):
        return args[0], list(args[1:])
    operands, terms = list(args[0::2]), [_sublist_letters(t) for t in args[1::2]]
    out = None
    if len(terms) < len(operands):          # an odd count: the last one is the output
        out = _sublist_letters(operands.pop())
    return ",".join(terms) + ("" if out is None else "->" + out), operands


def _expand_ellipsis(inputs, output, explicit, operands):
    """`...` replaced by letters the subscripts do not use, NumPy's broadcasting: right-aligned."""
    free = [c for c in _EINSUM_LETTERS if c not in "".join(inputs) + output]
    counts = [len(_shape(x)) - (len(t) - 3) if "..." in t else 0
              for t, x in zip(inputs, operands)]
    ell = "".join(free[:max(counts, default=0)])
    inputs = [t.replace("...", ell[len(ell) - n:] if n else "") for t, n in zip(inputs, counts)]
    if explicit:
        return inputs, output.replace("...", ell)
    letters = "".join(t for t in inputs if t)
    rest = "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ell))
    return inputs, ell + rest


def _einsum(*args, optimize=False, **unused):
    """np.einsum as broadcast products and sums (repeated letters in one operand: its diagonal;
    `...` broadcasts as in NumPy), in the subscripts or the interleaved form."""
    if unused:
        raise TypeError("tapegrad: np.einsum with out=/dtype= is not traced; cast the result")
    subscripts, operands = _einsum_subscripts(args)
    subscripts = subscripts.replace(" ", "")
    inputs, _, output = subscripts.partition("->")
    inputs = inputs.split(",")
    if "..." in subscripts:
        inputs, output = _expand_ellipsis(inputs, output, "->" in subscripts, operands)
    elif "->" not in subscripts:
        letters = "".join(inputs)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = []
    for letters, x in zip(inputs, operands):
        while len(set(letters)) < len(letters):  # "ii": the diagonal, moved last
            c = next(c for c in letters if letters.count(c) > 1)
            i = letters.index(c)
            j = letters.index(c, i + 1)
            x = _diagonal(x, 0, i, j)
            letters = "".join(l for k, l in enumerate(letters) if k not in (i, j)) + c
        terms.append((letters, x))
    order = "".join(dict.fromkeys("".join(l for l, _ in terms) + output))
    product = None
    for letters, x in terms:
        perm = sorted(range(len(letters)), key=lambda k: order.index(letters[k]))
        if perm != list(range(len(letters))):
            x = P.transpose(x, axes=tuple(perm))
        letters = "".join(letters[k] for k in perm)
        shape = tuple(_shape(x)[letters.index(c)] if c in letters else 1 for c in order)
        x = P.reshape(x, shape=shape) if shape != _shape(x) else x
        product = x if product is None else product * x
    summed = tuple(i for i, c in enumerate(order) if c not in output)
    if summed:
        product = P.sum_(product, axis=summed, keepdims=False)
    kept = [c for c in order if c in output]
    perm = tuple(kept.index(c) for c in output)
    result = P.transpose(product, axes=perm) if perm != tuple(range(len(perm))) else product
    dtype = np.result_type(*(dtype_of(x) for x in operands))  # booleans: a logical einsum
    return result if dtype_of(result) == dtype else P.cast(result, dtype=dtype.name)


def _square_matrices(name):
    def check(a):
        shape = _shape(a)
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise np.linalg.LinAlgError(f"tapegrad: np.linalg.{name} takes square matrices, "
                                        f"not shape {shape}")
        return _float(a)
    return check


def _solve(a, b):
    a = _square_matrices("solve")(a)
    if len(_shape(b)) == 1:  # a vector: a column, and back
        return P.reshape(P.solve(a, P.reshape(_float(b), shape=_shape(b) + (1,))),
                         shape=_shape(b))
    return P.solve(a, _float(b))


def _slogdet(a):
    a = _square_matrices("slogdet")(a)
    return P.sign(P.det(a)), P.logabsdet(a)


EighResult = namedtuple("EighResult", ["eigenvalues", "eigenvectors"])
EigResult = namedtuple("EigResult", ["eigenvalues", "eigenvectors"])
SVDResult = namedtuple("SVDResult", ["U", "S", "Vh"])


def _matrices(name, a):
    if len(_shape(a)) < 2:
        raise np.linalg.LinAlgError(f"tapegrad: np.linalg.{name} takes matrices (2 or more "
                                    f"dimensions), not shape {_shape(a)}")
    return _float(a)


def _swapped_last(x):
    n = len(_shape(x))
    return tuple(range(n - 2)) + (n - 1, n - 2)


def _cholesky(a, /, *, upper=False):
    lower = P.cholesky(_square_matrices("cholesky")(a))
    return P.transpose(lower, axes=_swapped_last(lower)) if upper else lower


def _eigvalsh(a, UPLO="L"):
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    a = _square_matrices("eigvalsh")(a)
    # the upper triangle of a is the lower one of its transpose (the same eigenvalues)
    return P.eigh_values(P.transpose(a, axes=_swapped_last(a)) if UPLO == "U" else a)


def _eigh(a, UPLO="L"):
    # the lower triangle, as NumPy; the upper one would give LAPACK's other eigenvector signs
    if UPLO != "L":
        raise TypeError("tapegrad: np.linalg.eigh is traced with UPLO='L' (LAPACK gives other "
                        "eigenvector signs for 'U'); pass the transposed matrix, or use "
                        "np.linalg.eigvalsh(a, UPLO='U') for the eigenvalues")
    a = _square_matrices("eigh")(a)
    return EighResult(P.eigh_values(a), P.eigh_vectors(a))


def _eig(a):
    a = _square_matrices("eig")(a)
    return EigResult(P.eig_values(a), P.eig_vectors(a))


def _svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    a = _matrices("svd", a)
    if not compute_uv:
        return P.svd_values(a)
    m, n = _shape(a)[-2:]
    if full_matrices and m != n:
        raise TypeError(f"tapegrad: np.linalg.svd of a {m}x{n} matrix is traced with "
                        "full_matrices=False (the extra columns of U or V have no gradient); "
                        "write np.linalg.svd(a, full_matrices=False)")
    return SVDResult(P.svd_u(a), P.svd_values(a), P.svd_vt(a))


_NO_VALUE = object()


def _pinv(a, rcond=None, hermitian=False, *, rtol=_NO_VALUE):
    # NumPy's cutoffs: rcond 1e-15 by default; rtol=None: max(m, n) * eps
    a = _matrices("pinv", a)
    if rcond is None:
        rcond = 1e-15 if rtol is _NO_VALUE else (
            max(_shape(a)[-2:]) * np.finfo(dtype_of(a)).eps if rtol is None else rtol)
    return P.pinv(a, rcond=float(rcond))


def _vector_norm(x, ord, axes, keepdims):
    if ord is None or ord == 2:
        return P.norm(x, ord=2, axis=axes, keepdims=keepdims)
    if ord in (1, np.inf):
        return P.norm(x, ord=ord, axis=axes, keepdims=keepdims)
    if ord == -np.inf:
        return P.amin(P.abs_(x), axis=axes, keepdims=keepdims)
    if ord == 0:  # the count of nonzero entries: no gradient
        return P.sum_(P.cast(P.ne(x, 0), dtype=dtype_of(x).name), axis=axes,
                      keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    p = float(ord)
    return P.pow_(P.sum_(P.pow_(P.abs_(x), p), axis=axes, keepdims=keepdims), 1.0 / p)


def _singular_values_last(x, axes):
    """The singular values of the matrices spanned by `axes` (moved last)."""
    rest = [i for i in range(len(_shape(x))) if i not in axes]
    order = tuple(rest) + tuple(axes)
    return P.svd_values(P.transpose(x, axes=order) if order != tuple(range(len(order))) else x)


def _matrix_norm(x, ord, axes, keepdims):
    row, col = axes
    last = (len(_shape(x)) - 2,)
    if ord in (None, "fro"):
        out = P.norm(x, ord=2, axis=tuple(sorted(axes)), keepdims=False)
    elif ord == "nuc":
        out = P.sum_(_singular_values_last(x, axes), axis=last, keepdims=False)
    elif ord in (2, -2):
        out = (P.amax if ord == 2 else P.amin)(_singular_values_last(x, axes), axis=last,
                                              keepdims=False)
    elif ord in (1, -1, np.inf, -np.inf):
        # 1: the largest column sum of |x|; inf: the largest row sum
        summed, other = (row, col) if ord in (1, -1) else (col, row)
        sums = P.sum_(P.abs_(x), axis=(summed,), keepdims=False)
        other -= other > summed
        out = (P.amax if ord > 0 else P.amin)(sums, axis=(other,), keepdims=False)
    else:
        raise ValueError("Invalid norm order for matrices.")
    if keepdims:
        out = P.reshape(out, shape=tuple(1 if i in axes else n for i, n in enumerate(_shape(x))))
    return out


def _norm(x, ord=None, axis=None, keepdims=False):
    """np.linalg.norm: every order NumPy accepts (matrix 2, -2 and 'nuc' through the SVD)."""
    x = _float(x)
    ndim = len(_shape(x))
    if axis is None and (ord is None or ndim == 1):
        flat = P.reshape(x, shape=(math.prod(_shape(x)),))
        out = _vector_norm(flat, ord, (0,), False)
        return P.reshape(out, shape=(1,) * ndim) if keepdims else out
    if axis is None:
        axis = tuple(range(ndim))
    axes = tuple(int(a) % ndim for a in (axis if isinstance(axis, (tuple, list)) else (axis,)))
    if len(axes) == 1:
        return _vector_norm(x, ord, axes, bool(keepdims))
    if len(axes) == 2 and axes[0] != axes[1]:
        return _matrix_norm(x, ord, axes, bool(keepdims))
    raise ValueError("Improper number of dimensions to norm.")


def _vector_norm_api(x, /, *, axis=None, keepdims=False, ord=2):
    x = _float(x)
    ndim = len(_shape(x))
    if axis is None:  # every element, as one vector
        out = _vector_norm(P.reshape(x, shape=(math.prod(_shape(x)),)), ord, (0,), False)
        return P.reshape(out, shape=(1,) * ndim) if keepdims else out
    return _vector_norm(x, ord, _axes(axis, ndim), bool(keepdims))


def _cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """np.cross of 3-vectors (2-vectors: the z component, or 3 with z = 0 in the other)."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, ra = _moved_last(a, int(axisa) % len(_shape(a)))
    b, rb = _moved_last(b, int(axisb) % len(_shape(b)))
    na, nb = _shape(a)[-1], _shape(b)[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    comp = lambda x, n, i: P.getitem(x, index=(Ellipsis, i)) if i < n else 0.0
    a0, a1, a2 = (comp(a, na, i) for i in range(3))
    b0, b1, b2 = (comp(b, nb, i) for i in range(3))
    z = a0 * b1 - a1 * b0
    if na == nb == 2:
        return z
    out = P.stack(a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, z, axis=len(_shape(z)))
    ndim = len(_shape(out))
    return _transposed(_permutation(np.moveaxis))(out, -1, int(axisc) % ndim) \
        if int(axisc) % ndim != ndim - 1 else out


def _select(condlist, choicelist, default=0):
    """np.select: the first true condition's choice (later ones are overwritten first)."""
    if len(condlist) != len(choicelist):
        raise ValueError("list of cases must be same length as list of conditions")
    out = default
    for cond, choice in reversed(list(zip(condlist, choicelist))):
        out = P.where(cond, choice, out)
    return out


def _sinc(x):
    x = _float(x)
    zero = x == 0
    t = np.pi * P.where(zero, 1.0, x)
    return P.where(zero, 1.0, P.sin(t) / t)


def _real_value(name, x):
    if dtype_of(x).kind == "c":
        raise TypeError(f"tapegrad: {name} of a complex traced value: the traced face computes in "
                        "real arithmetic only; keep real and imaginary parts as two real arrays")
    return x


def _real_only(np_fn, rule):
    """rule of np_fn for real values; complex ones refused (their parts would be dropped)."""
    def apply(x, *args, **kwargs):
        return rule(_real_value(f"np.{np_fn.__name__}", x), *args, **kwargs)
    apply.__name__ = np_fn.__name__
    return apply


def _angle(z, deg=False):
    """np.angle of real values, arctan2(0, z): pi left of 0 (and at -0.0), NaN at NaN; a
    constant, so no gradient."""
    x = _float(z)
    dtype = dtype_of(x)
    negative = P.logical_or(P.lt(x, 0), P.logical_and(x == 0, P.lt(1.0 / x, 0)))
    half_turn = np.asarray(180.0 if deg else np.pi, dtype)
    return P.where(negative, half_turn, P.where(P.isnan(x), np.asarray(np.nan, dtype),
                                                np.zeros((), dtype)))


def _isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """NumPy's steps: |a - b| <= atol + rtol |b| where b is finite, or a == b (infinities)."""
    if not isinstance(b, (int, float)):             # b in floating point, as NumPy casts it
        dtype = np.result_type(dtype_of(b), 1.0)
        b = b if dtype_of(b) == dtype else P.cast(b, dtype=dtype.name)
    close = P.logical_or(P.logical_and(P.le(P.abs_(a - b), atol + rtol * P.abs_(b)),
                                       P.isfinite(b)), P.eq(a, b))
    return P.logical_or(close, P.logical_and(P.isnan(a), P.isnan(b))) if equal_nan else close


def _allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    # a Python bool, as NumPy's: a guard of the tape when traced
    return bool(_truth(lambda count, n: P.eq(count, n))(_isclose(a, b, rtol, atol, equal_nan)))


def _nan_skipped(a):
    # NaN entries as 0 (they take no gradient); other dtypes hold no NaN
    return P.where(P.isnan(a), np.zeros((), dtype_of(a)), a) if dtype_of(a).kind == "f" else a


def _nansum(a, axis=None, dtype=None, out=None, keepdims=False, **options):
    return np.sum(_nan_skipped(a), axis=axis, dtype=dtype, out=out, keepdims=keepdims, **options)


def _nanmean(a, axis=None, dtype=None, out=None, keepdims=False, **options):
    if dtype_of(a).kind != "f":
        return np.mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, **options)
    count = np.sum(P.logical_not(P.isnan(a)), axis=axis, keepdims=keepdims)
    total = np.sum(_nan_skipped(a), axis=axis, dtype=dtype, out=out, keepdims=keepdims, **options)
    return total / P.cast(count, dtype=dtype_of(total).name)


def _average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """np.average: the mean, or sum(a * w) / sum(w) with w broadcast along `axis` when 1-D."""
    if weights is None:
        avg = np.mean(a, axis=axis, keepdims=keepdims)
        if dtype_of(avg).kind != "f":
            avg = P.cast(avg, dtype="float64")
        scl = np.ones(_shape(avg), dtype_of(avg)) * (
            math.prod(_shape(a)) // max(math.prod(_shape(avg)), 1))
        return (avg, scl) if returned else avg
    kinds = (dtype_of(a).kind, dtype_of(weights).kind)
    dtype = np.result_type(dtype_of(a), dtype_of(weights), *(
        ["f8"] if kinds[0] in "iub" else []))
    w = weights
    if _shape(w) != _shape(a):
        if axis is None or len(_shape(w)) != 1 or _shape(w)[0] != _shape(a)[axis]:
            raise TypeError("Axis must be specified when shapes of a and weights differ.")
        ax = int(axis) % len(_shape(a))
        w = P.reshape(w, shape=tuple(_shape(w)[0] if i == ax else 1
                                     for i in range(len(_shape(a)))))
    w = P.cast(w, dtype=dtype.name) if dtype_of(w) != dtype else w
    a = P.cast(a, dtype=dtype.name) if dtype_of(a) != dtype else a
    w = w * np.ones(_shape(a), dtype)           # the full weights, summed per slice
    scl = np.sum(w, axis=axis, keepdims=keepdims)
    avg = np.sum(a * w, axis=axis, keepdims=keepdims) / scl
    return (avg, scl) if returned else avg


def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, **device):
    shape = _shape(a) if shape is None else tuple(np.atleast_1d(shape))
    dtype = np.dtype(dtype if dtype is not None else dtype_of(a))
    fill = fill_value if dtype_of(fill_value) == dtype else P.cast(fill_value, dtype=dtype.name)
    return fill * np.ones(shape, dtype)


def _partition(a, kth, axis=-1, kind="introselect", order=None):
    """A valid np.partition: the sorted values (every kth in place, smaller ones before it),
    differentiable through the permutation; NumPy leaves the order inside each part open."""
    _unsupported("partition", order=order)
    return _sort(a, axis)


def _round(a, decimals=0, out=None):
    # NumPy's own steps: rint(a * 10**d) / 10**d (integers: only negative decimals change them)
    _unsupported("round", out=out)
    kind = dtype_of(a).kind
    if kind == "b":
        if decimals:
            raise TypeError("np.round of booleans with decimals: NumPy cannot cast the result "
                            "back to bool either")
        a, kind = P.cast(a, dtype="float16"), "f"  # NumPy rounds booleans in float16
    if kind != "f" and decimals >= 0:
        return P.clone(a)
    if decimals == 0:
        return P.rint(a)
    scale = 10.0 ** decimals
    out = P.rint(a * scale) / scale
    return out if kind == "f" else P.cast(out, dtype=dtype_of(a).name)


def _truth(reduce_count):
    """np.all / np.any as counts of nonzero elements (no gradient, boolean results)."""
    def truth(a, axis=None, out=None, keepdims=False, *, where=True):
        _unsupported("all", out=out, where=where)
        axes = _axes(axis, len(_shape(a)))
        nonzero = P.cast(P.ne(a, 0), dtype="int64")
        return reduce_count(P.sum_(nonzero, axis=axes, keepdims=bool(keepdims)),
                            math.prod(_shape(a)[i] for i in axes))
    return truth


def _linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """Traced endpoints: start + k * step, the last point stop itself (NumPy's steps)."""
    if retstep or axis != 0:
        raise TypeError("tapegrad: np.linspace(retstep=, axis=) is not traced")
    div = (num - 1) if endpoint else num
    start, stop = _float(start) if hasattr(start, "shape") else float(start), \
        _float(stop) if hasattr(stop, "shape") else float(stop)
    tail = np.broadcast_shapes(_shape(start), _shape(stop))
    result = np.result_type(*(dtype_of(e) for e in (start, stop) if hasattr(e, "shape")),
                            float(num))
    k = np.arange(num, dtype=result).reshape((num,) + (1,) * len(tail))
    delta = stop - start
    y = k * (delta / div) + start if div > 0 else k * delta + start
    if endpoint and num > 1:
        y = P.setitem(y, stop, index=(num - 1,))
    return y if dtype is None else P.cast(y, dtype=np.dtype(dtype).name)


def _gradient(f, *varargs, axis=None, edge_order=1):
    """np.gradient with uniform scalar spacing: central differences inside, one-sided ones at
    the edges (edge_order=1)."""
    if edge_order != 1 or any(np.ndim(h) for h in varargs):
        raise TypeError("tapegrad: np.gradient is traced with scalar spacings and edge_order=1")
    if dtype_of(f).kind == "b":
        raise TypeError("np.gradient of booleans: NumPy cannot subtract booleans either")
    ndim = len(_shape(f))
    axes = _axes(axis, ndim)
    spacing = list(varargs) * len(axes) if len(varargs) == 1 else list(varargs) or [1.0] * len(axes)
    f = _float(f)
    out = []
    for ax, h in zip(axes, spacing):
        n = _shape(f)[ax]
        lead = (slice(None),) * ax

        def part(lo, hi):
            return P.getitem(f, index=lead + (slice(lo, hi),))
        pieces = [(part(1, 2) - part(0, 1)) / h]
        if n > 2:
            pieces.append((part(2, n) - part(0, n - 2)) / (2.0 * h))
        pieces.append((part(n - 1, n) - part(n - 2, n - 1)) / h)
        out.append(P.cat(*pieces, axis=ax))
    return out[0] if len(out) == 1 else out


def _position(prim):
    def position(a, axis=None, out=None, *, keepdims=False):
        _unsupported(prim.name, out=out)
        ndim = len(_shape(a))
        return prim(a, axis=None if axis is None else int(axis) % max(ndim, 1),
                    keepdims=bool(keepdims))
    return position


def _ordering(a, axis):
    if axis is None:
        return P.reshape(a, shape=(math.prod(_shape(a)),)), 0
    return a, int(axis) % len(_shape(a))


def _argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    _unsupported("argsort", order=order)
    a, axis = _ordering(a, axis)
    return P.argsort(a, axis=axis)


def _sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """Sorted values, differentiable through the (stable) permutation that sorts them."""
    _unsupported("sort", order=order)
    a, axis = _ordering(a, axis)
    return P.take_along_axis(a, P.argsort(a, axis=axis), axis=axis)


ARRAY_FUNCTIONS = {
    np.var: _var, np.std: _std,
    np.cumsum: _scan(P.add, 0), np.cumprod: _scan(P.mul, 1),
    np.trace: _trace, np.diagonal: _diagonal, np.diag: _diag,
    np.tril: _tri_mask(True), np.triu: _tri_mask(False),
    np.vstack: lambda tup, **unused: _concat(_atleast_2d(*tup) if len(tup) > 1
                                             else [_atleast_2d(*tup)], 0),
    np.hstack: _hstack,
    np.dstack: lambda tup: _concat(_atleast_3d(*tup) if len(tup) > 1 else [_atleast_3d(*tup)], 2),
    np.column_stack: _column_stack, np.append: _append,
    np.atleast_1d: _atleast_1d, np.atleast_2d: _atleast_2d, np.atleast_3d: _atleast_3d,
    np.moveaxis: _transposed(_permutation(np.moveaxis)),
    np.swapaxes: _transposed(_permutation(np.swapaxes)),
    np.rollaxis: _transposed(_permutation(np.rollaxis)),
    np.flip: _rearranged(np.flip), np.fliplr: _rearranged(np.fliplr),
    np.flipud: _rearranged(np.flipud), np.rot90: _rearranged(np.rot90),
    np.roll: _rearranged(np.roll), np.tile: _rearranged(np.tile),
    np.repeat: _rearranged(np.repeat), np.split: _rearranged(np.split),
    np.array_split: _rearranged(np.array_split), np.hsplit: _rearranged(np.hsplit),
    np.vsplit: _rearranged(np.vsplit), np.dsplit: _rearranged(np.dsplit),
    np.diff: _diff, np.pad: _pad, np.nan_to_num: _nan_to_num,
    np.tensordot: _tensordot, np.inner: _inner, np.kron: _kron, np.einsum: _einsum,
    np.linalg.inv: lambda a: P.inv(_square_matrices("inv")(a)),
    np.linalg.det: lambda a: P.det(_square_matrices("det")(a)),
    np.linalg.slogdet: _slogdet, np.linalg.solve: _solve,
    np.linalg.cholesky: _cholesky, np.linalg.eigh: _eigh, np.linalg.eig: _eig,
    np.linalg.eigvalsh: _eigvalsh,
    np.linalg.eigvals: lambda a: _eig(a).eigenvalues,
    np.linalg.svd: _svd, np.linalg.svdvals: lambda x: _svd(x, compute_uv=False),
    np.linalg.pinv: _pinv, np.linalg.norm: _norm,
    np.linalg.vector_norm: _vector_norm_api,
    np.linalg.matrix_norm: lambda x, *, keepdims=False, ord="fro": _norm(
        x, ord, (-2, -1), keepdims),
    np.partition: _partition,
    np.round: _round, np.around: _round,
    np.all: _truth(lambda count, n: P.eq(count, n)), np.any: _truth(lambda count, n: P.gt(count, 0)),
    np.linspace: _linspace, np.gradient: _gradient,
    np.argmax: _position(P.argmax), np.argmin: _position(P.argmin),
    np.argsort: _argsort, np.sort: _sort,
    np.cross: _cross, np.select: _select, np.sinc: _sinc, np.full_like: _full_like,
    # real values: the real part is the value, the imaginary part 0 (no gradient)
    np.real: _real_only(np.real, lambda val: val),
    np.real_if_close: _real_only(np.real_if_close, lambda a, tol=100: a),
    np.imag: _real_only(np.imag, lambda val: np.zeros(_shape(val), dtype_of(val))),
    np.angle: _real_only(np.angle, _angle),
    np.iscomplex: _real_only(np.iscomplex, lambda x: np.zeros(_shape(x), bool)),
    np.isreal: _real_only(np.isreal, lambda x: np.ones(_shape(x), bool)),
    np.iscomplexobj: _real_only(np.iscomplexobj, lambda x: False),
    np.isrealobj: _real_only(np.isrealobj, lambda x: True),
    np.isclose: _isclose, np.allclose: _allclose,
    np.i0: _i0, np.nansum: _nansum, np.nanmean: _nanmean, np.average: _average,
}


def _spread_method(np_fn):
    """x.var(...), x.std(...): NumPy's keywords, or PyTorch's (dim, keepdim, unbiased,
    correction; with those the default is PyTorch's unbiased estimate)."""
    def method(self, axis=None, dtype=None, out=None, ddof=None, keepdims=False, *, dim=None,
               keepdim=False, unbiased=None, correction=None):
        torch_style = dim is not None or keepdim or unbiased is not None or correction is not None
        if ddof is None:
            ddof = correction if correction is not None else (
                int(unbiased is not False) if torch_style else 0)
        axis = dim if dim is not None else axis
        return ARRAY_FUNCTIONS[np_fn](self, axis, dtype, out, ddof, keepdims or keepdim)
    return method


# ndarray methods of traced values that are functions of this table (x.var(), x.cumsum(), ...)
METHODS = {
    "var": _spread_method(np.var), "std": _spread_method(np.std),
    "cumsum": lambda self, axis=None, dtype=None, out=None, *, dim=None:
        ARRAY_FUNCTIONS[np.cumsum](self, axis if dim is None else dim, dtype, out),
    "cumprod": lambda self, axis=None, dtype=None, out=None, *, dim=None:
        ARRAY_FUNCTIONS[np.cumprod](self, axis if dim is None else dim, dtype, out),
    "trace": lambda self, *args, **kwargs: _trace(self, *args, **kwargs),
    "diagonal": lambda self, *args, **kwargs: _diagonal(self, *args, **kwargs),
    "repeat": lambda self, *args, **kwargs: ARRAY_FUNCTIONS[np.repeat](self, *args, **kwargs),
    "swapaxes": lambda self, *args: ARRAY_FUNCTIONS[np.swapaxes](self, *args),
    "round": lambda self, decimals=0: _round(self, decimals),
    "all": lambda self, *args, **kwargs: ARRAY_FUNCTIONS[np.all](self, *args, **kwargs),
    "any": lambda self, *args, **kwargs: ARRAY_FUNCTIONS[np.any](self, *args, **kwargs),
    # these dispatch to the tracer's own entries
    "argmax": lambda self, *args, **kwargs: ARRAY_FUNCTIONS[np.argmax](self, *args, **kwargs),
    "argmin": lambda self, *args, **kwargs: ARRAY_FUNCTIONS[np.argmin](self, *args, **kwargs),
    "argsort": lambda self, axis=-1, **kwargs: _argsort(self, axis, **kwargs),
    "squeeze": lambda self, *args, **kwargs: np.squeeze(self, *args, **kwargs),
}


def full_name(fn):
    """How a user spells a NumPy or scipy function: np.linalg.eigh, np.sort, scipy.special.ndtr."""
    name = getattr(fn, "__name__", repr(fn))
    module = getattr(fn, "__module__", None) or ""
    special = sys.modules.get("scipy.special")
    if special is not None and getattr(special, name, None) is fn:
        return f"scipy.special.{name}"
    if module.startswith("numpy") and module != "numpy" and not module.startswith("numpy._"):
        return "np." + module[len("numpy."):] + "." + name
    return f"np.{name}"
