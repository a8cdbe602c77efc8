"""jit's per-call fast path written as one function: the signature check, the copies in, the
compiled sweep and the result tree with no Python call in between (issue 14)."""
import sys

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
