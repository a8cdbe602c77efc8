"""Straight-line Numba code for array tapes: fused elementwise loops, BLAS matmul, native dtypes.

Where a tape works on large arrays, per-op interpretation costs a pass over memory per instruction.
Such tapes are short, so here each one becomes a generated function: chains of same-shaped
elementwise instructions run as one loop keeping intermediate values in registers (and a full
`sum` of the chain accumulates inside it), matmul calls BLAS through np.dot, and arrays keep their
dtypes (float32 stays float32). The source is content-hashed into the disk cache and compiled with
`cache=True`, so a new process with the same tape loads machine code.

The generated text depends on the tape's instructions, ranks, dtypes and which dimensions are 1
(broadcasting), never on sizes: every size, offset and non-round constant (1/n of a mean) is read
from the int64 and float64 arrays `z` and `c` passed at each call. Tapes traced for other sizes
give the same source, so one module and one compiled function serve them all (a module per size
was never freed: 200 sizes cost 360 MB).

Only primitives with a plain array form are generated here; any other tape stays with the
interpreter (cpu.Program), which handles every primitive.
"""
import math
import re
import sys
import threading
import warnings

import numpy as np

from tapegrad.tape import ELEMENTWISE, tree_unflatten

from . import cache

ARRAY_MIN_SIZE = 4096       # a slot this large makes a tape worth generating code for
MAX_INSTRUCTIONS = 400      # longer tapes are scalar-heavy: the interpreter serves them
SMALL_OFFSET = 16           # start offsets up to this are literals in generated code

# float32 tanh as Eigen (and so XLA) computes it: a rational function on [-9, 9] that LLVM
# vectorises, where math.tanh is a scalar libm call (about 50x slower); evaluated in float64,
# it stays within 2 ulp of float32 (NumPy's own float32 tanh is within 1).
_HELPERS = """

@njit(inline="always")
def tanh_f32(a):
    x = a if a < 9.0 else 9.0
    x = x if x > -9.0 else -9.0
    x2 = x * x
    p = x2 * -2.76076847742355e-16 + 2.00018790482477e-13
    p = x2 * p + -8.60467152213735e-11
    p = x2 * p + 5.12229709037114e-08
    p = x2 * p + 1.48572235717979e-05
    p = x2 * p + 6.37261928875436e-04
    p = x2 * p + 4.89352455891786e-03
    q = x2 * 1.19825839466702e-06 + 1.18534705686654e-04
    q = x2 * q + 2.26843463243900e-03
    q = x2 * q + 4.89352518554385e-03
    r = x * p / q
    return a if (abs(a) < 0.0004 or a != a) else r
"""


class Unsupported(NotImplementedError):
    pass


def _size(shape):
    return math.prod(shape)


def worth_generating(tape):
    return (len(tape.instrs) <= MAX_INSTRUCTIONS
            and any(_size(shape) >= ARRAY_MIN_SIZE for shape in tape.shapes))


def _scalar_form(name):
    from tapegrad.core import REGISTRY
    form = getattr(REGISTRY[name], "scalar", None)
    if form is None:
        raise Unsupported(name)
    return form


def _dtype(dtype):
    return f"np.{np.dtype(dtype).name}"


class _Generator:
    def __init__(self, tape):
        self.tape = tape
        self.lines = []
        self.const_args = []              # array constants, passed as arguments
        self.const_names = {}
        self.uses = tape.use_counts()
        self.flat = set()                 # slots whose flat view f<slot> exists
        self.work = []                    # (shape, dtype) of each pooled array argument w<k>
        self.views = set()                # transposes left as strided views (matmul operands)
        self.ints = []                    # values of the runtime integers z<k> (sizes, offsets)
        self.int_names = {}               # role of an integer -> its name
        self.floats = []                  # values of the runtime constants c<k>
        self.spreads = 0                  # broadcast copies b<k>
        self.loop = None                  # the fused loop being generated (names its sizes)

    # ---- names
    def is_scalar(self, slot):
        return self.tape.shapes[slot] == ()

    def name(self, slot):
        tape = self.tape
        if slot in tape.consts:
            value = np.asarray(tape.consts[slot])
            if value.ndim == 0:
                if slot not in self.const_names:
                    self.const_names[slot] = self.scalar_const(value)
                return self.const_names[slot]
            if slot not in self.const_names:
                self.const_names[slot] = f"k{len(self.const_args)}"
                self.const_args.append(np.ascontiguousarray(value))
            return self.const_names[slot]
        return f"s{slot}"

    # ---- runtime sizes and constants (the text must not depend on their values)
    def int_(self, value, role=None):
        """The name of a runtime integer holding value. A role (a structural key such as
        ("size", slot)) gives one name to every use of it; without one, each use is its own."""
        if role is not None and role in self.int_names:
            return self.int_names[role]
        self.ints.append(int(value))
        name = f"z{len(self.ints) - 1}"
        if role is not None:
            self.int_names[role] = name
        return name

    def offset(self, value):
        """A start offset: small ones (x[1:], x[:-1]) stay literals, so that LLVM sees how the
        accesses of one loop overlap; others (x[n // 2:]) are runtime integers."""
        return repr(int(value)) if 0 <= value <= SMALL_OFFSET else self.int_(value)

    def float_(self, value):
        self.floats.append(float(value))
        return f"c{len(self.floats) - 1}"

    def size_of(self, slot):
        return self.int_(_size(self.tape.shapes[slot]), ("size", slot))

    def shape_of(self, shape, role=None):
        """A tuple expression of runtime integers for shape."""
        names = [self.int_(n, None if role is None else role + (k,)) for k, n in enumerate(shape)]
        return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"

    def slot_shape(self, slot):
        return self.shape_of(self.tape.shapes[slot], ("shape", slot))

    def scalar_const(self, value):
        """A 0-d constant: small round numbers (exponents, halves) stay literals that Numba folds;
        any other value is a runtime constant."""
        if value.dtype.kind in "fb":
            number = float(value)
            if math.isfinite(number) and abs(number) <= 4 and (4 * number).is_integer():
                return repr(number)
            return self.float_(number)
        number = int(value)
        if abs(number) <= 4 or not -2 ** 63 <= number < 2 ** 63:
            return repr(number)
        return self.int_(number)

    def emit(self, line, depth=1):
        self.lines.append("    " * depth + line)

    def alloc(self, shape, dtype):
        """An expression for a new uninitialised array: a pooled argument (whatever its size,
        so that the text does not depend on sizes)."""
        shape, dtype = tuple(shape), np.dtype(dtype)
        if shape == ():
            return f"np.empty((), {_dtype(dtype)})"
        self.work.append((shape, dtype))
        return f"w{len(self.work) - 1}"

    def flat_of(self, slot):
        name = self.name(slot)
        if self.is_scalar(slot) and slot not in self.tape.consts:
            raise AssertionError("scalars have no flat view")
        flat = f"f_{name}"
        if flat not in self.flat:
            self.emit(f"{flat} = {name}.reshape({self.size_of(slot)})")
            self.flat.add(flat)
        return flat

    # ---- whole tape
    def generate(self):
        tape = self.tape
        inputs = [self.name(s) for s in tape.inputs]
        guards_of = {}
        for number, guard in enumerate(sorted(tape.guards, key=lambda g: g.position), 1):
            guards_of.setdefault(guard.slot, []).append((number, guard))
        for slot in list(tape.inputs) + list(tape.consts):
            for number, guard in guards_of.pop(slot, ()):
                self.guard(number, guard)
        order = self.schedule()
        done = set()
        position = 0
        while position < len(order):
            k = order[position]
            position += 1
            if k in done:
                continue
            ins = tape.instrs[k]
            if self.loop_member(ins):
                group, hoisted = [k], []
                members = {ins.out}
                while position < len(order):
                    nxt = tape.instrs[order[position]]
                    if order[position] in done:
                        pass
                    elif self.loop_member(nxt) and tape.shapes[nxt.out] == tape.shapes[ins.out]:
                        group.append(order[position])
                        members.add(nxt.out)
                    elif not self.loop_member(nxt) and nxt.prim.name != "index_add" and \
                            not members.intersection(nxt.ins):
                        # independent of the loop (a view, a scalar): computed before it
                        hoisted.append(order[position])
                    else:
                        break
                    position += 1
                for j in hoisted:
                    self.instruction(tape.instrs[j])
                finished = hoisted + self.fused_loop(group, order[position:], done | set(hoisted))
            else:
                self.instruction(ins)
                finished = [k]
            for j in finished:
                done.add(j)
                for number, guard in guards_of.pop(tape.instrs[j].out, ()):
                    self.guard(number, guard)
        outputs = ", ".join(self.name(s) for s in tape.outputs)
        body = "\n".join(self.lines)
        args = ", ".join(inputs + [f"k{i}" for i in range(len(self.const_args))]
                         + [f"w{i}" for i in range(len(self.work))] + ["z", "c"])
        unpack = "".join([f"    z{k} = z[{k}]\n" for k in range(len(self.ints))]
                         + [f"    c{k} = c[{k}]\n" for k in range(len(self.floats))])
        return (f"import math\n\nimport numpy as np\nfrom numba import njit\n{_HELPERS}\n\n"
                f"@njit(cache=True, error_model='numpy', nogil=True)\n"
                f"def tape_function({args}):\n{unpack}{body}\n"
                f"    return 0, ({outputs},)\n")

    def loop_member(self, ins):
        return (ins.prim.name in ELEMENTWISE and self.tape.shapes[ins.out] != ()
                and not set(ins.params) - {"dtype"})

    def schedule(self):
        """Instruction order with every other instruction moved just before its first reader, so
        that elementwise instructions of one shape (forward and adjoint alike) meet in one loop."""
        tape = self.tape
        pending = {}
        order, placed = [], set()

        def place(k):
            if k in placed:
                return
            placed.add(k)
            for slot in tape.instrs[k].ins:
                producer = tape.producer.get(slot)
                if producer is not None and producer in pending:
                    place(pending.pop(producer))
            order.append(k)

        guarded = {g.slot for g in tape.guards}
        for k, ins in enumerate(tape.instrs):
            if self.loop_member(ins) or ins.out in guarded:
                place(k)
            else:
                pending[k] = k
        for k in sorted(pending):
            place(k)
        return order

    def guard(self, number, guard):
        # a failed guard returns its number and placeholder outputs of the right types
        fail = ", ".join(self._placeholder(s) for s in self.tape.outputs)
        test = self.name(guard.slot) if self.is_scalar(guard.slot) else \
            f"{self.name(guard.slot)}.reshape(1)[0]"
        self.emit(f"if ({test} != 0) != {guard.expected}:")
        self.emit(f"return {number}, ({fail},)", 2)

    def _placeholder(self, slot):
        shape, dtype = self.tape.shapes[slot], self.tape.dtypes[slot]
        if shape == ():
            return f"{_dtype(dtype)}(0)"
        return f"np.zeros({self.slot_shape(slot)}, {_dtype(dtype)})"

    # ---- fused elementwise loops
    def operand(self, slot, members, shape):
        tape = self.tape
        if slot in members:
            return f"r{slot}"
        op_shape = tape.shapes[slot]
        if op_shape == () and slot not in tape.consts:
            return self.name(slot)
        if _size(op_shape) == 1:
            return self.name(slot) if op_shape == () else f"{self.flat_of(slot)}[0]"
        lead = len(shape) - len(op_shape)
        padded = (1,) * lead + tuple(op_shape)
        if padded == tuple(shape):
            return f"{self.flat_of(slot)}[i]"

        def tail(k):
            # the size of the loop's last k axes; one name per loop and k, so that `i % m` and
            # `i // m` of one split share it (fused_loop nests the loop on it)
            return self.int_(_size(shape[len(shape) - k:]), ("tail", self.loop, k))
        if tuple(shape[lead:]) == tuple(op_shape) and 1 not in op_shape:
            return f"{self.flat_of(slot)}[i % {tail(len(op_shape))}]"
        trailing = 0
        while trailing < len(padded) and padded[len(padded) - 1 - trailing] == 1:
            trailing += 1
        if tuple(padded[:len(padded) - trailing]) == tuple(shape[:len(shape) - trailing]):
            return f"{self.flat_of(slot)}[i // {tail(trailing)}]"
        spread = self.spread(slot, shape)
        return f"{spread}[i]"

    def spread(self, slot, shape):
        """A contiguous copy of slot broadcast to shape, flat."""
        spread = f"b{self.spreads}"
        self.spreads += 1
        self.emit(f"{spread} = np.ascontiguousarray(np.broadcast_to({self.name(slot)}, "
                  f"{self.shape_of(shape)})).reshape({self.int_(_size(shape))})")
        return spread

    def absorbable(self, ins, members, n, absorbed, available):
        """A later instruction that can run inside the loop: a full sum of a member, or an
        accumulation of a member into a contiguous run of another array."""
        tape = self.tape
        name = ins.prim.name
        if name == "sum" and ins.params.get("axis") is None and ins.ins[0] in members:
            return "sum"
        if name != "index_add" or ins.ins[1] not in members:
            return None
        base, values = ins.ins
        positions = np.ravel(np.arange(_size(tape.shapes[base])).reshape(
            tape.shapes[base])[ins.params["index"]])
        if positions.size != n or not np.array_equal(
                positions, np.arange(positions[0], positions[0] + n)):
            return None
        if base in tape.consts:
            return "accumulate" if not np.any(tape.consts[base]) else None
        # updating the base in place: only an array this tape made and nothing else reads
        if base in absorbed or (base in available and base not in tape.inputs
                                and self.uses.get(base, 0) == 1):
            return "accumulate"
        return None

    def fused_loop(self, group, rest, done):
        tape = self.tape
        instrs = [tape.instrs[k] for k in group]
        shape = tape.shapes[instrs[0].out]
        n = _size(shape)
        self.loop = instrs[0].out
        members = {ins.out for ins in instrs}
        available = set(tape.inputs) | {tape.instrs[k].out for k in done}
        absorbed, extra = {}, []
        for k in rest:
            ins = tape.instrs[k]
            if k in done or ins.prim.name not in ("sum", "index_add"):
                continue
            kind = self.absorbable(ins, members, n, absorbed, available)
            if kind is not None and all(s in members or s in available or s in absorbed
                                        or s in tape.consts for s in ins.ins):
                absorbed[ins.out] = (ins, kind)
                extra.append(k)
        inside = {}
        for ins in instrs + [a for a, _ in absorbed.values()]:
            for s in ins.ins:
                if s in members or s in absorbed:
                    inside[s] = inside.get(s, 0) + 1
        stored = [ins.out for ins in instrs if self.uses.get(ins.out, 0) > inside.get(ins.out, 0)]
        for slot in stored:
            self.emit(f"{self.name(slot)} = {self.alloc(shape, tape.dtypes[slot])}")
        body, after = [], []
        root = {}      # accumulated slot -> the first slot of its chain of in-place updates
        fresh = {}     # chain started from zeros -> [(body line, offset)] of its updates
        for out, (ins, kind) in absorbed.items():
            dtype = _dtype(tape.dtypes[out])
            if kind == "sum":
                self.emit(f"acc_{out} = {dtype}(0)")
                body.append(f"acc_{out} += r{ins.ins[0]}")
                after.append(f"{self.name(out)} = acc_{out}")
                continue
            base = ins.ins[0]
            if base in absorbed:
                self.emit(f"{self.name(out)} = {self.name(base)}")
                root[out] = root[base]
                # one flat name for the whole chain: LLVM then sees one array, keeps an element
                # updated twice in a register and need not reload after each store
                self.emit(f"f_{self.name(out)} = {self.flat_of(base)}")
                self.flat.add(f"f_{self.name(out)}")
            elif base in tape.consts:
                self.emit(f"{self.name(out)} = {self.alloc(tape.shapes[out], tape.dtypes[out])}")
                root[out] = out
                fresh[out] = []
            else:
                self.emit(f"{self.name(out)} = {self.name(base)}")
                root[out] = out
            positions = np.ravel(np.arange(_size(tape.shapes[base])).reshape(
                tape.shapes[base])[ins.params["index"]])
            if root[out] in fresh:
                fresh[root[out]].append((len(body), int(positions[0])))
            body.append(f"{self.flat_of(out)}[{self.offset(positions[0])} + i] += r{ins.ins[1]}")
        # An element's first update in a chain that starts from zeros stores instead of adding:
        # the term with the largest offset reaches each element first (earliest iteration), so
        # it stores, and only elements no term writes are zeroed (no zero-fill pass over memory).
        for start, writes in fresh.items():
            top = max(offset for _, offset in writes)
            first = next(line for line, offset in writes if offset == top)
            body[first] = body[first].replace(" += ", " = ", 1)
            flat = self.flat_of(start)
            # both edges, empty or not: which are empty depends on sizes, the text must not
            self.emit(f"{flat}[:{self.offset(top)}] = 0")
            self.emit(f"{flat}[{self.int_(top + n)}:] = 0")
        folded = self.fold_scalings(instrs)
        doubled = self.balance_ports(instrs, folded, len(absorbed) - len(fresh))
        loop = []
        for ins in instrs:
            if folded.get(ins.out, ()) is None:
                continue                # scaled into its one reader's constant
            if ins.out in folded:
                factor, slot = folded[ins.out]
                loop.append(f"r{ins.out} = ({self.scalar_const(np.float64(factor))} * "
                            f"{self.operand(slot, members, shape)})")
                continue
            operands = [self.float_(2.0) if ins.out in doubled and self.const_value(s) == 2 else
                        self.operand(s, members, shape) for s in ins.ins]
            loop.append(f"r{ins.out} = {self._form(ins).format(*operands)}")
            if ins.out in stored:
                loop.append(f"{self.flat_of(ins.out)}[i] = r{ins.out}")
        lines = loop + body
        text = "\n".join(lines)
        split = re.findall(r"\[i % (z\d+)\]", text) or re.findall(r"\[i // (z\d+)\]", text)
        if split:
            # an operand broadcast along the leading axes (a bias row) or the trailing ones (a
            # column): two nested loops, so that the inner one indexes it directly and vectorises
            # (`i % m` or `i // m` per element does not)
            m = split[0]
            self.emit(f"for o in range({self.int_(n // self.ints[int(m[1:])])}):")
            self.emit(f"for j in range({m}):", 2)
            self.emit(f"i = o * {m} + j", 3)
            for line in lines:
                self.emit(line.replace(f"[i % {m}]", "[j]").replace(f"[i // {m}]", "[o]"), 3)
        else:
            self.emit(f"for i in range({self.size_of(instrs[0].out)}):")
            for line in lines:
                self.emit(line, 2)
        for line in after:
            self.emit(line)
        return group + extra

    def const_value(self, slot):
        """The value of a 0-d constant slot as a float, else None."""
        value = self.tape.consts.get(slot)
        if value is None or np.ndim(value) != 0 or np.asarray(value).dtype.kind not in "biuf":
            return None
        return float(value)

    def _scaling(self, ins):
        """(constant value, other operand) of a float64 mul by a 0-d constant, else None."""
        if ins.prim.name != "mul" or ins.params or len(set(ins.ins)) != 2:
            return None
        dtypes = self.tape.dtypes
        for at in (0, 1):
            value, other = self.const_value(ins.ins[at]), ins.ins[1 - at]
            if value is not None and dtypes[ins.out] == np.float64 == dtypes[other]:
                return value, other
        return None

    def fold_scalings(self, instrs):
        """k * (p * t) with constants |k| >= 1 and p a power of two >= 1 (the 2 of d(x**2) = 2x),
        p * t read by nothing else, computed as (k p) * t: one multiplication less, and the same
        rounding as the rules' order (p * t is exact, or overflows where (k p) * t does too).
        Returns {slot: (k p, t)} for the products kept and {slot: None} for those folded in."""
        producer = {ins.out: ins for ins in instrs}
        folded = {}
        for ins in instrs:
            scaling = self._scaling(ins)
            if scaling is None or not 1 <= abs(scaling[0]) < math.inf:
                continue
            factor, slot = scaling
            inner = producer.get(slot)
            while inner is not None and self.uses.get(slot, 0) == 1 and slot not in folded:
                scaling = self._scaling(inner)
                if scaling is None:
                    break
                power, other = scaling
                if power < 1 or math.frexp(power)[0] != 0.5 or \
                        not math.isfinite(factor * power):
                    break
                folded[slot] = None
                factor, slot = factor * power, other
                folded[ins.out] = (factor, slot)
                inner = producer.get(slot)
        return folded

    def balance_ports(self, instrs, folded, accumulations):
        """The products x * 2 of this loop to compute by a multiplication (2 read at run time)
        rather than as x + x (LLVM's choice for a literal 2): x86 cores with separate adders
        and multipliers (AMD Zen) run a loop of more additions than multiplications at the
        adders' pace. Exact either way."""
        adds, muls, twos = 0, 0, []
        for ins in instrs:
            name = ins.prim.name
            if folded.get(ins.out, ()) is None:
                continue
            if name in ("add", "sub"):
                adds += 1
            elif name == "mul" and ins.out not in folded:
                scaling = self._scaling(ins)
                if scaling is not None and scaling[0] == 2:
                    twos.append(ins.out)
                    adds += 1
                else:
                    muls += 1
            elif name == "mul":
                muls += 1
        adds += accumulations           # sums and accumulations (not first stores) add
        doubled = set()
        while twos and adds > muls + 1:
            doubled.add(twos.pop())
            adds, muls = adds - 1, muls + 1
        return doubled

    def _form(self, ins):
        name = ins.prim.name
        if name == "tanh" and self.tape.dtypes[ins.out] == np.float32:
            return "tanh_f32({0})"
        if name == "cast":
            return f"{_dtype(ins.params['dtype'])}({{0}})"
        return _scalar_form(name)

    # ---- other instructions
    def instruction(self, ins):
        method = getattr(self, "gen_" + ins.prim.name, None)
        if ins.prim.name in ELEMENTWISE and not (set(ins.params) - {"dtype"}):
            method = self.gen_elementwise_scalar
        if method is None:
            raise Unsupported(ins.prim.name)
        method(ins, **ins.params)

    def out(self, ins):
        return self.name(ins.out)

    def gen_elementwise_scalar(self, ins, **params):
        # 0-d values: plain scalar arithmetic
        operands = [self.name(s) if self.is_scalar(s) else f"{self.flat_of(s)}[0]"
                    for s in ins.ins]
        dtype = _dtype(self.tape.dtypes[ins.out])
        self.emit(f"{self.out(ins)} = {dtype}({self._form(ins).format(*operands)})")

    def _array(self, slot):
        """An expression for the slot as an array (scalars become 0-d arrays)."""
        if self.is_scalar(slot):
            return f"np.full((), {self.name(slot)}, {_dtype(self.tape.dtypes[slot])})"
        return self.name(slot)

    def _gather(self, ins, indices):
        out_shape = self.tape.shapes[ins.out]
        indices = np.asarray(indices).ravel()
        src = self.flat_of(ins.ins[0]) if not self.is_scalar(ins.ins[0]) else None
        if src is None:
            self.emit(f"{self.out(ins)} = np.full({self.slot_shape(ins.out)}, "
                      f"{self.name(ins.ins[0])}, {_dtype(self.tape.dtypes[ins.out])})")
            return
        n = indices.size
        if out_shape == ():
            self.emit(f"{self.out(ins)} = {src}[{self.offset(indices[0])}]")
        elif n and np.array_equal(indices, np.arange(indices[0], indices[0] + n)):
            self.emit(f"{self.out(ins)} = {src}[{self.offset(indices[0])}:"
                      f"{self.int_(indices[0] + n)}].reshape({self.slot_shape(ins.out)})")
        else:
            index_map = self._const_array(indices.astype(np.int64))
            self.emit(f"{self.out(ins)} = {src}[{index_map}].reshape({self.slot_shape(ins.out)})")

    def _const_array(self, value):
        self.const_args.append(np.ascontiguousarray(value))
        return f"k{len(self.const_args) - 1}"

    def gen_getitem(self, ins, index):
        shape = self.tape.shapes[ins.ins[0]]
        self._gather(ins, np.arange(_size(shape)).reshape(shape)[index])

    def gen_transpose(self, ins, axes):
        shape = self.tape.shapes[ins.ins[0]]
        if self.is_scalar(ins.ins[0]) or len(shape) != 2:
            self._gather(ins, np.arange(_size(shape)).reshape(shape).transpose(axes))
            return
        if self.matmul_only(ins.out):
            # BLAS reads a transposed operand in place: no copy
            self.views.add(ins.out)
            self.emit(f"{self.out(ins)} = {self.name(ins.ins[0])}.T")
            return
        # a strided copy beats an index map
        self.emit(f"{self.out(ins)} = np.ascontiguousarray({self.name(ins.ins[0])}.T)")

    def matmul_only(self, slot):
        """True when every reader of slot is a 2-D matmul (not an output or a guard)."""
        readers = [ins for ins in self.tape.instrs if slot in ins.ins]
        return (sum(ins.ins.count(slot) for ins in readers) == self.uses.get(slot, 0)
                and all(ins.prim.name == "matmul" and all(
                    len(self.tape.shapes[s]) == 2 for s in ins.ins) for ins in readers))

    def gen_broadcast_to(self, ins, shape):
        in_shape = self.tape.shapes[ins.ins[0]]
        self._gather(ins, np.broadcast_to(np.arange(_size(in_shape)).reshape(in_shape), shape))

    def gen_reshape(self, ins, shape):
        src = ins.ins[0]
        if shape == ():
            self.emit(f"{self.out(ins)} = {self.flat_of(src)}[0]")
        elif self.is_scalar(src):
            self._gather(ins, np.zeros(_size(shape), dtype=np.int64))
        else:
            self.emit(f"{self.out(ins)} = {self.name(src)}.reshape({self.slot_shape(ins.out)})")

    def gen_clone(self, ins):
        self.emit(f"{self.out(ins)} = {self.name(ins.ins[0])}")

    def _scatter(self, ins, index, accumulate):
        tape = self.tape
        base, values = ins.ins
        shape = tape.shapes[base]
        positions = np.arange(_size(shape)).reshape(shape)[index]
        count = np.size(positions)
        dtype = _dtype(tape.dtypes[ins.out])
        out = self.out(ins)
        if base in tape.consts and not np.any(tape.consts[base]):
            self.emit(f"{out} = np.zeros({self.slot_shape(ins.out)}, {dtype})")
        else:
            self.emit(f"{out} = {self._array(base)}.astype({dtype})")
        self.flat.discard(f"f_{out}")
        flat = self.flat_of(ins.out)
        value = (self.name(values) if self.is_scalar(values) else
                 f"{self.flat_of(values)}[0]" if _size(tape.shapes[values]) == 1 else None)
        if value is None and _size(tape.shapes[values]) != count:
            value = f"{self.spread(values, np.shape(positions))}[j]"
        elif value is None:
            value = f"{self.flat_of(values)}[j]"
        operator = "+=" if accumulate else "="
        flat_positions = np.ravel(positions)
        if count and np.array_equal(flat_positions,
                                    np.arange(flat_positions[0], flat_positions[0] + count)):
            self.emit(f"for j in range({self.int_(count)}):")
            self.emit(f"{flat}[{self.offset(flat_positions[0])} + j] {operator} {value}", 2)
        else:
            index_map = self._const_array(flat_positions.astype(np.int64))
            self.emit(f"for j in range({self.int_(count)}):")
            self.emit(f"{flat}[{index_map}[j]] {operator} {value}", 2)

    def gen_index_add(self, ins, index):
        self._scatter(ins, index, True)

    def gen_setitem(self, ins, index):
        self._scatter(ins, index, False)

    def _reduce(self, ins, axis, init, update, scale=None):
        tape = self.tape
        x = ins.ins[0]
        shape = tape.shapes[x]
        dtype = _dtype(tape.dtypes[ins.out])
        out = self.out(ins)
        scale = None if scale is None else self.float_(scale)
        if self.is_scalar(x):
            self.emit(f"{out} = {dtype}({self.name(x)}{'' if scale is None else ' * ' + scale})")
            return
        axes = tuple(range(len(shape))) if axis is None else axis
        kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
        flat = self.flat_of(x)
        if _size(kept) == 1 and tape.shapes[ins.out] == ():
            self.emit(f"acc = {dtype}({init})")
            self.emit(f"for i in range({self.size_of(x)}):")
            self.emit(f"v = {flat}[i]", 2)
            self.emit(update.format(target="acc"), 2)
            self.emit(f"{out} = acc" + ("" if scale is None else f" * {scale}"))
            return
        kept_size = self.int_(_size(kept))
        self.emit(f"t_{out} = np.full({kept_size}, {init}, {dtype})")
        lead = 0
        while lead < len(shape) and lead in axes:
            lead += 1
        if set(axes) == set(range(lead)):
            # leading axes reduced: rows of the input add into the output row
            inner = self.int_(_size(shape[lead:]))
            self.emit(f"for o in range({self.int_(_size(shape[:lead]))}):")
            self.emit(f"for j in range({inner}):", 2)
            self.emit(f"v = {flat}[o * {inner} + j]", 3)
            self.emit(update.format(target=f"t_{out}[j]"), 3)
        elif set(axes) == set(range(len(shape) - len(axes), len(shape))):
            # trailing axes reduced: each output element is a contiguous run of the input
            inner = self.int_(_size(shape[len(shape) - len(axes):]))
            self.emit(f"for o in range({kept_size}):")
            self.emit(f"for j in range({inner}):", 2)
            self.emit(f"v = {flat}[o * {inner} + j]", 3)
            self.emit(update.format(target=f"t_{out}[o]"), 3)
        else:
            targets = np.broadcast_to(np.arange(_size(kept)).reshape(kept), shape)
            index_map = self._const_array(targets.ravel().astype(np.int64))
            self.emit(f"for i in range({self.size_of(x)}):")
            self.emit(f"v = {flat}[i]", 2)
            self.emit(update.format(target=f"t_{out}[{index_map}[i]]"), 2)
        if scale is not None:
            self.emit(f"t_{out} *= {scale}")
        out_shape = tape.shapes[ins.out]
        if out_shape == ():
            self.emit(f"{out} = t_{out}[0]")
        else:
            self.emit(f"{out} = t_{out}.reshape({self.slot_shape(ins.out)})")

    def gen_sum(self, ins, axis=None, keepdims=False):
        self._reduce(ins, axis, "0", "{target} += v")

    def gen_mean(self, ins, axis=None, keepdims=False):
        shape = self.tape.shapes[ins.ins[0]]
        count = _size(shape) // max(_size(self.tape.shapes[ins.out]), 1)
        self._reduce(ins, axis, "0", "{target} += v", scale=1.0 / max(count, 1))

    def gen_prod(self, ins, axis=None, keepdims=False):
        self._reduce(ins, axis, "1", "{target} *= v")

    def gen_amax(self, ins, axis=None, keepdims=False):
        self._reduce(ins, axis, "-np.inf", "{target} = v if (v > {target} or v != v) else {target}")

    def gen_amin(self, ins, axis=None, keepdims=False):
        self._reduce(ins, axis, "np.inf", "{target} = v if (v < {target} or v != v) else {target}")

    def gen_matmul(self, ins):
        tape = self.tape
        (a, b), out = ins.ins, self.out(ins)
        a_shape, b_shape = tape.shapes[a], tape.shapes[b]
        if len(a_shape) > 2 or len(b_shape) > 2:
            raise Unsupported("batched matmul")
        dtype = _dtype(tape.dtypes[ins.out])
        a2 = (1,) + a_shape if len(a_shape) == 1 else a_shape
        b2 = b_shape + (1,) if len(b_shape) == 1 else b_shape
        left, right = [self.name(s) if s in self.views else
                       f"{self.name(s)}.reshape({self.shape_of(shape)})"
                       for s, shape in ((a, a2), (b, b2))]
        if tape.dtypes[a] != tape.dtypes[ins.out]:
            left += f".astype({dtype})"
        if tape.dtypes[b] != tape.dtypes[ins.out]:
            right += f".astype({dtype})"
        out_shape = tape.shapes[ins.out]
        product = f"mm_{out}"
        # BLAS writes straight into the result (a pooled array when large)
        self.emit(f"{product} = {self.alloc((a2[0], b2[1]), tape.dtypes[ins.out])}")
        self.emit(f"np.dot({left}, {right}, {product})")
        if out_shape == ():
            self.emit(f"{out} = {product}[0, 0]")
        else:
            self.emit(f"{out} = {product}.reshape({self.slot_shape(ins.out)})")


class _Workspace:
    """The large arrays a generated function writes (results and temporaries), kept between calls.

    A fresh large array costs page faults on first touch (on the Rosenbrock gradient, more than the
    arithmetic). An array is lent to a call only while nothing else refers to it: a result the
    caller still holds, or any view of it, keeps its array out of the pool, so results are never
    overwritten; results that were dropped, and temporaries, are reused.
    """
    DEPTH = 3                      # arrays kept per site (results held across calls)

    def __init__(self, specs):
        self.specs = specs
        self.pools = [[] for _ in specs]
        self.lock = threading.Lock()

    def take(self):
        arrays = []
        with self.lock:
            for (shape, dtype), pool in zip(self.specs, self.pools):
                for array in pool:
                    # references: the pool, this loop's variable and getrefcount's argument
                    if sys.getrefcount(array) == 3:
                        break
                else:
                    array = np.empty(shape, dtype)
                    if len(pool) < self.DEPTH:
                        pool.append(array)
                arrays.append(array)    # lent: referred to until the call returns
        return arrays


class FusedProgram:
    """A generated function for one tape; same calling convention as cpu.Program."""

    def __init__(self, tape, fallback):
        generator = _Generator(tape)
        self.source = generator.generate()
        self.function = cache.load_module("tape_function", self.source).tape_function
        self.consts = generator.const_args
        self.sizes = np.array(generator.ints, dtype=np.int64)
        self.scalars = np.array(generator.floats, dtype=np.float64)
        self.workspace = _Workspace(generator.work)
        self.inputs = [(tape.shapes[s], tape.dtypes[s]) for s in tape.inputs]
        self.outputs = [(tape.shapes[s], tape.dtypes[s]) for s in tape.outputs]
        self.copied = _copied_outputs(tape)
        self.out_tree = tape.out_tree
        self.tape = tape
        self._fallback = fallback
        self._compiled = False

    def __call__(self, inputs):
        if not self._compiled:
            # the first call compiles (or loads from disk); code Numba cannot type falls back to
            # the interpreter, which runs every tape
            try:
                result = self._call(inputs)
            except Exception as exc:     # noqa: BLE001 - numba raises many error types
                warnings.warn(f"tapegrad_jit: generated code for this tape failed to compile "
                              f"({type(exc).__name__}: {str(exc)[:200]}); using the interpreter",
                              RuntimeWarning)
                self._call = self._fallback()
                return self._call(inputs)
            self._compiled = True
            return result
        return self._call(inputs)

    def call_source(self, args):
        """(names, body lines) calling the generated function on the input expressions `args`
        and returning the result tree, or None when a guard fails: for jit's fast path, which
        has checked that array arguments have the inputs' shapes and are C-contiguous, so they
        pass as they are (no Python call but the compiled function's). None before the first
        call has compiled it, or once it fell back to the interpreter."""
        if not self._compiled or "_call" in vars(self):
            return None
        names = dict(function=self.function, take=self.workspace.take, sizes=self.sizes,
                     scalars=self.scalars, asarray=np.asarray, contiguous=np.ascontiguousarray)
        passed = []
        for k, ((shape, dtype), arg) in enumerate(zip(self.inputs, args)):
            names[f"id{k}"] = dtype
            passed.append(f"{arg} if type({arg}) is ndarray and {arg}.dtype is id{k} else "
                          f"contiguous({arg}, id{k})" if shape else
                          f"id{k}.type(asarray({arg}).reshape(()))")
        for k, const in enumerate(self.consts):
            names[f"k{k}"] = const
            passed.append(f"k{k}")
        leaves = []
        for k, (shape, dtype) in enumerate(self.outputs):
            names[f"od{k}"], names[f"os{k}"] = dtype, shape
            leaves.append(f"asarray(outs[{k}], od{k}).reshape(os{k})"
                          + (".copy()" if k in self.copied else ""))
        tree = _tree_source(self.out_tree, iter(leaves))
        if tree is None:
            names.update(unflatten=tree_unflatten, out_tree=self.out_tree)
            tree = f"unflatten(out_tree, [{', '.join(leaves)}])"
        names["ndarray"] = np.ndarray
        return names, [f"status, outs = function({', '.join(passed)}, *take(), sizes, scalars)",
                       "if status:", "    return None", f"return {tree}"]

    def call_arrays(self, inputs):
        """The result tree, or None when a guard fails (jit's per-call path)."""
        ok, result = self(inputs)
        return result if ok else None

    def _call(self, inputs):
        args = [np.ascontiguousarray(np.reshape(value, shape), dtype=dtype) if shape else
                dtype.type(np.asarray(value).reshape(()))
                for (shape, dtype), value in zip(self.inputs, inputs)]
        status, outputs = self.function(*args, *self.consts, *self.workspace.take(), self.sizes,
                                        self.scalars)
        if status:
            return False, None
        leaves = [np.asarray(value, dtype=dtype).reshape(shape)
                  for (shape, dtype), value in zip(self.outputs, outputs)]
        for k in self.copied:
            leaves[k] = leaves[k].copy()
        return True, tree_unflatten(self.out_tree, leaves)

    def run_batched(self, inputs, axes, rows):
        return self._fallback().run_batched(inputs, axes, rows)


_VIEWS = ("clone", "reshape", "getitem", "transpose", "broadcast_to")   # may be generated as views


def _copied_outputs(tape):
    """Positions of the outputs the generated function may return as an input, a constant or
    an earlier output, or a view of one: copied, so that results are arrays the caller owns
    (writing one changes no argument, no later call's result and no other result)."""
    roots, copied = set(), set()
    for k, slot in enumerate(tape.outputs):
        if tape.shapes[slot] == ():
            continue                    # a 0-d result is a new array made from a scalar
        root = slot
        while root in tape.producer and tape.instrs[tape.producer[root]].prim.name in _VIEWS:
            root = tape.instrs[tape.producer[root]].ins[0]
        if root in roots or root in tape.consts or root in tape.inputs:
            copied.add(k)
        roots.add(root)
    return copied


def _tree_source(node, leaves, depth=0):
    """An expression building a result tree of tuples and lists from the leaf expressions, or
    None for other containers and deep trees (tree_unflatten builds those)."""
    if node is None or node == "*":
        return "None" if node is None else next(leaves)
    if node[0] not in (tuple, list) or len(node[1]) > 200 or depth > 20:
        return None
    parts = [_tree_source(child, leaves, depth + 1) for child in node[1]]
    if None in parts:
        return None
    inner = "".join(part + ", " for part in parts)
    return f"({inner})" if node[0] is tuple else f"[{inner}]"
