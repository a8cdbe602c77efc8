"""The source face keeps float32 inputs float32 (issue 12): gradients come back in the inputs'
dtype, the emitted code runs on them as NumPy would (no float64 copies), and fused loops compute
np.tanh of float32 elements by the traced face's function (Numba's own is a slow libm call)."""
import ast

import numpy as np
import pytest

from tapegrad import source

numba = pytest.importorskip("numba")


def mlp(w1, b1, w2, x, t):
    h = np.tanh(x @ w1 + b1)
    return np.mean((h @ w2 - t) ** 2)


def damped(x, k):
    for _ in range(3):
        x = x - k * np.sin(x)
    return np.sum(x * x)


def wide_ones(x):
    return np.sum(np.tanh(x @ np.ones((3, 2))))  # np.ones is float64: float32 @ float64


def tanh_named_by_the_user(x):
    tanh = np.tanh(x)
    return np.sum(tanh * x)


def _mlp_args(dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(6, 5), (5,), (5, 3), (4, 6), (4, 3)]
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("jit", [False, True])
def test_float32_arrays_give_float32_gradients_close_to_float64(jit):
    args32 = _mlp_args(np.float32)
    args64 = [a.astype(np.float64) for a in args32]
    want_value, want = source.value_and_grad(mlp, argnums=(0, 1, 2))(*args64)
    value, grads = source.value_and_grad(mlp, argnums=(0, 1, 2), jit=jit)(*args32)
    assert [g.dtype for g in grads] == [np.float32] * 3
    assert value == pytest.approx(want_value, rel=1e-5)
    for g, w in zip(grads, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_float32_loop_with_a_float_argument(jit):
    x = np.linspace(-2.0, 2.0, 7)
    want = source.grad(damped, argnums=(0, 1))(x, 0.3)
    got = source.grad(damped, argnums=(0, 1), jit=jit)(x.astype(np.float32), 0.3)
    assert got[0].dtype == np.float32 and isinstance(got[1], float)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert got[1] == pytest.approx(want[1], rel=1e-5)


def test_float32_code_numba_cannot_type_runs_in_float64_and_answers_in_float32():
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    want = source.grad(wide_ones)(x.astype(np.float64))
    unfused = source.grad(wide_ones)(x)   # NumPy: float32 @ float64 is float64
    df = source.grad(wide_ones, jit=True)
    for _ in range(2):  # the second call goes to float64 at once
        got = df(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(unfused, want, rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True])
def test_mixed_float32_and_float64_arguments_compute_in_float64(jit):
    args = _mlp_args(np.float64, seed=2)
    args[0] = args[0].astype(np.float32)  # NumPy promotes where they meet
    want = source.grad(mlp, argnums=(0, 2))(*[a.astype(np.float64) for a in args])
    got = source.grad(mlp, argnums=(0, 2), jit=jit)(*args)
    for g, w in zip(got, want):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-12)


def test_float16_arrays_compute_in_float64():
    x = np.array([0.5, -1.5, 2.0], dtype=np.float16)
    got = source.grad(tanh_named_by_the_user)(x)
    assert got.dtype == np.float64


def _tanh_elements(values):
    from tapegrad_jit.source_jit import tanh

    @numba.njit
    def each(a):
        out = np.empty_like(a)
        for i in range(a.shape[0]):
            out[i] = tanh(a[i])
        return out
    return each(values)


# float32: within 2 ulp of tanh where NumPy is within 1; float64: libm's, as Numba computes it
@pytest.mark.parametrize("dtype, ulps", [(np.float32, 3), (np.float64, 2)])
def test_fused_tanh_matches_numpy(dtype, ulps):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(2000) * 4, [0.0, -0.0, 1e-30, 3e-4, 5e-4, 8.9, 9.1,
                                                        -20.0, 1e4]]).astype(dtype)
    got, want = _tanh_elements(x), np.tanh(x)
    assert got.dtype == dtype
    np.testing.assert_array_max_ulp(got, want, maxulp=ulps)
    special = np.array([np.nan, np.inf, -np.inf], dtype)
    np.testing.assert_array_equal(_tanh_elements(special), np.tanh(special))


def test_fused_loops_call_the_tanh_helper_under_a_free_name():
    x = np.linspace(-1.0, 1.0, 5)
    df = source.grad(tanh_named_by_the_user, jit=True)
    code = df.source_for(x)
    tree = ast.parse(code)
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert [(n.module, [(a.name, a.asname) for a in n.names]) for n in imports] == [
        ("tapegrad_jit.source_jit", [("tanh", "tanh_1")])]
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For)]
    assert any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "tanh_1"
               for loop in loops for n in ast.walk(loop))
    for dtype in (np.float64, np.float32):
        got = df(x.astype(dtype))
        want = np.tanh(x) + x * (1 - np.tanh(x) ** 2)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert got.dtype == dtype


def softmax_cross_entropy(w, x, t):
    z = x @ w
    z = z - np.max(z, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(t * (z - lse), axis=1))


def relu_mlp(w1, w2, x):
    h = np.maximum(x @ w1, 0.0)
    return np.sum((h @ w2) ** 2) / x.shape[0]


@pytest.mark.parametrize("f, shapes, argnums", [
    (softmax_cross_entropy, [(6, 3), (5, 6), (5, 3)], 0),
    (relu_mlp, [(6, 4), (4, 2), (5, 6)], (0, 1))])
def test_softmax_and_relu_layers_run_in_float32_under_numba(f, shapes, argnums):
    rng = np.random.default_rng(4)
    args = [rng.standard_normal(s) for s in shapes]
    want = source.grad(f, argnums=argnums)(*args)
    df = source.grad(f, argnums=argnums, jit=True)
    got = df(*[a.astype(np.float32) for a in args])
    want, got = (want, got) if isinstance(argnums, tuple) else ((want,), (got,))
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert not df._float64  # Numba typed the float32 code: no float64 copies per call


def test_elementwise_operands_of_products_are_computed_by_loops():
    args = [np.random.default_rng(5).standard_normal(s) for s in [(6, 4), (4, 2), (5, 6)]]
    code = source.grad(relu_mlp, argnums=(0, 1), jit=True).source_for(*args)
    tree = ast.parse(code)
    products = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", None) == "dot"
                or isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)]
    assert len(products) == 5  # x @ w1, h @ w2 and three in the adjoint
    for node in products:
        sides = node.args if isinstance(node, ast.Call) else [node.left, node.right]
        assert all(isinstance(s, (ast.Name, ast.Attribute)) for s in sides), ast.unparse(node)
    assert "w1_bar = np.dot(x.T, w1_bar_factor)" in code  # no zeros to add it into
    stores = [n.targets[0] for loop in ast.walk(tree) if isinstance(loop, ast.For)
              for n in ast.walk(loop) if isinstance(n, ast.Assign)]
    assert any(isinstance(t, ast.Subscript) and t.value.id == "w1_bar_factor" for t in stores)
