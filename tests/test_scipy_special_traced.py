"""scipy.special's Python functions (logsumexp, softmax, log_softmax) on traced values: scipy's
values and edge cases, gradients against finite differences, and scipy untouched otherwise."""

import numpy as np
import pytest

import tapegrad as tg
from tape_faces import central_differences as _differences

sp = pytest.importorskip("scipy.special")
from tapegrad import scipy_special  # noqa: E402

RNG = np.random.default_rng(7)
SHAPES_AND_AXES = [((5,), None), ((5,), 0), ((5,), -1), ((3, 4), None), ((3, 4), 0), ((3, 4), 1),
                   ((3, 4), (0, 1)), ((2, 3, 4), 1), ((2, 3, 4), (0, 2)), ((2, 1, 4), -1)]


def _scipy(name):
    return getattr(sp, name).__tapegrad_wraps__


@pytest.mark.parametrize("shape, axis", SHAPES_AND_AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_values_and_gradients(shape, axis, keepdims):
    x = RNG.normal(size=shape) * 3
    expected = _scipy("logsumexp")(x, axis=axis, keepdims=keepdims)
    weights = RNG.normal(size=np.shape(expected))

    def loss(v):
        return np.sum(weights * sp.logsumexp(v, axis=axis, keepdims=keepdims))

    value, gradient = tg.value_and_grad(loss)(x)
    assert np.shape(scipy_special.logsumexp(x, axis=axis, keepdims=keepdims)) == np.shape(expected)
    np.testing.assert_allclose(value, np.sum(weights * expected), rtol=1e-12)
    np.testing.assert_allclose(gradient, _differences(loss, x), atol=1e-6)
    np.testing.assert_allclose(tg.jit(tg.grad(loss))(x), gradient, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, axis", SHAPES_AND_AXES)
def test_softmax_and_log_softmax_values_and_gradients(name, shape, axis):
    x = RNG.normal(size=shape) * 3
    weights = np.sin(np.arange(x.size).reshape(shape))

    def loss(v):
        return np.sum(weights * getattr(sp, name)(v, axis=axis))

    np.testing.assert_allclose(getattr(scipy_special, name)(x, axis=axis),
                               _scipy(name)(x, axis=axis), rtol=1e-12, atol=1e-15)
    gradient = tg.grad(loss)(x)
    np.testing.assert_allclose(gradient, _differences(loss, x), atol=1e-6)
    np.testing.assert_allclose(tg.jit(tg.grad(loss))(x), gradient, rtol=1e-12, atol=1e-14)


def test_logsumexp_weights_and_sign():
    x = RNG.normal(size=6)
    b = np.array([1.0, -2.0, 0.0, 3.0, 0.5, 1.0])
    x[2] = np.inf                                   # a zero weight drops even an infinite entry
    out, sign = scipy_special.logsumexp(x, b=b, return_sign=True)
    expected_out, expected_sign = _scipy("logsumexp")(x, b=b, return_sign=True)
    np.testing.assert_allclose([out, sign], [expected_out, expected_sign], rtol=1e-12)
    finite = np.where(np.isfinite(x), x, 0.0)
    gradient = tg.grad(lambda v: sp.logsumexp(v, b=b))(finite)
    np.testing.assert_allclose(gradient, _differences(lambda v: _scipy("logsumexp")(v, b=b), finite),
                               atol=1e-6)
    assert gradient[2] == 0.0
    with np.errstate(invalid="ignore"):                 # log of a negative sum: NaN, as scipy
        assert np.isnan(scipy_special.logsumexp(np.zeros(3), b=-np.ones(3)))


@pytest.mark.parametrize("edge", [[-np.inf, -np.inf], [-np.inf, 0.0], [np.inf, 1.0], [np.nan, 1.0],
                                  [1000.0, 1000.0], [-1000.0, 3.0]])
def test_edge_values_follow_scipy(edge):
    x = np.array(edge)
    for name in ("logsumexp", "softmax", "log_softmax"):
        np.testing.assert_array_equal(np.isnan(getattr(scipy_special, name)(x)),
                                      np.isnan(_scipy(name)(x)))
        np.testing.assert_allclose(getattr(scipy_special, name)(x), _scipy(name)(x), rtol=1e-12)


def test_untraced_calls_are_scipys_own():
    x = RNG.normal(size=(3, 4))
    assert sp.logsumexp.__wrapped__ is _scipy("logsumexp")
    result = sp.logsumexp(x, axis=1)
    np.testing.assert_array_equal(result, _scipy("logsumexp")(x, axis=1))
    assert type(sp.logsumexp(x)) is type(_scipy("logsumexp")(x))
