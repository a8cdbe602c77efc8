"""tg.jit objects called from a user's @numba.njit code (issue 12): optimisers and samplers whose
outer loop runs in nopython mode."""
import numpy as np
import pytest

import tapegrad as tg

numba = pytest.importorskip("numba")
from numba.core.errors import TypingError  # noqa: E402


def quadratic(x):
    return np.sum((x - 1.0) ** 2) + 0.5 * np.sum(x[1:] * x[:-1])


def test_gradient_descent_in_nopython_code():
    g = tg.jit(tg.grad(quadratic))
    x0 = np.linspace(-1.0, 1.0, 6)
    g(x0)                                   # traced from Python once

    @numba.njit
    def descend(x, steps, rate):
        for _ in range(steps):
            x = x - rate * g(x)
        return x

    expected = x0.copy()
    for _ in range(50):
        expected = expected - 0.1 * g(expected)
    np.testing.assert_allclose(descend(x0, 50, 0.1), expected, rtol=1e-13)


def test_value_and_grad_of_floats_returns_a_tuple_of_gradients():
    vg = tg.jit(tg.value_and_grad(lambda a, b: a * np.sin(b) + b ** 2, argnums=(0, 1)))
    vg(0.3, 0.7)

    @numba.njit
    def combine(a, b):
        value, (da, db) = vg(a, b)
        return value, da, db

    value, da, db = combine(1.5, 2.0)
    np.testing.assert_allclose([value, da, db],
                               [1.5 * np.sin(2.0) + 4.0, np.sin(2.0), 1.5 * np.cos(2.0) + 4.0],
                               rtol=1e-14)


def test_leapfrog_step_in_nopython_code():
    def log_density(q):
        return -0.5 * np.sum(q * q) - 0.1 * np.sum(q ** 4)

    grad_log_p = tg.jit(tg.grad(log_density))
    q0, p0 = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, -0.5])
    grad_log_p(q0)

    @numba.njit
    def leapfrog(q, p, eps, steps):
        p = p + 0.5 * eps * grad_log_p(q)
        for k in range(steps):
            q = q + eps * p
            if k != steps - 1:
                p = p + eps * grad_log_p(q)
        p = p + 0.5 * eps * grad_log_p(q)
        return q, p

    q, p = leapfrog(q0, p0, 0.05, 20)
    q_ref, p_ref = leapfrog.py_func(q0, p0, 0.05, 20)
    np.testing.assert_allclose(q, q_ref, rtol=1e-13)
    np.testing.assert_allclose(p, p_ref, rtol=1e-13)
    energy = lambda q, p: -log_density(q) + 0.5 * np.sum(p * p)   # noqa: E731
    assert abs(energy(q, p) - energy(q0, p0)) < 1e-2            # leapfrog nearly conserves it


def branchy(x):
    if np.sum(x) > 0:
        return np.sum(x ** 2)
    return np.sum(-x)


def test_a_guard_failing_inside_nopython_code_names_its_line():
    g = tg.jit(tg.grad(branchy))
    g(np.ones(3))

    @numba.njit
    def call(x):
        return g(x)

    np.testing.assert_allclose(call(np.ones(3)), 2.0 * np.ones(3))
    with pytest.raises(RuntimeError, match=r"test_njit_callable.py:\d+: if np.sum\(x\) > 0.*"
                                           r"call the function from Python to retrace"):
        call(-np.ones(3))
    np.testing.assert_allclose(g(-np.ones(3)), -np.ones(3))   # from Python: retraced


def test_every_branch_traced_from_python_runs_inside_nopython_code():
    g = tg.jit(tg.grad(branchy))
    g(np.ones(3))
    g(-np.ones(3))

    @numba.njit
    def call(x):
        return g(x)

    for x in (np.array([1.0, 2.0, -0.5]), np.array([-1.0, 0.5, -2.0])):
        np.testing.assert_allclose(call(x), g(x), rtol=1e-15)


def test_another_shape_inside_nopython_code_is_refused():
    g = tg.jit(tg.grad(quadratic))
    g(np.ones(4))

    @numba.njit
    def call(x):
        return g(x)

    with pytest.raises(ValueError, match="call the function from Python to trace it"):
        call(np.ones(5))


def test_an_untraced_function_says_to_call_it_from_python_first():
    g = tg.jit(tg.grad(quadratic))

    @numba.njit
    def call(x):
        return g(x)

    with pytest.raises((TypeError, TypingError), match="once from Python"):
        call(np.ones(3))


def test_source_face_gradients_inside_nopython_code():
    from tapegrad import source

    def rosen(x):
        s = 0.0
        for i in range(x.shape[0] - 1):
            s += 100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2
        return s

    dg = source.grad(rosen, jit=True)
    vg = source.value_and_grad(lambda a, b: a * np.sin(b) + b ** 2, argnums=(0, 1), jit=True)
    x0 = np.array([-1.2, 1.0, 0.5])
    dg(x0)
    vg(0.5, 0.25)

    @numba.njit
    def descend(x, steps):
        for _ in range(steps):
            x = x - 1e-4 * dg(x)
        return x

    @numba.njit
    def combine(a, b):
        value, (da, db) = vg(a, b)
        return value + da + db

    expected = x0.copy()
    for _ in range(30):
        expected = expected - 1e-4 * dg(expected)
    np.testing.assert_allclose(descend(x0, 30), expected, rtol=1e-13)
    value, (da, db) = vg(1.5, 2.0)
    np.testing.assert_allclose(combine(1.5, 2.0), value + da + db, rtol=1e-14)


def test_source_face_without_jit_is_refused_in_nopython_code():
    from tapegrad import source
    dg = source.grad(quadratic)
    dg(np.ones(3))

    @numba.njit
    def call(x):
        return dg(x)

    with pytest.raises((TypeError, TypingError), match="jit=True"):
        call(np.ones(3))
