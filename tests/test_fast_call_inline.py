"""jit's per-call fast path written as one function: the signature check, the copies in, the
compiled sweep and the result tree with no Python call in between (issue 14)."""
import sys
import warnings

import numpy as np
import pytest

import tapegrad as tg


def _python_calls(fn, *args):
    """Names of the Python functions entered while fn(*args) runs."""
    names = []

    def profile(frame, event, arg):
        if event == "call":
            names.append(frame.f_code.co_name)
    sys.setprofile(profile)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return names


def test_fast_path_enters_one_python_frame():
    f = tg.jit(lambda x, y, z: (x, (y * 2.0, z)))
    args = [np.arange(4.0).reshape(2, 2) + k for k in range(3)]
    f(*args)
    f(*args)
    # the generated check-and-run is the instance's __call__: no call_arrays, result builder or
    # dispatcher frame
    assert _python_calls(f, *args) == ["__call__"]


def test_fast_path_result_dtypes_do_not_clash_with_argument_dtypes():
    # the argument checks and the result tree share one generated function: a float32 result
    # and a float64 argument both need a dtype name there
    f = tg.jit(lambda x, y: {"a": (x * 2.0).astype(np.float32), "b": [y, x + y]})
    x, y = np.linspace(0.0, 1.0, 3), np.arange(3.0)
    for _ in range(3):
        out = f(x, y)
        assert out["a"].dtype == np.float32
        np.testing.assert_array_equal(out["a"], (x * 2.0).astype(np.float32))
        np.testing.assert_array_equal(out["b"][0], y)
        np.testing.assert_array_equal(out["b"][1], x + y)
        y = y + 1.0
    assert f.traces == 1


def test_fast_path_with_no_arguments():
    f = tg.jit(lambda: np.ones(2) * 3.0)
    for _ in range(3):
        np.testing.assert_array_equal(f(), [3.0, 3.0])
    assert f._fast is not None and f.traces == 1


@pytest.mark.parametrize("count", [1, 2, 4])
def test_fast_path_wrong_argument_count_takes_the_slow_path(count):
    f = tg.jit(lambda *xs: sum(x * 1.0 for x in xs))
    xs = [np.arange(3.0)] * 3
    f(*xs)
    f(*xs)
    np.testing.assert_array_equal(f(*xs[:1] * count), np.arange(3.0) * count)


def test_fast_path_deep_result_tree():
    depth = 400                      # too deep to write out as one expression

    def nest(x):
        out = x * 1.0
        for _ in range(depth):
            out = (out,)
        return out
    f = tg.jit(nest)
    x = np.arange(3.0)
    for k in range(3):
        out = f(x + k)
        for _ in range(depth):
            out = out[0]
        np.testing.assert_array_equal(out, x + k)


def test_each_instance_keeps_its_own_call():
    f = tg.jit(lambda x: x * 2.0)
    g = tg.jit(lambda x: x * 3.0)
    x = np.arange(3.0)
    for _ in range(3):
        np.testing.assert_array_equal(f(x), x * 2.0)
        np.testing.assert_array_equal(g(x), x * 3.0)
    assert isinstance(f, tg.transforms.Jitted) and type(f) is not type(g)
    assert type(f).__name__ == "Jitted"


def test_instance_with_fast_path_pickles_and_copies():
    import copy
    import pickle
    f = tg.jit(np.sin)
    x = np.linspace(0.0, 1.0, 4)
    f(x)
    f(x)
    for other in (pickle.loads(pickle.dumps(f)), copy.deepcopy(f)):
        assert type(other) is tg.transforms.Jitted
        np.testing.assert_array_equal(other(x), np.sin(x))


def test_fast_path_inside_a_trace_inlines():
    inner = tg.jit(lambda x: x * x)
    x = np.arange(3.0)
    inner(x)
    inner(x)
    # under grad the argument is a tracer: the instance's call goes to the slow path, which
    # inlines the function into the outer trace
    np.testing.assert_allclose(tg.grad(lambda y: np.sum(inner(y)))(x), 2.0 * x)
    # a constant array argument inside a trace is inlined too, not served from the buffer
    np.testing.assert_allclose(tg.grad(lambda y: np.sum(inner(x) * y))(x), x * x)


def test_fast_path_refuses_keyword_arguments_and_serves_missing_ones_slowly():
    f = tg.jit(lambda x, y: x * y)
    x = np.arange(3.0)
    f(x, x)
    f(x, x)
    with pytest.raises(TypeError):
        f(x, y=x)
    with pytest.raises(TypeError):
        f(x)                         # the slow path traces fun(x): Python's own TypeError
    np.testing.assert_array_equal(f(x, x + 1.0), x * (x + 1.0))
    assert f.traces == 1


def test_retraces_between_fast_calls_do_not_warn():
    # the streak of retraces counts consecutive ones only: a call served by a kept tape in
    # between resets it, though the fast path never looks at it
    f = tg.jit(lambda x, k: x * k)
    x = np.arange(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for k in range(3 * tg.transforms.MAX_PATHS):
            np.testing.assert_array_equal(f(x, k), x * k)      # a new static int: retrace
            np.testing.assert_array_equal(f(x, 0.5), x * 0.5)  # a kept tape
            np.testing.assert_array_equal(f(x, 0.5), x * 0.5)
    assert f.traces == 3 * tg.transforms.MAX_PATHS + 1


def test_retraces_on_every_call_still_warn():
    f = tg.jit(lambda x, k: x * k)
    x = np.arange(3.0)
    f(x, 0.5)
    f(x, 0.5)
    with pytest.warns(RuntimeWarning, match="retraced"):
        for k in range(3 * tg.transforms.MAX_PATHS):
            f(x, k)


# ---------------------------------------------------------------------------------------------
# Generated array loops: power-of-two scalings folded into constants, x * 2 as a multiplication
# ---------------------------------------------------------------------------------------------

def _generated(f, x):
    """(jitted results, reference interpreter results, the generated program) for f(x)."""
    jitted = tg.jit(f)
    jitted(x)
    out = jitted(x)
    program = next(iter(jitted._fast_calls))
    assert hasattr(program, "source")           # generated code, not the interpreter
    return out, jitted.tape(x).run(x), program


def _loop_of(program):
    return program.source.split("for i in range")[1]


_FOLDED = [
    lambda x: np.sum(3.0 * x ** 2 + 0.5 * np.sin(x) ** 2),
    lambda x: np.sum(-7.25 * (x * x) * np.cos(x)),
    lambda x: np.sum(100.0 * (x ** 2 - 1.0) ** 2 + (1.0 - x) ** 2),
    lambda x: np.sum(np.exp(-1.5 * x ** 2)),
    lambda x: np.sum((2.0 * x) ** 2 * 5.0),
]


def _unfolded(monkeypatch, f, x):
    """f's results from generated code without the folds and the runtime 2s."""
    from tapegrad_jit import fused
    with monkeypatch.context() as patch:
        patch.setattr(fused._Generator, "fold_scalings", lambda self, instrs: {})
        patch.setattr(fused._Generator, "balance_ports", lambda self, *args: set())
        out, _, program = _generated(f, x)
    return out, _loop_of(program).count("(2 * ")


@pytest.mark.parametrize("k", range(len(_FOLDED)))
def test_folded_scalings_round_as_the_rules(monkeypatch, k):
    rng = np.random.default_rng(k)
    x = rng.standard_normal(5000) * 3.0
    # overflowing products (2x and x**2), subnormals, zeros of both signs, NaN and infinities
    x[:10] = [1.5e308, -1.5e308, 1e200, 5e-324, -1e-310, 0.0, -0.0, np.nan, np.inf, -np.inf]
    f = tg.value_and_grad(_FOLDED[k])
    with np.errstate(all="ignore"):
        (value, grad), (ref_value, ref_grad), program = _generated(f, x)
        (plain_value, plain_grad), doublings = _unfolded(monkeypatch, f, x)
    assert _loop_of(program).count("(2 * ") <= doublings
    np.testing.assert_array_equal(grad, plain_grad)         # bit for bit, NaN where NaN
    np.testing.assert_array_equal(value, plain_value)
    # and as the reference interpreter (libm and NumPy's exp/sin differ in the last bit)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-13, atol=0)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)


def test_constant_times_doubled_value_is_one_multiplication():
    x = np.linspace(-2.0, 2.0, 5000)
    _, _, program = _generated(tg.value_and_grad(lambda x: np.sum(3.0 * x ** 2)), x)
    loop = _loop_of(program)
    assert "(2 * " not in loop and "c0 * f_s0[i]" in loop and program.scalars[0] == 6.0


def test_scalings_below_one_are_not_folded():
    # 0.5 * (2 * x) is x only while 2 * x does not overflow: kept as two products
    x = np.full(5000, 1.5e308)
    with np.errstate(all="ignore"):
        (value, grad), (ref_value, ref_grad), program = _generated(
            tg.value_and_grad(lambda x: np.sum(0.5 * x ** 2)), x)
    assert "0.5 * " in _loop_of(program)
    np.testing.assert_array_equal(grad, ref_grad)
    assert np.isinf(grad).all()


def test_additions_heavy_loop_computes_doublings_by_multiplication(monkeypatch):
    # seven additions, two products: both 2 * x read their 2 at run time (multiplies, not x + x)
    f = tg.value_and_grad(lambda x: np.sum((x + 1.0) ** 2 + (x - 3.0) ** 2 + x))
    x = np.linspace(-1.0, 1.0, 5000)
    (value, grad), (ref_value, ref_grad), program = _generated(f, x)
    (plain_value, plain_grad), doublings = _unfolded(monkeypatch, f, x)
    assert doublings == 2 and "(2 * " not in _loop_of(program)
    assert list(program.scalars) == [2.0, 2.0]
    np.testing.assert_array_equal(grad, plain_grad)
    np.testing.assert_array_equal(grad, ref_grad)
    assert value == plain_value


# ---------------------------------------------------------------------------------------------
# Generated array code on the fast path
# ---------------------------------------------------------------------------------------------

def test_generated_code_fast_path_enters_one_python_frame():
    f = tg.jit(tg.value_and_grad(lambda x, y: np.sum(np.sin(x) * y)))
    x, y = np.linspace(-1.0, 1.0, 5000), np.linspace(0.0, 2.0, 5000)
    f(x, y)
    f(x, y)
    assert hasattr(next(iter(f._fast_calls)), "source")       # generated code
    names = _python_calls(f, x, y)
    # the check, the workspace's arrays, then Numba's own frames: no call_arrays, argument
    # conversion or tree_unflatten
    assert names[:2] == ["__call__", "take"] and names.count("__call__") == 1
    assert not {"call_arrays", "_call", "tree_unflatten", "_build", "<listcomp>"} & set(names)
    value, grad = f(x, y)
    assert type(value) is np.ndarray and value.shape == ()
    np.testing.assert_allclose(value, np.sum(np.sin(x) * y), rtol=1e-12)
    np.testing.assert_array_equal(grad, np.cos(x) * y)


def test_generated_code_fast_path_results_stay_the_callers():
    # results come from the workspace's arrays: one still held is never handed out again
    f = tg.jit(lambda x: (x * 2.0, [x + 1.0, (x * x,)]))
    x = np.linspace(-1.0, 1.0, 5000)
    kept = [f(x + k) for k in range(6)]
    for k, (double, (plus, (square,))) in enumerate(kept):
        np.testing.assert_array_equal(double, (x + k) * 2.0)
        np.testing.assert_array_equal(plus, x + k + 1.0)
        np.testing.assert_array_equal(square, (x + k) * (x + k))
    assert f.traces == 1


def test_generated_code_fast_path_guards_and_argument_kinds():
    def f(x, s):
        return np.tanh(x) * s if np.sum(x) > 0 else np.exp(x) * s
    jitted = tg.jit(f)
    x = np.linspace(-1.0, 2.0, 5000)
    for value in (x, -x, x, -x):
        for s in (2.0, np.float64(3.0), np.array(4.0)):
            np.testing.assert_allclose(jitted(value, s), f(value, s), rtol=1e-13)
    x32 = x.astype(np.float32)
    want = jitted.tape(x32, 2.0).run(x32, 2.0)          # the reference interpreter
    for _ in range(3):
        out = jitted(x32, 2.0)
        assert out.dtype == want.dtype
        np.testing.assert_allclose(out, want, rtol=1e-6)


_CONSTANT = np.linspace(0.0, 1.0, 5000)


def test_generated_code_results_share_no_memory_with_arguments_constants_or_each_other():
    def f(x):
        y = x * 2.0
        return x, x.reshape(50, 100), x[10:20], y, y, y.reshape(100, 50), _CONSTANT, np.sum(x)
    jitted = tg.jit(f)
    x = np.linspace(-1.0, 1.0, 5000)
    jitted(x)                                       # the traced call: Python's own values
    for _ in range(3):
        out = jitted(x)
        arrays = [a for a in out if np.ndim(a)]
        assert not any(np.shares_memory(a, x) or np.shares_memory(a, _CONSTANT) for a in arrays)
        assert not any(np.shares_memory(a, b) for k, a in enumerate(arrays) for b in arrays[k + 1:])
        for a, want in zip(out, f(x)):
            np.testing.assert_allclose(a, want, rtol=0, atol=1e-9)   # the sum's order differs
        for a in arrays:
            a[...] = 99.0                           # the caller owns its results
    assert hasattr(next(iter(jitted._fast_calls)), "source")       # generated code
    np.testing.assert_array_equal(x, np.linspace(-1.0, 1.0, 5000))
    np.testing.assert_array_equal(_CONSTANT, np.linspace(0.0, 1.0, 5000))


CONSTANT = np.array([1.0, 2.0, 3.0])


@pytest.mark.parametrize("fun", [
    lambda x, y: x,                                   # an argument itself
    lambda x, y: (x, x.reshape(3), {"v": y[0]}),      # views of arguments, in a pytree
    lambda x, y: CONSTANT,                            # a captured array
    lambda x, y: (x * y[0], x * y[0]),
])
def test_first_call_results_share_no_memory_with_arguments_or_constants(fun):
    f = tg.jit(fun)
    x, y = np.arange(3.0), np.array([2.0, 5.0])
    for call in range(3):      # the tracing call, then the compiled ones
        leaves = tg.tape.tree_flatten(f(x, y), lambda leaf: True)[0]
        arrays = [leaf for leaf in leaves if isinstance(leaf, np.ndarray)]
        for held in (x, y, CONSTANT):
            assert not any(np.shares_memory(a, held) for a in arrays), call
        for i, a in enumerate(arrays):
            assert not any(np.shares_memory(a, b) for b in arrays[i + 1:]), call
