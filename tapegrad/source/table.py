"""Which `math.*`, `np.*` and builtin calls the transformer knows, and what each one becomes.

Keys are the function objects themselves, so `import numpy as np`, `from math import sin` and
`import math as m` all resolve the same way. Anything absent is refused with a TransformError.

    Elementwise(prim)     a registry primitive; its rule comes from primitives.py through Symbols
    Reduction(name)       np.sum / mean / max / min / prod, np.linalg.norm, with `axis` and
                          `keepdims` (shape-aware emitters: the registry's rules need static shapes)
    MatMul()              np.dot (1-D and 2-D), np.matmul and @ (also stacks of matrices)
    Reshape()             np.reshape, x.reshape, x.ravel, x.flatten (the rule needs x's shape)
    Transpose(axes)       np.transpose, x.T, x.transpose: the registry's rule through Symbols
    Identity()            float(x), np.copy(x), x.copy(): the value passes, and so does its adjoint
    Constant(kind_rule)   constructors and piecewise-constant functions: no gradient flows
"""
import ast
import builtins
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import numpy_api
from .. import primitives as P
from .kinds import INT, Kind, broadcast


@dataclass(frozen=True)
class Elementwise:
    prim: object
    nargs: int
    # trailing arguments that the registry takes as parameters (np.clip's bounds): no gradient
    # flows to them, so they must not depend on a differentiated argument
    params: tuple = ()

    @property
    def n_values(self):
        return self.nargs - len(self.params)


@dataclass(frozen=True)
class Reduction:
    name: str  # sum | mean | amax | amin | prod | norm
    axis: object = None  # None, an int or a tuple of ints, as the user wrote it (may be negative)
    keepdims: bool = False
    ord: object = None  # norm only: None (= 2), 1, 2 or inf

    def axes(self, ndim):
        """The reduced axes as a sorted tuple of non-negative ints; ValueError if out of range."""
        if self.axis is None:
            return tuple(range(ndim))
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        out = []
        for axis in axes:
            if not -ndim <= axis < ndim:
                raise ValueError(f"axis {axis} is out of bounds for {ndim}-D arrays")
            out.append(axis % ndim)
        if len(set(out)) != len(out):
            raise ValueError("repeated axis")
        return tuple(sorted(out))

    def kind(self, x):
        """The kind of the result for an argument of kind `x`."""
        axes = self.axes(x.ndim)
        dtype = "float" if self.name in ("mean", "norm") else x.dtype
        if self.keepdims:
            return Kind(dtype, x.ndim, x.ones | frozenset(axes))
        kept = [k for k in range(x.ndim) if k not in axes]
        return Kind(dtype, len(kept), frozenset(i for i, k in enumerate(kept) if k in x.ones))


# how each reduction takes its static arguments: positional names after the array, keywords
REDUCTION_PARAMS = {"norm": ("ord", "axis")}
DEFAULT_PARAMS = ("axis",)
KEYWORDS = {"axis", "keepdims", "ord"}


@dataclass(frozen=True)
class MatMul:
    dot: bool = False  # np.dot and x.dot: 1-D and 2-D only (N-D np.dot is not matmul)


@dataclass(frozen=True)
class Reshape:
    ndim: object = None  # of the result: from the shape argument when None (ravel: 1)
    ones: frozenset = frozenset()  # axes the shape sets to a literal 1
    like: object = None  # the name of an array whose shape the result takes (t.shape)


@dataclass(frozen=True)
class Transpose:
    axes: object = None  # None: reversed
    swap: object = None  # np.swapaxes's two axes: the permutation once the ndim is known


@dataclass(frozen=True)
class ArrayOp:
    """A function of one array with a whole-array rule: `result(kind)` gives the kind of the
    result (a str: why that kind is refused), `adjoint(x, g, ans, kind)` the source of x's
    cotangent from the names of x, the result's cotangent and the result."""
    name: str
    result: Callable
    adjoint: Callable


def _square_matrix(kind):
    return Kind("float", 0) if kind.ndim == 2 else "takes one square matrix (2-D) here"


def _inverse(kind):
    return Kind("float", 2) if kind.ndim == 2 else "takes one square matrix (2-D) here"


# where NumPy's atleast_Nd puts the new axes of length 1: (N,) -> (1, N) -> (1, N, 1)
_NEW_AXES = {(1, 0): (0,), (2, 0): (0, 1), (2, 1): (0,), (3, 0): (0, 1, 2), (3, 1): (0, 2),
             (3, 2): (2,)}


def _at_least(n):
    def result(kind):
        if kind.ndim >= n:
            return kind
        new = _NEW_AXES[n, kind.ndim]
        old = [i for i in range(n) if i not in new]
        return Kind(kind.dtype, n, frozenset(new) | frozenset(
            i for k, i in enumerate(old) if k in kind.ones))
    return result


def _matrix_kind(kind):
    return Kind("float", 2, kind.ones) if kind.ndim == 2 else "takes one matrix (2-D) here"


def _back_to_shape(x, g, ans, kind):
    # the inverse of a reshape that only adds axes of length 1
    return f"np.sum({g})" if kind.ndim == 0 else \
        f"np.ascontiguousarray({g}).reshape(np.shape({x}))"


ARRAY_OPS = {
    # d det(A) = det(A) tr(A^-1 dA): A's cotangent is g det(A) A^-T
    np.linalg.det: ArrayOp("det", _square_matrix,
                           lambda x, g, ans, kind: f"{g} * {ans} * np.linalg.inv({x}).T"),
    # d A^-1 = -A^-1 dA A^-1: A's cotangent is -A^-T G A^-T
    np.linalg.inv: ArrayOp("inv", _inverse,
                           lambda x, g, ans, kind: f"-np.dot(np.dot({ans}.T, {g}), {ans}.T)"),
    # d trace(A) = trace(dA): A's cotangent is g on the diagonal
    np.trace: ArrayOp("trace", lambda kind: Kind("float", 0) if kind.ndim == 2 else
                      "takes one matrix (2-D) here",
                      lambda x, g, ans, kind: f"{g} * np.eye({x}.shape[0], {x}.shape[1])"),
    # np.diag: a matrix's diagonal (its cotangent is g on the diagonal), or a vector on a
    # diagonal (its cotangent is g's diagonal)
    np.diag: ArrayOp("diag", lambda kind: Kind("float", 3 - kind.ndim) if kind.ndim in (1, 2)
                     else "takes a vector or a matrix",
                     lambda x, g, ans, kind: f"np.diag({g})" if kind.ndim == 1 else (
                         # g on the diagonal of x's (maybe not square) shape
                         f"np.dot(np.dot(np.eye({x}.shape[0], {g}.shape[0]), np.diag({g})), "
                         f"np.eye({g}.shape[0], {x}.shape[1]))")),
    np.tril: ArrayOp("tril", _matrix_kind, lambda x, g, ans, kind: f"np.tril({g})"),
    np.triu: ArrayOp("triu", _matrix_kind, lambda x, g, ans, kind: f"np.triu({g})"),
    # np.cumsum without an axis runs over the flattened array: its cotangent is the reversed
    # cumulative sum of g, in x's shape
    np.cumsum: ArrayOp("cumsum", lambda kind: Kind("float", 1),
                       lambda x, g, ans, kind: f"np.cumsum({g}[::-1])[::-1]" if kind.ndim == 1
                       else f"np.ascontiguousarray(np.cumsum({g}[::-1])[::-1])"
                       f".reshape({x}.shape)"),
    np.atleast_1d: ArrayOp("atleast_1d", _at_least(1), _back_to_shape),
    np.atleast_2d: ArrayOp("atleast_2d", _at_least(2), _back_to_shape),
    np.atleast_3d: ArrayOp("atleast_3d", _at_least(3), _back_to_shape),
}


@dataclass(frozen=True)
class Pack:
    """np.array([a, b, ...]) and list literals: values of one kind stacked on a new first axis;
    element k's cotangent is the result's cotangent at k."""


@dataclass(frozen=True)
class Concat:
    """np.concatenate((a, b, ...)) along the first axis: each argument's cotangent is its rows
    of the result's cotangent."""


@dataclass(frozen=True)
class Identity:
    to_float: bool = False  # float(n) turns an integer into a float


@dataclass(frozen=True)
class Constant:
    """No gradient flows (floor, sign: piecewise constant). `result(arg_kinds, arg_nodes)` gives
    the kind of the result."""
    result: Callable


def _same_as_first(kinds, nodes):
    return kinds[0]


def _shape_ndim(nodes):
    # np.zeros(n) -> 1-D; np.zeros((n, m)) -> 2-D
    shape = nodes[0] if nodes else None
    return len(shape.elts) if isinstance(shape, (ast.Tuple, ast.List)) else 1


def _allocated(dtype):
    return lambda kinds, nodes: Kind(dtype, _shape_ndim(nodes))


def _like(kinds, nodes):
    return Kind("float", kinds[0].ndim)


def _arange(kinds, nodes):
    # np.arange(9.0) is float, np.arange(n) int: literal arguments are no operands (no kinds)
    floats = any(k.dtype == "float" for k in kinds) or any(
        isinstance(n, ast.Constant) and isinstance(n.value, float) for n in nodes)
    return Kind("float" if floats else "int", 1)


def _int_result(kinds, nodes):
    return INT


def _float_of_first(kinds, nodes):
    return Kind("float", kinds[0].ndim)


def _elementwise(prim, nargs=1):
    return Elementwise(prim, nargs)


# every ufunc and math function of the NumPy table (tapegrad/numpy_api.py) that is one
# differentiable primitive; its number of arguments is its number of rules
CALLS = {fn: _elementwise(prim, len(prim.vjp_rules))
         for fn, prim in numpy_api.source_elementwise().items()}

CALLS.update({
    np.abs: _elementwise(P.abs_), builtins.abs: _elementwise(P.abs_),
    builtins.max: _elementwise(P.maximum, 2), builtins.min: _elementwise(P.minimum, 2),
    np.where: _elementwise(P.where, 3),
    np.clip: Elementwise(P.clamp, 3, params=("min", "max")),
    np.sum: Reduction("sum"), np.mean: Reduction("mean"),
    np.max: Reduction("amax"), np.amax: Reduction("amax"),
    np.min: Reduction("amin"), np.amin: Reduction("amin"),
    np.prod: Reduction("prod"), np.linalg.norm: Reduction("norm"),
    np.dot: MatMul(dot=True), np.matmul: MatMul(),
    np.reshape: Reshape(), np.ravel: Reshape(1), np.transpose: Transpose(),
    builtins.float: Identity(to_float=True), np.float64: Identity(to_float=True),
    np.copy: Identity(), builtins.round: Constant(_int_result),
    np.sign: Constant(_same_as_first), np.floor: Constant(_float_of_first),
    np.ceil: Constant(_float_of_first), np.trunc: Constant(_float_of_first),
    math.floor: Constant(_int_result), builtins.int: Constant(_int_result),
    math.ceil: Constant(_int_result), math.trunc: Constant(_int_result),
    builtins.len: Constant(_int_result),
    np.zeros: Constant(_allocated("float")), np.ones: Constant(_allocated("float")),
    np.empty: Constant(_allocated("float")),
    np.eye: Constant(lambda kinds, nodes: Kind("float", 2)),
    np.zeros_like: Constant(_like), np.ones_like: Constant(_like),
    np.arange: Constant(_arange),
    np.linspace: Constant(lambda kinds, nodes: Kind("float", 1)),
    np.isnan: Constant(lambda kinds, nodes: Kind("bool", kinds[0].ndim)),
})

CALLS.update(ARRAY_OPS)

# methods on array values: x.sum(), x.copy(), ...
METHODS = {"sum": Reduction("sum"), "mean": Reduction("mean"), "max": Reduction("amax"),
           "min": Reduction("amin"), "prod": Reduction("prod"), "copy": Identity(),
           "dot": MatMul(dot=True), "reshape": Reshape(), "ravel": Reshape(1),
           "flatten": Reshape(1), "transpose": Transpose()}

# attributes of array values that are plain integers
INT_ATTRIBUTES = {"size", "ndim"}

MODULES = (np, math, np.linalg)

