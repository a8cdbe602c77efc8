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
from .cpu import A, B, C, N, OP, OUT, SA, SB, SC, X0, X1, X2

MIN_ROWS = 2048      # rows in a run (trips * body length) before rolling pays: a 1k-op
                     # scalar graph (~3k repeating rows) 16.7 -> 11.1 us a call (AMD EPYC)
MAX_BODY = 64        # longest body (period) looked for
MAX_BODIES = 6       # distinct kernels per tape at most
MAX_CHECKS = 8       # periods checked in full per tape at most
_CHUNK = 1 << 16     # rows compared at once (bounds the temporaries of a long tape)
_SAMPLE = 8          # the screen of a period reads every _SAMPLE-th row

_ELEMENTWISE = dict(enumerate(form for _, form in cpu.ELEMENTWISE_FORMS))
_REDUCTIONS = {cpu.OPCODE["reduce_" + name]: k for k, name in enumerate(("sum", "prod", "max", "min"))}
# array rows a body may hold (linalg and pool rows run alone); the kinds (see _row_uses) by opcode
_KINDS = {cpu.OPCODE[name]: name for name in ("guard", "gather", "place", "scatter_add",
                                                "scatter_set", "matmul")}
_KINDS.update({opcode: "reduce" for opcode in _REDUCTIONS})
_ARRAY_ROLLABLE = list(_KINDS)


# ---------------------------------------------------------------------------------------------
# Finding runs
# ---------------------------------------------------------------------------------------------

def rollable_rows(code):
    """Rows a rolled body may hold: elementwise ops of any length, guards, gathers, places,
    scatters, reductions and matrix products (the interpreter's helpers run them; linalg and
    pool rows do not roll)."""
    ops = code[:, OP]
    return (ops < cpu.NUM_ELEMENTWISE) | np.isin(ops, _ARRAY_ROLLABLE)


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
        laid.append((start, trips, rows, stride, layout(rows, stride, trips)))
    covered = {}
    for _, trips, rows, _, structure in laid:
        covered[structure] = covered.get(structure, 0) + trips * len(rows)
    chosen = set(sorted(covered, key=covered.get, reverse=True)[:MAX_BODIES])
    return [run for run in laid if run[4] in chosen]


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

def _kind(opcode):
    return "elementwise" if opcode < cpu.NUM_ELEMENTWISE else _KINDS[opcode]


def _row_uses(opcode, row, step):
    """(column, role) for every column a row's statement uses, in a fixed order, given the row at
    the first trip and its stride. Roles: "read"/"write", one slot of v (a local may hold its
    value); "addr", where a range of v starts; "int", another integer (index-map offset, expected
    value); "lit", a count, stride or mode, written into the source where it is the same at every
    trip (else an "int")."""
    def lit(column):
        return column, "lit" if step[column] == 0 else "int"

    kind = _kind(opcode)
    if kind == "elementwise":
        form = _ELEMENTWISE[opcode]
        used = [(column, s) for column, s, k in ((A, SA, 0), (B, SB, 1), (C, SC, 2))
                if "{%d}" % k in form]
        if row[N] == 1 and step[N] == 0:        # the interpreter's scalar form
            return [(column, "read") for column, _ in used] + [(OUT, "write")]
        return [lit(N), (OUT, "addr")] + [use for column, s in used
                                          for use in ((column, "addr"), lit(s))]
    if kind == "guard":
        return [(A, "read"), (X0, "int")]
    if kind == "gather":
        return [(OUT, "addr"), lit(N), (A, "addr"), (X0, "int")]
    if kind == "place":
        return [(OUT, "addr"), (A, "addr"), (X0, "int"), lit(X1)]
    if kind == "reduce":
        total = row[X0] < 0 and step[X0] == 0      # no index map: one total
        return [(OUT, "addr"), lit(N), (A, "addr"), lit(X0) if total else (X0, "int"), lit(X1)]
    if kind == "matmul":
        return [(OUT, "addr"), (A, "addr"), (B, "addr")] + [lit(c) for c in (SA, SB, SC, X0, X1,
                                                                              X2)]
    if row[X1] == 1 and row[X2] == 2 and step[X1] == step[X2] == 0:
        # an element scatter: one entry, in place (the interpreter's count 1 and base mode 2)
        return [(OUT, "addr"), (B, "read"), (X0, "int"), lit(X1), lit(X2)]
    return [(OUT, "addr"), lit(N), (A, "addr"), (B, "addr"), lit(SB), (X0, "int"), lit(X1),
            lit(X2)]


def _meets(d0, c, width, trips):
    """Whether 0 <= d0 + c * t < width for some trip t < trips (elementwise over arrays): a slot
    d0 + c * t past the start of a range `width` long, both moving with the trips."""
    safe = np.where(c == 0, 1, c)
    lo = np.where(c > 0, -(d0 // safe), -((d0 - width + 1) // safe))
    hi = np.where(c > 0, (width - 1 - d0) // safe, (-d0) // safe)
    moving = np.maximum(lo, 0) <= np.minimum(hi, trips - 1)
    return np.where(c == 0, (0 <= d0) & (d0 < width), moving)


def _clobbers(body, base, stride, trips, uses, refs, operands, slots):
    """For each row, the slot operands its write may reach at some trip (a scalar write's own
    operand aside): a local holding one of them is stale after that row."""
    writers = [(j, role) for j, column, role in uses if column == OUT and role != "read"]
    clobbers = [()] * len(body)
    if not writers or not slots:
        return tuple(clobbers)
    rows = np.array([j for j, _ in writers])
    # the width a row writes from OUT: one slot, or N (its largest over the run)
    width = np.where([role == "write" for _, role in writers], 1, np.maximum(
        base[rows, N], base[rows, N] + (trips - 1) * stride[rows, N]))
    bx = np.array([operands[q][0] for q in slots], dtype=np.int64)
    sx = np.array([operands[q][1] for q in slots], dtype=np.int64)
    meets = _meets(bx[None, :] - base[rows, OUT][:, None], sx[None, :] - stride[rows, OUT][:, None],
                   width[:, None], trips)
    own = {j: n for (j, column, role), n in zip(uses, refs) if role == "write"}
    for (j, _), hit in zip(writers, meets):
        clobbers[j] = tuple(q for q, h in zip(slots, hit.tolist()) if h and q != own.get(j))
    return tuple(clobbers)


def layout(base, stride, trips):
    """The structure of a run, which its kernel's source is made from (nothing in it depends on
    where the loop sits or on its length): the opcodes; each used column's role and operand
    number (columns with the same base and stride share one) or, for a literal, its value; each
    operand's stride group; the carries (operand q reads at trip t what operand p held at trip
    t - 1); and for each row the operands whose slots its write may reach (see _clobbers)."""
    body = tuple(base[:, OP].tolist())
    uses = [(j, column, role) for j, opcode in enumerate(body)
            for column, role in _row_uses(opcode, base[j], stride[j])]
    numbers, operands, refs = {}, [], []
    for j, column, role in uses:
        if role == "lit":
            refs.append(int(base[j, column]))
            continue
        key = (int(base[j, column]), int(stride[j, column]))
        if key not in numbers:
            numbers[key] = len(operands)
            operands.append(key)
        refs.append(numbers[key])
    groups = {}
    group_of = tuple(groups.setdefault(s, len(groups)) for _, s in operands)
    slots = sorted({n for (_, _, role), n in zip(uses, refs) if role in ("read", "write")})
    carries = tuple((q, numbers[b + s, s]) for q in slots for b, s in [operands[q]]
                    if (b + s, s) in numbers and numbers[b + s, s] in slots)
    clobbers = _clobbers(body, base, stride, trips, uses, refs, operands, slots)
    return (body, tuple((j, column, role, n) for (j, column, role), n in zip(uses, refs)),
            group_of, carries, clobbers)


def _statements(structure, known):
    """The loop body's lines, given the operands whose value is in a local at the trip's start
    (`known`: operand -> name); returns (lines, known at the trip's end). Every result is stored
    (later rows and the interpreter read memory); a value is reused from a local only while no
    write can have reached its slot since."""
    body, uses, group_of, _, clobbers = structure
    known = dict(known)
    refs = {(j, column): (role, n) for j, column, role, n in uses}

    def at(j, column):
        role, n = refs[j, column]
        return str(n) if role == "lit" else f"b{n} + q{group_of[n]}"

    def read(j, column):
        n = refs[j, column][1]
        if n not in known:
            known[n] = f"l{j}_{column}"
            lines.append(f"l{j}_{column} = v[np.uint64({at(j, column)})]")
        return known[n]

    def element(j, column, step):
        # the interpreter's loop form's v[a + j * sa], with a literal stride folded in
        offset = {"0": "", "1": " + j"}.get(at(j, step), f" + j * ({at(j, step)})")
        return f"v[np.uint64({at(j, column)}{offset})]"

    lines = []
    for j, opcode in enumerate(body):
        kind, out = _kind(opcode), None
        if kind == "elementwise":
            form = _ELEMENTWISE[opcode]
            columns = ((A, SA, 0), (B, SB, 1), (C, SC, 2))
            if refs[j, OUT][0] == "write":
                operands = [read(j, column) if "{%d}" % k in form else None
                            for column, _, k in columns]
                out = refs[j, OUT][1]
                lines += [f"r{j} = float({form.format(*operands)})",
                          f"v[np.uint64({at(j, OUT)})] = r{j}"]
            else:
                operands = [element(j, column, step) if "{%d}" % k in form else None
                            for column, step, k in columns]
                lines += [f"for j in range({at(j, N)}):",
                          f"    v[np.uint64({at(j, OUT)} + j)] = {form.format(*operands)}"]
        elif kind == "guard":
            # as the interpreter's guard; the run's row number + 1 tells the caller which failed
            lines += [f"if ({read(j, A)} != 0.0) != ({at(j, X0)} != 0):",
                      f"    return t * BODY + {j + 1}"]
        elif kind == "gather":
            lines.append(f"gather(v, {at(j, OUT)}, {at(j, N)}, {at(j, A)}, ipool, {at(j, X0)})")
        elif kind == "place":
            lines.append(f"place(v, {at(j, OUT)}, {at(j, A)}, ipool, {at(j, X0)}, {at(j, X1)})")
        elif kind == "reduce":
            lines.append(f"reduce(v, {_REDUCTIONS[opcode]}, {at(j, OUT)}, {at(j, N)}, "
                         f"{at(j, A)}, ipool, {at(j, X0)}, {at(j, X1)})")
        elif kind == "matmul":
            lines.append(f"matmul(v, {at(j, OUT)}, {at(j, A)}, {at(j, B)}, "
                         + ", ".join(at(j, c) for c in (SA, SB, SC, X0, X1, X2)) + ")")
        elif refs[j, B][0] == "read":
            # an element scatter, written out (a call costs more than it)
            update = "+=" if kind == "scatter_add" else "="
            lines.append(f"v[np.uint64({at(j, OUT)} + ipool[{at(j, X0)}])] {update} "
                         f"{read(j, B)}")
        else:
            lines.append(f"scatter(v, {at(j, OUT)}, {at(j, N)}, {at(j, A)}, {at(j, B)}, "
                         f"{at(j, SB)}, ipool, {at(j, X0)}, {at(j, X1)}, "
                         f"{kind == 'scatter_add'}, {at(j, X2)})")
        for n in clobbers[j]:
            known.pop(n, None)
        if out is not None:
            known[out] = f"r{j}"
    return lines, known


def kernel_source(structure):
    """Source of `roll(v, ipool, base, stride, trips)` for a run's structure (see layout): trip t
    runs row j with its columns at base[j] + t * stride[j]; returns 0, or 1 + the run row of
    the guard that failed."""
    body, uses, group_of, carries, _ = structure
    setup, first_group = [], {}
    seen = set()
    for j, column, role, n in uses:
        if role != "lit" and n not in seen:
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
