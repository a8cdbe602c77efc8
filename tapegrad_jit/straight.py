"""Straight-line machine code for the rows that neither re-roll nor repeat.

The interpreter pays one indirect branch per row. When the rows of a tape follow no pattern (a
scalar graph whose ops come in no fixed order) the branch predictor misses about every other one,
and a sweep costs 2-2.5x a hand-written C interpreter of the same graph. Loop re-rolling (rolled.py)
removes the dispatch of repeated blocks; this module removes it for the rest: each stretch of at
least MIN_ROWS rows between rolled runs that are guards or scalar and small-array rows
(elementwise ops of a translated form, gathers, places, scatters, reductions, up to MAX_ELEMENTS
element operations a row) is written as LLVM IR, element by element in the interpreter's order
(load the operands, the row's scalar form, store the result; a guard returns its number), and
compiled by llvmlite (Numba's own LLVM) without optimisation: about 20 us of compile a row, far
less than Numba would take, and the code runs at about a C interpreter's speed with no branch to
predict.

It is made at a program's first sweep (runner): the IR is written on the caller's thread (0.2 s
for 70k rows), then compiled there when the program is short (SYNC_ROWS) or else on a background
thread (llvmlite's C calls release the GIL; Numba's compiler lock is held so that the two never
use LLVM at once) while the interpreter serves the calls; the program switches to the machine code
when it is loaded. Object code is kept in the on-disk cache (cache.read_blob) under a hash of the
rows, so the next process loads it at its first sweep without writing IR.

The IR comes from the registry's scalar forms (the same Python expressions the interpreter is
generated from), translated by `Translator`: + - * /, unary minus, comparisons, `and`/`or`/`not`,
conditional expressions, abs and the libm functions whose results Numba also takes from libm. A
form using anything else (floor division, int conversions, min/max, functions Numba implements
itself) is not translated, and its rows stay with the interpreter. Values are bitwise the
interpreter's (tests/test_straight_line.py: every translated form on special and random values,
real small-array tapes buffer for buffer).
"""
import ast
import atexit
import hashlib
import math
import struct
import threading

import numpy as np

from . import cache, cpu
from .cpu import A, B, C, N, OP, OUT, SB, X0, X1, X2

MIN_ROWS = 256          # rows in a stretch before straight-line code is made (about 5 ms of
                        # compile): a 100-op scalar graph 1.30x -> 0.95x the C interpreter
MAX_ROWS = 100_000      # rows compiled per program at most: the compile peaks at ~2.7 kB a row
CHUNK = 256             # rows per LLVM function: code generation grows faster than linearly
                        # with a function's length (10k rows: 1.5 s in one, 0.2 s in chunks);
                        # 128-512 compile alike
GUARD = cpu.OPCODE["guard"]

# libm functions Numba's math.* also calls (so results are the same bits), and LLVM intrinsics
_LIBM = {"exp", "log", "log1p", "expm1", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin",
         "acos", "atan", "asinh", "acosh", "atanh", "log10", "atan2", "hypot", "exp2"}
_INTRINSICS = {"sqrt": "llvm.sqrt.f64", "copysign": "llvm.copysign.f64", "fabs": "llvm.fabs.f64",
               "pow": "llvm.pow.f64"}
_BINARY = {ast.Add: "fadd", ast.Sub: "fsub", ast.Mult: "fmul", ast.Div: "fdiv"}
# Python's float comparisons: ordered, but != is true when either side is NaN
_COMPARE = {ast.Eq: "oeq", ast.NotEq: "une", ast.Lt: "olt", ast.LtE: "ole", ast.Gt: "ogt",
            ast.GtE: "oge"}
_CONSTANTS = {"inf": math.inf, "nan": math.nan, "pi": math.pi, "e": math.e}


class Untranslatable(Exception):
    pass


def _double(value):
    """An LLVM double constant of exactly these bits."""
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", float(value)))[0]


class Translator:
    """Python scalar forms -> LLVM IR lines, into `lines`; values are (type, name) pairs."""

    def __init__(self, lines):
        self.lines, self.count, self.declared = lines, 0, set()

    def fresh(self):
        self.count += 1
        return f"%t{self.count}"

    def emit(self, text):
        name = self.fresh()
        self.lines.append(f"  {name} = {text}")
        return name

    def double(self, node, env):
        kind, name = self.value(node, env)
        if kind != "double":
            raise Untranslatable("a truth value used as a number")
        return name

    def truth(self, node, env):
        kind, name = self.value(node, env)
        if kind != "i1":
            raise Untranslatable("a number used as a truth value")
        return name

    def call(self, function, args):
        self.declared.add((function, len(args)))
        joined = ", ".join(f"double {a}" for a in args)
        return self.emit(f"call double @{function}({joined})")

    def value(self, node, env):
        if isinstance(node, ast.Name) and node.id in env:
            return "double", env[node.id]
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return "double", _double(node.value)
        if isinstance(node, ast.Attribute) and _is_math(node.value) and node.attr in _CONSTANTS:
            return "double", _double(_CONSTANTS[node.attr])
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            a, b = self.double(node.left, env), self.double(node.right, env)
            return "double", self.emit(f"{_BINARY[type(node.op)]} double {a}, {b}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            if isinstance(node.left, ast.Constant) and node.left.value == 2.0:
                # LLVM turns Numba's pow(2.0, x) into exp2(x) (other bits than pow's)
                return "double", self.call("exp2", [self.double(node.right, env)])
            return "double", self.call(_INTRINSICS["pow"], [self.double(node.left, env),
                                                            self.double(node.right, env)])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return "double", self.emit(f"fneg double {self.double(node.operand, env)}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return "i1", self.emit(f"xor i1 {self.truth(node.operand, env)}, true")
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            a, b = self.double(node.left, env), self.double(node.comparators[0], env)
            return "i1", self.emit(f"fcmp {_COMPARE[type(node.ops[0])]} double {a}, {b}")
        if isinstance(node, ast.BoolOp):
            op = "and" if isinstance(node.op, ast.And) else "or"
            result = self.truth(node.values[0], env)
            for other in node.values[1:]:
                result = self.emit(f"{op} i1 {result}, {self.truth(other, env)}")
            return "i1", result
        if isinstance(node, ast.IfExp):
            test = self.truth(node.test, env)
            a, b = self.double(node.body, env), self.double(node.orelse, env)
            return "double", self.emit(f"select i1 {test}, double {a}, double {b}")
        if isinstance(node, ast.Call) and not node.keywords:
            return "double", self.function(node, env)
        raise Untranslatable(ast.dump(node)[:80])

    def function(self, node, env):
        f = node.func
        if isinstance(f, ast.Name) and f.id == "float" and len(node.args) == 1:
            return self.double(node.args[0], env)      # already a double
        if isinstance(f, ast.Name) and f.id == "abs" and len(node.args) == 1:
            return self.call(_INTRINSICS["fabs"], [self.double(node.args[0], env)])
        if isinstance(f, ast.Attribute) and _is_math(f.value):
            args = [self.double(a, env) for a in node.args]
            if f.attr in _LIBM:
                return self.call(f.attr, args)
            if f.attr in _INTRINSICS:
                return self.call(_INTRINSICS[f.attr], args)
        raise Untranslatable(ast.dump(node)[:80])


def _is_math(node):
    return isinstance(node, ast.Name) and node.id == "math"


def _form_trees():
    """opcode -> (the parsed scalar form, the operand names it reads) for every elementwise form
    Translator takes; the others are missing."""
    trees = {}
    for opcode, (_, form) in enumerate(cpu.ELEMENTWISE_FORMS):
        tree = ast.parse(form.format("x", "y", "z"), mode="eval").body
        try:
            Translator([]).double(tree, {"x": "%x", "y": "%y", "z": "%z"})
        except (Untranslatable, KeyError):
            continue
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} & {"x", "y", "z"}
        trees[opcode] = (tree, names)
    return trees


_TREES = None


def form_trees():
    global _TREES
    if _TREES is None:
        _TREES = _form_trees()
    return _TREES


# ---------------------------------------------------------------------------------------------
# Which rows, and their IR
# ---------------------------------------------------------------------------------------------

MAX_ELEMENTS = 256       # element operations of an array row written out, at most

_GATHER, _PLACE = cpu.OPCODE["gather"], cpu.OPCODE["place"]
_SCATTERS = (cpu.OPCODE["scatter_add"], cpu.OPCODE["scatter_set"])
_REDUCES = tuple(cpu.OPCODE[f"reduce_{kind}"] for kind in ("sum", "prod", "max", "min"))


def usable_rows(code):
    """Rows straight-line code runs: guards, and rows of at most MAX_ELEMENTS element operations
    that are elementwise ops of a translated form, gathers, places, scatters or reductions."""
    ops = code[:, OP]
    translated = np.zeros(max(cpu.OPCODE.values()) + 1, dtype=bool)
    translated[list(form_trees())] = True
    n, count = code[:, N].astype(np.int64), code[:, X1].astype(np.int64)
    elements = np.where(np.isin(ops, _SCATTERS + _REDUCES), n + count,
                        np.where(ops == _PLACE, count, n))
    small = (elements <= MAX_ELEMENTS) & (n >= 0) & (count >= 0)
    array_rows = np.isin(ops, (_GATHER, _PLACE) + _SCATTERS + _REDUCES)
    return (ops == GUARD) | (small & (translated[ops] | array_rows))


def stretches(usable, min_rows=None, max_rows=None):
    """[(start, stop)] of the maximal runs of usable rows at least min_rows (MIN_ROWS) long,
    longest first up to max_rows (MAX_ROWS) rows in all, in row order."""
    min_rows = MIN_ROWS if min_rows is None else min_rows
    max_rows = MAX_ROWS if max_rows is None else max_rows
    flags = np.concatenate([[False], usable, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(flags))
    runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_rows]
    kept, total = [], 0
    for start, stop in sorted(runs, key=lambda r: r[0] - r[1]):
        if total + stop - start <= max_rows:
            kept.append((start, stop))
            total += stop - start
    return sorted(kept)


class _RowTranslator(Translator):
    """Temporaries named after the row ({i}) so that a row's IR is a format template."""

    def fresh(self):
        self.count += 1
        return f"%r{{i}}_{self.count}"


def _row_template(opcode):
    """(IR of one row of `opcode`, the name of its result, the functions it calls, the operands it
    reads): fields {i}
    (the row), {x}, {y}, {z} (the operands' values) and, for a guard, {x0} and {x1}."""
    lines = []
    translator = _RowTranslator(lines)
    if opcode == GUARD:
        nonzero = translator.emit(f"fcmp une double {{x}}, {_double(0.0)}")
        fails = translator.emit(f"xor i1 {nonzero}, {{x0}}")
        lines += [f"  br i1 {fails}, label %fail{{i}}, label %ok{{i}}",
                  "fail{i}:", "  ret i32 {x1}", "ok{i}:"]
        return "\n".join(lines) + "\n", None, set(), ("x",)
    tree, names = form_trees()[opcode]
    result = translator.double(tree, {name: "{%s}" % name for name in names})
    return "\n".join(lines) + "\n", result, translator.declared, sorted(names)


_TEMPLATES = {}


def _template(opcode):
    found = _TEMPLATES.get(opcode)
    if found is None:
        found = _TEMPLATES[opcode] = _row_template(opcode)
    return found


_REDUCE_INIT = (0.0, 1.0, -math.inf, math.inf)


class _Chunk:
    """The rows' IR in one function's body, in the interpreter's order of element operations.
    Within it a slot's value is loaded once and a result is used from its register by the
    operations after it (still stored: later code reads the buffer), and each slot's address is
    computed once: the same values, a third of the IR to compile."""

    def __init__(self, out, ipool, declared):
        self.out, self.ipool, self.declared = out, ipool, declared
        self.known, self.pointers = {}, {}

    def pointer(self, slot):
        name = self.pointers.get(slot)
        if name is None:
            name = self.pointers[slot] = f"%p{slot}"
            self.out.append(f"  {name} = getelementptr double, double* %v, i64 {slot}\n")
        return name

    def value(self, slot):
        name = self.known.get(slot)
        if name is None:
            address = self.pointer(slot)
            name = self.known[slot] = f"%l{len(self.out)}"
            self.out.append(f"  {name} = load double, double* {address}\n")
        return name

    def store(self, slot, name):
        self.out.append(f"  store double {name}, double* {self.pointer(slot)}\n")
        self.known[slot] = name

    def emit(self, text):
        name = f"%e{len(self.out)}"
        self.out.append(f"  {name} = {text}\n")
        return name

    def row(self, i, row):
        op, o, n, a, b, c = row[:6]
        if op == GUARD:
            text = _template(op)[0]
            self.out.append(text.format(i=i, x=self.value(a), x0="true" if row[X0] else "false",
                                        x1=row[X1]))
        elif op < cpu.NUM_ELEMENTWISE:
            text, result, functions, names = _template(op)
            self.declared |= functions
            sa, sb, sc = row[6:9]
            for j in range(n):
                fields = {name: self.value(slot) for name, slot in
                          (("x", a + j * sa), ("y", b + j * sb), ("z", c + j * sc))
                          if name in names}
                element = f"{i}e{j}"
                self.out.append(text.format(i=element, **fields))
                self.store(o + j, result.format(i=element, **fields))
        elif op == _GATHER:
            for j, m in enumerate(self.map(row[X0], n)):
                self.store(o + j, self.value(a + m))
        elif op == _PLACE:
            for j, m in enumerate(self.map(row[X0], row[X1])):
                self.store(o + m, self.value(a + j))
        elif op in _SCATTERS:
            self.scatter(row, accumulate=op == _SCATTERS[0])
        else:
            self.reduce(row, _REDUCES.index(op))

    def map(self, m, count):
        return self.ipool[m:m + count].tolist()

    def scatter(self, row, accumulate):
        o, n, a, b, sb, m, count, base = (row[k] for k in (OUT, N, A, B, SB, X0, X1, X2))
        if base != 2:                   # 0: zeros, 1: a copy of v[a:a+n], 2: in place
            for j in range(n):
                self.store(o + j, self.value(a + j) if base else _double(0.0))
        for j, t in enumerate(self.map(m, count)):
            x = self.value(b + j * sb)
            self.store(o + t, self.emit(f"fadd double {self.value(o + t)}, {x}")
                       if accumulate else x)

    def reduce(self, row, kind):
        o, n, a, m, count = (row[k] for k in (OUT, N, A, X0, X1))
        for j in range(n):
            self.store(o + j, _double(_REDUCE_INIT[kind]))
        targets = [0] * count if m < 0 else self.map(m, count)
        for j, t in enumerate(targets):
            x, current = self.value(a + j), self.value(o + t)
            if kind < 2:
                new = self.emit(f"{('fadd', 'fmul')[kind]} double {current}, {x}")
            else:               # x replaces the extreme when beyond it, or NaN
                beyond = self.emit(f"fcmp {('ogt', 'olt')[kind - 2]} double {x}, {current}")
                nan = self.emit(f"fcmp uno double {x}, {x}")
                new = self.emit(f"select i1 {self.emit(f'or i1 {beyond}, {nan}')}, "
                                f"double {x}, double {current}")
            self.store(o + t, new)


def _chunk(out, rows, first, ipool, declared):
    writer = _Chunk(out, ipool, declared)
    for i, row in enumerate(rows.tolist(), first):
        writer.row(i, row)


def ir_source(code, ipool, parts):
    """LLVM IR of `stretch{k}(double* v) -> i32` for each (start, stop) in parts: the rows in
    order on the buffer v; 0, or the number of the first guard that fails."""
    out, declared = [], set()
    for k, (start, stop) in enumerate(parts):
        chunks = range(start, stop, CHUNK)
        for first in chunks:
            out.append(f"define internal i32 @part{k}_{first}(double* noalias nocapture %v) "
                       "{\nentry:\n")
            _chunk(out, code[first:min(first + CHUNK, stop)], first, ipool, declared)
            out.append("  ret i32 0\n}\n")
        # the stretch: its parts in order, stopping at a failed guard
        out.append(f"define i32 @stretch{k}(double* noalias nocapture %v) {{\nentry:\n")
        for first in chunks:
            out.append(f"  %s{first} = call i32 @part{k}_{first}(double* %v)\n"
                       f"  %f{first} = icmp ne i32 %s{first}, 0\n"
                       f"  br i1 %f{first}, label %fail{first}, label %ok{first}\n"
                       f"fail{first}:\n  ret i32 %s{first}\nok{first}:\n")
        out.append("  ret i32 0\n}\n")
    head = [f"declare double @{name}({', '.join(['double'] * arity)})\n"
            for name, arity in sorted(declared)]
    return "".join(head + out)


# ---------------------------------------------------------------------------------------------
# Compiling and loading
# ---------------------------------------------------------------------------------------------

_llvm_ready = False


def _llvm():
    global _llvm_ready
    import llvmlite.binding as llvm
    if not _llvm_ready:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _llvm_ready = True
    return llvm


def _target_machine(llvm):
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), opt=0, codemodel="jitdefault", reloc="static")


_FORMAT = "straight 3"       # bump when ir_source's output changes for the same rows


def code_key(code, ipool, parts):
    """The disk cache's key of the machine code for these rows: the rows themselves (no IR is
    written for a cached program), the forms and versions they are translated with."""
    llvm = _llvm()
    digest = hashlib.sha256("\n".join([_FORMAT, cache.versions(), llvm.get_host_cpu_name(),
                                       repr(cpu.ELEMENTWISE_FORMS), repr(parts)]).encode())
    for start, stop in parts:
        digest.update(np.ascontiguousarray(code[start:stop]).tobytes())
    digest.update(np.ascontiguousarray(ipool).tobytes())
    return digest.hexdigest()


def compile_ir(ir, key):
    """Machine code (an object file's bytes) of the IR, kept in the disk cache under key. The
    work is in llvmlite's C calls, which release the GIL."""
    from numba.core.compiler_lock import global_compiler_lock
    llvm = _llvm()
    with global_compiler_lock:          # LLVM is not used from two threads at once
        module = llvm.parse_assembly(ir)
        data = _target_machine(llvm).emit_object(module)
    cache.write_blob("straight", key, data)
    return data


def object_code(code, ipool, parts):
    """Machine code of ir_source(code, ipool, parts), from the disk cache or compiled now."""
    key = code_key(code, ipool, parts)
    found = cache.read_blob("straight", key)
    return found if found is not None else compile_ir(ir_source(code, ipool, parts), key)


class Machine:
    """Loaded object code: its stretch functions, callable on a float64 buffer."""

    def __init__(self, data, n_parts):
        import ctypes
        from numba.core.compiler_lock import global_compiler_lock
        llvm = _llvm()
        with global_compiler_lock:
            self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""),
                                                     _target_machine(llvm))
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(data))
            self.engine.finalize_object()
        signature = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)
        self.functions = [signature(self.engine.get_function_address(f"stretch{k}"))
                          for k in range(n_parts)]


SYNC_ROWS = 8192    # rows compiled at once on the caller's thread (up to ~0.2 s): the code is
                    # there from the first sweep on, as a small program's callers time it
HOT_CALLS = 1       # the sweep that starts the compile: the first (a jitted function's second
                    # call; its first returns the traced values), so that the code is ready soon


def runner(code, ipool, interpreter, inner):
    """run(code, ipool, v) for this program: `inner` (rolled.runner's, or the interpreter) for
    its first HOT_CALLS sweeps and until the straight-line code of its stretches between
    rolled runs is ready, then that code with `inner`'s rolled kernels and the
    interpreter for the rest. `inner` itself when no stretch could be long enough."""
    if code.shape[0] < MIN_ROWS:
        return inner
    state = _Straight(code, ipool, interpreter, inner)

    def run(_code, ipool, v):
        plan = state.plan
        if plan is None:
            return state.waiting(_code, ipool, v)
        if v is not state.buffer:
            state.buffer, state.address = v, v.ctypes.data
        for kind, function, args in plan:
            if kind == _INTERPRET:
                status = interpreter(function, ipool, v)
            elif kind == _MACHINE:
                status = function(state.address)
            else:
                status = function(v, ipool, *args[0])
                if status:
                    return code[args[1] + status - 1, X1]
            if status:
                return status
        return 0

    run.state = state
    return run


_INTERPRET, _MACHINE, _ROLLED = range(3)


class _Straight:
    """A program's straight-line code: counting its sweeps, making the code (now or in the
    background), then the plan of steps that uses it."""

    def __init__(self, code, ipool, interpreter, inner):
        self.code, self.ipool, self.interpreter, self.inner = code, ipool, interpreter, inner
        self.plan = self.buffer = self.address = self.machine = None
        self.calls, self.error, self.started = 0, None, False
        self.steps = self.parts = None
        self.ready = threading.Event()
        self.lock = threading.Lock()

    def waiting(self, code, ipool, v):
        """One sweep on `inner`; starts the compile at the HOT_CALLS-th, and takes the plan up
        once the machine code is loaded."""
        self.calls += 1
        if self.calls >= HOT_CALLS and not self.started:
            with self.lock:
                if not self.started:
                    self.started = True
                    self.start()
        if self.ready.is_set() and self.machine is not None:
            with self.lock:
                if self.plan is None:
                    self.plan = self._plan()
        return self.inner(code, ipool, v)

    def start(self):
        """The stretches (rows between rolled runs only) and their compile (on a thread unless it
        is short)."""
        steps = self.inner.steps() if hasattr(self.inner, "steps") else ((None, self.code, 0),)
        between = np.zeros(self.code.shape[0], dtype=bool)      # rows no rolled kernel runs
        for kernel, rows, first in steps:
            if kernel is None:
                between[first:first + len(rows)] = True
        parts = stretches(usable_rows(self.code) & between)
        if not parts:
            self.ready.set()
            return
        self.steps, self.parts = steps, parts
        key = code_key(self.code, self.ipool, self.parts)
        found = cache.read_blob("straight", key)
        if found is not None:
            self._make(found)
            return
        # the IR is written here, on the caller's thread (a Python loop on a background thread
        # would take the GIL from the caller's calls); what is long is LLVM's compile, in C
        ir = ir_source(self.code, self.ipool, self.parts)
        if sum(stop - start for start, stop in parts) <= SYNC_ROWS:
            self._make(ir, key)         # shorter than a few dozen sweeps: made now
            return
        thread = threading.Thread(target=self._make, args=(ir, key), daemon=True,
                                  name="tapegrad straight-line compile")
        _pending.add(thread)
        thread.start()

    def _make(self, data, key=None):
        """The machine of object code `data`, or of IR `data` compiled under key."""
        try:
            if key is not None:
                data = compile_ir(data, key)
            self.machine = Machine(data, len(self.parts))
        except Exception as exc:        # noqa: BLE001 -- any failure: the interpreter stays on
            self.error = exc
        finally:
            _pending.discard(threading.current_thread())
            self.ready.set()

    def _plan(self):
        """The steps with each stretch's rows run by its machine function."""
        plan, functions = [], dict(zip(self.parts, self.machine.functions))
        starts = sorted(functions)
        for kernel, args, first in self.steps:
            if kernel is not None:
                plan.append((_ROLLED, kernel, (args, first)))
                continue
            at, stop = first, first + len(args)
            for part in starts:
                if at <= part[0] < stop:
                    if part[0] > at:
                        plan.append((_INTERPRET, self.code[at:part[0]], None))
                    plan.append((_MACHINE, functions[part], None))
                    at = part[1]
            if at < stop:
                plan.append((_INTERPRET, self.code[at:stop], None))
        return tuple(plan)


_pending = set()


def wait_all(timeout=None):
    """Wait for the compiles in flight (tests; and at exit, so that no thread is inside LLVM
    while the process tears LLVM down)."""
    for thread in list(_pending):
        thread.join(timeout)


atexit.register(wait_all, 60)
