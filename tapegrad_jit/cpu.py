"""Compiled forward and adjoint sweeps of a tape on the CPU.

A tape is lowered to three arrays that one compiled interpreter runs (no code is generated per tape,
so a 10,000-instruction tape is ready as soon as it is lowered):

  code   int32 [n_ops, 12]   one row per low-level op: OP, OUT, N, A, B, C, SA, SB, SC, X0, X1, X2
  ipool  int32 [...]         index maps (gathers, scatters, reduction targets), referenced by X0
  v0     float64 [...]       the slot buffer with constants filled in; every slot is a range of it

Elementwise ops (opcode < NUM_ELEMENTWISE) compute v[OUT + j] = f(v[A + j*SA], v[B + j*SB],
v[C + j*SC]) for j < N, with strides 0 (a broadcast scalar) or 1; their scalar bodies come from the
registry's `scalar` forms. The other ops are gathers, scatters, reductions, matmul (BLAS through
np.dot) and guards. Every value is stored as float64 (booleans as 0/1); results are cast back to the
tape's dtypes. Buffer ranges are reused once their last reader has run, so a scalar tape of 10,000
instructions works in a few kilobytes.

The interpreter is generated once from the registry, stored in the on-disk cache (see cache.py) and
compiled with Numba's `cache=True`, so a new process loads machine code instead of compiling.
"""
import array
import builtins
import math
import re
import struct
import threading
import warnings
import weakref
from itertools import chain, islice

import numpy as np

from tapegrad.core import REGISTRY
from tapegrad.tape import _INS_OF, GuardFailure, tree_flatten, tree_unflatten

from . import cache, lowering_linalg, lowering_nn, scalar_lowering

# ---------------------------------------------------------------------------------------------
# Opcodes
# ---------------------------------------------------------------------------------------------

OP, OUT, N, A, B, C, SA, SB, SC, X0, X1, X2 = range(12)
WIDTH = 12
ROW_KERNEL_INSTRUCTIONS = 2000  # longer row tapes stay on the interpreter (rows.py: compile time)

# backend-only elementwise forms (casts and a helper of logsumexp)
_BACKEND_FORMS = {
    "copy": "{0}",
    "cast_f32": "float(np.float32({0}))",
    "cast_int": "(float(int({0})) if {0} == {0} else 0.0)",
    "cast_bool": "(1.0 if {0} != 0.0 else 0.0)",
    "finite_or_zero": "({0} if abs({0}) < math.inf else 0.0)",
}

# Scalar superinstructions: a consumer with its one operand's single-use producer folded in, as
# (consumer, operand position, producer). Chosen from the instruction-pair statistics of real
# tapes (scalar graphs, pendulum loops, batched bumps, random op mixes; value and gradient): the
# commonest pairs whose operands fit in three, led by the adjoint's `acc + g * y`. add and mul
# take the producer in either position (IEEE addition and multiplication commute exactly).
SUPERINSTRUCTIONS = [
    ("add", 0, "mul"), ("add", 0, "add"), ("mul", 0, "mul"), ("mul", 0, "add"),
    ("add", 0, "div"), ("mul", 0, "neg"), ("div", 0, "mul"), ("mul", 0, "div"),
    ("mul", 0, "sub"), ("mul", 0, "cos"), ("sub", 1, "mul"), ("sub", 0, "mul"),
    ("exp", 0, "mul"), ("div", 0, "add"), ("add", 0, "neg"), ("sqrt", 0, "add"),
    ("div", 1, "mul"), ("add", 0, "abs"), ("tanh", 0, "mul"), ("mul", 0, "sin"),
    ("neg", 0, "mul"), ("exp", 0, "add"), ("add", 0, "sub"), ("log", 0, "add"),
]
# (Four-operand forms of three instructions, `acc + (g1 + g2) * y` with the fourth operand in
# column X0, ran the 10k-op scalar graph 15% slower on AMD EPYC despite 3% fewer ops.)
COMMUTATIVE = {"add", "mul"}


def _arity(form):
    return len(set(re.findall(r"\{(\d)\}", form)))


def _pair_form(outer, position, inner):
    """The consumer's scalar form with the producer's written into operand `position`: the
    producer's operands come first, then the consumer's others (same operations, same order:
    bit-for-bit the two instructions' result)."""
    inner_arity = _arity(inner)
    others = iter(range(inner_arity, 3))
    args = [None] * _arity(outer)
    for k in range(len(args)):
        args[k] = "(" + inner + ")" if k == position else "{%d}" % next(others)
    return outer.format(*args)


def _superinstruction_forms():
    forms = {}
    for outer, position, inner in SUPERINSTRUCTIONS:
        outer_form, inner_form = REGISTRY[outer].scalar, REGISTRY[inner].scalar
        if _arity(outer_form) - 1 + _arity(inner_form) <= 3:
            forms[f"{outer}{position}_{inner}"] = _pair_form(outer_form, position, inner_form)
    return forms


SUPERINSTRUCTION_FORMS = _superinstruction_forms()


def _elementwise_forms():
    forms = [(name, prim.scalar) for name, prim in sorted(REGISTRY.items())
             if getattr(prim, "scalar", None)]
    return forms + sorted(_BACKEND_FORMS.items()) + sorted(SUPERINSTRUCTION_FORMS.items())


ELEMENTWISE_FORMS = _elementwise_forms()
ELEMENTWISE_OPCODE = {name: k for k, (name, _) in enumerate(ELEMENTWISE_FORMS)}
NUM_ELEMENTWISE = len(ELEMENTWISE_FORMS)
FIRST_SUPERINSTRUCTION = min(ELEMENTWISE_OPCODE[name] for name in SUPERINSTRUCTION_FORMS)

_ARRAY_OPS = ["guard", "gather", "scatter_add", "scatter_set", "place",
              "reduce_sum", "reduce_prod", "reduce_max", "reduce_min", "matmul", "linalg", "pool"]
OPCODE = dict(ELEMENTWISE_OPCODE)
OPCODE.update({name: NUM_ELEMENTWISE + k for k, name in enumerate(_ARRAY_OPS)})


# ---------------------------------------------------------------------------------------------
# The interpreter, generated from the registry's scalar forms
# ---------------------------------------------------------------------------------------------

_KERNEL_HEADER = '''"""Generated by tapegrad_jit.cpu: the tape interpreter (see cpu.py for the layout)."""
import math

import numpy as np
from numba import njit, prange

OPTIONS = dict(cache=True, error_model="numpy", nogil=True)


@njit(**OPTIONS)
def gather(v, o, n, a, ipool, m):
    for j in range(n):
        v[o + j] = v[a + ipool[m + j]]


@njit(**OPTIONS)
def scatter(v, o, n, a, b, sb, ipool, m, count, accumulate, base):
    # base: 0 zeros, 1 a copy of v[a:a+n], 2 in place (o == a: nothing else reads the old array)
    if base != 2:
        for j in range(n):
            v[o + j] = v[a + j] if base else 0.0
    for j in range(count):
        if accumulate:
            v[o + ipool[m + j]] += v[b + j * sb]
        else:
            v[o + ipool[m + j]] = v[b + j * sb]


@njit(**OPTIONS)
def place(v, o, a, ipool, m, count):
    for j in range(count):
        v[o + ipool[m + j]] = v[a + j]


@njit(**OPTIONS)
def reduce(v, kind, o, n, a, ipool, m, count):
    init = 0.0 if kind == 0 else (1.0 if kind == 1 else (-math.inf if kind == 2 else math.inf))
    for j in range(n):
        v[o + j] = init
    for i in range(count):
        t = o if m < 0 else o + ipool[m + i]
        x = v[a + i]
        if kind == 0:
            v[t] += x
        elif kind == 1:
            v[t] *= x
        elif kind == 2:
            if x > v[t] or x != x:
                v[t] = x
        else:
            if x < v[t] or x != x:
                v[t] = x


@njit(**OPTIONS)
def matmul(v, o, a, b, stride_a, stride_b, batches, m, k, p):
    for i in range(batches):
        left = v[a + i * stride_a:a + i * stride_a + m * k].reshape((m, k))
        right = v[b + i * stride_b:b + i * stride_b + k * p].reshape((k, p))
        out = v[o + i * m * p:o + (i + 1) * m * p].reshape((m, p))
        np.dot(left, right, out)

'''

_RUN_TEMPLATE = '''
@njit(**OPTIONS)
def run(code, ipool, v):
    """Run every op of `code` on the buffer v; 0, or the number of the first failed guard."""
    for kk in range(code.shape[0]):
        k = np.uint64(kk)
        op = code[k, 0]
        o = code[k, 1]
        n = code[k, 2]
        a = code[k, 3]
        b = code[k, 4]
        c = code[k, 5]
        if op < {num_elementwise}:
            if n == 1:
                # unsigned indices: no negative-index wraparound test per access
                x = v[np.uint32(a)]
                y = v[np.uint32(b)]
{scalar_cases}
            else:
                sa = code[k, 6]
                sb = code[k, 7]
                sc = code[k, 8]
{loop_cases}
        elif op == {guard}:
            if (v[a] != 0.0) != (code[k, 9] != 0):
                return code[k, 10]
        elif op == {gather}:
            gather(v, o, n, a, ipool, code[k, 9])
        elif op == {scatter_add} or op == {scatter_set}:
            scatter(v, o, n, a, b, code[k, 7], ipool, code[k, 9], code[k, 10], op == {scatter_add},
                    code[k, 11])
        elif op == {place}:
            place(v, o, a, ipool, code[k, 9], code[k, 10])
        elif op == {matmul}:
            matmul(v, o, a, b, code[k, 6], code[k, 7], code[k, 8], code[k, 9], code[k, 10],
                   code[k, 11])
        elif op == {linalg}:
            linalg(v, ipool, o, n, a, b, c, code[k, 6], code[k, 7], code[k, 8], code[k, 9],
                   code[k, 10], code[k, 11])
        elif op == {pool}:
            pool(v, ipool, o, n, a, b, code[k, 6], code[k, 7], code[k, 8], code[k, 9])
        else:
            reduce(v, op - {reduce_sum}, o, n, a, ipool, code[k, 9], code[k, 10])
    return 0


@njit(parallel=True, **OPTIONS)
def run_rows(code, ipool, v0, rows, in_offsets, in_sizes, inputs, out_offsets, out_sizes,
             outputs, status, chunks):
    """run() for each batch row in parallel: row r reads inputs[r], writes outputs[i], status[i].
    Each of `chunks` parallel tasks works in its own copy of the buffer."""
    count = rows.shape[0]
    for chunk in prange(chunks):
        v = v0.copy()
        for i in range(chunk * count // chunks, (chunk + 1) * count // chunks):
            r = rows[i]
            column = 0
            for s in range(in_offsets.shape[0]):
                for j in range(in_sizes[s]):
                    v[in_offsets[s] + j] = inputs[r, column + j]
                column += in_sizes[s]
            status[i] = run(code, ipool, v)
            column = 0
            for s in range(out_offsets.shape[0]):
                for j in range(out_sizes[s]):
                    outputs[i, column + j] = v[out_offsets[s] + j]
                column += out_sizes[s]
'''


def _indent(lines, depth):
    return "\n".join(" " * depth + line for line in lines)


def interpreter_source():
    scalar_cases, loop_cases = [], []
    for opcode, (name, form) in enumerate(ELEMENTWISE_FORMS):
        keyword = "if" if opcode == 0 else "elif"
        # the third operand is read only by the forms that have one
        scalar_cases += [f"{keyword} op == {opcode}:  # {name}",
                         f"    v[np.uint32(o)] = {form.format('x', 'y', 'v[np.uint32(c)]')}"]
        if opcode >= FIRST_SUPERINSTRUCTION:
            continue                # superinstructions are scalar only: no loop form
        body = form.format("v[a + j * sa]", "v[b + j * sb]", "v[c + j * sc]")
        loop_cases += [f"{keyword} op == {opcode}:  # {name}",
                       "    for j in range(n):",
                       f"        v[o + j] = {body}"]
    return _KERNEL_HEADER + lowering_linalg.KERNEL_SOURCE + lowering_nn.KERNEL_SOURCE + \
        scalar_lowering.KERNEL_SOURCE + _RUN_TEMPLATE.format(
        num_elementwise=NUM_ELEMENTWISE, scalar_cases=_indent(scalar_cases, 16),
        loop_cases=_indent(loop_cases, 16), **{name: OPCODE[name] for name in _ARRAY_OPS})


_kernels = None
_kernels_lock = threading.Lock()


def kernels():
    """The compiled interpreter module (generated, cached on disk, loaded once per process)."""
    global _kernels
    with _kernels_lock:
        if _kernels is None:
            _kernels = cache.load_module("tape_interpreter", interpreter_source())
        return _kernels


# ---------------------------------------------------------------------------------------------
# Lowering a tape to ops over buffers
# ---------------------------------------------------------------------------------------------

class UnsupportedPrimitive(NotImplementedError):
    pass


def _size(shape):
    return math.prod(shape)


def _element(index, shape):
    """The flat position of x[index] when index names one element by ints, else None (O(1):
    element loops lower one read or write per iteration)."""
    if len(index) != len(shape) or any(type(i) is not int for i in index):
        return None
    flat = 0
    for i, n in zip(index, shape):
        if not -n <= i < n:
            return None         # NumPy's IndexError comes from the general path
        flat = flat * n + i % n
    return flat


def _spread_positions(shape, out_shape):
    """Each element of out_shape's flat position in `shape` broadcast to it (what
    np.broadcast_to(np.arange(size).reshape(shape), out_shape) holds, made 8x faster: small
    arrays broadcast on every array instruction)."""
    positions = np.empty(out_shape, dtype=np.intp)
    positions[...] = np.arange(_size(shape)).reshape(shape)
    return positions


class _Ref:
    """A place in the buffer: a virtual buffer (allocated later) and an offset into it."""
    __slots__ = ("buf", "delta")

    def __init__(self, buf, delta=0):
        self.buf = buf
        self.delta = delta

    def at(self, delta):
        return _Ref(self.buf, self.delta + delta)


class _Lowering:
    def __init__(self, tape):
        self.tape = tape
        self.sizes = []          # per virtual buffer
        self.const_data = {}     # buffer -> float64 data
        # one op = ROW ints, flat: opcode, out (buffer, delta), n, a, b, c (buffer, delta each),
        # sa, sb, sc, x0, x1, x2 -- turned into `code` rows by NumPy once buffers have offsets
        # int32 as `code` is (4 bytes an int; a list of ints: ~36): a value that does not fit
        # raises OverflowError (struct.error when packed), which Program reports as unsupported
        self.ops = array.array("i")
        self.maps = []           # index maps for ipool
        self.map_offset = 0
        self.refs = {}           # slot -> _Ref
        self._inputs = set(tape.inputs)
        self.map_cache = {}
        self.element_maps = {}   # flat position -> offset of its one-entry map
        self.in_place = []       # (op, base buffer, out buffer): scatters that may skip the copy
        self.methods = {}        # primitive name -> its lowering method, or None: elementwise
        self.spread_maps = {}    # (shape, broadcast shape) -> offset of its index map

    # ---- buffers
    def buffer(self, size):
        self.sizes.append(max(int(size), 1))
        return _Ref(len(self.sizes) - 1)

    def const(self, value):
        data = np.asarray(value, dtype=np.float64).ravel()
        ref = self.buffer(data.size)
        self.const_data[ref.buf] = data
        return ref

    def ref(self, slot):
        ref = self.refs.get(slot)
        if ref is None:
            if slot in self.tape.consts:
                ref = self.const(self.tape.consts[slot])
            elif self.tape.shapes[slot] == ():
                sizes = self.sizes             # buffer(1), inlined: most slots are scalars
                sizes.append(1)
                ref = _Ref(len(sizes) - 1)
            else:
                ref = self.buffer(_size(self.tape.shapes[slot]))
            self.refs[slot] = ref
        return ref

    def index_map(self, indices):
        indices = np.ascontiguousarray(indices, dtype=np.int64).ravel()
        key = indices.tobytes()
        offset = self.map_cache.get(key)
        if offset is None:
            offset = self.map_offset
            self.maps.append(indices.astype(np.int32))
            self.map_offset += indices.size
            self.map_cache[key] = offset
        return offset

    def emit(self, opcode, out, n, a=None, b=None, c=None, sa=0, sb=0, sc=0, x0=0, x1=0, x2=0):
        a = a if a is not None else out
        b = b if b is not None else a
        c = c if c is not None else a
        self.ops.extend((OPCODE[opcode], out.buf, out.delta, int(n), a.buf, a.delta, b.buf,
                         b.delta, c.buf, c.delta, int(sa), int(sb), int(sc), int(x0), int(x1),
                         int(x2)))

    # ---- building blocks
    def gather(self, out_ref, src, indices):
        """out = src[indices]; a contiguous run becomes an alias instead of a copy."""
        indices = np.asarray(indices).ravel()
        n = indices.size
        # the ends first: most index maps (broadcasts, strided reads) fail that cheap test
        if n and indices[-1] - indices[0] == n - 1 and np.array_equal(
                indices, np.arange(indices[0], indices[0] + n)):
            return src.at(int(indices[0])) if out_ref is None else self._copy(out_ref, src.at(
                int(indices[0])), n)
        out_ref = out_ref or self.buffer(n)
        self.emit("gather", out_ref, n, src, x0=self.index_map(indices))
        return out_ref

    def _copy(self, out_ref, src, n):
        self.emit("copy", out_ref, n, src, sa=1)
        return out_ref

    def broadcast(self, ref, shape, out_shape):
        """A ref whose elements follow out_shape (stride 1), or a size-1 ref (stride 0)."""
        if _size(shape) == 1 or tuple(shape) == tuple(out_shape) or _size(shape) == _size(
                out_shape):
            return ref
        return self.broadcast_copy(ref, shape, out_shape)

    def spread_map(self, shape, out_shape):
        """index_map(_spread_positions(shape, out_shape)), made once per pair of shapes."""
        key = (tuple(shape), tuple(out_shape))
        m = self.spread_maps.get(key)
        if m is None:
            m = self.spread_maps[key] = self.index_map(_spread_positions(shape, out_shape))
        return m

    def broadcast_copy(self, ref, shape, out_shape):
        """gather(None, ref, _spread_positions(shape, out_shape)) through spread_map. Sizes that
        differ repeat positions, so no ascending run (an alias) is possible."""
        n = _size(out_shape)
        if n == 0 or n == _size(shape):
            return self.gather(None, ref, _spread_positions(shape, out_shape))
        out_ref = self.buffer(n)
        self.emit("gather", out_ref, n, ref, x0=self.spread_map(shape, out_shape))
        return out_ref

    def elementwise(self, name, out_ref, out_shape, operands):
        """operands: (ref, shape) pairs; broadcasting against out_shape."""
        n = _size(out_shape)
        refs, strides = [], []
        for ref, shape in operands:
            ref = self.broadcast(ref, shape, out_shape)
            refs.append(ref)
            strides.append(0 if _size(shape) == 1 and n != 1 else 1)
        while len(refs) < 3:
            refs.append(refs[0])
            strides.append(0)
        out_ref = out_ref or self.buffer(n)
        self.emit(name, out_ref, n, refs[0], refs[1], refs[2], *strides)
        return out_ref

    def reduce(self, kind, out_ref, x_ref, x_shape, axis):
        """Reduce over axis (tuple or None) into out (keepdims layout); returns (ref, map_offset)."""
        axes = tuple(range(len(x_shape))) if axis is None else axis
        kept = tuple(1 if i in axes else n for i, n in enumerate(x_shape))
        out_n = _size(kept)
        out_ref = out_ref or self.buffer(out_n)
        if out_n == 1:
            m = -1
        else:
            m = self.spread_map(kept, x_shape)
        self.emit("reduce_" + kind, out_ref, out_n, x_ref, x0=m, x1=_size(x_shape))
        return out_ref, kept

    def spread(self, ref, kept, x_shape):
        """A reduced value (kept shape) broadcast back over x_shape, for elementwise use."""
        return self.broadcast(ref, kept, x_shape), (kept if _size(kept) == 1 else x_shape)

    # ---- one tape instruction
    def scalar(self, opcode, out_slot, slots):
        """A 0-d elementwise op (the bulk of scalar tapes), without the broadcasting machinery."""
        refs = self.refs
        a = refs.get(slots[0]) or self.ref(slots[0])
        b = (refs.get(slots[1]) or self.ref(slots[1])) if len(slots) > 1 else a
        c = (refs.get(slots[2]) or self.ref(slots[2])) if len(slots) > 2 else a
        out = refs.get(out_slot) or self.ref(out_slot)
        self.ops.extend((opcode, out.buf, out.delta, 1, a.buf, a.delta, b.buf, b.delta, c.buf,
                         c.delta, 1, 1, 1, 0, 0, 0))

    def lower(self, ins):
        tape = self.tape
        name = ins.prim.name
        if not ins.params and tape.shapes[ins.out] == () and name in ELEMENTWISE_OPCODE:
            self.scalar(ELEMENTWISE_OPCODE[name], ins.out, ins.ins)
            return
        params = ins.params
        shapes = [tape.shapes[s] for s in ins.ins]
        out_shape = tape.shapes[ins.out]
        method = self.methods.get(name, False)
        if method is False:         # looked up once a primitive (cleared with refs: no cycle)
            method = getattr(self, "lower_" + name, None) or lowering_linalg.lowering_for(
                self, name) or lowering_nn.lowering_for(self, name)
            self.methods[name] = method
        if method is not None:
            return method(ins, shapes, out_shape, **params)
        if name == "cast":
            kind = np.dtype(params["dtype"]).kind
            dtype = np.dtype(params["dtype"])
            name = ("cast_bool" if kind == "b" else "cast_int" if kind in "iu"
                    else "cast_f32" if dtype == np.float32 else "copy")
        if name in ELEMENTWISE_OPCODE and not (set(params) - {"dtype"}):
            out_ref = self.ref(ins.out)
            self.elementwise(name, out_ref, out_shape,
                             [(self.ref(s), shape) for s, shape in zip(ins.ins, shapes)])
            return
        raise UnsupportedPrimitive(f"tapegrad_jit.cpu: no lowering for primitive '{name}' "
                                   f"with params {sorted(params)}")

    def alias(self, ins, ref):
        self.refs[ins.out] = ref

    def lower_reshape(self, ins, shapes, out_shape, shape):
        self.alias(ins, self.ref(ins.ins[0]))

    def lower_clone(self, ins, shapes, out_shape):
        self.alias(ins, self.ref(ins.ins[0]))

    def _gather_slot(self, ins, indices):
        ref = self.gather(None, self.ref(ins.ins[0]), indices)
        self.alias(ins, ref)

    def lower_getitem(self, ins, shapes, out_shape, index):
        source, flat = ins.ins[0], _element(index, shapes[0])
        if flat is None:
            self._gather_slot(ins, np.arange(_size(shapes[0])).reshape(shapes[0])[index])
        elif source in self.tape.consts or source in self._inputs:
            self.alias(ins, self.ref(source).at(flat))
        else:
            # an element of an array built on the tape is copied where it is read, so a later
            # element write may update that array in place (an alias would read it later)
            self.alias(ins, self._copy(self.ref(ins.out), self.ref(source).at(flat), 1))

    def lower_transpose(self, ins, shapes, out_shape, axes):
        self._gather_slot(ins, np.arange(_size(shapes[0])).reshape(shapes[0]).transpose(axes))

    def lower_broadcast_to(self, ins, shapes, out_shape, shape):
        self.alias(ins, self.broadcast_copy(self.ref(ins.ins[0]), shapes[0], out_shape))

    def _scatter(self, ins, shapes, index, opcode):
        base_shape = shapes[0]
        flat = _element(index, base_shape)
        if flat is None:
            positions = np.arange(_size(base_shape)).reshape(base_shape)[index]
            pos_shape, m = positions.shape, self.index_map(positions)
        else:           # one element (element loops): its one-entry map, without NumPy work
            pos_shape, m = (), self.element_maps.get(flat)
            if m is None:
                m = self.element_maps[flat] = self.index_map(np.array(flat))
        values = self.broadcast(self.ref(ins.ins[1]), shapes[1], pos_shape)
        stride = 0 if _size(shapes[1]) == 1 and _size(pos_shape) != 1 else 1
        base = ins.ins[0]
        consts = self.tape.consts
        zero_base = base in consts and not np.any(consts[base])
        out_ref, base_ref = self.ref(ins.out), self.ref(base)
        if base not in consts and out_ref.delta == base_ref.delta == 0 and \
                self.sizes[base_ref.buf] == self.sizes[out_ref.buf] == _size(base_shape):
            self.in_place.append((len(self.ops) // ROW, base_ref.buf, out_ref.buf))
        self.emit(opcode, out_ref, _size(base_shape), base_ref, values, sb=stride,
                  x0=m, x1=_size(pos_shape), x2=0 if zero_base else 1)

    def lower_index_add(self, ins, shapes, out_shape, index):
        self._scatter(ins, shapes, index, "scatter_add")

    def lower_setitem(self, ins, shapes, out_shape, index):
        self._scatter(ins, shapes, index, "scatter_set")

    def _place_parts(self, ins, shapes, out_shape, part_index):
        out_ref = self.ref(ins.out)
        grid = np.arange(_size(out_shape)).reshape(out_shape)
        for k, (slot, shape) in enumerate(zip(ins.ins, shapes)):
            positions = grid[part_index(k)]
            values = self.broadcast(self.ref(slot), shape, np.shape(positions))
            self.emit("place", out_ref, _size(out_shape), values,
                      x0=self.index_map(positions), x1=positions.size)

    def lower_cat(self, ins, shapes, out_shape, axis):
        starts = np.cumsum([0] + [s[axis] for s in shapes])
        self._place_parts(ins, shapes, out_shape, lambda k: (slice(None),) * axis + (
            slice(int(starts[k]), int(starts[k + 1])),))

    def lower_stack(self, ins, shapes, out_shape, axis):
        self._place_parts(ins, shapes, out_shape, lambda k: (slice(None),) * axis + (k,))

    def _reduction(self, kind, ins, shapes, axis):
        self.reduce(kind, self.ref(ins.out), self.ref(ins.ins[0]), shapes[0], axis)

    def lower_sum(self, ins, shapes, out_shape, axis=None, keepdims=False):
        self._reduction("sum", ins, shapes, axis)

    def lower_prod(self, ins, shapes, out_shape, axis=None, keepdims=False):
        self._reduction("prod", ins, shapes, axis)

    def lower_amax(self, ins, shapes, out_shape, axis=None, keepdims=False):
        self._reduction("max", ins, shapes, axis)

    def lower_amin(self, ins, shapes, out_shape, axis=None, keepdims=False):
        self._reduction("min", ins, shapes, axis)

    def _scale(self, out_ref, ref, shape, factor):
        self.elementwise("mul", out_ref, shape, [(ref, shape), (self.const(factor), ())])

    def lower_mean(self, ins, shapes, out_shape, axis=None, keepdims=False):
        total, kept = self.reduce("sum", None, self.ref(ins.ins[0]), shapes[0], axis)
        self._scale(self.ref(ins.out), total, kept, 1.0 / max(_size(shapes[0]) // _size(kept), 1))

    def _logsumexp(self, x, x_shape, axis, out_ref=None):
        peak, kept = self.reduce("max", None, x, x_shape, axis)
        peak = self.elementwise("finite_or_zero", None, kept, [(peak, kept)])
        spread, spread_shape = self.spread(peak, kept, x_shape)
        shifted = self.elementwise("sub", None, x_shape, [(x, x_shape), (spread, spread_shape)])
        exps = self.elementwise("exp", None, x_shape, [(shifted, x_shape)])
        total, _ = self.reduce("sum", None, exps, x_shape, axis)
        logs = self.elementwise("log", None, kept, [(total, kept)])
        return self.elementwise("add", out_ref, kept, [(logs, kept), (peak, kept)]), kept

    def lower_logsumexp(self, ins, shapes, out_shape, axis=None, keepdims=False):
        self._logsumexp(self.ref(ins.ins[0]), shapes[0], axis, self.ref(ins.out))

    def lower_softmax(self, ins, shapes, out_shape, axis):
        x, x_shape = self.ref(ins.ins[0]), shapes[0]
        peak, kept = self.reduce("max", None, x, x_shape, (axis,))
        spread, spread_shape = self.spread(peak, kept, x_shape)
        shifted = self.elementwise("sub", None, x_shape, [(x, x_shape), (spread, spread_shape)])
        exps = self.elementwise("exp", None, x_shape, [(shifted, x_shape)])
        total, _ = self.reduce("sum", None, exps, x_shape, (axis,))
        spread, spread_shape = self.spread(total, kept, x_shape)
        self.elementwise("div", self.ref(ins.out), x_shape, [(exps, x_shape), (spread, spread_shape)])

    def lower_log_softmax(self, ins, shapes, out_shape, axis):
        x, x_shape = self.ref(ins.ins[0]), shapes[0]
        lse, kept = self._logsumexp(x, x_shape, (axis,))
        spread, spread_shape = self.spread(lse, kept, x_shape)
        self.elementwise("sub", self.ref(ins.out), x_shape, [(x, x_shape), (spread, spread_shape)])

    def lower_norm(self, ins, shapes, out_shape, ord=2, axis=None, keepdims=False):
        x, x_shape = self.ref(ins.ins[0]), shapes[0]
        if ord == 2:
            squares = self.elementwise("mul", None, x_shape, [(x, x_shape), (x, x_shape)])
            total, kept = self.reduce("sum", None, squares, x_shape, axis)
            self.elementwise("sqrt", self.ref(ins.out), kept, [(total, kept)])
            return
        magnitudes = self.elementwise("abs", None, x_shape, [(x, x_shape)])
        if ord not in (1, np.inf):
            raise UnsupportedPrimitive(f"tapegrad_jit.cpu: norm of order {ord}")
        self.reduce("sum" if ord == 1 else "max", self.ref(ins.out), magnitudes, x_shape, axis)

    def lower_mse_loss(self, ins, shapes, out_shape, reduction="mean"):
        d_shape = np.broadcast_shapes(*shapes)
        operands = [(self.ref(s), shape) for s, shape in zip(ins.ins, shapes)]
        diff = self.elementwise("sub", None, d_shape, operands)
        if reduction == "none":
            self.elementwise("mul", self.ref(ins.out), d_shape, [(diff, d_shape), (diff, d_shape)])
            return
        squares = self.elementwise("mul", None, d_shape, [(diff, d_shape), (diff, d_shape)])
        self._reduce_loss(ins, squares, d_shape, reduction)

    def _reduce_loss(self, ins, losses, shape, reduction):
        """A loss primitive's reduction ("sum" or "mean") of its elementwise losses."""
        if reduction == "sum":
            self.reduce("sum", self.ref(ins.out), losses, shape, None)
            return
        total, _ = self.reduce("sum", None, losses, shape, None)
        self._scale(self.ref(ins.out), total, (), 1.0 / max(_size(shape), 1))

    def lower_binary_cross_entropy(self, ins, shapes, out_shape, reduction="mean"):
        """-(y log p + (1 - y) log(1 - p)) * weight, each log clamped at -100 as in PyTorch."""
        (p, y, weight), (p_shape, y_shape, w_shape) = [self.ref(s) for s in ins.ins], shapes
        one, floor = (self.const(1.0), ()), (self.const(-100.0), ())
        q = self.elementwise("sub", None, p_shape, [one, (p, p_shape)])
        log_p, log_q = (self.elementwise("maximum", None, p_shape, [
            (self.elementwise("log", None, p_shape, [(v, p_shape)]), p_shape), floor])
            for v in (p, q))
        py_shape = np.broadcast_shapes(p_shape, y_shape)
        hit = self.elementwise("mul", None, py_shape, [(y, y_shape), (log_p, p_shape)])
        y_miss = self.elementwise("sub", None, y_shape, [one, (y, y_shape)])
        miss = self.elementwise("mul", None, py_shape, [(y_miss, y_shape), (log_q, p_shape)])
        both = self.elementwise("add", None, py_shape, [(hit, py_shape), (miss, py_shape)])
        l_shape = np.broadcast_shapes(py_shape, w_shape)
        out = self.ref(ins.out) if reduction == "none" else None
        losses = self.elementwise("mul", out, l_shape, [(both, py_shape), (weight, w_shape)])
        losses = self.elementwise("neg", out, l_shape, [(losses, l_shape)])
        if reduction != "none":
            self._reduce_loss(ins, losses, l_shape, reduction)

    def lower_clamp(self, ins, shapes, out_shape, min=None, max=None):
        ref, shape = self.ref(ins.ins[0]), shapes[0]
        steps = [("maximum", min), ("minimum", max)]
        steps = [(name, bound) for name, bound in steps if bound is not None]
        if not steps:
            self.alias(ins, ref)
            return
        for k, (name, bound) in enumerate(steps):
            out = self.ref(ins.out) if k == len(steps) - 1 else None
            ref = self.elementwise(name, out, shape, [(ref, shape), (self.const(bound), ())])

    def lower_matmul(self, ins, shapes, out_shape):
        (a_shape, b_shape), (a, b) = shapes, [self.ref(s) for s in ins.ins]
        a2 = (1,) + a_shape if len(a_shape) == 1 else a_shape
        b2 = b_shape + (1,) if len(b_shape) == 1 else b_shape
        m, k, p = a2[-2], a2[-1], b2[-1]
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
        batches = _size(batch)
        strides = []
        for ref_shape, ref, rows, cols in ((a2, a, m, k), (b2, b, k, p)):
            if _size(ref_shape[:-2]) == 1:
                strides.append((ref, 0))
            else:
                full = batch + (rows, cols)
                strides.append((self.broadcast(ref, ref_shape, full)
                                if ref_shape != full else ref, rows * cols))
        (a, sa), (b, sb) = strides
        self.emit("matmul", self.ref(ins.out), _size(out_shape), a, b, sa=sa, sb=sb,
                  sc=batches, x0=m, x1=k, x2=p)

    def lower_guard(self, guard, number):
        self.emit("guard", self.buffer(1), 1, self.ref(guard.slot), x0=int(guard.expected),
                  x1=number)


# ---------------------------------------------------------------------------------------------
# Memory planning: buffers are reused once their last reader has run
# ---------------------------------------------------------------------------------------------

ROW = 16     # ints per op in _Lowering.ops
_ROW_STRUCT = struct.Struct(f"={ROW}i")     # one op as the bytes of _Lowering.ops' int32s
_OPERANDS = [1, 4, 6, 8]        # their buffer columns: out, a, b, c
_KEY_LIMIT = 2 ** 62            # _plan's events sorted by one int64 key below it, else lexsort


def _plan(lowering, pinned):
    """Offsets for every virtual buffer, the buffer's size and the code. Constants
    and `pinned` buffers (inputs, outputs) keep their own range; any other buffer takes a free
    range of its size when first written and gives it back after its last reader."""
    sizes = lowering.sizes
    n_bufs = len(sizes)
    # a view of the lowering's array (written in place below), not a copy: 64 bytes an op
    ops = np.frombuffer(lowering.ops, dtype=np.int32).reshape(-1, ROW)
    n_ops = ops.shape[0]
    # first op writing each buffer, and last op touching it (as output or operand): ufunc.at
    # scans in place (np.unique's sorts of the columns were 10x slower and held copies)
    positions = np.arange(n_ops, dtype=np.int64)
    first_def = np.full(n_bufs, n_ops, dtype=np.int64)
    np.minimum.at(first_def, ops[:, 1], positions)
    first_def[first_def == n_ops] = -1
    last_use = np.full(n_bufs, -1, dtype=np.int64)
    for column in _OPERANDS:
        np.maximum.at(last_use, ops[:, column], positions)
    del positions
    root, pinned = _merge_in_place(lowering, ops, first_def, last_use, pinned)
    size_arr = np.array(sizes, dtype=np.int64)
    merged = root != np.arange(n_bufs)
    size_arr[merged] = 0
    fixed = (first_def < 0) & ~merged
    if lowering.const_data:
        fixed[list(lowering.const_data)] = True
    if pinned:
        fixed[list(pinned)] = True
    offsets_arr = np.zeros(n_bufs, dtype=np.int64)
    fixed_sizes = size_arr[fixed]
    offsets_arr[fixed] = np.cumsum(fixed_sizes) - fixed_sizes
    top = int(fixed_sizes.sum())
    shared = np.flatnonzero(~fixed & ~merged)
    if shared.size:
        # events in op order: at op k the buffer k writes is placed first, then the buffers whose
        # last reader is k are freed (in buffer order); one sort of one key (op, kind, buffer)
        if (2 * n_ops + 2) * n_bufs < _KEY_LIMIT:
            key = np.concatenate([first_def[shared] * 2, last_use[shared] * 2 + 1])
            key *= n_bufs
            key += np.concatenate([shared, shared])
            key.sort()
            bufs, frees = np.divmod(key, n_bufs)[::-1]
            del key
            frees &= 1
            frees = frees.astype(bool)
        else:
            times = np.concatenate([first_def[shared], last_use[shared]])
            kinds = np.repeat(np.array([False, True]), shared.size)
            bufs = np.concatenate([shared, shared])
            order = np.lexsort((bufs, kinds, times))
            bufs, frees = bufs[order], kinds[order]
        # an allocation reuses the range of the buffer freed last of its size (`reused`), or
        # takes a new one at the top; new ranges are laid out in event order at the end
        reused = np.arange(n_bufs)
        one = size_arr[bufs] == 1
        fresh = np.zeros(bufs.size, dtype=bool)
        fresh[one] = _reuse_last_freed(bufs[one], frees[one], reused)
        fresh[~one] = _reuse_by_size(bufs[~one].tolist(), frees[~one].tolist(), sizes, reused)
        new = bufs[fresh]
        new_sizes = size_arr[new]
        offsets_arr[new] = top + np.cumsum(new_sizes) - new_sizes
        top += int(new_sizes.sum())
        reused = _roots(reused)
        offsets_arr[shared] = offsets_arr[reused[shared]]
    if top > np.iinfo(np.int32).max:
        raise OverflowError("the buffer's offsets exceed int32")
    offsets_arr = offsets_arr[root]
    code = np.empty((n_ops, WIDTH), dtype=np.int32)     # int32 at once: no int64 copy
    code[:, OP] = ops[:, 0]
    code[:, N] = ops[:, 3]
    for column, (buf_col, delta_col) in ((OUT, (1, 2)), (A, (4, 5)), (B, (6, 7)), (C, (8, 9))):
        code[:, column] = offsets_arr[ops[:, buf_col]] + ops[:, delta_col]
    code[:, SA:] = ops[:, 10:16]
    return offsets_arr, top, code


def _roots(parent):
    """Each index's root under the parent links (pointer jumping: O(log depth) passes)."""
    while True:
        deeper = parent[parent]
        if np.array_equal(deeper, parent):
            return parent
        parent = deeper


def _reuse_last_freed(bufs, frees, reused):
    """A last-in-first-out free list of one size, vectorised: events in order (buffer freed or
    allocated); sets reused[b] to the freed buffer an allocation b takes, returns which
    allocations found the list empty. The list's length after each event is a walk of +1 per
    free and -1 per allocation held at 0; an allocation at length L takes the last free that
    raised it to L, which is the event just before it among the events of level L."""
    if not bufs.size:
        return np.zeros(0, dtype=bool)
    step = np.where(frees, 1, -1)
    walk = np.cumsum(step)
    after = walk - np.minimum(np.minimum.accumulate(walk), 0)
    del walk
    before = np.empty_like(after)
    before[0] = 0
    before[1:] = after[:-1]
    fresh = ~frees & (before == 0)
    level = np.where(frees, after, before)
    level[fresh] = -1
    order = np.argsort(level, kind="stable")
    taken = np.flatnonzero(~frees[order] & ~fresh[order])
    reused[bufs[order[taken]]] = bufs[order[taken - 1]]
    return fresh


def _reuse_by_size(bufs, frees, sizes, reused):
    """_reuse_last_freed for buffers of any sizes (a free list per size), in Python: few events
    but in array tapes."""
    free, fresh = {}, [False] * len(bufs)
    for k, (buf, freed) in enumerate(zip(bufs, frees)):
        pool = free.setdefault(sizes[buf], [])
        if freed:
            pool.append(buf)
        elif pool:
            reused[buf] = pool.pop()
        else:
            fresh[k] = True
    return fresh


def _merge_in_place(lowering, ops, first_def, last_use, pinned):
    """Scatters whose base array is read by nothing after them write into the base's buffer
    (scatter mode 2: no copy), so a chain of element writes or of scatter-adds into one adjoint
    costs O(1) per element and one array of memory. Updates last_use; returns each buffer's
    root (`ops` keeps the merged names: the code reads offsets through the roots) and the pinned
    roots."""
    n_bufs = len(lowering.sizes)
    root = np.arange(n_bufs)
    if not lowering.in_place:
        return root, pinned
    keep = set(lowering.const_data) | set(pinned)
    for k, base, out in lowering.in_place:
        base = root[base]
        if base in keep or last_use[base] != k or root[ops[k, 6]] == base or out in keep:
            continue                # read later, an input, or values from the same array
        root[out] = base
        last_use[base] = last_use[out]
        ops[k, 15] = 2
    root = _roots(root)             # chains: out -> base -> its base ...
    return root, {int(root[b]) for b in pinned}


# ---------------------------------------------------------------------------------------------
# Programs
# ---------------------------------------------------------------------------------------------

# (consumer, producer, operand position) -> opcode of their superinstruction
_PAIRS = {}
for _outer, _position, _inner in SUPERINSTRUCTIONS:
    _name = f"{_outer}{_position}_{_inner}"
    if _name in SUPERINSTRUCTION_FORMS:
        for _at in ((0, 1) if _outer in COMMUTATIVE else (_position,)):
            _PAIRS[_outer, _inner, _at] = OPCODE[_name]
_PRODUCERS = {inner for _, _, inner in SUPERINSTRUCTIONS}
# the float dtypes a superinstruction's values may have (a set look-up, not a .kind per slot)
_FLOATS = frozenset(np.dtype(code) for code in "efdg")


class Program:
    """A tape lowered for the compiled interpreter. Call with the input arrays."""

    def __init__(self, tape):
        lowering = _Lowering(tape)
        input_refs = [lowering.ref(s) for s in tape.inputs]
        guards = sorted(tape.guards, key=lambda g: g.position)
        try:
            if not scalar_lowering.lower(tape, lowering, guards):
                self._lower(tape, lowering, guards)
            output_refs = [lowering.ref(s) for s in tape.outputs]
            pinned = {r.buf for r in input_refs + output_refs}
            # the slot -> ref tables are done with: freed before planning's peak (issue 12)
            lowering.refs = lowering.map_cache = lowering.element_maps = lowering.methods = \
                lowering.spread_maps = None
            offsets, total, code = _plan(lowering, pinned)
        except (OverflowError, struct.error) as exc:
            raise UnsupportedPrimitive(f"tapegrad_jit.cpu: the tape does not fit the "
                                       f"interpreter's int32 code ({exc})") from None
        # offsets: an array (a list of every buffer's was ~36 bytes a buffer at the peak)
        offsets = {buf: int(offsets[buf]) for buf in list(lowering.const_data)
                   + [r.buf for r in input_refs + output_refs]}
        v0 = np.zeros(max(total, 1))
        for buf, data in lowering.const_data.items():
            v0[offsets[buf]:offsets[buf] + data.size] = data
        self.code = code
        self.ipool = (np.concatenate(lowering.maps) if lowering.maps
                      else np.zeros(1, dtype=np.int32))
        self.v0 = v0
        self.inputs = [(offsets[r.buf] + r.delta, _size(tape.shapes[s]), tape.shapes[s])
                       for r, s in zip(input_refs, tape.inputs)]
        self.outputs = [(offsets[r.buf] + r.delta, _size(tape.shapes[s]), tape.shapes[s],
                         tape.dtypes[s]) for r, s in zip(output_refs, tape.outputs)]
        self.out_tree = tape.out_tree
        # only a row kernel reads the tape again: a long tape kept alive would be two tracked
        # objects an instruction (Instr, ins tuple) for every later collection to traverse
        self.tape = tape if len(tape.instrs) <= ROW_KERNEL_INSTRUCTIONS else None
        self.guards = guards
        self._local = threading.local()
        # repeated loop bodies run as compiled loops (rolled.py), the rows between them as
        # straight-line machine code made at the program's first sweep (straight.py)
        from . import rolled, straight
        interpreter = kernels().run
        self._run = straight.runner(self.code, self.ipool, interpreter,
                                    rolled.runner(self.code, self.ipool, interpreter))
        self._results = result_builder(self.out_tree, [dtype for *_, dtype in self.outputs])
        self._call_arrays = self._call_function()
        # the generated row kernel: False until first asked for, None: interpreter
        self._rows = False if self.tape is not None else None
        self._lock = threading.Lock()

    @staticmethod
    def _lower(tape, lowering, guards):
        """Lower every instruction and guard, in one pass. A scalar instruction read by one
        scalar instruction alone is held back (pending) until its reader comes: a pair the
        reader and it make in SUPERINSTRUCTIONS becomes one op, else it is stored just before
        its reader. A fused op is never taken into a third (its operands could be gone)."""
        # reads per slot as a list (tape.use_counts' Counter was ~5x the memory at the peak)
        reads = np.fromiter(chain.from_iterable(map(_INS_OF, tape.instrs)), dtype=np.int64)
        uses = np.bincount(reads, minlength=len(tape.shapes)).tolist()
        del reads
        for slot in list(tape.outputs) + [g.slot for g in guards]:
            uses[slot] += 2             # results must be stored: never folded away
        shapes, dtypes, pairs = tape.shapes, tape.dtypes, _PAIRS
        opcodes, producers, floats = ELEMENTWISE_OPCODE, _PRODUCERS, _FLOATS
        refs, ref, sizes = lowering.refs, lowering.ref, lowering.sizes
        # an op's 16 ints packed in one C call (array.extend converts a tuple item by item: 2x)
        append, pack = lowering.ops.frombytes, _ROW_STRUCT.pack
        consts = tape.consts
        new_ref = object.__new__        # a fresh scalar's _Ref without a call of __init__
        pending = {}                    # slot -> (opcode, slot, operands, primitive name)
        pending_slots = pending.keys()

        def scalar(opcode, out, operands):
            # lowering.scalar inlined (the bulk of scalar tapes): a new 0-d result gets a buffer
            a = refs.get(operands[0]) or ref(operands[0])
            n = len(operands)
            b = (refs.get(operands[1]) or ref(operands[1])) if n > 1 else a
            c = (refs.get(operands[2]) or ref(operands[2])) if n > 2 else a
            o = refs.get(out)
            if o is None:
                if out in consts:
                    o = ref(out)
                else:
                    o = refs[out] = new_ref(_Ref)
                    o.buf, o.delta = len(sizes), 0
                    sizes.append(1)
            append(pack(opcode, o.buf, o.delta, 1, a.buf, a.delta, b.buf, b.delta, c.buf, c.delta,
                        1, 1, 1, 0, 0, 0))

        # the instructions in runs, each followed by the guards placed before the next one (no
        # per-instruction check); guards placed after the last come after the pending ops
        instrs, n_instrs, done = iter(tape.instrs), len(tape.instrs), 0
        early = [guard for guard in guards if guard.position < n_instrs]
        for number, guard in enumerate(early + [None], 1):
            stop = n_instrs if guard is None else max(guard.position, 0)
            for ins in islice(instrs, stop - done):
                out, operands, name = ins.out, ins.ins, ins.prim.name
                opcode = opcodes.get(name)
                if opcode is None or ins.params or shapes[out] != ():
                    for slot in operands:
                        if slot in pending:
                            scalar(*pending.pop(slot)[:3])
                    lowering.lower(ins)
                    continue
                fused = False
                if pending and not pending_slots.isdisjoint(operands):     # in C: most have none
                    for position, slot in enumerate(operands):
                        inner = pending.get(slot)
                        if inner is not None:
                            pair = pairs.get((name, inner[3], position))
                            if pair is not None and dtypes[out] in floats:
                                del pending[slot]
                                opcode, fused = pair, True
                                operands = inner[2] + operands[:position] + operands[position + 1:]
                                break
                    for slot in operands:
                        if slot in pending:
                            scalar(*pending.pop(slot)[:3])
                # an elementwise op of 0-d result reads 0-d operands only: their dtypes are left
                if not fused and name in producers and uses[out] == 1 and dtypes[out] in floats:
                    for slot in operands:
                        if dtypes[slot] not in floats:
                            break
                    else:
                        pending[out] = (opcode, out, tuple(operands), name)
                        continue
                scalar(opcode, out, operands)
            done = max(done, stop)
            if guard is not None:
                lowering.lower_guard(guard, number)
        for op in list(pending.values()):
            scalar(*op[:3])
        for number, guard in enumerate(guards[len(early):], len(early) + 1):
            lowering.lower_guard(guard, number)

    def _buffer(self):
        v = getattr(self._local, "v", None)
        if v is None:
            v = self._local.v = self.v0.copy()
        return v

    def _io(self):
        """This thread's buffer and views of its input and output ranges, made once: a call
        then slices nothing."""
        io = getattr(self._local, "io", None)
        if io is None:
            v = self._buffer()
            io = self._local.io = (
                v, [v[o:o + n].reshape(shape) for o, n, shape in self.inputs],
                [v[o:o + n].reshape(shape) for o, n, shape, _ in self.outputs])
        return io

    def call_source(self, args):
        """(names, body lines) running this program on the input expressions `args` and returning
        its result tree, or None when a guard fails: for generated callers (call_arrays, jit's
        fast path), so that a call makes no further Python call but the sweep's."""
        # made through a weak method: a program and its generated callers are no reference cycle,
        # so that they are freed with their last user, not by a later collection
        io = weakref.WeakMethod(self._io)
        names = dict(local=self._local, make_io=lambda: io()(), run=self._entry(), code=self.code,
                     ipool=self.ipool)
        results, result_names = result_source(self.out_tree,
                                              [dtype for *_, dtype in self.outputs], "outs")
        names.update(result_names)
        lines = ["try:", "    v, views, outs = local.io",
                 "except AttributeError:", "    v, views, outs = make_io()"]
        lines += [f"views[{k}][...] = {a}" for k, a in enumerate(args)]
        lines += ["if run(code, ipool, v):", "    return None", f"return {results}"]
        return names, lines

    def _entry(self):
        """The sweep's compiled entry point for this program's argument types when Numba has
        one (calling it skips the dispatcher's type resolution, about 0.07 us), else the
        dispatcher."""
        from numba import typeof
        run = self._run
        if not hasattr(run, "overloads"):
            return run
        signature = tuple(typeof(a) for a in (self.code, self.ipool, self._buffer()))
        if signature not in run.overloads:
            run.compile(signature)          # what the first call would do (from the disk cache)
        overload = run.overloads.get(signature)
        return run if overload is None else overload.entry_point

    def _call_function(self):
        """call_arrays written out for this program's inputs (no loop, no attribute lookups)."""
        names, lines = self.call_source([f"inputs[{k}]" for k in range(len(self.inputs))])
        exec("def call_arrays(inputs):\n" + "".join(f"    {line}\n" for line in lines), names)
        return names.pop("call_arrays")    # kept out of its own globals: no reference cycle

    def call_arrays(self, inputs):
        """The result tree for these input values (in tape input order), or None when a guard
        fails. The per-call path of jit: no allocation but the results."""
        return self._call_arrays(inputs)

    def __call__(self, inputs):
        """(True, result tree), or (False, None) when a guard fails for these inputs."""
        result = self.call_arrays(inputs)
        return (False, None) if result is None else (True, result)

    def _row_kernel(self, n_rows):
        """The generated row kernel (made on first use), or None: interpreter."""
        from . import rows
        if n_rows < rows.MIN_ROWS:
            return None
        with self._lock:
            if self._rows is False:
                try:
                    self._rows = rows.kernel_for(self.tape)
                except Exception as exc:      # e.g. Numba cannot compile it: keep interpreting
                    warnings.warn(f"tapegrad_jit: generated row kernel unavailable ({exc}); the "
                                  "interpreter runs the rows", RuntimeWarning, stacklevel=4)
                    self._rows = None
            return self._rows

    def run_batched(self, inputs, axes, rows):
        """Run the rows `rows` of a vmapped call in parallel; axes: batch axis per input (or None).

        Returns (ok per row, stacked output leaves for those rows). A scalar row tape runs as
        generated straight-line code per row (rows.py) once there are enough rows to pay for it.
        """
        kernel = self._row_kernel(rows.size)
        if kernel is not None:
            from numba.core.errors import NumbaError
            try:
                return kernel.run_batched(inputs, axes, rows)
            except NumbaError as exc:   # compiled on first use: Numba could not type or lower it
                warnings.warn(f"tapegrad_jit: generated row kernel unavailable ({exc}); the "
                              "interpreter runs the rows", RuntimeWarning, stacklevel=3)
                self._rows = None
        v0 = self.v0.copy()
        batched, in_offsets, in_sizes = [], [], []
        for (offset, size, _), value, axis in zip(self.inputs, inputs, axes):
            value = np.asarray(value)
            if axis is None:
                v0[offset:offset + size] = value.ravel()
            else:
                batched.append(np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1))
                in_offsets.append(offset)
                in_sizes.append(size)
        n_all = max((b.shape[0] for b in batched), default=int(np.max(rows, initial=-1)) + 1)
        packed = (np.concatenate(batched, axis=1).astype(np.float64) if batched
                  else np.zeros((n_all, 0)))
        out_sizes = [n for _, n, _, _ in self.outputs]
        outputs = np.empty((rows.size, sum(out_sizes)))
        status = np.empty(rows.size, dtype=np.int32)
        kernels().run_rows(self.code, self.ipool, v0, rows.astype(np.int64),
                           np.array(in_offsets, dtype=np.int64), np.array(in_sizes, np.int64),
                           np.ascontiguousarray(packed),
                           np.array([o for o, _, _, _ in self.outputs], dtype=np.int64),
                           np.array(out_sizes, dtype=np.int64), outputs, status,
                           min(rows.size, 4 * _threads()))
        leaves, column = [], 0
        for _, n, shape, dtype in self.outputs:
            leaves.append(outputs[:, column:column + n].reshape((rows.size,) + shape).astype(dtype))
            column += n
        return status == 0, leaves


def result_source(out_tree, dtypes, leaves_name):
    """(expression, names) making the result tree from views of the output leaves
    (`leaves_name`, a sequence; copied: the buffer is reused), written out for this tree so
    that a call walks no structure. A tree too deep to write out goes through tree_unflatten."""
    leaves = iter(range(len(dtypes)))
    names = {}

    def expr(node):
        if node is None:
            return "None"
        if node == "*":
            k = next(leaves)
            if dtypes[k] == np.float64:
                return f"{leaves_name}[{k}].copy()"
            names[f"rd{k}"] = dtypes[k]
            return f"{leaves_name}[{k}].astype(rd{k})"
        if node[0] is dict:
            keys = f"rn{len(names)}"
            names[keys] = node[1]
            parts = "".join(expr(child) + ", " for child in node[2])
            return f"dict(zip({keys}, ({parts})))"
        kind, children = node
        name = f"rn{len(names)}"
        names[name] = kind
        parts = "".join(expr(child) + ", " for child in children)
        if kind is tuple:
            return f"({parts})"
        if kind is list:
            return f"[{parts}]"
        return f"{name}([{parts}])"

    try:
        source = expr(out_tree)
        builtins.compile(source, "<result tree>", "eval")     # too deep for the parser?
        return source, names
    except (RecursionError, SyntaxError, MemoryError):     # a tree too deep to write out
        return f"unflatten({leaves_name})", dict(unflatten=lambda o: tree_unflatten(
            out_tree, [view.astype(dtype) for view, dtype in zip(o, dtypes)]))


def result_builder(out_tree, dtypes):
    """A function making the result tree from views of the output leaves (see result_source)."""
    source, names = result_source(out_tree, dtypes, "o")
    return eval(f"lambda o: {source}", names)


def _threads():
    import numba
    return numba.get_num_threads()


def compile(tape):
    """Compile an (optimized) tape: generated code for short array tapes, else the interpreter."""
    from . import fused
    interpreter = []

    def fallback():
        if not interpreter:
            interpreter.append(Program(tape))
        return interpreter[0]

    if fused.worth_generating(tape):
        try:
            return fused.FusedProgram(tape, fallback)
        except fused.Unsupported:
            pass
    try:
        return fallback()
    except UnsupportedPrimitive as exc:
        warnings.warn(f"{exc}; this tape runs on the NumPy reference interpreter",
                      RuntimeWarning, stacklevel=3)
        return ReferenceProgram(tape)


class ReferenceProgram:
    """The tape's NumPy reference interpreter behind the Program interface (for primitives the
    compiled interpreter does not know yet)."""

    def __init__(self, tape):
        self.tape = tape
        self.out_tree = tape.out_tree

    def __call__(self, inputs):
        try:
            return True, self.tape.run(*inputs)
        except GuardFailure:
            return False, None

    def call_arrays(self, inputs):
        ok, result = self(inputs)
        return result if ok else None

    def run_batched(self, inputs, axes, rows):
        ok = np.zeros(rows.size, dtype=bool)
        results = []
        for i, row in enumerate(rows):
            row_inputs = [value if axis is None else np.take(value, row, axis=axis)
                          for value, axis in zip(inputs, axes)]
            done, result = self(row_inputs)
            ok[i] = done
            results.append(tree_flatten(result, lambda x: False)[0] if done else None)
        template = next((r for r in results if r is not None), None)
        if template is None:
            return ok, [np.zeros((rows.size,) + self.tape.shapes[s], self.tape.dtypes[s])
                        for s in self.tape.outputs]
        leaves = [np.stack([r[k] if r is not None else np.zeros_like(template[k])
                            for r in results]) for k in range(len(template))]
        return ok, leaves
