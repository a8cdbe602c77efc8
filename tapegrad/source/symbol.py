"""Symbolic values: running a registry rule on Symbols writes the rule out as source text.

`Symbol` takes part in `core.bind` at level 3, so a derivative rule from primitives.py, called with
Symbols for the cotangent, the output and the inputs, returns a Symbol whose text is the adjoint
expression. Each Symbol knows the kind (dtype, ndim) of its value, which decides, for instance,
whether `where` is written as `np.where(...)` (arrays) or as `a if c else b` (scalars, which keeps
plain Python from turning floats into 0-d arrays). A Symbol made in `math` style (the user wrote
`math.sin(x)` or `abs(x)` on scalars) writes scalar results with the registry's `math.*` scalar
forms, so the adjoint of `math.sin(x)` reads `math.cos(x)`, as the user would write it.
"""
import dataclasses
import numbers

import numpy as np

from .. import primitives as P
from ..core import bind
from .kinds import Kind, broadcast

_NP_DTYPES = {"bool": np.dtype(np.bool_), "int": np.dtype(np.int64),
              "float": np.dtype(np.float64)}
_KIND_OF_DTYPE = {"b": "bool", "i": "int", "u": "int", "f": "float"}
_COMPARISONS = {"lt", "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_not",
                "isnan"}


def literal(value):
    """Source text of a Python or NumPy number."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            return f"float({str(value)!r})"
        return repr(value)
    raise TypeError(f"no literal for {value!r}")


def kind_of(value):
    if isinstance(value, Symbol):
        return value.kind
    if isinstance(value, bool):
        return Kind("bool")
    if isinstance(value, numbers.Integral):
        return Kind("int")
    return Kind("float")


def text_of(value):
    return value.text if isinstance(value, Symbol) else literal(value)


def _is_const(value, number):
    return not isinstance(value, Symbol) and value == number


class Symbol:
    """A value in emitted code: its source text and its kind."""

    _bind_level = 3

    def __init__(self, text, kind, math_style=False):
        self.text = text
        self.kind = kind
        self.math_style = math_style

    def __repr__(self):
        return f"Symbol({self.text!r}, {self.kind})"

    @property
    def np_dtype(self):
        # core.dtype_of reads this: rules that cast (`cast(x > 0, dtype=dtype_of(x).name)`)
        return _NP_DTYPES[self.kind.dtype]

    @property
    def shape(self):
        # rules that need static shapes (reductions, indexing) are emitted by adjoint.py instead
        raise TypeError("tapegrad.source: symbols carry no static shape")

    @classmethod
    def _bind(cls, prim, args, params):
        simplified = _simplify(prim.name, args)
        if simplified is not None:
            return simplified
        kind = broadcast(*(kind_of(a) for a in args))
        math_style = any(isinstance(a, Symbol) and a.math_style for a in args)
        if prim.name in _COMPARISONS:
            kind = dataclasses.replace(kind, dtype="bool")
        elif prim.name == "cast":
            kind = dataclasses.replace(kind, dtype=_KIND_OF_DTYPE[np.dtype(params["dtype"]).kind])
            if kind.ndim == 0:  # numbers have no .astype
                text = text_of(args[0])
                return Symbol(f"(1.0 if {text} else 0.0)" if kind_of(args[0]).dtype == "bool"
                              and kind.dtype == "float" else f"{kind.dtype}({text})", kind,
                              math_style)
        elif prim.name in ("div", "sqrt", "exp", "log", "sin", "cos"):
            kind = dataclasses.replace(kind, dtype="float")
        if prim.name == "where" and kind.ndim == 0:
            cond, a, b = (text_of(x) for x in args)
            return Symbol(f"({a} if {cond} else {b})", kind, math_style)
        texts = [text_of(a) for a in args]
        scalar = getattr(prim, "scalar", None) or ""
        if math_style and kind.ndim == 0 and scalar.startswith("math."):
            return Symbol(scalar.format(*texts), kind, math_style)
        if prim.source is None:
            raise TypeError(f"tapegrad.source: primitive '{prim.name}' has no source template")
        return Symbol(prim.source.format(*texts, **params), kind, math_style)

    # operators bind the registry's primitives, exactly as Tensors and tracers do
    def __neg__(self):
        return bind(P.neg, (self,), {})

    def __add__(self, other):
        return bind(P.add, (self, other), {})

    def __radd__(self, other):
        return bind(P.add, (other, self), {})

    def __sub__(self, other):
        return bind(P.sub, (self, other), {})

    def __rsub__(self, other):
        return bind(P.sub, (other, self), {})

    def __mul__(self, other):
        return bind(P.mul, (self, other), {})

    def __rmul__(self, other):
        return bind(P.mul, (other, self), {})

    def __truediv__(self, other):
        return bind(P.div, (self, other), {})

    def __rtruediv__(self, other):
        return bind(P.div, (other, self), {})

    def __pow__(self, other):
        return bind(P.pow_, (self, other), {})

    def __rpow__(self, other):
        return bind(P.pow_, (other, self), {})

    def __gt__(self, other):
        return bind(P.gt, (self, other), {})

    def __lt__(self, other):
        return bind(P.lt, (self, other), {})

    def __ge__(self, other):
        return bind(P.ge, (self, other), {})

    def __le__(self, other):
        return bind(P.le, (self, other), {})

    def __eq__(self, other):
        return bind(P.eq, (self, other), {})

    def __ne__(self, other):
        return bind(P.ne, (self, other), {})

    __hash__ = object.__hash__


def _simplify(name, args):
    """Drop the identities that rules produce around constants (g * 1, x ** 1, 0 + g)."""
    if len(args) != 2:
        return None
    a, b = args
    if name == "mul":
        if _is_const(a, 1) and isinstance(b, Symbol):
            return b
        if _is_const(b, 1) and isinstance(a, Symbol):
            return a
    if name == "add":
        if _is_const(a, 0) and isinstance(b, Symbol):
            return b
        if _is_const(b, 0) and isinstance(a, Symbol):
            return a
    if name in ("sub", "div") and isinstance(a, Symbol) and _is_const(b, 0 if name == "sub" else 1):
        return a
    if name == "pow" and isinstance(a, Symbol) and _is_const(b, 1):
        return a
    return None
