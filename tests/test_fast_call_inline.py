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
