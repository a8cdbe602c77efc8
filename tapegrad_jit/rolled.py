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
        p0 = a0 + q0                        # the slots' anchor at trip t; q0 = t * stride
        x0 = v[np.uint64(p0 + 0)]           # slots: an anchor plus a constant offset; x[i + 1]
        y1 = float((x0 - k0))               # the interpreter's scalar form of `sub`; k0: x[i]
        v[np.uint64(p0 + 9001)] = y1        # every result is stored, as the interpreter does
        y3 = float((((y1 * y1)) + k1))      # y1 reused from a local, k1: last trip's sum
        v[np.uint64(p0 + 9003)] = y3
        k0, k1 = x0, y3                     # carried to the next trip
        q0 += 1                             # the stride, in the source

the body's statements in row order, trip after trip (the interpreter's order and operations, so
values are bitwise the interpreter's). A slot is named by its stride's group and its offset from
the group's first slot, so two names are one slot at every trip exactly when equal; the anchors'
first-trip values are runtime arguments and the source depends only on the run's structure (see
`layout`), the same for a loop at any length, so one cached kernel serves it. Rows of a few
elements (softmax over np.stack, sums of small arrays, gathers, places, scatters with index maps
that are the same at every trip) are written out element by element in the interpreter's order;
others call the interpreter's helpers (gather, place, scatter, reduce, matmul) or its loop form.
A value is taken from a local instead of memory only while no write can have reached its slot
since (slots of one group meet only when equal; groups of other strides are checked apart over
the run). Statements come from the interpreter's own tables (the registry's scalar forms, its
helpers); a guard returns where it fails, and the interpreter runs the rows between runs.

Only runs of at least MIN_ROWS rows roll (calling a kernel costs about a dispatch; compiling one
0.2-2 s of CPU without the disk cache, ~1.9 s for 34-48 rows of small-array softmax), at most
MAX_BODIES structures per tape (the ones covering most rows), bodies of at most MAX_BODY rows.
CUDA and the nopython path run the unchanged code array on the interpreter.
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
MAX_UNROLL = 16      # elements a row may write out as scalar statements (else a helper call)
MAX_WORK = 128       # element operations in a body (see _work): a kernel's cold compile grows
                     # with them (small-array softmax, 87-111: 1.9 s; 256: ~4 s; AMD EPYC)
MAX_CHECKS = 8       # periods checked in full per tape at most
_CHUNK = 1 << 16     # rows compared at once (bounds the temporaries of a long tape)
_SAMPLE = 8          # the screen of a period reads every _SAMPLE-th row

_ELEMENTWISE = dict(enumerate(form for _, form in cpu.ELEMENTWISE_FORMS))
_REDUCTIONS = {cpu.OPCODE["reduce_" + name]: k
               for k, name in enumerate(("sum", "prod", "max", "min"))}      # reduce's kinds
# array rows a body may hold (linalg and pool rows run alone), by opcode
_KINDS = {cpu.OPCODE[name]: name for name in ("guard", "gather", "place", "scatter_add",
                                                "scatter_set", "matmul")}
_KINDS.update({opcode: "reduce" for opcode in _REDUCTIONS})
_ARRAY_ROLLABLE = list(_KINDS)
_NAMES = {opcode: name for name, opcode in cpu.OPCODE.items()}
# sums and products written out: identity and step (the registry's add and mul); maxima and minima
# call the interpreter's reduce (its branches beat a chain of selects)
_FOLDS = {cpu.OPCODE["reduce_sum"]: ("0.0", _ELEMENTWISE[cpu.OPCODE["add"]]),
          cpu.OPCODE["reduce_prod"]: ("1.0", _ELEMENTWISE[cpu.OPCODE["mul"]])}


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
    # the screen looks at every _SAMPLE-th row: opcode, output and first two operands repeating
    # affinely (a period whose rows repeat their opcodes but not their operands would use up
    # the MAX_CHECKS full checks; contiguous copies: the strided reads below then touch
    # 1/_SAMPLE of the memory)
    ops = code[:, OP].copy()
    columns = [code[:, column].astype(np.int64) for column in (OUT, A, B)]
    max_body = min(max_body, n // 3)
    sample = slice(0, n - 2 * max_body, _SAMPLE)
    ops0 = ops[sample]
    runs, checks = [], 0
    for k in range(1, max_body + 1):
        m = ops0.size
        ops1, ops2 = ops[k::_SAMPLE][:m], ops[2 * k::_SAMPLE][:m]
        hits = (ops0 == ops1) & (ops1 == ops2)
        if np.count_nonzero(hits) * _SAMPLE < min_rows - 2 * k:
            continue
        for x in columns:
            hits &= x[k::_SAMPLE][:m] * 2 == x[sample] + x[2 * k::_SAMPLE][:m]
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


def _select(code, runs, ipool):
    """(start, trips, base rows, strides, structure) of the runs whose structures (see layout)
    are among the MAX_BODIES covering most rows: each distinct structure is one kernel."""
    laid = []
    for start, k, trips in runs:
        rows = code[start:start + k].astype(np.int64)
        stride = code[start + k:start + 2 * k].astype(np.int64) - rows
        laid.append((start, trips, rows, stride, layout(rows, stride, trips, ipool)))
    covered = {}
    for _, trips, rows, _, structure in laid:
        if _work(structure) <= MAX_WORK:
            covered[structure] = covered.get(structure, 0) + trips * len(rows)
    chosen = set(sorted(covered, key=covered.get, reverse=True)[:MAX_BODIES])
    return [run for run in laid if run[4] in chosen]


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

def _work(structure):
    """Element operations in a body, as its kernel's compile grows with them (LLVM unrolls the
    helpers' and loop forms' short literal loops too): 64 rows of 16 elements took 49 s."""
    work = 0
    for plan in structure[1]:
        kind, args = plan[0], plan[1:]
        if kind in ("ew", "gather"):
            work += args[1] if kind == "ew" else len(args[2])
        elif kind == "place":
            work += len(args[2])
        elif kind == "reduce":
            work += args[2] + args[5]
        elif kind == "scatter":
            work += (args[2] if args[3] != 2 else 0) + len(args[7])
        elif kind == "call":
            work += args[2]
        else:
            work += 1
    return work


def _at(slot):
    """The source of a slot's address: its group's anchor at this trip, plus its offset."""
    return f"p{slot[0]} + {slot[1]}"


def _kind(opcode):
    return "elementwise" if opcode < cpu.NUM_ELEMENTWISE else _KINDS[opcode]


def layout(base, stride, trips, ipool):
    """The structure of a run, which its kernel's source is made from; nothing in it depends on
    where the run sits or on its length. A slot is named (group, offset): its stride's group and
    its distance from the group's first slot (its anchor), so two names are one slot at every
    trip exactly when they are equal. Counts, strides, modes and index maps that are the same
    at every trip are literals (rows with them at most MAX_UNROLL elements long are written out
    element by element); other integers are runtime operands, and such rows call the
    interpreter's helpers. Returns (body, plans, group strides, anchors, integer operands,
    meeting): one plan a row (see _statements), and the pairs of groups whose slots may meet
    at some trip."""
    body = tuple(base[:, OP].tolist())
    groups, anchors, values, extents = {}, [], [], []
    ints, int_numbers = [], {}

    def group(s):
        if s not in groups:
            groups[s] = len(groups)
            anchors.append(None)
            values.append(0)
            extents.append([])
        return groups[s]

    def slot(j, column):
        g = group(int(stride[j, column]))
        if anchors[g] is None:
            anchors[g], values[g] = (j, column), int(base[j, column])
        return g, int(base[j, column]) - values[g]

    def touch(at, width=1, offset=0):
        extents[at[0]].append((at[1] + offset, at[1] + offset + width))
        return at

    def lit(j, column):
        # a literal int, or the source of a runtime integer
        key = (int(base[j, column]), int(stride[j, column]))
        if key[1] == 0:
            return key[0]
        if key not in int_numbers:
            int_numbers[key] = len(ints)
            ints.append((j, column, group(key[1])))
        return f"i{int_numbers[key]} + q{group(key[1])}"

    def index_map(j, count):
        if not (isinstance(count, int) and 0 < count <= MAX_UNROLL and base[j, X0] >= 0):
            return None
        at = base[j, X0] + stride[j, X0] * np.arange(trips if stride[j, X0] else 1)[:, None]
        if at.min() < 0 or at.max() + count > ipool.size:
            return None             # not a map of this pool: the helper's reads decide
        maps = ipool[at + np.arange(count)]
        return tuple(maps[0].tolist()) if np.all(maps == maps[0]) else None

    def width(j):
        # the most a row writes from OUT over the run
        return int(max(base[j, N], base[j, N] + (trips - 1) * stride[j, N]))

    def small(*counts):
        return all(isinstance(n, int) and 0 <= n <= MAX_UNROLL for n in counts)

    def call(j, *lines, work=None):
        # a row the interpreter's helper (or loop form) runs on memory: it writes up to
        # width(j) slots from OUT, in `work` element operations (see _work)
        out = slot(j, OUT)
        touch(out, width(j))
        work = min(width(j) if work is None else work, MAX_UNROLL)
        return ("call", tuple(line.replace("{out}", _at(out)) for line in lines),
                out + (width(j),), work)

    plans = []
    for j, opcode in enumerate(body):
        kind = _kind(opcode)
        n = lit(j, N)
        if kind == "elementwise":
            form = _ELEMENTWISE[opcode]
            used = [(column, k) for k, column in enumerate((A, B, C)) if "{%d}" % k in form]
            # strides: ignored by the interpreter's scalar form (n == 1)
            steps = {column: 0 if n == 1 else lit(j, column + SA - A) for column, _ in used}
            if small(n, *steps.values()):
                operands = [None] * 3
                for column, k in used:
                    operands[k] = slot(j, column) + (steps[column],)
                    for i in range(n):
                        touch(operands[k][:2], offset=i * steps[column])
                plans.append(("ew", opcode, n, touch(slot(j, OUT), n), tuple(operands)))
            else:
                # the interpreter's loop form
                elements = [None] * 3
                for column, k in used:
                    elements[k] = f"v[np.uint64({_at(slot(j, column))} + j * ({steps[column]}))]"
                plans.append(call(j, f"for j in range({n}):",
                                  "    v[np.uint64({out} + j)] = " + form.format(*elements)))
        elif kind == "guard":
            plans.append(("guard", touch(slot(j, A)), str(lit(j, X0))))
        elif kind == "gather":
            positions = index_map(j, n) if small(n) else None
            if positions is not None:
                source = slot(j, A)
                for m in positions:
                    touch(source, offset=m)
                plans.append(("gather", touch(slot(j, OUT), n), source, positions))
            else:
                plans.append(call(j, f"gather(v, {{out}}, {n}, {_at(slot(j, A))}, ipool, "
                                     f"{lit(j, X0)})"))
        elif kind == "place":
            count = lit(j, X1)
            positions = index_map(j, count)
            if positions is not None:
                out = slot(j, OUT)
                for m in positions:
                    touch(out, offset=m)
                plans.append(("place", out, touch(slot(j, A), count), positions))
            else:
                plans.append(call(j, f"place(v, {{out}}, {_at(slot(j, A))}, ipool, {lit(j, X0)}, "
                                     f"{count})"))
        elif kind == "reduce":
            total = base[j, X0] < 0 and stride[j, X0] == 0     # one total: no index map
            count = lit(j, X1)
            positions = None if total else index_map(j, count)
            if opcode in _FOLDS and small(n, count) and (total or positions is not None):
                plans.append(("reduce", opcode, touch(slot(j, OUT), n), n,
                              touch(slot(j, A), count), positions, count))
                continue
            plans.append(call(j, f"reduce(v, {_REDUCTIONS[opcode]}, {{out}}, {n}, "
                                 f"{_at(slot(j, A))}, ipool, {-1 if total else lit(j, X0)}, "
                                 f"{lit(j, X1)})"))
        elif kind == "matmul":
            plans.append(call(j, f"matmul(v, {{out}}, {_at(slot(j, A))}, {_at(slot(j, B))}, "
                                 + ", ".join(str(lit(j, c)) for c in (SA, SB, SC, X0, X1, X2))
                                 + ")"))
        else:
            count, mode, sb = lit(j, X1), lit(j, X2), lit(j, SB)
            positions = index_map(j, count) if small(n, count, sb) and mode in (0, 1, 2) else None
            accumulate = kind == "scatter_add"
            if positions is not None:
                out, values_at = touch(slot(j, OUT), n), slot(j, B)
                for i in range(count):
                    touch(values_at, offset=i * sb)
                source = touch(slot(j, A), n) if mode == 1 else None
                plans.append(("scatter", accumulate, out, n, mode, source, values_at, sb,
                              positions))
            else:
                # an element scatter (count 1, in place) is one operation, not its array's size
                work = sum(x if isinstance(x, int) else MAX_UNROLL
                           for x in ((0 if mode == 2 else n), count))
                plans.append(call(j, f"scatter(v, {{out}}, {n}, {_at(slot(j, A))}, "
                                     f"{_at(slot(j, B))}, {sb}, ipool, {lit(j, X0)}, {count}, "
                                     f"{accumulate}, {mode})", work=work))
    # groups of other strides may meet where their slots' ranges over the run overlap
    strides = sorted(groups, key=groups.get)
    spans = []
    for g, s in enumerate(strides):
        if not extents[g]:
            spans.append(None)
            continue
        lo = values[g] + min(a for a, _ in extents[g]) + min(0, (trips - 1) * s)
        hi = values[g] + max(b for _, b in extents[g]) + max(0, (trips - 1) * s)
        spans.append((lo, hi))
    meeting = tuple((g, h) for g, a in enumerate(spans) for h, b in enumerate(spans)
                    if g != h and a and b and a[0] < b[1] and b[0] < a[1])
    return body, tuple(plans), tuple(strides), tuple(anchors), tuple(ints), meeting


def _statements(structure, known):
    """The loop body's lines, given the slots whose value is in a local at the trip's start
    (`known`: slot -> name); returns (lines, known at the trip's end, slots loaded from memory).
    Every result is stored (later rows, helpers and the interpreter read memory), element by
    element in the interpreter's order; a value is reused from a local only while no write can
    have reached its slot since."""
    body, plans, _, _, _, meeting = structure
    known, lines, loaded = dict(known), [], []

    def load(slot):
        if slot not in known:
            known[slot] = name = f"x{len(lines)}"
            lines.append(f"{name} = v[np.uint64({_at(slot)})]")
            loaded.append(slot)
        return known[slot]

    def written(g, first, width):
        for slot in [s for s in known if (s[0] == g and first <= s[1] < first + width)
                     or (g, s[0]) in meeting]:
            del known[slot]

    def store(slot, value):
        name = f"y{len(lines)}"
        lines.extend([f"{name} = float({value})", f"v[np.uint64({_at(slot)})] = {name}"])
        written(slot[0], slot[1], 1)
        known[slot] = name

    for j, plan in enumerate(plans):
        kind, args = plan[0], plan[1:]
        if kind == "ew":
            opcode, n, (g, r), operands = args
            form = _ELEMENTWISE[opcode]
            for i in range(n):
                store((g, r + i), form.format(*[
                    load((a[0], a[1] + i * a[2])) if a else None for a in operands]))
        elif kind == "guard":
            # as the interpreter's guard; the run's row number + 1 tells the caller which failed
            lines.extend([f"if ({load(args[0])} != 0.0) != ({args[1]} != 0):",
                          f"    return t * BODY + {j + 1}"])
        elif kind == "gather":
            (g, r), (ga, ra), positions = args
            for i, m in enumerate(positions):
                store((g, r + i), load((ga, ra + m)))
        elif kind == "place":
            (g, r), (ga, ra), positions = args
            for i, m in enumerate(positions):
                store((g, r + m), load((ga, ra + i)))
        elif kind == "reduce":
            # as the interpreter's reduce: the identity in every output, then each input added
            # (multiplied) into its output in turn
            opcode, (g, r), n, (ga, ra), positions, count = args
            identity, form = _FOLDS[opcode]
            for i in range(n):
                store((g, r + i), identity)
            for i in range(count):
                target = (g, r + (positions[i] if positions else 0))
                store(target, form.format(load(target), load((ga, ra + i))))
        elif kind == "scatter":
            accumulate, (g, r), n, mode, source, (gb, rb), sb, positions = args
            if mode != 2:       # the base: zeros or a copy
                for i in range(n):
                    store((g, r + i), load((source[0], source[1] + i)) if mode else "0.0")
            for i, m in enumerate(positions):
                value = load((gb, rb + i * sb))
                store((g, r + m), f"{load((g, r + m))} + {value}" if accumulate else value)
        else:
            text, (g, r, width), _ = args
            lines.extend(text)
            written(g, r, width)
    return lines, known, loaded


def kernel_source(structure):
    """Source of `roll(v, ipool, bases)` for a run's structure (see layout): bases holds the
    trip count, then the first trip's value of each anchor and integer operand (see _steps);
    trip t adds t times their strides (in the source). Returns 0, or 1 + the run row of the
    guard that failed."""
    body, _, strides, anchors, ints, _ = structure
    names = [f"a{g}" for g, anchor in enumerate(anchors) if anchor] + [
        f"i{k}" for k in range(len(ints))]
    setup = ["trips = bases[0]"] + [f"{name} = bases[{k + 1}]" for k, name in enumerate(names)]
    setup += [f"q{g} = 0" for g in range(len(strides))]
    # a slot read at trip t holds what the slot one stride further held at the end of trip t - 1
    _, at_end, loaded = _statements(structure, {})
    carried = [(slot, (slot[0], slot[1] + strides[slot[0]])) for slot in dict.fromkeys(loaded)]
    carried = [(slot, last) for slot, last in carried if last in at_end]
    lines, at_end, _ = _statements(structure, {slot: f"k{i}" for i, (slot, _) in
                                               enumerate(carried)})
    setup += [f"k{i} = v[np.uint64(a{g} + {r})]" for i, ((g, r), _) in enumerate(carried)]
    if carried:
        # all at once: one carry's new value may be another's old one
        lines.append(", ".join(f"k{i}" for i in range(len(carried))) + " = "
                     + ", ".join(at_end[last] for _, last in carried))
    lines = [f"p{g} = a{g} + q{g}" for g in range(len(strides)) if anchors[g]] + lines
    lines += [f"q{g} += {s}" for g, s in enumerate(strides)]
    text = [f"BODY = {len(body)}", "", "",
            "@njit(**OPTIONS)",
            "def roll(v, ipool, bases):",
            f'    """Rolled body: {", ".join(_NAMES[op] for op in body)}."""']
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
            v, ipool, bases = np.zeros(1), np.zeros(1, dtype=np.int32), np.zeros(1, dtype=np.int64)
            from numba import typeof
            kernel.compile(tuple(typeof(a) for a in (v, ipool, bases)))
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
        _, _, _, anchors, ints, _ = structure
        bases = [trips] + [rows[anchor] for anchor in anchors if anchor] + [
            rows[j, column] for j, column, _ in ints]
        steps.append((kernel, (np.array(bases, dtype=np.int64),), start))
        at = start + len(rows) * trips
    if at < code.shape[0]:
        steps.append((None, code[at:], at))
    return tuple(steps)


def _native(v):
    """Whether a buffer is one the compiled entry points may take: they check dtype and rank,
    not layout or writeability."""
    return (v.dtype == np.float64 and v.ndim == 1 and v.flags.c_contiguous
            and v.flags.writeable)


def _entries(steps, interpreter, ipool, v):
    """The steps with each function's compiled entry point for a native buffer and index pool
    (a call skips the dispatcher's type lookup: ~0.1 us a step); (function, args, first row,
    rolled)."""
    from numba import typeof

    def entry(function, *args):
        compile_for = getattr(function, "compile", None)
        return compile_for(tuple(typeof(a) for a in args)) if compile_for else function

    return tuple((entry(interpreter, args, ipool, v), args, start, False) if kernel is None
                 else (entry(kernel, v, ipool, *args), args, start, True)
                 for kernel, args, start in steps)


def runner(code, ipool, interpreter):
    """A function run(code, ipool, v) for this program's code array that runs its rolled runs
    as kernels and the rows between on `interpreter`; `interpreter` itself when nothing rolls.
    It returns what the interpreter returns: 0, or the number of the first failed guard. The
    kernels are made on the first call (a Program used only for its code compiles nothing)."""
    runs = _select(code, find_runs(code, MIN_ROWS), ipool)
    if not runs:
        return interpreter
    made, lock = [], threading.Lock()
    # the buffer and index pool last seen, and whether the entry points (made for this
    # program's index pool) may take them; one tuple, replaced whole (threads)
    seen = [(None, None, False)]

    def steps():
        if not made:
            with lock:
                if not made:
                    listed = _steps(code, runs)
                    plain = tuple((kernel or interpreter, args, start, kernel is not None)
                                  for kernel, args, start in listed)
                    native = _entries(listed, interpreter, ipool, np.zeros(1))
                    made.append((listed, (plain, native)))
        return made[0][0]

    def run(_code, pool, v):
        # _code: the program's code array (this runner is made for it; rows are pre-sliced)
        if not made:
            steps()
        state = seen[0]
        if state[0] is not v or state[1] is not pool:
            seen[0] = state = (v, pool, pool is ipool and _native(v))
        for function, args, start, rolled in made[0][1][state[2]]:
            if rolled:
                status = function(v, pool, *args)
                if status:
                    return code[start + status - 1, X1]
            else:
                status = function(args, pool, v)
                if status:
                    return status
        return 0

    run.steps, run.runs = steps, runs
    return run
