"""scipy.stats' distributions (and scipy.special polygamma/multigammaln) on traced values: scipy's
values, gradients against central differences on grad and jit(grad), broadcasting, edge values,
untraced calls left to scipy, and both import orders."""
import subprocess
import sys

import numpy as np
import pytest

import tapegrad as tg

stats = pytest.importorskip("scipy.stats")
import scipy.special as sp  # noqa: E402

from tapegrad import scipy_stats  # noqa: E402

RNG = np.random.default_rng(11)
TABLES = scipy_stats._tables()


def _central(f, args, argnum, eps=1e-6):
    """d sum(f(*args)) / d args[argnum], one coordinate at a time."""
    base = np.asarray(args[argnum], dtype=float)
    flat = np.zeros(base.size)
    for i in range(base.size):
        step = np.zeros(base.size)
        step[i] = eps
        up, down = list(args), list(args)
        up[argnum] = base + step.reshape(base.shape)
        down[argnum] = base - step.reshape(base.shape)
        flat[i] = (np.sum(f(*up)) - np.sum(f(*down))) / (2 * eps)
    return flat.reshape(base.shape)


def _check(method, args, argnums, rtol=1e-12, **kwargs):
    """Our traced value equals scipy's; the gradient of each argnum matches differences, and
    jit(grad) matches grad."""
    original = method.__tapegrad_wraps__
    expected = original(*args, **kwargs)
    weights = np.cos(np.arange(np.size(expected)) + 0.5).reshape(np.shape(expected))

    def loss(*a):
        return np.sum(weights * method(*a, **kwargs))

    for argnum in argnums:
        value, gradient = tg.value_and_grad(loss, argnums=argnum)(*args)
        np.testing.assert_allclose(value, np.sum(weights * expected), rtol=rtol)
        numeric = _central(lambda *a: weights * original(*a, **kwargs), args, argnum)
        np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(tg.jit(tg.grad(loss, argnums=argnum))(*args), gradient,
                                   rtol=1e-11, atol=1e-14)


def _positive(*shape, low=1.1):
    return RNG.normal(size=shape) ** 2 + low


@pytest.mark.parametrize("name", ["pdf", "logpdf", "cdf", "logcdf", "sf", "logsf"])
@pytest.mark.parametrize("shapes", [((5,), (5,), (5,)), ((4, 3), (1, 3), (4, 1)),
                                    ((2, 3, 4), (4,), ())])
def test_norm_methods_broadcast_loc_and_scale(name, shapes):
    x, loc = RNG.normal(size=shapes[0]) * 2, RNG.normal(size=shapes[1])
    scale = _positive(*shapes[2], low=0.5)
    _check(getattr(stats.norm, name), (x, loc, scale), [0, 1, 2])


@pytest.mark.parametrize("name", ["ppf", "isf"])
def test_norm_quantiles(name):
    q = np.array([[1e-3, 0.01, 0.3], [0.5, 0.8, 0.999]])
    _check(getattr(stats.norm, name), (q, RNG.normal(size=3), _positive(2, 1)), [0, 1, 2],
           rtol=1e-12)
    # the edges on the traced path: +-inf at 0 and 1, NaN outside [0, 1] and for scale <= 0
    edges = np.array([0.0, 1.0, -0.1, 1.5, np.nan, 0.5, 1e-300, 1 - 1e-12])
    scale = np.array([1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, 1.0])
    traced = tg.jit(lambda q: getattr(stats.norm, name)(q, 0.0, scale))(edges)
    np.testing.assert_allclose(traced, getattr(stats.norm, name).__tapegrad_wraps__(
        edges, 0.0, scale), rtol=1e-12)


def test_norm_keywords_and_defaults():
    x = RNG.normal(size=4)
    _check(stats.norm.logpdf, (x,), [0])
    _check(stats.norm.cdf, (x,), [0], loc=0.3, scale=2.0)


@pytest.mark.parametrize("name", ["pdf", "logpdf"])
def test_t_density_in_every_argument(name):
    args = (RNG.normal(size=(4, 3)), _positive(1, 3, low=2.1), RNG.normal(size=(4, 3)),
            _positive(4, 1, low=2.1))
    _check(getattr(stats.t, name), args, [0, 1, 2, 3])


@pytest.mark.parametrize("dist, args", [
    ("beta", lambda: (RNG.uniform(0.05, 0.95, 5), _positive(5), _positive(5))),
    ("gamma", lambda: (_positive(5), _positive(5))),
    ("chi2", lambda: (_positive(5), _positive(5))),
    ("gamma", lambda: (_positive(4, 1) + 2, _positive(1, 3), 0.5, _positive(4, 3))),
])
@pytest.mark.parametrize("name", ["pdf", "logpdf"])
def test_beta_gamma_chi2_densities(dist, args, name):
    args = args()
    _check(getattr(getattr(stats, dist), name), args, range(len(args)))


@pytest.mark.parametrize("name", ["pmf", "logpmf"])
@pytest.mark.parametrize("shape_k, shape_mu", [((5,), (5,)), ((4, 3), (4, 1))])
def test_poisson_in_mu(name, shape_k, shape_mu):
    k = np.round(RNG.normal(size=shape_k) ** 2 * 3)
    _check(getattr(stats.poisson, name), (k, _positive(*shape_mu)), [1])


def test_edge_values_follow_scipy():
    x = np.array([-np.inf, -40.0, -25.0, -20.5, -19.0, -5.0, 0.0, 5.0, 6.5, 10.0, 40.0, np.inf,
                  np.nan])
    np.testing.assert_allclose(scipy_stats.log_ndtr(x), sp.log_ndtr(x), rtol=1e-13)
    outside = np.array([-0.5, 1.5, np.nan])
    for dist, args in [("beta", (2.0, 3.0)), ("gamma", (2.0,)), ("chi2", (3.0,)),
                       ("t", (3.0,)), ("norm", ())]:
        for name in ("pdf", "logpdf"):
            ours = TABLES[dist][name](outside, *args)
            scipys = getattr(getattr(stats, dist), name).__tapegrad_wraps__
            np.testing.assert_allclose(ours, scipys(outside, *args), rtol=1e-13)
    # scale <= 0 and non-integer counts, as scipy
    np.testing.assert_array_equal(TABLES["norm"]["logpdf"](0.5, 0.0, np.array([-1.0, 0.0])),
                                  [np.nan, np.nan])
    np.testing.assert_array_equal(TABLES["poisson"]["logpmf"](np.array([-1.0, 2.5, 2.0]), 3.0),
                                  stats.poisson.logpmf.__tapegrad_wraps__([-1.0, 2.5, 2.0], 3.0))


@pytest.mark.parametrize("df", [0.5, 3.0, 50.0, 1.9e4, 3e4, 1e6, 1e10, np.inf])
def test_t_density_for_large_and_infinite_df(df):
    # gammaln(h + 1/2) - gammaln(h) cancels for large h: scipy's poch takes over above 1e4
    x = np.array([0.0, 1e-300, 0.5, -3.0, 40.0, np.inf, np.nan])
    for name in ("pdf", "logpdf"):
        np.testing.assert_allclose(TABLES["t"][name](x, df),
                                   getattr(stats.t, name).__tapegrad_wraps__(x, df), rtol=1e-12)
    if df < 1e3:      # beyond, central differences in df (and scipy's switch at 2e4) drown it
        _check(stats.t.logpdf, (np.array([0.3, -1.2]), np.array([df, df * 1.5])), [0, 1])


def test_log_ndtr_gradient_far_in_the_tails():
    x = np.array([-60.0, -30.0, -20.001, -19.999, 5.999, 6.001, 30.0])
    gradient = tg.grad(lambda v: np.sum(stats.norm.logcdf(v)))(x)
    # d/dx log Phi(x) = phi(x) / Phi(x), from scipy's log-space values
    expected = np.exp(stats.norm.logpdf.__tapegrad_wraps__(x) - sp.log_ndtr(x))
    np.testing.assert_allclose(gradient, expected, rtol=1e-10)
    assert np.all(np.isfinite(tg.jit(tg.grad(lambda v: np.sum(stats.norm.logsf(v))))(x)))


def _psd(dim):
    a = RNG.normal(size=(dim, dim))
    return a.T @ a + np.eye(dim)


def _with_argument(method, argnum, transform):
    """method with args[argnum] transformed first, on both our path and scipy's."""
    def make(function):
        def call(*args, **kwargs):
            args = list(args)
            args[argnum] = transform(args[argnum])
            return function(*args, **kwargs)
        return call
    call = make(method)
    call.__tapegrad_wraps__ = make(method.__tapegrad_wraps__)
    return call


def _symmetrized(method, argnum):
    return _with_argument(method, argnum, lambda a: 0.5 * (a + np.swapaxes(a, -1, -2)))


@pytest.mark.parametrize("name", ["pdf", "logpdf"])
@pytest.mark.parametrize("x_shape", [(4,), (5, 4), (2, 3, 4)])
def test_multivariate_normal_density(name, x_shape):
    method = _symmetrized(getattr(stats.multivariate_normal, name), 2)
    _check(method, (RNG.normal(size=x_shape), RNG.normal(size=4), _psd(4)), [0, 1, 2], rtol=1e-11)


def test_multivariate_normal_entropy_and_scalar_and_diagonal_cov():
    _check(_symmetrized(stats.multivariate_normal.entropy, 1), (RNG.normal(size=3), _psd(3)),
           [0, 1], rtol=1e-11)
    _check(stats.multivariate_normal.logpdf, (RNG.normal(size=(6, 3)), RNG.normal(size=3),
                                              _positive(3)), [0, 1, 2], rtol=1e-11)
    _check(stats.multivariate_normal.logpdf, (RNG.normal(size=5),), [0], mean=0.3, cov=2.0)


def test_multivariate_normal_list_of_traced_coordinates():
    # scipy's default dimension is 1 (mean None, cov 1): a list of n values is n points
    for f in (tg.grad, lambda g: tg.jit(tg.grad(g))):
        assert f(lambda a: stats.multivariate_normal.logpdf([a, 0.5], np.zeros(2)))(1.5) == -1.5
        assert f(lambda a: np.sum(stats.multivariate_normal.logpdf([a, 0.5])))(1.5) == -1.5


def test_multivariate_normal_singular_cov():
    cov = np.diag([1.0, 2.0, 0.0, 0.0])
    mean = np.concatenate([RNG.normal(size=2), np.zeros(2)])
    for name in ("pdf", "logpdf"):
        # x varies only along the covariance's range: its first two coordinates
        method = getattr(stats.multivariate_normal, name)
        on_range = _with_argument(method, 0, lambda x2: np.concatenate([x2, np.zeros(2)]))
        _check(on_range, (RNG.normal(size=2), mean, cov), [0], allow_singular=True)
        mean_on_range = _with_argument(method, 1, lambda m2: np.concatenate([m2, np.zeros(2)]))
        _check(mean_on_range, (mean + 0.5 * np.array([1.0, -1.0, 0.0, 0.0]), mean[:2], cov), [1],
               allow_singular=True)
        # a traced singular cov: eigh with scipy's rank cut-off
        x = mean + 0.3
        x[2:] = 0.0
        ours = tg.jit(lambda c: method(x, mean, c, allow_singular=True))(cov)
        np.testing.assert_allclose(ours, method(x, mean, cov, allow_singular=True), rtol=1e-12)


@pytest.mark.parametrize("name", ["pdf", "logpdf"])
def test_dirichlet(name):
    alpha = _positive(4, low=1.2)
    method = getattr(stats.dirichlet, name)
    # differences must stay on the simplex: differentiate through x / sum(x)
    normalized = _with_argument(method, 0, lambda x: x / np.sum(x, axis=0))
    for x in (RNG.dirichlet(alpha), RNG.dirichlet(alpha, size=3).T):      # (K,) and (K, n)
        _check(normalized, (x, alpha), [0, 1])
    x = RNG.dirichlet(alpha)
    _check(method, (x[:3], alpha), [1])                    # K - 1 components


def test_polygamma_and_multigammaln():
    x = _positive(4, low=1.3)
    for n in (0, 1, 3):
        _check(sp.polygamma, (n, x), [1])
    orders = np.array([0, 1, 2, 1])      # a constant: its values pick the primitives
    by_order = _with_argument(sp.polygamma, 0, lambda unused: orders)
    _check(by_order, (0, x), [1])
    for d in (1, 2, 3):
        _check(sp.multigammaln, (RNG.uniform(4.0, 5.0, (2, 3)), d), [0])
    with pytest.raises(TypeError, match="order n cannot be a traced value"):
        tg.grad(lambda n: sp.polygamma(n, 2.0))(1.0)


@pytest.mark.parametrize("dist, shapes", [("t", (3.0,)), ("t", (0.7,)), ("t", (np.inf,)),
                                          ("beta", (2.0, 3.5)), ("gamma", (2.5,)),
                                          ("chi2", (4.0,))])
@pytest.mark.parametrize("name", ["cdf", "logcdf", "sf", "logsf"])
def test_cdfs_through_the_incomplete_gamma_and_beta(dist, shapes, name):
    # inside the support after loc 0.1 and scale 1.3 (log(0) = -inf has no finite difference)
    x = 0.1 + 1.3 * RNG.uniform(0.05, 0.9, size=(2, 3)) if dist == "beta" else \
        RNG.normal(size=(2, 3)) + 1.5
    if dist in ("gamma", "chi2"):
        x = np.abs(x) + 0.2
    # x, loc and scale are differentiable; the shape parameters are constants here
    _check(getattr(getattr(stats, dist), name), (x, *shapes, 0.1, 1.3), [0, len(shapes) + 1,
                                                                          len(shapes) + 2],
           rtol=1e-11)


@pytest.mark.parametrize("name", ["cdf", "logcdf", "sf", "logsf"])
def test_poisson_cdfs_in_mu(name):
    below = -1.0 if name in ("cdf", "sf") else 0.5     # the log of cdf 0 has no differences
    k = np.array([[below, 0.0, 1.0], [2.5, 4.0, 10.0]])
    _check(getattr(stats.poisson, name), (k, _positive(2, 3)), [1], rtol=1e-11)


def test_cdfs_outside_the_support_follow_scipy():
    for dist, x, shapes in [("beta", np.array([-0.5, 0.0, 1.0, 1.5, np.nan]), (2.0, 3.0)),
                            ("gamma", np.array([-1.0, 0.0, np.inf, np.nan]), (2.0,)),
                            ("t", np.array([-np.inf, np.inf, np.nan]), (3.0,))]:
        for name in ("cdf", "sf", "logcdf", "logsf"):
            method = getattr(getattr(stats, dist), name)
            with np.errstate(all="ignore"):
                expected = method.__tapegrad_wraps__(x, *shapes)
                got = tg.jit(lambda v: method(v, *shapes))(x)
            np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_shape_parameters_of_the_incomplete_functions_are_refused_not_zero():
    with pytest.raises(TypeError, match=r"betainc has no gradient with respect to its shape"):
        tg.grad(lambda df: stats.t.cdf(0.5, df))(3.0)
    with pytest.raises(TypeError, match=r"gammainc has no gradient with respect to its shape"):
        tg.grad(lambda a: np.sum(sp.gammainc(a, np.array([0.5, 2.0]))))(2.0)
    x = np.array([0.2, 1.0, 3.0])
    np.testing.assert_allclose(tg.grad(lambda v: np.sum(sp.gammaincc(2.0, v)))(x),
                               -x * np.exp(-x), rtol=1e-12)   # -x^(a-1) e^-x / Gamma(a), a = 2


def test_untraced_calls_are_scipys_own():
    x = RNG.normal(size=(3, 4))
    original = stats.norm.logpdf.__tapegrad_wraps__
    assert original.__self__ is stats.norm
    np.testing.assert_array_equal(stats.norm.logpdf(x, 1.0, 2.0), original(x, 1.0, 2.0))
    assert type(stats.norm.cdf(0.5)) is type(stats.norm.cdf.__tapegrad_wraps__(0.5))
    assert stats.t.cdf(0.5, 3.0) == stats.t.cdf.__tapegrad_wraps__(0.5, 3.0)
    # other instances of the same classes (a user's own, frozen ones) are not wrapped
    assert not hasattr(type(stats.norm).pdf, "__tapegrad_wraps__")
    assert not hasattr(stats.norm(0.0, 1.0).pdf, "__tapegrad_wraps__")


@pytest.mark.parametrize("imports", [
    ["import scipy.special as sp, scipy.stats as st", "import tapegrad as tg"],
    ["import tapegrad as tg", "import scipy.special as sp, scipy.stats as st"],
    ["import scipy.special as sp", "import tapegrad as tg", "import scipy.stats as st"]])
def test_any_import_order_traces_scipy_special_and_stats(imports):
    script = "\n".join(imports + [
        "import numpy as np",
        "from scipy.special import logsumexp",
        "g = tg.grad(lambda x: logsumexp(x) + sp.softmax(x)[0] + st.norm.logpdf(x[0])",
        "            + st.multivariate_normal.logpdf(x, np.zeros(2)))(np.array([1.5, 0.0]))",
        "print(np.round(g, 6).tolist())"])
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    # logsumexp + softmax[0] at (1.5, 0): p + p(1 - p) and 1 - p - p(1 - p); each logpdf -x
    p = 1.0 / (1.0 + np.exp(-1.5))
    expected = [p + p * (1 - p) - 3.0, 1 - p - p * (1 - p)]
    assert out.stdout.strip() == str(np.round(expected, 6).tolist())


def test_import_tapegrad_loads_neither_scipy_nor_numba():
    script = "import sys, tapegrad; print('scipy' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
