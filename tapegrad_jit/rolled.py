"""Loop re-rolling: runs of repeated instruction blocks in a lowered tape run as compiled loops.

A traced element loop unrolls into the same few instructions once per trip, each trip's slot
offsets (and index-map offsets, guard numbers) a constant stride past the last trip's. After
lowering (cpu.Program), `find_runs` looks for maximal runs of rows of the code array where a block
of k rows repeats with the same opcodes and every operand column advancing by a constant stride
per trip. It works on the whole code array with NumPy: for each small period k that occurs often
enough, row i is "affine" when rows i, i + k, i + 2k hold the same opcode and
code[i + k] - code[i] == code[i + 2k] - code[i + k]; stretches of affine rows are the runs.

Each run executes as a generated Numba kernel (diff_energy's forward, `s += (x[i+1] - x[i])**2`):

    for t in range(trips):
        l0_3 = v[b0 + q0]                   # operand columns: a base plus q = t * stride
        r0 = float((l0_3 - k1))             # the interpreter's scalar form of `sub`; k1: x[i]
        v[b2 + q0] = r0                     # every result is stored, as the interpreter does
        r1 = float((((r0 * r0)) + k3))      # r0 reused from a local, k3: last trip's sum
        v[b4 + q0] = r1
        k1, k2, k3 = l0_3, k3, r1           # carried to the next trip
        q0 += s0

the body's statements in row order, trip after trip (the interpreter's order and operations, so
values are bitwise the interpreter's). Bases and strides are runtime arguments: the source depends
only on the run's structure (see `layout`: the opcodes, which columns name the same operand, which
share a stride, which slot one trip reads that the last wrote), the same for a loop at any length,
so one cached kernel serves it. A value is taken from a local instead of memory only while no
write can have reached its slot since (operands of one stride never meet; operands of other
strides and the ranges that gathers, element scatters and places write are checked apart over the
run). Statements come from the interpreter's own tables (the registry's scalar forms, its gather
and place helpers); a guard returns where it fails, and the interpreter runs the rows between runs.

Only runs of at least MIN_ROWS rows roll (calling a kernel costs about a dispatch; compiling one
0.2-0.4 s of CPU without the disk cache), at most MAX_BODIES structures per tape (the ones
covering most rows), bodies of at most MAX_BODY rows. CUDA and the nopython path run the unchanged
code array on the interpreter.
"""
import threading
import warnings

import numpy as np

from . import cache, cpu
from .cpu import A, B, C, N, OP, OUT, X0, X1, X2

MIN_ROWS = 2048      # rows in a run (trips * body length) before rolling pays: a 1k-op
                     # scalar graph (~3k repeating rows) 16.7 -> 11.1 us a call (AMD EPYC)
MAX_BODY = 64        # longest body (period) looked for
MAX_BODIES = 6       # distinct kernels per tape at most
MAX_CHECKS = 8       # periods checked in full per tape at most
_CHUNK = 1 << 16     # rows compared at once (bounds the temporaries of a long tape)
_SAMPLE = 8          # the screen of a period reads every _SAMPLE-th row

_ELEMENTWISE = dict(enumerate(form for _, form in cpu.ELEMENTWISE_FORMS))
# the columns each kind of array row uses (elementwise rows: see _uses); the others are ignored
_ROLES = {"guard": ((A, "read"), (X0, "int")),
          "gather": ((OUT, "int"), (N, "int"), (A, "int"), (X0, "int")),
          "scatter_add": ((OUT, "int"), (B, "read"), (X0, "int")),
          "scatter_set": ((OUT, "int"), (B, "read"), (X0, "int")),
          "place": ((OUT, "int"), (A, "int"), (X0, "int"), (X1, "int"))}
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


def _runs_of_period(code, k, usable, min_rows):
    """(start, k, trips) for the maximal runs of period k among the usable rows."""
    m = code.shape[0] - 2 * k
    good = np.zeros(m + 2, dtype=np.int8)
    for at in range(0, m, _CHUNK):
        top = min(m, at + _CHUNK)
        # int32 differences are exact: every column of a usable row is >= 0
        step = code[at + k:top + k] - code[at:top]
        next_step = code[at + 2 * k:top + 2 * k] - code[at + k:top + k]
        ok = (step[:, OP] == 0) & np.all(step == next_step, axis=1)
        ok &= usable[at:top] & usable[at + k:top + k] & usable[at + 2 * k:top + 2 * k]
        good[1 + at:1 + top] = ok
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
    # the screen looks at every _SAMPLE-th row: opcode and output repeating affinely
    # (contiguous copies: the strided reads below then touch 1/_SAMPLE of the memory)
    ops, out = code[:, OP].copy(), code[:, OUT].astype(np.int64)
    max_body = min(max_body, n // 3)
    sample = slice(0, n - 2 * max_body, _SAMPLE)
    ops0, out0 = ops[sample], out[sample]
    runs, checks = [], 0
    for k in range(1, max_body + 1):
        m = ops0.size
        ops1, ops2 = ops[k::_SAMPLE][:m], ops[2 * k::_SAMPLE][:m]
        hits = (ops0 == ops1) & (ops1 == ops2)
        if np.count_nonzero(hits) * _SAMPLE < min_rows - 2 * k:
            continue
        hits &= out[k::_SAMPLE][:m] * 2 == out0 + out[2 * k::_SAMPLE][:m]
        hits &= usable[sample] & usable[k::_SAMPLE][:m] & usable[2 * k::_SAMPLE][:m]
        if np.count_nonzero(hits) * _SAMPLE < min_rows - 2 * k:
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
    """(start, trips, base rows, strides, structure) of the runs whose structures (see layout)
    are among the MAX_BODIES covering most rows: each distinct structure is one kernel."""
    laid = []
    for start, k, trips in runs:
        rows = code[start:start + k].astype(np.int64)
        stride = code[start + k:start + 2 * k].astype(np.int64) - rows
        body = tuple(code[start:start + k, OP].tolist())
        laid.append((start, trips, rows, stride, layout(body, rows, stride, trips)))
    covered = {}
    for _, trips, rows, _, structure in laid:
        covered[structure] = covered.get(structure, 0) + trips * len(rows)
    chosen = set(sorted(covered, key=covered.get, reverse=True)[:MAX_BODIES])
    return [run for run in laid if run[4] in chosen]


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

def _kind(opcode):
    if opcode < cpu.NUM_ELEMENTWISE:
        return "elementwise"
    return next(name for name in _ROLES if cpu.OPCODE.get(name) == opcode)


def _uses(body):
    """(row, column, role) for every column the body's statements use, in a fixed order; role
    "read"/"write": a slot of v, "int": an integer (index-map offset, count, expected value)."""
    for j, opcode in enumerate(body):
        if opcode < cpu.NUM_ELEMENTWISE:
            form = _ELEMENTWISE[opcode]
            for column, k in ((A, 0), (B, 1), (C, 2)):
                if "{%d}" % k in form:
                    yield j, column, "read"
            yield j, OUT, "write"
        else:
            for column, role in _ROLES[_kind(opcode)]:
                yield j, column, role


def layout(body, base, stride, trips):
    """The structure of a run, which its kernel's source is made from (nothing in it depends on
    where the loop sits or on its length): each used column's operand number (columns with the
    same base and stride share one), each operand's stride group, the carries (operand q reads at
    trip t what operand p held at trip t - 1), and whether operands of different strides, and
    the ranges gathers/scatters/places write, provably never meet another operand in this run."""
    uses = list(_uses(body))
    numbers, operands = {}, []
    for j, column, _ in uses:
        key = (int(base[j, column]), int(stride[j, column]))
        if key not in numbers:
            numbers[key] = len(operands)
            operands.append(key)
    groups = {}
    group_of = tuple(groups.setdefault(s, len(groups)) for _, s in operands)
    slots = sorted({numbers[int(base[j, c]), int(stride[j, c])] for j, c, role in uses
                    if role != "int"})
    carries = tuple((q, numbers[b + s, s]) for q in slots for b, s in [operands[q]]
                    if (b + s, s) in numbers and numbers[b + s, s] in slots)
    # each slot operand's address range over the run
    b = np.array([operands[q][0] for q in slots], dtype=np.int64).reshape(-1, 1)
    s = np.array([operands[q][1] for q in slots], dtype=np.int64).reshape(-1, 1)
    ends = np.concatenate([b, b + (trips - 1) * s], axis=1)
    low, high = ends.min(axis=1), ends.max(axis=1)
    apart = (high[:, None] < low[None, :]) | (high[None, :] < low[:, None])
    same = s[:, 0][:, None] == s[:, 0][None, :]
    strides_apart = bool(np.all(apart | same))
    ranges_apart = True
    for j, opcode in enumerate(body):
        if _kind(opcode) in ("gather", "place", "scatter_add", "scatter_set"):
            first = base[j, OUT], base[j, OUT] + base[j, N]
            last = [x + (trips - 1) * y for x, y in zip(first, (stride[j, OUT],
                                                               stride[j, OUT] + stride[j, N]))]
            written_low, written_high = min(first[0], last[0]), max(first[1], last[1]) - 1
            ranges_apart &= bool(np.all((high < written_low) | (written_high < low)))
    return (tuple(body), tuple(numbers[int(base[j, c]), int(stride[j, c])] for j, c, _ in uses),
            group_of, carries, strides_apart, ranges_apart)


def _statements(structure, known):
    """The loop body's lines, given the operands whose value is in a local at the trip's start
    (`known`: operand -> name); returns (lines, known at the trip's end). Every result is stored
    (later rows and the interpreter read memory); a value is reused from a local only while no
    write can have reached its slot since."""
    body, numbers, group_of, _, strides_apart, ranges_apart = structure
    known = dict(known)
    number = {(j, c): n for (j, c, _), n in zip(_uses(body), numbers)}

    def at(j, column):
        n = number[j, column]
        return f"b{n} + q{group_of[n]}"

    def read(j, column):
        n = number[j, column]
        if n not in known:
            known[n] = f"l{j}_{column}"
            lines.append(f"l{j}_{column} = v[np.uint64({at(j, column)})]")
        return known[n]

    lines = []
    for j, opcode in enumerate(body):
        kind = _kind(opcode)
        if kind == "elementwise":
            form = _ELEMENTWISE[opcode]
            operands = [read(j, column) if "{%d}" % k in form else None
                        for column, k in ((A, 0), (B, 1), (C, 2))]
            out = number[j, OUT]
            lines += [f"r{j} = float({form.format(*operands)})",
                      f"v[np.uint64({at(j, OUT)})] = r{j}"]
            for n in list(known):
                if group_of[n] != group_of[out] and not strides_apart:
                    del known[n]      # another stride may meet this slot at some trip
            known[out] = f"r{j}"
        elif kind == "guard":
            # as the interpreter's guard; the run's row number + 1 tells the caller which failed
            lines += [f"if ({read(j, A)} != 0.0) != ({at(j, X0)} != 0):",
                      f"    return t * BODY + {j + 1}"]
        else:
            if kind == "gather":
                lines.append(f"gather(v, {at(j, OUT)}, {at(j, N)}, {at(j, A)}, ipool, "
                             f"{at(j, X0)})")
            elif kind == "place":
                lines.append(f"place(v, {at(j, OUT)}, {at(j, A)}, ipool, {at(j, X0)}, "
                             f"{at(j, X1)})")
            else:
                # only element scatters roll (one entry, in place: the interpreter's scatter
                # with count 1 and base mode 2); written out, a call costs more than it
                update = "+=" if kind == "scatter_add" else "="
                lines.append(f"v[np.uint64({at(j, OUT)} + ipool[{at(j, X0)}])] {update} "
                             f"{read(j, B)}")
            if not ranges_apart:
                known.clear()
    return lines, known


def kernel_source(structure):
    """Source of `roll(v, ipool, base, stride, trips)` for a run's structure (see layout): trip t
    runs row j with its columns at base[j] + t * stride[j]; returns 0, or 1 + the run row of
    the guard that failed."""
    body, numbers, group_of, carries, _, _ = structure
    setup, first_group = [], {}
    seen = set()
    for (j, column, _), n in zip(_uses(body), numbers):
        if n not in seen:
            seen.add(n)
            setup.append(f"b{n} = base[{j}, {column}]")
            if group_of[n] not in first_group:
                first_group[group_of[n]] = (j, column)
    for g, (j, column) in sorted(first_group.items()):
        setup += [f"s{g} = stride[{j}, {column}]", f"q{g} = 0"]
    _, at_end = _statements(structure, {})
    carried = [(q, p) for q, p in carries if p in at_end]
    lines, at_end = _statements(structure, {q: f"k{q}" for q, _ in carried})
    for q, _ in carried:
        setup.append(f"k{q} = v[np.uint64(b{q})]")
    if carried:
        # all at once: one carry's new value may be another's old one
        lines.append(", ".join(f"k{q}" for q, _ in carried) + " = "
                     + ", ".join(at_end[p] for _, p in carried))
    lines += [f"q{g} += s{g}" for g in sorted(first_group)]
    names = ", ".join(cpu.ELEMENTWISE_FORMS[op][0] if op < cpu.NUM_ELEMENTWISE else _kind(op)
                      for op in body)
    text = [f"BODY = {len(body)}", "", "",
            "@njit(**OPTIONS)",
            "def roll(v, ipool, base, stride, trips):",
            f'    """Rolled body: {names}."""']
    text += ["    " + line for line in setup]
    text += ["    for t in range(trips):"]
    text += ["        " + line for line in lines]
    text += ["    return 0", ""]
    return cpu._KERNEL_HEADER + "\n".join(text)


_kernels = {}
_lock = threading.Lock()


def kernel_for(structure):
    """The compiled rolled kernel of a run's structure (from the disk cache when there)."""
    with _lock:
        kernel = _kernels.get(structure)
        if kernel is None:
            kernel = cache.load_module("tape_rolled", kernel_source(structure)).roll
            v, ipool = np.zeros(1), np.zeros(1, dtype=np.int32)
            table = np.zeros((1, 1), dtype=np.int64)
            from numba import typeof
            kernel.compile(tuple(typeof(a) for a in (v, ipool, table, table, 1)))
            _kernels[structure] = kernel
        return kernel


# ---------------------------------------------------------------------------------------------
# Running a program in segments
# ---------------------------------------------------------------------------------------------

def _steps(code, runs):
    """(kernel or None, its arguments, first row) in row order: each run's kernel and the rows
    between runs (None: the interpreter's)."""
    steps, at = [], 0
    for start, trips, rows, stride, structure in runs:
        try:
            kernel = kernel_for(structure)
        except Exception as exc:       # noqa: BLE001 - e.g. Numba cannot compile it: interpret
            warnings.warn(f"tapegrad_jit: rolled loop kernel unavailable ({exc}); the "
                          "interpreter runs those rows", RuntimeWarning, stacklevel=4)
            continue
        if start > at:
            steps.append((None, code[at:start], at))
        steps.append((kernel, (rows, stride, trips), start))
        at = start + len(rows) * trips
    if at < code.shape[0]:
        steps.append((None, code[at:], at))
    return tuple(steps)


def runner(code, ipool, interpreter):
    """A function run(code, ipool, v) for this program's code array that runs its rolled runs
    as kernels and the rows between on `interpreter`; `interpreter` itself when nothing rolls.
    It returns what the interpreter returns: 0, or the number of the first failed guard. The
    kernels are made on the first call (a Program used only for its code compiles nothing)."""
    runs = _select(code, find_runs(code, MIN_ROWS))
    if not runs:
        return interpreter
    made, lock = [], threading.Lock()

    def steps():
        if not made:
            with lock:
                if not made:
                    made.append(_steps(code, runs))
        return made[0]

    def run(_code, ipool, v):
        # _code: the program's code array (this runner is made for it; rows are pre-sliced)
        for kernel, args, start in made[0] if made else steps():
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
