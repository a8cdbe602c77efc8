"""Static kinds of values in emitted code: dtype category and number of dimensions.

The transformer specialises on the kinds of the arguments (as Numba specialises on types): kinds
decide how adjoints start (0.0 or np.zeros_like), where a broadcast cotangent is summed back, and
which stacks can be preallocated.
"""
from dataclasses import dataclass

import numpy as np

_ORDER = {"bool": 0, "int": 1, "float": 2}


@dataclass(frozen=True)
class Kind:
    dtype: str  # "bool" | "int" | "float"
    ndim: int = 0
    # axes known to have length 1 (keepdims reductions, reshape to 1, `None` in an index): the
    # adjoint sums a cotangent over such axes where it meets a wider array
    ones: frozenset = frozenset()

    @property
    def is_array(self):
        return self.ndim > 0

    def __str__(self):
        return self.dtype if self.ndim == 0 else f"{self.dtype}{self.ndim}d"


FLOAT = Kind("float")
INT = Kind("int")
BOOL = Kind("bool")


def kind_of_value(value):
    """The kind of a runtime argument, or None for values the transformer does not take."""
    if isinstance(value, (bool, np.bool_)):
        return BOOL
    if isinstance(value, (int, np.integer)):
        return INT
    if isinstance(value, (float, np.floating)):
        return FLOAT
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            return Kind("bool", value.ndim)
        if np.issubdtype(value.dtype, np.integer):
            return Kind("int", value.ndim)
        if np.issubdtype(value.dtype, np.floating):
            return Kind("float", value.ndim)
    return None


def parse_kind(text):
    """'float', 'int', 'bool', 'array' (= float1d), 'float2d', 'int1d' ... as used by the CLI."""
    text = text.strip()
    if text == "array":
        return Kind("float", 1)
    for dtype in _ORDER:
        if text == dtype:
            return Kind(dtype)
        if text.startswith(dtype) and text.endswith("d") and text[len(dtype):-1].isdigit():
            return Kind(dtype, int(text[len(dtype):-1]))
    raise ValueError(f"unknown kind {text!r}: use float, int, bool, array, float2d, int1d, ...")


def join_dtype(*dtypes):
    return max(dtypes, key=_ORDER.__getitem__)


def broadcast(*kinds, dtype=None):
    """Kind of an elementwise result; `dtype` overrides (comparisons give bool, / gives float)."""
    ndim = max(k.ndim for k in kinds)
    return Kind(dtype or join_dtype(*(k.dtype for k in kinds)), ndim, broadcast_ones(kinds, ndim))


def broadcast_ones(kinds, ndim):
    """Axes of a broadcast result that are 1 in every array covering them (right-aligned)."""
    ones = set()
    for axis in range(ndim):
        covering = [k for k in kinds if k.ndim >= ndim - axis]
        if covering and all(axis - (ndim - k.ndim) in k.ones for k in covering):
            ones.add(axis)
    return frozenset(ones)


def unify(old, new):
    """One kind per variable: int and float mix to float; scalars and arrays do not mix."""
    if old is None:
        return new
    if old.ndim != new.ndim:
        return None
    return Kind(join_dtype(old.dtype, new.dtype), old.ndim, old.ones & new.ones)
