"""np.linalg decompositions, norms, partition and floor_divide on the traced face and the CPU jit:
NumPy's values, finite differences (float64), PyTorch's gradients; jit without the reference
interpreter fallback."""
import warnings

import numpy as np
import pytest

import tapegrad as tg
from tape_faces import central_differences as fd

pytest.importorskip("numba")

RNG = np.random.default_rng(7)
SPD = RNG.standard_normal((3, 3))
SPD = SPD @ SPD.T + np.eye(3)
SYMMETRIC_SPD = SPD.copy()
SPD[0, 2] += 5.0            # NumPy reads the lower triangle: the upper one must not matter
TALL = RNG.standard_normal((4, 3))
STACK = RNG.standard_normal((2, 3, 3)) + 3 * np.eye(3)
REAL_EIG = np.array([[2.0, 0.3, 0.1], [0.5, -1.0, 0.2], [0.1, 0.4, 0.7]])


W3 = RNG.standard_normal((3, 3))
CASES = {
    "cholesky": (lambda a: np.sum(np.linalg.cholesky(a) * W3), SPD),
    "eigh-values": (lambda a: np.sum(np.linalg.eigh(a)[0] * np.arange(3.0)), SPD),
    "eigh-vectors": (lambda a: np.sum(np.linalg.eigh(a).eigenvectors ** 3), SPD),
    "eigvalsh-stack": (lambda a: np.sum(np.linalg.eigvalsh(a) ** 2), STACK),
    "svd-values": (lambda a: np.sum(np.linalg.svd(a, compute_uv=False) * np.arange(1, 4.0)),
                   TALL),
    "svd-u": (lambda a: np.sum(np.linalg.svd(a, full_matrices=False)[0] ** 3), TALL),
    "svd-vt-wide": (lambda a: np.sum(np.linalg.svd(a, full_matrices=False).Vh ** 3),
                    TALL.T.copy()),
    "svd-stack": (lambda a: np.sum(np.linalg.svd(a)[1] ** 2), STACK),
    "pinv": (lambda a: np.sum(np.linalg.pinv(a) * TALL.T), TALL),
    "eig-values": (lambda a: np.sum(np.linalg.eig(a)[0] * np.arange(3.0)), REAL_EIG),
    "eig-vectors": (lambda a: np.sum(np.linalg.eig(a)[1] ** 3), REAL_EIG),
    "eigvals": (lambda a: np.sum(np.linalg.eigvals(a) ** 2), REAL_EIG),
    "partition": (lambda x: np.sum(np.partition(x, 2) * np.arange(5.0)),
                  np.array([0.3, -1.2, 2.5, 0.9, -0.4])),
    "slogdet": (lambda a: np.sum(np.linalg.slogdet(a)[1]), STACK),
}
for _ord in [None, "fro", "nuc", 2, -2, 1, -1, np.inf, -np.inf]:
    CASES[f"matrix-norm-{_ord}"] = (lambda a, o=_ord: np.linalg.norm(a, o), TALL)
for _ord in [None, 2, 1, -1, np.inf, -np.inf, 3, 0.5, -2]:
    CASES[f"vector-norm-{_ord}"] = (lambda a, o=_ord: np.linalg.norm(a, o), TALL[0].copy())
CASES["norm-axis-pair"] = (lambda a: np.sum(np.linalg.norm(a, "nuc", axis=(0, 2))), STACK)
CASES["matrix_norm-2"] = (lambda a: np.sum(np.linalg.matrix_norm(a, ord=2, keepdims=True)), STACK)
CASES["vector_norm"] = (lambda a: np.linalg.vector_norm(a, ord=3), STACK)


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_finite_differences_and_jit(name):
    f, x = CASES[name]
    value, grad = tg.value_and_grad(f)(x)
    np.testing.assert_allclose(value, f(x), rtol=1e-12)
    np.testing.assert_allclose(grad, fd(f, x), rtol=1e-5, atol=1e-7)
    jitted = tg.jit(tg.value_and_grad(f))
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # no fallback to the NumPy reference interpreter
        jitted(x)
        jit_value, jit_grad = jitted(x)
    np.testing.assert_allclose(jit_value, value, rtol=1e-12)
    np.testing.assert_allclose(jit_grad, grad, rtol=1e-10, atol=1e-12)


TORCH_CASES = {
    "cholesky": (lambda lib, a: (lib.linalg.cholesky(a) * lib.asarray(W3)).sum(),
                 SYMMETRIC_SPD),
    "eigh": (lambda lib, a: (lib.linalg.eigh(a)[0] * lib.asarray(np.arange(3.0))).sum(),
             SYMMETRIC_SPD),
    "svdvals": (lambda lib, a: (lib.linalg.svdvals(a) ** 3).sum(), TALL),
    "pinv": (lambda lib, a: (lib.linalg.pinv(a) * lib.asarray(TALL.T)).sum(), TALL),
    "nuc": (lambda lib, a: lib.linalg.matrix_norm(a, ord="nuc"), TALL),
}


@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_gradients_match_torch_on_symmetric_use(name):
    torch = pytest.importorskip("torch")
    f, x = TORCH_CASES[name]
    # both libraries differentiate f(sym(X)) the same way (NumPy reads one triangle, PyTorch too)
    sym = (lambda a: (a + a.T) / 2) if name in ("cholesky", "eigh") else (lambda a: a)
    ours = tg.grad(lambda a: f(np, sym(a)))(x)
    t = torch.tensor(x, requires_grad=True)
    f(torch, sym(t)).backward()
    np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-8, atol=1e-10)


def test_degenerate_eigenvalues_give_nan_only_where_the_vectors_matter():
    a = np.diag([1.0, 1.0, 2.0])
    values_only = tg.grad(lambda a: np.sum(np.linalg.eigh(a)[0] * np.arange(3.0)))(a)
    assert np.all(np.isfinite(values_only))
    vectors = tg.grad(lambda a: np.sum(np.linalg.eigh(a)[1] * W3))(a)
    assert not np.all(np.isfinite(vectors))       # no silent wrong number: inf/nan as JAX


def test_complex_eigenvalues_are_refused_clearly():
    rotation = np.array([[0.0, 1.0], [-1.0, 0.0]])
    f = tg.grad(lambda a: np.sum(np.linalg.eig(a)[0]))
    with pytest.raises(np.linalg.LinAlgError, match="complex eigenvalues.*eigh"):
        f(rotation)
    with pytest.raises(np.linalg.LinAlgError, match="complex eigenvalues"):
        tg.jit(f)(rotation)


def test_full_matrices_svd_of_a_rectangle_is_refused_with_the_fix():
    with pytest.raises(TypeError, match="full_matrices=False"):
        tg.grad(lambda a: np.sum(np.linalg.svd(a)[0]))(TALL)


def test_floor_divide_values_and_no_gradient():
    x = np.array([7.5, -7.5, 1e-300, 3.0, -0.0, np.inf, np.nan])
    y = np.array([2.0, 2.0, 3.0, -0.7, 2.0, 2.0, 1.0])
    f = tg.jit(lambda x, y: np.floor_divide(x, y))
    f(x, y)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(f(x, y), x // y)
    i, j = np.array([7, -7, 5, 3]), np.array([2, 2, 0, -2])
    g = tg.jit(lambda i, j: np.floor_divide(i, j))
    g(i, j)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(g(i, j), i // j)
    grads = tg.grad(lambda x: np.sum(np.floor_divide(x, 2.0) + x))(x[:4])
    np.testing.assert_array_equal(grads, np.ones(4))


def test_compiled_polygamma_matches_scipy():
    special = pytest.importorskip("scipy.special")
    x = np.array([0.05, 0.3, 1.0, 2.5, 7.0, 30.0, 1e4, -0.5, -2.3, -3.0, 0.0, np.nan, np.inf])
    g = tg.jit(tg.grad(lambda x: np.sum(special.digamma(x))))   # trigamma, compiled
    h = tg.jit(tg.grad(tg.grad(lambda x: special.digamma(x))))  # tetragamma
    smooth = x[:9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g(smooth)
        np.testing.assert_allclose(g(smooth), special.polygamma(1, smooth), rtol=1e-12)
    for value in smooth:
        h(value)
        np.testing.assert_allclose(h(value), special.polygamma(2, value), rtol=1e-11)
    d = tg.jit(lambda x: special.digamma(x))
    d(x)
    # near digamma's root at -0.504 the reflection loses a few digits, as any formula does
    np.testing.assert_allclose(d(x), special.digamma(x), rtol=1e-12, atol=1e-13, equal_nan=True)
