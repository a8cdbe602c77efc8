"""One table of sample inputs per differentiable primitive of the registry.

Every face (eager Tensors, traced tapes, Numba backends, emitted source) drives its gradient checks
from this table, so entries are plain data: the primitive's name, its positional arguments as NumPy
float64 arrays (or Python scalars, boolean masks, integer indices), its parameters already
normalised as the registry expects them, and which arguments are differentiable.

    s = SAMPLES[0]
    s.call(*s.diff_values())        # binds the primitive: arrays, Tensors, tracers, symbols alike
    s.api(torch, *tensors)          # the same operation through the PyTorch-style API (optional)

`api` is a small lambda `(lib, *args)` that works with `lib = tapegrad` and `lib = torch` alike; it
receives every array argument as a tensor of lib, differentiable ones requiring grad. Entries that
sit on a kink or a tie (where finite differences mean nothing) set `finite_differences=False` and
are compared with PyTorch's subgradient choice only.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from tapegrad import primitives_nn
from tapegrad.core import REGISTRY, bind


@dataclass(frozen=True)
class Sample:
    prim: str
    args: tuple
    params: dict = field(default_factory=dict)
    diff: Optional[tuple] = None  # argnums that get a gradient; None: every float array
    api: Optional[Callable] = None  # (lib, *args) -> same op through torch-like API of lib
    note: str = ""
    second_order: bool = True
    finite_differences: bool = True
    eps: float = 1e-6
    atol: float = 1e-5
    rtol: float = 1e-3

    @property
    def argnums(self):
        if self.diff is not None:
            return self.diff
        return tuple(i for i, a in enumerate(self.args)
                     if isinstance(a, np.ndarray) and a.dtype.kind == "f")

    @property
    def id(self):
        shapes = ",".join("x".join(map(str, np.shape(a))) or "()" if isinstance(a, np.ndarray)
                          else repr(a) for a in self.args)
        params = ",".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.prim}[{shapes}]{'{' + params + '}' if params else ''}" + (
            f"-{self.note}" if self.note else "")

    def diff_values(self):
        return tuple(self.args[i] for i in self.argnums)

    def call(self, *diff_values):
        """Bind the primitive with diff_values in the differentiable positions."""
        args = list(self.args)
        for i, v in zip(self.argnums, diff_values):
            args[i] = v
        return bind(REGISTRY[self.prim], tuple(args), dict(self.params))


def _short(v):
    if isinstance(v, tuple) and any(isinstance(i, np.ndarray) for i in v):
        return "(" + ",".join("arr" if isinstance(i, np.ndarray) else repr(i) for i in v) + ")"
    return repr(v).replace(" ", "")


# ---------------------------------------------------------------------------------------------
# Deterministic inputs
# ---------------------------------------------------------------------------------------------

_rng = np.random.default_rng(20240607)


def randn(*shape):
    return np.asarray(_rng.standard_normal(shape))  # 0-d stays an array, not np.float64


def uniform(lo, hi, *shape):
    return np.asarray(_rng.uniform(lo, hi, shape))


def away_from(values, points, gap=0.1):
    """Push values at least `gap` from the kinks in `points`, where finite differences break."""
    out = np.array(values, dtype=np.float64)
    for p in points:
        near = np.abs(out - p) < gap
        out = np.where(near, p + np.where(out >= p, gap, -gap), out)
    return out


SHAPES = [(), (3,), (2, 3), (2, 1, 3)]
BROADCAST_PAIRS = [((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((), (2, 3)), ((2, 3, 4), (3, 1))]
SAMPLES = []


def add(prim, *args, **kw):
    params = kw.pop("params", {})
    # arithmetic on 0-d arrays yields NumPy scalars; keep every number-valued input an array
    args = tuple(np.asarray(a) if isinstance(a, np.generic) else a for a in args)
    SAMPLES.append(Sample(prim, args, params, **kw))


# ---------------------------------------------------------------------------------------------
# Elementwise functions of one argument: every rank, inputs inside the domain and off the kinks
# ---------------------------------------------------------------------------------------------

_UNARY = {
    "neg": (lambda s: randn(*s), lambda t, x: -x),
    "exp": (lambda s: randn(*s), lambda t, x: t.exp(x)),
    "log": (lambda s: uniform(0.2, 3.0, *s), lambda t, x: t.log(x)),
    "log1p": (lambda s: uniform(-0.7, 3.0, *s), lambda t, x: t.log1p(x)),
    "expm1": (lambda s: randn(*s), lambda t, x: t.expm1(x)),
    "sqrt": (lambda s: uniform(0.2, 3.0, *s), lambda t, x: t.sqrt(x)),
    "sin": (lambda s: randn(*s), lambda t, x: t.sin(x)),
    "cos": (lambda s: randn(*s), lambda t, x: x.cos()),
    "tan": (lambda s: uniform(-1.2, 1.2, *s), lambda t, x: t.tan(x)),
    "tanh": (lambda s: randn(*s), lambda t, x: t.tanh(x)),
    "abs": (lambda s: away_from(randn(*s) - 0.3, [0]), lambda t, x: t.abs(x)),
    "sigmoid": (lambda s: randn(*s) * 3, lambda t, x: t.sigmoid(x)),
    "relu": (lambda s: away_from(randn(*s) - 0.3, [0]), lambda t, x: t.relu(x)),
    "softplus": (lambda s: randn(*s) * 3, lambda t, x: t.nn.functional.softplus(x)),
    "erf": (lambda s: randn(*s), lambda t, x: t.erf(x)),
    "clone": (lambda s: randn(*s), lambda t, x: x.clone()),
    # inverse trigonometric, hyperbolic, other bases: inside each domain, off its edges
    "arcsin": (lambda s: uniform(-0.9, 0.9, *s), lambda t, x: t.asin(x)),
    "arccos": (lambda s: uniform(-0.9, 0.9, *s), lambda t, x: x.acos()),
    "arctan": (lambda s: randn(*s) * 2, lambda t, x: t.atan(x)),
    "sinh": (lambda s: randn(*s), lambda t, x: t.sinh(x)),
    "cosh": (lambda s: randn(*s), lambda t, x: x.cosh()),
    "arcsinh": (lambda s: randn(*s) * 2, lambda t, x: t.asinh(x)),
    "arccosh": (lambda s: uniform(1.2, 4.0, *s), lambda t, x: t.acosh(x)),
    "arctanh": (lambda s: uniform(-0.9, 0.9, *s), lambda t, x: t.atanh(x)),
    "log2": (lambda s: uniform(0.2, 3.0, *s), lambda t, x: t.log2(x)),
    "log10": (lambda s: uniform(0.2, 3.0, *s), lambda t, x: x.log10()),
    "exp2": (lambda s: randn(*s), lambda t, x: t.exp2(x)),
    "cbrt": (lambda s: away_from(randn(*s) * 2, [0], 0.2), None),  # torch has no cbrt
    "erfc": (lambda s: randn(*s), lambda t, x: t.erfc(x)),
    "lgamma": (lambda s: uniform(0.3, 4.0, *s), lambda t, x: t.lgamma(x)),
}
for _prim, (_make, _api) in _UNARY.items():
    for _shape in SHAPES:
        add(_prim, _make(_shape), api=_api)

# negatives for abs and relu, where their rules pick the other branch
add("abs", -uniform(0.5, 2, 2, 2), api=lambda t, x: x.abs(), note="negative")
add("relu", -uniform(0.5, 2, 4), api=lambda t, x: t.nn.functional.relu(x), note="negative")
# the kinks themselves: PyTorch's subgradient is 0 for both
add("abs", np.array([0.0, 1.0, -1.0]), api=lambda t, x: t.abs(x), note="kink",
    finite_differences=False)
add("relu", np.array([0.0, 1.0, -1.0]), api=lambda t, x: t.relu(x), note="kink",
    finite_differences=False)
# NaN and infinities: abs has gradient 0 at NaN (PyTorch's sgn), relu passes it, clamp stops it
_specials = np.array([np.nan, 0.0, -1.0, 2.0, np.inf, -np.inf])
add("abs", _specials, api=lambda t, x: t.abs(x), note="nan", finite_differences=False)
add("relu", _specials, api=lambda t, x: t.relu(x), note="nan", finite_differences=False)
add("clamp", _specials, params={"min": -0.5, "max": 0.5}, api=lambda t, x: x.clamp(-0.5, 0.5),
    note="nan", finite_differences=False)
# far tails, where naive formulas overflow
add("sigmoid", np.array([-40.0, -5.0, 5.0, 40.0]), api=lambda t, x: t.sigmoid(x), note="tails")
add("softplus", np.array([-40.0, -5.0, 5.0, 40.0]), api=lambda t, x: t.nn.functional.softplus(x),
    note="tails")

_x = away_from(randn(2, 3) * 2, [-0.5, 0.5])
add("clamp", _x, params={"min": -0.5, "max": 0.5}, api=lambda t, x: x.clamp(-0.5, 0.5))
add("clamp", _x, params={"min": -0.5, "max": None}, api=lambda t, x: x.clamp(min=-0.5))
add("clamp", _x, params={"min": None, "max": 0.5}, api=lambda t, x: t.clamp(x, max=0.5))
add("clamp", np.array([-0.5, 0.5, 0.0]), params={"min": -0.5, "max": 0.5},
    api=lambda t, x: x.clamp(-0.5, 0.5), note="boundaries", finite_differences=False)

# clip between array bounds (torch.clamp with Tensor bounds), broadcasting; off the kinks
_x = away_from(randn(2, 3) * 2, [-0.5, 0.5])
add("clip", _x, np.array([-0.5, 0.0, -0.5]), np.array([[0.5], [1.0]]),
    api=lambda t, x, lo, hi: t.clamp(x, lo, hi))
add("clip", _x, np.full(3, -0.5), np.inf, api=lambda t, x, lo, hi: x.clamp(min=lo), diff=(0, 1))
# NaN, ties with either bound (x gets the gradient), low > high (high gets it)
add("clip", np.array([np.nan, 0.0, 1.0, 2.0, -1.0, 0.5, 3.0, 1.0]),
    np.array([0.0, np.nan, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0]),
    np.array([1.0, 1.0, 2.0, np.nan, 1.0, 1.0, 1.0, 1.0]),
    api=lambda t, x, lo, hi: t.clamp(x, lo, hi), note="nan-ties", finite_differences=False)

# casts between floats: float32 rounding limits what finite differences can resolve
add("cast", randn(2, 3), params={"dtype": "float32"}, api=lambda t, x: x.float(),
    eps=1e-2, atol=1e-3, second_order=False)
add("cast", randn(3), params={"dtype": "float64"}, api=lambda t, x: x.double())


# ---------------------------------------------------------------------------------------------
# Binary elementwise functions with broadcasting
# ---------------------------------------------------------------------------------------------

_BINARY = {
    "add": (randn, randn, lambda t, x, y: x + y),
    "sub": (randn, randn, lambda t, x, y: x - y),
    "mul": (randn, randn, lambda t, x, y: x * y),
    "div": (randn, lambda *s: away_from(randn(*s), [0], 0.5), lambda t, x, y: x / y),
    "maximum": (randn, randn, lambda t, x, y: t.maximum(x, y)),
    "minimum": (randn, randn, lambda t, x, y: t.minimum(x, y)),
    "pow": (lambda *s: uniform(0.3, 2.0, *s), randn, lambda t, x, y: x ** y),
    "logaddexp": (randn, randn, lambda t, x, y: t.logaddexp(x, y)),
    "logaddexp2": (randn, randn, lambda t, x, y: t.logaddexp2(x, y)),
    "arctan2": (randn, randn, lambda t, y, x: t.atan2(y, x)),
    "hypot": (randn, randn, lambda t, x, y: t.hypot(x, y)),
    "fmax": (randn, randn, lambda t, x, y: t.fmax(x, y)),
    "fmin": (randn, randn, lambda t, x, y: x.fmin(y)),
}
for _prim, (_make_x, _make_y, _api) in _BINARY.items():
    for _sx, _sy in BROADCAST_PAIRS:
        add(_prim, _make_x(*_sx), _make_y(*_sy), api=_api)
    _sx, _sy = BROADCAST_PAIRS[2]
    add(_prim, _make_x(*_sy), _make_y(*_sx), api=_api, note="swapped")

# Python scalars on either side take no gradient and do not widen the result
add("add", randn(2, 3), 2.0, api=lambda t, x, c: x + c)
add("sub", 1.5, randn(3), api=lambda t, c, x: c - x)
add("mul", randn(2, 2), 3.0, api=lambda t, x, c: x * c)
add("div", 1.0, away_from(randn(3), [0], 0.5), api=lambda t, c, x: c / x)
add("div", randn(3), 4.0, api=lambda t, x, c: x / c)

# NaN and infinities: PyTorch passes the whole gradient to both arguments where either is NaN
for _prim in ("maximum", "minimum"):
    add(_prim, np.array([np.nan, 1.0, np.nan, 2.0, 1.0, np.inf, -np.inf]),
        np.array([1.0, np.nan, np.nan, 2.0, np.inf, np.inf, -np.inf]),
        api=lambda t, x, y, p=_prim: getattr(t, p)(x, y), note="nan", finite_differences=False)

# ties: PyTorch splits the gradient evenly between equal arguments
_tie = np.array([1.0, -2.0, 3.0, 0.5])
add("maximum", _tie, np.array([1.0, 0.0, 3.0, 0.7]), api=lambda t, x, y: t.maximum(x, y),
    note="ties", finite_differences=False)
add("minimum", _tie, np.array([1.0, 0.0, 3.0, 0.7]), api=lambda t, x, y: t.minimum(x, y),
    note="ties", finite_differences=False)

# logaddexp is smooth where its arguments are equal (second derivative 1/4 there); infinite and NaN
# arguments take PyTorch's gradients (0 and 1 against an infinity, NaN for inf with inf)
for _prim in ("logaddexp", "logaddexp2"):
    add(_prim, _tie, _tie.copy(), api=lambda t, x, y, _prim=_prim: getattr(t, _prim)(x, y),
        note="equal")
    add(_prim, np.array([np.inf, -np.inf, 1.0, np.inf, -np.inf, np.nan, 2.0]),
        np.array([1.0, 1.0, np.inf, np.inf, -np.inf, 1.0, -np.inf]),
        api=lambda t, x, y, _prim=_prim: getattr(t, _prim)(x, y), note="infinite",
        finite_differences=False)

# digamma and the polygammas (the rules of lgamma's rule): positive arguments, off the poles
add("polygamma", uniform(0.3, 4.0, 2, 3), params={"n": 0}, api=lambda t, x: t.digamma(x))
# (no torch api: torch's trigamma is off by ~5e-10 relative where scipy's agrees with mpmath)
add("polygamma", uniform(0.3, 4.0, 3), params={"n": 1})
# the regularised incomplete gamma and beta functions: differentiable in x only (the last argument)
add("gammainc", uniform(0.5, 4.0, 2, 3), uniform(0.2, 5.0, 2, 3), diff=(1,))
add("gammaincc", uniform(0.5, 4.0, 3), uniform(0.2, 5.0, 2, 3), diff=(1,), note="broadcast")
add("betainc", uniform(0.5, 4.0, 2, 3), uniform(0.5, 4.0, 3), uniform(0.05, 0.95, 2, 3), diff=(2,))
# lgamma at negative non-integers (the sign of Gamma alternates; lgamma is log|Gamma|)
add("lgamma", np.array([-0.5, -1.5, -2.3, 0.7]), api=lambda t, x: t.lgamma(x), note="negative")

# fmax/fmin ignore NaN (the other argument gets the gradient) and give the first argument the
# gradient on ties, as PyTorch's FmaxBackward0/FminBackward0
for _prim in ("fmax", "fmin"):
    add(_prim, np.array([np.nan, 1.0, np.nan, 2.0, 1.0, np.inf, -np.inf, 3.0]),
        np.array([1.0, np.nan, np.nan, 2.0, np.inf, np.inf, -np.inf, -1.0]),
        api=lambda t, x, y, p=_prim: getattr(t, p)(x, y), note="nan-ties", finite_differences=False)


def _off_the_jumps(divisor, *shape):
    """A dividend whose quotient by `divisor` sits between two integers (k + 0.2 .. k + 0.8), where
    remainder and fmod are smooth; negative quotients too, where fmod and remainder differ."""
    k = np.floor(uniform(-3, 3, *shape))
    return (k + uniform(0.2, 0.8, *shape)) * divisor


for _prim, _api in (("remainder", lambda t, x, y: x % y), ("fmod", lambda t, x, y: t.fmod(x, y))):
    for _sx, _sy in (((3,), (3,)), ((2, 3), (3,)), ((2, 3, 4), (3, 1)), ((), ())):
        _y = away_from(randn(*_sy), [0], 0.5)
        add(_prim, _off_the_jumps(_y, *_sx), _y, api=_api)
    add(_prim, _off_the_jumps(0.7, 2, 3), 0.7, api=_api, note="scalar-divisor")
    # (torch has no rule for number % tensor; quotients 6.875, -4.23, 2.62 sit off the jumps)
    add(_prim, 5.5, np.array([0.8, -1.3, 2.1]), note="scalar-dividend")

# sign: a zero gradient (PyTorch's), off the jump for finite differences
add("sign", away_from(randn(2, 3), [0]), api=lambda t, x: t.sign(x))

# pow with a Python exponent (PowBackward0), including 0, negative and fractional exponents
for _p in (2, 3, 0.5, -1, 0, 1):
    add("pow", uniform(0.3, 2.0, 2, 3), _p, api=lambda t, x, p: x ** p)
add("pow", np.array([0.0, 1.5, -2.0]), 2, api=lambda t, x, p: x ** p, note="zero-base")
add("pow", 2.0, randn(3), api=lambda t, c, y: c ** y, note="scalar-base")
# a zero base with a tensor exponent: d/dy is taken as 0 there, as in PyTorch
add("pow", np.array([0.0, 0.5, 2.0]), np.array([1.5, 2.0, 0.5]), api=lambda t, x, y: x ** y,
    note="zero-base", diff=(1,))

for _shapes in [((2, 3), (2, 3), (2, 3)), ((2, 3), (3,), ()), ((3,), (2, 1), (2, 3))]:
    _cond = randn(*_shapes[0]) > 0
    add("where", _cond, randn(*_shapes[1]), randn(*_shapes[2]),
        api=lambda t, c, x, y: t.where(c, x, y))
add("where", np.array([True, False, True]), randn(3), 0.0,
    api=lambda t, c, x, y: t.where(c, x, y), note="scalar-other")


# ---------------------------------------------------------------------------------------------
# Shapes and movement
# ---------------------------------------------------------------------------------------------

add("reshape", randn(2, 3), params={"shape": (3, 2)}, api=lambda t, x: x.reshape(3, 2))
add("reshape", randn(2, 3, 4), params={"shape": (6, 4)}, api=lambda t, x: x.view(-1, 4))
add("reshape", randn(2, 3), params={"shape": (6,)}, api=lambda t, x: x.flatten())
add("reshape", randn(3), params={"shape": (1, 3, 1)}, api=lambda t, x: x.unsqueeze(0).unsqueeze(-1))
add("reshape", randn(1, 3, 1), params={"shape": (3,)}, api=lambda t, x: x.squeeze())
add("reshape", randn(), params={"shape": (1,)}, api=lambda t, x: x.reshape(1))

add("transpose", randn(2, 3), params={"axes": (1, 0)}, api=lambda t, x: x.t())
add("transpose", randn(2, 3, 4), params={"axes": (0, 2, 1)}, api=lambda t, x: x.transpose(-1, 1))
add("transpose", randn(2, 3, 4), params={"axes": (2, 0, 1)}, api=lambda t, x: x.permute(2, 0, 1))
add("transpose", randn(2, 3, 4), params={"axes": (2, 1, 0)}, api=lambda t, x: x.permute(-1, 1, 0))

add("broadcast_to", randn(3), params={"shape": (2, 3)}, api=lambda t, x: x.expand(2, 3))
add("broadcast_to", randn(2, 1), params={"shape": (2, 4)}, api=lambda t, x: x.expand(-1, 4))
add("broadcast_to", randn(), params={"shape": (2, 2)}, api=lambda t, x: x.expand(2, 2))
add("broadcast_to", randn(1, 3), params={"shape": (2, 4, 3)},
    api=lambda t, x: t.broadcast_to(x, (2, 4, 3)))

add("cat", randn(2, 3), randn(1, 3), params={"axis": 0}, api=lambda t, x, y: t.cat([x, y]))
add("cat", randn(2, 3), randn(2, 1), randn(2, 2), params={"axis": 1},
    api=lambda t, x, y, z: t.cat((x, y, z), dim=-1))
add("cat", randn(4), randn(2), params={"axis": 0}, api=lambda t, x, y: t.cat([x, y], 0))
add("stack", randn(3), randn(3), params={"axis": 0}, api=lambda t, x, y: t.stack([x, y]))
add("stack", randn(2, 3), randn(2, 3), randn(2, 3), params={"axis": 2},
    api=lambda t, x, y, z: t.stack([x, y, z], dim=-1))
add("stack", randn(), randn(), params={"axis": 0}, api=lambda t, x, y: t.stack([x, y]))


# ---------------------------------------------------------------------------------------------
# Indexing: gathers whose gradients scatter-add (repeated indices accumulate)
# ---------------------------------------------------------------------------------------------

_REPEAT = np.array([0, 2, 0, 0])
_ROWS, _COLS = np.array([1, 0, 1]), np.array([2, 2, 2])
_MASK = np.array([[True, False, True], [False, False, True]])
_INDICES = [
    ((1,), lambda t, x: x[1]),
    ((-1,), lambda t, x: x[-1]),
    ((slice(None), 1), lambda t, x: x[:, 1]),
    ((slice(1, None), slice(None, None, 2)), lambda t, x: x[1:, ::2]),
    ((Ellipsis, 0), lambda t, x: x[..., 0]),
    ((None, slice(None)), lambda t, x: x[None, :]),
    ((_REPEAT,), lambda t, x: x[t.tensor(_REPEAT)]),
    ((slice(None), _REPEAT), lambda t, x: x[:, t.tensor(_REPEAT)]),
    ((_ROWS, _COLS), lambda t, x: x[t.tensor(_ROWS), t.tensor(_COLS)]),
    ((_MASK,), lambda t, x: x[t.tensor(_MASK)]),
]
for _index, _api in _INDICES:
    add("getitem", randn(3, 4) if _index[-1] is not _MASK else randn(2, 3), params={"index": _index},
        api=_api)
add("getitem", randn(2, 3, 4), params={"index": (1, slice(None), _REPEAT[:3])},
    api=lambda t, x: x[1, :, t.tensor(_REPEAT[:3])])
add("getitem", randn(5), params={"index": (slice(-3, None),)}, api=lambda t, x: x[-3:])

add("index_add", randn(3, 4), randn(4, 4), params={"index": (_REPEAT,)}, note="repeated")
add("index_add", randn(3, 4), randn(3), params={"index": (slice(None), 1)})
add("index_add", randn(3, 4), randn(4), params={"index": (1,)}, note="broadcast-values")

add("setitem", randn(3, 4), randn(4), params={"index": (1,)})
add("setitem", randn(3, 4), randn(3, 2), params={"index": (slice(None), slice(1, 3))})
add("setitem", randn(3, 4), randn(2, 4), params={"index": (np.array([0, 2]),)})
add("setitem", randn(3, 4), randn(), params={"index": (_MASK.nonzero()[0], _MASK.nonzero()[1])})
add("setitem", randn(2, 3), 0.5, params={"index": (Ellipsis,)})


# ---------------------------------------------------------------------------------------------
# Reductions: every axis, tuples, negative dims (through Tensor methods), keepdim, ties, zeros
# ---------------------------------------------------------------------------------------------

def _reduction_api(method, dim, keepdim):
    if dim is None:
        return lambda t, x: getattr(x, method)()
    return lambda t, x: getattr(x, method)(dim, keepdim=keepdim)


_REDUCTION_AXES = [  # (input shape, axis as the registry sees it, dim as a user writes it)
    ((), None, None), ((4,), None, None), ((2, 3), None, None), ((2, 3, 4), None, None),
    ((4,), (0,), 0), ((2, 3), (0,), 0), ((2, 3), (1,), -1), ((2, 3, 4), (1,), 1),
    ((2, 3, 4), (2,), -1), ((2, 3, 4), (0, 2), (0, -1)), ((2, 3, 4), (0, 1, 2), (0, 1, 2)),
]
_REDUCTIONS = {
    "sum": lambda s: randn(*s),
    "mean": lambda s: randn(*s),
    "prod": lambda s: uniform(0.5, 1.5, *s) * np.sign(randn(*s)),
    "amax": lambda s: randn(*s),
    "amin": lambda s: randn(*s),
    "logsumexp": lambda s: randn(*s),
}
for _prim, _make in _REDUCTIONS.items():
    for _shape, _axis, _dim in _REDUCTION_AXES:
        for _keep in ((False, True) if _axis is not None else (False,)):
            if _prim == "logsumexp" and _dim is None:
                _api = (lambda t, x: t.logsumexp(x, tuple(range(x.dim())))) if _shape else None
            elif _prim == "prod" and isinstance(_dim, tuple):
                _api = None  # torch.prod takes one dim; tapegrad's takes tuples too
            else:
                _api = _reduction_api(_prim, _dim, _keep)
            add(_prim, _make(_shape), params={"axis": _axis, "keepdims": _keep}, api=_api)

# max/min through their torch names (values of the (values, indices) pair)
add("amax", randn(2, 3), params={"axis": (1,), "keepdims": False},
    api=lambda t, x: x.max(dim=1).values, note="max-dim")
add("amin", randn(2, 3), params={"axis": (0,), "keepdims": True},
    api=lambda t, x: t.min(x, 0, keepdim=True)[0], note="min-dim")
add("amax", randn(2, 3), params={"axis": None, "keepdims": False},
    api=lambda t, x: x.max(), note="max-all")
add("amin", randn(2, 3), params={"axis": None, "keepdims": False},
    api=lambda t, x: t.min(x), note="min-all")

# ties: amax/amin share the gradient evenly between the tied elements
_ties = np.array([[1.0, 3.0, 3.0], [-2.0, -2.0, 0.5]])
for _prim in ("amax", "amin"):
    add(_prim, _ties, params={"axis": (1,), "keepdims": False},
        api=lambda t, x, p=_prim: getattr(x, p)(1), note="ties", finite_differences=False)
    add(_prim, _ties, params={"axis": None, "keepdims": False},
        api=lambda t, x, p=_prim: getattr(x, p)(), note="ties", finite_differences=False)
# NaN: a slice's NaNs share its gradient as in torch.max() (one-hot for a lone NaN; torch.amax gives
# NaN there), and max(dim) picks the NaN, as torch.max(x, dim) does
_nans = np.array([[np.nan, 3.0, np.nan, 1.0], [2.0, np.nan, -np.inf, 0.0],
                  [np.inf, 1.0, 2.0, np.inf]])
for _prim in ("amax", "amin"):
    add(_prim, _nans, params={"axis": None, "keepdims": False},
        api=lambda t, x, p=_prim: getattr(x, p[1:])(), note="nan", finite_differences=False)
    add(_prim, _nans[1:], params={"axis": (1,), "keepdims": False},
        api=lambda t, x, p=_prim: getattr(x, p[1:])(1)[0], note="nan", finite_differences=False)

# prod at zeros: one zero takes the product of the others, two zeros give 0
_zeros = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 1.5], [1.0, -2.0, 0.5]])
# (second order: the registry's rule is exact to first order only where two zeros share a slice)
add("prod", _zeros, params={"axis": (1,), "keepdims": False}, api=lambda t, x: x.prod(1),
    note="zeros", second_order=False)
add("prod", _zeros[0], params={"axis": None, "keepdims": False}, api=lambda t, x: x.prod(),
    note="one-zero")
add("prod", _zeros[1], params={"axis": None, "keepdims": False}, api=lambda t, x: x.prod(),
    note="two-zeros", second_order=False)

for _ord, _p in ((2, 2), (1, 1), (np.inf, float("inf"))):
    _make = (lambda *s: away_from(randn(*s), [0])) if _ord != 2 else randn
    add("norm", _make(3), params={"ord": _ord, "axis": None, "keepdims": False},
        api=lambda t, x, p=_p: x.norm(p))
    add("norm", _make(2, 3), params={"ord": _ord, "axis": None, "keepdims": False},
        api=lambda t, x, p=_p: x.norm(p))
    add("norm", _make(2, 3), params={"ord": _ord, "axis": (1,), "keepdims": False},
        api=lambda t, x, p=_p: x.norm(p, dim=-1))
    add("norm", _make(2, 3, 4), params={"ord": _ord, "axis": (0, 2), "keepdims": True},
        api=lambda t, x, p=_p: x.norm(p, dim=(0, 2), keepdim=True))
add("norm", np.zeros(3), params={"ord": 2, "axis": None, "keepdims": False},
    api=lambda t, x: x.norm(), note="zero-vector", finite_differences=False, second_order=False)

for _prim in ("softmax", "log_softmax"):
    add(_prim, randn(4), params={"axis": 0}, api=lambda t, x, p=_prim: getattr(x, p)(0))
    add(_prim, randn(2, 3), params={"axis": 1}, api=lambda t, x, p=_prim: getattr(t, p)(x, -1))
    add(_prim, randn(2, 3), params={"axis": 0},
        api=lambda t, x, p=_prim: getattr(t.nn.functional, p)(x, dim=0))
    add(_prim, randn(2, 3, 4), params={"axis": 1}, api=lambda t, x, p=_prim: getattr(x, p)(1))
    add(_prim, randn(2, 3) * 30, params={"axis": 1}, api=lambda t, x, p=_prim: getattr(x, p)(1),
        note="large")


# ---------------------------------------------------------------------------------------------
# matmul: 1-D operands, matrices, batches with broadcasting
# ---------------------------------------------------------------------------------------------

for _sa, _sb, _api in [
        ((3,), (3,), lambda t, a, b: t.dot(a, b)),
        ((2, 3), (3,), lambda t, a, b: t.mv(a, b)),
        ((3,), (3, 4), lambda t, a, b: a @ b),
        ((2, 3), (3, 4), lambda t, a, b: t.mm(a, b)),
        ((5, 2, 3), (5, 3, 4), lambda t, a, b: t.bmm(a, b)),
        ((5, 2, 3), (3, 4), lambda t, a, b: a @ b),
        ((2, 1, 2, 3), (4, 3, 2), lambda t, a, b: t.matmul(a, b)),
        ((3,), (2, 3, 4), lambda t, a, b: a @ b),
        ((2, 4, 3), (3,), lambda t, a, b: a.matmul(b))]:
    add("matmul", randn(*_sa), randn(*_sb), api=_api)


# ---------------------------------------------------------------------------------------------
# Windows of 2-D images (primitives_nn): im2col/col2im are adjoint, max pooling picks one tap
# ---------------------------------------------------------------------------------------------

_NO_PADS = ((0, 0), (0, 0))
for _kernel, _stride, _dilation, _pads in (((2, 2), (1, 1), (1, 1), _NO_PADS),
                                          ((2, 3), (2, 1), (1, 2), ((1, 0), (1, 2)))):
    _window = {"kernel": _kernel, "stride": _stride, "dilation": _dilation, "pads": _pads}
    _x = randn(2, 2, 5, 6)
    _cols = primitives_nn.im2col(_x, **_window)
    add("im2col", _x, params=dict(_window))
    add("col2im", randn(*np.shape(_cols)), params=dict(_window, shape=_x.shape))
# distinct values: no ties, so finite differences see the argmax stay put
add("max_pool2d", np.arange(2 * 2 * 4 * 4.0).reshape(2, 2, 4, 4) * 0.1 + randn(2, 2, 4, 4) * 0.01,
    params={"kernel": (2, 2), "stride": (2, 2), "dilation": (1, 1), "pads": _NO_PADS},
    api=lambda t, x: t.nn.functional.max_pool2d(x, 2))
add("max_pool2d", randn(1, 2, 5, 5) * 3,
    params={"kernel": (3, 2), "stride": (1, 2), "dilation": (1, 1), "pads": ((1, 1), (0, 0))},
    api=lambda t, x: t.nn.functional.max_pool2d(x, (3, 2), stride=(1, 2), padding=(1, 0)))

# the rules of max pooling's rule (double backward): g scattered to, and gathered from, the
# windows' maxima of a constant x
_geometry = {"kernel": (2, 2), "stride": (2, 2), "dilation": (1, 1), "pads": _NO_PADS}
_x = np.arange(2 * 4 * 4.0).reshape(1, 2, 4, 4)[..., ::-1] * 0.1
add("pool_scatter", randn(1, 2, 2, 2), _x, params=_geometry, diff=(0,))
add("pool_gather", randn(1, 2, 4, 4), _x, params=_geometry, diff=(0,))


# sorting: a gather along an axis by a permutation (argsort's), and its adjoint scatter
_x = randn(3, 4)
for _axis in (0, 1):
    _perm = np.argsort(_x, axis=_axis)
    add("take_along_axis", _x, _perm, params={"axis": _axis}, diff=(0,))
    add("scatter_along_axis", randn(3, 4), _perm, params={"axis": _axis, "shape": (3, 4)},
        diff=(0,))


# ---------------------------------------------------------------------------------------------
# Linear algebra of square matrices (stacks too): well conditioned, away from det = 0
# ---------------------------------------------------------------------------------------------

_SQ = randn(3, 3) * 0.5 + 2 * np.eye(3)
_STACK = randn(2, 3, 3) * 0.5 + 2 * np.eye(3)
for _a in (_SQ, _STACK):
    add("inv", _a, api=lambda t, a: t.linalg.inv(a))
    add("det", _a, api=lambda t, a: t.linalg.det(a))
    add("logabsdet", -_a, api=lambda t, a: t.linalg.slogdet(a)[1])
add("solve", _SQ, randn(3, 2), api=lambda t, a, b: t.linalg.solve(a, b))
add("solve", _STACK, randn(2, 3, 1), api=lambda t, a, b: t.linalg.solve(a, b))
add("solve", _STACK, randn(3, 4), note="broadcast", second_order=False)

# decompositions: symmetric positive definite inputs with well separated eigenvalues (so every
# factor is a smooth function of the matrix; eigenvector signs stay put under finite differences)
_SPD = np.diag([1.0, 2.5, 4.5]) + 0.1 * (lambda m: m + m.T)(randn(3, 3))
_RECT = randn(4, 3) + np.eye(4, 3) * np.array([3.0, 2.0, 1.0])
add("cholesky", _SPD, second_order=False)
for _prim in ("eigh_values", "eigh_vectors", "eig_values", "eig_vectors"):
    add(_prim, _SPD, second_order=False)
for _prim in ("svd_u", "svd_values", "svd_vt"):
    add(_prim, _RECT, second_order=False)
add("pinv", _RECT, params={"rcond": 1e-15}, second_order=False)


# ---------------------------------------------------------------------------------------------
# Losses registered as one node
# ---------------------------------------------------------------------------------------------

for _reduction in ("mean", "sum", "none"):
    add("mse_loss", randn(2, 3), randn(2, 3), params={"reduction": _reduction},
        api=lambda t, x, y, r=_reduction: t.nn.functional.mse_loss(x, y, reduction=r))
add("mse_loss", randn(4), randn(4), params={"reduction": "mean"}, diff=(0,),
    api=lambda t, x, y: t.nn.functional.mse_loss(x, y), note="target-constant")

_p = uniform(0.1, 0.9, 2, 3)
for _reduction in ("mean", "sum", "none"):
    add("binary_cross_entropy", _p, uniform(0, 1, 2, 3), 1.0, params={"reduction": _reduction},
        api=lambda t, p, y, w, r=_reduction: t.nn.functional.binary_cross_entropy(
            p, y, reduction=r))
add("binary_cross_entropy", _p, uniform(0, 1, 2, 3), uniform(0.5, 2, 3),
    params={"reduction": "mean"}, note="weight",  # PyTorch takes no gradient for the weight
    api=lambda t, p, y, w: t.nn.functional.binary_cross_entropy(p, y, weight=w.detach()))
# probabilities of exactly 0 and 1: the logs clamp at -100 and the gradient stays finite
add("binary_cross_entropy", np.array([0.0, 1.0, 0.5, 1.0]), np.array([0.0, 1.0, 1.0, 0.0]), 1.0,
    params={"reduction": "mean"}, diff=(0,), note="saturated", finite_differences=False,
    api=lambda t, p, y, w: t.nn.functional.binary_cross_entropy(p, y))


def differentiable_primitives():
    return sorted(name for name, prim in REGISTRY.items() if prim.differentiable)


def by_prim(name):
    return [s for s in SAMPLES if s.prim == name]
