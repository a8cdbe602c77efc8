"""NaN, infinities, ties and second derivatives: every face against PyTorch (issue 9, cases 4, 10).

A differential table runs each function eagerly (Tensors, PyTorch's values), traced (tg.grad, the
NumPy reference interpreter) and compiled (tg.jit on the CPU: interpreter, generated array code,
batched rows; the CUDA kernels where they can run), on N-D inputs holding NaN, inf, -inf and ties,
and compares values and gradients with torch in float64. The traced face keeps NumPy's forward
values (np.sign(NaN) is NaN), its gradients follow PyTorch.

Second derivatives of every smooth primitive are checked against central differences of the first
derivative, at ties and in the tails, where a rule built from branches (max, where, abs) is
silently flat.
"""
import importlib.util
import itertools
import math
import os

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.primitives as P

torch = pytest.importorskip("torch")

NAN, INF = np.nan, np.inf
_rng = np.random.default_rng(9)


_SPECIAL_VALUES = np.array([NAN, INF, -INF, 0.0, 1.0, -1.0, 2.0, 0.5])
_calls = itertools.count()


def _specials(shape):
    """An array of `shape` holding every special value (NaN first) where it has room, a few
    randoms, and repeats (ties), shuffled; successive small arrays start from other values."""
    size = math.prod(shape)
    pool = np.roll(_SPECIAL_VALUES, -next(_calls)) if size < len(_SPECIAL_VALUES) else \
        _SPECIAL_VALUES
    values = np.resize(np.concatenate([pool, _rng.standard_normal(size // 4)]), size)
    _rng.shuffle(values)
    return values.reshape(shape)


# ---------------------------------------------------------------------------------------------
# The table: name -> (NumPy function for tapes, tapegrad eager function, torch function, inputs)
# ---------------------------------------------------------------------------------------------

def _leaky(lib):
    return lambda x: lib.nn.functional.leaky_relu(x, 0.1)


BINARY_SHAPES = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (3, 1)), ((4,), (2, 3, 4)), ((), (3, 4))]
UNARY_SHAPES = [(2, 3, 4), (5,), ()]

CASES = {
    "maximum": (np.maximum, tg.maximum, torch.maximum, 2),
    "minimum": (np.minimum, tg.minimum, torch.minimum, 2),
    "logaddexp": (np.logaddexp, tg.logaddexp, torch.logaddexp, 2),
    "logaddexp2": (np.logaddexp2, tg.logaddexp2, torch.logaddexp2, 2),
    # clip between array bounds: torch.clamp with Tensor bounds (ClampBackward0)
    "clip_low": (lambda x, y: np.clip(x, y, None), lambda x, y: tg.clamp(x, min=y),
                 lambda x, y: torch.clamp(x, min=y), 2),
    "clip_high": (lambda x, y: np.clip(x, None, y), lambda x, y: x.clamp(max=y),
                  lambda x, y: x.clamp(max=y), 2),
    "clip_both": (lambda x, y: np.clip(x, y, 1.0), lambda x, y: tg.clamp(x, y, tg.ones_like(y)),
                  lambda x, y: torch.clamp(x, y, torch.ones_like(y)), 2),
    "relu": (P.relu, tg.relu, torch.relu, 1),
    "maximum0": (lambda x: np.maximum(x, 0.0), lambda x: tg.maximum(x, tg.zeros_like(x)),
                 lambda x: torch.maximum(x, torch.zeros_like(x)), 1),
    "abs": (np.abs, tg.abs, torch.abs, 1),
    "sign": (np.sign, tg.sign, torch.sign, 1),
    "clip": (lambda x: np.clip(x, -0.5, 1.0), lambda x: tg.clamp(x, -0.5, 1.0),
             lambda x: torch.clamp(x, -0.5, 1.0), 1),
    "clip_min": (lambda x: np.clip(x, 0.0, None), lambda x: x.clamp(min=0.0),
                 lambda x: x.clamp(min=0.0), 1),
    "where": (lambda x: np.where(x > 0, x, 2 * x), lambda x: tg.where(x > 0, x, 2 * x),
              lambda x: torch.where(x > 0, x, 2 * x), 1),
    "softplus": (lambda x: np.logaddexp(0.0, x), tg.nn.functional.softplus,
                 torch.nn.functional.softplus, 1),
    "sigmoid": (P.sigmoid, tg.sigmoid, torch.sigmoid, 1),
    "norm1": (lambda x: np.sum(np.abs(x)), lambda x: x.norm(1), lambda x: x.norm(1), 1),
    # full reductions: torch.max() shares the gradient between the NaNs (or the tied maxima)
    "max_all": (np.max, lambda x: x.max(), lambda x: x.max(), 1),
    "min_all": (np.min, lambda x: x.min(), lambda x: x.min(), 1),
}
EAGER_ONLY = {"leaky_relu": (None, _leaky(tg), _leaky(torch), 1)}


def _inputs(name, arity, shapes):
    xs = [_specials(s) for s in shapes[:arity]]
    if name == "clip_low":
        # known difference: an absent upper bound is +inf on the clip primitive, so a lower bound
        # of +inf equals it, and PyTorch's rule gives equal bounds no gradient (while
        # torch.clamp(x, min=inf) gives min one)
        xs[1][xs[1] == INF] = 3.0
    return xs


def _table():
    for name, (np_fn, tg_fn, torch_fn, arity) in {**CASES, **EAGER_ONLY}.items():
        for shapes in (BINARY_SHAPES if arity == 2 else [(s,) for s in UNARY_SHAPES]):
            if name.endswith("_all") and shapes[0] == ():
                continue
            shape_id = "-".join("x".join(map(str, s)) or "0d" for s in shapes)
            yield pytest.param(name, np_fn, tg_fn, torch_fn, _inputs(name, arity, shapes),
                               id=f"{name}-{shape_id}")


TABLE = list(_table())
TRACED = [p for p in TABLE if p.values[1] is not None]


def _weights(out_shape):
    return np.random.default_rng(1).uniform(0.5, 1.5, out_shape)


def _torch_value_and_grads(torch_fn, xs):
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = torch_fn(*ts)
    w = torch.tensor(_weights(tuple(out.shape)))
    loss = (out * w).sum()
    grads = torch.autograd.grad(loss, ts, allow_unused=True)
    grads = [np.zeros_like(x) if g is None else g.numpy() for g, x in zip(grads, xs)]
    return out.detach().numpy(), loss.item(), grads


def assert_same(actual, expected, what):
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, what
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, equal_nan=True,
                               err_msg=what)


@pytest.mark.parametrize("name,np_fn,tg_fn,torch_fn,xs", TABLE)
def test_eager_matches_torch(name, np_fn, tg_fn, torch_fn, xs):
    out_ref, loss_ref, grads_ref = _torch_value_and_grads(torch_fn, xs)
    ts = [tg.tensor(x, dtype=tg.float64, requires_grad=True) for x in xs]
    out = tg_fn(*ts)
    assert_same(out.detach().numpy(), out_ref, f"{name}: values")
    loss = (out * tg.tensor(_weights(tuple(out.shape)))).sum()
    loss.backward()
    for i, (t, ref) in enumerate(zip(ts, grads_ref)):
        assert_same(t.grad.numpy(), ref, f"{name}: gradient of argument {i}")


def _traced_objective(np_fn, out_shape):
    w = _weights(out_shape)

    def f(*xs):
        return np.sum(np_fn(*xs) * w)
    return f


@pytest.mark.parametrize("name,np_fn,tg_fn,torch_fn,xs", TRACED)
def test_traced_and_jit_match_torch(name, np_fn, tg_fn, torch_fn, xs):
    """tg.value_and_grad (reference interpreter) and tg.jit of it (first and compiled calls):
    NumPy's forward values, PyTorch's gradients."""
    _, _, grads_ref = _torch_value_and_grads(torch_fn, xs)
    with np.errstate(all="ignore"):
        out_np = np.asarray(np_fn(*xs))
        loss_np = np.sum(out_np * _weights(out_np.shape))
    f = _traced_objective(np_fn, out_np.shape)
    argnums = tuple(range(len(xs)))
    traced = tg.value_and_grad(f, argnums=argnums)
    jitted = tg.jit(tg.value_and_grad(f, argnums=argnums))
    for face, run in (("traced", traced), ("jit first call", jitted), ("jit compiled", jitted)):
        loss, grads = run(*xs)
        assert_same(loss, loss_np, f"{name} {face}: value")
        for i, (g, ref) in enumerate(zip(grads, grads_ref)):
            assert_same(g, ref, f"{name} {face}: gradient of argument {i}")


def test_traced_clamp_and_clip_methods_take_array_bounds():
    """x.clamp(min=lo) / x.clip(lo, hi) on tracers, with array bounds: torch.clamp's gradients."""
    x, lo, hi = _specials((3, 4)), _specials((4,)), _specials((3, 1))
    tx, tl, th = (torch.tensor(v, requires_grad=True) for v in (x, lo, hi))
    (tx.clamp(min=tl).sum() + torch.clamp(tx, tl, th).sum()).backward()
    grads = tg.grad(lambda x, lo, hi: np.sum(x.clamp(min=lo)) + np.sum(x.clip(lo, hi)),
                    argnums=(0, 1, 2))(x, lo, hi)
    for g, t in zip(grads, (tx, tl, th)):
        assert_same(g, t.grad.numpy(), "clamp/clip methods")


def test_large_arrays_take_the_generated_code_path():
    """Arrays of 4096+ elements run as generated Numba loops (tapegrad_jit.fused), not the
    interpreter: the same NaN semantics there."""
    x, y = _specials((64, 80)), _specials((80,))

    def f(x, y):
        m = np.maximum(x, y) + np.minimum(x, y) + np.abs(x) + np.logaddexp(x, y)
        return np.sum(np.clip(m, -3.0, 3.0)) + np.max(x) + np.sum(np.maximum(x, 0.0))

    def f_torch(x, y):
        m = torch.maximum(x, y) + torch.minimum(x, y) + x.abs() + torch.logaddexp(x, y)
        return m.clamp(-3.0, 3.0).sum() + x.max() + torch.maximum(x, torch.zeros_like(x)).sum()

    ts = [torch.tensor(v, requires_grad=True) for v in (x, y)]
    f_torch(*ts).backward()
    jitted = tg.jit(tg.grad(f, argnums=(0, 1)))
    for _ in range(2):
        gx, gy = jitted(x, y)
        assert_same(gx, ts[0].grad.numpy(), "x")
        assert_same(gy, ts[1].grad.numpy(), "y")


def _row_function(a, b):
    return (np.maximum(a, b) + np.minimum(a, 0.25) + np.abs(a) * 2.0 + np.logaddexp(a, b)
            + np.logaddexp2(b, 0.5) + np.clip(a, -1.0, 1.0) + np.sign(b))


def _row_function_torch(a, b):
    return (torch.maximum(a, b) + torch.minimum(a, torch.full_like(a, 0.25)) + a.abs() * 2.0
            + torch.logaddexp(a, b) + torch.logaddexp2(b, torch.full_like(b, 0.5))
            + a.clamp(-1.0, 1.0) + torch.sign(b))


def _rows(n=640):
    return _specials((n,)), _specials((n,))


def _torch_row_grads(a, b):
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    _row_function_torch(ta, tb).sum().backward()
    return ta.grad.numpy(), tb.grad.numpy()


def test_batched_rows_on_the_cpu():
    """jit(vmap(grad)) of a scalar function with 512+ rows: generated per-row code (rows.py)."""
    a, b = _rows()
    ref = _torch_row_grads(a, b)
    batched = tg.jit(tg.vmap(tg.grad(_row_function, argnums=(0, 1))))
    for _ in range(2):
        for g, r in zip(batched(a, b), ref):
            assert_same(g, r, "rows")


def _cuda_ready():
    path = os.path.join(os.path.dirname(__file__), "cuda", "cuda_ready.py")
    spec = importlib.util.spec_from_file_location("_tapegrad_cuda_ready", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.READY, module.SKIP_REASON


def _host(value):
    return np.asarray(value.copy_to_host() if hasattr(value, "copy_to_host") else value)


def test_cuda_kernels_batched_rows_and_arrays():
    """The CUDA backend (on a GPU, or on Numba's simulator with NUMBA_ENABLE_CUDASIM=1)."""
    ready, reason = _cuda_ready()
    if not ready:
        pytest.skip(reason)
    a, b = _rows(40)
    ref = _torch_row_grads(a, b)
    batched = tg.jit(tg.vmap(tg.grad(_row_function, argnums=(0, 1))), device="cuda")
    for _ in range(2):
        for g, r in zip(batched(a, b), ref):
            assert_same(_host(g), r, "cuda rows")
    x = _specials((3, 5))

    def f(x):
        return np.sum(np.maximum(x, 0.5) + np.abs(x)) + np.max(x) + np.min(x, axis=1).sum()

    tx = torch.tensor(x, requires_grad=True)
    (torch.maximum(tx, torch.full_like(tx, 0.5)) + tx.abs()).sum().backward()
    expected = tx.grad.numpy() + tg.grad(lambda x: np.max(x) + np.min(x, axis=1).sum())(x)
    jitted = tg.jit(tg.grad(f), device="cuda")
    for _ in range(2):
        assert_same(_host(jitted(x)), expected, "cuda arrays")


# ---------------------------------------------------------------------------------------------
# Reductions: conventions of torch.max(), torch.max(dim) and torch.amax
# ---------------------------------------------------------------------------------------------

def _torch_grad(fn, x):
    t = torch.tensor(x, requires_grad=True)
    fn(t).backward()
    return t.grad.numpy()


REDUCTION_INPUTS = [
    np.array([1.0, NAN, 3.0]),                                   # a lone NaN: one-hot
    np.array([[NAN, 3.0], [NAN, 3.0], [1.0, 1.0]]),              # two NaNs share it
    np.array([[3.0, 1.0, 3.0], [INF, 2.0, INF]]),                # ties, infinite ties
    np.array([[-INF, -INF], [NAN, -INF]]),
]


@pytest.mark.parametrize("x", REDUCTION_INPUTS, ids=range(len(REDUCTION_INPUTS)))
@pytest.mark.parametrize("kind", ["max", "min"])
def test_full_reductions_share_like_torch_max(x, kind):
    ref = _torch_grad(lambda t: getattr(t, kind)(), x)
    np_fn = getattr(np, kind)
    assert_same(tg.grad(np_fn)(x), ref, "traced")
    jitted = tg.jit(tg.grad(np_fn))
    for call in ("first", "compiled"):
        assert_same(jitted(x), ref, f"jit, {call} call")
    t = tg.tensor(x, requires_grad=True)
    getattr(t, kind)().backward()
    assert_same(t.grad.numpy(), ref, "eager")


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("keepdim", [False, True])
def test_eager_max_dim_is_one_hot_like_torch(kind, keepdim):
    """torch.max(x, dim) selects one element (the first tie, the first NaN): a one-hot gradient,
    while torch.amax shares ties."""
    x = np.array([[[3.0, NAN, 1.0], [3.0, NAN, 1.0]], [[2.0, 2.0, NAN], [0.0, 5.0, 5.0]]])
    for dim in (0, 1, 2, -1):
        ref_t = torch.tensor(x, requires_grad=True)
        ref_out = getattr(torch, kind)(ref_t, dim, keepdim=keepdim)
        (ref_out.values * 1.5).sum().backward()
        t = tg.tensor(x, requires_grad=True)
        out = getattr(tg, kind)(t, dim, keepdim=keepdim)
        assert out.values.grad_fn.name() == ref_out.values.grad_fn.name()
        assert_same(out.values.detach().numpy(), ref_out.values.detach().numpy(), "values")
        np.testing.assert_array_equal(out.indices.numpy(), ref_out.indices.numpy())
        (out.values * 1.5).sum().backward()
        assert_same(t.grad.numpy(), ref_t.grad.numpy(), f"dim {dim}")


_ROWS = np.array([[NAN, 1.0, 2.0], [INF, 1.0, 2.0], [-INF, -INF, 0.0], [-INF, -INF, -INF],
                  [INF, INF, 1.0], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0], [-3.0, 3.0, 1.0]])
ROW_REDUCTIONS = {   # torch function of dim 1, tape primitive over axis 1
    "logsumexp": (lambda t: torch.logsumexp(t, 1), lambda x: P.logsumexp(x, axis=(1,))),
    "norm1": (lambda t: torch.linalg.vector_norm(t, 1, dim=1),
              lambda x: P.norm(x, ord=1, axis=(1,))),
    "norm2": (lambda t: torch.linalg.vector_norm(t, 2, dim=1),
              lambda x: P.norm(x, ord=2, axis=(1,))),
    "norm_inf": (lambda t: torch.linalg.vector_norm(t, INF, dim=1),
                 lambda x: P.norm(x, ord=INF, axis=(1,))),
    "amax": (lambda t: t.amax(1), lambda x: P.amax(x, axis=(1,))),
}


@pytest.mark.parametrize("name", ROW_REDUCTIONS)
def test_row_reductions_with_nan_inf_and_ties(name):
    """Reductions over rows holding NaN, +-inf, ties and zeros: eager, traced and jit gradients
    equal torch's, except amax rows with NaN (torch.amax: NaN; tapegrad: torch.max()'s share)."""
    torch_fn, prim_fn = ROW_REDUCTIONS[name]
    w = np.arange(1.0, len(_ROWS) + 1)
    ref = _torch_grad(lambda t: (torch_fn(t) * torch.tensor(w)).sum(), _ROWS)
    if name == "amax":
        ref[0] = [0.0, 0.0, 0.0]
        ref[0, np.isnan(_ROWS[0])] = w[0]
    t = tg.tensor(_ROWS, requires_grad=True)
    (prim_fn(t) * tg.tensor(w)).sum().backward()
    assert_same(t.grad.numpy(), ref, "eager")
    grad = tg.grad(lambda x: np.sum(prim_fn(x) * w))
    assert_same(grad(_ROWS), ref, "traced")
    jitted = tg.jit(grad)
    for call in ("first", "compiled"):
        assert_same(jitted(_ROWS), ref, f"jit, {call} call")


@pytest.mark.parametrize("kind", ["max", "min"])
def test_eager_max_dim_of_a_0d_tensor(kind):
    for dim, keepdim in ((0, False), (-1, True)):
        t = tg.tensor(2.0, requires_grad=True)
        ref_t = torch.tensor(2.0, requires_grad=True)
        out, ref = getattr(t, kind)(dim, keepdim), getattr(ref_t, kind)(dim, keepdim)
        (out.values * 3).backward()
        (ref.values * 3).backward()
        assert out.values.grad_fn.name() == ref.values.grad_fn.name()
        assert out.indices.item() == ref.indices.item() and t.grad.item() == ref_t.grad.item()


def test_amax_shares_ties_like_torch():
    x = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    for dim in (0, 1):
        t = tg.tensor(x, requires_grad=True)
        t.amax(dim).sum().backward()
        assert_same(t.grad.numpy(), _torch_grad(lambda r: r.amax(dim).sum(), x), "amax")


# ---------------------------------------------------------------------------------------------
# sign: PyTorch's values on the eager face, NumPy's on tapes, a zero gradient everywhere
# ---------------------------------------------------------------------------------------------

def test_eager_sign_follows_torch_and_backward_runs():
    x = np.array([[NAN, -0.0, 0.0], [-2.0, INF, -INF]])
    for dtype, torch_dtype in ((tg.float64, torch.float64), (tg.float32, torch.float32)):
        t = tg.tensor(x, dtype=dtype, requires_grad=True)
        out = tg.sign(t)
        ref = torch.sign(torch.tensor(x, dtype=torch_dtype))
        assert out.dtype == dtype and out.grad_fn.name() == "SignBackward0"
        np.testing.assert_array_equal(out.detach().numpy(), ref.numpy())
        out.sum().backward()
        np.testing.assert_array_equal(t.grad.numpy(), np.zeros_like(x))
        assert t.grad.dtype == dtype
    t = tg.tensor(x, requires_grad=True)
    assert np.all(t.sign().detach().numpy() == torch.tensor(x).sign().numpy())
    assert np.array_equal(np.sign(t).detach().numpy(), torch.tensor(x).sign().numpy())


def test_sign_saves_nothing():
    """PyTorch's sign backward reads only the shape: an in-place change of its input is fine."""
    w = tg.tensor([1.0, -2.0, 0.0], requires_grad=True)
    x = w * 1
    s = x.sign()
    x.add_(1)
    (s.sum() + x.sum()).backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0, 1.0])


def test_traced_sign_keeps_numpy_values():
    x = np.array([NAN, -1.0, 0.0, 3.0])
    np.testing.assert_array_equal(tg.jit(np.sign)(x), np.sign(x))
    np.testing.assert_array_equal(tg.grad(lambda x: np.sum(np.sign(x) * x))(x),
                                  np.sign(x))


# ---------------------------------------------------------------------------------------------
# Second derivatives: smooth rules stay smooth at ties and in the tails
# ---------------------------------------------------------------------------------------------

def test_logaddexp_second_derivative_at_equal_arguments():
    """Issue 9, case 4: the rule went through max(a, b), flat where a == b."""
    d2 = tg.grad(tg.grad(lambda a: np.logaddexp(a, 0.4)))
    assert d2(0.4) == pytest.approx(0.25, rel=1e-12)
    jitted = tg.jit(d2)
    assert jitted(0.4) == pytest.approx(0.25, rel=1e-12)
    assert jitted(0.4) == pytest.approx(0.25, rel=1e-12)      # the compiled call
    d2_base2 = tg.grad(tg.grad(lambda a: np.logaddexp2(0.4, a)))
    assert d2_base2(0.4) == pytest.approx(math.log(2) / 4, rel=1e-12)
    a = tg.tensor(0.4, dtype=tg.float64, requires_grad=True)
    g, = tg.autograd.grad(tg.logaddexp(a, tg.tensor(0.4, dtype=tg.float64)), a,
                          create_graph=True)
    g2, = tg.autograd.grad(g, a)
    assert g2.item() == pytest.approx(0.25, rel=1e-12)


def _second_derivative_cases():
    c = 0.4
    unary = {
        "exp": P.exp, "log": P.log, "log1p": P.log1p, "expm1": P.expm1, "sqrt": P.sqrt,
        "sin": P.sin, "cos": P.cos, "tan": P.tan, "tanh": P.tanh, "sigmoid": P.sigmoid,
        "softplus": P.softplus, "erf": P.erf,
    }
    points = [c, 0.0, -0.7, 1.3, 6.0, -6.0, 25.0, -25.0]
    domain = {"log": lambda p: p > 0, "sqrt": lambda p: p > 0, "log1p": lambda p: p > -1,
              "tan": lambda p: abs(p) < 1.4}
    for name, prim in unary.items():
        for p in points:
            if domain.get(name, lambda p: True)(p):
                yield pytest.param(lambda a, prim=prim: prim(a), p, id=f"{name}({p})")
    binary = {
        "logaddexp": P.logaddexp, "logaddexp2": P.logaddexp2, "mul": P.mul, "div": P.div,
        "pow": P.pow_, "add": P.add, "sub": P.sub,
    }
    for name, prim in binary.items():
        for p in (c, 1.3, -6.0, 25.0):
            if name == "pow" and p <= 0:
                continue
            # the tie x == y, from either side, and both arguments the same variable
            yield pytest.param(lambda a, prim=prim: prim(a, c), c, id=f"{name}(x, {c}) at {c}")
            yield pytest.param(lambda a, prim=prim: prim(c, a), c, id=f"{name}({c}, x) at {c}")
            yield pytest.param(lambda a, prim=prim: prim(a, a), p, id=f"{name}(x, x) at {p}")
            yield pytest.param(lambda a, prim=prim: prim(a, 2.0 - a), 1.0,
                               id=f"{name}(x, 2 - x) at 1")
    yield pytest.param(lambda a: P.logsumexp(P.stack(a, c, 2 * a - c, axis=0)), c,
                       id="logsumexp of a tie")
    yield pytest.param(lambda a: P.softmax(P.stack(a, c, axis=0), axis=0)[0], c,
                       id="softmax of a tie")
    yield pytest.param(lambda a: P.norm(P.stack(a, c, axis=0)), c, id="norm of a tie")


@pytest.mark.parametrize("fn,point", list(_second_derivative_cases()))
def test_second_derivative_matches_differences_of_the_first(fn, point):
    """d2 by tg.grad(tg.grad) (rules differentiated by rules) against central differences of the
    traced first derivative: a rule with a branch at a tie would give 0 here."""
    d1, d2 = tg.grad(fn), tg.grad(tg.grad(fn))
    h = 1e-5 * max(1.0, abs(point))
    numeric = (float(d1(point + h)) - float(d1(point - h))) / (2 * h)
    assert float(d2(point)) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def _stable_sigmoid(d):
    with np.errstate(invalid="ignore"):
        return np.exp(-np.logaddexp(0.0, -d))


@pytest.mark.parametrize("prim,scale", [("logaddexp", 1.0), ("logaddexp2", math.log(2))])
def test_logaddexp_hessian_everywhere(prim, scale):
    """First and second derivatives of logaddexp(x, y) on a grid with ties, tails, infinities and
    NaN, eager (create_graph) and traced: first derivatives equal PyTorch's (NaN at inf, inf);
    second derivatives are scale * s(d) s(-d) with s = sigmoid, d = scale (x - y), which is 0
    against an infinity (PyTorch's own double backward gives NaN there, and along y = 30)."""
    vals = np.array([-INF, -30.0, -1.0, 0.4, 0.4, 2.0, 30.0, INF, NAN])
    x, y = np.meshgrid(vals, vals[::-1])
    tx, ty = (torch.tensor(v, requires_grad=True) for v in (x, y))
    gx, gy = torch.autograd.grad(getattr(torch, prim)(tx, ty).sum(), (tx, ty), create_graph=True)
    hxx, _ = torch.autograd.grad(gx.sum(), (tx, ty))
    with np.errstate(invalid="ignore"):
        d = (x - y) * scale
    expected_hxx = scale * _stable_sigmoid(d) * _stable_sigmoid(-d)

    ax, ay = (tg.tensor(v, dtype=tg.float64, requires_grad=True) for v in (x, y))
    fx, fy = tg.autograd.grad(getattr(tg, prim)(ax, ay).sum(), (ax, ay), create_graph=True)
    kxx, kxy = tg.autograd.grad(fx.sum(), (ax, ay))
    assert_same(fx.detach().numpy(), gx.detach().numpy(), "eager d/dx")
    assert_same(fy.detach().numpy(), gy.detach().numpy(), "eager d/dy")
    # sigmoid's rule reads only its output, s (1 - s), as PyTorch's does: exact to an ulp of s
    close = dict(rtol=1e-9, atol=1e-15, equal_nan=True)
    np.testing.assert_allclose(kxx.numpy(), expected_hxx, **close)
    np.testing.assert_allclose(kxy.numpy(), -expected_hxx, **close)
    finite = np.isfinite(hxx.numpy())
    np.testing.assert_allclose(kxx.numpy()[finite], hxx.numpy()[finite], **close)

    traced = tg.grad(lambda x, y: np.sum(getattr(np, prim)(x, y)), argnums=(0, 1))(x, y)
    assert_same(traced[0], gx.detach().numpy(), "traced d/dx")
    assert_same(traced[1], gy.detach().numpy(), "traced d/dy")
    for i in range(len(vals)):           # traced second derivatives, one row of the grid each
        row = tg.grad(lambda x: np.sum(tg.grad(lambda x: np.sum(getattr(np, prim)(x, y[i])))(x)))
        np.testing.assert_allclose(row(x[i]), expected_hxx[i], **close)
