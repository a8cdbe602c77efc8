"""scipy.stats' distributions on traced values: norm, t, beta, gamma, chi2, poisson, dirichlet and
multivariate_normal.

scipy's distribution methods are Python code that converts its arguments with np.asarray(...,
dtype=float), which a traced value cannot survive. tapegrad wraps the methods of scipy's singleton
distribution objects (scipy.stats.norm.pdf, ...) by the same design as tapegrad.scipy_special: a
call with a traced argument runs the composition below (scipy's argument conventions: loc, scale,
the shape parameters, broadcasting); every other call goes to scipy's own method unchanged.
Frozen distributions (scipy.stats.norm(0, 1)) and argument checks on traced values are not
covered: invalid parameters (scale <= 0, ...) give NaN, as scipy does, without its warnings.

The cdf and sf of t, beta, gamma, chi2 and poisson go through the registry's incomplete gamma
and beta primitives (scipy.special.gammainc, gammaincc, betainc): differentiable in x (and in
poisson's mu), refused by name with respect to the shape parameters.
"""
import math

import numpy as np

from .scipy_special import PATCHES, _traced, wrap_attributes

__all__ = ["log_ndtr"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _special():
    import scipy.special
    return scipy.special


def _ndtr(x):
    return 0.5 * _special().erfc(-x * math.sqrt(0.5))


def log_ndtr(x):
    """log of the standard normal cdf, as scipy.special.log_ndtr: log1p(-ndtr(-x)) right of 0
    (where log(ndtr) would lose 1 - ndtr's digits), log(ndtr(x)) down to -20, and the asymptotic series of log(erfc) left of -20, where ndtr
    underflows; each branch sees only its own inputs, so no NaN reaches the gradient."""
    x = x * 1.0
    right, left = x > 0, x < -20
    x_right = np.where(right, x, 1.0)
    x_mid = np.where(right | left, 0.0, x)
    x_left = np.where(left, x, -21.0)
    inv2 = 1.0 / (x_left * x_left)
    series, term = 1.0, 1.0
    for k in range(1, 12):               # (-1)^k (2k-1)!! / x^2k; 11 terms: < 1e-17 left of -20
        term = -term * (2 * k - 1) * inv2
        series = series + term
    tail = -0.5 * x_left * x_left - np.log(-x_left) - _LOG_SQRT_2PI + np.log(series)
    with np.errstate(divide="ignore"):
        middle = np.log(_ndtr(x_mid))
    return np.where(right, np.log1p(-_ndtr(-x_right)), np.where(left, tail, middle))


def _norm_logpdf(z):
    return -0.5 * z * z - _LOG_SQRT_2PI


def _log_gamma_ratio(h):
    """log(Gamma(h + 1/2) / Gamma(h)) as scipy's log(poch(h, 1/2)): gammaln's difference up to
    1e4, its asymptotic series beyond (where the difference cancels), as Cephes' poch."""
    sp = _special()
    big = h > 1e4
    small_h = np.where(big, 1.0, h)
    big_h = np.where(big, h, 2e4)
    series = 0.5 * np.log(big_h) - 1 / (8 * big_h) + 1 / (192 * big_h ** 3)
    return np.where(big, series, sp.gammaln(small_h + 0.5) - sp.gammaln(small_h))


def _t_logpdf(z, df):
    # df = inf is the normal distribution, as scipy
    infinite = df == np.inf
    finite_df = np.where(infinite, 1.0, df)
    value = (_log_gamma_ratio(0.5 * finite_df) - 0.5 * np.log(finite_df * np.pi)
             - (finite_df + 1) / 2 * np.log1p(z * z / finite_df))
    return np.where(infinite, _norm_logpdf(z), value)


def _inside(value, low, high=None):
    """value where it lies in the support [low, high], and a harmless 0.5 elsewhere."""
    ok = value >= low if high is None else (value >= low) & (value <= high)
    return ok, np.where(ok, value, 0.5)


def _in_support(ok, x, value):
    # -inf outside the support, NaN for a NaN x (which is in no support), as scipy
    return np.where(ok, value, np.where(np.isnan(x), np.nan, -np.inf))


def _beta_logpdf(x, a, b):
    sp = _special()
    ok, safe = _inside(x, 0.0, 1.0)
    value = sp.xlogy(a - 1.0, safe) + sp.xlog1py(b - 1.0, -safe) - sp.betaln(a, b)
    return _in_support(ok, x, value)


def _gamma_logpdf(x, a):
    sp = _special()
    ok, safe = _inside(x, 0.0)
    return _in_support(ok, x, sp.xlogy(a - 1.0, safe) - safe - sp.gammaln(a))


def _chi2_logpdf(x, df):
    return _gamma_logpdf(x / 2.0, df / 2.0) - math.log(2.0)


class _Continuous:
    """The methods of a location-scale family from its standardised log density, cdf and sf."""

    def __init__(self, shapes, logpdf, cdf, sf, logcdf=None, logsf=None):
        self.names = ("x",) + shapes + ("loc", "scale")
        self.defaults = {"loc": 0.0, "scale": 1.0}
        self.logpdf0, self.cdf0, self.sf0 = logpdf, cdf, sf
        self.logcdf0 = logcdf or (lambda *a: _log(cdf(*a)))
        self.logsf0 = logsf or (lambda *a: _log(sf(*a)))

    def _bind(self, method, args, kwargs):
        values = dict(self.defaults)
        if len(args) > len(self.names):
            raise TypeError(f"{method}() takes at most {len(self.names)} arguments "
                            f"({', '.join(self.names)}), {len(args)} given")
        values.update(zip(self.names, args))
        for key, value in kwargs.items():
            if key not in self.names:
                raise TypeError(f"{method}() got an unexpected keyword argument {key!r}")
            values[key] = value
        missing = [name for name in self.names if name not in values]
        if missing:
            raise TypeError(f"{method}() missing argument(s): {', '.join(missing)}")
        scale = values["scale"]
        with np.errstate(divide="ignore", invalid="ignore"):     # scale 0: NaN below
            z = (values["x"] - values["loc"]) / scale
        shapes = [values[name] for name in self.names[1:-2]]
        return z, shapes, scale

    @staticmethod
    def _valid(value, scale):
        # scipy answers NaN for scale <= 0
        return np.where(scale > 0, value, np.nan)

    def _standardised(self, name, function):
        """The method `name` from a function of the standardised x and the shape parameters."""
        def method(*args, **kwargs):
            z, shapes, scale = self._bind(name, args, kwargs)
            return self._valid(function(z, *shapes), scale)
        return method

    def methods(self):
        def logpdf(*args, **kwargs):
            z, shapes, scale = self._bind("logpdf", args, kwargs)
            return self._valid(self.logpdf0(z, *shapes) - np.log(np.abs(scale)), scale)

        def pdf(*args, **kwargs):
            return np.exp(logpdf(*args, **kwargs))

        return {"logpdf": logpdf, "pdf": pdf, "cdf": self._standardised("cdf", self.cdf0),
                "sf": self._standardised("sf", self.sf0),
                "logcdf": self._standardised("logcdf", self.logcdf0),
                "logsf": self._standardised("logsf", self.logsf0)}


def _norm_quantile(sign):
    """norm.ppf (sign 1) and norm.isf (sign -1): loc + sign * scale * ndtri(q); NaN outside
    [0, 1] and for scale <= 0, as scipy."""
    def quantile(q, loc=0.0, scale=1.0):
        value = loc + sign * scale * _special().ndtri(q)
        return np.where((q >= 0) & (q <= 1) & (scale > 0), value, np.nan)
    return quantile


_NORM = _Continuous((), _norm_logpdf, cdf=_ndtr, sf=lambda z: _ndtr(-z), logcdf=log_ndtr,
                    logsf=lambda z: log_ndtr(-z))


def _log(p):
    with np.errstate(divide="ignore"):          # a probability of 0: -inf, as scipy
        return np.log(p)


def _t_cdf(z, df):
    """I_{df/(df+z^2)}(df/2, 1/2) / 2 is the tail beyond |z|; df = inf is the normal."""
    infinite = df == np.inf
    finite_df = np.where(infinite, 1.0, df)
    tail = 0.5 * _special().betainc(0.5 * finite_df, 0.5, finite_df / (finite_df + z * z))
    return np.where(infinite, _ndtr(z), np.where(z > 0, 1.0 - tail, tail))


def _beta_cdf(x, a, b):
    return _special().betainc(a, b, np.clip(x, 0.0, 1.0))


def _beta_sf(x, a, b):
    # I_x(a, b) = 1 - I_{1-x}(b, a): the upper tail without 1 - cdf's cancellation
    return _special().betainc(b, a, 1.0 - np.clip(x, 0.0, 1.0))


def _gamma_cdf(x, a):
    return _special().gammainc(a, np.maximum(x, 0.0))


def _gamma_sf(x, a):
    return _special().gammaincc(a, np.maximum(x, 0.0))


def _poisson_cdf(k, mu, loc=0):
    # P(K <= k) = Q(floor(k) + 1, mu); 0 below the support
    k = np.floor(k - loc)
    below = k < 0
    return np.where(below, 0.0, _special().gammaincc(np.where(below, 0.0, k) + 1.0, mu))


def _poisson_sf(k, mu, loc=0):
    k = np.floor(k - loc)
    below = k < 0
    return np.where(below, 1.0, _special().gammainc(np.where(below, 0.0, k) + 1.0, mu))


def _poisson_logpmf(k, mu, loc=0):
    sp = _special()
    k = k - loc
    ok = (k >= 0) & (k == np.floor(k))
    safe = np.where(ok, k, 0.0)
    return _in_support(ok, k, sp.xlogy(safe, mu) - sp.gammaln(safe + 1.0) - mu)


def _poisson_pmf(k, mu, loc=0):
    return np.exp(_poisson_logpmf(k, mu, loc))


def _dirichlet_logpdf(x, alpha):
    """scipy's conventions: alpha of length K; x of shape (K,) or (K, n), or K - 1 components
    (the last is then 1 - their sum)."""
    sp = _special()
    if np.ndim(alpha) != 1:
        raise ValueError("scipy.stats.dirichlet: alpha must be a one-dimensional vector")
    k = np.shape(alpha)[0]
    if np.shape(x)[0] == k - 1:
        last = 1.0 - np.sum(x, axis=0)
        x = np.concatenate([x, np.expand_dims(last, 0)], axis=0)
    if np.shape(x)[0] != k:
        raise ValueError(f"scipy.stats.dirichlet: x has {np.shape(x)[0]} components along its first "
                         f"axis; alpha has {k}")
    weights = np.reshape(alpha - 1.0, (k,) + (1,) * (np.ndim(x) - 1))
    log_norm = np.sum(sp.gammaln(alpha)) - sp.gammaln(np.sum(alpha))
    return np.sum(sp.xlogy(weights, x), axis=0) - log_norm


def _dirichlet_pdf(x, alpha):
    return np.exp(_dirichlet_logpdf(x, alpha))


def _mvn_arguments(x, mean, cov):
    """scipy.stats.multivariate_normal's shapes: mean (d,) (zeros when None), cov (d, d) from a
    scalar or a diagonal, x (..., d) (a scalar or (n,) is n points when d is 1)."""
    if mean is not None:
        dim = np.size(mean) if np.ndim(mean) else 1
    elif np.ndim(cov) >= 1:
        dim = np.shape(cov)[0]
    else:
        dim = 1
    mean = np.zeros(dim) if mean is None else np.reshape(mean, (dim,))
    if np.ndim(cov) == 0:
        cov = cov * np.eye(dim)
    elif np.ndim(cov) == 1:
        cov = cov * np.eye(dim)          # the diagonal, as np.diag
    if x is not None:
        if np.ndim(x) == 0:
            x = np.reshape(x, (1,))
        if dim == 1 and np.ndim(x) == 1:
            x = np.reshape(x, (-1, 1))
    return x, mean, cov, dim


def _mvn_psd(cov, allow_singular):
    """(U, rank, log pseudo-determinant) with U U^T the pseudo-inverse of cov. A constant cov
    uses scipy's own factorisation (its rank cut-off); a traced one its Cholesky factor, or its
    eigendecomposition with scipy's cut-off when allow_singular."""
    if not _traced(cov):
        from scipy.stats._multivariate import _PSD
        psd = _PSD(np.asarray(cov, dtype=float), allow_singular=allow_singular)
        return psd.U, psd.rank, psd.log_pdet
    dim = np.shape(cov)[-1]
    if not allow_singular:
        lower = np.linalg.cholesky(cov)
        inverse = np.linalg.inv(lower)           # U = L^-T: U U^T = cov^-1
        return np.swapaxes(inverse, -1, -2), dim, 2.0 * np.sum(np.log(np.diagonal(lower)))
    values, vectors = np.linalg.eigh(cov)
    cut = 1e6 * np.finfo(float).eps * np.max(np.abs(values))     # scipy _PSD's cut-off
    keep = values > cut
    safe = np.where(keep, values, 1.0)
    rank = np.sum(keep)
    log_pdet = np.sum(np.where(keep, np.log(safe), 0.0))
    return vectors * np.where(keep, 1.0 / np.sqrt(safe), 0.0), rank, log_pdet


def _mvn_logpdf(x, mean=None, cov=1, allow_singular=False):
    x, mean, cov, dim = _mvn_arguments(x, mean, cov)
    u, rank, log_pdet = _mvn_psd(cov, allow_singular)
    maha = np.sum(np.square(np.matmul(x - mean, u)), axis=-1)
    return np.squeeze(-0.5 * (rank * math.log(2 * math.pi) + log_pdet + maha))   # as scipy


def _mvn_pdf(x, mean=None, cov=1, allow_singular=False):
    return np.exp(_mvn_logpdf(x, mean, cov, allow_singular))


def _mvn_entropy(mean=None, cov=1):
    cov = _mvn_arguments(None, mean, cov)[2]
    _, rank, log_pdet = _mvn_psd(cov, False)
    return 0.5 * (rank * (math.log(2 * math.pi) + 1.0) + log_pdet)


def _tables():
    """distribution name -> {method name: our function}."""
    return {
        "norm": {**_NORM.methods(), "ppf": _norm_quantile(1.0), "isf": _norm_quantile(-1.0)},
        "t": _Continuous(("df",), _t_logpdf, cdf=_t_cdf,
                         sf=lambda z, df: _t_cdf(-z, df)).methods(),
        "beta": _Continuous(("a", "b"), _beta_logpdf, cdf=_beta_cdf, sf=_beta_sf).methods(),
        "gamma": _Continuous(("a",), _gamma_logpdf, cdf=_gamma_cdf, sf=_gamma_sf).methods(),
        "chi2": _Continuous(("df",), _chi2_logpdf, cdf=lambda x, df: _gamma_cdf(x / 2.0, df / 2.0),
                            sf=lambda x, df: _gamma_sf(x / 2.0, df / 2.0)).methods(),
        "poisson": {"logpmf": _poisson_logpmf, "pmf": _poisson_pmf, "cdf": _poisson_cdf,
                    "sf": _poisson_sf, "logcdf": lambda *a, **k: _log(_poisson_cdf(*a, **k)),
                    "logsf": lambda *a, **k: _log(_poisson_sf(*a, **k))},
        "dirichlet": {"logpdf": _dirichlet_logpdf, "pdf": _dirichlet_pdf},
        "multivariate_normal": {"logpdf": _mvn_logpdf, "pdf": _mvn_pdf,
                                "entropy": _mvn_entropy},
    }


def _patch(module):
    for name, table in _tables().items():
        distribution = getattr(module, name, None)
        if distribution is not None:
            wrap_attributes(distribution, table)    # instance attributes: only these singletons


PATCHES["scipy.stats"] = _patch
