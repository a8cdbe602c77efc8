"""scipy.special's Python-level functions (logsumexp, softmax, log_softmax) on traced values.

scipy.special's ufuncs (expit, erf, gammaln, ...) reach the tracer through NumPy's
__array_ufunc__ and are looked up in numpy_api. These three are Python code inside scipy that
converts its input with np.asarray, which a traced value cannot survive, so tapegrad wraps
them: a call with a traced argument runs the composition below (recorded on the tape, with
scipy's arguments and edge values); every other call goes to scipy's own function unchanged.

The wrappers are put on the scipy.special module when tapegrad is imported after it, or when
scipy.special is first imported after tapegrad. A name bound with `from scipy.special import
logsumexp` *before* tapegrad was imported still holds scipy's function: import tapegrad first,
or call the functions here (tapegrad.scipy_special.logsumexp) directly.
"""
import functools
import importlib.abc
import sys

import numpy as np

__all__ = ["logsumexp", "softmax", "log_softmax", "polygamma", "multigammaln", "install"]


def _finite_max(a, axis):
    """The shift that keeps exp from overflowing; 0 where a slice's maximum is not finite
    (all -inf, inf or NaN), so -inf entries give exp(-inf) = 0 and NaN/inf propagate as in scipy."""
    top = np.max(a, axis=axis, keepdims=True)
    return np.where(np.isfinite(top), top, 0.0)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b * exp(a))) along `axis`, as scipy.special.logsumexp, differentiable on traces.

    Args:
        a: the array (traced or not).
        axis: an int, a tuple of ints or None (all axes).
        b: weights broadcast against `a`; a zero weight drops its entry even where a is inf.
        keepdims: keep the reduced axes with length 1.
        return_sign: also return the sign of the sum (the result is then log|sum|).

    Returns:
        The log of the sum, and its sign when `return_sign` is true.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.grad(lambda x: logsumexp(x))(np.zeros(2))
        array([0.5, 0.5])
    """
    if b is not None:
        a = np.where(np.equal(b, 0), -np.inf, a)
    shift = _finite_max(a, axis)
    terms = np.exp(a - shift)
    if b is not None:
        terms = b * terms
    total = np.sum(terms, axis=axis, keepdims=True)
    if return_sign:
        sign = np.sign(total)
        total = np.abs(total)
    with np.errstate(divide="ignore"):    # log(0) = -inf is the answer, as in scipy
        out = np.log(total) + shift
    if not keepdims:
        out = np.squeeze(out, axis=axis)
        if return_sign:
            sign = np.squeeze(sign, axis=axis)
    return (out, sign) if return_sign else out


def softmax(x, axis=None):
    """exp(x) / sum(exp(x)) along `axis` (all axes when None, scipy's default).

    Args:
        x: the array (traced or not).
        axis: an int, a tuple of ints or None.

    Returns:
        An array of x's shape whose slices along `axis` sum to 1.

    Example:
        >>> import numpy as np
        >>> softmax(np.array([0.0, 0.0]))
        array([0.5, 0.5])
    """
    terms = np.exp(x - np.max(x, axis=axis, keepdims=True))   # scipy shifts by inf too: NaN
    return terms / np.sum(terms, axis=axis, keepdims=True)


def log_softmax(x, axis=None):
    """x - logsumexp(x) along `axis` (all axes when None, scipy's default), computed shifted.

    Args:
        x: the array (traced or not).
        axis: an int, a tuple of ints or None.

    Returns:
        An array of x's shape: the log of softmax(x, axis).

    Example:
        >>> import numpy as np
        >>> log_softmax(np.array([0.0, 0.0]))
        array([-0.69314718, -0.69314718])
    """
    shifted = x - _finite_max(x, axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def polygamma(n, x):
    """scipy.special.polygamma(n, x): the n-th derivative of digamma, n a non-negative int
    (or an array of them, broadcast against x) that is not traced; x traced or not."""
    from . import primitives as P
    if _traced(n):
        raise TypeError("tapegrad: scipy.special.polygamma's order n cannot be a traced value "
                        "(the derivative in n does not exist, and its values are needed while tracing): "
                        "pass n as a Python int, or close over a constant array instead of passing "
                        "it as an argument of the traced function")
    orders = np.asarray(n)
    if orders.ndim == 0:
        return P.polygamma(x, n=int(orders))
    out = 0.0 * x + 0.0 * orders      # broadcast shape, a NaN wherever x is NaN
    for order in np.unique(orders):
        out = np.where(orders == order, P.polygamma(x, n=int(order)), out)
    return out


def multigammaln(a, d):
    """scipy.special.multigammaln(a, d): log of the multivariate gamma function of dimension d
    (an int), d(d-1)/4 log(pi) + sum_j gammaln(a - j/2) for j = 0..d-1."""
    import scipy.special as special
    d = int(d)
    out = d * (d - 1) / 4.0 * np.log(np.pi)
    for j in range(d):
        out = out + special.gammaln(a - j / 2.0)
    return out


_OURS = {"logsumexp": logsumexp, "softmax": softmax, "log_softmax": log_softmax,
         "polygamma": polygamma, "multigammaln": multigammaln}


def _traced(value):
    """True for a tracer (or a list/tuple holding one): the values scipy's code cannot take."""
    if getattr(type(value), "_bind_level", 0) >= 2:
        return True
    return isinstance(value, (list, tuple)) and any(_traced(item) for item in value)


def wrapped(scipy_function, ours):
    """scipy_function, except that a call with a traced argument runs `ours` instead."""
    @functools.wraps(scipy_function)
    def call(*args, **kwargs):
        if any(_traced(arg) for arg in args) or any(_traced(v) for v in kwargs.values()):
            return ours(*args, **kwargs)
        return scipy_function(*args, **kwargs)
    call.__tapegrad_wraps__ = scipy_function
    return call


def wrap_attributes(owner, table):
    """Wrap owner.<name> for each name -> our function in table, once (a second call keeps them)."""
    for name, ours in table.items():
        current = getattr(owner, name, None)
        if current is not None and not hasattr(current, "__tapegrad_wraps__"):
            setattr(owner, name, wrapped(current, ours))


def _patch(module):
    wrap_attributes(module, _OURS)


# module name -> the function wrapping its members; scipy_stats adds "scipy.stats"
PATCHES = {"scipy.special": _patch}


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps a module of PATCHES as soon as it finishes importing."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, PATCHES[fullname])
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader, patch):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):   # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


def install():
    """Wrap the functions of PATCHES' modules now, or each when it is first imported."""
    for name, patch in PATCHES.items():
        module = sys.modules.get(name)
        if module is not None:
            patch(module)
    if not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
