"""CPU lowering of the registry's matrix and ordering primitives (inverse, determinants, solve,
Cholesky, eigh, eig, SVD, pinv, argsort and the gathers/scatters along an axis, polygamma).

They share one interpreter op, `linalg`, whose row reads: SA the kind (KINDS), SB the number of
matrices (or lanes, or elements), SC/X0/X1 sizes, X2 an index map in ipool; C a constant operand.
Each kind calls Numba's own np.linalg / np.argsort per matrix or lane of the flat buffer, so a
tape using them runs compiled instead of on the NumPy reference interpreter.
"""
import math

import numpy as np

KINDS = {name: k for k, name in enumerate([
    "inv", "det", "logabsdet", "solve", "cholesky", "eigh_values", "eigh_vectors",
    "svd_values", "svd_u", "svd_vt", "pinv", "eig_values", "eig_vectors",    # one per matrix
    "argsort", "take_along_axis", "scatter_along_axis", "polygamma"])}

# appended to the interpreter's generated module (tapegrad_jit.cpu.interpreter_source)
KERNEL_SOURCE = '''
from numba import objmode

from tapegrad_jit.lowering_linalg import numpy_matrix_op


@njit(**OPTIONS)
def _digamma(x):
    if x != x or x == -math.inf:
        return math.nan
    if x == math.inf:
        return math.inf
    if x == 0.0:
        return math.copysign(math.inf, -x)   # scipy: -inf at +0, inf at -0
    if x < 0.0 and x == math.floor(x):
        return math.nan
    shift = 0.0
    if x < 0.0:
        # reflection: psi(x) = psi(1 - x) - pi / tan(pi x)
        shift = -math.pi / math.tan(math.pi * x)
        x = 1.0 - x
    while x < 10.0:
        shift -= 1.0 / x
        x += 1.0
    inv2 = 1.0 / (x * x)
    series = inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (
        1.0 / 240 - inv2 * (1.0 / 132)))))
    return shift + math.log(x) - 0.5 / x - series


@njit(**OPTIONS)
def _polygamma(x, n):
    """psi^(n)(x) = (-1)^(n+1) n! zeta(n + 1, x) for n >= 1: the terms of the Hurwitz sum
    until x passes 20 (negative x too), then Euler-Maclaurin."""
    if n == 0:
        return _digamma(x)
    if x != x:
        return math.nan
    if x <= 0.0 and x == math.floor(x):
        return math.nan if n % 2 == 0 else math.inf
    s = n + 1.0
    total = 0.0
    while x < 20.0:
        total += x ** -s
        x += 1.0
    # Euler-Maclaurin tail of sum_{k>=0} (x + k)^-s
    total += x ** (1.0 - s) / (s - 1.0) + 0.5 * x ** -s
    term = s * x ** (-s - 1.0)
    bernoulli = (1.0 / 6, -1.0 / 30, 1.0 / 42, -1.0 / 30, 5.0 / 66, -691.0 / 2730, 7.0 / 6)
    factorial = 2.0
    for j in range(7):
        total += bernoulli[j] / factorial * term
        term *= (s + 2 * j + 1.0) * (s + 2 * j + 2.0) / (x * x)
        factorial *= (2 * j + 3.0) * (2 * j + 4.0)
    sign = 1.0 if n % 2 == 1 else -1.0
    return sign * math.gamma(n + 1.0) * total


@njit(**OPTIONS)
def _matrix(v, a, i, rows, cols):
    return v[a + i * rows * cols:a + (i + 1) * rows * cols].reshape((rows, cols))


@njit(**OPTIONS)
def _store(v, o, i, values):
    flat = values.ravel()
    v[o + i * flat.size:o + (i + 1) * flat.size] = flat


@njit(cache=True)  # no nogil: an object-mode block holds the GIL
def _by_numpy(kind, m, rhs, rcond):
    with objmode(out="float64[:]"):
        out = numpy_matrix_op(kind, m, rhs, rcond)
    return out


@njit(**OPTIONS)
def _matrix_op(kind, m, rhs, rcond):
    """One matrix's result, flat. Numba's np.linalg refuses NaN and inf, where NumPy's LAPACK
    computes on (or raises its own error); such matrices, and eig's complex results, go to
    NumPy, so the compiled tape gives the reference interpreter's values and errors."""
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(rhs))):
        return _by_numpy(kind, m, rhs, rcond)
    if kind == {inv}:
        return np.linalg.inv(m).ravel()
    if kind == {det}:
        return np.full(1, np.linalg.det(m))
    if kind == {logabsdet}:
        return np.full(1, np.linalg.slogdet(m)[1])
    if kind == {solve}:
        return np.linalg.solve(m, rhs).ravel()
    if kind == {cholesky}:
        return np.linalg.cholesky(m).ravel()
    if kind == {eigh_values}:
        return np.linalg.eigh(m)[0]
    if kind == {eigh_vectors}:
        return np.linalg.eigh(m)[1].ravel()
    if kind == {svd_u}:
        return np.linalg.svd(m, full_matrices=False)[0].ravel()
    if kind == {svd_values}:
        return np.linalg.svd(m, full_matrices=False)[1]
    if kind == {svd_vt}:
        return np.linalg.svd(m, full_matrices=False)[2].ravel()
    if kind == {pinv}:
        return np.linalg.pinv(m, rcond).ravel()
    # eig: Numba's refuses complex results; NumPy's call then raises tapegrad's error
    failed = False
    try:
        w, vectors = np.linalg.eig(m)
    except Exception:
        failed = True
    if failed:
        return _by_numpy(kind, m, rhs, rcond)
    return w if kind == {eig_values} else vectors.ravel()


@njit(**OPTIONS)
def linalg(v, ipool, o, n, a, b, c, kind, count, d1, d2, d3, m):
    if kind <= {eig_vectors}:
        # count matrices of d1 x d3 (solve: right-hand sides of d1 x d2; pinv: rcond at c)
        for i in range(count):
            matrix = np.ascontiguousarray(_matrix(v, a, i, d1, d3))
            rhs = np.ascontiguousarray(_matrix(v, b, i, d1, d2)) if kind == {solve} else matrix
            _store(v, o, i, _matrix_op(kind, matrix, rhs, v[c]))
    elif kind == {argsort}:
        # count lanes of length d1 and stride d2, lane i starting at ipool[m + i]
        for i in range(count):
            start = ipool[m + i]
            lane = np.empty(d1)
            for j in range(d1):
                lane[j] = v[a + start + j * d2]
            order = np.argsort(lane, kind="mergesort")
            for j in range(d1):
                v[o + start + j * d2] = order[j]
    elif kind == {take_along_axis}:
        # n results: x[base_j + d2 * index_j], base_j = ipool[m + j], index_j in [-d1, d1)
        for j in range(n):
            k = int(v[b + j])
            v[o + j] = v[a + ipool[m + j] + d2 * (k + d1 if k < 0 else k)]
    elif kind == {scatter_along_axis}:
        # count values into n zeros, at base_j + d2 * index_j
        for j in range(n):
            v[o + j] = 0.0
        for j in range(count):
            k = int(v[b + j])
            v[o + ipool[m + j] + d2 * (k + d1 if k < 0 else k)] = v[a + j]
    elif kind == {polygamma}:
        for j in range(n):
            v[o + j] = _polygamma(v[a + j], d1)

'''
for _name, _kind in KINDS.items():
    KERNEL_SOURCE = KERNEL_SOURCE.replace("{" + _name + "}", str(_kind))


NAMES = {k: name for name, k in KINDS.items()}


def numpy_matrix_op(kind, m, rhs, rcond):
    """The registry's NumPy forward for one matrix, flat (called from compiled code)."""
    from tapegrad.core import REGISTRY
    name = NAMES[int(kind)]
    args = (m, rhs) if name == "solve" else (m,)
    params = {"rcond": float(rcond)} if name == "pinv" else {}
    return np.ascontiguousarray(REGISTRY[name].impl(*args, **params), dtype=np.float64).ravel()


def _size(shape):
    return math.prod(shape)


def _expand(lowering, ref, shape, target):
    """ref's elements laid out in the target shape (a gather), or ref when they already are."""
    if tuple(shape) == tuple(target):
        return ref
    grid = np.arange(_size(shape)).reshape(shape)
    return lowering.gather(None, ref, np.broadcast_to(grid, target))


def _emit(lowering, ins, out_shape, kind, a, b=None, c=None, count=0, d1=0, d2=0, d3=0, m=0):
    lowering.emit("linalg", lowering.ref(ins.out), _size(out_shape), a, b, c, sa=KINDS[kind],
                  sb=count, sc=d1, x0=d2, x1=d3, x2=m)


def _square(kind):
    def lower(lowering, ins, shapes, out_shape):
        shape = shapes[0]
        _emit(lowering, ins, out_shape, kind, lowering.ref(ins.ins[0]),
              count=_size(shape[:-2]), d1=shape[-1], d3=shape[-1])
    return lower


def _rectangular(kind):
    def lower(lowering, ins, shapes, out_shape, **params):
        shape = shapes[0]
        c = lowering.const(params["rcond"]) if "rcond" in params else None
        _emit(lowering, ins, out_shape, kind, lowering.ref(ins.ins[0]), c=c,
              count=_size(shape[:-2]), d1=shape[-2], d3=shape[-1])
    return lower


def _lower_solve(lowering, ins, shapes, out_shape):
    batch = out_shape[:-2]
    n, p = out_shape[-2:]
    a = _expand(lowering, lowering.ref(ins.ins[0]), shapes[0], batch + (n, n))
    b = _expand(lowering, lowering.ref(ins.ins[1]), shapes[1], batch + (n, p))
    _emit(lowering, ins, out_shape, "solve", a, b, count=_size(batch), d1=n, d2=p, d3=n)


def _lanes(shape, axis):
    """Flat start of every lane along `axis` in an array of `shape`, and the axis stride."""
    starts = np.take(np.arange(_size(shape)).reshape(shape), [0], axis=axis)
    return starts, _size(shape[axis + 1:])


def _lower_argsort(lowering, ins, shapes, out_shape, axis):
    shape = shapes[0]
    starts, stride = _lanes(shape, axis)
    _emit(lowering, ins, out_shape, "argsort", lowering.ref(ins.ins[0]), count=starts.size,
          d1=shape[axis], d2=stride, m=lowering.index_map(starts))


def _lower_take_along_axis(lowering, ins, shapes, out_shape, axis):
    x_shape, index_shape = shapes
    starts, stride = _lanes(x_shape, axis)
    bases = np.broadcast_to(starts, out_shape)
    indices = _expand(lowering, lowering.ref(ins.ins[1]), index_shape, out_shape)
    _emit(lowering, ins, out_shape, "take_along_axis", lowering.ref(ins.ins[0]), indices,
          count=_size(out_shape), d1=x_shape[axis], d2=stride, m=lowering.index_map(bases))


def _lower_scatter_along_axis(lowering, ins, shapes, out_shape, axis, shape):
    g_shape, index_shape = shapes
    starts, stride = _lanes(out_shape, axis)
    bases = np.broadcast_to(starts, index_shape)
    values = _expand(lowering, lowering.ref(ins.ins[0]), g_shape, index_shape)
    _emit(lowering, ins, out_shape, "scatter_along_axis", values, lowering.ref(ins.ins[1]),
          count=_size(index_shape), d1=out_shape[axis], d2=stride, m=lowering.index_map(bases))


def _lower_polygamma(lowering, ins, shapes, out_shape, n):
    x = _expand(lowering, lowering.ref(ins.ins[0]), shapes[0], out_shape)
    _emit(lowering, ins, out_shape, "polygamma", x, d1=n)


LOWERINGS = {
    "inv": _square("inv"), "det": _square("det"), "logabsdet": _square("logabsdet"),
    "cholesky": _square("cholesky"), "eigh_values": _square("eigh_values"),
    "eigh_vectors": _square("eigh_vectors"), "eig_values": _square("eig_values"),
    "eig_vectors": _square("eig_vectors"),
    "svd_values": _rectangular("svd_values"), "svd_u": _rectangular("svd_u"),
    "svd_vt": _rectangular("svd_vt"), "pinv": _rectangular("pinv"),
    "solve": _lower_solve, "argsort": _lower_argsort,
    "take_along_axis": _lower_take_along_axis, "scatter_along_axis": _lower_scatter_along_axis,
    "polygamma": _lower_polygamma,
}


def lowering_for(lowering, name):
    """The lowering of primitive `name` bound to `lowering` (a cpu._Lowering), or None."""
    rule = LOWERINGS.get(name)
    if rule is None:
        return None
    return lambda ins, shapes, out_shape, **params: rule(lowering, ins, shapes, out_shape, **params)
