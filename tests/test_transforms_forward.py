"""Forward mode on the traced face: jvp, linearize, jacfwd, hvp.

Forward rules are derived from the registry's VJP rules (the transposed pullback), so every
primitive's JVP is checked against its VJP (<jvp(u), v> == <u, vjp(v)>) and against central
finite differences, on the per-primitive sample table.
"""
import numpy as np
import pytest

import tapegrad as tg
from samples import SAMPLES

RNG = np.random.default_rng(13)


def _sample_function(sample):
    def f(*diff_values):
        return sample.call(*diff_values)
    return f


def _float_output(sample):
    out = np.asarray(sample.call(*sample.diff_values()))
    return out.dtype.kind == "f"


DIFF_SAMPLES = [s for s in SAMPLES if s.argnums and _float_output(s)]


@pytest.mark.parametrize("sample", DIFF_SAMPLES, ids=[s.id for s in DIFF_SAMPLES])
def test_jvp_is_transpose_of_vjp(sample):
    primals = sample.diff_values()
    f = _sample_function(sample)
    tangents = tuple(RNG.standard_normal(np.shape(p)) for p in primals)
    out, t_out = tg.jvp(f, primals, tangents)
    out2, f_vjp = tg.vjp(f, *primals)
    np.testing.assert_allclose(out, np.asarray(sample.call(*primals)), rtol=1e-12, atol=0)
    np.testing.assert_allclose(out2, out, rtol=1e-12, atol=0)
    assert np.shape(t_out) == np.shape(out)
    v = RNG.standard_normal(np.shape(out))
    lhs = np.sum(np.asarray(t_out) * v)
    rhs = sum(np.sum(np.asarray(c) * t) for c, t in zip(f_vjp(v), tangents))
    tol = 1e-9 if np.asarray(out).dtype == np.float64 else 1e-5
    if np.isfinite(lhs) or np.isfinite(rhs):
        np.testing.assert_allclose(lhs, rhs, rtol=tol, atol=tol)


@pytest.mark.parametrize("sample", [s for s in DIFF_SAMPLES if s.finite_differences],
                         ids=[s.id for s in DIFF_SAMPLES if s.finite_differences])
def test_jvp_against_finite_differences(sample):
    primals = sample.diff_values()
    f = _sample_function(sample)
    tangents = tuple(RNG.standard_normal(np.shape(p)) for p in primals)
    _, t_out = tg.jvp(f, primals, tangents)
    eps = sample.eps
    up = np.asarray(f(*[p + eps * t for p, t in zip(primals, tangents)]), np.float64)
    down = np.asarray(f(*[p - eps * t for p, t in zip(primals, tangents)]), np.float64)
    fd = (up - down) / (2 * eps)
    finite = np.isfinite(fd)
    np.testing.assert_allclose(np.asarray(t_out)[finite], fd[finite], rtol=sample.rtol,
                               atol=sample.atol)


def test_linearize_matches_jvp_and_is_recorded_once():
    def f(x, y):
        return {"a": np.sin(x) * y, "b": np.sum(x ** 2)}
    x, y = RNG.standard_normal(4), RNG.standard_normal(4)
    out, f_jvp = tg.linearize(f, x, y)
    for _ in range(3):
        tx, ty = RNG.standard_normal(4), RNG.standard_normal(4)
        got = f_jvp(tx, ty)
        want = tg.jvp(f, (x, y), (tx, ty))[1]
        assert set(got) == {"a", "b"}
        np.testing.assert_allclose(got["a"], np.cos(x) * tx * y + np.sin(x) * ty)
        np.testing.assert_allclose(got["b"], np.sum(2 * x * tx))
        np.testing.assert_allclose(got["a"], want["a"])
    np.testing.assert_allclose(out["a"], np.sin(x) * y)
    # f_jvp under jit (linearised again in that trace) and vmap (row by row)
    tx = RNG.standard_normal((3, 4))
    jitted = tg.jit(lambda tx: f_jvp(tx, np.zeros(4))["a"])
    np.testing.assert_allclose(jitted(tx[0]), np.cos(x) * tx[0] * y, rtol=1e-12)
    batched = tg.vmap(lambda tx: f_jvp(tx, np.zeros(4))["a"])(tx)
    np.testing.assert_allclose(batched, np.cos(x) * tx * y, rtol=1e-12)


def test_jvp_pytrees_and_closed_form():
    params = {"w": RNG.standard_normal((3, 2)), "b": [RNG.standard_normal(2)]}
    x = RNG.standard_normal((5, 3))

    def f(p, x):
        return np.tanh(x @ p["w"] + p["b"][0])
    tp = {"w": RNG.standard_normal((3, 2)), "b": [RNG.standard_normal(2)]}
    tx = RNG.standard_normal((5, 3))
    out, t_out = tg.jvp(f, (params, x), (tp, tx))
    pre = x @ params["w"] + params["b"][0]
    want = (1 - np.tanh(pre) ** 2) * (tx @ params["w"] + x @ tp["w"] + tp["b"][0])
    np.testing.assert_allclose(out, np.tanh(pre))
    np.testing.assert_allclose(t_out, want, rtol=1e-12)


def test_jvp_of_output_independent_of_input_is_zero():
    out, t = tg.jvp(lambda x: (x * 0 + 1, np.ones(3)), (np.ones(3),), (np.ones(3),))
    np.testing.assert_array_equal(t[0], np.zeros(3))
    np.testing.assert_array_equal(t[1], np.zeros(3))


def test_jvp_errors_name_the_fix():
    with pytest.raises(TypeError, match=r"tuples.*tg.jvp\(f, \(x,\), \(v,\)\)"):
        tg.jvp(np.sin, np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="one tangent per primal"):
        tg.jvp(lambda x, y: x * y, (np.ones(2), np.ones(2)), (np.ones(2),))
    with pytest.raises(ValueError, match=r"tangent 0 has shape \(3,\)"):
        tg.jvp(np.sin, (np.ones(2),), (np.ones(3),))
    with pytest.raises(TypeError, match="floating-point"):
        tg.jvp(np.sin, (np.arange(2),), (np.ones(2),))
    with pytest.raises(TypeError, match=r"tapegrad.hvp: .*tg.hvp\(f, \(x,\), \(v,\)\)"):
        tg.hvp(np.sum, np.ones(2), np.ones(2))


@pytest.mark.parametrize("shape_in,shape_out", [((3,), (5,)), ((2, 3), (4,)), ((4,), (2, 2))])
def test_jacfwd_equals_jacrev_non_square(shape_in, shape_out):
    m = int(np.prod(shape_out))
    A = RNG.standard_normal((m, int(np.prod(shape_in))))

    def f(x):
        return np.reshape(np.sin(A @ np.reshape(x, (-1,))), shape_out)
    x = RNG.standard_normal(shape_in)
    jf, jr = tg.jacfwd(f)(x), tg.jacrev(f)(x)
    assert jf.shape == shape_out + shape_in
    want = (np.cos(A @ x.ravel())[:, None] * A).reshape(shape_out + shape_in)
    np.testing.assert_allclose(jf, want, rtol=1e-12)
    np.testing.assert_allclose(jr, want, rtol=1e-12)


def test_forward_mode_composes_with_jit_vmap_and_grad():
    v = np.array([1.0, -2.0, 0.5])

    def f(x):
        return np.sin(x) * np.sum(x ** 2)

    def directional(x):
        return tg.jvp(f, (x,), (v,))[1]
    x = RNG.standard_normal(3)
    want = np.cos(x) * v * np.sum(x ** 2) + np.sin(x) * np.sum(2 * x * v)
    np.testing.assert_allclose(tg.jit(directional)(x), want, rtol=1e-12)
    xs = RNG.standard_normal((4, 3))
    batched = tg.vmap(directional)(xs)
    np.testing.assert_allclose(tg.jit(tg.vmap(directional))(xs), batched, rtol=1e-12)
    np.testing.assert_allclose(batched[2], directional(xs[2]), rtol=1e-12)
    # reverse over forward: d/dx sum(J(x) v) against jacfwd of the jvp
    g = tg.grad(lambda x: np.sum(directional(x)))(x)
    np.testing.assert_allclose(g, np.sum(tg.jacfwd(directional)(x), axis=0), rtol=1e-10)
    np.testing.assert_allclose(tg.jit(tg.grad(lambda x: np.sum(directional(x))))(x), g,
                               rtol=1e-12)


def test_third_derivative_by_nested_forward_mode():
    def d(f):
        return lambda x: tg.jvp(f, (x,), (np.ones_like(x),))[1]
    x = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(d(d(d(np.sin)))(x), -np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(tg.jit(d(d(d(np.exp))))(x), np.exp(x), rtol=1e-12)
    # mixed: forward over reverse over forward
    np.testing.assert_allclose(d(tg.grad(lambda y: np.sum(d(np.tanh)(y))))(x),
                               np.diag(tg.hessian(lambda y: np.sum(1 - np.tanh(y) ** 2))(x)),
                               rtol=1e-10)


def test_hvp_against_hessian_and_rosenbrock():
    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    x, v = RNG.standard_normal(6), RNG.standard_normal(6)
    value, product = tg.hvp(rosen, (x,), (v,))
    np.testing.assert_allclose(value, rosen(x))
    np.testing.assert_allclose(product, tg.hessian(rosen)(x) @ v, rtol=1e-12)
    np.testing.assert_allclose(tg.jit(lambda x, v: tg.hvp(rosen, (x,), (v,))[1])(x, v), product,
                               rtol=1e-12)

    def f(a, b):
        return np.sum(a ** 2 * b) + np.sum(np.sin(b))
    a, b, ta, tb = (RNG.standard_normal(3) for _ in range(4))
    _, (ha, hb) = tg.hvp(f, (a, b), (ta, tb))
    np.testing.assert_allclose(ha, 2 * b * ta + 2 * a * tb)
    np.testing.assert_allclose(hb, 2 * a * ta - np.sin(b) * tb)


TORCH_FUNCTIONS = [
    ("tanh-mlp", lambda lib, x: lib.tanh(x[:3] * 2.0 - x[1:]) * x[0]),
    ("exp-log1p", lambda lib, x: lib.log1p(lib.exp(x)) - x ** 2),
    ("prod-sum", lambda lib, x: (lib.sin(x) * x[::-1] if lib is np else lib.sin(x) * x.flip(0))),
    ("outer-matmul", lambda lib, x: lib.tanh(lib.outer(x, x)) @ x),
    ("maximum-div", lambda lib, x: lib.maximum(x, 0.5 * x) / (1 + x ** 2)),
    ("sqrt-abs-reduce", lambda lib, x: lib.sqrt(lib.abs(x) + 1) * lib.sum(x ** 3)),
]


@pytest.mark.parametrize("name,f", TORCH_FUNCTIONS, ids=[t[0] for t in TORCH_FUNCTIONS])
def test_against_torch_func(name, f):
    torch = pytest.importorskip("torch")
    func = torch.func
    x = RNG.standard_normal(4)
    v = RNG.standard_normal(4)
    tx, tv = torch.tensor(x), torch.tensor(v)
    ours = lambda y: f(np, y)  # noqa: E731
    theirs = lambda y: f(torch, y)  # noqa: E731
    _, t_ours = tg.jvp(ours, (x,), (v,))
    _, t_theirs = func.jvp(theirs, (tx,), (tv,))
    np.testing.assert_allclose(t_ours, t_theirs.numpy(), rtol=1e-10)
    np.testing.assert_allclose(tg.jacfwd(ours)(x), func.jacfwd(theirs)(tx).numpy(), rtol=1e-10)
    np.testing.assert_allclose(tg.jacrev(ours)(x), func.jacrev(theirs)(tx).numpy(), rtol=1e-10)
    scalar_ours = lambda y: np.sum(ours(y) ** 2)  # noqa: E731
    scalar_theirs = lambda y: torch.sum(theirs(y) ** 2)  # noqa: E731
    np.testing.assert_allclose(tg.hessian(scalar_ours)(x), func.hessian(scalar_theirs)(tx).numpy(),
                               rtol=1e-9, atol=1e-12)
    out, f_vjp = tg.vjp(ours, x)
    t_out, t_vjp = func.vjp(theirs, tx)
    np.testing.assert_allclose(f_vjp(v[:out.shape[0]])[0], t_vjp(tv[:out.shape[0]])[0].numpy(),
                               rtol=1e-10)


CUDA_SIM_SCRIPT = """
import numpy as np, tapegrad as tg
f = lambda x: np.sum(np.sin(x) * x[::-1])
step = tg.checkpoint(lambda y: y * np.sin(y))
row = lambda x: (tg.hessian(f)(x), tg.jvp(step, (x,), (np.ones(3),))[1])
xs = np.random.default_rng(0).random((4, 3))
got = tg.jit(tg.vmap(row), device="cuda")(xs)
want = tg.vmap(row)(xs)
for g, w in zip(got, want):
    np.testing.assert_allclose(np.asarray(g), w, rtol=1e-12, atol=1e-14)
print("ok")
"""


def test_transforms_under_cuda_simulator():
    pytest.importorskip("numba.cuda")
    import os
    import subprocess
    import sys
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, "-c", CUDA_SIM_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_two_argument_transforms_against_torch_func():
    torch = pytest.importorskip("torch")
    func = torch.func
    a, b, ta, tb = (RNG.standard_normal(3) for _ in range(4))
    ours = lambda a, b: np.sum(np.tanh(a * b) ** 2 + np.exp(a) * b ** 3)  # noqa: E731
    theirs = lambda a, b: torch.sum(torch.tanh(a * b) ** 2 + torch.exp(a) * b ** 3)  # noqa: E731
    T = [torch.tensor(v) for v in (a, b, ta, tb)]
    h_ours = tg.hessian(ours, argnums=(0, 1))(a, b)
    h_theirs = func.hessian(theirs, argnums=(0, 1))(T[0], T[1])
    for i in range(2):
        for j in range(2):
            np.testing.assert_allclose(h_ours[i][j], h_theirs[i][j].numpy(), rtol=1e-10)
    value, (ha, hb) = tg.hvp(ours, (a, b), (ta, tb))
    t_value, (t_ha, t_hb) = torch.autograd.functional.hvp(theirs, (T[0], T[1]), (T[2], T[3]))
    np.testing.assert_allclose(value, t_value.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ha, t_ha.numpy(), rtol=1e-10)
    np.testing.assert_allclose(hb, t_hb.numpy(), rtol=1e-10)
    _, t_ours = tg.jvp(tg.grad(ours, argnums=(0, 1)), (a, b), (ta, tb))
    _, t_theirs = func.jvp(func.grad(theirs, argnums=(0, 1)), (T[0], T[1]), (T[2], T[3]))
    np.testing.assert_allclose(t_ours[0], t_theirs[0].numpy(), rtol=1e-10)
