"""THE registry: every primitive once, with its NumPy forward and its derivative rule.

Rules read like the math: `g` is the output cotangent, `ans` the output, then the inputs. They are
written with primitives and operators only (see core.py), so eager autograd, create_graph, tapes,
Numba backends and the source transformer all differentiate with these same lines. Elementwise
rules return cotangents in the broadcast shape; `unbroadcast` (applied by every face) sums them back
to each input's shape.

Parameters (`axis`, `shape`, `index`, ...) arrive normalised: axis is a tuple of non-negative ints or
None, shapes are tuples.
"""
import math

import numpy as np

from .core import defprim, defvjp, defvjp_variadic, dtype_of, ndim_of, quiet, shape_of


_quiet = quiet  # NumPy forward silent on overflow/log(0): results follow IEEE, as in PyTorch


# ---------------------------------------------------------------------------------------------
# Simple elementwise functions of one argument
# ---------------------------------------------------------------------------------------------

neg = defprim("neg", np.negative, source="(-{0})")
exp = defprim("exp", _quiet(np.exp), source="np.exp({0})")
log = defprim("log", _quiet(np.log), source="np.log({0})")
log1p = defprim("log1p", _quiet(np.log1p), grad_fn_name="Log1PBackward0", source="np.log1p({0})")
expm1 = defprim("expm1", _quiet(np.expm1), source="np.expm1({0})")
sqrt = defprim("sqrt", _quiet(np.sqrt), source="np.sqrt({0})")
sin = defprim("sin", np.sin, source="np.sin({0})")
cos = defprim("cos", np.cos, source="np.cos({0})")
tan = defprim("tan", np.tan, source="np.tan({0})")
tanh = defprim("tanh", np.tanh, source="np.tanh({0})")
abs_ = defprim("abs", np.abs, source="np.abs({0})")


def _torch_sign(x):
    # the eager face gives PyTorch's values: torch.sign(NaN) is 0 where np.sign gives NaN
    out = np.sign(x)
    return np.where(np.isnan(out), 0, out) if out.dtype.kind == "f" else out


sign = defprim("sign", np.sign, eager_impl=_torch_sign, source="np.sign({0})")


def _sigmoid(x):
    # e^min(x,0) / (1 + e^-|x|): full precision in both tails, no overflow, and 10x faster
    # than exp(-logaddexp(0, -x)) (NumPy's logaddexp: 14 ns an element)
    out = np.exp(np.minimum(x, 0)) / (1 + np.exp(-np.abs(x)))
    return out.astype(np.result_type(x, np.float32), copy=False)


def _relu(x):
    return np.maximum(x, np.zeros((), dtype=np.result_type(x)))


def _softplus(x):
    return np.logaddexp(np.zeros((), dtype=np.result_type(x, np.float32)), x)


def _erf(x):
    # NumPy has no erf ufunc; math.erf is exact, and erf (gelu) is rare enough to pay for it
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[np.result_type(x, np.float32)])(x)


# the source face spells it exp(-logaddexp(0, -x)) (_sigmoid's values to rounding): differentiated
# again (a second derivative on the source face), 1 / (1 + e^-x) would give inf / inf in the tails
sigmoid = defprim("sigmoid", _quiet(_sigmoid), source="np.exp(-np.logaddexp(0.0, -{0}))")
relu = defprim("relu", _relu, source="np.maximum({0}, 0.0)")
softplus = defprim("softplus", _quiet(_softplus), source="np.logaddexp(0.0, {0})")
erf = defprim("erf", _erf, source="math.erf({0})")

defvjp(neg, lambda g, ans, x: -g)
defvjp(exp, lambda g, ans, x: g * ans)
defvjp(log, lambda g, ans, x: g / x)
defvjp(log1p, lambda g, ans, x: g / (x + 1))
defvjp(expm1, lambda g, ans, x: g * (ans + 1))
defvjp(sqrt, lambda g, ans, x: g / (ans * 2))
defvjp(sin, lambda g, ans, x: g * cos(x))
defvjp(cos, lambda g, ans, x: -g * sin(x))
defvjp(tan, lambda g, ans, x: g * (ans * ans + 1))
defvjp(tanh, lambda g, ans, x: g * (1 - ans * ans))
defvjp(abs_, lambda g, ans, x: g * _sgn(x))
defvjp(sigmoid, lambda g, ans, x: g * ans * (1 - ans))
defvjp(relu, lambda g, ans, x: where(ans <= 0, 0, g))  # PyTorch: NaN passes the gradient
defvjp(softplus, lambda g, ans, x: g * sigmoid(x))
defvjp(erf, lambda g, ans, x: g * (2 / math.sqrt(math.pi)) * exp(-(x * x)))  # a weak float


# Inverse trigonometric, hyperbolic and inverse hyperbolic functions, other bases: PyTorch's names
# for the grad_fn (AsinBackward0), NumPy's for the primitive
def _unary_prim(name, np_fn, torch_name):
    return defprim(name, _quiet(np_fn), grad_fn_name=torch_name.capitalize() + "Backward0",
                   source=f"np.{np_fn.__name__}({{0}})")


arcsin = _unary_prim("arcsin", np.arcsin, "asin")
arccos = _unary_prim("arccos", np.arccos, "acos")
arctan = _unary_prim("arctan", np.arctan, "atan")
sinh = _unary_prim("sinh", np.sinh, "sinh")
cosh = _unary_prim("cosh", np.cosh, "cosh")
arcsinh = _unary_prim("arcsinh", np.arcsinh, "asinh")
arccosh = _unary_prim("arccosh", np.arccosh, "acosh")
arctanh = _unary_prim("arctanh", np.arctanh, "atanh")
log2 = _unary_prim("log2", np.log2, "log2")
log10 = _unary_prim("log10", np.log10, "log10")
exp2 = _unary_prim("exp2", np.exp2, "exp2")
cbrt = _unary_prim("cbrt", np.cbrt, "cbrt")

def _erfc(x):
    x = np.asarray(x)
    return np.vectorize(math.erfc, otypes=[np.result_type(x, np.float32)])(x)


def _special(name):
    """A scipy.special function, imported on first use (import tapegrad stays fast)."""
    def impl(*args, **params):
        import scipy.special
        with np.errstate(all="ignore"):
            return np.asarray(getattr(scipy.special, name)(*args, **params))
    impl.__name__ = name
    return impl


erfc = defprim("erfc", _erfc, source="math.erfc({0})")
lgamma = defprim("lgamma", _special("gammaln"), source="math.lgamma({0})")


def _polygamma(x, n):
    return _special("polygamma")(n, x).astype(np.result_type(x, np.float32), copy=False)


# polygamma(x, n=0) is digamma; each derivative is the next order
polygamma = defprim("polygamma", _polygamma,
                    grad_fn_name=lambda args, params: "DigammaBackward0" if params["n"] == 0
                    else "PolygammaBackward0")
defvjp(erfc, lambda g, ans, x: -g * (2 / math.sqrt(math.pi)) * exp(-(x * x)))
defvjp(lgamma, lambda g, ans, x: g * polygamma(x, n=0))
defvjp(polygamma, lambda g, ans, x, n: g * polygamma(x, n=n + 1))


# The regularised incomplete gamma and beta functions (scipy.special's gammainc(a, x),
# gammaincc(a, x), betainc(a, b, x)): differentiable in x, their densities; the shape
# parameters' derivatives have no closed form, so asking for them is refused (never zero).
def _shape_parameter_refused(name, argument):
    def rule(g, ans, *args):
        raise TypeError(
            f"tapegrad: scipy.special.{name} has no gradient with respect to its shape parameter "
            f"{argument}; pass {argument} as a constant (close over it, or a non-differentiated "
            "argument) and differentiate with respect to x")
    return rule


gammainc = defprim("gammainc", _special("gammainc"), grad_fn_name="IgammaBackward0")
gammaincc = defprim("gammaincc", _special("gammaincc"), grad_fn_name="IgammacBackward0")
betainc = defprim("betainc", _special("betainc"), grad_fn_name="BetaincBackward0")


def _gamma_density(a, x):
    """x^(a-1) e^-x / Gamma(a): d/dx of gammainc(a, x)."""
    return exp((a - 1.0) * log(x) - x - lgamma(a))


defvjp(gammainc, _shape_parameter_refused("gammainc", "a"),
       lambda g, ans, a, x: g * _gamma_density(a, x))
defvjp(gammaincc, _shape_parameter_refused("gammaincc", "a"),
       lambda g, ans, a, x: -(g * _gamma_density(a, x)))
defvjp(betainc, _shape_parameter_refused("betainc", "a"), _shape_parameter_refused("betainc", "b"),
       lambda g, ans, a, b, x: g * exp((a - 1.0) * log(x) + (b - 1.0) * log1p(-x)
                                       - (lgamma(a) + lgamma(b) - lgamma(a + b))))

_LN10 = math.log(10)
defvjp(arcsin, lambda g, ans, x: g / sqrt(1 - x * x))
defvjp(arccos, lambda g, ans, x: -g / sqrt(1 - x * x))
defvjp(arctan, lambda g, ans, x: g / (x * x + 1))
defvjp(sinh, lambda g, ans, x: g * cosh(x))
defvjp(cosh, lambda g, ans, x: g * sinh(x))
defvjp(arcsinh, lambda g, ans, x: g / sqrt(x * x + 1))
defvjp(arccosh, lambda g, ans, x: g / sqrt(x * x - 1))
defvjp(arctanh, lambda g, ans, x: g / (1 - x * x))
defvjp(log2, lambda g, ans, x: g / (x * math.log(2)))
defvjp(log10, lambda g, ans, x: g / (x * _LN10))
defvjp(exp2, lambda g, ans, x: g * ans * math.log(2))
# through cbrt(x) itself (not ans): a second derivative must see ans depend on x
defvjp(cbrt, lambda g, ans, x: g / (cbrt(x) * cbrt(x) * 3))


def _sgn(x):
    """sign(x) with 0 at NaN, as PyTorch's derivative formulas use it (np.sign(NaN) is NaN)."""
    dtype = dtype_of(x).name
    return cast(x > 0, dtype=dtype) - cast(x < 0, dtype=dtype)


# PyTorch's zero gradient for sign, so that `sign(x).sum().backward()` runs
defvjp(sign, lambda g, ans, x: zeros_of(x))


def _clamp(x, min=None, max=None):
    if min is not None:
        x = np.maximum(x, np.asarray(min, dtype=np.result_type(x)))
    if max is not None:
        x = np.minimum(x, np.asarray(max, dtype=np.result_type(x)))
    return x


def _clamp_vjp(g, ans, x, min=None, max=None):
    # PyTorch passes the gradient where min <= x <= max (boundaries included)
    inside = None
    if min is not None:
        inside = x >= min
    if max is not None:
        upper = x <= max
        inside = upper if inside is None else logical_and(inside, upper)
    return g if inside is None else where(inside, g, 0)


clamp = defprim("clamp", _clamp, grad_fn_name="ClampBackward1")
defvjp(clamp, _clamp_vjp)


def _clip(x, low, high):
    return np.minimum(np.maximum(x, low), high)


# clamp between array (Tensor, traced) bounds, an absent one passed as -inf/inf: the gradient goes
# to whichever of x, low, high the result is (x on ties; none where x < low == high), as PyTorch's
# ClampBackward0 sends it; NaN anywhere stops it. low > high gives high, as np.clip, torch.clamp.
clip = defprim("clip", _clip, grad_fn_name="ClampBackward0", source="np.clip({0}, {1}, {2})")
defvjp(clip, lambda g, ans, x, low, high: where(logical_and(x >= low, x <= high), g, 0),
       lambda g, ans, x, low, high: where(logical_and(x < low, low < high), g, 0),
       lambda g, ans, x, low, high: where(logical_or(x > high, high < low), g, 0))


def _cast(x, dtype):
    return np.asarray(x).astype(dtype)


cast = defprim("cast", _cast, grad_fn_name="ToCopyBackward0", source="{0}.astype(np.{dtype})")
# a cast to integers or booleans is piecewise constant: no gradient (PyTorch's and JAX's)
defvjp(cast, lambda g, ans, x, dtype: cast(g, dtype=dtype_of(x).name)
       if np.dtype(dtype).kind in "fc" else None)


# ---------------------------------------------------------------------------------------------
# Binary elementwise functions (NumPy broadcasting)
# ---------------------------------------------------------------------------------------------

def _is_number(x):
    return isinstance(x, (int, float))


add = defprim("add", np.add, source="({0} + {1})")
sub = defprim("sub", np.subtract, source="({0} - {1})",
              grad_fn_name=lambda args, params: "RsubBackward1" if _is_number(args[0])
              else "SubBackward0")
mul = defprim("mul", np.multiply, source="({0} * {1})")
div = defprim("div", _quiet(np.true_divide), source="({0} / {1})")
maximum = defprim("maximum", np.maximum, source="np.maximum({0}, {1})")
minimum = defprim("minimum", np.minimum, source="np.minimum({0}, {1})")

defvjp(add, lambda g, ans, x, y: g, lambda g, ans, x, y: g)
defvjp(sub, lambda g, ans, x, y: g, lambda g, ans, x, y: -g)
defvjp(mul, lambda g, ans, x, y: g * y, lambda g, ans, x, y: g * x)
# the divisor's cotangent reuses g / y (the same instruction as the dividend's: CSE keeps one);
# negated last, so that reverse mode sums such cotangents with subs (trace.backward_on_tape)
defvjp(div, lambda g, ans, x, y: g / y, lambda g, ans, x, y: -(g / y * ans))


def div_vjps(g, ans, x, y):
    """Both rules above at once, g / y made once, the divisor's cotangent returned unnegated:
    (g / y, g / y * ans); reverse mode on a tape subtracts the second (trace._JOINT_VJPS)."""
    quotient = g / y
    return quotient, quotient * ans


def _split_ties(g, loser, tie):
    # PyTorch: each argument that does not lose gets the gradient, halved at ties; NaN loses to
    # nothing, so both arguments of maximum(NaN, y) get all of it
    return where(loser, 0, where(tie, g * 0.5, g))


defvjp(maximum, lambda g, ans, x, y: _split_ties(g, x < y, x == y),
       lambda g, ans, x, y: _split_ties(g, y < x, x == y))
defvjp(minimum, lambda g, ans, x, y: _split_ties(g, x > y, x == y),
       lambda g, ans, x, y: _split_ties(g, y > x, x == y))


_LN2 = math.log(2)
logaddexp = defprim("logaddexp", _quiet(np.logaddexp), source="np.logaddexp({0}, {1})")
logaddexp2 = defprim("logaddexp2", _quiet(np.logaddexp2), source="np.logaddexp2({0}, {1})")
# d/dx log(e^x + e^y) = sigmoid(x - y): smooth where x == y (a rule through max(x, y) has a zero
# second derivative there), and PyTorch's values at infinities (NaN at inf, inf)
defvjp(logaddexp, lambda g, ans, x, y: g * sigmoid(x - y),
       lambda g, ans, x, y: g * sigmoid(y - x))
defvjp(logaddexp2, lambda g, ans, x, y: g * sigmoid((x - y) * _LN2),
       lambda g, ans, x, y: g * sigmoid((y - x) * _LN2))


def _pow_name(args, params):
    # PyTorch: tensor ** number, tensor ** tensor, number ** tensor
    return ("PowBackward2" if _is_number(args[0]) else
            "PowBackward0" if _is_number(args[1]) else "PowBackward1")


pow_ = defprim("pow", _quiet(np.power), grad_fn_name=_pow_name, source="({0} ** {1})")


def _pow_vjp_base(g, ans, x, y):
    if isinstance(y, (int, float)):
        return g * (y * x ** (y - 1)) if y != 0 else g * 0
    return g * y * x ** (y - 1)


def _pow_vjp_exponent(g, ans, x, y):
    # d/dy x**y = x**y log x, taken as 0 where x == 0 (the limit for y > 0), as PyTorch does
    return where(x == 0, 0, g * ans * log(where(x == 0, 1, x)))


defvjp(pow_, _pow_vjp_base, _pow_vjp_exponent)

arctan2 = defprim("arctan2", np.arctan2, grad_fn_name="Atan2Backward0",
                  source="np.arctan2({0}, {1})")
hypot = defprim("hypot", np.hypot, source="np.hypot({0}, {1})")
# d/dy atan2(y, x) = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2), as PyTorch's Atan2Backward0
defvjp(arctan2, lambda g, ans, y, x: g * x / (x * x + y * y),
       lambda g, ans, y, x: -g * y / (x * x + y * y))
defvjp(hypot, lambda g, ans, x, y: g * x / ans, lambda g, ans, x, y: g * y / ans)

# fmax/fmin ignore a NaN argument (NaN only where both are); PyTorch's rule: the first argument
# takes the whole gradient on ties and where the other is NaN
fmax = defprim("fmax", np.fmax, source="np.fmax({0}, {1})")
fmin = defprim("fmin", np.fmin, source="np.fmin({0}, {1})")


def _first_wins(x, y, beats):
    return logical_or(beats(x, y), isnan(y))


defvjp(fmax, lambda g, ans, x, y: where(_first_wins(x, y, ge), g, 0),
       lambda g, ans, x, y: where(_first_wins(x, y, ge), 0, g))
defvjp(fmin, lambda g, ans, x, y: where(_first_wins(x, y, le), g, 0),
       lambda g, ans, x, y: where(_first_wins(x, y, le), 0, g))

# remainder (np.remainder, np.mod, `%`: the divisor's sign) and fmod (C's: the dividend's sign):
# x - q * y with q = floor(x / y) or trunc(x / y), piecewise constant between the jumps
def _scalar_divisor_name(stem):
    # PyTorch: tensor % number is Backward0, tensor % tensor Backward1
    return lambda args, params: stem + ("Backward0" if _is_number(args[1]) else "Backward1")


remainder = defprim("remainder", _quiet(np.remainder), source="np.remainder({0}, {1})",
                    grad_fn_name=_scalar_divisor_name("Remainder"))
fmod = defprim("fmod", _quiet(np.fmod), source="np.fmod({0}, {1})",
               grad_fn_name=_scalar_divisor_name("Fmod"))
defvjp(remainder, lambda g, ans, x, y: g, lambda g, ans, x, y: -g * floor(x / y))
defvjp(fmod, lambda g, ans, x, y: g, lambda g, ans, x, y: -g * trunc(x / y))

where = defprim("where", np.where, source="np.where({0}, {1}, {2})")
defvjp(where, None, lambda g, ans, c, x, y: where(c, g, 0), lambda g, ans, c, x, y: where(c, 0, g))


# ---------------------------------------------------------------------------------------------
# Comparisons and logic: boolean results, no gradient
# ---------------------------------------------------------------------------------------------

def _nondiff(name, impl, source):
    return defprim(name, impl, source=source, differentiable=False)


lt = _nondiff("lt", np.less, "({0} < {1})")
le = _nondiff("le", np.less_equal, "({0} <= {1})")
gt = _nondiff("gt", np.greater, "({0} > {1})")
ge = _nondiff("ge", np.greater_equal, "({0} >= {1})")
eq = _nondiff("eq", np.equal, "({0} == {1})")
ne = _nondiff("ne", np.not_equal, "({0} != {1})")
logical_and = _nondiff("logical_and", np.logical_and, "np.logical_and({0}, {1})")
logical_or = _nondiff("logical_or", np.logical_or, "np.logical_or({0}, {1})")
logical_not = _nondiff("logical_not", np.logical_not, "np.logical_not({0})")
isnan = _nondiff("isnan", np.isnan, "np.isnan({0})")
floor = _nondiff("floor", np.floor, "np.floor({0})")
ceil = _nondiff("ceil", np.ceil, "np.ceil({0})")
rint = _nondiff("rint", np.rint, "np.rint({0})")
isfinite = _nondiff("isfinite", np.isfinite, "np.isfinite({0})")
isinf = _nondiff("isinf", np.isinf, "np.isinf({0})")
floor_divide = _nondiff("floor_divide", _quiet(np.floor_divide), "np.floor_divide({0}, {1})")
trunc = _nondiff("trunc", np.trunc, "np.trunc({0})")


# ---------------------------------------------------------------------------------------------
# Shape and movement
# ---------------------------------------------------------------------------------------------

def _reshape_name(args, params):
    return "ViewBackward0"


reshape = defprim("reshape", lambda x, shape: np.reshape(x, shape), grad_fn_name=_reshape_name,
                  source="np.reshape({0}, {shape})", kind="shape")
defvjp(reshape, lambda g, ans, x, shape: reshape(g, shape=shape_of(x)))


def _transpose_name(args, params):
    axes = params["axes"]
    if len(axes) == 2:
        return "TBackward0"
    moved = [i for i, a in enumerate(axes) if a != i]
    return "TransposeBackward0" if len(moved) == 2 else "PermuteBackward0"


transpose = defprim("transpose", lambda x, axes: np.transpose(x, axes),
                    grad_fn_name=_transpose_name, source="np.transpose({0}, {axes})", kind="shape")
defvjp(transpose, lambda g, ans, x, axes: transpose(g, axes=tuple(np.argsort(axes).tolist())))

def _broadcast_to(x, shape):
    # a filled copy: writable like PyTorch's expand().clone(), and far cheaper than a
    # stride-tricks view for the small arrays of eager code
    x = np.asarray(x)
    if x.shape == tuple(shape):
        return x
    out = np.empty(shape, dtype=x.dtype)
    out[...] = x
    return out


broadcast_to = defprim("broadcast_to", _broadcast_to,
                       grad_fn_name="ExpandBackward0", source="np.broadcast_to({0}, {shape})",
                       kind="shape")
defvjp(broadcast_to, lambda g, ans, x, shape: unbroadcast(g, shape_of(x)))


def unbroadcast(g, shape):
    """Sum a broadcast cotangent back to `shape` (leading axes, and axes of length 1)."""
    gshape = shape_of(g)
    if gshape == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and gshape[lead + i] != 1)
    if axes:
        g = sum_(g, axis=axes, keepdims=False)
    return reshape(g, shape=tuple(shape)) if shape_of(g) != tuple(shape) else g


def _concatenate(*xs, axis):
    return np.concatenate(xs, axis=axis)


def _stack(*xs, axis):
    return np.stack(xs, axis=axis)


def _cat_vjp(argnum, g, ans, *xs, axis):
    start = sum(shape_of(x)[axis] for x in xs[:argnum])
    index = (slice(None),) * axis + (slice(start, start + shape_of(xs[argnum])[axis]),)
    return getitem(g, index=index)


def _stack_vjp(argnum, g, ans, *xs, axis):
    return getitem(g, index=(slice(None),) * axis + (argnum,))


cat = defprim("cat", _concatenate, source="np.concatenate(({args},), axis={axis})", kind="shape")
stack = defprim("stack", _stack, source="np.stack(({args},), axis={axis})", kind="shape")
defvjp_variadic(cat, _cat_vjp)
defvjp_variadic(stack, _stack_vjp)


# ---------------------------------------------------------------------------------------------
# Indexing: reads gather, their gradients scatter-add (repeated indices accumulate)
# ---------------------------------------------------------------------------------------------

def _is_advanced(index):
    return any(isinstance(i, (np.ndarray, list)) for i in index)


def _getitem_name(args, params):
    # PyTorch applies basic indices one dim at a time, skipping full slices; its grad_fn is the
    # last one applied (x[a:b] alone is a fast path that always slices)
    index = params["index"]
    if _is_advanced(index):
        return "IndexBackward0"
    if len(index) == 1 and isinstance(index[0], slice):
        return "SliceBackward0"
    shape = shape_of(args[0])
    dims, dim = [], 0
    for item in index:
        dims.append(dim)
        if item is Ellipsis:
            dim += len(shape) - sum(1 for i in index if i is not None and i is not Ellipsis)
        elif item is not None:
            dim += 1
    for item, dim in zip(reversed(index), reversed(dims)):
        if item is None:
            return "UnsqueezeBackward0"
        if isinstance(item, (int, np.integer)):
            return "SelectBackward0"
        if isinstance(item, slice) and item.indices(shape[dim]) != (0, shape[dim], 1):
            return "SliceBackward0"
    return "AliasBackward0"


def _getitem(x, index):
    out = np.asarray(x)[index]
    return out.copy() if isinstance(out, np.ndarray) else np.asarray(out)


def _index_add(base, values, index):
    out = np.array(base, copy=True)
    if _is_advanced(index):
        np.add.at(out, index, values)
    else:
        out[index] += values
    return out


def _setitem(x, values, index):
    out = np.array(x, copy=True)
    out[index] = values
    return out


getitem = defprim("getitem", _getitem, grad_fn_name=_getitem_name, source="{0}[{index}]",
                  kind="index")
index_add = defprim("index_add", _index_add, grad_fn_name="IndexAddBackward0", kind="index")
setitem = defprim("setitem", _setitem, grad_fn_name="CopySlices", kind="index")


def zeros_of(x):
    """A constant zero array shaped like x; constants mix with every kind of value."""
    return np.zeros(shape_of(x), dtype=dtype_of(x))


defvjp(getitem, lambda g, ans, x, index: index_add(zeros_of(x), g, index=index))
defvjp(index_add, lambda g, ans, base, values, index: g,
       lambda g, ans, base, values, index: unbroadcast(getitem(g, index=index), shape_of(values)))
defvjp(setitem, lambda g, ans, x, values, index: setitem(g, 0, index=index),
       lambda g, ans, x, values, index: unbroadcast(getitem(g, index=index), shape_of(values)))


# ---------------------------------------------------------------------------------------------
# Reductions over `axis` (a tuple, or None for all axes)
# ---------------------------------------------------------------------------------------------

def _reduced_name(full, partial):
    return lambda args, params: full if params.get("axis") is None else partial


def expand_reduced(g, shape, axis, keepdims):
    """Broadcast the cotangent of a reduction back over the reduced axes of `shape`."""
    if not keepdims:
        axes = range(len(shape)) if axis is None else axis
        kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
        g = reshape(g, shape=kept)
    return broadcast_to(g, shape=tuple(shape))


def _count(shape, axis):
    if axis is None:
        return math.prod(shape)  # (no generator: a full mean's forward paid a third for it)
    return math.prod(shape[i] for i in axis)


def _sum(x, axis=None, keepdims=False):
    return np.asarray(np.sum(x, axis=axis, keepdims=keepdims))


def _mean(x, axis=None, keepdims=False):
    x = np.asarray(x)
    return np.asarray(np.add.reduce(x, axis=axis, keepdims=keepdims) / _count(x.shape, axis))


def _prod(x, axis=None, keepdims=False):
    return np.asarray(np.prod(x, axis=axis, keepdims=keepdims))


def _amax(x, axis=None, keepdims=False):
    return np.asarray(np.amax(x, axis=axis, keepdims=keepdims))


def _amin(x, axis=None, keepdims=False):
    return np.asarray(np.amin(x, axis=axis, keepdims=keepdims))


sum_ = defprim("sum", _sum, grad_fn_name=_reduced_name("SumBackward0", "SumBackward1"),
               source="np.sum({0}, axis={axis}, keepdims={keepdims})", kind="reduction")
mean = defprim("mean", _mean, grad_fn_name=_reduced_name("MeanBackward0", "MeanBackward1"),
               source="np.mean({0}, axis={axis}, keepdims={keepdims})", kind="reduction")
prod = defprim("prod", _prod, grad_fn_name=_reduced_name("ProdBackward0", "ProdBackward1"),
               source="np.prod({0}, axis={axis}, keepdims={keepdims})", kind="reduction")
amax = defprim("amax", _amax, source="np.amax({0}, axis={axis}, keepdims={keepdims})",
               kind="reduction")
amin = defprim("amin", _amin, source="np.amin({0}, axis={axis}, keepdims={keepdims})",
               kind="reduction")

defvjp(sum_, lambda g, ans, x, axis=None, keepdims=False:
       expand_reduced(g, shape_of(x), axis, keepdims))
defvjp(mean, lambda g, ans, x, axis=None, keepdims=False:
       expand_reduced(g, shape_of(x), axis, keepdims) / _count(shape_of(x), axis))


def _prod_vjp(g, ans, x, axis=None, keepdims=False):
    # ans / x fails at zeros: a lone zero gets the product of the others, two zeros give 0
    shape = shape_of(x)
    is_zero = x == 0
    nonzero = where(is_zero, 1, x)
    others_if_zero = prod(nonzero, axis=axis, keepdims=keepdims)
    zeros = sum_(cast(is_zero, dtype="int64"), axis=axis, keepdims=keepdims)
    at_zero = where(zeros == 1, others_if_zero, 0)
    g_full = expand_reduced(g, shape, axis, keepdims)
    return g_full * where(is_zero, expand_reduced(at_zero, shape, axis, keepdims),
                          expand_reduced(ans, shape, axis, keepdims) / nonzero)


def _extremum_vjp(g, ans, x, axis=None, keepdims=False):
    # ties share the gradient evenly, as torch.amax/amin do; a NaN result comes from the NaNs of
    # its slice, which share it as in torch.max() (x == NaN is never true)
    shape = shape_of(x)
    hit = logical_or(x == expand_reduced(ans, shape, axis, keepdims), isnan(x))
    hit = cast(hit, dtype=dtype_of(x).name)
    share = hit / expand_reduced(sum_(hit, axis=axis, keepdims=keepdims), shape, axis, keepdims)
    return expand_reduced(g, shape, axis, keepdims) * share


defvjp(prod, _prod_vjp)
defvjp(amax, _extremum_vjp)
defvjp(amin, _extremum_vjp)


def _logsumexp(x, axis=None, keepdims=False):
    m = np.amax(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.asarray(out if keepdims else np.squeeze(out, axis=axis))


logsumexp = defprim("logsumexp", _logsumexp, kind="reduction")
defvjp(logsumexp, lambda g, ans, x, axis=None, keepdims=False:
       expand_reduced(g, shape_of(x), axis, keepdims)
       * exp(x - expand_reduced(ans, shape_of(x), axis, keepdims)))


def _norm(x, ord=2, axis=None, keepdims=False):
    a = np.abs(x)
    if ord == 2:
        out = np.sqrt(np.sum(a * a, axis=axis, keepdims=keepdims))
    elif ord == 1:
        out = np.sum(a, axis=axis, keepdims=keepdims)
    elif ord == np.inf:
        out = np.amax(a, axis=axis, keepdims=keepdims)
    else:
        raise ValueError(f"tapegrad: norm supports ord 1, 2 and inf, not {ord!r}")
    return np.asarray(out)


def _norm_vjp(g, ans, x, ord=2, axis=None, keepdims=False):
    shape = shape_of(x)
    g_full = expand_reduced(g, shape, axis, keepdims)
    if ord == 1:
        return g_full * _sgn(x)
    if ord == 2:
        # the subgradient 0 at x == 0, as PyTorch gives
        n = expand_reduced(ans, shape, axis, keepdims)
        return g_full * x / where(n == 0, 1, n)
    return _extremum_vjp(g, ans, abs_(x), axis, keepdims) * _sgn(x)


norm = defprim("norm", _norm, grad_fn_name="LinalgVectorNormBackward0", kind="reduction")
defvjp(norm, _norm_vjp)


def _softmax(x, axis):
    e = np.exp(x - np.amax(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    return x - _logsumexp(x, axis=(axis,), keepdims=True)


softmax = defprim("softmax", _softmax, kind="reduction")
log_softmax = defprim("log_softmax", _log_softmax, grad_fn_name="LogSoftmaxBackward0",
                      kind="reduction")
defvjp(softmax, lambda g, ans, x, axis:
       ans * (g - sum_(g * ans, axis=(axis,), keepdims=True)))
defvjp(log_softmax, lambda g, ans, x, axis:
       g - exp(ans) * sum_(g, axis=(axis,), keepdims=True))


# Positions of extrema and orderings: integer results, no gradient. Sorting differentiates
# through the permutation: take_along_axis gathers, its rule scatters back.
argmax = defprim("argmax", lambda x, axis=None, keepdims=False: np.asarray(
    np.argmax(x, axis=axis, keepdims=keepdims)), differentiable=False, kind="reduction")
argmin = defprim("argmin", lambda x, axis=None, keepdims=False: np.asarray(
    np.argmin(x, axis=axis, keepdims=keepdims)), differentiable=False, kind="reduction")
argsort = defprim("argsort", lambda x, axis: np.argsort(x, axis=axis, kind="stable"),
                  differentiable=False, kind="index")


def _scatter_along_axis(g, indices, axis, shape):
    out = np.zeros(shape, dtype=np.asarray(g).dtype)
    np.put_along_axis(out, np.asarray(indices), g, axis=axis)  # a permutation: no repeats
    return out


take_along_axis = defprim("take_along_axis", lambda x, indices, axis: np.take_along_axis(
    np.asarray(x), np.asarray(indices), axis=axis), grad_fn_name="GatherBackward0", kind="index")
scatter_along_axis = defprim("scatter_along_axis", _scatter_along_axis,
                             grad_fn_name="ScatterBackward0", kind="index")
# indices are permutations along the axis (argsort's): the gather and the scatter are adjoint
defvjp(take_along_axis, lambda g, ans, x, indices, axis: scatter_along_axis(
    g, indices, axis=axis, shape=shape_of(x)), None)
defvjp(scatter_along_axis, lambda g, ans, v, indices, axis, shape: take_along_axis(
    g, indices, axis=axis), None)


# ---------------------------------------------------------------------------------------------
# Linear algebra: matmul with NumPy's rules for 1-D and batched operands
# ---------------------------------------------------------------------------------------------

def _matmul_name(args, params):
    dims = (ndim_of(args[0]), ndim_of(args[1]))
    return {(2, 2): "MmBackward0", (1, 1): "DotBackward0", (2, 1): "MvBackward0",
            (1, 2): "SqueezeBackward4", (3, 3): "BmmBackward0"}.get(dims, "UnsafeViewBackward0")


matmul = defprim("matmul", np.matmul, grad_fn_name=_matmul_name, source="({0} @ {1})",
                 kind="linalg")


def _swap_last(x):
    n = ndim_of(x)
    return transpose(x, axes=tuple(range(n - 2)) + (n - 1, n - 2))


def _as_matrices(g, a, b):
    """Lift 1-D operands to matrices so that one formula covers every case."""
    a2 = reshape(a, shape=(1,) + shape_of(a)) if ndim_of(a) == 1 else a
    b2 = reshape(b, shape=shape_of(b) + (1,)) if ndim_of(b) == 1 else b
    gshape = shape_of(g)
    if ndim_of(a) == 1:
        gshape = gshape[:-1] + (1,) + gshape[-1:] if ndim_of(b) > 1 else gshape + (1,)
    if ndim_of(b) == 1:
        gshape = gshape + (1,)
    return reshape(g, shape=gshape) if gshape != shape_of(g) else g, a2, b2


def _matmul_vjp_left(g, ans, a, b):
    g2, a2, b2 = _as_matrices(g, a, b)
    ga = matmul(g2, _swap_last(b2))
    return reshape(unbroadcast(ga, shape_of(a2)), shape=shape_of(a))


def _matmul_vjp_right(g, ans, a, b):
    g2, a2, b2 = _as_matrices(g, a, b)
    gb = matmul(_swap_last(a2), g2)
    return reshape(unbroadcast(gb, shape_of(b2)), shape=shape_of(b))


defvjp(matmul, _matmul_vjp_left, _matmul_vjp_right)


# inverse, determinant, log |determinant| and solve, for stacks of square matrices too; rules
# as in PyTorch's linalg backward formulas (and HIPS autograd's)
def _matrix_cotangent(g):
    """A cotangent of one number per matrix, broadcast against the matrices."""
    return reshape(g, shape=shape_of(g) + (1, 1))


inv = defprim("inv", lambda a: np.linalg.inv(a), grad_fn_name="LinalgInvExBackward0",
              source="np.linalg.inv({0})", kind="linalg")
det = defprim("det", lambda a: np.asarray(np.linalg.det(a)), grad_fn_name="LinalgDetBackward0",
              source="np.linalg.det({0})", kind="linalg")
logabsdet = defprim("logabsdet", lambda a: np.asarray(np.linalg.slogdet(a)[1]),
                    grad_fn_name="LinalgSlogdetBackward0", kind="linalg")
solve = defprim("solve", lambda a, b: np.linalg.solve(a, b), grad_fn_name="LinalgSolveExBackward0",
                source="np.linalg.solve({0}, {1})", kind="linalg")
# d A^-1 = -A^-1 dA A^-1
defvjp(inv, lambda g, ans, a: -matmul(_swap_last(ans), matmul(g, _swap_last(ans))))
# d det A = det A tr(A^-1 dA); d log|det A| = tr(A^-1 dA)
defvjp(det, lambda g, ans, a: _matrix_cotangent(g * ans) * _swap_last(inv(a)))
defvjp(logabsdet, lambda g, ans, a: _matrix_cotangent(g) * _swap_last(inv(a)))


def _solve_vjp_b(g, ans, a, b):
    return solve(_swap_last(a), g)  # x = A^-1 b: b's cotangent is A^-T g


def _solve_vjp_a(g, ans, a, b):
    return -matmul(solve(_swap_last(a), g), _swap_last(ans))  # -A^-T g x^T


defvjp(solve, _solve_vjp_a, _solve_vjp_b)


# Cholesky, symmetric eigendecompositions, SVD, pseudo-inverse and real eig. Each result is its own
# primitive (values, vectors, ...): the gradient of a decomposition is the sum of one term per used
# result, so an unused one costs nothing and adds nothing. Cholesky and eigh read the lower
# triangle, as NumPy's do: the symmetric gradient (PyTorch's) is folded onto it, so it agrees with
# finite differences in every entry.
def _fold_lower(sym):
    """The gradient of f(tril(A) + tril(A, -1)^T) from the symmetric gradient of f."""
    n, dtype = shape_of(sym)[-1], dtype_of(sym)
    return sym * (np.tril(np.ones((n, n), dtype=dtype), -1) * 2 + np.eye(n, dtype=dtype))


def _row(v):
    """v (..., n) as (..., 1, n): scales the columns of a matrix."""
    return reshape(v, shape=shape_of(v)[:-1] + (1, shape_of(v)[-1]))


def _column(v):
    return reshape(v, shape=shape_of(v) + (1,))


def _pair_gaps(w):
    """w_j - w_i at [..., i, j]."""
    return _row(w) - _column(w)


def _gap_ratio(k, gaps):
    """k / gaps off the diagonal; 0 on it and where k is 0 (the cotangent does not see that
    pair), so only a degenerate pair that the cotangent does see gives inf/nan (as JAX). The k == 0
    test is confined to degenerate pairs: elsewhere the rule stays linear in k, which forward mode
    (the transposed VJP) relies on."""
    skip = logical_or(np.eye(shape_of(k)[-1], dtype=bool), logical_and(gaps == 0, k == 0))
    return where(skip, 0, k / where(skip, 1, gaps))


def _eye_like(a, n):
    return np.eye(n, dtype=dtype_of(a))


cholesky = defprim("cholesky", lambda a: np.linalg.cholesky(a),
                   grad_fn_name="LinalgCholeskyExBackward0", kind="linalg")


def _cholesky_vjp(g, ans, a):
    # sym(L^-T Phi(L^T tril(g)) L^-1), Phi: the lower triangle with half the diagonal (Murray 2016)
    n = shape_of(a)[-1]
    lower = np.tril(np.ones((n, n), dtype=dtype_of(a)))
    lt = _swap_last(ans)
    phi = matmul(lt, g * lower) * (lower - _eye_like(a, n) * 0.5)
    full = _swap_last(solve(lt, _swap_last(solve(lt, phi))))
    return _fold_lower((full + _swap_last(full)) * 0.5)


defvjp(cholesky, _cholesky_vjp)

eigh_values = defprim("eigh_values", lambda a: np.linalg.eigh(a)[0],
                      grad_fn_name="LinalgEighBackward0", kind="linalg")
eigh_vectors = defprim("eigh_vectors", lambda a: np.linalg.eigh(a)[1],
                       grad_fn_name="LinalgEighBackward0", kind="linalg")
# dw_i = v_i^T dA v_i; dV = V (F o V^T dA V), F_ij = 1 / (w_j - w_i)
defvjp(eigh_values, lambda g, ans, a: _fold_lower(matmul(eigh_vectors(a) * _row(g),
                                                         _swap_last(eigh_vectors(a)))))


def _eigh_vjp_vectors(g, ans, a):
    m = matmul(_swap_last(ans), g)
    inner = _gap_ratio((m - _swap_last(m)) * 0.5, _pair_gaps(eigh_values(a)))
    return _fold_lower(matmul(ans, matmul(inner, _swap_last(ans))))


defvjp(eigh_vectors, _eigh_vjp_vectors)


def _svd(a, part):
    if part == 1:  # as np.linalg.norm: LAPACK computing U and V too never returns for inf entries
        return np.linalg.svd(a, compute_uv=False)
    return np.linalg.svd(a, full_matrices=False)[part]


# the thin SVD A = U diag(s) Vt (U m x k, Vt k x n, k = min(m, n)); rules for distinct nonzero s
svd_u = defprim("svd_u", lambda a: _svd(a, 0), grad_fn_name="LinalgSvdBackward0", kind="linalg")
svd_values = defprim("svd_values", lambda a: _svd(a, 1), grad_fn_name="LinalgSvdBackward0",
                     kind="linalg")
svd_vt = defprim("svd_vt", lambda a: _svd(a, 2), grad_fn_name="LinalgSvdBackward0", kind="linalg")
defvjp(svd_values, lambda g, ans, a: matmul(svd_u(a) * _row(g), svd_vt(a)))


def _svd_vjp_u(g, ans, a):
    # U (F o (U^T g - g^T U)) S Vt + (I - U U^T) g S^-1 Vt, F_ij = 1 / (s_j^2 - s_i^2)
    s, vt = svd_values(a), svd_vt(a)
    m = matmul(_swap_last(ans), g)
    inner = _gap_ratio(m - _swap_last(m), _pair_gaps(s * s)) * _row(s)
    outside = (g - matmul(ans, m)) / _row(s)
    return matmul(matmul(ans, inner) + outside, vt)


def _svd_vjp_vt(g, ans, a):
    # U S (F o (Vt g^T - g Vt^T)) Vt + U S^-1 g (I - Vt^T Vt): the U rule for A^T
    u, s = svd_u(a), svd_values(a)
    m = matmul(ans, _swap_last(g))
    inner = _column(s) * _gap_ratio(m - _swap_last(m), _pair_gaps(s * s))
    outside = (g - matmul(_swap_last(m), ans)) / _column(s)
    return matmul(u, matmul(inner, ans) + outside)


defvjp(svd_u, _svd_vjp_u)
defvjp(svd_vt, _svd_vjp_vt)

pinv = defprim("pinv", lambda a, rcond: np.linalg.pinv(a, rcond=rcond),
               grad_fn_name="PinvBackward0", kind="linalg")


def _pinv_vjp(g, ans, a, rcond):
    # Golub & Pereyra (constant rank): dX = -X dA X + X X^T dA^T (I - A X) + (I - X A) dA^T X^T X
    m, n = shape_of(a)[-2:]
    xt = _swap_last(ans)
    gt = _swap_last(g)
    left = _eye_like(a, m) - matmul(a, ans)
    right = _eye_like(a, n) - matmul(ans, a)
    return (-matmul(xt, matmul(g, xt)) + matmul(left, matmul(gt, matmul(ans, xt)))
            + matmul(matmul(xt, ans), matmul(gt, right)))


defvjp(pinv, _pinv_vjp)


def _real_eig(a, part):
    w, v = np.linalg.eig(a)
    if np.iscomplexobj(w):
        raise np.linalg.LinAlgError(
            "tapegrad: np.linalg.eig has complex eigenvalues for this matrix; tapegrad "
            "differentiates real eigendecompositions only (symmetric matrices: np.linalg.eigh)")
    return (w, v)[part]


eig_values = defprim("eig_values", lambda a: _real_eig(a, 0), grad_fn_name="LinalgEigBackward0",
                     kind="linalg")
eig_vectors = defprim("eig_vectors", lambda a: _real_eig(a, 1), grad_fn_name="LinalgEigBackward0",
                      kind="linalg")
# A = V diag(w) V^-1 with unit columns: A-bar = V^-T (diag(gw) + F o (M - V^T V diag(M))) V^T,
# M = V^T gV, F_ij = 1 / (w_j - w_i) (PyTorch's linalg_eig_backward, real case)
defvjp(eig_values, lambda g, ans, a: solve(_swap_last(eig_vectors(a)),
                                           _column(g) * _swap_last(eig_vectors(a))))


def _eig_vjp_vectors(g, ans, a):
    m = matmul(_swap_last(ans), g)
    diagonal = sum_(ans * g, axis=(ndim_of(ans) - 2,), keepdims=False)
    k = m - matmul(_swap_last(ans), ans) * _row(diagonal)
    return solve(_swap_last(ans), matmul(_gap_ratio(k, _pair_gaps(eig_values(a))),
                                         _swap_last(ans)))


defvjp(eig_vectors, _eig_vjp_vectors)


# ---------------------------------------------------------------------------------------------
# Losses that PyTorch shows as one node
# ---------------------------------------------------------------------------------------------

def _reduce_loss(out, reduction):
    return np.asarray(out.mean() if reduction == "mean" else out.sum() if reduction == "sum" else out)


def _loss_count(x, reduction):
    return int(np.prod(shape_of(x))) if reduction == "mean" else 1


def _mse_loss(x, y, reduction="mean"):
    d = np.subtract(x, y)
    return _reduce_loss(d * d, reduction)


def _mse_vjp(sign_):
    def rule(g, ans, x, y, reduction="mean"):
        d = x - y
        return g * (sign_ * 2.0 / _loss_count(d, reduction)) * d
    return rule


mse_loss = defprim("mse_loss", _mse_loss, grad_fn_name="MseLossBackward0", kind="loss")
defvjp(mse_loss, _mse_vjp(1.0), _mse_vjp(-1.0))


def _bce_logs(p):
    # PyTorch clamps the logs at -100 so that probabilities of exactly 0 and 1 stay finite
    return maximum(log(p), -100.0), maximum(log(1 - p), -100.0)


def _bce(p, y, weight, reduction="mean"):
    with np.errstate(divide="ignore"):
        log_p, log_1mp = np.maximum(np.log(p), -100.0), np.maximum(np.log(1 - p), -100.0)
    return _reduce_loss(-(y * log_p + (1 - y) * log_1mp) * weight, reduction)


_BCE_EPSILON = float(np.float32(1e-12))  # PyTorch's constant is a C float


def _bce_vjp_input(g, ans, p, y, weight, reduction="mean"):
    # PyTorch's rule: (p - y) / max(p (1 - p), 1e-12), finite at p = 0 and p = 1
    return (p - y) / maximum((1 - p) * p, _BCE_EPSILON) * g * weight / _loss_count(p, reduction)


def _bce_vjp_target(g, ans, p, y, weight, reduction="mean"):
    log_p, log_1mp = _bce_logs(p)
    return g * weight / _loss_count(p, reduction) * (log_1mp - log_p)


def _bce_vjp_weight(g, ans, p, y, weight, reduction="mean"):
    log_p, log_1mp = _bce_logs(p)
    return -g / _loss_count(p, reduction) * (y * log_p + (1 - y) * log_1mp)


binary_cross_entropy = defprim("binary_cross_entropy", _bce, kind="loss",
                               grad_fn_name="BinaryCrossEntropyBackward0")
defvjp(binary_cross_entropy, _bce_vjp_input, _bce_vjp_target, _bce_vjp_weight)


def _copy(x):
    return np.array(x, copy=True)


clone = defprim("clone", _copy, source="np.copy({0})", kind="shape")
defvjp(clone, lambda g, ans, x: g)


# ---------------------------------------------------------------------------------------------
# Scalar forms for the compiled backends: one Numba expression per elementwise primitive over
# float64 operands {0} {1} {2} (booleans are 0.0/1.0). `math` is in scope; these work in @njit
# and in numba.cuda device code alike, and the backends' tests check them against `impl`.
# ---------------------------------------------------------------------------------------------

_SCALAR_FORMS = {
    "neg": "-{0}", "exp": "math.exp({0})", "log": "math.log({0})", "log1p": "math.log1p({0})",
    "expm1": "math.expm1({0})", "sqrt": "math.sqrt({0})", "sin": "math.sin({0})",
    "cos": "math.cos({0})", "tan": "math.tan({0})", "tanh": "math.tanh({0})",
    "abs": "abs({0})", "sign": "(1.0 if {0} > 0.0 else (-1.0 if {0} < 0.0 else {0}))",
    "sigmoid": "(1.0 / (1.0 + math.exp(-{0})))",
    "relu": "({0} if not {0} <= 0.0 else 0.0)",
    "softplus": "(max({0}, 0.0) + math.log1p(math.exp(-abs({0}))))",
    "erf": "math.erf({0})",
    "add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "div": "({0} / {1})",
    # NaN wins, as in np.maximum / np.minimum
    "maximum": "({0} if ({0} >= {1} or {0} != {0}) else {1})",
    "minimum": "({0} if ({0} <= {1} or {0} != {0}) else {1})",
    "clip": "(min(max({0}, {1}), {2}) if ({0} == {0} and {1} == {1} and {2} == {2})"
            " else math.nan)",
    "pow": "({0} ** {1})", "where": "({1} if {0} != 0.0 else {2})",
    # np.logaddexp's and np.logaddexp2's own steps: equal arguments (infinities too) first, NaN last
    "logaddexp": "({0} + 0.6931471805599453 if {0} == {1} else"
                 " ({0} + math.log1p(math.exp({1} - {0})) if {0} > {1} else"
                 " ({1} + math.log1p(math.exp({0} - {1})) if {0} < {1} else {0} + {1})))",
    "logaddexp2": "({0} + 1.0 if {0} == {1} else"
                  " ({0} + 1.4426950408889634 * math.log1p(2.0 ** ({1} - {0})) if {0} > {1} else"
                  " ({1} + 1.4426950408889634 * math.log1p(2.0 ** ({0} - {1})) if {0} < {1}"
                  " else {0} + {1})))",
    "lt": "(1.0 if {0} < {1} else 0.0)", "le": "(1.0 if {0} <= {1} else 0.0)",
    "gt": "(1.0 if {0} > {1} else 0.0)", "ge": "(1.0 if {0} >= {1} else 0.0)",
    "eq": "(1.0 if {0} == {1} else 0.0)", "ne": "(1.0 if {0} != {1} else 0.0)",
    "logical_and": "(1.0 if ({0} != 0.0 and {1} != 0.0) else 0.0)",
    "logical_or": "(1.0 if ({0} != 0.0 or {1} != 0.0) else 0.0)",
    "logical_not": "(1.0 if {0} == 0.0 else 0.0)",
    "isnan": "(1.0 if {0} != {0} else 0.0)",
    # math.floor returns an int: NaN, inf and |x| >= 2**52 (already whole) pass through
    "floor": "(math.floor({0}) * 1.0 if abs({0}) < 4503599627370496.0 else {0})",
    "ceil": "(math.ceil({0}) * 1.0 if abs({0}) < 4503599627370496.0 else {0})",
    # round() of a float is half-to-even, as np.rint
    "rint": "(round({0}) * 1.0 if abs({0}) < 4503599627370496.0 else {0})",
    "isfinite": "(1.0 if abs({0}) < math.inf else 0.0)",
    "isinf": "(1.0 if abs({0}) == math.inf else 0.0)",
    "trunc": "(math.trunc({0}) * 1.0 if abs({0}) < 4503599627370496.0 else {0})",
    "arcsin": "math.asin({0})", "arccos": "math.acos({0})", "arctan": "math.atan({0})",
    "sinh": "math.sinh({0})", "cosh": "math.cosh({0})", "arcsinh": "math.asinh({0})",
    "arccosh": "math.acosh({0})", "arctanh": "math.atanh({0})",
    "log2": "math.log2({0})", "log10": "math.log10({0})", "exp2": "(2.0 ** {0})",
    "erfc": "math.erfc({0})", "lgamma": "math.lgamma({0})",
    "cbrt": "math.copysign(abs({0}) ** (1.0 / 3.0), {0})",
    "arctan2": "math.atan2({0}, {1})", "hypot": "math.hypot({0}, {1})",
    "fmax": "({0} if ({0} >= {1} or {1} != {1}) else {1})",
    "fmin": "({0} if ({0} <= {1} or {1} != {1}) else {1})",
    # Numba's float % is Python's, which is NumPy's remainder (the divisor's sign; NaN for a zero
    # divisor under error_model="numpy"); on positive operands it is exactly fmod (Numba has no
    # math.fmod on the CPU)
    "remainder": "({0} % {1})",
    # Python's float // is NumPy's floor_divide (both from fmod: floor(x / y) can differ)
    "floor_divide": "({0} // {1})",
    "fmod": "math.copysign(abs({0}) % abs({1}), {0})",
}
for _name, _form in _SCALAR_FORMS.items():
    globals()[_name if _name not in ("abs", "pow") else _name + "_"].scalar = _form
