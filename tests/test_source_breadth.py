"""The source face on the breadth of NumPy (issue 10): every elementwise function of the NumPy table
(tapegrad/numpy_api.py), `%`, helpers whose parameter names are the caller's, Python's int powers.

Gradients are checked against central finite differences in float64, with jit=False (Python) and
jit=True (Numba) alike."""
import math

import numpy as np
import pytest

from tapegrad import numpy_api, source

try:
    import numba  # noqa: F401
    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False
JIT = [False, pytest.param(True, marks=pytest.mark.skipif(not HAVE_NUMBA, reason="needs numba"))]


def finite_differences(f, args, eps=1e-6):
    grads = []
    for k, a in enumerate(args):
        a = np.asarray(a, dtype=np.float64)
        g = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            up, down = a.copy(), a.copy()
            up[i] += eps
            down[i] -= eps
            hi = f(*args[:k], up if a.ndim else float(up), *args[k + 1:])
            lo = f(*args[:k], down if a.ndim else float(down), *args[k + 1:])
            g[i] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def check(f, *args, jit=False, rtol=1e-6, atol=1e-8):
    argnums = tuple(range(len(args)))
    grads = source.grad(f, argnums=argnums, jit=jit)(*args)
    for g, e in zip(grads, finite_differences(f, args)):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)
    return grads


# one scalar function per new elementwise function, in NumPy's and math's spellings, inside the
# domains and off the jumps of remainder/fmod
def f_np_trig(x):
    return np.arcsin(x / 3) + np.arccos(x / 4) * np.arctan(x) + np.sinh(x) - np.cosh(x / 2)


def f_np_hyperbolic_inverse(x):
    return np.arcsinh(x) * np.arccosh(x + 1) + np.arctanh(x / 3)


def f_np_bases(x):
    return np.log2(x) + np.log10(x) * np.exp2(x) + np.cbrt(x)


def f_np_binary(x, y):
    return np.arctan2(y, x) + np.hypot(x, y) * np.fmax(x, y) - np.fmin(x, y) ** 2


def f_math(x, y):
    return (math.asin(x / 3) + math.acos(x / 4) + math.atan(x) + math.sinh(x) + math.cosh(y)
            + math.asinh(x) + math.acosh(y + 1) + math.atanh(x / 2) + math.log2(y)
            + math.log10(y) + math.atan2(x, y) + math.hypot(x, y))


def f_mod(x, y):
    return x % y + np.fmod(x, y) * np.remainder(y, 0.7) + math.fmod(x, 0.4)


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("f, args", [
    (f_np_trig, (0.6,)), (f_np_trig, (-1.3,)), (f_np_hyperbolic_inverse, (0.4,)),
    (f_np_bases, (1.7,)), (f_np_binary, (0.8, -1.1)), (f_np_binary, (-0.5, 0.3)),
    (f_math, (0.5, 1.3)), (f_mod, (2.3, 0.9)), (f_mod, (-2.3, 0.9)), (f_mod, (2.3, -0.9)),
], ids=lambda v: getattr(v, "__name__", None))
def test_new_functions_match_finite_differences(f, args, jit):
    check(f, *args, jit=jit)


def f_arrays(x, y):
    return np.sum(np.arcsinh(x) * np.fmax(x, y) + np.hypot(x, y) + np.arctan2(x, y) + x % 0.7)


@pytest.mark.parametrize("jit", JIT)
def test_new_functions_on_arrays_with_broadcasting(jit):
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 2.0, (3, 4))
    y = rng.uniform(-2.0, -0.1, (4,))
    x = np.where(np.abs(x % 0.7 - 0.35) > 0.3, x + 0.1, x)  # off the jumps of x % 0.7
    check(f_arrays, x, y, jit=jit)


@pytest.mark.parametrize("jit", JIT)
def test_fmax_fmin_ignore_nan(jit):
    def f(x, y):
        return np.fmax(x, y) + 2 * np.fmin(x, y)

    gx, gy = source.grad(f, argnums=(0, 1), jit=jit)(np.nan, 1.5)
    assert (gx, gy) == (0.0, 3.0)  # NaN takes no gradient: the other argument is the result
    gx, gy = source.grad(f, argnums=(0, 1), jit=jit)(1.5, 1.5)
    assert (gx, gy) == (3.0, 0.0)  # ties: the first argument, as PyTorch's FmaxBackward0


def mul(a, b):
    return a * b


def caller_shares_parameter_name(a):
    b = mul(a, a)
    return b


def caller_shares_both_names(b, a):
    a = mul(b, a)
    return mul(a, b)


@pytest.mark.parametrize("jit", JIT)
def test_helper_parameter_named_as_callers_variable(jit):
    # was: "could not work out the kind of b" (the callee's b was taken for the caller's)
    assert source.grad(caller_shares_parameter_name, jit=jit)(1.5) == 3.0
    grads = source.grad(caller_shares_both_names, argnums=(0, 1), jit=jit)(1.5, 2.0)
    assert grads == pytest.approx((2 * 1.5 * 2.0, 1.5 ** 2))


def int_power(x):
    n, m = 2, -2
    return x * n ** m + x * np.power(n, m + 4)


def int_power_of_variable_exponent(x, k):
    return x * 3 ** (k - 3)


@pytest.mark.parametrize("jit", JIT)
def test_int_to_negative_int_power_is_a_float_as_in_python(jit):
    # Numba computes 2 ** -2 as the integer 0 where Python gives 0.25; both modes give 0.25
    assert source.grad(int_power, jit=jit)(1.5) == pytest.approx(0.25 + 4)
    value, _ = source.value_and_grad(int_power_of_variable_exponent, jit=jit)(2.0, 1)
    assert value == pytest.approx(2.0 / 9)


def test_every_table_function_is_known_to_the_source_face():
    from tapegrad.source import table
    for fn in numpy_api.source_elementwise():
        assert fn in table.CALLS, fn


def test_unknown_numpy_function_is_refused_with_its_line():
    def f(x):
        return np.spacing(x)

    with pytest.raises(source.TransformError, match="spacing"):
        source.grad(f)(1.0)


# ---------------------------------------------------------------------------------------------
# Whole-array functions, packing values into arrays, np.newaxis, helpers of other modules
# ---------------------------------------------------------------------------------------------

A = np.array([[2.0, 1.0, 0.3], [0.5, 3.0, -0.4], [0.1, 0.2, 1.5]])


def f_det(a):
    return np.linalg.det(a) * 2.0


def f_inv(a):
    return np.sum(np.linalg.inv(a) * np.arange(9.0).reshape(3, 3))


def f_det_of_product(a):
    return np.linalg.det(a @ a.T + np.linalg.inv(a))


@pytest.mark.parametrize("jit", JIT)
@pytest.mark.parametrize("f", [f_det, f_inv, f_det_of_product], ids=lambda f: f.__name__)
def test_linalg_det_and_inv(f, jit):
    check(f, A, jit=jit, rtol=1e-6, atol=1e-7)


def f_atleast(x):
    return np.sum(np.atleast_2d(x) * np.arange(1.0, 5.0)) + np.sum(np.atleast_3d(x) ** 2)


def f_atleast_scalar(x):
    return np.sum(np.atleast_1d(x * 2.0)) + np.sum(np.atleast_2d(x) ** 2)


@pytest.mark.parametrize("jit", JIT)
def test_atleast_nd(jit):
    check(f_atleast, np.array([1.5, 0.5, -2.0, 1.0]), jit=jit)


def test_atleast_nd_of_scalars():
    check(f_atleast_scalar, 1.5)
    with pytest.raises(source.TransformError, match="atleast_1d"):  # Numba: arrays only
        source.grad(f_atleast_scalar, jit=True)(1.5)


def f_newaxis(x):
    return np.sum(x[:, np.newaxis] * x[np.newaxis, :] * np.arange(4.0)) + np.sum(x[None] ** 3)


@pytest.mark.parametrize("jit", JIT)
def test_np_newaxis(jit):
    check(f_newaxis, np.array([1.5, 0.5, -2.0, 1.0]), jit=jit)


def f_np_array(x):
    v = np.array([x[0] * x[1], x[1] ** 2, x[0]])
    return np.sum(v * np.array([1.0, 2.0, 3.0])) + np.dot(v, v)


def f_list_literal(x, y):
    v = [x * y, y, x]
    return v[0] + 2.0 * v[1] * v[2] + np.sum(np.array(v) ** 2)


def f_array_of_arrays(x):
    m = np.array([x, x * 2.0, np.sin(x)])
    return np.sum(m @ x)


@pytest.mark.parametrize("jit", JIT)
def test_np_array_and_list_literals(jit):
    check(f_np_array, np.array([1.5, 0.5]), jit=jit)
    check(f_list_literal, 1.5, -0.7, jit=jit)


def test_np_array_of_arrays():
    check(f_array_of_arrays, np.array([1.5, 0.5, -0.3]))


def list_arithmetic(x):
    v = [x, 2.0]
    return np.sum(np.array(v * 2))


def test_list_arithmetic_is_refused_not_taken_elementwise():
    with pytest.raises(source.TransformError, match=r"np\.array\(\[\.\.\.\]\)"):
        source.grad(list_arithmetic)(1.0)


HELPERS = '''
import numpy as np


def energy(v, k):
    return 0.5 * k * np.sum(v * v)


def scale(a, b):
    return a * b
'''


@pytest.mark.parametrize("jit", JIT)
def test_helpers_of_other_modules_are_inlined(tmp_path, monkeypatch, jit):
    (tmp_path / "tg_breadth_helpers.py").write_text(HELPERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import tg_breadth_helpers as helpers

    def f(x):
        b = helpers.scale(x[0], x[1])
        return helpers.energy(x, 3.0) + b

    x = np.array([1.5, -0.5, 2.0])
    check(f, x, jit=jit)
    df = source.grad(f, jit=jit)
    df(x)
    code = [line for line in df.source.splitlines() if not line.strip().startswith("#")]
    assert not [line for line in code if "helpers." in line]  # inlined: no call left


# ---------------------------------------------------------------------------------------------
# Tuple, list and dict arguments (pytrees), tuples of ints as constants
# ---------------------------------------------------------------------------------------------

def f_params(params, x):
    w, b = params["layer"]
    y = np.tanh(w @ x + b)
    return np.sum(y * y) * params["scale"] + len(params["layer"])


def f_tuple_pair(p):
    a, b = p
    return a * np.sin(b) + p[0] ** 2


def f_shape(x, shape, axes):
    return np.sum(np.transpose(np.reshape(x, shape), axes)[0] ** 2)


@pytest.mark.parametrize("jit", JIT)
def test_structured_arguments_give_gradients_in_their_structure(jit):
    rng = np.random.default_rng(3)
    w, b, x = rng.standard_normal((2, 3)), rng.standard_normal(2), rng.standard_normal(3)
    params = {"layer": (w, b), "scale": 1.5}
    value, grads = source.value_and_grad(f_params, jit=jit)(params, x)
    assert value == pytest.approx(f_params(params, x))
    assert set(grads) == {"layer", "scale"} and isinstance(grads["layer"], tuple)
    flat = lambda w, b, s: f_params({"layer": (w, b), "scale": s}, x)  # noqa: E731
    expected = finite_differences(flat, (w, b, np.asarray(1.5)))
    for got, e in zip((grads["layer"][0], grads["layer"][1], grads["scale"]), expected):
        np.testing.assert_allclose(got, e, rtol=1e-6, atol=1e-8)
    # a list comes back as a list, a tuple as a tuple; both argnums at once
    g = source.grad(f_tuple_pair, jit=jit)([1.5, 0.3])
    assert isinstance(g, list) and g == pytest.approx(
        [np.sin(0.3) + 3.0, 1.5 * np.cos(0.3)])
    g = source.grad(f_tuple_pair, jit=jit)((1.5, 0.3))
    assert isinstance(g, tuple)


@pytest.mark.parametrize("jit", JIT)
def test_tuples_of_ints_are_constants(jit):
    x = np.arange(6.0) * 0.5 + 0.25
    df = source.grad(f_shape, jit=jit)
    for shape, axes in (((2, 3), (1, 0)), ((3, 2), (1, 0)), ((3, 2), (0, 1))):
        # each constant is emitted on its own: never a stale result of another
        expected = finite_differences(lambda x: f_shape(x, shape, axes), (x,))[0]
        np.testing.assert_allclose(df(x, shape, axes), expected, rtol=1e-6, atol=1e-8)
        assert f"f_shape(a0, {shape}, {axes})" in df.source  # the call it was emitted for


def f_tuple_misuse(p):
    return np.sum(p * 2.0)


def test_a_tuple_used_as_an_array_is_refused_with_its_line():
    with pytest.raises(source.TransformError, match=r"`p` is a tuple or dict") as info:
        source.grad(f_tuple_misuse)((1.0, 2.0))
    assert info.value.lineno == f_tuple_misuse.__code__.co_firstlineno + 1


def f_erfc(x):
    return math.erfc(x) * np.exp2(x) + math.erf(x / 2)


def f_lgamma(x):
    return math.lgamma(x)


@pytest.mark.parametrize("jit", JIT)
def test_erfc_and_refusals_that_say_what_to_use(jit):
    check(f_erfc, 0.7, jit=jit)
    with pytest.raises(source.TransformError, match=r"math\.lgamma.*traced face") as info:
        source.grad(f_lgamma, jit=jit)(1.5)
    assert info.value.lineno == f_lgamma.__code__.co_firstlineno + 1
