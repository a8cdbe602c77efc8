"""NumPy code as people write it, through tg.grad and tg.jit(tg.grad), checked by finite differences.

In the spirit of the large external NumPy gradient suites: every function is run over combinations
of shapes, axes and keywords; the gradient of a fixed random weighting of its result is compared
with central differences in float64, on the plain trace and on the compiled tape. Values are
compared with NumPy itself.
"""
import itertools

import numpy as np
import pytest

import tapegrad as tg

RNG = np.random.default_rng(7)


def R(*shape):
    return RNG.standard_normal(shape) if shape else float(RNG.standard_normal())


def _weights(out):
    rng = np.random.default_rng(abs(hash(np.shape(out))) % 2**32)
    return rng.standard_normal(np.shape(out))


def _fd(fun, args, i, eps=1e-6):
    x = np.array(args[i], dtype=float)
    g = np.zeros_like(x)
    for k in np.ndindex(*x.shape):
        for sign in (1, -1):
            y = x.copy()
            y[k] += sign * eps
            a = list(args)
            a[i] = y if np.ndim(args[i]) else float(y)
            g[k] += sign * fun(*a)
    return g / (2 * eps)


def check(f, *args, argnums=None, second=True, **kwargs):
    """grad and jit(grad) of <f(args), w> against finite differences; f's value against NumPy."""
    want = f(*args, **kwargs)
    w = _weights(want)

    def loss(*a):
        return np.sum(f(*a, **kwargs) * w)

    argnums = tuple(range(len(args))) if argnums is None else argnums
    np.testing.assert_allclose(tg.jit(lambda *a: f(*a, **kwargs))(*args), want, rtol=1e-12,
                               atol=1e-12)
    grads = [tg.grad(loss, argnums=argnums)(*args), tg.jit(tg.grad(loss, argnums=argnums))(*args)]
    for got in grads:
        for i, g in zip(argnums, got):
            np.testing.assert_allclose(g, _fd(loss, args, i), rtol=1e-5, atol=1e-6)
    if second:      # the gradient of the gradient, along a fixed direction
        v = [np.ones(np.shape(args[i])) for i in argnums]

        def inner(*a):
            return sum(np.sum(g * vi) for g, vi in zip(tg.grad(loss, argnums=argnums)(*a), v))
        for got in (tg.grad(inner, argnums=argnums)(*args),
                    tg.jit(tg.grad(inner, argnums=argnums))(*args)):
            for i, g in zip(argnums, got):
                np.testing.assert_allclose(g, _fd(inner, args, i, eps=1e-5), rtol=1e-4,
                                           atol=1e-5)


# ---- np.array of traced values (NumPy never dispatches np.array: an object array is lifted)

def test_array_of_traced_scalars_1d_2d_and_fanout():
    check(lambda x: np.array([x, x * 1.0, x + 2.5]), 3.0)
    check(lambda x: np.array([[x, x * 1.0, x + 2.5], [x ** 2, x, x / 2.0]]), 3.0)
    check(lambda x: (lambda a: a + a)(np.array([[x, x ** 2], [np.sin(x), 1.0]])), 0.7)


@pytest.mark.parametrize("shape", [(3,), (3, 2), (2, 1, 3)])
def test_array_of_traced_arrays(shape):
    check(lambda x: np.array([x, x]), R(*shape), second=False)
    check(lambda x: np.array([[2 * x, x + 1], [x, np.exp(x)]]), R(*shape), second=False)
    check(lambda x, y: np.asarray([x, y * x]) * 2.0, R(*shape), R(*shape), second=False)


def test_array_of_one_traced_value_is_differentiated_not_zero():
    # a 0-d object array as the result of grad: its gradient is 1, not silently 0
    assert tg.grad(lambda x: np.array(x))(3.0) == 1.0
    assert tg.jit(tg.grad(lambda x: np.array(x)))(3.0) == 1.0
    value, g = tg.value_and_grad(lambda x: np.asarray([x * x])[0])(3.0)
    assert (value, g) == (9.0, 6.0)
    # a jacobian whose result is an object array: every row, not zeros
    jac = tg.jacobian(lambda x: np.array([[x, x * 1.0, x + 2.5], [x ** 2, x, x / 2.0]]))(3.0)
    np.testing.assert_allclose(jac, [[1, 1, 1], [6, 1, 0.5]])


def test_array_mixing_traced_values_and_constants_keeps_numpy_dtype():
    f = lambda x: np.array([x, 2, 3.5])
    out = tg.jit(f)(np.float64(1.5))
    assert out.dtype == np.float64 and out.tolist() == [1.5, 2.0, 3.5]
    check(lambda x: np.array([[x[0], 1.0], [2.0, x[1]]]) @ np.array([x[1], x[0]]), R(2))


@pytest.mark.parametrize("shape", [(4,), (3, 2)])
def test_r_and_c_with_traced_values(shape):
    c = R(*shape)
    check(lambda x: np.r_[x], R(*shape), second=False)
    check(lambda x: np.r_[x, c, x], R(*shape), second=False)
    check(lambda x: np.c_[x, c, x], R(*shape), second=False)
    if len(shape) == 1:
        check(lambda x: np.r_[x, c, 1:4], R(*shape), second=False)


def test_append_and_full_with_traced_values():
    check(lambda a, b: np.append(a, b), [1.0, 2.0, 3.0], 4.0, argnums=(1,), second=False)
    g = tg.grad(lambda a, b: np.sum(np.append(a, b) ** 2), argnums=(0, 1))([1.0, 2.0], 4.0)
    np.testing.assert_allclose(np.array(g[0], dtype=float), [2.0, 4.0])
    assert g[1] == 8.0
    check(lambda x: np.full((2, 3), x) * np.arange(6).reshape(2, 3), 1.5)
    check(lambda a, x: np.full_like(a, x) * a, R(2, 3), 0.5, argnums=(0, 1))


def test_object_arrays_under_vmap_are_lifted_and_elsewhere_refused():
    f = lambda x: np.sum(tg.vmap(lambda r: np.array([r, r * r]))(x))
    x = R(2, 3)
    for g in (tg.grad(f)(x), tg.jit(tg.grad(f))(x)):
        np.testing.assert_allclose(g, 1 + 2 * x, rtol=1e-14)
    # a checkpointed function's result is not lifted: a clear error, not a constant (no gradient)
    with pytest.raises(TypeError, match="object array of traced values"):
        tg.grad(lambda x: np.sum(tg.checkpoint(lambda r: np.array([r, r]))(x)))(np.ones(3))


# ---- einsum: `...` and the interleaved form

@pytest.mark.parametrize("subscripts,shapes", [
    ("...ij,...jk->...ik", [(3, 2, 3), (3, 4)]),
    ("...ij,...jk->...ik", [(2, 1, 2, 3), (4, 3, 2)]),
    ("...,...->...", [(3, 4), (3, 4)]),
    ("...ij->...", [(2, 3, 4)]),
    ("ij...->...", [(2, 3, 4)]),
    ("i...j,j...k->...ik", [(2, 5, 3), (3, 5, 4)]),
    ("...", [(2, 3)]),
    ("ij...,jk...", [(2, 3, 1), (3, 4, 2)]),
    ("...ii->...i", [(2, 3, 3)]),
])
def test_einsum_ellipsis(subscripts, shapes):
    check(lambda *a: np.einsum(subscripts, *a), *[R(*s) for s in shapes], second=False)


def test_einsum_interleaved_operands_and_sublists():
    check(lambda a, b: np.einsum(a, [0, 1], b, [1, 2], [0, 2]), R(2, 3), R(3, 4), second=False)
    check(lambda a: np.einsum(a, [1, 0]), R(3, 4), second=False)
    check(lambda a, b: np.einsum(a, [Ellipsis, 0, 1], b, [Ellipsis, 1, 2]), R(2, 2, 3), R(3, 4),
          second=False)


# ---- axis keywords, stacking, cross, select, sinc

@pytest.mark.parametrize("fn,kw", [
    (np.moveaxis, {"source": 0, "destination": -1}),
    (np.moveaxis, {"source": (0, 1), "destination": (2, 0)}),
    (np.swapaxes, {"axis1": 0, "axis2": 2}),
    (np.rollaxis, {"axis": 2}),
    (np.rollaxis, {"axis": 2, "start": 1}),
])
def test_axis_keywords(fn, kw):
    check(lambda x: fn(x, **kw), R(2, 3, 4), second=False)


@pytest.mark.parametrize("shapes", [[(2,)], [(3,)], [(2, 2), (2, 2)], [(3,), (3, 2)]])
def test_column_stack_of_an_array_and_of_a_list(shapes):
    if len(shapes) == 1:        # column_stack iterates one array: its rows become columns
        check(lambda x: np.column_stack(x), R(*shapes[0]), second=False)
    else:
        check(lambda x, y: np.column_stack((x, y)), *[R(*s) for s in shapes], second=False)


@pytest.mark.parametrize("axisa,axisb,axisc", list(itertools.product([-1, 0, 1], repeat=3)))
def test_cross_every_axis(axisa, axisb, axisc):
    check(lambda a, b: np.cross(a, b, axisa=axisa, axisb=axisb, axisc=axisc), R(3, 3), R(3, 3),
          second=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")     # NumPy 2 deprecates 2-vectors
def test_cross_broadcast_axis_and_two_vectors():
    check(lambda a, b: np.cross(a, b, axis=0), R(3, 2), R(3, 1), second=False)
    check(lambda a, b: np.cross(a, b), R(4, 2), R(4, 2), second=False)
    check(lambda a, b: np.cross(a, b), R(4, 2), R(4, 3), second=False)
    check(lambda a, b: np.cross(a, b), R(4, 3), R(2), second=False)


@pytest.mark.parametrize("default", [0.0, 1.1])
def test_select_first_true_condition_wins(default):
    masks = [R(3, 4) > 0, R(3, 4) > 0, R(3, 4) > 0.5]
    check(lambda a, b, c: np.select(masks, [a, b, c], default=default), R(3, 4), R(3, 4),
          R(4), second=False)


def test_sinc_values_and_gradients():
    x = np.array([-2.5, -1.0, -0.3, 0.0, 0.4, 1.7])
    np.testing.assert_allclose(tg.jit(np.sinc)(x), np.sinc(x), rtol=1e-14, atol=1e-16)
    check(np.sinc, np.array([-2.5, -0.3, 0.4, 1.7]).reshape(2, 2))


# ---- reductions over one element, real-valued complex helpers

@pytest.mark.parametrize("fn", [np.std, np.var])
@pytest.mark.parametrize("shape,axis", [((), None), ((1,), None), ((1, 3), 0), ((2, 1, 3), 1),
                                        ((1, 1), (0, 1))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_spread_over_single_elements_has_zero_gradient(fn, shape, axis, keepdims):
    # std of one element is the constant 0: its gradient is 0 (sqrt's rule gave 0 * inf = NaN)
    x = np.asarray(R(*shape))
    for g in (tg.grad(lambda x: np.sum(fn(x, axis=axis, keepdims=keepdims)))(x),
              tg.jit(tg.grad(lambda x: np.sum(fn(x, axis=axis, keepdims=keepdims))))(x)):
        np.testing.assert_array_equal(g, np.zeros(shape))
    np.testing.assert_array_equal(tg.jit(lambda x: fn(x, axis=axis, keepdims=keepdims))(x),
                                  fn(x, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, True), (1, False), ((0, 1), True)])
def test_std_var_combinations(axis, keepdims, ddof):
    for fn in (np.std, np.var):
        check(lambda x: fn(x, axis=axis, keepdims=keepdims, ddof=ddof), R(3, 4), second=False)


def test_real_imag_conj_angle_of_real_values():
    x = R(2, 3)
    check(lambda x: np.real(x) * np.conj(x) + np.conjugate(x), x)
    check(lambda x: np.real_if_close(x) + np.imag(x) + np.angle(x), x, second=False)
    np.testing.assert_array_equal(tg.jit(lambda x: np.angle(x, deg=True))(x), np.angle(x, deg=True))


# ---- linear algebra

def test_eigvalsh_upper_triangle_and_eigh_upper_refused():
    a = R(4, 4)
    for uplo in ("L", "U"):
        check(lambda m: np.linalg.eigvalsh(m, UPLO=uplo), a + 4 * np.eye(4), second=False)
    with pytest.raises(TypeError, match="UPLO='L'"):
        tg.grad(lambda m: np.sum(np.linalg.eigh(m, "U")[1]))(a)


# ---- scipy.special's gamma family as compositions

def test_gamma_family_values_and_gradients():
    special = pytest.importorskip("scipy.special")
    x = np.array([-2.5, -1.5, -0.5, 0.3, 2.0, 4.5])
    edges = np.array([0.0, -1.0, -2.0, 1.0])
    with np.errstate(all="ignore"):
        for f in (special.gamma, special.rgamma, special.gammasgn):
            np.testing.assert_allclose(tg.jit(f)(x), f(x), rtol=1e-12)
            np.testing.assert_allclose(tg.jit(f)(edges), f(edges), rtol=1e-12)
    for f in (special.gamma, special.rgamma):
        check(f, x.reshape(2, 3))
    a, b = np.abs(R(2, 3)) + 0.5, np.abs(R(3)) + 0.5
    for f in (special.beta, special.betaln):
        np.testing.assert_allclose(tg.jit(f)(a, b), f(a, b), rtol=1e-12)
        check(f, a, b)


def test_allclose_is_a_guard_and_real_values_are_not_complex():
    def f(x):
        assert not np.iscomplexobj(x) and np.all(np.isreal(x)) and not np.any(np.iscomplex(x))
        return np.sum(x ** 2) if np.allclose(x, (x * 3.0) / 3.0) else np.sum(x)

    jitted = tg.jit(tg.grad(f))
    x = np.array([1.0, 2.0, 3.0])
    for g in (tg.grad(f)(x), jitted(x)):
        np.testing.assert_array_equal(g, 2 * x)
    # allclose is False here (NaN): the compiled tape's guard sends it down the other branch
    y = np.array([1.0, np.nan, 3.0])
    np.testing.assert_array_equal(jitted(y), np.ones(3))
    np.testing.assert_array_equal(jitted(x), 2 * x)


@pytest.mark.parametrize("equal_nan", [False, True])
def test_isclose_matches_numpy_at_special_values(equal_nan):
    a = np.array([1.0, np.inf, np.nan, 1e-9, -np.inf, 2.0, 0.0])
    b = np.array([1.0 + 1e-7, np.inf, np.nan, 0.0, np.inf, 2.1, -0.0])
    f = lambda a, b: np.isclose(a, b, equal_nan=equal_nan)
    np.testing.assert_array_equal(tg.jit(f)(a, b), f(a, b))
    np.testing.assert_array_equal(tg.jit(f)(a, b[:1]), f(a, b[:1]))


def test_complex_values_inside_are_refused_not_dropped():
    # the sweeps compute in real arithmetic: a complex intermediate would lose its imaginary
    # part (vjp gave sign(a) for d|a + 1j|/da); every transform refuses it, as grad does
    a = R(4)
    f = lambda a: np.sum(np.abs(a + 1j))
    for run in (lambda: tg.vjp(f, a)[1](1.0), lambda: tg.jvp(f, (a,), (a,)),
                lambda: tg.jacrev(lambda a: np.abs(a + 1j))(a), lambda: tg.grad(f)(a)):
        with pytest.raises(TypeError, match="complex"):
            run()
    for fn in (np.real, np.imag, np.conj, np.angle, np.isreal):
        with pytest.raises(TypeError, match="complex"):
            tg.grad(lambda a: np.sum(fn(a * (1 + 1j)) * 1.0))(a)


def _same_as_scipy(f, *args):
    with np.errstate(all="ignore"):
        want = f(*args)
        jitted = tg.jit(f)
        for got in (jitted(*args), jitted(*args)):      # traced, then compiled
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, equal_nan=True)
            assert got.dtype == want.dtype


def test_erfinv_erfcinv_values_tails_and_gradients():
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([np.linspace(-1, 1, 401), [1 - 1e-12, -1 + 1e-16, 1e-300, -0.0, 1.5,
                                                  -2.0, np.nan, np.inf]])
    _same_as_scipy(special.erfinv, x)
    y = np.concatenate([np.linspace(0, 2, 401), [1e-300, 1e-20, 2 - 1e-15, 3.0, -1.0, np.nan]])
    _same_as_scipy(special.erfcinv, y)
    p = np.array([0.0, 1e-300, 1e-10, 0.3, 0.5, 0.9, 1 - 1e-16, 1.0, 1.5, np.nan])
    _same_as_scipy(special.ndtri, p)
    check(special.erfinv, np.array([[-0.95, -0.4, 0.0], [0.3, 0.7, 0.99]]))
    check(special.erfcinv, np.array([[0.01, 0.4, 1.0], [1.3, 1.7, 1.99]]))
    check(special.ndtri, np.array([0.05, 0.5, 0.97]))


def test_entropy_family_and_xlogy_at_edges():
    special = pytest.importorskip("scipy.special")
    x = np.array([-1.0, 0.0, 0.5, np.inf, np.nan, 2.0, 0.0, 0.0, 3.0, 0.0])
    y = np.array([0.5, 0.0, -1.0, 2.0, 1.0, np.inf, np.nan, 3.0, 0.0, -1.0])
    _same_as_scipy(special.entr, x)
    _same_as_scipy(special.ndtr, np.concatenate([x, [-40.0, -5.0, 8.0]]))
    for f in (special.rel_entr, special.kl_div, special.xlogy, special.xlog1py):
        _same_as_scipy(f, x, y)
    a, b = np.abs(R(2, 3)) + 0.2, np.abs(R(3)) + 0.2
    for f in (special.rel_entr, special.kl_div, special.xlogy, special.xlog1py):
        check(f, a, b)
    check(special.entr, a)
    check(special.ndtr, R(2, 3))
    # smooth branches see only their own inputs: no NaN from the edges reaches a gradient
    g = tg.grad(lambda x: np.sum(special.entr(x) + special.rel_entr(x, 1.0)))(
        np.array([0.0, -1.0, 0.5]))
    assert np.isfinite(g[2]) and not np.isnan(g[:2]).any()


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool])
def test_casts_to_integers_and_booleans_have_no_gradient(dtype):
    # piecewise constant: the gradient is 0 (it went through the cast as if it were the identity)
    x = np.array([1.5, -2.3, 0.7])
    f = lambda x: np.sum(x.astype(dtype) * 2.0) + np.sum(np.sin(x))
    for g in (tg.grad(f)(x), tg.jit(tg.grad(f))(x)):
        np.testing.assert_allclose(g, np.cos(x), rtol=1e-15)
    np.testing.assert_allclose(tg.jvp(f, (x,), (np.ones(3),))[1], np.sum(np.cos(x)), rtol=1e-14)
    # a float cast keeps it
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(x.astype(np.float32) * 2.0))(x), 2.0)


def test_asarray_of_a_large_traced_array_warns_with_the_fix():
    f = lambda x: np.sum(np.asarray(x) ** 2)
    with pytest.warns(RuntimeWarning, match="one instruction per element.*np.stack"):
        g = tg.grad(f)(np.ones(1500))
    np.testing.assert_array_equal(g, 2.0)


def test_grad_of_a_boolean_result_is_refused():
    x = np.ones(3)
    for f in (lambda x: np.sum(x) > 0, lambda x: np.allclose(x, (x * 3.0) / 3.0)):
        for transform in (tg.grad, lambda f: tg.jit(tg.grad(f))):
            with pytest.raises(TypeError, match="returns a boolean"):
                transform(f)(x)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False)])
def test_nansum_nanmean_skip_nan_and_give_it_no_gradient(axis, keepdims):
    x = R(2, 3, 4)
    check(lambda x: np.nansum(x, axis=axis, keepdims=keepdims), x, second=False)
    check(lambda x: np.nanmean(x, axis=axis, keepdims=keepdims), x, second=False)
    x[0, 1, :] = np.nan
    x[1, 2, 3] = np.nan
    for fn in (np.nansum, np.nanmean):
        f = lambda x: np.sum(fn(x, axis=axis, keepdims=keepdims) ** 2)
        g = tg.jit(tg.grad(f))(x)
        assert np.all(g[np.isnan(x)] == 0) and np.all(np.isfinite(g))
        np.testing.assert_allclose(g, tg.grad(f)(x), rtol=1e-14)
        np.testing.assert_allclose(tg.jit(lambda x: fn(x, axis=axis, keepdims=keepdims))(x),
                                   fn(x, axis=axis, keepdims=keepdims), rtol=1e-14)


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_average_with_traced_weights(axis):
    w = np.abs(R(3)) + 0.2 if axis == 1 else np.abs(R(2, 3)) + 0.2
    check(lambda x, w: np.average(x, axis=axis, weights=w), R(2, 3), w, second=False)
    check(lambda x, w: np.average(x, axis=axis, weights=w, returned=True)[1], R(2, 3), w,
          argnums=(1,), second=False)
    check(lambda x: np.average(x, axis=axis), R(2, 3), second=False)


def test_i0_by_numpys_own_steps():
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([np.linspace(-30, 30, 121), [0.0, -0.0, 8.0, 700.0, np.inf, np.nan]])
    for f in (np.i0, special.i0, special.i0e):
        with np.errstate(all="ignore"):
            jitted, want = tg.jit(f), f(x)
            for got in (jitted(x), jitted(x)):
                np.testing.assert_allclose(got, want, rtol=1e-15, equal_nan=True)
    xs = np.array([[-5.0, -0.3, 0.4], [2.0, 9.0, 11.0]])
    for f in (np.i0, special.i0e):
        check(f, xs)
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(np.i0(x)))(xs), special.i1(xs), rtol=1e-14)


def test_i1_as_the_derivative_of_numpys_i0_series():
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([np.linspace(-30, 30, 241), [0.0, 1e-10, -1e-300, 1.0, -1.0, 8.0, 700.0,
                                                    np.inf, -np.inf, np.nan]])
    for f in (special.i1, special.i1e):
        with np.errstate(all="ignore"):
            jitted, want = tg.jit(f), f(x)
            for got in (jitted(x), jitted(x)):
                np.testing.assert_allclose(got, want, rtol=5e-15, atol=0, equal_nan=True)
    xs = np.array([[-5.0, -0.3, 0.4], [2.0, 9.0, 11.0]])
    for f in (special.i1, special.i1e):
        check(f, xs)
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(special.i1(x)))(xs),
                               special.i0(xs) - special.i1(xs) / xs, rtol=1e-14)


@pytest.mark.parametrize("order", [0, 1, 2, -3, 10])
def test_bessel_j_of_integer_order(order):
    special = pytest.importorskip("scipy.special")
    x = np.concatenate([np.linspace(-200, 200, 2001), [0.0, -0.0, 25.0, -25.0, 1e4, np.nan]])
    f = lambda x: special.jv(order, x)
    jitted = tg.jit(f)
    for got in (jitted(x), jitted(x)):
        np.testing.assert_allclose(got, f(x), rtol=0, atol=2e-14, equal_nan=True)
    xs = np.array([[-30.0, -3.0, 0.0], [0.5, 10.0, 60.0]])
    check(f, xs)
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(f(x)))(xs), special.jvp(order, xs),
                               rtol=0, atol=1e-14)


def test_bessel_j0_j1_and_refused_orders():
    special = pytest.importorskip("scipy.special")
    x = np.linspace(-40, 40, 801)
    for f in (special.j0, special.j1):
        np.testing.assert_allclose(tg.jit(f)(x), f(x), rtol=0, atol=2e-15)
    check(lambda x: special.jv(np.array([0, 1, 2]), x), np.array([0.3, -4.0, 27.0]))
    for order in (0.5, 11):
        with pytest.raises(TypeError, match="constant integer orders"):
            tg.grad(lambda x: np.sum(special.jv(order, x)))(x)
    with pytest.raises(TypeError, match="constant integer orders"):
        tg.grad(lambda v: np.sum(special.jv(v, 2.0)))(1.0)


def test_classes_as_arguments_are_static():
    # a dtype or a kind passed as an argument selects the tape; it is not traced
    f = lambda x, kind: np.sum(x.astype(kind) * 2.0)
    jitted = tg.jit(tg.grad(f))
    for kind, want in ((np.float64, 2.0), (np.int64, 0.0), (np.float32, 2.0), (np.float64, 2.0)):
        np.testing.assert_array_equal(jitted(np.ones(2), kind), want)
        np.testing.assert_array_equal(tg.grad(f)(np.ones(2), kind), want)
    g = lambda x, kinds: np.sum(x) if isinstance(x, kinds) else 2 * np.sum(np.asarray(x))
    assert [float(v) for v in tg.jit(tg.grad(g))([1.0, 2.0], (tuple, list))] == [1.0, 1.0]
