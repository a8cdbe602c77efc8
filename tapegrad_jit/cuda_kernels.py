"""Private numba.cuda kernels of the CUDA backend; `tapegrad_jit.cuda` is the public face.

Fixed kernels (gathers, scatters, layout changes) are written once below; kernels whose body
depends on a tape (the batched row kernel, fused elementwise chains) or on a dtype (reductions,
matmul tiles in shared memory) are generated as source and compiled once per distinct source.
All 1-D kernels use grid-stride loops, so any grid covers any size.
"""
import math
import threading

import numpy as np
from numba import cuda

from . import cuda_config as config

_compiled = {}
_compile_lock = threading.Lock()


def _ieee(ufunc):
    def call(x):
        with np.errstate(all="ignore"):
            return ufunc(x)
    return call


class _SimulatorMath:
    """`math` for kernels on the simulator, where they run as Python: a GPU gives IEEE results
    (log(0) = -inf, exp(1000) = inf) where Python's math raises, so the simulator must too."""
    inf, nan, pi, e = math.inf, math.nan, math.pi, math.e
    erf, erfc, floor, trunc, isnan, isinf = (math.erf, math.erfc, math.floor, math.trunc,
                                             math.isnan, math.isinf)
    exp, log, log1p, expm1 = _ieee(np.exp), _ieee(np.log), _ieee(np.log1p), _ieee(np.expm1)
    sqrt, sin, cos, tan, tanh = (_ieee(np.sqrt), _ieee(np.sin), _ieee(np.cos), _ieee(np.tan),
                                 _ieee(np.tanh))


_MATH = _SimulatorMath if config.SIMULATOR else math


def compile_source(source, name):
    """The cuda.jit kernel `name` defined by `source` (cached per source text and name)."""
    with _compile_lock:
        kernel = _compiled.get((source, name))
        if kernel is None:
            namespace = {"cuda": cuda, "np": np, "math": _MATH}
            exec(compile(source, f"<tapegrad cuda {name}>", "exec"), namespace)
            kernel = _compiled[(source, name)] = cuda.jit(namespace[name])
        return kernel


def launch_1d(kernel, n, *args):
    kernel[config.blocks_for(n), config.THREADS](*args)


# ---------------------------------------------------------------------------------------------
# Moving data: gathers, scatters, layout changes
# ---------------------------------------------------------------------------------------------

@cuda.jit
def _gather(src, index, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = src[index[i]]


@cuda.jit
def _copy(src, out):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = src[i]


@cuda.jit
def _scatter(src, src_index, dst_index, out):
    for i in range(cuda.grid(1), dst_index.shape[0], cuda.gridsize(1)):
        out[dst_index[i]] = src[src_index[i]]


@cuda.jit
def _scatter_add(src, src_index, dst_index, out):
    # repeated destinations accumulate, as np.add.at does
    for i in range(cuda.grid(1), dst_index.shape[0], cuda.gridsize(1)):
        cuda.atomic.add(out, dst_index[i], src[src_index[i]])


@cuda.jit
def _to_rows_minor(src, outer, n, inner, out):
    # out[j, r] = element j of row r of a C-ordered array whose batch axis has length n
    total = out.shape[0] * n
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        j = i // n
        r = i - j * n
        a = j // inner
        b = j - a * inner
        out[j, r] = src[(a * n + r) * inner + b]


@cuda.jit
def _to_rows_major(src, out):
    # out[t * d + j] = src[j, t]: the (elements, rows) layout back to the rows-first one
    d, m = src.shape[0], src.shape[1]
    for i in range(cuda.grid(1), d * m, cuda.gridsize(1)):
        t = i // d
        j = i - t * d
        out[i] = src[j, t]


def gather(src, index, out):
    launch_1d(_gather, out.shape[0], src, index, out)


def copy(src, out):
    launch_1d(_copy, out.shape[0], src, out)


def scatter(src, src_index, dst_index, out, add=False):
    launch_1d(_scatter_add if add else _scatter, dst_index.shape[0], src, src_index, dst_index,
              out)


def to_rows_minor(flat, outer, n, inner, out):
    """Copy the rows of a device array (flat C order, batch axis of length n between `outer` and
    `inner` elements) into out[elements, rows]."""
    launch_1d(_to_rows_minor, out.shape[0] * n, flat, outer, n, inner, out)


def to_rows_major(src, out):
    launch_1d(_to_rows_major, src.shape[0] * src.shape[1], src, out)


# ---------------------------------------------------------------------------------------------
# Reductions: (outer, K, inner) views; one thread per output, or blocks of partial results
# ---------------------------------------------------------------------------------------------

_REDUCE_INIT = {"sum": "0", "prod": "1", "amax": "-math.inf", "amin": "math.inf"}
_REDUCE_COMBINE = {
    "sum": "acc + v", "prod": "acc * v",
    # NaN wins, as in np.amax / np.amin
    "amax": "v if (v > acc or v != v) else acc",
    "amin": "v if (v < acc or v != v) else acc",
}

_REDUCE_SOURCE = """
def reduce_serial(x, out, outer, K, inner):
    for o in range(cuda.grid(1), outer * inner, cuda.gridsize(1)):
        a = o // inner
        base = a * K * inner + (o - a * inner)
        acc = {acc}({init})
        for k in range(K):
            v = {acc}(x[base + k * inner])
            acc = {combine}
        out[o] = acc


def reduce_parts(x, parts, outer, K, inner, P):
    buf = cuda.shared.array({threads}, dtype=np.{acc_name})
    tid = cuda.threadIdx.x
    o = cuda.blockIdx.x // P
    p = cuda.blockIdx.x - o * P
    a = o // inner
    base = a * K * inner + (o - a * inner)
    chunk = (K + P - 1) // P
    acc = {acc}({init})
    for k in range(p * chunk + tid, min(K, (p + 1) * chunk), cuda.blockDim.x):
        v = {acc}(x[base + k * inner])
        acc = {combine}
    buf[tid] = acc
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            acc = buf[tid]
            v = buf[tid + s]
            buf[tid] = {combine}
        cuda.syncthreads()
        s //= 2
    if tid == 0:
        parts[o * P + p] = buf[0]
"""


def _accumulator(dtype):
    dtype = np.dtype(dtype)
    return dtype.name if dtype.kind == "f" else "int64"


def _reduce_kernels(op, acc_name):
    source = _REDUCE_SOURCE.format(acc=f"np.{acc_name}", acc_name=acc_name,
                                   init=_REDUCE_INIT[op], combine=_REDUCE_COMBINE[op],
                                   threads=config.REDUCE_THREADS)
    return compile_source(source, "reduce_serial"), compile_source(source, "reduce_parts")


def reduce(op, x, out, outer, K, inner):
    """out[a, b] = op over k of x[a, k, b] (flat arrays, out of the accumulator's dtype)."""
    serial, parts_kernel = _reduce_kernels(op, _accumulator(out.dtype))
    count = outer * inner
    if count >= config.REDUCE_SERIAL_OUTPUTS or K <= config.REDUCE_SERIAL_K:
        launch_1d(serial, count, x, out, outer, K, inner)
        return
    # few outputs over many elements: split each over blocks, then reduce the partial results
    P = max(1, min(config.REDUCE_PARTS, K // (config.REDUCE_THREADS * 4)))
    parts = cuda.device_array(count * P, dtype=out.dtype)
    parts_kernel[count * P, config.REDUCE_THREADS](x, parts, outer, K, inner, P)
    launch_1d(serial, count, parts, out, count, P, 1)


# ---------------------------------------------------------------------------------------------
# Matmul: (batch, M, K) @ (batch, K, N) with shared-memory tiles; batch offsets precomputed
# ---------------------------------------------------------------------------------------------

_MATMUL_SOURCE = """
def matmul(a, b, out, a_offsets, b_offsets, M, K, N):
    sa = cuda.shared.array(({tile}, {tile}), dtype=np.{dtype})
    sb = cuda.shared.array(({tile}, {tile}), dtype=np.{dtype})
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    col = cuda.blockIdx.x * {tile} + tx
    row = cuda.blockIdx.y * {tile} + ty
    z = cuda.blockIdx.z
    ao = a_offsets[z]
    bo = b_offsets[z]
    acc = np.{dtype}(0)
    for t0 in range(0, K, {tile}):
        if row < M and t0 + tx < K:
            sa[ty, tx] = a[ao + row * K + t0 + tx]
        else:
            sa[ty, tx] = 0
        if col < N and t0 + ty < K:
            sb[ty, tx] = b[bo + (t0 + ty) * N + col]
        else:
            sb[ty, tx] = 0
        cuda.syncthreads()
        for j in range({tile}):
            acc += sa[ty, j] * sb[j, tx]
        cuda.syncthreads()
    if row < M and col < N:
        out[(z * M + row) * N + col] = acc
"""


def matmul(a, b, out, a_offsets, b_offsets, M, K, N):
    dtype = np.dtype(out.dtype).name
    kernel = compile_source(_MATMUL_SOURCE.format(tile=config.TILE, dtype=dtype), "matmul")
    tile = config.TILE
    grid = ((N + tile - 1) // tile, (M + tile - 1) // tile, a_offsets.shape[0])
    kernel[grid, (tile, tile)](a, b, out, a_offsets, b_offsets, M, K, N)


# ---------------------------------------------------------------------------------------------
# The row interpreter: the CPU backend's instruction arrays (tapegrad_jit.cpu: code, ipool, v0),
# run by one thread per row over V[slot offset, thread], so that neighbouring threads touch
# neighbouring addresses on every op. For row tapes too long for straight-line code.
# ---------------------------------------------------------------------------------------------

_INTERPRETER_SOURCE = """
def interpret_rows(code, ipool, v0, V, rows, full, first, count, in_offsets, in_sizes, X,
                   out_offsets, out_sizes, Y, status, failures):
    t = cuda.grid(1)
    if t >= count:
        return
    i = first + t
    r = i if full else rows[i]
    for s in range(v0.shape[0]):
        V[s, t] = v0[s]
    column = 0
    for q in range(in_offsets.shape[0]):
        for j in range(in_sizes[q]):
            V[in_offsets[q] + j, t] = X[column + j, r]
        column += in_sizes[q]
    failed = 0
    for k in range(code.shape[0]):
        # one row of the CPU backend's format: OP, OUT, N, A, B, C, SA, SB, SC, X0, X1, X2
        op, o, n, a, b, c = code[k, 0], code[k, 1], code[k, 2], code[k, 3], code[k, 4], code[k, 5]
        if op < {num_elementwise}:
            sa, sb, sc = code[k, 6], code[k, 7], code[k, 8]
            for j in range(n):
                x = V[a + j * sa, t]
                y = V[b + j * sb, t]
                z = V[c + j * sc, t]
{elementwise_cases}
        elif op == {guard}:
            if (V[a, t] != 0.0) != (code[k, 9] != 0):
                failed = code[k, 10]
                break
        elif op == {gather}:
            m = code[k, 9]
            for j in range(n):
                V[o + j, t] = V[a + ipool[m + j], t]
        elif op == {scatter_add} or op == {scatter_set}:
            sb = code[k, 7]
            m = code[k, 9]
            for j in range(n):
                V[o + j, t] = V[a + j, t] if code[k, 11] != 0 else 0.0
            for j in range(code[k, 10]):
                if op == {scatter_add}:
                    V[o + ipool[m + j], t] += V[b + j * sb, t]
                else:
                    V[o + ipool[m + j], t] = V[b + j * sb, t]
        elif op == {place}:
            m = code[k, 9]
            for j in range(code[k, 10]):
                V[o + ipool[m + j], t] = V[a + j, t]
        elif op == {matmul}:
            rows_a = code[k, 9]
            inner = code[k, 10]
            cols_b = code[k, 11]
            for bz in range(code[k, 8]):
                for p in range(rows_a):
                    for q in range(cols_b):
                        acc = 0.0
                        for w in range(inner):
                            acc += (V[a + bz * code[k, 6] + p * inner + w, t]
                                    * V[b + bz * code[k, 7] + w * cols_b + q, t])
                        V[o + (bz * rows_a + p) * cols_b + q, t] = acc
        else:
            kind = op - {reduce_sum}
            m = code[k, 9]
            init = 0.0 if kind == 0 else (1.0 if kind == 1 else (
                -math.inf if kind == 2 else math.inf))
            for j in range(n):
                V[o + j, t] = init
            for w in range(code[k, 10]):
                target = o if m < 0 else o + ipool[m + w]
                x = V[a + w, t]
                acc = V[target, t]
                if kind == 0:
                    V[target, t] = acc + x
                elif kind == 1:
                    V[target, t] = acc * x
                elif kind == 2:
                    if x > acc or x != x:
                        V[target, t] = x
                elif x < acc or x != x:
                    V[target, t] = x
    status[i] = failed
    if failed != 0:
        cuda.atomic.add(failures, 0, 1)
        return
    column = 0
    for q in range(out_offsets.shape[0]):
        for j in range(out_sizes[q]):
            Y[column + j, i] = V[out_offsets[q] + j, t]
        column += out_sizes[q]
"""

INTERPRETER_OPS = ("guard", "gather", "scatter_add", "scatter_set", "place", "reduce_sum",
                   "reduce_prod", "reduce_max", "reduce_min", "matmul")


def interpreter(forms, opcodes):
    """The row interpreter kernel for the CPU backend's opcode table (forms: [(name, form)])."""
    cases = []
    for opcode, (name, form) in enumerate(forms):
        keyword = "if" if opcode == 0 else "elif"
        cases += [f"{keyword} op == {opcode}:  # {name}",
                  f"    V[o + j, t] = {form.format('x', 'y', 'z')}"]
    body = "\n".join(" " * 16 + line for line in cases)
    source = _INTERPRETER_SOURCE.format(num_elementwise=len(forms), elementwise_cases=body,
                                        **{name: opcodes[name] for name in INTERPRETER_OPS})
    return compile_source(source, "interpret_rows")
