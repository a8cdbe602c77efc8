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
    "svd_values", "svd_u", "svd_vt", "pinv", "argsort", "take_along_axis",
    "scatter_along_axis", "polygamma", "eig_values", "eig_vectors"])}

# appended to the interpreter's generated module (tapegrad_jit.cpu.interpreter_source)
KERNEL_SOURCE = '''

@njit(**OPTIONS)
def _digamma(x):
    if x != x or x == -math.inf:
        return math.nan
    if x == math.inf:
        return math.inf
    if x <= 0.0 and x == math.floor(x):
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
    """psi^(n)(x) = (-1)^(n+1) n! zeta(n + 1, x) for n >= 1 (x > 0: Euler-Maclaurin after
    shifting x past 20)."""
    if n == 0:
        return _digamma(x)
    if x != x:
        return math.nan
    if x <= 0.0:
        if x == math.floor(x):
            return math.nan if n % 2 == 0 else math.inf
        return math.nan
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


@njit(**OPTIONS)
def _real_eig(m):
    w, vectors = np.linalg.eig(m)   # Numba refuses complex results (a domain change)
    return w, vectors


@njit(**OPTIONS)
def linalg(v, ipool, o, n, a, b, c, kind, count, d1, d2, d3, m):
    if kind == {inv}:
        for i in range(count):
            _store(v, o, i, np.linalg.inv(_matrix(v, a, i, d1, d1)))
    elif kind == {det}:
        for i in range(count):
            v[o + i] = np.linalg.det(_matrix(v, a, i, d1, d1))
    elif kind == {logabsdet}:
        for i in range(count):
            v[o + i] = np.linalg.slogdet(_matrix(v, a, i, d1, d1))[1]
    elif kind == {solve}:
        for i in range(count):
            rhs = np.ascontiguousarray(_matrix(v, b, i, d1, d2))
            _store(v, o, i, np.linalg.solve(_matrix(v, a, i, d1, d1), rhs))
    elif kind == {cholesky}:
        for i in range(count):
            _store(v, o, i, np.linalg.cholesky(_matrix(v, a, i, d1, d1)))
    elif kind == {eigh_values} or kind == {eigh_vectors}:
        for i in range(count):
            w, vectors = np.linalg.eigh(_matrix(v, a, i, d1, d1))
            if kind == {eigh_values}:
                _store(v, o, i, w)
            else:
                _store(v, o, i, vectors)
    elif kind == {eig_values} or kind == {eig_vectors}:
        for i in range(count):
            w, vectors = _real_eig(_matrix(v, a, i, d1, d1))
            if kind == {eig_values}:
                _store(v, o, i, w)
            else:
                _store(v, o, i, vectors)
    elif kind == {svd_values} or kind == {svd_u} or kind == {svd_vt}:
        for i in range(count):
            u, s, vt = np.linalg.svd(_matrix(v, a, i, d1, d2), full_matrices=False)
            if kind == {svd_values}:
                _store(v, o, i, s)
            elif kind == {svd_u}:
                _store(v, o, i, u)
            else:
                _store(v, o, i, vt)
    elif kind == {pinv}:
        for i in range(count):
            _store(v, o, i, np.linalg.pinv(_matrix(v, a, i, d1, d2), v[c]))
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
              count=_size(shape[:-2]), d1=shape[-1])
    return lower


def _rectangular(kind):
    def lower(lowering, ins, shapes, out_shape, **params):
        shape = shapes[0]
        c = lowering.const(params["rcond"]) if "rcond" in params else None
        _emit(lowering, ins, out_shape, kind, lowering.ref(ins.ins[0]), c=c,
              count=_size(shape[:-2]), d1=shape[-2], d2=shape[-1])
    return lower


def _lower_solve(lowering, ins, shapes, out_shape):
    batch = out_shape[:-2]
    n, p = out_shape[-2:]
    a = _expand(lowering, lowering.ref(ins.ins[0]), shapes[0], batch + (n, n))
    b = _expand(lowering, lowering.ref(ins.ins[1]), shapes[1], batch + (n, p))
    _emit(lowering, ins, out_shape, "solve", a, b, count=_size(batch), d1=n, d2=p)


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
