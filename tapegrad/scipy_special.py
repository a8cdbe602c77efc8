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

__all__ = ["logsumexp", "softmax", "log_softmax", "install"]


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


_OURS = {"logsumexp": logsumexp, "softmax": softmax, "log_softmax": log_softmax}


def _traced(value):
    """True for a tracer (or a list/tuple holding one): the values scipy's code cannot take."""
    if getattr(type(value), "_bind_level", 0) >= 2:
        return True
    return isinstance(value, (list, tuple)) and any(_traced(item) for item in value)


def _wrapped(scipy_function, ours):
    @functools.wraps(scipy_function)
    def call(*args, **kwargs):
        if any(_traced(arg) for arg in args) or any(_traced(v) for v in kwargs.values()):
            return ours(*args, **kwargs)
        return scipy_function(*args, **kwargs)
    call.__tapegrad_wraps__ = scipy_function
    return call


def _patch(module):
    for name, ours in _OURS.items():
        current = getattr(module, name, None)
        if current is not None and not hasattr(current, "__tapegrad_wraps__"):
            setattr(module, name, _wrapped(current, ours))


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps scipy.special's functions as soon as scipy.special finishes importing."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "scipy.special":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch(module)

    def __getattr__(self, name):   # get_source, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


def install():
    """Wrap scipy.special's logsumexp/softmax/log_softmax now, or when scipy.special is imported."""
    special = sys.modules.get("scipy.special")
    if special is not None:
        _patch(special)
    elif not any(isinstance(finder, _PatchOnImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
