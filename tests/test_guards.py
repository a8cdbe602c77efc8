"""Guards: branches on traced values are checked on every call; untraceable code is refused."""
import math

import numpy as np
import pytest

import tapegrad as tg
from tape_faces import assert_close
from tapegrad.trace import TraceError


def piecewise(x):
    if x.sum() > 0:
        return np.sum(x ** 2)
    return np.sum(np.sin(x))


def test_jitted_branches_are_right_every_time():
    jf = tg.jit(tg.value_and_grad(piecewise))
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.standard_normal(3)
        value, grad = jf(x)
        expected = tg.value_and_grad(piecewise)(x)
        assert_close(value, expected[0])
        assert_close(grad, expected[1])
    assert jf.traces == 2


def test_seed_while_loop():
    """The tutorial's loop: while y.norm() < 1000: y = y * 2, jitted, on inputs of any size."""
    def f(x):
        y = x * 2
        while y.norm() < 1000:
            y = y * 2
        return y
    def doublings(x):
        y, factor = x * 2, 2.0
        while np.linalg.norm(y) < 1000:
            y, factor = y * 2, factor * 2
        return factor
    jf = tg.jit(f)
    jg = tg.jit(tg.grad(lambda x: f(x).sum()))
    for scale in (1.0, 0.01, 1.0, 300.0, 0.01, 1e-4):
        x = np.array([0.3, -0.5, 0.8]) * scale
        assert_close(jf(x), x * doublings(x))
        assert_close(jg(x), np.full(3, doublings(x)))


def test_and_or_and_comparisons_record_guards():
    def f(x, y):
        if x > 0 and y < 1 or x == y:
            return x * y
        return x - y
    jf = tg.jit(f)
    for x, y in [(1.0, 0.5), (-1.0, 0.5), (1.0, 2.0), (2.0, 2.0), (1.0, 0.5)]:
        assert_close(jf(np.array(x), np.array(y)), f(x, y))


def test_compiled_program_reports_failed_guard():
    tape = tg.make_tape(piecewise)(np.ones(3))
    from tapegrad_jit import cpu
    program = cpu.compile(tape)
    ok, value = program([np.ones(3)])
    assert ok and np.isclose(value, 3.0)
    ok, value = program([-np.ones(3)])
    assert not ok and value is None


def test_math_functions_are_refused_with_the_line():
    def f(x):
        return math.sin(x)
    with pytest.raises(TraceError) as err:
        tg.grad(f)(np.array(0.5))
    message = str(err.value)
    assert "math" in message and "np.sin" in message
    assert "test_guards.py" in message and "return math.sin(x)" in message


def test_float_is_refused():
    with pytest.raises(TraceError, match="float"):
        tg.grad(lambda x: float(x) * 2.0)(np.array(0.5))


def test_item_feeding_arithmetic_is_refused():
    def f(x):
        return x * x.item()
    with pytest.raises(TraceError) as err:
        tg.grad(f)(np.array(0.5))
    assert ".item()" in str(err.value) and "return x * x.item()" in str(err.value)


def test_item_in_a_comparison_is_a_guard():
    def f(x):
        if x.item() > 0:
            return x * 2.0
        return x * 3.0
    jf = tg.jit(tg.grad(f))
    assert_close(jf(np.array(1.0)), 2.0)
    assert_close(jf(np.array(-1.0)), 3.0)
    assert_close(jf(np.array(1.0)), 2.0)


def test_printing_a_tracer_is_allowed():
    def f(x):
        text = f"{x.sum():.2f}"
        assert text == "3.00"
        return x.sum()
    assert_close(tg.grad(f)(np.ones(3)), np.ones(3))


def test_data_dependent_shapes_are_refused():
    with pytest.raises(TraceError, match="np.where"):
        tg.grad(lambda x: x[x > 0].sum())(np.array([1.0, -1.0]))
