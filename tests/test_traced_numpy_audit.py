"""Audit of every NumPy function, ufunc and array method the tracer maps onto primitives.

The entries come from the tracer's own tables (ufuncs, composed ufuncs, ufunc reductions, array
functions) and from the ndarray methods Tracer defines, so a new entry is covered as soon as it is
added: ufuncs get generated cases from their arity, and every other entry must have cases in
CASES below (test_every_entry_has_cases fails otherwise).

Each case is checked against NumPy itself:
- value, shape and dtype, on N-D shapes, broadcasting, axis/keepdims variants, negative axes and
  0-d inputs, with NaN, +-inf, +-0 and huge values among the elements: traced (first call of
  tg.jit) and compiled (second call), float64, float32 and int64 inputs;
- the gradient of a weighted sum of the result, by central finite differences in float64 at smooth
  points, through tg.grad and through tg.jit(tg.grad) (compiled);
- at the special values, tg.grad and the compiled gradient agree (NaN where NaN).
"""
import inspect
import itertools
import math
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
    return entries


def _tracer_methods():
    """The ndarray methods and properties Tracer defines itself (NumPy's spelling)."""
    names = []
    for name, attr in vars(trace.Tracer).items():
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
    grad_rtol: float = 1e-6

    def label(self):
        bits = [str(s) for s in self.shapes] + [repr(e) for e in self.extra]
        bits += [f"{k}={v!r}" for k, v in self.kw.items()]
        return ",".join(bits)


def C(*shapes, **kw):
    return Case(shapes=shapes, **kw)


UNARY_SHAPES = [(), (5,), (2, 3), (2, 1, 4)]
BINARY_SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((4, 1), (1, 3)), ((), (2, 3)), ((3,), ()),
                 ((2, 1, 3), (4, 3))]
POSITIVE_ONLY = {"log", "sqrt", "log1p", "power", "logaddexp2", "reciprocal"}
NOT_DIFFERENTIABLE = {"sign", "floor", "less", "less_equal", "greater", "greater_equal", "equal",
                      "not_equal", "logical_and", "logical_or", "logical_not", "isnan"}
KINKED = {"maximum", "minimum", "absolute", "fabs", "floor", "sign"}


def ufunc_cases(ufunc):
    name = ufunc.__name__
    common = dict(grad=name not in NOT_DIFFERENTIABLE, positive=name in POSITIVE_ONLY,
                  kinks=name in KINKED)
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
        {"where": WHERE, "initial": -0.5, "axis": 1}, {"where": WHERE, "initial": 0.25}]
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
    np.reshape: [C((2, 3), extra=((3, 2),)), C((2, 3), extra=((-1,),)), C((2, 3, 4), extra=((4, -1),)),
                 C((6,), extra=(6,)), C((), extra=((1, 1),)), C((2, 3), kw={"shape": (3, 2)})],
    np.transpose: [C((2, 3)), C((2, 3, 4)), C((2, 3, 4), extra=((2, 0, 1),)),
                   C((2, 3, 4), kw={"axes": (-1, 0, -2)}), C((5,)), C(())],
    np.concatenate: [C((2, 3), (1, 3), seq=True), C((2, 3), (2, 1), seq=True, kw={"axis": -1}),
                     C((2, 3, 4), (2, 1, 4), (2, 2, 4), seq=True, kw={"axis": 1}),
                     C((3,), (4,), seq=True)],
    np.stack: [C((2, 3), (2, 3), seq=True), C((2, 3), (2, 3), seq=True, kw={"axis": -1}),
               C((3,), (3,), (3,), seq=True, kw={"axis": 1}), C((), (), seq=True)],
    np.where: [C((2, 3), (2, 3), (2, 3), masks=(0,)), C((2, 3), (3,), (), masks=(0,)),
               C((4, 1), (1, 3), (4, 3), masks=(0,)), C((), (2,), (2,), masks=(0,))],
    np.clip: [C((2, 3), extra=(0.2, 1.0), kinks=True), C((2, 3), extra=(None, 0.7), kinks=True),
              C((2, 3), extra=(0.5, None), kinks=True), C((2, 3), (3,), (2, 3), kinks=True),
              C((5,), kw={"a_min": 0.1, "a_max": 0.9}, kinks=True), C((), extra=(0.0, 1.0), kinks=True)],
    np.linalg.norm: [C((5,)), C((2, 3)), C((2, 3), kw={"axis": -1}), C((2, 3), kw={"axis": 0}),
                     C((2, 3), kw={"axis": 1, "keepdims": True}), C((5,), kw={"ord": 1}, kinks=True),
                     C((5,), kw={"ord": 2}), C((5,), kw={"ord": np.inf}, kinks=True),
                     C((2, 3), kw={"ord": "fro"}), C((2, 3, 4), kw={"axis": -1}),
                     C((2, 3), kw={"axis": (0, 1)}), C((5,), kw={"ord": 3})],
    np.zeros_like: [C((2, 3), grad=False), C((), grad=False)],
    np.ones_like: [C((2, 3), grad=False), C((4,), grad=False)],
    np.broadcast_to: [C((3,), extra=((2, 3),)), C((2, 1), extra=((2, 4),)), C((), extra=((3,),))],
    np.outer: [C((3,), (4,)), C((2, 2), (3,)), C((), (3,))],
    np.squeeze: [C((1, 3, 1)), C((1, 3, 1), kw={"axis": -1}), C((1, 3, 1), kw={"axis": 0}),
                 C((1, 3, 1), kw={"axis": (0, 2)}), C((1,))],
    np.expand_dims: [C((2, 3), extra=(0,)), C((2, 3), extra=(-1,)), C((2, 3), extra=(1,)),
                     C((), extra=(0,))],
    np.shape: [C((2, 3), grad=False), C((), grad=False)],
    np.ndim: [C((2, 3), grad=False), C((), grad=False)],
    np.size: [C((2, 3), grad=False), C((), grad=False)],
    np.ravel: [C((2, 3)), C(()), C((2, 3, 4))],
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
                C((2, 3, 4), extra=(4, -1))],
    "transpose": [C((2, 3)), C((2, 3, 4)), C((2, 3, 4), extra=(2, 0, 1)),
                  C((2, 3, 4), extra=((1, 0, 2),)), C((2, 3, 4), extra=(-1, 0, 1)), C(())],
    "T": [C((2, 3)), C((2, 3, 4)), C((4,))],
    "dot": [C((2, 3), (3,)), C((2, 3), (3, 4)), C((2, 3), (2, 3, 4)), C((3,), ())],
    "astype": [C((2, 3), extra=(np.float32,), fd_eps=1e-2, grad_rtol=1e-5),
               C((2, 3), extra=("float64",)), C((3,), extra=(np.int64,), grad=False, finite=True)],
    "view": [C((2, 3)), C((2, 3, 4))],
    "flatten": [C((2, 3)), C(())],
    "ravel": [C((2, 3)), C((2, 3, 4))],
}
for _ufunc in list(trace._UFUNCS) + list(trace._COMPOSED_UFUNCS):
    CASES.setdefault(_ufunc, ufunc_cases(_ufunc))


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
    return entry(*args, *case.extra, **case.kw)


def function_of(entry, kind, case, template):
    """f(*float arrays) -> the entry's result; masks and Python scalars are constants."""
    positions = [k for k, a in enumerate(template) if isinstance(a, np.ndarray)
                 and a.dtype != np.bool_]

    def f(*traced):
        arrays = list(template)
        for k, a in zip(positions, traced):
            arrays[k] = a
        return call(entry, kind, case, arrays)
    return f, positions


def assert_same(actual, expected, rtol=1e-12, what=""):
    expected = np.asarray(expected)
    actual_arr = np.asarray(actual)
    assert actual_arr.shape == expected.shape, f"{what}: shape {actual_arr.shape} != {expected.shape}"
    assert actual_arr.dtype == expected.dtype, f"{what}: dtype {actual_arr.dtype} != {expected.dtype}"
    if expected.dtype.kind in "fc":
        np.testing.assert_allclose(actual_arr, expected, rtol=rtol, atol=0, equal_nan=True,
                                   err_msg=what)
    else:
        np.testing.assert_array_equal(actual_arr, expected, err_msg=what)


def compiled(fun):
    jitted = tg.jit(fun)

    def run(*args):
        first = jitted(*args)          # traced
        second = jitted(*args)         # compiled
        return first, second
    return run


DTYPES = [np.float64, np.float32, np.int64]


@pytest.mark.parametrize("name, entry, kind, case", all_cases())
def test_value_shape_dtype(name, entry, kind, case):
    for dtype in DTYPES:
        if dtype == np.int64 and kind == "method" and entry == "astype":
            continue
        arrays = arrays_for(case, dtype, special_values(case, dtype))
        with np.errstate(all="ignore"):
            try:
                expected = call(entry, kind, case, arrays)
            except (TypeError, ValueError):
                continue             # NumPy refuses this dtype (e.g. logical ops are fine, ...)
        f, positions = function_of(entry, kind, case, arrays)
        if not isinstance(expected, (np.ndarray, np.generic, float)):
            # shapes, ndim, size: static Python values, computed while tracing
            seen = []
            tg.make_tape(lambda *a: seen.append(f(*a)) or a[0])(*[arrays[k] for k in positions])
            assert seen == [expected], name
            continue
        inputs = [arrays[k] for k in positions]
        for label, got in zip(("traced", "compiled"), compiled(f)(*inputs)):
            assert_same(got, expected, rtol=1e-12 if dtype != np.float32 else 1e-6,
                        what=f"{name} {dtype.__name__} {label}")


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
    if not inputs:
        return
    loss = weighted(f, np.shape(f(*inputs)))
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
