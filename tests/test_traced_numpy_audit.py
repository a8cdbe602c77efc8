"""Audit of every NumPy function, ufunc and array method the tracer maps onto primitives.

The entries come from the tracer's own tables (ufuncs, composed ufuncs, ufunc reductions, array
functions) and from the ndarray methods and operators Tracer defines, so a new entry is covered as
soon as it is added: ufuncs get generated cases from their arity, and every other entry must have
cases in CASES below (test_every_entry_has_cases fails otherwise).

Each case is checked against NumPy itself:
- value, shape and dtype, on N-D shapes, broadcasting, axis/keepdims variants, negative axes and
  0-d inputs, with NaN, +-inf, +-0 and huge values among the elements: traced (first call of
  tg.jit) and compiled (second call), float64, float32, int64 and bool inputs; where NumPy
  refuses a case (a dtype, a shape), the tape must refuse it too;
- the gradient of a weighted sum of the result, by central finite differences in float64 at smooth
  points, through tg.grad and through tg.jit(tg.grad) (compiled);
- at the special values, tg.grad and the compiled gradient agree (NaN where NaN).
"""
import math
import operator
from dataclasses import dataclass, field

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import trace

SPECIAL = np.array([np.nan, 1.5, np.inf, -2.0, 0.0, -np.inf, 0.5, -0.0, 3.0, -0.25, 1e300, 2.0])
INTEGERS = np.array([1, -2, 0, 3, 2, -1, 5, 4])


def _tables():
    """(name, entry, kind) for every table entry of the tracer."""
    entries = []
    for ufunc in trace._UFUNCS:
        entries.append((ufunc.__name__, ufunc, "ufunc"))
    for ufunc in trace._COMPOSED_UFUNCS:
        if ufunc not in trace._UFUNCS:
            entries.append((ufunc.__name__, ufunc, "ufunc"))
    for ufunc in trace._REDUCE_UFUNCS:
        entries.append((f"{ufunc.__name__}.reduce", ufunc.reduce, "reduce"))
    for fn in trace._ARRAY_FUNCTIONS:
        module = "np.linalg." if fn is np.linalg.norm else "np."
        entries.append((module + fn.__name__, fn, "function"))
    for name in _tracer_methods():
        entries.append((f"ndarray.{name}", name, "method"))
    for name in _tracer_operators():
        entries.append((name, name, "operator"))
    return entries


_NOT_OPERATORS = {"__init__", "__new__", "__repr__", "__format__", "__array_ufunc__",
                  "__array_function__", "__array__", "__array_priority__", "__len__", "__iter__",
                  "__bool__", "__float__", "__int__", "__complex__", "__index__", "__hash__",
                  "__str__", "__reduce__", "__reduce_ex__", "__sizeof__", "__class__", "__dir__",
                  "__getattribute__", "__setattr__", "__delattr__", "__init_subclass__",
                  "__subclasshook__", "__doc__", "__module__", "__slots__", "__weakref__",
                  "__dict__"}


def _tracer_operators():
    """The Python operators (and indexing) a traced array answers, as ndarray does."""
    names = set()
    for cls in trace.Tracer.__mro__[:-1]:
        names.update(n for n in vars(cls) if n.startswith("__") and hasattr(np.ndarray, n)
                     and n not in _NOT_OPERATORS)
    return sorted(names)


def _tracer_methods():
    """The ndarray methods and properties Tracer defines itself (NumPy's spelling)."""
    names = []
    for name in vars(trace.Tracer):
        if name.startswith("_") or not hasattr(np.ndarray, name):
            continue
        if name in ("shape", "ndim", "size", "dtype", "item", "tolist", "data"):
            continue     # plain attributes, checked by every other case
        names.append(name)
    return sorted(names)


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------

@dataclass
class Case:
    shapes: tuple                  # one array per entry, in argument order
    extra: tuple = ()              # positional arguments after the arrays
    lead: tuple = ()               # positional arguments before them (np.einsum's subscripts)
    pick: int = None               # the result is a sequence (np.split): check this item of it
    kw: dict = field(default_factory=dict)
    seq: bool = False              # the arrays go in as one list (concatenate, stack)
    masks: tuple = ()              # argument positions that are boolean arrays
    grad: bool = True              # differentiable in the float arrays
    positive: bool = False         # smooth points must be > 0 (and special values stay special)
    scalar_args: tuple = ()        # argument positions passed as Python floats
    kinks: bool = False            # the smooth points avoid ties/kinks by spacing them apart
    finite: bool = False           # special values without NaN/inf (NumPy leaves casts of them
                                   # to integers undefined)
    fd_eps: float = 1e-6
    refused: tuple = ()            # input dtypes the tracer refuses with a TraceError on purpose
    grad_rtol: float = 1e-6
    domain: tuple = None           # (low, high) of the smooth points, where the default misses
    atol: float = 0.0              # values near 0 whose float32 rounding NumPy keeps (np.sinc)

    def label(self):
        bits = [repr(e) for e in self.lead] + [str(s) for s in self.shapes]
        bits += [repr(e) for e in self.extra]
        bits += [f"{k}={v!r}" for k, v in self.kw.items()]
        return ",".join(bits)


def C(*shapes, **kw):
    return Case(shapes=shapes, **kw)


UNARY_SHAPES = [(), (5,), (2, 3), (2, 1, 4)]
BINARY_SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1), (1, 3)), ((), (2, 3)), ((3,), ()),
                 ((2, 1, 3), (4, 3))]
POSITIVE_ONLY = {"log", "sqrt", "log1p", "power", "float_power", "logaddexp2", "reciprocal", "log2",
                 "log10", "arccosh"}
NOT_DIFFERENTIABLE = {"sign", "floor", "ceil", "trunc", "rint", "less", "less_equal", "greater",
                      "greater_equal", "equal", "not_equal", "logical_and", "logical_or",
                      "logical_not", "logical_xor", "isnan", "isinf", "isfinite", "signbit",
                      "floor_divide"}
KINKED = {"maximum", "minimum", "fmax", "fmin", "absolute", "fabs", "floor", "ceil", "trunc",
          "sign", "remainder", "fmod"}
DOMAINS = {"arcsin": (-0.9, 0.9), "arccos": (-0.9, 0.9), "arctanh": (-0.9, 0.9),
           "arccosh": (1.1, 3.0), "remainder": (0.3, 0.95), "fmod": (0.3, 0.95)}


def ufunc_cases(ufunc):
    name = ufunc.__name__
    common = dict(grad=name not in NOT_DIFFERENTIABLE, positive=name in POSITIVE_ONLY,
                  kinks=name in KINKED and name not in DOMAINS, domain=DOMAINS.get(name))
    if ufunc is np.matmul:
        return [C((3,), (3,)), C((2, 3), (3,)), C((3,), (3, 4)), C((2, 3), (3, 4)),
                C((2, 2, 3), (3, 4)), C((5, 1, 2, 3), (4, 3, 2))]
    if ufunc.nin == 1:
        return [C(s, **common) for s in UNARY_SHAPES]
    cases = [C(a, b, **common) for a, b in BINARY_SHAPES]
    cases += [C((2, 3), (), scalar_args=(1,), **common), C((), (3,), scalar_args=(0,), **common)]
    return cases


def reduce_cases(name):
    kinks = name in ("maximum", "minimum")
    shapes = [((2, 3, 4), {}), ((2, 3, 4), {"axis": -1}), ((2, 3, 4), {"axis": (0, 2)}),
              ((2, 3, 4), {"axis": None}), ((2, 3, 4), {"axis": 1, "keepdims": True}),
              ((5,), {"axis": 0}), ((5,), {"axis": -1, "keepdims": True}),
              ((2, 3, 4), {"axis": 1, "initial": 0.5}),
              ((2, 3, 4), {"axis": 2, "where": WHERE, "initial": 0.5})]
    return [Case(shapes=(s,), kw=kw, kinks=kinks) for s, kw in shapes]


WHERE = np.array([True, False, True, True])          # broadcast over the last axis


def reduction_cases(kinks=False, identity=True):
    kw_list = [{}, {"axis": 0}, {"axis": -1}, {"axis": (0, -1)}, {"axis": 1, "keepdims": True},
               {"keepdims": True}, {"axis": None}, {"initial": 0.5}, {"axis": 1, "initial": -1.0}]
    kw_list += [{"where": WHERE, "axis": -1}, {"where": WHERE}] if identity else [
        {"where": WHERE, "initial": -0.5, "axis": 1}, {"where": WHERE, "initial": 0.25},
        {"where": WHERE}]       # refused by NumPy: max/min need initial with where
    cases = [C((2, 3, 4), kw=kw, kinks=kinks) for kw in kw_list]
    cases += [C((2, 3, 4), kw={"dtype": np.float32, "axis": 1}, grad=False),
              C((), kinks=kinks), C((5,), kw={"axis": -1}, kinks=kinks),
              C((), kw={"axis": None}, kinks=kinks)]
    return cases


def mean_cases():
    return [c for c in reduction_cases() if "initial" not in c.kw and "where" not in c.kw]


CASES = {
    np.sum: reduction_cases(),
    np.mean: mean_cases(),
    np.prod: reduction_cases(),
    np.amax: reduction_cases(kinks=True, identity=False),
    np.amin: reduction_cases(kinks=True, identity=False),
    np.max: reduction_cases(kinks=True, identity=False),
    np.min: reduction_cases(kinks=True, identity=False),
    np.dot: [C((), (3,)), C((3,), ()), C((3,), (3,)), C((2, 3), (3,)), C((3,), (3, 4)),
             C((2, 3), (3, 4)), C((2, 3), (2, 3, 4)), C((4, 2, 3), (3,)), C((3,), (2, 3, 4)),
             C((2, 2, 3), (5, 3, 2)), C((2, 1, 2, 3), (2, 2, 3, 4))],
    np.matmul: [C((3,), (3,)), C((2, 3), (3,)), C((3,), (3, 4)), C((2, 2, 3), (3, 4)),
                C((5, 1, 2, 3), (4, 3, 2))],
    np.reshape: [C((2, 3), extra=((3, 2),)), C((2, 3), extra=((-1,),)),
                 C((2, 3, 4), extra=((4, -1),)),
                 C((6,), extra=(6,)), C((), extra=((1, 1),)), C((2, 3), kw={"shape": (3, 2)}),
                 C((2, 3, 4), extra=((4, 6),), kw={"order": "F"}),
                 C((2, 3), extra=((3, 2),), kw={"order": "A"})],
    np.transpose: [C((2, 3)), C((2, 3, 4)), C((2, 3, 4), extra=((2, 0, 1),)),
                   C((2, 3, 4), kw={"axes": (-1, 0, -2)}), C((5,)), C(())],
    np.concatenate: [C((2, 3), (1, 3), seq=True), C((2, 3), (2, 1), seq=True, kw={"axis": -1}),
                     C((2, 3, 4), (2, 1, 4), (2, 2, 4), seq=True, kw={"axis": 1}),
                     C((3,), (4,), seq=True), C((2, 3), (4,), seq=True, kw={"axis": None}),
                     C((2, 3), (1, 3), seq=True, kw={"dtype": np.float32}, grad=False)],
    np.stack: [C((2, 3), (2, 3), seq=True), C((2, 3), (2, 3), seq=True, kw={"axis": -1}),
               C((3,), (3,), (3,), seq=True, kw={"axis": 1}), C((), (), seq=True),
               C((2, 3), (2, 3), seq=True, kw={"dtype": np.float32}, grad=False)],
    np.where: [C((2, 3), (2, 3), (2, 3), masks=(0,)), C((2, 3), (3,), (), masks=(0,)),
               C((4, 1), (1, 3), (4, 3), masks=(0,)), C((), (2,), (2,), masks=(0,))],
    np.clip: [C((2, 3), extra=(0.2, 1.0), kinks=True), C((2, 3), extra=(None, 0.7), kinks=True),
              C((2, 3), extra=(0.5, None), kinks=True), C((2, 3), (3,), (2, 3), kinks=True),
              C((5,), kw={"a_min": 0.1, "a_max": 0.9}, kinks=True),
              C((), extra=(0.0, 1.0), kinks=True)],
    np.linalg.norm: [C((5,)), C((2, 3)), C((2, 3), kw={"axis": -1}), C((2, 3), kw={"axis": 0}),
                     C((2, 3), kw={"axis": 1, "keepdims": True}),
                     C((5,), kw={"ord": 1}, kinks=True),
                     C((5,), kw={"ord": 2}), C((5,), kw={"ord": np.inf}, kinks=True),
                     C((2, 3), kw={"ord": "fro"}), C((2, 3, 4), kw={"axis": -1}),
                     C((2, 3), kw={"axis": (0, 1)}), C((5,), kw={"ord": 3}),
                     C((2, 3), kw={"ord": 2}, finite=True), C((3, 4), kw={"ord": -2}, finite=True),
                     C((2, 3), kw={"ord": "nuc"}, finite=True)],
    np.zeros_like: [C((2, 3), grad=False), C((), grad=False),
                    C((2, 3), kw={"shape": (4,)}, grad=False)],
    np.ones_like: [C((2, 3), grad=False), C((4,), grad=False)],
    np.broadcast_to: [C((3,), extra=((2, 3),)), C((2, 1), extra=((2, 4),)), C((), extra=((3,),))],
    np.outer: [C((3,), (4,)), C((2, 2), (3,)), C((), (3,))],
    np.squeeze: [C((1, 3, 1)), C((1, 3, 1), kw={"axis": -1}), C((1, 3, 1), kw={"axis": 0}),
                 C((1, 3, 1), kw={"axis": (0, 2)}), C((1,))],
    np.expand_dims: [C((2, 3), extra=(0,)), C((2, 3), extra=(-1,)), C((2, 3), extra=(1,)),
                     C((), extra=(0,)), C((2, 3), extra=((0, -1),)), C((2, 3), extra=((1, 1),))],
    np.shape: [C((2, 3), grad=False), C((), grad=False)],
    np.ndim: [C((2, 3), grad=False), C((), grad=False)],
    np.size: [C((2, 3), grad=False), C((), grad=False), C((2, 3), extra=(1,), grad=False)],
    np.ravel: [C((2, 3)), C(()), C((2, 3, 4)), C((2, 3, 4), kw={"order": "F"})],
    np.copy: [C((2, 3)), C(()), C((2, 3, 4))],
    # ufunc reductions, by their reduce method
    np.add.reduce: reduce_cases("add"),
    np.multiply.reduce: reduce_cases("multiply"),
    np.maximum.reduce: reduce_cases("maximum"),
    np.minimum.reduce: reduce_cases("minimum"),
    # ndarray methods
    "sum": reduction_cases(), "mean": mean_cases(), "prod": reduction_cases(),
    "max": reduction_cases(kinks=True, identity=False),
    "min": reduction_cases(kinks=True, identity=False),
    "reshape": [C((2, 3), extra=(3, 2)), C((2, 3), extra=((3, 2),)), C((2, 3), extra=(-1,)),
                C((2, 3, 4), extra=(4, -1)), C((2, 3, 4), extra=(4, 6), kw={"order": "F"})],
    "transpose": [C((2, 3)), C((2, 3, 4)), C((2, 3, 4), extra=(2, 0, 1)),
                  C((2, 3, 4), extra=((1, 0, 2),)), C((2, 3, 4), extra=(-1, 0, 1)), C(())],
    "T": [C((2, 3)), C((2, 3, 4)), C((4,))],
    "dot": [C((2, 3), (3,)), C((2, 3), (3, 4)), C((2, 3), (2, 3, 4)), C((3,), ())],
    "astype": [C((2, 3), extra=(np.float32,), fd_eps=1e-2, grad_rtol=1e-5),
               C((2, 3), extra=("float64",)), C((3,), extra=(np.int64,), grad=False, finite=True)],
    "view": [C((2, 3)), C((2, 3, 4))],
    "clip": [C((2, 3), extra=(0.2, 1.0), kinks=True), C((2, 3), extra=(None, 0.7), kinks=True),
             C((2, 3), (3,), (2, 3), kinks=True), C((), extra=(0.0, 1.0), kinks=True)],
    "flatten": [C((2, 3)), C(()), C((2, 3), extra=("F",))],
    "copy": [C((2, 3)), C(()), C((2, 3, 4))],
    "ravel": [C((2, 3)), C((2, 3, 4)), C((2, 3, 4), kw={"order": "F"})],
}
for _ufunc in list(trace._UFUNCS) + list(trace._COMPOSED_UFUNCS):
    CASES.setdefault(_ufunc, ufunc_cases(_ufunc))

# bitwise operators: logical on booleans; on integers refused (not computed as logical)
BITWISE2 = [C((2, 3), (2, 3), masks=(0, 1)), C((2, 3), (3,), masks=(0, 1)),
            C((4, 1), (1, 3), masks=(0, 1)), C((2, 3), (2, 3), grad=False, refused=(np.int64,))]
BITWISE1 = [C((2, 3), masks=(0,)), C((2, 3), grad=False, refused=(np.int64,))]
CASES.update({np.bitwise_and: BITWISE2, np.bitwise_or: BITWISE2, np.invert: BITWISE1})

_OPERATOR_UFUNCS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "mod": np.remainder,
                    "truediv": np.true_divide, "floordiv": np.floor_divide, "pow": np.power,
                    "matmul": np.matmul,
                    "lt": np.less, "le": np.less_equal, "gt": np.greater,
                    "ge": np.greater_equal, "eq": np.equal, "ne": np.not_equal}
for _stem, _ufunc in _OPERATOR_UFUNCS.items():
    _cases = [c for c in ufunc_cases(_ufunc) if not c.scalar_args]
    CASES[f"__{_stem}__"] = CASES[f"__i{_stem}__"] = _cases
    # x.__r<op>__(y) computes y <op> x
    CASES[f"__r{_stem}__"] = [Case(**{**vars(c), "shapes": c.shapes[::-1]}) for c in _cases]
# divmod(x, y) is (x // y, x % y): each item checked against NumPy's
CASES["__divmod__"] = [Case(**{**vars(c), "pick": k}) for c in CASES["__floordiv__"] for k in (0, 1)]
CASES["__rdivmod__"] = [Case(**{**vars(c), "pick": k}) for c in CASES["__rfloordiv__"]
                        for k in (0, 1)]
CASES.update({
    "__neg__": ufunc_cases(np.negative), "__abs__": ufunc_cases(np.absolute),
    "__pos__": ufunc_cases(np.positive),
    "__and__": BITWISE2, "__or__": BITWISE2, "__invert__": BITWISE1,
    "__getitem__": [C((5,), extra=(2,)), C((5,), extra=(-1,)), C((5,), extra=(slice(1, 4),)),
                    C((5,), extra=(slice(None, None, -2),)), C((2, 3), extra=((1, slice(None)),)),
                    C((2, 3), extra=((Ellipsis, 1),)), C((2, 3), extra=((None, 0),)),
                    C((2, 3), extra=((-1, -2),)), C((2, 3, 4), extra=((slice(None), [0, 2], 1),)),
                    C((2, 3), extra=(np.array([[0, 1], [1, 0]]),)),
                    C((2, 3), extra=(([0, 1, 1], [2, 0, 2]),)),
                    C((5,), extra=(np.array([True, False, True, True, False]),)),
                    C((2, 3), extra=(np.array([[True, False, True], [False, True, True]]),)),
                    C((2, 3), extra=((np.array([False, True]), slice(1, None)),)),
                    C((2, 3, 4), extra=((0, Ellipsis, slice(1, 3)),)), C((), extra=((),)),
                    C((), extra=(None,)), C((3,), extra=([2, 2, 0],))],
    "__setitem__": [C((5,), (), extra=(2,)), C((5,), (3,), extra=(slice(1, 4),)),
                    C((5,), (), extra=(slice(None, None, -2),)),
                    C((2, 3), (3,), extra=(0,)), C((2, 3), (2,), extra=((slice(None), -1),)),
                    C((2, 3), (2, 1), extra=((Ellipsis, slice(0, 2)),)),
                    C((2, 3, 4), (2, 3), extra=((slice(None), slice(None), 1),)),
                    C((2, 3), (2,), extra=(([0, 1], [2, 0]),)),
                    C((5,), (3,), extra=(np.array([True, False, True, True, False]),)),
                    C((2, 3), (), extra=(np.array([[True, False, True], [False, True, True]]),)),
                    C((4,), (3,), extra=([1, 3, 1],)), C((), (), extra=((),))],
})

# array functions of the NumPy table (tapegrad/numpy_api.py: compositions of primitives)
CASES.update({
    np.var: [C((2, 3, 4)), C((2, 3, 4), kw={"axis": 1}), C((2, 3, 4), kw={"axis": (0, 2)}),
             C((5,), kw={"ddof": 1}), C((2, 3), kw={"axis": -1, "keepdims": True})],
    np.std: [C((2, 3)), C((2, 3, 4), kw={"axis": (0, -1), "ddof": 1}),
             C((5,), kw={"keepdims": True})],
    np.cumsum: [C((5,)), C((2, 3), kw={"axis": 1}), C((2, 3, 4), kw={"axis": 0}), C((2, 3))],
    np.cumprod: [C((5,)), C((2, 3), kw={"axis": -1}), C((2, 3, 4), kw={"axis": 1})],
    np.trace: [C((3, 3)), C((2, 4), extra=(1,)), C((2, 3, 4), kw={"axis1": 1, "axis2": 2})],
    np.diagonal: [C((3, 4)), C((3, 4), extra=(-1,)), C((2, 3, 4), kw={"axis1": 0, "axis2": 2})],
    np.diag: [C((4,)), C((3,), extra=(1,)), C((3, 4)), C((3, 4), extra=(-1,))],
    np.tril: [C((3, 4)), C((2, 3, 3), extra=(1,))],
    np.triu: [C((3, 4)), C((2, 3, 3), extra=(-1,))],
    np.vstack: [C((2, 3), (1, 3), seq=True), C((3,), (3,), seq=True)],
    np.hstack: [C((2, 3), (2, 1), seq=True), C((3,), (2,), seq=True)],
    np.dstack: [C((2, 3), (2, 3), seq=True), C((3,), (3,), seq=True)],
    np.column_stack: [C((3,), (3,), seq=True), C((3, 2), (3,), seq=True)],
    np.append: [C((2, 3), (4,)), C((2, 3), (1, 3), kw={"axis": 0})],
    np.atleast_1d: [C(()), C((3,))], np.atleast_2d: [C(()), C((3,)), C((2, 3))],
    np.atleast_3d: [C(()), C((3,)), C((2, 3)), C((2, 3, 4))],
    np.moveaxis: [C((2, 3, 4), extra=(0, -1)), C((2, 3, 4), extra=((0, 1), (2, 0)))],
    np.swapaxes: [C((2, 3, 4), extra=(0, 2)), C((2, 3), extra=(-1, 0))],
    np.rollaxis: [C((2, 3, 4), extra=(2,)), C((2, 3, 4), extra=(0, 2))],
    np.flip: [C((2, 3)), C((2, 3, 4), kw={"axis": 1}), C((2, 3), kw={"axis": (0, 1)})],
    np.fliplr: [C((2, 3))], np.flipud: [C((2, 3)), C((4,))],
    np.rot90: [C((2, 3)), C((2, 3, 4), extra=(3, (1, 2)))],
    np.roll: [C((5,), extra=(2,)), C((2, 3), extra=(-1,), kw={"axis": 1}),
              C((2, 3), extra=((1, 2), (0, 1)))],
    np.tile: [C((2, 3), extra=(2,)), C((3,), extra=((2, 2),))],
    np.repeat: [C((2, 3), extra=(2,)), C((2, 3), extra=([1, 0, 2],), kw={"axis": 1})],
    np.split: [C((6,), extra=(3,), pick=1), C((2, 4), extra=([1, 3],), kw={"axis": 1}, pick=2)],
    np.array_split: [C((5,), extra=(3,), pick=0), C((2, 5), extra=(2,), kw={"axis": -1}, pick=1)],
    np.hsplit: [C((2, 4), extra=(2,), pick=1)], np.vsplit: [C((4, 2), extra=([1],), pick=0)],
    np.dsplit: [C((2, 2, 4), extra=(2,), pick=1)],
    np.diff: [C((5,)), C((2, 4), kw={"axis": 0}), C((2, 5), extra=(2,))],
    np.pad: [C((3,), extra=(1,)), C((2, 3), extra=(((0, 1), (2, 0)),)),
             C((2, 3), extra=(1,), kw={"constant_values": 0.5})],
    np.nan_to_num: [C((5,)), C((2, 3), kw={"nan": 1.0, "posinf": 2.0, "neginf": -2.0})],
    np.tensordot: [C((2, 3), (3, 4), extra=(1,)), C((2, 3, 4), (3, 4), extra=(2,)),
                   C((2, 3), (4, 3), extra=(([1], [1]),))],
    np.inner: [C((3,), (3,)), C((2, 3), (4, 3)), C((), (3,))],
    np.kron: [C((2,), (3,)), C((2, 2), (2, 3))],
    np.einsum: [C((2, 3), (3, 4), lead=("ij,jk->ik",)), C((3, 3), lead=("ii",)),
                C((2, 3), (3,), lead=("ij,j",))],
    np.linalg.inv: [C((3, 3), finite=True), C((2, 3, 3), finite=True)],
    np.linalg.det: [C((3, 3), finite=True), C((2, 2, 2), finite=True)],
    np.linalg.slogdet: [C((3, 3), finite=True, pick=1), C((3, 3), finite=True, pick=0,
                                                           grad=False)],
    np.round: [C((2, 3), grad=False), C((5,), extra=(1,), grad=False),
               C((5,), extra=(-1,), grad=False)],
    np.around: [C((2, 3), extra=(2,), grad=False)],
    np.all: [C((2, 3), grad=False), C((2, 3), kw={"axis": 1}, grad=False),
             C((2, 3, 4), kw={"axis": (0, 2), "keepdims": True}, grad=False)],
    np.any: [C((2, 3), grad=False), C((2, 3), kw={"axis": -1}, grad=False), C((), grad=False)],
    np.linspace: [C((), (), extra=(5,)), C((), (), extra=(4,), kw={"endpoint": False}),
                  C((3,), (3,), extra=(4,)), C((), (), extra=(1,))],
    np.gradient: [C((5,)), C((2, 4), pick=1), C((3, 4), extra=(0.5,), kw={"axis": 1})],
    np.argmax: [C((2, 3), grad=False), C((2, 3), kw={"axis": 1}, grad=False),
                C((2, 3, 4), kw={"axis": -1, "keepdims": True}, grad=False)],
    np.argmin: [C((2, 3), grad=False), C((2, 3), kw={"axis": 0}, grad=False)],
    np.argsort: [C((5,), grad=False), C((2, 3), kw={"axis": 0}, grad=False),
                 C((2, 3), kw={"axis": None}, grad=False)],
    np.sort: [C((5,), kinks=True), C((2, 3), kw={"axis": 0}, kinks=True),
              C((2, 3), kw={"axis": None}, kinks=True)],
    np.linalg.solve: [C((3, 3), (3,), finite=True), C((3, 3), (3, 2), finite=True)],
    # decompositions (tests/test_linalg_breadth.py checks them further)
    np.linalg.cholesky: [C((3, 3), finite=True)],
    np.linalg.eigh: [C((3, 3), finite=True, pick=0), C((3, 3), finite=True, pick=1),
                     C((2, 3, 3), finite=True, pick=0)],
    np.linalg.eigvalsh: [C((2, 2, 2), finite=True)],
    np.linalg.eig: [C((2, 2), finite=True, pick=0, domain=(0.3, 1.3))],
    np.linalg.eigvals: [C((2, 2), finite=True, domain=(0.3, 1.3))],
    np.linalg.svd: [C((4, 3), kw={"full_matrices": False}, pick=1, finite=True),
                    C((4, 3), kw={"full_matrices": False}, pick=0, finite=True),
                    C((3, 3), pick=2, finite=True), C((3, 4), kw={"compute_uv": False},
                                                      finite=True)],
    np.linalg.svdvals: [C((3, 4), finite=True), C((2, 3, 2), finite=True)],
    np.linalg.pinv: [C((2, 3), finite=True)],
    np.linalg.vector_norm: [C((5,)), C((2, 3), kw={"axis": 1, "ord": 3}),
                            C((2, 3), kw={"keepdims": True})],
    np.linalg.matrix_norm: [C((3, 3), finite=True), C((2, 3, 4), kw={"ord": "nuc"}, finite=True),
                            C((3, 3), kw={"ord": 2}, finite=True),
                            C((3, 3), kw={"ord": -1}, kinks=True)],
    np.partition: [C((5,), extra=(2,), kinks=True),
                   C((2, 3), extra=(1,), kw={"axis": 0}, kinks=True)],
    np.cross: [C((2, 3), (2, 3)), C((3, 2), (3,), kw={"axisa": 0}),
               C((3, 3), (3, 3), kw={"axisa": 0, "axisb": 1, "axisc": 0})],
    np.select: [C((2, 3), (3,), seq=True, lead=([np.eye(2, 3, dtype=bool),
                                                  np.ones((2, 3), bool)],))],
    # compiled float32 computes in float64: sin(pi * -2) is -4e-17 there, NumPy's float32 3e-8
    np.sinc: [C((2, 3), atol=1e-7), C((5,), atol=1e-7)],
    np.full_like: [C((2, 3), (), finite=True), C((3,), (), kw={"shape": (2, 2)}, finite=True)],
    np.real: [C((2, 3))], np.real_if_close: [C((5,))], np.imag: [C((2, 3), grad=False)],
    np.angle: [C((2, 3), grad=False), C((5,), kw={"deg": True}, grad=False)],
    np.iscomplex: [C((2, 3), grad=False)], np.isreal: [C((5,), grad=False)],
    np.iscomplexobj: [C((2, 3), grad=False)], np.isrealobj: [C((), grad=False)],
    np.isclose: [C((2, 3), (2, 3), grad=False), C((2, 3), (3,), kw={"equal_nan": True},
                                                     grad=False)],
    np.allclose: [C((2, 3), (2, 3), grad=False), C((5,), (5,), kw={"atol": 0.5}, grad=False)],
    np.i0: [C((2, 3)), C((5,), domain=(-12.0, 12.0))],
    np.nansum: [C((2, 3)), C((2, 3, 4), kw={"axis": (0, 2), "keepdims": True})],
    np.nanmean: [C((2, 3)), C((2, 3, 4), kw={"axis": -1})],
    np.average: [C((2, 3)), C((2, 3), kw={"axis": 0}),
                 C((2, 3), kw={"axis": 1, "weights": np.array([1.0, 2.0, 0.5])}),
                 C((2, 3), kw={"weights": np.full((2, 3), 0.5), "returned": True}, pick=1)],
})


def all_cases():
    out = []
    for name, entry, kind in _tables():
        for case in CASES.get(entry, ()):
            out.append(pytest.param(name, entry, kind, case, id=f"{name}[{case.label()}]"))
    return out


# ---------------------------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------------------------

def arrays_for(case, dtype, values):
    """The arrays of a case: `values(shape, k)` fills float arrays; masks are fixed patterns."""
    with np.errstate(over="ignore", invalid="ignore"):     # 1e300 -> inf in float32
        return _arrays_for(case, dtype, values)


def _arrays_for(case, dtype, values):
    arrays = []
    for k, shape in enumerate(case.shapes):
        if k in case.masks:
            arrays.append(np.arange(math.prod(shape)).reshape(shape) % 3 == 1)
        elif k in case.scalar_args:
            arrays.append(float(values(shape, k)))
        else:
            arrays.append(np.asarray(values(shape, k)).astype(dtype))
    return arrays


def special_values(case, dtype=np.float64):
    def fill(shape, k):
        n = math.prod(shape)
        pool = SPECIAL if np.dtype(dtype).kind == "f" else INTEGERS
        pool = pool[np.isfinite(pool)] if case.finite else pool
        if case.positive:
            pool = np.abs(pool) if pool.dtype.kind == "f" else pool[pool > 0]
        return np.roll(pool, 3 * k)[np.arange(n) % pool.size].reshape(shape)
    return fill


def smooth_values(case, seed=0):
    rng = np.random.default_rng(seed)

    def fill(shape, k):
        n = math.prod(shape)
        if case.domain is not None:
            return rng.uniform(*case.domain, size=n).reshape(shape)
        if case.kinks:
            # spaced apart: no ties, no element within 0.05 of another or of a kink at 0
            base = 0.3 + 0.17 * rng.permutation(n) + 0.011 * k
            signs = 1.0 if case.positive else np.where(rng.random(n) < 0.5, -1.0, 1.0)
            return (base * signs).reshape(shape)
        low = 0.3 if case.positive else -1.2
        return rng.uniform(low, 1.3, size=n).reshape(shape)
    return fill


def call(entry, kind, case, arrays):
    args = [list(arrays)] if case.seq else list(arrays)
    if kind == "method":
        first, rest = args[0], args[1:]
        if not hasattr(first, "shape"):
            first = np.asarray(first)
        attr = getattr(first, entry)
        return attr if entry == "T" else attr(*rest, *case.extra, **case.kw)
    if kind == "operator":
        out = _operate(entry, case, args)
        return out if case.pick is None else out[case.pick]
    out = entry(*case.lead, *args, *case.extra, **case.kw)
    return out if case.pick is None else out[case.pick]


def _operate(name, case, args):
    first = args[0]
    if isinstance(first, (np.ndarray, np.generic)):
        first = first.copy()              # in-place operators and writes must not touch the case
    if name == "__getitem__":
        return first[case.extra[0]]
    if name == "__setitem__":
        first[case.extra[0]] = args[1]
        return first
    if len(args) == 1:
        return getattr(first, name)()
    if name.startswith("__i"):
        # `x <op>= y` as Python runs it; a 0-d value is a NumPy scalar (NumPy's reductions and
        # element reads give scalars), which `<op>=` rebinds
        if isinstance(first, np.ndarray) and first.ndim == 0:
            first = first[()]
        return getattr(operator, name.strip("_"))(first, args[1])
    if name.startswith("__r"):
        # the reflected form: `other <op> x`; a Python float on the left reaches x.__r<op>__
        other = args[1]
        if np.ndim(other) == 0 and not hasattr(other, "_ctx"):
            other = other.item()
        return getattr(first, name)(other)
    return getattr(first, name)(args[1])


def function_of(entry, kind, case, template):
    """f(*float arrays) -> the entry's result; masks and Python scalars are constants."""
    positions = [k for k, a in enumerate(template) if isinstance(a, np.ndarray)
                 and k not in case.masks]

    def f(*traced):
        arrays = list(template)
        for k, a in zip(positions, traced):
            arrays[k] = a
        return call(entry, kind, case, arrays)
    return f, positions


def assert_same(actual, expected, rtol=1e-12, what="", atol=0.0):
    expected = np.asarray(expected)
    got = np.asarray(actual)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=what)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=what)


def compiled(fun):
    jitted = tg.jit(fun)

    def run(*args):
        first = jitted(*args)          # traced
        second = jitted(*args)         # compiled
        return first, second
    return run


DTYPES = [np.float64, np.float32, np.int64, np.bool_]


@pytest.mark.parametrize("name, entry, kind, case", all_cases())
def test_value_shape_dtype(name, entry, kind, case):
    for dtype in DTYPES:
        if dtype == np.int64 and kind == "method" and entry == "astype":
            continue
        arrays = arrays_for(case, dtype, special_values(case, dtype))
        if dtype in case.refused:
            f, positions = function_of(entry, kind, case, arrays)
            with pytest.raises(trace.TraceError):
                tg.jit(f)(*[arrays[k] for k in positions])
            continue
        with np.errstate(all="ignore"):
            try:
                expected = call(entry, kind, case, arrays)
            except (TypeError, ValueError) as refusal:
                expected = refusal   # NumPy refuses (this dtype, these shapes): so must the tape
        f, positions = function_of(entry, kind, case, arrays)
        if isinstance(expected, Exception):
            inputs = [arrays[k] for k in positions]
            with pytest.raises(Exception):
                tg.jit(f)(*inputs)
            continue
        if not isinstance(expected, (np.ndarray, np.generic, float)):
            # shapes, ndim, size: static Python values, computed while tracing
            seen = []
            tg.make_tape(lambda *a: seen.append(f(*a)) or a[0])(*[arrays[k] for k in positions])
            assert seen == [expected], name
            continue
        inputs = [arrays[k] for k in positions]
        for label, got in zip(("traced", "compiled"), compiled(f)(*inputs)):
            assert_same(got, expected, rtol=1e-12 if dtype != np.float32 else 1e-6,
                        what=f"{name} {dtype.__name__} {label}",
                        atol=case.atol if dtype == np.float32 else 0.0)


def finite_differences(f, args, k, eps=1e-6):
    x = args[k]
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = [a.copy() for a in args], [a.copy() for a in args]
        up[k][i] += eps
        down[k][i] -= eps
        g[i] = (f(*up) - f(*down)) / (2 * eps)
    return g


def weighted(f, out_shape, seed=1):
    w = np.random.default_rng(seed).standard_normal(out_shape)
    return lambda *a: np.sum(f(*a) * w)


@pytest.mark.parametrize("name, entry, kind, case", [c for c in all_cases() if c.values[3].grad])
def test_gradient(name, entry, kind, case):
    arrays = arrays_for(case, np.float64, smooth_values(case))
    f, positions = function_of(entry, kind, case, arrays)
    inputs = [arrays[k] for k in positions]
    try:
        out_shape = np.shape(f(*inputs))
    except (TypeError, ValueError):
        return                       # NumPy refuses the case; test_value_shape_dtype checks ours
    if not inputs:
        return
    loss = weighted(f, out_shape)
    argnums = tuple(range(len(inputs)))
    expected = [finite_differences(loss, inputs, k, case.fd_eps) for k in argnums]
    grads = tg.grad(loss, argnums=argnums)(*inputs)
    jitted = tg.jit(tg.grad(loss, argnums=argnums))
    jitted(*inputs)
    for label, got in (("grad", grads), ("jit(grad)", jitted(*inputs))):
        for k, (g, e) in enumerate(zip(got, expected)):
            assert np.shape(g) == np.shape(inputs[k]), f"{label} shape of argument {k}"
            np.testing.assert_allclose(g, e, rtol=case.grad_rtol, atol=1e-7,
                                       err_msg=f"{label} argument {k}")

    # at NaN, +-inf, 0 and huge values the faces agree with each other
    arrays = arrays_for(case, np.float64, special_values(case))
    f, positions = function_of(entry, kind, case, arrays)
    inputs = [arrays[k] for k in positions]
    with np.errstate(all="ignore"):
        loss = weighted(f, np.shape(f(*inputs)))
    expected = tg.grad(loss, argnums=argnums)(*inputs)
    jitted = tg.jit(tg.grad(loss, argnums=argnums))
    jitted(*inputs)
    for k, (g, e) in enumerate(zip(jitted(*inputs), expected)):
        np.testing.assert_allclose(g, e, rtol=1e-9, atol=1e-300, equal_nan=True,
                                   err_msg=f"jit(grad) vs grad at special values, argument {k}")


def test_every_entry_has_cases():
    missing = [name for name, entry, kind in _tables() if not CASES.get(entry)]
    assert not missing, f"add audit cases for {missing}"


def test_tables_are_read():
    names = {name for name, _, _ in _tables()}
    assert {"add", "np.dot", "np.linalg.norm", "add.reduce", "ndarray.sum"} <= names


def test_ufunc_keywords():
    x = np.array([0.5, -1.0, 2.0])
    f = tg.jit(lambda x: np.exp(x, dtype=np.float32) + np.sin(x, casting="same_kind"))
    for _ in range(2):
        assert_same(f(x), np.exp(x, dtype=np.float32) + np.sin(x), rtol=1e-6, what="dtype=")
    mask = np.array([True, False, True])
    with pytest.raises(trace.TraceError, match="where"):
        tg.grad(lambda x: np.sum(np.add(x, 1.0, where=mask)))(x)
    with pytest.raises(trace.TraceError, match="out="):
        tg.grad(lambda x: np.sum(np.add(x, 1.0, out=np.empty(3))))(x)
    with pytest.raises(trace.TraceError, match="out="):
        tg.grad(lambda x: np.sum(x, out=np.empty(())))(x)
