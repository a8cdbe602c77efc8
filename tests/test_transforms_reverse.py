"""Reverse mode with any output on the traced face: vjp, jacrev (jacobian), hessian."""
import numpy as np
import pytest

import tapegrad as tg

RNG = np.random.default_rng(31)


def test_vjp_any_output_pytrees():
    def f(p, x):
        return {"y": np.tanh(p["w"] @ x), "n": np.sum(x ** 2)}, x * 2.0
    p = {"w": RNG.standard_normal((2, 3))}
    x = RNG.standard_normal(3)
    out, f_vjp = tg.vjp(f, p, x)
    np.testing.assert_allclose(out[0]["y"], np.tanh(p["w"] @ x))
    ct = ({"y": RNG.standard_normal(2), "n": np.array(1.5)}, RNG.standard_normal(3))
    gp, gx = f_vjp(ct)
    s = (1 - np.tanh(p["w"] @ x) ** 2) * ct[0]["y"]
    np.testing.assert_allclose(gp["w"], np.outer(s, x), rtol=1e-12)
    np.testing.assert_allclose(gx, p["w"].T @ s + 3.0 * x + 2.0 * ct[1], rtol=1e-12)
    # called again with another cotangent: the same recording, a new sweep
    gp2, _ = f_vjp(({"y": np.zeros(2), "n": np.array(0.0)}, np.zeros(3)))
    np.testing.assert_array_equal(gp2["w"], np.zeros((2, 3)))


def test_vjp_cotangent_is_not_differentiated():
    # vjp_fn(ct) is linear in ct even when ct is computed from x (Gauss-Newton: J^T r)
    def gn(x):
        r, f_vjp = tg.vjp(lambda y: y ** 2, x)
        return f_vjp(r)[0]
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(gn(x), 2 * x * x ** 2)
    # d/dx (2 x * x^2) = 6 x^2: the derivative flows through r = x^2, once
    np.testing.assert_allclose(tg.jacrev(gn)(x), np.diag(6 * x ** 2))


def test_vjp_fn_sees_the_output_as_returned():
    # a write into the output after vjp returns does not change what vjp_fn differentiates
    def f(x):
        out, f_vjp = tg.vjp(lambda y: y * 3.0, x)
        out[0] = 0.0
        return f_vjp(np.ones(2))[0] + out
    np.testing.assert_allclose(f(np.array([1.0, 2.0])), [3.0, 9.0])
    np.testing.assert_allclose(tg.jit(f)(np.array([1.0, 2.0])), [3.0, 9.0])


def test_vjp_has_aux_and_errors():
    out, f_vjp, aux = tg.vjp(lambda x: (np.sin(x), {"c": x.shape[0]}), np.ones(2), has_aux=True)
    assert aux == {"c": 2}
    np.testing.assert_allclose(f_vjp(np.ones(2))[0], np.cos(np.ones(2)))
    with pytest.raises(ValueError, match=r"cotangent 0 has shape \(3,\)"):
        f_vjp(np.ones(3))
    with pytest.raises(ValueError, match="structure"):
        f_vjp((np.ones(2), np.ones(2)))
    with pytest.raises(TypeError, match="argument 0 .* Python int"):
        tg.vjp(lambda n: n * 2.0, 3)


def test_vjp_inside_jit_and_vmap():
    w = RNG.standard_normal((3, 3))

    def pulled(x, ct):
        _, f_vjp = tg.vjp(lambda y: np.sin(w @ y), x)
        return f_vjp(ct)[0]
    x, ct = RNG.standard_normal(3), RNG.standard_normal(3)
    want = w.T @ (np.cos(w @ x) * ct)
    np.testing.assert_allclose(pulled(x, ct), want, rtol=1e-12)
    np.testing.assert_allclose(tg.jit(pulled)(x, ct), want, rtol=1e-12)
    xs, cts = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 3))
    np.testing.assert_allclose(tg.jit(tg.vmap(pulled))(xs, cts)[3], pulled(xs[3], cts[3]),
                               rtol=1e-12)


def test_vjp_fn_used_under_another_jit():
    x = np.array([0.5, 1.0])
    _, f_vjp = tg.vjp(np.exp, x)
    np.testing.assert_allclose(tg.jit(lambda ct: f_vjp(ct)[0])(np.ones(2)), np.exp(x))
    _, f_vjp, aux = tg.vjp(lambda x: (np.sin(x), x * 2.0), x, has_aux=True)
    np.testing.assert_allclose(tg.jit(lambda ct: f_vjp(ct)[0])(np.ones(2)), np.cos(x))


@pytest.mark.parametrize("n_in,n_out", [(1, 4), (4, 1), (3, 5), (6, 2)])
def test_jacrev_non_square_against_finite_differences(n_in, n_out):
    A = RNG.standard_normal((n_out, n_in))

    def f(x):
        return np.exp(A @ x) * np.sum(x)
    x = RNG.standard_normal(n_in)
    jac = tg.jacobian(f)(x)
    eps = 1e-6
    fd = np.stack([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(n_in)], axis=1)
    assert jac.shape == (n_out, n_in)
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tg.jacfwd(f)(x), jac, rtol=1e-12)


def test_jacrev_argnums_and_pytrees_follow_jax():
    def f(a, p):
        return {"u": a * p["s"], "v": np.sum(a) * p["m"]}
    a = RNG.standard_normal(3)
    p = {"s": np.array(2.0), "m": RNG.standard_normal((2, 2))}
    j = tg.jacrev(f, argnums=(0, 1))(a, p)
    assert set(j) == {"u", "v"}
    ja, jp = j["u"]
    np.testing.assert_allclose(ja, 2.0 * np.eye(3))
    np.testing.assert_allclose(jp["s"], a)
    assert jp["m"].shape == (3, 2, 2)
    ja_v, jp_v = j["v"]
    assert ja_v.shape == (2, 2, 3) and jp_v["s"].shape == (2, 2)
    np.testing.assert_allclose(ja_v, np.broadcast_to(p["m"][..., None], (2, 2, 3)))
    np.testing.assert_allclose(jp_v["m"].reshape(4, 4), np.sum(a) * np.eye(4))
    jf = tg.jacfwd(f, argnums=(0, 1))(a, p)
    for key in ("u", "v"):
        np.testing.assert_allclose(jf[key][0], j[key][0])
        for leaf in ("s", "m"):
            np.testing.assert_allclose(jf[key][1][leaf], j[key][1][leaf])
    # a single int argnums with a pytree argument gives the argument's structure
    single = tg.jacrev(f, argnums=1)(a, p)
    np.testing.assert_allclose(single["u"]["s"], a)
    np.testing.assert_allclose(tg.jacrev(f, argnums=-2)(a, p)["u"], 2.0 * np.eye(3))


def test_jacrev_composes_with_jit_and_vmap():
    def f(x):
        return np.sin(x) * x[::-1]
    xs = RNG.standard_normal((4, 3))
    batched = tg.vmap(tg.jacrev(f))(xs)
    assert batched.shape == (4, 3, 3)
    np.testing.assert_allclose(tg.jit(tg.vmap(tg.jacrev(f)))(xs), batched, rtol=1e-12)
    np.testing.assert_allclose(tg.jit(tg.jacfwd(f))(xs[1]), batched[1], rtol=1e-12)
    np.testing.assert_allclose(batched[2], np.diag(np.cos(xs[2]) * xs[2][::-1])
                               + np.diag(np.sin(xs[2]))[:, ::-1], rtol=1e-12)


def test_hessian_against_scipy_rosen_hess():
    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    x = RNG.standard_normal(7)
    try:
        from scipy.optimize import rosen_hess
        want = rosen_hess(x)
    except ImportError:     # the closed form scipy uses
        n = len(x)
        want = np.zeros((n, n))
        for i in range(n - 1):
            want[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
            want[i + 1, i + 1] += 200
            want[i, i + 1] = want[i + 1, i] = -400 * x[i]
    np.testing.assert_allclose(tg.hessian(rosen)(x), want, rtol=1e-12)
    np.testing.assert_allclose(tg.jit(tg.hessian(rosen))(x), want, rtol=1e-12)
    np.testing.assert_allclose(tg.jacrev(tg.jacrev(rosen))(x), want, rtol=1e-12)
    np.testing.assert_allclose(tg.vmap(tg.hessian(rosen))(np.stack([x, x]))[1], want, rtol=1e-12)


def test_hessian_argnums_tuple_and_third_derivative():
    def f(a, b):
        return np.sum(a ** 2 * b ** 3)
    a, b = RNG.standard_normal(2), RNG.standard_normal(2)
    h = tg.hessian(f, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(h[0][0], np.diag(2 * b ** 3))
    np.testing.assert_allclose(h[0][1], np.diag(6 * a * b ** 2))
    np.testing.assert_allclose(h[1][1], np.diag(6 * a ** 2 * b))
    h_aux, aux = tg.hessian(lambda a: (np.sum(a ** 3), a * 2.0), has_aux=True)(a)
    np.testing.assert_allclose(h_aux, np.diag(6 * a))
    np.testing.assert_allclose(aux, a * 2.0)
    third = tg.jacfwd(tg.hessian(lambda x: np.sum(x ** 4)))(a)
    want = np.zeros((2, 2, 2))
    want[0, 0, 0], want[1, 1, 1] = 24 * a
    np.testing.assert_allclose(third, want, rtol=1e-12)


def test_jacobian_of_constant_and_integer_outputs():
    j = tg.jacrev(lambda x: (np.ones(2), x > 0))(np.ones(3))
    np.testing.assert_array_equal(j[0], np.zeros((2, 3)))
    assert j[1].shape == (3, 3) and not j[1].any()
    assert tg.jacfwd(lambda x: x * 2.0)(np.zeros((0,))).shape == (0, 0)


def test_nan_and_inf_follow_the_rules():
    x = np.array([0.0, np.inf, np.nan, 1.0])
    j = tg.jacrev(np.sqrt)(x)
    _, t = tg.jvp(np.sqrt, (x,), (np.ones(4),))
    np.testing.assert_array_equal(np.diag(j), t)
    assert np.isinf(t[0]) and t[1] == 0 and np.isnan(t[2]) and t[3] == 0.5


# ---------------------------------------------------------------------------------------------
# Sparse Jacobians (column / row colouring)
# ---------------------------------------------------------------------------------------------

def pde_residual(u):
    inner = (u[2:] - 2 * u[1:-1] + u[:-2]) * 100.0 + u[1:-1] ** 2 - np.sin(u[1:-1])
    return np.concatenate([u[:1] - 1.0, inner, u[-1:]])


@pytest.mark.parametrize("transform", [tg.jacfwd, tg.jacrev], ids=["jacfwd", "jacrev"])
def test_sparse_jacobian_detected_banded(transform):
    sp = pytest.importorskip("scipy.sparse")
    u = RNG.standard_normal(50)
    jac = transform(pde_residual, sparsity="detect")(u)
    assert sp.issparse(jac) and jac.shape == (50, 50)
    dense = tg.jacrev(pde_residual)(u)
    np.testing.assert_allclose(jac.toarray(), dense, rtol=1e-12, atol=1e-12)
    assert jac.nnz == 2 + 3 * 48                       # the tridiagonal pattern, exactly


def test_sparse_jacobian_colours_and_given_patterns():
    sp = pytest.importorskip("scipy.sparse")
    from tapegrad.sparse_jacobian import colour_columns
    n = 30
    band = sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1])
    colours, count = colour_columns(band.tocsr())
    assert count == 3 and set(colours[:6]) == {0, 1, 2}
    u = RNG.standard_normal(n)
    dense = tg.jacrev(pde_residual)(u)
    np.testing.assert_allclose(tg.jacfwd(pde_residual, sparsity=band)(u).toarray(), dense,
                               rtol=1e-12)
    np.testing.assert_allclose(tg.jacrev(pde_residual, sparsity=band.toarray() != 0)(u).toarray(),
                               dense, rtol=1e-12)
    with pytest.raises(ValueError, match=r"sparsity has shape \(29, 30\) .* \(30, 30\)"):
        tg.jacfwd(pde_residual, sparsity=np.ones((29, 30), bool))(u)
    with pytest.raises(TypeError, match="outside jit"):
        tg.jit(lambda u: tg.jacfwd(pde_residual, sparsity=band)(u).toarray())(u)


SPARSE_CASES = [
    ("reshape-transpose-reduce", (3, 4),
     lambda x: np.sum(np.exp(x.T.reshape(2, 6)), axis=1)),
    ("softmax-rows", (3, 4), lambda x: _softmax_rows(x).reshape(-1)),
    ("broadcast-where", (4,), lambda x: np.where(x > 0, x[:, None] * x[None, :], 1.0).ravel()),
    ("setitem-index-add", (5,), lambda x: _scatter(x)),
    ("matmul-dense", (3,), lambda x: np.ones((2, 3)) @ x),
    ("matmul-banded-constant", (6,), lambda x: (np.eye(6) - np.eye(6, k=1)) @ np.sin(x)),
    ("matmul-traced-operands", (3, 3), lambda x: (x @ x[:, :1]).ravel()),
]


def _softmax_rows(x):
    e = np.exp(x - np.max(x, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def _scatter(x):
    y = x * 2.0
    y[1:3] = x[3:5] ** 2
    z = np.zeros(4) + x[0]
    z[np.array([1, 3])] += x[1:3]
    return np.concatenate([y, z])


@pytest.mark.parametrize("name,shape,f", SPARSE_CASES, ids=[c[0] for c in SPARSE_CASES])
def test_detected_pattern_covers_the_jacobian(name, shape, f):
    pytest.importorskip("scipy.sparse")
    x = RNG.uniform(0.5, 1.5, shape)
    dense = tg.jacrev(lambda x: np.reshape(f(x), (-1,)))(x).reshape(-1, x.size)
    for transform in (tg.jacfwd, tg.jacrev):
        jac = transform(lambda x: np.reshape(f(x), (-1,)), sparsity="detect")(x)
        np.testing.assert_allclose(jac.toarray(), dense, rtol=1e-12, atol=1e-14)
    pattern = tg.jacfwd(lambda x: np.reshape(f(x), (-1,)), sparsity="detect")(x)
    # structural: never smaller than the values' pattern; not all-dense when the map is sparse
    assert pattern.nnz >= np.count_nonzero(dense)
    if name != "matmul-dense":
        assert pattern.nnz < dense.size
    if name.startswith("matmul"):      # a constant operand's zeros are structural: exact
        assert pattern.nnz == np.count_nonzero(dense)


def test_sparse_benchmark_script_runs_small(capsys):
    pytest.importorskip("scipy.sparse")
    from benchmarks import sparse_jacobian
    sparse_jacobian.main(["--n", "300", "--dense-n", "50"])
    out = capsys.readouterr().out
    assert "coloured, detected" in out and "(898 entries, 3 colours)" in out
