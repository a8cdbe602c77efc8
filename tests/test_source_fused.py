"""Fused loops for the source face's array code (issue 12; tapegrad/source/fuse.py).

source.grad(..., jit=True) emits runs of elementwise array statements as one loop nest. Most
checks run the fused emission with plain Python on small arrays (no Numba compile: fast), and
compare it with the unfused emission (NumPy array code, what jit=False runs) and with central
finite differences, over many shapes, broadcasting, NaN and inf; a few compile it with Numba.
"""
import ast
import re

import numpy as np
import pytest

from tapegrad import source
from tapegrad.source.api import _exec_source
from tapegrad.source.emit import emit
from tapegrad.source.kinds import kind_of_value


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def chain(x):
    return np.sum(np.exp(-x ** 2) * np.sin(3.0 * x) + x / (1.0 + x * x) - np.tanh(x) ** 3)


def bias_layer(X, w, b):
    return np.mean(np.tanh(X * w + b) ** 2)


def centred(X):
    return np.sum((X - np.mean(X, axis=1, keepdims=True)) ** 2 * np.cos(X))


def outer_exp(a, b):
    return np.sum(np.exp(a[:, None] * b[None, :]) / (1.0 + b))


def three_d(T, v, s):
    return np.mean(np.sin(T) * v * s + T ** 2)


def branches(x):
    return np.sum(np.where(x > 0.0, x ** 2, -x) + np.maximum(x, 0.5) * np.abs(x))


def mlp(w1, b1, w2, t, x):
    return np.mean((np.tanh(x @ w1 + b1) @ w2 - t) ** 2)


def energy_2d(M):
    return np.sum((M[1:, :] - M[:-1, :]) ** 2) + 0.5 * np.sum((M[:, 1:] - M[:, :-1]) ** 2)


def in_a_loop(x, w):
    for _ in range(3):
        x = np.tanh(w * x + 0.1)
    return np.sum(x * x)


def scalar_weight(s, x):
    return np.sum(s * x ** 2) + s * np.sum(np.sin(x))


def row_sums(X, w):
    s = np.sum(X * X * w, axis=1)
    return np.sum(np.sin(s)) + np.sum(np.sum(X, axis=0) ** 2)


def shifted_write(x):
    y = x * 1.0
    y[1:] = y[:-1] * 2.0 + x[1:]      # reads what it overwrites: NumPy reads it all first
    y = y + np.sin(y)
    return np.sum(y * y)


def rng_arrays(seed, *shapes):
    rng = np.random.default_rng(seed)
    return tuple(rng.uniform(-1.5, 1.5, shape) if shape else float(rng.uniform(0.5, 1.5))
                 for shape in shapes)


def layer_norm(w, x):
    z = x @ w
    mu = np.mean(z, axis=1, keepdims=True)
    var = np.mean((z - mu) ** 2, axis=1, keepdims=True)
    return np.sum(((z - mu) / np.sqrt(var + 1e-5)) ** 3)


def relu_layers(w1, w2, x):
    h = np.maximum(x @ w1, 0.0)
    return np.sum(np.tanh(h @ w2) ** 2) + np.sum(np.sum(h, axis=0, keepdims=True) * 2.0)


def two_heads(x, a, b):
    return np.sum(np.tanh(x @ a)) + np.sum((x @ b) ** 2)  # x_bar: a product, then another


CASES = [  # (function, argnums, argument shapes); () is a float
    (rosenbrock, 0, [(2,)]), (rosenbrock, 0, [(7,)]), (rosenbrock, 0, [(40,)]),
    (chain, 0, [(1,)]), (chain, 0, [(9,)]), (chain, 0, [(3, 4)]), (chain, 0, [(2, 3, 2)]),
    (bias_layer, (0, 1, 2), [(5, 3), (3,), ()]), (bias_layer, (0, 1, 2), [(1, 6), (6,), ()]),
    (centred, 0, [(4, 3)]), (centred, 0, [(1, 5)]),
    (outer_exp, (0, 1), [(3,), (4,)]), (outer_exp, (0, 1), [(1,), (2,)]),
    (three_d, (0, 1, 2), [(2, 3, 4), (4,), ()]),
    (branches, 0, [(11,)]), (branches, 0, [(2, 5)]),
    (mlp, (0, 1, 2), [(4, 5), (5,), (5, 2), (3, 2), (3, 4)]),
    (energy_2d, 0, [(4, 5)]), (energy_2d, 0, [(2, 2)]),
    (in_a_loop, (0, 1), [(6,), (6,)]),
    (scalar_weight, (0, 1), [(), (8,)]),
    (row_sums, (0, 1), [(4, 3), (3,)]), (row_sums, (0, 1), [(1, 1), (1,)]),
    (shifted_write, 0, [(6,)]),
    (layer_norm, 0, [(5, 4), (3, 5)]), (layer_norm, 0, [(2, 1), (1, 2)]),
    (relu_layers, (0, 1), [(5, 4), (4, 3), (2, 5)]),
    (two_heads, (0, 1, 2), [(3, 4), (4, 2), (4, 5)]),
]


def emitted(fun, argnums, args, fused):
    kinds = tuple(kind_of_value(np.float64(a) if isinstance(a, float) else a) for a in args)
    return emit(fun, argnums, kinds, "value_and_grad", fused=fused)


def run(code, args):
    with np.errstate(all="ignore"):
        value, grads = _exec_source(code)(*[np.float64(a) if isinstance(a, float) else a
                                             for a in args])
    return value, grads if isinstance(grads, tuple) else (grads,)


def finite_differences(fun, args, num, h=1e-6):
    args = list(args)
    x = np.asarray(args[num], dtype=float)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        for sign in (1, -1):
            moved = x.copy()
            moved[index] += sign * h
            args[num] = moved if x.ndim else float(moved)
            grad[index] += sign * fun(*args) / (2 * h)
    return grad


def _id(case):
    fun, _, shapes = case
    return f"{fun.__name__}-{'x'.join(str(s) for s in shapes)}"


@pytest.mark.parametrize("fun, argnums, shapes", CASES, ids=[_id(c) for c in CASES])
def test_fused_equals_unfused_and_finite_differences(fun, argnums, shapes):
    args = rng_arrays(len(shapes) + sum(map(len, shapes)), *shapes)
    fused = emitted(fun, argnums, args, fused=True)
    plain = emitted(fun, argnums, args, fused=False)
    assert fused.source != plain.source or "for " in plain.source
    value, grads = run(fused, args)
    plain_value, plain_grads = run(plain, args)
    assert value == pytest.approx(plain_value, rel=1e-12, abs=1e-13)
    assert value == pytest.approx(fun(*args), rel=1e-12, abs=1e-13)
    nums = (argnums,) if isinstance(argnums, int) else argnums
    for num, grad, plain_grad in zip(nums, grads, plain_grads):
        np.testing.assert_allclose(grad, plain_grad, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(grad, finite_differences(fun, args, num), rtol=1e-6,
                                   atol=1e-7)


@pytest.mark.parametrize("fun, argnums, shapes", [
    (chain, 0, [(6,)]), (bias_layer, (0, 1, 2), [(3, 4), (4,), ()]),
    (rosenbrock, 0, [(5,)]), (energy_2d, 0, [(3, 3)])])
def test_nan_and_inf_go_where_the_unfused_code_puts_them(fun, argnums, shapes):
    args = list(rng_arrays(3, *shapes))
    args[0] = args[0].copy()
    args[0].flat[0], args[0].flat[-1] = np.nan, np.inf
    fused = run(emitted(fun, argnums, args, fused=True), args)
    plain = run(emitted(fun, argnums, args, fused=False), args)
    np.testing.assert_array_equal(np.isnan(fused[0]), np.isnan(plain[0]))
    for grad, plain_grad in zip(fused[1], plain[1]):
        np.testing.assert_allclose(grad, plain_grad, rtol=1e-12, atol=1e-13, equal_nan=True)


def _function(code):
    return next(n for n in ast.parse(code.source).body if isinstance(n, ast.FunctionDef))


def _allocations(tree):
    """Names assigned a new array: np.empty/zeros/... or arithmetic on arrays at top level."""
    calls = {"empty", "zeros", "ones", "full", "empty_like", "zeros_like", "ones_like",
             "full_like"}
    return [s.targets[0].id for s in tree.body if isinstance(s, ast.Assign)
            and isinstance(s.targets[0], ast.Name) and isinstance(s.value, ast.Call)
            and isinstance(s.value.func, ast.Attribute) and s.value.func.attr in calls]


def test_an_elementwise_chain_has_no_array_temporaries():
    x = np.linspace(-1.0, 1.0, 5)
    fused = _function(emitted(chain, 0, (x,), fused=True))
    plain = _function(emitted(chain, 0, (x,), fused=False))
    # one loop computes the value and the gradient; the gradient is the only array made
    assert sum(isinstance(s, ast.For) for s in fused.body) == 1
    assert _allocations(fused) == ["x_bar"]
    assert not any(isinstance(s, ast.Assign) and isinstance(s.value, (ast.BinOp, ast.UnaryOp))
                   for s in fused.body), ast.unparse(fused)
    loop = next(s for s in fused.body if isinstance(s, ast.For))
    indexed = {id(n.value) for stmt in loop.body for n in ast.walk(stmt)
               if isinstance(n, ast.Subscript)}
    arrays = [n for stmt in loop.body for n in ast.walk(stmt)
              if isinstance(n, ast.Name) and n.id in ("x", "x_bar")]
    assert arrays and all(id(n) in indexed for n in arrays)   # element code only
    # the array code it replaces makes a temporary per operation
    assert sum(isinstance(n, ast.BinOp) for s in plain.body if isinstance(s, ast.Assign)
               for n in ast.walk(s.value)) > 10


def test_matrix_products_stay_calls_to_blas_outside_the_loops():
    args = rng_arrays(1, (4, 5), (5,), (5, 2), (3, 2), (3, 4))
    fused = emitted(mlp, (0, 1, 2), args, fused=True).source
    tree = ast.parse(fused)
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For)]
    assert loops
    for loop in loops:
        assert not any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)
                       or isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "dot"
                       for n in ast.walk(loop))
    assert "x @ w1" in fused and "tanh(x_times_w1[i, j] + b1[j])" in fused


def test_runtime_shapes_that_disagree_are_refused_naming_the_line():
    def pair(x, y):
        return np.sum(x * y + x)

    line = pair.__code__.co_firstlineno + 1
    args = (np.ones(4), np.ones(3))
    for fused in (True, False):
        with pytest.raises(AssertionError, match=f"line {line}"):
            run(emitted(pair, (0, 1), args, fused=fused), args)


def test_sums_over_axes_accumulate_in_the_loop():
    X, w, b = rng_arrays(2, (5, 3), (3,), ())
    code = ast.unparse(_function(emitted(bias_layer, (0, 1, 2), (X, w, b), fused=True)))
    assert "w_bar[j] +=" in code and "np.sum(" not in code   # the bias gradient in the loop
    code = ast.unparse(_function(emitted(row_sums, (0, 1), (X, w), fused=True)))
    assert "s[i] +=" in code and "result_3[j] +=" in code and "axis=" not in code


def test_updates_of_one_array_through_two_slices_are_summed():
    x = np.array([0.3, -1.2, 2.0, 0.7])
    code = emitted(rosenbrock, 0, (x,), fused=True).source
    assert "x_bar[i] +=" in code and "x_bar[i + 1] +=" in code
    assert code.count("for ") == 1     # forward and adjoint in one loop


# -- compiled by Numba -------------------------------------------------------------------------

def test_jit_rosenbrock_at_n_1e5_matches_the_hand_written_gradient():
    pytest.importorskip("numba")
    x = np.random.default_rng(0).uniform(-2.0, 2.0, 100_000)
    a, b = x[1:] - x[:-1] ** 2, 1.0 - x[:-1]
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * a * x[:-1] - 2.0 * b
    grad[1:] += 200.0 * a
    derivative = source.value_and_grad(rosenbrock, jit=True)
    value, g = derivative(x)
    assert "for i in range(" in derivative.source
    assert value == pytest.approx(np.sum(100.0 * a ** 2 + b ** 2), rel=1e-10)
    np.testing.assert_allclose(g, grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fun, argnums, shapes", [
    (mlp, (0, 1, 2), [(4, 5), (5,), (5, 2), (3, 2), (3, 4)]),
    (centred, 0, [(4, 3)]), (in_a_loop, (0, 1), [(6,), (6,)])])
def test_jit_runs_the_fused_code(fun, argnums, shapes):
    pytest.importorskip("numba")
    args = rng_arrays(5, *shapes)
    compiled = source.value_and_grad(fun, argnums=argnums, jit=True)
    plain = source.value_and_grad(fun, argnums=argnums)
    value, grads = compiled(*args)
    plain_value, plain_grads = plain(*args)
    assert value == pytest.approx(plain_value, rel=1e-12)
    for grad, plain_grad in zip(grads, plain_grads):
        np.testing.assert_allclose(grad, plain_grad, rtol=1e-12, atol=1e-13)


def relu_log_softmax(w1, b1, w2, b2, x, t):
    h = np.maximum(x @ w1 + b1, 0.0)
    z = h @ w2 + b2
    z = z - np.max(z, axis=1, keepdims=True)  # z bound twice
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    return -np.mean(np.sum(t * logp, axis=1))


def test_numba_compiles_names_like_its_own_versions_of_a_rebound_array():
    # Numba spells the versions of `z` z_1, z_2 in array expressions: an emitted array named
    # z_2 beside them failed its compile with "AssertionError: 'z_2_2' not unique"
    pytest.importorskip("numba")
    rng = np.random.default_rng(6)
    args = tuple(rng.standard_normal(s) for s in [(5, 4), (4,), (4, 3), (3,), (2, 5)]) + (
        np.eye(3)[[0, 2]],)
    want = source.value_and_grad(relu_log_softmax, argnums=(0, 1, 2, 3))(*args)
    df = source.value_and_grad(relu_log_softmax, argnums=(0, 1, 2, 3), jit=True)
    got = df(*args)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    assert re.search(r"\bz_v\d+\b", df.source) and not re.search(r"\bz_\d+\b", df.source)
    np.testing.assert_allclose(want[1][2], finite_differences(relu_log_softmax, args, 2),
                               rtol=1e-6, atol=1e-8)


def test_sums_over_axes_inside_expressions_accumulate_in_loops():
    # mean(z, axis=1, keepdims=True) is (np.sum(z, axis=1) / n)[:, None]: its sum is bound to
    # a name that a loop fills (mu_sum[i] += ...), forward and adjoint, no array temporaries
    args = rng_arrays(2, (5, 4), (3, 5))
    def sums(code):
        return [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", None) == "sum"]
    code = emitted(layer_norm, 0, args, fused=True).source
    assert not sums(code) and "mu_sum[i] += " in code
    assert sums(emitted(layer_norm, 0, args, fused=False).source)
