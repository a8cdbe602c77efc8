"""Loop re-rolling: runs of repeated instruction blocks in a lowered tape run as compiled loops.

A traced element loop unrolls into the same few instructions once per trip, each trip's slot
offsets (and index-map offsets, guard numbers) a constant stride past the last trip's. After
lowering (cpu.Program), `find_runs` looks for maximal runs of rows of the code array where a block
of k rows repeats with the same opcodes and every operand column advancing by a constant stride
per trip. It works on the whole code array with NumPy: for each small period k that occurs often
enough, row i is "affine" when rows i, i + k, i + 2k hold the same opcode and
code[i + k] - code[i] == code[i + 2k] - code[i + k]; stretches of affine rows are the runs.

Each run executes as a generated Numba kernel for its body's opcode sequence:

    for t in range(trips):
        x = v[a0]; y = v[b0]; v[o0] = (x - y)      # the interpreter's scalar form of `sub`
        ...
        o0 += so0; a0 += sa0; ...                  # every operand column advances by its stride

the body's statements in row order, trip after trip (the interpreter's order, so values are
bitwise the interpreter's). Offsets and strides are runtime arguments, so the kernel's source
depends only on the opcodes: one cached kernel serves every loop with that body. Statements come
from the interpreter's own tables (the registry's scalar forms, its scatter/gather/place helpers);
a guard returns where it fails, and the interpreter runs the rows between runs.

Only runs of at least MIN_ROWS rows roll (a call of a kernel costs about one dispatch; its first
compile about a second without the disk cache), at most MAX_BODIES distinct bodies per tape (the
ones covering most rows), each of at most MAX_BODY rows. CUDA and the nopython path run the
unchanged code array on the interpreter.
"""
import threading
import warnings

import numpy as np

from . import cache, cpu
from .cpu import A, B, C, N, OP, OUT, SB, X0, X1, X2

MIN_ROWS = 4096      # rows in a run (trips * body length) before rolling pays
MAX_BODY = 64        # longest body (period) looked for
MAX_BODIES = 6       # distinct kernels per tape at most
MAX_CHECKS = 12      # periods checked in full per tape at most
_CHUNK = 1 << 16     # rows compared at once (bounds the temporaries of a long tape)

_ELEMENTWISE = dict(enumerate(form for _, form in cpu.ELEMENTWISE_FORMS))
# operand columns each kind of row reads; every other column is ignored by the body
_COLUMNS = {"elementwise": (OUT, A, B, C), "guard": (A, X0),
            "gather": (OUT, N, A, X0), "scatter_add": (OUT, B, X0),
            "scatter_set": (OUT, B, X0), "place": (OUT, A, X0, X1)}
_ARRAY_ROLLABLE = [cpu.OPCODE[name] for name in ("guard", "gather", "place")]
_SCATTERS = [cpu.OPCODE["scatter_add"], cpu.OPCODE["scatter_set"]]


# ---------------------------------------------------------------------------------------------
# Finding runs
# ---------------------------------------------------------------------------------------------

def rollable_rows(code):
    """Rows a rolled body may hold: scalar elementwise ops, guards, gathers, places and element
    scatters (reductions, matmul, array-wide ops and copying scatters run as loops already)."""
    ops = code[:, OP]
    element_scatter = (code[:, X1] == 1) & (code[:, X2] == 2)
    return ((ops < cpu.NUM_ELEMENTWISE) & (code[:, N] == 1)) | np.isin(ops, _ARRAY_ROLLABLE) | (
        np.isin(ops, _SCATTERS) & element_scatter)


def _affine(code, k, candidates):
    """The rows among `candidates` whose three rows i, i + k, i + 2k advance by one stride."""
    keep = []
    for at in range(0, candidates.size, _CHUNK):
        rows = candidates[at:at + _CHUNK]
        r0 = code[rows].astype(np.int64)
        r1 = code[rows + k].astype(np.int64)
        r2 = code[rows + 2 * k].astype(np.int64)
        keep.append(rows[np.all(r1 + r1 == r0 + r2, axis=1)])
    return np.concatenate(keep) if keep else candidates


def _runs_of_period(code, k, usable, min_rows):
    """(start, k, trips) for the maximal runs of period k among the usable rows."""
    m = code.shape[0] - 2 * k
    ops = code[:, OP]
    ok = usable[:m] & usable[k:k + m] & usable[2 * k:]
    ok &= ops[:m] == ops[k:k + m]
    ok &= ops[:m] == ops[2 * k:]
    candidates = np.flatnonzero(ok)
    if candidates.size + 2 * k < min_rows:
        return []
    good = np.zeros(m + 2, dtype=np.int8)
    good[1 + _affine(code, k, candidates)] = 1
    edges = np.diff(good)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    length = ends - starts
    # a stretch of L affine rows checks every phase of the body at least once when L >= k; then
    # L // k + 2 whole trips are consistent
    trips = length // k + 2
    keep = (length >= k) & (trips * k >= min_rows)
    runs, end = [], 0
    for start, count in zip(starts[keep].tolist(), trips[keep].tolist()):
        skip = max(0, -(-(end - start) // k))     # trips overlapping the previous run
        start, count = start + skip * k, count - skip
        if count * k >= min_rows:
            runs.append((start, k, count))
            end = start + count * k
    return runs


def find_runs(code, min_rows, max_body=MAX_BODY):
    """Disjoint runs (start row, period k, trips), in row order, of rows repeating with affine
    operands; periods are tried from the smallest, each on the rows no shorter period took."""
    n = code.shape[0]
    if n < min_rows:
        return []
    usable = rollable_rows(code)
    ops = code[:, OP]
    runs, checks = [], 0
    for k in range(1, min(max_body, n // 3) + 1):
        # cheap screen: enough usable rows whose opcode repeats k rows later
        if np.count_nonzero((ops[k:] == ops[:-k]) & usable[k:] & usable[:-k]) < min_rows - k:
            continue
        checks += 1
        found = _runs_of_period(code, k, usable, min_rows)
        for start, _, trips in found:
            usable[start:start + trips * k] = False
        runs += found
        if checks == MAX_CHECKS:
            break
    return sorted(runs)


def _select(code, runs):
    """The runs whose bodies are among the MAX_BODIES covering most rows."""
    runs = [(start, k, trips, tuple(code[start:start + k, OP].tolist()))
            for start, k, trips in runs]
    rows = {}
    for _, k, trips, body in runs:
        rows[body] = rows.get(body, 0) + k * trips
    chosen = set(sorted(rows, key=rows.get, reverse=True)[:MAX_BODIES])
    return [run for run in runs if run[3] in chosen]


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

def _kind(opcode):
    if opcode < cpu.NUM_ELEMENTWISE:
        return "elementwise"
    return next(name for name in _COLUMNS if cpu.OPCODE.get(name) == opcode)


def _statement(j, opcode):
    """Lines of body row j (its operands in locals c{j}_{column}), from the interpreter's tables."""
    def p(column):
        return f"c{j}_{column}"
    kind = _kind(opcode)
    if kind == "elementwise":
        form = _ELEMENTWISE[opcode].format("x", "y", f"v[np.uint64({p(C)})]")
        return [f"x = v[np.uint64({p(A)})]", f"y = v[np.uint64({p(B)})]",
                f"v[np.uint64({p(OUT)})] = {form}"]
    if kind == "guard":
        # as the interpreter's guard; the run's row number + 1 tells the caller which failed
        return [f"if (v[np.uint64({p(A)})] != 0.0) != ({p(X0)} != 0):",
                f"    return t * BODY + {j + 1}"]
    if kind == "gather":
        return [f"gather(v, {p(OUT)}, {p(N)}, {p(A)}, ipool, {p(X0)})"]
    if kind == "place":
        return [f"place(v, {p(OUT)}, {p(A)}, ipool, {p(X0)}, {p(X1)})"]
    # only element scatters roll (one entry, in place: the interpreter's scatter with count 1
    # and base mode 2); written out, as a call of the helper costs more than the statement
    update = "+=" if kind == "scatter_add" else "="
    return [f"v[{p(OUT)} + ipool[{p(X0)}]] {update} v[np.uint64({p(B)})]"]


def kernel_source(body):
    """Source of `roll(v, ipool, base, stride, trips)` for a body (its opcodes in row order):
    trip t runs row j with operand columns base[j] + t * stride[j]; 0, or 1 + the run row of
    the guard that failed."""
    setup, loop, advance = [], [], []
    for j, opcode in enumerate(body):
        for column in _COLUMNS[_kind(opcode)]:
            setup += [f"c{j}_{column} = base[{j}, {column}]",
                      f"s{j}_{column} = stride[{j}, {column}]"]
            advance.append(f"c{j}_{column} += s{j}_{column}")
        loop += _statement(j, opcode)
    names = ", ".join(cpu.ELEMENTWISE_FORMS[op][0] if op < cpu.NUM_ELEMENTWISE else _kind(op)
                      for op in body)
    lines = [f"BODY = {len(body)}", "", "",
             "@njit(**OPTIONS)",
             "def roll(v, ipool, base, stride, trips):",
             f'    """Rolled body: {names}."""']
    lines += ["    " + line for line in setup]
    lines += ["    for t in range(trips):"]
    lines += ["        " + line for line in loop + advance]
    lines += ["    return 0", ""]
    return cpu._KERNEL_HEADER + "\n".join(lines)


_kernels = {}
_lock = threading.Lock()


def kernel_for(body):
    """The compiled rolled kernel of a body (loaded from the disk cache when there)."""
    with _lock:
        kernel = _kernels.get(body)
        if kernel is None:
            kernel = cache.load_module("tape_rolled", kernel_source(body)).roll
            v, ipool = np.zeros(1), np.zeros(1, dtype=np.int32)
            table = np.zeros((1, 1), dtype=np.int64)
            from numba import typeof
            kernel.compile(tuple(typeof(a) for a in (v, ipool, table, table, 1)))
            _kernels[body] = kernel
        return kernel


# ---------------------------------------------------------------------------------------------
# Running a program in segments
# ---------------------------------------------------------------------------------------------

def runner(code, ipool, interpreter):
    """A function run(code, ipool, v) for this program's code array that runs its rolled runs
    as kernels and the rows between on `interpreter`; `interpreter` itself when nothing rolls.
    It returns what the interpreter returns: 0, or the number of the first failed guard."""
    runs = _select(code, find_runs(code, MIN_ROWS))
    steps, at = [], 0
    for start, k, trips, body in runs:
        try:
            kernel = kernel_for(body)
        except Exception as exc:       # noqa: BLE001 - e.g. Numba cannot compile it: interpret
            warnings.warn(f"tapegrad_jit: rolled loop kernel unavailable ({exc}); the "
                          "interpreter runs those rows", RuntimeWarning, stacklevel=3)
            continue
        if start > at:
            steps.append((None, code[at:start], at))
        rows = code[start:start + k].astype(np.int64)
        stride = code[start + k:start + 2 * k].astype(np.int64) - rows
        steps.append((kernel, (rows, stride, trips), start))
        at = start + k * trips
    if not steps:
        return interpreter
    if at < code.shape[0]:
        steps.append((None, code[at:], at))
    steps = tuple(steps)

    def run(_code, ipool, v):
        # _code: the program's code array (this runner is made for it; rows are pre-sliced)
        for kernel, args, start in steps:
            if kernel is None:
                status = interpreter(args, ipool, v)
                if status:
                    return status
            else:
                status = kernel(v, ipool, *args)
                if status:
                    return code[start + status - 1, X1]
        return 0

    run.steps = steps
    return run
