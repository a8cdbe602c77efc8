"""The flat Wengert tape: numbered slots, primitive instructions, guards, a printer and a reference
interpreter.

A tape is the whole program a compiled backend runs. Every slot holds one value of static shape and
dtype; a slot is an input, a constant, or the output of exactly one instruction (single assignment).
Instructions are `out = prim[params](ins...)` with `prim` taken from the registry; gradient tapes hold
the forward sweep and then the adjoint sweep, both made of the same primitives (the adjoint comes from
running the registry's VJP rules on tracers), told apart by each instruction's `phase`.

A guard records the outcome of a Python branch on a traced value: `slot` (a 0-d or 1-element value)
was observed to be truthy (`expected=True`) or not. Guards sit between instructions (`position` is
the number of instructions recorded before them), so a backend can check each one as soon as its slot
is computed and stop: results are never computed on a path the inputs did not take.
"""
import math
from collections import Counter
from itertools import chain
from operator import attrgetter

import numpy as np

from .core import REGISTRY

FORWARD, ADJOINT = "forward", "adjoint"
_NO_PARAMS = {}     # shared by instructions without parameters (params are never mutated)
_INS_OF = attrgetter("ins")


class GuardFailure(Exception):
    """The inputs took another branch than the one recorded on the tape."""

    def __init__(self, guard):
        super().__init__(f"guard {guard.slot} != {guard.expected} ({guard.where})")
        self.guard = guard


class Instr:
    __slots__ = ("prim", "ins", "out", "params", "phase")

    def __init__(self, prim, ins, out, params, phase=FORWARD):
        self.prim = prim
        self.ins = tuple(ins)
        self.out = out
        self.params = params
        self.phase = phase

    def key(self):
        """Identity for common-subexpression elimination."""
        if not self.params:
            return (self.prim.name, self.ins)
        return (self.prim.name, self.ins, params_key(self.params))


class Guard:
    __slots__ = ("slot", "expected", "position", "where")

    def __init__(self, slot, expected, position, where=""):
        self.slot = slot
        self.expected = bool(expected)
        self.position = position
        self.where = where


def params_key(params):
    """A hashable form of instruction parameters (index tuples may hold arrays and slices)."""
    if len(params) == 1:
        # the common case, an element's index: ints only are their own key
        (name, value), = params.items()
        if type(value) is tuple:
            for v in value:
                if type(v) is not int:
                    break
            else:
                return ((name, value),)
    return tuple(sorted((k, _freeze(v)) for k, v in params.items()))


# module level, not nested in params_key: a nested function calling itself is a reference cycle,
# and the passes run with the collector paused (transforms.gc_paused), so each would be kept
def _freeze(value):
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    if isinstance(value, (tuple, list)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.dtype):
        return value.str
    return value


# ---------------------------------------------------------------------------------------------
# Output trees: a function returns a value, a tuple of values, a dict, ... of arrays
# ---------------------------------------------------------------------------------------------

def tree_flatten(tree, is_leaf):
    leaves = []
    return leaves, _walk(tree, is_leaf, leaves)


# Module-level recursion, not nested closures: a closure that refers to itself is a reference cycle
# that would keep the leaves (result arrays) alive until the garbage collector runs.
def _walk(node, is_leaf, leaves):
    if isinstance(node, (tuple, list)):
        return (type(node), tuple(_walk(child, is_leaf, leaves) for child in node))
    if isinstance(node, dict):
        keys = tuple(node)
        return (dict, keys, tuple(_walk(node[k], is_leaf, leaves) for k in keys))
    if node is None:
        return None
    if type(node) is np.ndarray and node.dtype == object:    # np.array([t0, t1]) in a trace
        from .trace import refuse_objects
        refuse_objects(node)
    if not is_leaf(node):
        node = np.asarray(node)
    leaves.append(node)
    return "*"


def tree_unflatten(structure, leaves):
    return _build(structure, iter(leaves))


def _build(node, it):
    if node is None:
        return None
    if node == "*":
        return next(it)
    if node[0] is dict:
        return {k: _build(child, it) for k, child in zip(node[1], node[2])}
    kind, children = node
    return kind([_build(child, it) for child in children])


# ---------------------------------------------------------------------------------------------
# The tape
# ---------------------------------------------------------------------------------------------

class Tape:
    def __init__(self):
        self.shapes = []        # per slot
        self.dtypes = []        # per slot (numpy dtypes)
        self.inputs = []        # slots, in argument order
        self.consts = {}        # slot -> value (NumPy array or Python scalar)
        self.instrs = []
        self.guards = []
        self.outputs = []       # slots
        self.out_tree = "*"     # structure of the function's result over `outputs`
        self._producer = None   # slot -> index of the instruction writing it (see producer)

    # ---- building
    def new_slot(self, shape, dtype):
        self.shapes.append(shape if type(shape) is tuple else tuple(shape))
        self.dtypes.append(dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))
        return len(self.shapes) - 1

    def add_input(self, shape, dtype):
        slot = self.new_slot(shape, dtype)
        self.inputs.append(slot)
        return slot

    def add_const(self, value):
        array = np.asarray(value)
        slot = self.new_slot(array.shape, array.dtype)
        self.consts[slot] = value
        return slot

    def add_instr(self, prim, ins, params, shape, dtype, phase=FORWARD):
        # new_slot inlined: this runs once per recorded instruction
        shapes = self.shapes
        shapes.append(shape if type(shape) is tuple else tuple(shape))
        self.dtypes.append(dtype if isinstance(dtype, np.dtype) else np.dtype(dtype))
        out = len(shapes) - 1
        instrs = self.instrs
        producer = self._producer
        if producer is not None:
            producer[out] = len(instrs)
        instrs.append(Instr(prim, ins, out, params, phase))
        return out

    def add_guard(self, slot, expected, where=""):
        self.guards.append(Guard(slot, expected, len(self.instrs), where))

    @property
    def producer(self):
        """slot -> index of the instruction writing it (built when first asked for: the passes
        make one tape after another and rarely ask)."""
        if self._producer is None:
            self._producer = {ins.out: k for k, ins in enumerate(self.instrs)}
        return self._producer

    @producer.setter
    def producer(self, value):
        self._producer = value

    @property
    def num_slots(self):
        return len(self.shapes)

    def rebuilt(self, instrs, guards, consts=None):
        """A copy with new instruction and guard lists (used by the passes)."""
        tape = Tape()
        tape.shapes, tape.dtypes = list(self.shapes), list(self.dtypes)
        tape.inputs, tape.outputs, tape.out_tree = list(self.inputs), list(self.outputs), self.out_tree
        tape.consts = dict(self.consts if consts is None else consts)
        tape.instrs, tape.guards = instrs, guards
        tape._producer = None
        return tape

    # ---- reference interpreter
    def run(self, *args, check_guards=True):
        """Evaluate both sweeps with the registry's NumPy forwards; returns the output tree.

        Raises GuardFailure when the inputs take another branch than the recorded one.
        """
        values = self.evaluate(args, check_guards)
        leaves = [values[s] for s in self.outputs]
        return tree_unflatten(self.out_tree, leaves)

    def evaluate(self, args, check_guards=True):
        if len(args) != len(self.inputs):
            raise TypeError(f"tapegrad: this tape takes {len(self.inputs)} inputs, got {len(args)}")
        values = dict(self.consts)
        for slot, arg in zip(self.inputs, args):
            values[slot] = np.asarray(arg, dtype=self.dtypes[slot]).reshape(self.shapes[slot])
        guards = sorted(self.guards, key=lambda g: g.position)
        next_guard = 0
        for k, ins in enumerate(self.instrs + [None]):
            while next_guard < len(guards) and guards[next_guard].position <= k:
                guard = guards[next_guard]
                if check_guards and bool(values[guard.slot]) != guard.expected:
                    raise GuardFailure(guard)
                next_guard += 1
            if ins is None:
                break
            out = ins.prim.impl(*[values[s] for s in ins.ins], **ins.params)
            values[ins.out] = np.asarray(out)
        return values

    # ---- printing
    def __str__(self):
        return format_tape(self)

    __repr__ = __str__

    def use_counts(self):
        """How many times each slot is read: by instructions, guards and the outputs."""
        uses = Counter(chain.from_iterable(map(_INS_OF, self.instrs)))     # all in C
        uses.update(self.outputs)
        uses.update([g.slot for g in self.guards])
        return uses

    def count(self, phase=None):
        return sum(1 for ins in self.instrs if phase is None or ins.phase == phase)


# ---------------------------------------------------------------------------------------------
# Printer (in the manner of a jaxpr)
# ---------------------------------------------------------------------------------------------

_SHORT_DTYPES = {"float64": "f64", "float32": "f32", "float16": "f16", "int64": "i64",
                 "int32": "i32", "bool": "bool", "uint8": "u8", "int8": "i8", "int16": "i16"}


def slot_name(slot):
    """a, b, ..., z, ba, bb, ...: short names as in a jaxpr."""
    letters = ""
    while True:
        letters = chr(ord("a") + slot % 26) + letters
        slot //= 26
        if slot == 0:
            return letters


def _type_str(tape, slot):
    dtype = _SHORT_DTYPES.get(tape.dtypes[slot].name, tape.dtypes[slot].name)
    return f"{dtype}[{','.join(str(n) for n in tape.shapes[slot])}]"


def _param_str(value):
    if isinstance(value, slice):
        parts = ["" if p is None else str(p) for p in (value.start, value.stop, value.step)]
        return ":".join(parts[:2] if value.step is None else parts)
    if isinstance(value, tuple):
        return "(" + ",".join(_param_str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}" if value.size > 6 else str(value.tolist())
    return str(value)


def _const_str(value):
    array = np.asarray(value)
    if array.size <= 4:
        return np.array2string(array, separator=",").replace("\n", "")
    return f"<{array.dtype.name}{list(array.shape)}>"


def format_tape(tape):
    def operand(slot):
        if slot in tape.consts:
            return _const_str(tape.consts[slot])
        return slot_name(slot)

    header = " ".join(f"{slot_name(s)}:{_type_str(tape, s)}" for s in tape.inputs)
    lines = [f"{{ lambda {header} . let"]
    guards_at = {}
    for guard in tape.guards:
        guards_at.setdefault(guard.position, []).append(guard)
    phase = FORWARD
    for k, ins in enumerate(tape.instrs + [None]):
        for guard in guards_at.get(k, ()):
            where = f"   # {guard.where}" if guard.where else ""
            lines.append(f"    guard {slot_name(guard.slot)} == {guard.expected}{where}")
        if ins is None:
            break
        if ins.phase != phase:
            phase = ins.phase
            lines.append(f"  -- {phase} sweep --")
        params = ""
        if ins.params:
            params = "[" + " ".join(f"{k}={_param_str(v)}" for k, v in ins.params.items()) + "]"
        args = " ".join(operand(s) for s in ins.ins)
        lines.append(f"    {slot_name(ins.out)}:{_type_str(tape, ins.out)} = "
                     f"{ins.prim.name}{params} {args}")
    outs = ", ".join(operand(s) for s in tape.outputs)
    lines.append(f"  in ({outs}) }}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Passes: each returns a new tape that computes the same outputs (checked against `run` in tests)
# ---------------------------------------------------------------------------------------------

def eliminate_dead_code(tape):
    """Drop instructions that neither an output nor a guard needs."""
    live = set(tape.outputs) | {g.slot for g in tape.guards}
    kept = []
    for ins in reversed(tape.instrs):
        if ins.out in live:
            kept.append(ins)
            live.update(ins.ins)
    kept.reverse()
    return _renumber_guards(tape, kept)


def _renumber_guards(tape, kept, consts=None):
    """Keep each guard right after the instruction that computes its slot (or at the start)."""
    where = {ins.out: k + 1 for k, ins in enumerate(kept)} if tape.guards else {}
    guards = [Guard(g.slot, g.expected, where.get(g.slot, 0), g.where) for g in tape.guards]
    return tape.rebuilt(kept, guards, consts)


_FOLD_LIMIT = 1 << 16   # elements; larger constants are left to be computed at run time


def fold_constants(tape):
    """Evaluate instructions whose inputs are all constants; apply identities x*1, x+0, x-0, x/1."""
    consts = dict(tape.consts)
    alias = {}
    kept = []
    const_slots, aliased = consts.keys(), alias.keys()     # views: isdisjoint loops in C
    for ins in tape.instrs:
        ins_slots = ins.ins
        if alias and not aliased.isdisjoint(ins_slots):
            ins_slots = tuple([alias.get(s, s) for s in ins_slots])
        if (not ins_slots or not const_slots.isdisjoint(ins_slots) or
                ins.prim.name in _SHAPE_IDS) and _fold(tape, ins, ins_slots, consts, alias):
            continue
        # instructions are never changed in place: an unchanged one is shared with the new tape
        kept.append(ins if ins_slots is ins.ins else Instr(ins.prim, ins_slots, ins.out,
                                                             ins.params, ins.phase))
    return _apply_alias(tape, kept, alias, consts)


def _fold(tape, ins, ins_slots, consts, alias):
    """fold_constants' rules for one instruction that reads a constant, reads nothing, or is a
    reshape: True when it was evaluated into consts or aliased to its operand (in alias)."""
    n_const = 0
    for s in ins_slots:
        if s in consts:
            n_const += 1
    if n_const == len(ins_slots) and _size(tape.shapes[ins.out]) <= _FOLD_LIMIT:
        consts[ins.out] = np.asarray(ins.prim.impl(*[consts[s] for s in ins_slots], **ins.params))
        return True
    name = ins.prim.name
    if n_const and name in _UNIT_AT or name in _SHAPE_IDS:
        same = _identity_operand(tape, name, ins_slots, consts, ins.out)
        if same is not None:
            alias[ins.out] = same
            return True
    return False


def _size(shape):
    return math.prod(shape)


def _is_const_value(consts, slot, number):
    if slot not in consts:
        return False
    value = consts[slot]
    if isinstance(value, (int, float)):
        return value == number
    return bool(np.all(np.asarray(value) == number))


_SHAPE_IDS = frozenset(("reshape", "broadcast_to"))
_WATCHED_NAMES = _SHAPE_IDS | {"pow"}     # optimize's instructions that always need a look


def _identity_operand(tape, name, ins, consts, out):
    """The operand equal to the result, when the instruction is an identity on it."""
    if name in _SHAPE_IDS:
        candidates = ((0, None),)
    else:
        candidates = _UNIT_AT.get(name)
        if candidates is None:
            return None
    shapes, dtypes = tape.shapes, tape.dtypes
    for a, unit in candidates:
        x = ins[a]
        if (unit is None or _is_const_value(consts, ins[1 - a], unit)) and \
                shapes[x] == shapes[out] and dtypes[x] == dtypes[out]:
            return x
    return None


# binary identities: (the operand that is the result, the other's unit), tried in order
_UNIT_AT = {"mul": ((0, 1), (1, 1)), "add": ((0, 0), (1, 0)), "sub": ((0, 0),), "div": ((0, 1),)}


def _apply_alias(tape, kept, alias, consts):
    """The new tape: `kept` already reads resolved slots (each pass resolves as it goes); guards
    and outputs are resolved here."""
    result = tape.rebuilt(kept, [], consts)
    result.outputs = [_resolve(alias, s) for s in tape.outputs]
    guards = [Guard(_resolve(alias, g.slot), g.expected, g.position, g.where) for g in tape.guards]
    where = {ins.out: k + 1 for k, ins in enumerate(kept)} if guards else {}
    result.guards = [Guard(g.slot, g.expected, where.get(g.slot, 0), g.where) for g in guards]
    return result


def eliminate_common_subexpressions(tape):
    """Reuse the first of several identical instructions (same primitive, inputs and params)."""
    seen, alias, kept = {}, {}, []
    aliased, setdefault = alias.keys(), seen.setdefault
    for ins in tape.instrs:
        if alias and not aliased.isdisjoint(ins.ins):
            ins_slots = tuple([alias.get(s, s) for s in ins.ins])
            ins = Instr(ins.prim, ins_slots, ins.out, ins.params, ins.phase)
        key = (ins.prim.name, ins.ins) if not ins.params else ins.key()
        # one hash of the key (a tuple's hash is not cached): most instructions are new
        first = setdefault(key, ins.out)
        if first != ins.out:
            alias[ins.out] = first
        else:
            kept.append(ins)
    return _apply_alias(tape, kept, alias, tape.consts)


def simplify(tape):
    """Algebra that saves passes over memory (results stay within rounding of the original):

    x ** 1 -> x and x ** 2 -> x * x; a constant array of one repeated value in an elementwise
    instruction -> that value; and sums of scatter-adds into zeros (the adjoints of several
    slices of one array) -> one chain of scatter-adds into the same array.
    """
    consts = dict(tape.consts)
    # the scatter-adds (the only producers zero_scatter looks for)
    produced = {ins.out: ins for ins in tape.instrs if ins.prim.name == "index_add"}
    alias, kept = {}, []
    rules = _Simplifier(tape, consts, alias, produced, _lazy_uses(tape))
    # most instructions match no rule: these tell so without a lookup per operand
    array_consts, aliased, scatters = rules.array_consts, alias.keys(), produced.keys()
    for ins in tape.instrs:
        ins_slots = ins.ins
        if alias and not aliased.isdisjoint(ins_slots):
            ins_slots = tuple([alias.get(s, s) for s in ins_slots])
        name = ins.prim.name
        # an add is a candidate only when it reads a scatter-add
        if name != "pow" and (name != "add" or scatters.isdisjoint(ins_slots)) and (
                not array_consts or array_consts.isdisjoint(ins_slots)):
            kept.append(ins if ins_slots == ins.ins else Instr(ins.prim, ins_slots, ins.out,
                                                              ins.params, ins.phase))
            continue
        ins = rules.rewrite(ins, ins_slots)
        if ins is not None:
            kept.append(ins)
    if rules.merged:
        kept = [ins for ins in kept if ins.out not in rules.merged]
    return _apply_alias(tape, kept, alias, consts)


def _lazy_uses(tape, shared=()):
    """slot -> how many times tape reads it (counted when first asked). A slot in `shared` (others
    were made aliases of it) answers None: its count on tape says nothing."""
    counts = []

    def uses(slot):
        if slot in shared:
            return None
        if not counts:
            counts.append(tape.use_counts())
        return counts[0].get(slot)
    return uses


class _Simplifier:
    """simplify's rules, one instruction at a time (simplify and optimize walk the tape)."""

    def __init__(self, tape, consts, alias, produced, uses, seen=None):
        self.tape, self.consts, self.alias = tape, consts, alias   # new slots go on tape
        self.produced = produced    # slot -> the scatter-add (index_add) writing it
        self.uses = uses            # slot -> how many instructions, guards and outputs read it
        self.seen = seen            # optimize's CSE table: a merged scatter-add leaves it
        self.merged = set()         # scatter-adds merged into the add reading them (dropped)
        self.made = {}              # one slot per scalar (by its bytes): CSE sees equal operands
        self.array_consts = {s for s, v in consts.items() if getattr(v, "size", 1) > 1}

    def scalar_const(self, value, dtype):
        value = np.asarray(value, dtype=dtype)
        key = (value.dtype.str, value.tobytes())
        slot = self.made.get(key)
        if slot is None:
            slot = self.made[key] = self.tape.new_slot((), dtype)
            self.consts[slot] = value
        return slot

    def zero_scatter(self, slot, shape, dtype):
        ins = self.produced.get(slot)
        tape = self.tape
        return (ins is not None and self.uses(slot) == 1
                and _is_const_value(self.consts, ins.ins[0], 0) and tape.shapes[slot] == shape
                and tape.dtypes[ins.ins[0]] == dtype)

    def rewrite(self, ins, ins_slots):
        """The instruction that replaces ins (reading ins_slots, already resolved), or None when
        its result is one of its operands (then in alias)."""
        tape, consts, name = self.tape, self.consts, ins.prim.name
        shape, dtype = tape.shapes[ins.out], tape.dtypes[ins.out]
        if name == "pow" and ins_slots[1] in consts and (
                type(consts[ins_slots[1]]) in (int, float) or np.ndim(consts[ins_slots[1]]) == 0):
            exponent = consts[ins_slots[1]]
            base = ins_slots[0]
            same = tape.shapes[base] == shape and tape.dtypes[base] == dtype
            if exponent == 1 and same:
                self.alias[ins.out] = base
                return None
            if exponent == 2 and same:
                return Instr(REGISTRY["mul"], (base, base), ins.out, _NO_PARAMS, ins.phase)
        array_consts = self.array_consts
        if array_consts and not array_consts.isdisjoint(ins_slots) and name in ELEMENTWISE \
                and not ins.params:
            ins_slots = tuple(
                self.scalar_const(np.ravel(consts[s])[0], dtype)
                if s in consts and np.size(consts[s]) > 1 and tape.dtypes[s] == dtype
                and np.all(np.ravel(consts[s]) == np.ravel(consts[s])[0])
                and any(tape.shapes[o] == shape for o in ins_slots if o != s) else s
                for s in ins_slots)
        if name == "add" and self.produced and \
                tape.shapes[ins_slots[0]] == tape.shapes[ins_slots[1]] == shape:
            for into, scatter in ((0, 1), (1, 0)):
                if self.zero_scatter(ins_slots[scatter], shape, dtype) and \
                        tape.dtypes[ins_slots[into]] == dtype:
                    inner = self.produced[ins_slots[scatter]]
                    self.merged.add(inner.out)
                    if self.seen is not None and self.seen.get(_cse_key(inner)) == inner.out:
                        del self.seen[_cse_key(inner)]
                    return Instr(inner.prim, (ins_slots[into],
                                              self.alias.get(inner.ins[1], inner.ins[1])),
                                 ins.out, inner.params, ins.phase)
        return ins if ins_slots == ins.ins else Instr(ins.prim, ins_slots, ins.out, ins.params,
                                                     ins.phase)


def _cse_key(ins):
    return (ins.prim.name, ins.ins) if not ins.params else ins.key()


def optimize(tape):
    """The standard pipeline a backend runs before compiling: fold_constants, simplify,
    eliminate_common_subexpressions and eliminate_dead_code, fused into one walk forward and one
    back (each instruction meets the passes' rules in that order; a walk per pass, each making a
    tape, cost 4x the time). One difference: a scatter-add that other slots alias (through an
    identity or a common subexpression) is not merged into its add."""
    result = tape.rebuilt([], [])
    consts = result.consts
    alias, seen, shared, produced, kept = {}, {}, set(), {}, []
    rules = _Simplifier(result, consts, alias, produced, _lazy_uses(tape, shared), seen)
    array_consts, aliased, const_slots = rules.array_consts, alias.keys(), consts.keys()
    scatters, setdefault = produced.keys(), seen.setdefault
    # the slots whose readers may need more than the CSE lookup (constants, aliased slots,
    # scatter-adds): one test tells the common instruction, which reads none of them
    watched = set(consts)
    for ins in tape.instrs:
        ins_slots = ins.ins
        name = ins.prim.name
        if not ins_slots or name in _WATCHED_NAMES or not watched.isdisjoint(ins_slots) or \
                name == "add" and produced and not scatters.isdisjoint(ins_slots):
            if alias and not aliased.isdisjoint(ins_slots):
                ins_slots = tuple([alias.get(s, s) for s in ins_slots])
            if not ins_slots or not const_slots.isdisjoint(ins_slots) or name in _SHAPE_IDS:
                if _fold(result, ins, ins_slots, consts, alias):
                    out = ins.out
                    watched.add(out)
                    if out in alias:
                        shared.add(alias[out])
                    elif getattr(consts[out], "size", 1) > 1:
                        array_consts.add(out)
                    continue
            if name == "index_add":
                produced[ins.out] = ins if ins_slots is ins.ins else \
                    Instr(ins.prim, ins_slots, ins.out, ins.params, ins.phase)
            if name == "pow" or name == "add" and not scatters.isdisjoint(ins_slots) or (
                    array_consts and not array_consts.isdisjoint(ins_slots)):
                out, ins = ins.out, rules.rewrite(ins, ins_slots)
                if ins is None:                     # x ** 1: its result is x
                    watched.add(out)
                    shared.add(alias[out])
                    continue
                name, ins_slots = ins.prim.name, ins.ins
            elif ins_slots is not ins.ins:
                ins = produced.get(ins.out) or Instr(ins.prim, ins_slots, ins.out, ins.params,
                                                    ins.phase)
        elif name == "index_add":
            produced[ins.out] = ins
        params, out = ins.params, ins.out
        # one hash of the key (a tuple's hash is not cached): most instructions are new
        first = setdefault((name, ins_slots) if not params else
                           (name, ins_slots, params_key(params)), out)
        if first != out:
            alias[out] = first
            watched.add(out)
            shared.add(first)
        else:
            kept.append(ins)
    if rules.merged:
        kept = [ins for ins in kept if ins.out not in rules.merged]
    # dead code, from the outputs and guards back
    result.outputs = [_resolve(alias, s) for s in tape.outputs]
    guard_slots = [_resolve(alias, g.slot) for g in tape.guards]
    live = set(result.outputs)
    live.update(guard_slots)
    # a guarded slot -> how many kept instructions follow the one writing it (its guard's
    # position, once the count is known): no map of every instruction's place
    guarded = dict.fromkeys(guard_slots)
    final = []
    for ins in reversed(kept):
        out = ins.out
        if out in live:
            if guarded and out in guarded:
                guarded[out] = len(final)
            final.append(ins)
            live.update(ins.ins)
    final.reverse()
    result.instrs = final
    n = len(final)
    result.guards = [Guard(s, g.expected, 0 if guarded[s] is None else n - guarded[s], g.where)
                     for s, g in zip(guard_slots, tape.guards)]
    return result


def _resolve(alias, slot):
    while slot in alias:
        slot = alias[slot]
    return slot


# ---------------------------------------------------------------------------------------------
# Elementwise fusion: chains of same-shaped elementwise instructions become one loop body
# ---------------------------------------------------------------------------------------------

ELEMENTWISE = frozenset(name for name, prim in REGISTRY.items() if prim.kind == "elementwise")


def fusion_groups(tape, min_size=2):
    """Partition elementwise instructions into fusible groups.

    A group is a run of consecutive elementwise instructions whose outputs share one shape; an
    instruction joins the open group when its inputs are the group's own results, constants or
    values of that shape or of size 1 (broadcast scalars). Returns a list of lists of instruction
    indices, in tape order; a backend computes each group in one loop over the elements, keeping
    results that no later instruction reads in registers.
    """
    groups, current, shape = [], [], None
    for k, ins in enumerate(tape.instrs):
        out_shape = tape.shapes[ins.out]
        fusible = ins.prim.name in ELEMENTWISE and all(
            tape.shapes[s] == out_shape or _size(tape.shapes[s]) == 1 for s in ins.ins)
        if fusible and current and out_shape == shape:
            current.append(k)
            continue
        if len(current) >= min_size:
            groups.append(current)
        current, shape = ([k], out_shape) if fusible else ([], None)
    if len(current) >= min_size:
        groups.append(current)
    return groups
