"""Tracing: run a user function on Tracer values that record primitive instructions on a tape.

Tracing is define-by-run: every Tracer carries the concrete value computed by the registry's NumPy
forward, so Python control flow sees real numbers. A branch on a traced value (`if x.sum() > 0`,
`while y.norm() < 1000`, `and`/`or`) calls `Tracer.__bool__`, which records a guard: the observed
outcome that a compiled tape checks on every call before trusting its results.

What cannot be recorded raises TraceError naming the user's line and the fix: `math.*` functions
and `float()` on a tracer (they leave the tape), and numbers from `.item()` used in arithmetic.
"""
import dis
import linecache
import math
import operator
import os
import sys
import threading

import numpy as np

from . import numpy_api
from . import primitives as P
from .core import bind, dtype_of, shape_of
from .operators import PrimitiveOperators, binary_operator
from .tape import _NO_PARAMS, ADJOINT, FORWARD, Instr, Tape

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))


class TraceError(TypeError):
    """A construct that cannot be recorded on a tape."""


def _user_frame():
    frame = sys._getframe(2)
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith((_PACKAGE_DIR, _NUMPY_DIR)):
            return frame
        frame = frame.f_back
    return None


def _stored_into_array():
    """The refusal for a traced value written into a NumPy array by the user's `h[i] = value`
    (NumPy asked it for a number or an array), or None when the user's code is doing
    something else."""
    frame = _user_frame()
    if frame is None or frame.f_code.co_code[frame.f_lasti] != _STORE_SUBSCR:
        return None
    return ("tapegrad: a traced value was written into a NumPy array (`a[i] = value`), which "
            "holds numbers, not traced values. Make that array a traced one: "
            "np.zeros_like(x, shape=...) instead of np.zeros(...) (x: a traced argument), or "
            f"build it with np.stack/np.array of the traced values\n  at {user_line()}")


_STORE_SUBSCR = dis.opmap["STORE_SUBSCR"]


def user_line():
    """'file:line: code' of the innermost frame outside tapegrad and NumPy (the user's code)."""
    # every guard asks (a Python max over tracers: one per comparison), and the path
    # arithmetic costs ~10 us: answers are kept per code object, line and working directory
    cwd = os.getcwd()
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        inside = _INSIDE.get((code, cwd))
        if inside is None:
            if len(_INSIDE) > _LINES_KEPT:
                _INSIDE.clear()
            inside = _INSIDE[code, cwd] = os.path.abspath(code.co_filename).startswith(
                (_PACKAGE_DIR, _NUMPY_DIR))
        if not inside:
            key = (code, frame.f_lineno, cwd)
            line = _USER_LINES.get(key)
            if line is None:
                if len(_USER_LINES) > _LINES_KEPT:
                    _USER_LINES.clear()
                line = _USER_LINES[key] = _line_of(code.co_filename, frame.f_lineno, cwd)
            return line
        frame = frame.f_back
    return "<unknown>"


def _line_of(name, number, cwd):
    filename = os.path.abspath(name)
    code = linecache.getline(filename, number).strip()
    # a file under the working directory is shown relative to it, as the user named it
    shown = os.path.relpath(filename, cwd) if filename.startswith(cwd + os.sep) else name
    return f"{shown}:{number}: {code}"


_INSIDE = {}            # (code object, working directory) -> whether tapegrad's or NumPy's
_USER_LINES = {}        # (code object, line, working directory) -> user_line's answer
_LINES_KEPT = 4096      # entries, before a table starts again (code made by exec is new code)


# ---------------------------------------------------------------------------------------------
# Trace context: one tape per outermost trace, per thread
# ---------------------------------------------------------------------------------------------

class _State(threading.local):
    def __init__(self):
        self.stack = []


_state = _State()


class TraceContext:
    """The tape being recorded, and the Tracer object of every slot (for replaying VJP rules)."""

    def __init__(self):
        self.tape = Tape()
        self.tracers = {}
        self.phase = FORWARD
        self._probes = {}
        self._shells = {}       # (shape, dtype) -> a value-less array (see _release_version)
        self.elements = {}      # slot -> {int index: the tracer of that element} (_read_element)
        self._ints, self._floats = {}, {}   # a Python number -> its constant slot
        self._numbers = {}      # (float zero, sign) -> its constant slot
        self._scalars = {}      # (NumPy scalar type, bytes) -> its constant slot

    def probe(self, value):
        """np.arange(size).reshape(shape), laid out in memory as `value` (the array NumPy would
        hold: results of NumPy's functions keep their inputs' order, so x.T * 2 is in Fortran
        order). NumPy's own indexing, transposes and reshapes of it tell which element of a base
        array a view element is, whether NumPy would give a view or a copy, and whether the view
        is writeable (see _View). Never written."""
        shape = value.shape
        if value.flags.c_contiguous:
            probe = self._probes.get(shape)
            if probe is None:
                probe = self._probes[shape] = np.arange(math.prod(shape)).reshape(shape)
            return probe
        return _strided_probe(value)

    def shell(self, value):
        """A value-less array of value's shape and dtype (zero strides), shared per shape."""
        key = (value.shape, value.dtype)
        shell = self._shells.get(key)
        if shell is None:
            shell = self._shells[key] = np.broadcast_to(np.zeros((), value.dtype), value.shape)
        return shell

    def __enter__(self):
        _state.stack.append(self)
        # values computed while tracing follow IEEE silently (overflow, log 0), as compiled code
        # does; one errstate for the whole trace instead of one per instruction
        self._errstate = np.errstate(all="ignore")
        self._errstate.__enter__()
        return self

    def __exit__(self, *exc):
        self._errstate.__exit__(*exc)
        _state.stack.pop()
        self._probes = {}       # index maps as large as the arrays: views keep what they use
        self.elements = {}      # its tracers refer to this context: no cycle left behind

    def new_input(self, value):
        value = np.asarray(value)
        slot = self.tape.add_input(value.shape, value.dtype)
        return self._tracer(slot, value)

    def _tracer(self, slot, value):
        tracer = Tracer(self, slot, value)
        self.tracers[slot] = tracer
        return tracer

    def operand(self, arg):
        """The slot of an argument; anything that is not a tracer of this trace is a constant."""
        if type(arg) is Tracer:
            if arg._ctx is self:
                return arg._slot
        if isinstance(arg, Tracer):
            if arg._ctx is not self:
                raise TraceError("tapegrad: a tracer from another trace reached this one (a traced "
                                 "value escaped its function through a global or closure)")
            return arg._slot
        if getattr(type(arg), "_bind_level", 0) == 1:      # an eager Tensor: its data is a constant
            arg = arg.detach().numpy()
        if isinstance(arg, ConcreteNumber):
            arg._refuse()
        if type(arg) is np.ndarray and arg.dtype == object:
            lifted = lift_objects(arg)
            if isinstance(lifted, Tracer):
                return self.operand(lifted)
        kind = type(arg)
        if kind is int or kind is float:
            return self._number(arg)
        if kind in _NUMPY_SCALARS:
            # immutable, as Python numbers: one slot per value (a rule's g * 0.5 in a loop)
            key = (kind, arg.tobytes())
            slot = self._scalars.get(key)
            if slot is None:
                slot = self._scalars[key] = self.tape.add_const(arg)
            return slot
        return self.tape.add_const(arg)

    def _number(self, number):
        """One constant slot per Python number (the 2 of every x ** 2 in a loop); -0.0 and 0.0
        apart."""
        # floats and ints in tables of their own (1 == 1.0); zeros keyed with their sign
        table, key = (self._ints if type(number) is int else self._floats if number != 0.0
                      else self._numbers), number
        if table is self._numbers:
            key = (number, math.copysign(1.0, number))
        slot = table.get(key)
        if slot is None:
            slot = table[key] = self.tape.add_const(number)
        return slot

    def record(self, prim, args, params):
        # the hot path of tracing (one call per instruction): one pass over the arguments
        slots, values = [], []
        for a in args:
            kind = type(a)
            if kind is Tracer and a._ctx is self:
                slots.append(a._slot)
                values.append(a._value)
            elif kind is float or kind is int:
                slots.append(self._number(a))
                values.append(a)
            else:
                if type(a) is np.ndarray and a.dtype == object:
                    a = lift_objects(a)
                slots.append(self.operand(a))
                values.append(a._value if isinstance(a, Tracer) else _plain(a))
        impl = _TRACE_IMPLS.get(prim)
        if impl is None:
            impl = _TRACE_IMPLS[prim] = getattr(prim.impl, "__wrapped__", prim.impl)
        value = impl(*values, **params) if params else impl(*values)
        if type(value) is not np.ndarray:
            value = np.asarray(value)
        return self.append(prim, slots, params, value)

    def append(self, prim, slots, params, value):
        """Record an instruction whose value the caller computed (Tape.add_instr, inlined)."""
        tape = self.tape
        shapes, instrs = tape.shapes, tape.instrs
        shapes.append(value.shape)
        tape.dtypes.append(value.dtype)
        out = len(shapes) - 1
        producer = tape._producer
        if producer is not None:
            producer[out] = len(instrs)
        # Instr(...) and Tracer(...) without their __init__ calls (a third of this method's time)
        ins = _new(Instr)
        ins.prim, ins.ins, ins.out, ins.phase = prim, tuple(slots), out, self.phase
        # one shared empty dict for the many instructions without parameters (never mutated)
        ins.params = params or _NO_PARAMS
        instrs.append(ins)
        tracer = _new(Tracer)
        tracer._ctx, tracer._slot, tracer._value = self, out, value
        self.tracers[out] = tracer
        return tracer

    def value_of(self, slot):
        """What a VJP rule receives for an instruction input: its tracer, or the constant itself."""
        if slot in self.tape.consts:
            return self.tape.consts[slot]
        return self.tracers[slot]


_ADD, _SUB, _MUL, _DIV, _NEG = P.add, P.sub, P.mul, P.div, P.neg
_new = object.__new__
_NEG_IMPL = getattr(_NEG.impl, "__wrapped__", _NEG.impl)

# exact operand types that tracer arithmetic records without dispatch (Tracer joins once defined)
_DIRECT = {float, int, bool, np.ndarray, np.float64, np.float32, np.int64, np.int32, np.bool_}


def _direct(prim, reflected=False):
    """The operator; two tracers of one trace, or a tracer and a Python float or int that is not
    the operation's unit (see _IDENTITIES), are recorded here at once: bind, _bind_tracer and
    record's argument scan cost a third of tracing a scalar graph."""
    slow = binary_operator(prim, reflected, shortcut_types=_DIRECT, handle=_bind_tracer)
    impl = getattr(prim.impl, "__wrapped__", prim.impl)
    unit, positions = _IDENTITIES.get(prim, (None, ()))
    # the float operand's position in (a, b): 1 for `x op c`, 0 for `c op x` (reflected)
    float_at = 0 if reflected else 1
    float_is_unit = float_at in positions

    # float64 scalars: Python's float arithmetic is the same IEEE operation as NumPy's on 0-d
    # arrays (+, -, *, / correctly rounded), at a fifth of the cost; a zero divisor (Python
    # raises) and large ints (converted by each in its own way) are left to NumPy
    scalar_op = _SCALAR_OPS.get(prim)
    divides = prim is _DIV

    def method(self, other):
        kind = type(other)
        if kind is Tracer:
            ctx = self._ctx
            if other._ctx is ctx and not reflected:
                a, b = self._value, other._value
                if scalar_op is not None and a.dtype is _F64 and b.dtype is _F64 and \
                        not a.ndim and not b.ndim and (not divides or b != 0.0):
                    value = _asarray(scalar_op(float(a), float(b)))
                else:
                    value = impl(a, b)
                    if type(value) is not np.ndarray:
                        value = _asarray(value)
                return ctx.append(prim, (self._slot, other._slot), _NO_PARAMS, value)
        elif kind is float or kind is int:
            a = self._value
            if float_is_unit and other == unit and a.dtype.kind in "fc":
                return Tracer(self._ctx, self._slot, a)      # see _identity
            ctx = self._ctx
            if scalar_op is not None and a.dtype is _F64 and not a.ndim and (
                    kind is float or -_EXACT_INT < other < _EXACT_INT) and (
                    not divides or (a if reflected else other) != 0.0):
                value = _asarray(scalar_op(other, float(a)) if reflected else
                                 scalar_op(float(a), other))
            else:
                value = impl(other, a) if reflected else impl(a, other)
                if type(value) is not np.ndarray:
                    value = _asarray(value)
            slots = (ctx._number(other), self._slot) if reflected else \
                (self._slot, ctx._number(other))
            return ctx.append(prim, slots, _NO_PARAMS, value)
        return slow(self, other)
    return method


_SCALAR_OPS = {_ADD: operator.add, _SUB: operator.sub, _MUL: operator.mul,
               _DIV: operator.truediv}
_F64 = np.dtype(np.float64)
_F64_SCALAR = np.float64
_EXACT_INT = 2 ** 53      # ints that convert to floats exactly
_asarray = np.asarray
_TRACE_IMPLS = {}      # primitive -> the NumPy forward that tracing calls (inside one errstate)
_NUMPY_SCALARS = frozenset((np.float64, np.float32, np.float16, np.complex128, np.complex64,
                            np.int64, np.int32, np.int16, np.int8, np.uint64, np.uint32,
                            np.uint16, np.uint8, np.bool_))


def _plain(arg):
    if getattr(type(arg), "_bind_level", 0) == 1:
        return arg.detach().numpy()
    return arg


def current():
    """The innermost active trace, or None."""
    return _state.stack[-1] if _state.stack else None


# ---------------------------------------------------------------------------------------------
# Tracer
# ---------------------------------------------------------------------------------------------

def _normalize_axis(axis, ndim):
    if axis is None:
        return None
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(sorted(int(a) % ndim if ndim else 0 for a in axes))


def _normalize_index(index):
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for item in index:
        if isinstance(item, Tracer) and item.dtype == np.bool_:
            raise TraceError(f"tapegrad: boolean-mask indexing with a traced mask gives a "
                             f"data-dependent shape; use np.where(mask, x, 0) instead\n  at "
                             f"{user_line()}")
        if isinstance(item, Tracer):
            raise TraceError(f"tapegrad: indexing with a traced value is not supported; index "
                             f"with Python ints, slices or constant arrays\n  at {user_line()}")
        if isinstance(item, list):
            item = np.asarray(item)
        if isinstance(item, np.ndarray) and item.dtype == bool and item.ndim:
            # a constant mask selects the same elements as its nonzero() positions (NumPy's rule)
            out.extend(np.nonzero(item))
            continue
        if isinstance(item, np.integer):
            item = int(item)
        out.append(item)
    return tuple(out)


def _last_writes(shape, index):
    """For a write whose integer arrays repeat a position: (index of the positions written, in
    unravelled form; which of the broadcast values land, flat; their shape). NumPy stores the last
    value written to a position, so only that one may get a gradient. None when nothing repeats."""
    positions = np.arange(math.prod(shape)).reshape(shape)[index]
    flat = positions.ravel()
    # the first occurrence in the reversed order is the last write
    _, first_reversed = np.unique(flat[::-1], return_index=True)
    if first_reversed.size == flat.size:
        return None
    keep = np.sort(flat.size - 1 - first_reversed)
    return np.unravel_index(flat[keep], shape), keep, positions.shape


def _winning_values(value, last):
    _, keep, shape = last
    if np.shape(value) != shape:
        value = P.broadcast_to(value, shape=shape)
    return P.getitem(P.reshape(value, shape=(math.prod(shape),)), index=(keep,))


def _mask_write(target, mask, value):
    """`target[mask] = value` with a traced boolean mask: np.where, when the shape is static."""
    shape = target.shape
    if np.ndim(value) > 0 and np.size(value) != 1 or mask.shape != shape[:mask.ndim]:
        raise TraceError(
            f"tapegrad: a write through a traced boolean mask of shape {mask.shape} into shape "
            f"{shape} stores a data-dependent number of values; write one value (x[mask] = 0.0) "
            f"or use x = np.where(mask, values, x)\n  at {user_line()}")
    if mask.ndim < len(shape):
        mask = P.reshape(mask, shape=mask.shape + (1,) * (len(shape) - mask.ndim))
    value = P.reshape(value, shape=()) if isinstance(value, Tracer) and value.ndim else value
    result = P.where(mask, value, target)
    return result if result.dtype == target.dtype else P.cast(result, dtype=target.dtype.name)


_VALUE_FREE = frozenset(("getitem", "setitem", "index_add"))   # VJP rules that read shapes only
_RELEASE_SCAN = 64


def _release_version(ctx, slot, kept):
    """Drop the values of a version of an array that a write has just replaced, when nothing can
    need them again (see _releasable). A loop of element writes then keeps one version's values
    instead of one per write (O(n) memory, not O(n^2)). The slot keeps a tracer of the right
    shape and dtype, with no values behind it."""
    if _releasable(ctx, slot, kept):
        ctx.tracers[slot] = Tracer(ctx, slot, ctx.shell(kept._value))


def _releasable(ctx, slot, kept, handles=0):
    """Whether nothing can need the values of this version again: it was made by a write and read
    only by element reads and writes (whose VJP rules read shapes, not values), and no other
    handle holds it (`handles`: references to its values the caller holds besides kept)."""
    instrs = ctx.tape.instrs
    # the instruction writing slot, among the last _RELEASE_SCAN (outputs increase along the
    # tape): no slot -> instruction map kept while tracing
    k, stop = len(instrs) - 1, len(instrs) - 1 - _RELEASE_SCAN
    while k > stop and k >= 0 and instrs[k].out > slot:
        k -= 1
    if k <= stop or k < 0 or instrs[k].out != slot or \
            instrs[k].prim.name not in ("setitem", "index_add"):
        return False
    for j in range(k + 1, len(instrs)):
        ins = instrs[j]
        if slot in ins.ins and ins.prim.name not in _VALUE_FREE:
            return False
    value = kept._value
    # references to the values: kept._value, `value`, getrefcount's argument; to kept: ctx.tracers,
    # the caller's and this frame's names, getrefcount's argument. More: another handle (x = +y, a
    # pinned input) may still read this version, so it keeps its values.
    refcount = getattr(sys, "getrefcount", None)
    return refcount is not None and refcount(value) <= 3 + handles and refcount(kept) <= 4


def _read_element(array, index):
    """array[i, j] with int indices: one getitem per element of a version (slots are single
    assignment, so a second read of it is the first's value under a new handle, as NumPy gives
    a new scalar). A loop reading x[i + 1] and then x[i] records each element once."""
    ctx, slot = array._ctx, array._slot
    read = ctx.elements.get(slot)
    if read is None:
        read = ctx.elements[slot] = {}
    out = read.get(index)
    if out is not None:
        return Tracer(ctx, out._slot, out._value)
    # recorded directly (getitem's forward on an element, without dispatch)
    out = read[index] = ctx.append(P.getitem, [slot], {"index": index},
                                   np.asarray(array._value[index]))
    return out


# np.array([t0, t1]), np.r_[...] and scipy's Python code never dispatch to the tracer: NumPy asks
# each traced value for __array__ and builds an object array of traced elements, which is lifted
# back into one traced array (lift_objects) wherever it meets the tape (an operand, a result)
_MAX_OBJECT_ELEMENTS = 100_000
_WARN_OBJECT_ELEMENTS = 1_000


def _object_elements(tracer):
    """tracer as an object array of its traced elements; each remembers (slot, flat position) so
    that lift_objects takes back the whole array instead of stacking its elements."""
    out = np.empty(tracer.shape, dtype=object)
    if tracer.ndim == 0:
        out[()] = tracer
        return out
    if tracer.size > _WARN_OBJECT_ELEMENTS:
        import warnings
        warnings.warn(f"tapegrad: np.array/np.asarray of a traced array of {tracer.size} elements "
                      "records one instruction per element; pass the traced value itself, or "
                      f"build arrays with np.stack / np.concatenate\n  at {user_line()}",
                      RuntimeWarning, stacklevel=2)
    ctx = tracer._ctx
    origin = ctx.__dict__.setdefault("element_origin", {})
    for k, index in enumerate(np.ndindex(*tracer.shape)):
        element = out[index] = _read_element(tracer, index)
        origin[element._slot] = (tracer._slot, k)
    return out


def _whole_source(ctx, flat, i):
    """The traced array whose elements, in order, are flat[i:i + its size], or None."""
    origin = ctx.__dict__.get("element_origin", {})
    first = origin.get(flat[i]._slot)
    if first is None or first[1] != 0:
        return None
    source = ctx.tracers.get(first[0])
    if source is None or source.size > len(flat) - i or 0 in source._value.strides:
        return None     # a released version keeps only a value-less shell: use the elements
    for k in range(1, source.size):
        e = flat[i + k]
        if not isinstance(e, Tracer) or origin.get(e._slot) != (first[0], k):
            return None
    return source


def lift_objects(value):
    """An object array holding traced values (see _MAX_OBJECT_ELEMENTS) as one traced array of
    NumPy's dtype for those elements; any other value as it is."""
    if type(value) is not np.ndarray or value.dtype != object:
        return value
    flat = value.reshape(-1)
    ctx = next((e._ctx for e in flat if isinstance(e, Tracer)), None)
    if ctx is None:
        return value
    pieces, constants, i = [], [], 0
    while i < len(flat):
        e = flat[i]
        if not isinstance(e, Tracer):
            constants.append(e)
            i += 1
            continue
        if e.size != 1:
            raise TraceError(f"tapegrad: an object array holds a traced array of shape {e.shape} "
                             f"as one element; build it with np.stack or np.concatenate\n  at "
                             f"{user_line()}")
        if constants:
            pieces.append(np.array(constants))
            constants = []
        source = _whole_source(ctx, flat, i) if e.ndim == 0 else None
        whole = source if source is not None else e
        pieces.append(P.reshape(whole, shape=(whole.size,)))
        i += source.size if source is not None else 1
    if constants:
        pieces.append(np.array(constants))
    dtype = np.result_type(*(p.dtype for p in pieces))
    pieces = [p if p.dtype == dtype else P.cast(p, dtype=dtype.name) if isinstance(p, Tracer)
              else p.astype(dtype) for p in pieces]
    out = P.cat(*pieces, axis=0) if len(pieces) > 1 else pieces[0]
    return P.reshape(out, shape=value.shape)


def lift_tree(tree):
    """A function's result with its object arrays of traced values lifted (lift_objects)."""
    if type(tree) is np.ndarray:
        return lift_objects(tree)
    if isinstance(tree, (tuple, list)) and any(type(x) is np.ndarray or isinstance(x, (tuple, list, dict)) for x in tree):
        lifted = [lift_tree(x) for x in tree]
        return type(tree)(*lifted) if hasattr(tree, "_fields") else type(tree)(lifted)
    if type(tree) is dict:
        return {k: lift_tree(v) for k, v in tree.items()}
    return tree


def refuse_objects(array):
    """An object array of traced values met where it can no longer join the tape."""
    if any(isinstance(e, Tracer) for e in array.reshape(-1)):
        raise TraceError("tapegrad: an object array of traced values (np.array of traced "
                         "elements) reached a transform that does not lift it; build it with "
                         f"np.stack or np.concatenate\n  at {user_line()}")


def _write_in_place(target, index, value):
    """target[index] = value recorded as a setitem whose value is the old version's array,
    updated in place, when that version can be released (see _releasable): an element write
    costs O(1) instead of a copy of the array. Basic indices only (no repeated positions)."""
    ctx, old = target._ctx, target._slot
    kept = ctx.tracers.get(old)
    if type(kept) is not Tracer or kept is target or not _releasable(ctx, old, kept, 1):
        return False
    array = kept._value
    array[index] = value._value if isinstance(value, Tracer) else _plain(value)
    new = ctx.append(P.setitem, [old, ctx.operand(value)], {"index": index}, array)
    ctx.tracers[old] = Tracer(ctx, old, ctx.shell(array))
    target._slot, target._value = new._slot, array
    return True


def _inplace(prim, symbol, fast=None):
    """`x <op>= y` on a traced array: NumPy updates x itself (every name bound to it sees the
    result), keeping its shape and dtype; a 0-d value is a NumPy scalar and is rebound instead
    (`s += term` in a loop: by the tracer's own operator, whose fast cases these are)."""
    def method(self, other):
        if fast is not None and type(self) is Tracer and self._value.ndim == 0:
            kind = type(other)
            if kind is float or kind is int or kind is Tracer and other._ctx is self._ctx:
                return fast(self, other)
        result = prim(self, other)
        if self.ndim == 0 and type(self) is not _View:
            return result
        if result.shape != self.shape:
            raise ValueError(f"non-broadcastable output operand with shape {self.shape} doesn't "
                             f"match the broadcast shape {result.shape} (in `{symbol}`)\n  at "
                             f"{user_line()}")
        if result.dtype != self.dtype:
            if not np.can_cast(result.dtype, self.dtype, "same_kind"):
                raise TypeError(f"Cannot cast `{symbol}` output from {result.dtype} to "
                                f"{self.dtype} with casting rule 'same_kind'; convert with "
                                f"x = x.astype(...) first\n  at {user_line()}")
            result = P.cast(result, dtype=self.dtype.name)
        self._move_to(result)
        return self
    method.__name__ = f"__i{prim.name}__"
    return method


class ConcreteNumber(float):
    """What `.item()` gives during tracing: printable, but arithmetic with it would leave the tape."""

    def _refuse(self, *args):
        raise TraceError(
            "tapegrad: a number taken out of a traced value with .item() (or float()) was used in "
            "arithmetic, which the tape cannot record; compute with the traced value itself (drop "
            f".item()/float())\n  at {user_line()}")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __pow__ = __rpow__ = __neg__ = __abs__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _refuse

    def __new__(cls, value, tracer):
        number = super().__new__(cls, value)
        number._tracer = tracer
        return number

    # Comparisons are branches on the traced value: they record guards on it.
    def __lt__(self, other):
        return bool(self._tracer < other)

    def __le__(self, other):
        return bool(self._tracer <= other)

    def __gt__(self, other):
        return bool(self._tracer > other)

    def __ge__(self, other):
        return bool(self._tracer >= other)

    def __eq__(self, other):
        return bool(self._tracer == other)

    def __ne__(self, other):
        return bool(self._tracer != other)

    __hash__ = float.__hash__


# `x + 0`, `0 + x` (Python's sum() starts from 0), `x - 0`, `x * 1`, `1 * x`, `x / 1`, `x ** 1`
# on floating tracers: x itself, under a new handle. fold_constants drops the same identities
# later; not recording them saves the trace and the passes their work (a VJP rule's `g * 1` on the
# seed and `x ** (2 - 1)` come once per element of a loop). Operand positions of the unit.
_IDENTITIES = {_ADD: (0, (0, 1)), _SUB: (0, (1,)), _MUL: (1, (0, 1)), _DIV: (1, (1,)),
               P.pow_: (1, (1,))}


def _identity(prim, args):
    """The handle `prim(*args)` equals when it is an identity on a floating tracer, else None."""
    unit, positions = _IDENTITIES[prim]
    for k in positions:
        c, x = args[k], args[1 - k]
        if type(x) is not Tracer:
            continue
        value = x._value
        kind = type(c)
        # Python numbers are weak (keep x's dtype); a 0-d array only of x's own dtype
        if kind is int or kind is float or kind is np.ndarray and c.ndim == 0 and \
                c.dtype == value.dtype:
            if c == unit and value.dtype.kind in "fc":
                return Tracer(x._ctx, x._slot, value)
    return None


def _bind_tracer(prim, args, params):
    """Tracer._bind: record prim on the trace of its tracer arguments."""
    first = args[0]
    if prim in _IDENTITIES and len(args) == 2 and (type(first) is not Tracer or
                                                   type(args[1]) is not Tracer):
        same = _identity(prim, args)
        if same is not None:
            return same
    if type(first) is Tracer:
        return first._ctx.record(prim, args, params)
    ctx = None
    for arg in args:
        if isinstance(arg, Tracer):
            ctx = arg._ctx
            break
    if ctx is None:
        ctx = current()
    return ctx.record(prim, args, params)


def _ufunc_table():
    table = dict(numpy_api.UFUNCS)  # the one NumPy table; the entries below are its tracer spellings
    table.update({
        np.add: P.add, np.subtract: P.sub, np.multiply: P.mul, np.true_divide: P.div,
        np.negative: P.neg, np.power: P.pow_, np.maximum: P.maximum, np.minimum: P.minimum,
        np.exp: P.exp, np.log: P.log, np.log1p: P.log1p, np.expm1: P.expm1, np.sqrt: P.sqrt,
        np.sin: P.sin, np.cos: P.cos, np.tan: P.tan, np.tanh: P.tanh, np.absolute: P.abs_,
        np.sign: P.sign, np.less: P.lt, np.less_equal: P.le, np.greater: P.gt,
        np.greater_equal: P.ge, np.equal: P.eq, np.not_equal: P.ne,
        np.logical_and: P.logical_and, np.logical_or: P.logical_or,
        np.logical_not: P.logical_not, np.isnan: P.isnan, np.floor: P.floor, np.matmul: P.matmul,
    })
    return table


_UFUNCS = _ufunc_table()


def _in_result_dtype(ufunc, x):
    """x cast to the dtype NumPy's ufunc gives for it (fabs of integers is float64, square of
    booleans int8), so the primitives composing it compute in that dtype."""
    with np.errstate(all="ignore"):
        dtype = ufunc(np.ones((), dtype_of(x))).dtype
    return x if dtype == dtype_of(x) else P.cast(x, dtype=dtype.name)


def _reciprocal(x):
    x = _in_result_dtype(np.reciprocal, x)
    out = 1.0 / x
    # NumPy's reciprocal keeps an integer dtype (1/2 -> 0)
    return out if out.dtype == dtype_of(x) else P.cast(out, dtype=dtype_of(x).name)


def _square(x):
    x = _in_result_dtype(np.square, x)
    return x * x


def _logical(prim, symbol):
    """&, |, ~ (np.bitwise_and/or, np.invert): logical on booleans; bitwise on integers, which
    the tape cannot record, is refused rather than computed as logical."""
    def apply(*args):
        for a in args:
            if not (isinstance(a, bool) or np.dtype(dtype_of(a)) == np.bool_):
                raise TraceError(
                    f"tapegrad: `{symbol}` on {np.dtype(dtype_of(a)).name} values is a bitwise "
                    f"operation, which is not traced; compare first (x > 0) and combine "
                    f"booleans, or use np.logical_and/or/not\n  at {user_line()}")
        return prim(*args)
    return apply


_COMPOSED_UFUNCS = {
    **numpy_api.COMPOSED_UFUNCS,
    np.square: _square,
    np.reciprocal: _reciprocal,
    np.fabs: lambda x: P.abs_(_in_result_dtype(np.fabs, x)),
    np.bitwise_and: _logical(P.logical_and, "&"),
    np.bitwise_or: _logical(P.logical_or, "|"),
    np.invert: _logical(P.logical_not, "~"),
}


class Tracer(PrimitiveOperators):
    """A traced value: a slot of the tape being recorded, with its concrete value."""

    _bind_level = 2
    __array_priority__ = 2000
    __slots__ = ("_ctx", "_slot", "_value", "__weakref__")

    def __init__(self, ctx, slot, value):
        self._ctx = ctx
        self._slot = slot
        self._value = value

    @classmethod
    def _bind(cls, prim, args, params):
        return _bind_tracer(prim, args, params)

    # Arithmetic operators of tracers record at once when the other operand is a tracer or a plain
    # number/array (level <= 2, so bind would pick the tracer anyway): this skips the mixin's
    # Primitive.__call__ -> bind -> _bind layers on the hot path of tracing. Anything else (a
    # Tensor, a source symbol) goes through bind as before.
    __add__, __radd__ = _direct(_ADD), _direct(_ADD, reflected=True)
    __sub__, __rsub__ = _direct(_SUB), _direct(_SUB, reflected=True)
    __mul__, __rmul__ = _direct(_MUL), _direct(_MUL, reflected=True)
    __truediv__, __rtruediv__ = _direct(_DIV), _direct(_DIV, reflected=True)
    __pow__, __rpow__ = _direct(P.pow_), _direct(P.pow_, reflected=True)

    def __neg__(self):
        value = _NEG_IMPL(self._value)
        if type(value) is not np.ndarray:
            value = np.asarray(value)
        return self._ctx.append(_NEG, (self._slot,), _NO_PARAMS, value)

    # ---- static information
    @property
    def shape(self):
        return self._value.shape

    @property
    def ndim(self):
        return self._value.ndim

    @property
    def size(self):
        return _Size(self._value.size, self._value.shape)

    @property
    def dtype(self):
        return self._value.dtype

    np_dtype = dtype

    @property
    def value(self):
        """The concrete value seen while tracing (for printing and debugging)."""
        return self._value

    @property
    def data(self):
        return self

    def dim(self):
        return self.ndim

    def numel(self):
        return self.size

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d traced value")
        return self.shape[0]

    def __repr__(self):
        return f"Tracer(slot={self._slot}, shape={self.shape}, dtype={self.dtype}, value={self._value})"

    def __format__(self, spec):
        return format(self._value.item() if self.size == 1 else self._value, spec)


    # ---- leaving the tape: guards, and clear errors
    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of a traced array with more than one element is "
                             "ambiguous; use .any() or .all() inside np.where, or reduce first")
        slot = self
        if self.dtype != np.bool_:
            slot = P.ne(self, 0)
        outcome = bool(self._value)
        slot._ctx.tape.add_guard(slot._slot, outcome, user_line())
        return outcome

    def __float__(self):
        raise TraceError(_stored_into_array() or
            "tapegrad: a traced value was turned into a Python number (float(), int(), or a "
            "math.* function), which the tape cannot record. Use np.sin/np.exp/... (or tapegrad "
            "functions) instead of math.*, and compute with the traced value instead of float(x); "
            f"print it with x.value\n  at {user_line()}")

    __int__ = __float__
    __complex__ = __float__

    # round(x), math.floor/ceil/trunc(x) and divmod on a traced value: NumPy's piecewise-
    # constant functions of it (no gradient), as they are on NumPy's own floats
    def __round__(self, ndigits=None):
        return np.round(self, ndigits or 0)

    def __floor__(self):
        return np.floor(self)

    def __ceil__(self):
        return np.ceil(self)

    def __trunc__(self):
        return np.trunc(self)

    def __divmod__(self, other):
        return np.floor_divide(self, other), np.remainder(self, other)

    def __rdivmod__(self, other):
        return np.floor_divide(other, self), np.remainder(other, self)

    def __index__(self):
        raise TraceError(
            "tapegrad: a traced value was used as an integer index or range bound; pass it as a "
            f"Python int (static argument) instead\n  at {user_line()}")

    def __array__(self, dtype=None, copy=None):
        if (dtype is None or dtype == object) and self.size <= _MAX_OBJECT_ELEMENTS \
                and _state.stack and _state.stack[-1] is self._ctx:
            return _object_elements(self)
        raise TraceError(_stored_into_array() or
            "tapegrad: a traced value was converted to a NumPy array (np.asarray, np.array, or a "
            "NumPy function tapegrad does not trace), which the tape cannot record; use the "
            f"np.* functions tapegrad traces or tapegrad functions\n  at {user_line()}")

    def item(self):
        if self.size != 1:
            raise ValueError("only one-element traced values can be converted to Python scalars")
        return ConcreteNumber(self._value.item(), self)

    def tolist(self):
        return [self[i] for i in range(len(self))]

    # ---- indexing (writes are copy-on-write: this handle moves to the new slot)
    def __getitem__(self, index):
        if type(index) is int and type(self) is Tracer and self._value.ndim == 1:
            return _read_element(self, (index,))        # x[i] in a loop: the hot case
        index = _normalize_index(index)
        element = len(index) == self.ndim and all(type(i) is int for i in index)
        if element and type(self) is Tracer:
            return _read_element(self, index)
        out = P.getitem(self, index=index)
        if element or any(isinstance(i, np.ndarray) for i in index):
            return out          # an element (a NumPy scalar) or a fancy-index copy
        return _as_view(self, out, lambda probe: probe[index], index)

    def __setitem__(self, index, value):
        if isinstance(index, Tracer) and index.dtype == np.bool_:
            self._move_to(_mask_write(self, index, value))
            return
        index = _normalize_index(index)
        for item in index:
            if type(item) is np.ndarray:            # integer arrays may repeat a position
                last = _last_writes(self.shape, index)
                if last is not None:
                    value, index = _winning_values(value, last), last[0]
                break
        else:
            if type(self) is Tracer and _write_in_place(self, index, value):
                return
        self._move_to(P.setitem(self, value, index=index))

    def _move_to(self, new):
        """Point this handle at a new version of its array (an element write, an in-place op).

        The instructions that read the old version keep reading its slot (the tape is single
        assignment), and their VJP rules find that slot's tracer in ctx.tracers: it must keep the
        old value, not follow this handle. ctx.tracers keeps `new` for the new slot, so it never
        holds a handle that moves. O(1): nothing is copied here.
        """
        ctx = self._ctx
        old = self._slot
        kept = ctx.tracers.get(old)
        if kept is self:
            ctx.tracers[old] = Tracer(ctx, old, self._value)
        self._slot, self._value = new._slot, new._value
        if type(kept) is Tracer and kept is not self:
            _release_version(ctx, old, kept)

    def __pos__(self):
        # +x is a new array in NumPy: a new handle on the same slot (a write to it moves it only)
        if self.dtype == np.bool_:
            raise TypeError(f"The numpy boolean positive, the `+` operator, is not supported\n"
                            f"  at {user_line()}")
        return Tracer(self._ctx, self._slot, self._value)

    def copy(self, order="K"):
        # x.copy(), np.copy(x): a new array, so a new handle on the same slot (as +x)
        return Tracer(self._ctx, self._slot, self._value)

    def clone(self, *, memory_format=None):     # PyTorch's spelling (tg.func, tg.compile)
        return self.copy()

    __and__ = _logical(P.logical_and, "&")
    __or__ = _logical(P.logical_or, "|")
    __invert__ = _logical(P.logical_not, "~")

    __iadd__, __isub__ = _inplace(P.add, "+=", __add__), _inplace(P.sub, "-=", __sub__)
    __imul__ = _inplace(P.mul, "*=", __mul__)
    __itruediv__ = _inplace(P.div, "/=", __truediv__)
    __ipow__, __imatmul__ = _inplace(P.pow_, "**=", __pow__), _inplace(P.matmul, "@=")

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d traced value")
        return (self[i] for i in range(self.shape[0]))

    # ---- methods in NumPy and PyTorch spelling
    # NumPy's keywords (dtype, out, initial, where) and PyTorch's (dim, keepdim) alike
    def sum(self, axis=None, keepdims=False, dim=None, keepdim=False, **numpy_kwargs):
        return _sum(self, _dim(axis, dim), keepdims=keepdims or keepdim, **numpy_kwargs)

    def mean(self, axis=None, keepdims=False, dim=None, keepdim=False, **numpy_kwargs):
        return _mean(self, _dim(axis, dim), keepdims=keepdims or keepdim, **numpy_kwargs)

    def prod(self, axis=None, keepdims=False, dim=None, keepdim=False, **numpy_kwargs):
        return _prod(self, _dim(axis, dim), keepdims=keepdims or keepdim, **numpy_kwargs)

    def max(self, axis=None, keepdims=False, dim=None, keepdim=False, **numpy_kwargs):
        if dim is not None and axis is None:        # PyTorch's max(dim=): (values, indices)
            return _torch_extremum(self, dim, keepdim, _amax, "max")
        return _amax(self, _dim(axis, dim), keepdims=keepdims or keepdim, **numpy_kwargs)

    def min(self, axis=None, keepdims=False, dim=None, keepdim=False, **numpy_kwargs):
        if dim is not None and axis is None:
            return _torch_extremum(self, dim, keepdim, _amin, "min")
        return _amin(self, _dim(axis, dim), keepdims=keepdims or keepdim, **numpy_kwargs)

    amax, amin = max, min

    def __getattr__(self, name):  # ndarray methods that are functions of the NumPy table
        method = numpy_api.METHODS.get(name)
        if method is None or name.startswith("__"):
            raise AttributeError(f"'Tracer' object has no attribute '{name}'")
        return method.__get__(self)

    def norm(self, p=2, dim=None, keepdim=False):
        return P.norm(self, ord=p, axis=_normalize_axis(dim, self.ndim), keepdims=keepdim)

    def reshape(self, *shape, order="C", copy=None):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _reshape(self, shape, order=order, copy=copy)

    def view(self, *shape):
        """PyTorch's view(shape) is a reshape; NumPy's view() is the same array (the same handle,
        so writes through either name are seen by both); NumPy's view(dtype) is refused."""
        if not shape:
            return self
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer, tuple, list)):
            raise TraceError(f"tapegrad: view({shape[0]!r}) reinterprets memory, which the tape "
                             f"cannot record; use astype\n  at {user_line()}")
        return self.reshape(*shape)

    def flatten(self, order="C", end_dim=-1):
        if not isinstance(order, str):      # PyTorch's flatten(start_dim, end_dim)
            start, end = order % max(self.ndim, 1), end_dim % max(self.ndim, 1)
            return self.reshape(self.shape[:start] + (-1,) + self.shape[end + 1:])
        return _reshape(self, (-1,), order=order, copy=True)    # always a copy, as in NumPy

    def ravel(self, order="C"):
        return _reshape(self, (-1,), order=order)

    def transpose(self, *axes):
        if not axes or axes == (None,):
            axes = tuple(reversed(range(self.ndim)))
        elif len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if len(axes) == 2 and self.ndim != 2 or len(axes) < self.ndim:
            # PyTorch's transpose(dim0, dim1) swaps two axes
            order = list(range(self.ndim))
            i, j = (a % self.ndim for a in axes)
            order[i], order[j] = order[j], order[i]
            axes = tuple(order)
        return _transpose(self, axes)

    @property
    def T(self):
        return self.transpose()

    def t(self):
        return self.transpose()

    # PyTorch spellings a module's forward uses (torch.func / torch.compile trace Tensor code)
    def permute(self, *dims):
        return self.transpose(*dims) if len(dims) != 2 or self.ndim == 2 else \
            _transpose(self, tuple(dims))

    def unsqueeze(self, dim):
        return np.expand_dims(self, dim % (self.ndim + 1))

    def mm(self, other):
        return self @ other

    def square(self):
        return self * self

    def contiguous(self, memory_format=None):
        return self

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def expand(self, *sizes):
        sizes = sizes[0] if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
        lead = len(sizes) - self.ndim           # -1 keeps the size of that axis
        return np.broadcast_to(self, tuple(self.shape[i - lead] if n == -1 else n
                                           for i, n in enumerate(sizes)))

    def dot(self, other):
        return _dot(self, other)

    def astype(self, dtype):
        return P.cast(self, dtype=np.dtype(dtype).name)

    def pow(self, other):
        return P.pow_(self, other)

    def clamp(self, min=None, max=None):
        return _clip(self, min, max)  # array or traced bounds too, as np.clip

    clip = clamp

    def softmax(self, dim):
        return P.softmax(self, axis=dim % self.ndim)

    def log_softmax(self, dim):
        return P.log_softmax(self, axis=dim % self.ndim)

    def size_(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    # ---- NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        unary = _UNARY_UFUNCS.get(ufunc)
        if unary is not None and not kwargs and type(self) is Tracer and method == "__call__":
            # np.exp(x): recorded at once (bind's and record's scans cost half of this call)
            prim, impl = unary
            value = impl(self._value)
            if type(value) is not np.ndarray:
                value = _asarray(value)
            return self._ctx.append(prim, (self._slot,), _NO_PARAMS, value)
        if kwargs.get("out") is not None:
            raise TraceError(f"tapegrad: out= cannot be traced\n  at {user_line()}")
        if method == "__call__":
            if kwargs:
                return _ufunc_options(ufunc, inputs, kwargs)
            if ufunc in _COMPOSED_UFUNCS:
                return _COMPOSED_UFUNCS[ufunc](*inputs)
            prim = _UFUNCS.get(ufunc)
            if prim is not None:
                for a in inputs:
                    if type(a) not in _DIRECT:
                        return prim(*inputs)
                return _bind_tracer(prim, inputs, {})
            rule = numpy_api.ufunc_rule(ufunc)  # scipy.special's ufuncs
            if rule is not None:
                return rule(*inputs)
        if method == "reduce" and ufunc in _REDUCE_UFUNCS:
            kwargs.setdefault("axis", 0)       # ufunc.reduce reduces the first axis by default
            return _REDUCE_UFUNCS[ufunc](*inputs, **kwargs)
        raise TraceError(f"tapegrad: {numpy_api.full_name(ufunc)} ({method}) is not traced; "
                         f"use a traced equivalent\n  at {user_line()}")

    def __array_function__(self, func, types, args, kwargs):
        handler = _ARRAY_FUNCTIONS.get(func)
        if handler is None:
            raise TraceError(f"tapegrad: {numpy_api.full_name(func)} is not traced; use a traced "
                             f"equivalent\n  at {user_line()}")
        return handler(*args, **kwargs)


def _torch_extremum(x, dim, keepdim, reduce, name):
    """PyTorch's x.max(dim=d) on a traced value: (values, indices), indices the first extremum
    (or first NaN) of each slice, whose element alone receives the gradient, as in PyTorch."""
    from .tensor import _ReturnTypes
    d = dim % x.ndim
    pos = np.arange(x.shape[d]).reshape((-1,) + (1,) * (x.ndim - d - 1))
    hit = (x == reduce(x, d, keepdims=True)) | np.isnan(x)
    first = np.where(hit, pos, x.shape[d]).min(axis=d, keepdims=True)
    values = np.where(pos == first, x, 0).sum(axis=d, keepdims=True)
    if not keepdim:
        values, first = np.squeeze(values, d), np.squeeze(first, d)
    return _ReturnTypes[name](values, first)


class _Size(int):
    """x.size: NumPy's element count, and callable as PyTorch's x.size() / x.size(dim)."""

    def __new__(cls, n, shape):
        obj = super().__new__(cls, n)
        obj.shape = shape
        return obj

    def __call__(self, dim=None):
        return self.shape if dim is None else self.shape[dim]


def _ufunc_options(ufunc, inputs, kwargs):
    """A ufunc call with keywords: dtype= casts the result; casting/order/subok only check or lay
    out memory; anything else (where=, signature=, ...) changes the values and is refused."""
    options = {k: v for k, v in kwargs.items() if k not in ("out", "casting", "order", "subok")}
    dtype = options.pop("dtype", None)
    if options.get("where", True) is True:
        options.pop("where", None)
    if options:
        raise TraceError(f"tapegrad: np.{ufunc.__name__}(..., {'=..., '.join(options)}=...) is not "
                         f"traced; compute without it (np.where for masks)\n  at {user_line()}")
    result = ufunc(*inputs)
    if dtype is not None and np.dtype(dtype) != dtype_of(result):
        result = P.cast(result, dtype=np.dtype(dtype).name)
    return result


# operand types that bind would hand to the tracer (level 0 values and tracers themselves)
_DIRECT.add(Tracer)
# one-operand ufuncs that are one primitive: ufunc -> (primitive, the NumPy forward record calls)
_UNARY_UFUNCS = {ufunc: (prim, getattr(prim.impl, "__wrapped__", prim.impl))
                 for ufunc, prim in _UFUNCS.items()
                 if isinstance(ufunc, np.ufunc) and ufunc.nin == 1 and ufunc.nout == 1
                 and ufunc not in _COMPOSED_UFUNCS}


# ---------------------------------------------------------------------------------------------
# Views: NumPy's basic indexing, transposes, reshapes (where no copy is needed), ravel, squeeze,
# expand_dims and broadcast_to give arrays that share memory with their base, so a write through
# either is seen by the other (`row = a[0]; row[1] = 5` changes a; `a[0, 1] = 5` changes row).
# ---------------------------------------------------------------------------------------------

_SLOT, _VALUE = Tracer._slot, Tracer._value        # the storage behind Tracer's slots


def element_strides(array):
    """The array's strides counted in elements, or None where they are not whole elements."""
    item = array.itemsize
    if any(st % item for st in array.strides):
        return None
    return tuple(st // item for st in array.strides)


def layout_key(array):
    """What of an array's memory layout a trace depends on: None for C-contiguous arrays, else
    its strides in elements (they decide NumPy's view-or-copy choices, e.g. of a reshape)."""
    return None if array.flags.c_contiguous else (element_strides(array) or array.strides)


def _strided_probe(value):
    """np.arange(size) laid out with value's exact strides (gaps, reversed and permuted axes
    included), so NumPy's reshapes of the probe copy exactly where they would copy value."""
    shape, steps = value.shape, element_strides(value)
    overlapping = steps is None or any(st == 0 for st, n in zip(steps, shape) if n > 1)
    if overlapping or value.size == 0:
        probe = np.empty_like(value, dtype=np.intp)
        probe[...] = np.arange(value.size).reshape(shape)
        return probe
    low = sum((n - 1) * st for st, n in zip(steps, shape) if st < 0)
    high = sum((n - 1) * st for st, n in zip(steps, shape) if st > 0)
    buffer = np.full(high - low + 1, -1, dtype=np.intp)
    probe = np.lib.stride_tricks.as_strided(buffer[-low:], shape,
                                            [st * buffer.itemsize for st in steps])
    probe[...] = np.arange(value.size).reshape(shape)
    return probe


def _c_ordered(array):
    """Strides that do not grow along the axes (C order, perhaps with gaps): NumPy lays out
    results of such arrays in C order too."""
    if array.flags.c_contiguous:
        return True
    strides = [st for st, n in zip(array.strides, array.shape) if n > 1]
    return all(a >= b for a, b in zip(strides, strides[1:]))


def _laid_out_as(value, probe):
    """value (a C-ordered copy), laid out as NumPy's view would be: results computed from it
    keep that order, and the order decides whether a later reshape is a view."""
    if _c_ordered(probe):
        return value
    out = np.empty_like(probe, dtype=value.dtype)
    out[...] = value
    return out


def _refreshed(storage):
    """A view's _slot/_value: read after bringing the view up to date with its root."""
    def get(view):
        view._fresh()
        return storage.__get__(view)
    return property(get, storage.__set__)


class _View(Tracer):
    """A traced view of a root array (a plain Tracer that owns its values).

    `_where` indexes the root at the view's elements (the basic index itself for a direct view,
    else integer arrays); `_probe` is the view taken of ctx.probe(root shape). The view caches a
    slot computed from the root version `_seen`: when the root has been written since, reading
    the view records a fresh gather (lazily, so writes cost nothing per view). A write through the
    view is a write into the root at `_where`.
    """

    __slots__ = ("_root", "_probe", "_where", "_seen")

    def _fresh(self):
        root = self._root
        if root._slot != self._seen:
            new = P.getitem(root, index=self._where)
            _SLOT.__set__(self, new._slot)
            _VALUE.__set__(self, _laid_out_as(new._value, self._probe))
            self._seen = root._slot

    _slot, _value = _refreshed(_SLOT), _refreshed(_VALUE)

    def _move_to(self, new):
        if not self._probe.flags.writeable:
            raise ValueError(f"assignment destination is read-only (a view made by "
                             f"np.broadcast_to; write into a copy)\n  at {user_line()}")
        root = self._root
        root._move_to(P.setitem(root, new, index=self._where))
        _SLOT.__set__(self, new._slot)
        _VALUE.__set__(self, _laid_out_as(new._value, self._probe))
        self._seen = root._slot


def _as_view(parent, out, take, index=None):
    """`out`, computed from `parent`, as a view of parent's root when NumPy gives a view: when
    take(probe of parent) shares memory with that probe (NumPy copies, e.g. a reshape of a
    transposed array, come out as fresh arrays). `index`: the basic index that took it."""
    if not isinstance(parent, Tracer) or not isinstance(out, Tracer):
        return out
    if type(parent) is _View:
        root, parent_probe = parent._root, parent._probe
    else:
        root, parent_probe = parent, parent._ctx.probe(parent._value)
    probe = take(parent_probe)
    if not isinstance(probe, np.ndarray) or not np.may_share_memory(probe, parent_probe):
        return out
    view = _View(out._ctx, _SLOT.__get__(out) if type(out) is _View else out._slot,
                 _laid_out_as(out._value, probe))
    root_shape = _VALUE.__get__(root).shape
    if index is not None and root is parent:
        view._where = index
    else:
        view._where = np.unravel_index(probe, root_shape) if root_shape else ()
    view._root, view._probe, view._seen = root, probe, root._slot
    return view


def _dim(axis, dim):
    return dim if dim is not None else axis


def _resolve_shape(shape, size):
    shape = [int(n) for n in shape]
    if -1 in shape:
        known = int(np.prod([n for n in shape if n != -1]))
        shape[shape.index(-1)] = size // known if known else 0
    return tuple(shape)


# ---------------------------------------------------------------------------------------------
# NumPy functions on tracers
# ---------------------------------------------------------------------------------------------

def _no_out(out):
    if out is not None:
        raise TraceError(f"tapegrad: out= cannot be traced; use the returned value\n  at "
                         f"{user_line()}")


def _reduction(prim, identity=None, combine=None):
    """np.sum/prod/max/min (and ufunc.reduce) with NumPy's arguments: dtype casts first, `where`
    masks elements out (with the identity, or `initial` for max/min), `initial` joins the result."""
    def reduce(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=True):
        _no_out(out)
        if dtype is not None and np.dtype(dtype) != dtype_of(a):
            a = P.cast(a, dtype=np.dtype(dtype).name)
        if where is not True:
            if identity is None and initial is None:
                raise ValueError(f"reduction operation '{prim.name}' does not have an identity, "
                                 f"so to use a where mask one has to specify 'initial'\n  at "
                                 f"{user_line()}")
            # max/min have no identity: `initial` fills (in the operand's dtype, as NumPy's)
            fill = np.asarray(initial).astype(dtype_of(a)) if identity is None else identity
            filled = P.where(where, a, fill)
            a = filled if dtype_of(filled) == dtype_of(a) else P.cast(filled,
                                                                       dtype=dtype_of(a).name)
        result = prim(a, axis=_normalize_axis(axis, np.ndim(a)), keepdims=bool(keepdims))
        if initial is not None:
            # NumPy casts initial to the result's dtype (a sum of booleans: int64) first
            joined = combine(result, np.asarray(initial).astype(dtype_of(result)))
            result = joined if dtype_of(joined) == dtype_of(result) else P.cast(
                joined, dtype=dtype_of(result).name)
        return result
    return reduce


def _extremum(prim, combine):
    reduce = _reduction(prim, None, combine)

    def extremum(a, axis=None, out=None, keepdims=False, initial=None, where=True):
        return reduce(a, axis, None, out, keepdims, initial, where)     # no dtype, as NumPy
    return extremum


_sum = _reduction(P.sum_, 0, P.add)
_prod = _reduction(P.prod, 1, P.mul)
_amax = _extremum(P.amax, P.maximum)
_amin = _extremum(P.amin, P.minimum)
_REDUCE_UFUNCS = {np.add: _sum, np.multiply: _prod, np.maximum: _amax, np.minimum: _amin}


def _dot(a, b, out=None):
    """np.dot: a sum over the last axis of a and the second-to-last of b (the last when b is 1-D);
    result shape a.shape[:-1] + b.shape[:-2] + b.shape[-1:]. matmul agrees unless b has 3+ axes
    (matmul broadcasts stacks instead); then b's contracted axis moves to the front and one 2-D
    matmul does it."""
    if out is not None:
        raise TraceError(f"tapegrad: out= cannot be traced\n  at {user_line()}")
    sa, sb = shape_of(a), shape_of(b)
    if not sa or not sb:
        return P.mul(a, b)
    if len(sb) <= 2:
        return P.matmul(a, b)
    n = sa[-1]
    if sb[-2] != n:
        raise ValueError(f"shapes {sa} and {sb} not aligned: {n} (dim {len(sa) - 1}) != "
                         f"{sb[-2]} (dim {len(sb) - 2})")
    axes = (len(sb) - 2,) + tuple(range(len(sb) - 2)) + (len(sb) - 1,)
    rest = sb[:-2] + sb[-1:]
    b2 = P.reshape(P.transpose(b, axes=axes), shape=(n, math.prod(rest)))
    a2 = P.reshape(a, shape=(math.prod(sa[:-1]), n))
    return P.reshape(P.matmul(a2, b2), shape=sa[:-1] + rest)


def _reshape(a, shape=None, order="C", newshape=None, copy=None):
    shape = newshape if shape is None else shape
    shape = (shape,) if isinstance(shape, (int, np.integer)) else shape
    shape = _resolve_shape(shape, math.prod(shape_of(a)))
    if order not in ("C", "F", "A"):
        raise ValueError(f"order must be one of 'C', 'F', 'A' (got {order!r})")
    if order == "A":
        # Fortran order when the array is laid out so (a transposed view), else C
        probe = a._probe if type(a) is _View else None
        order = "F" if probe is not None and probe.flags.f_contiguous and not \
            probe.flags.c_contiguous else "C"
    if order == "F":
        # F order reads and writes the index with the first axis fastest: C order reversed
        flipped = _transpose(a, None) if np.ndim(a) > 1 else a
        out = P.reshape(flipped, shape=shape[::-1])
        out = P.transpose(out, axes=tuple(reversed(range(len(shape))))) if len(shape) > 1 else out
    else:
        out = P.reshape(a, shape=shape)
    if copy:
        return out
    return _as_view(a, out, lambda probe: probe.reshape(shape, order=order))


def _transpose(a, axes=None):
    ndim = np.ndim(a)
    axes = tuple(reversed(range(ndim))) if axes is None else tuple(x % ndim for x in axes)
    return _as_view(a, P.transpose(a, axes=axes), lambda probe: probe.transpose(axes))


def _as_dtype(result, dtype):
    if dtype is None or np.dtype(dtype) == dtype_of(result):
        return result
    return P.cast(result, dtype=np.dtype(dtype).name)


def _concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _no_out(out)
    arrays = tuple(arrays)
    if axis is None:                        # NumPy flattens every array first
        arrays, axis = tuple(_reshape(a, (-1,)) for a in arrays), 0
    return _as_dtype(P.cat(*arrays, axis=axis % np.ndim(arrays[0])), dtype)


def _stack(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    _no_out(out)
    arrays = tuple(arrays)
    return _as_dtype(P.stack(*arrays, axis=axis % (np.ndim(arrays[0]) + 1)), dtype)


def _where(condition, x=None, y=None):
    if x is None or y is None:
        raise TraceError(f"tapegrad: one-argument np.where has a data-dependent shape\n  at "
                         f"{user_line()}")
    return P.where(condition, x, y)


def _clip(a, a_min=None, a_max=None, out=None, *, min=None, max=None, **unused):
    _no_out(out)
    low = a_min if min is None else min
    high = a_max if max is None else max
    # NumPy promotes: integers clipped at 0.5 come out as floats
    dtype = np.result_type(dtype_of(a), *[b if isinstance(b, (int, float)) else dtype_of(b)
                                          for b in (low, high) if b is not None])
    if dtype != dtype_of(a):
        a = P.cast(a, dtype=dtype.name)
    if all(b is None or np.ndim(b) == 0 and not isinstance(b, Tracer) for b in (low, high)):
        return P.clamp(a, min=low, max=high)
    # array or traced bounds broadcast with a and get gradients, as torch.clamp's (NaN: none)
    a = P.clip(a, -np.inf if low is None else low, np.inf if high is None else high)
    return a if dtype_of(a) == dtype else P.cast(a, dtype=dtype.name)


def _like(fill):
    def make(a, dtype=None, order="K", subok=True, shape=None, **device):
        shape = shape_of(a) if shape is None else shape
        value = np.full(shape, fill, dtype=dtype or dtype_of(a))
        if isinstance(a, Tracer):
            # a traced array (a constant of the tape), as jnp.zeros_like gives: the buffer of
            # `y = np.zeros_like(x); y[i] = x[i]` then takes traced values
            return a._ctx._tracer(a._ctx.operand(value), value)
        return value
    return make


def _broadcast_to(array, shape, subok=False):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return _as_view(array, P.broadcast_to(array, shape=shape),
                    lambda probe: np.broadcast_to(probe, shape))


def _outer(a, b, out=None):
    _no_out(out)
    size_a = int(np.prod(shape_of(a))) if shape_of(a) else 1
    size_b = int(np.prod(shape_of(b))) if shape_of(b) else 1
    return P.mul(P.reshape(a, shape=(size_a, 1)), P.reshape(b, shape=(1, size_b)))


def _squeeze(a, axis=None):
    shape = shape_of(a)
    axes = _normalize_axis(axis, len(shape)) if axis is not None else tuple(
        i for i, n in enumerate(shape) if n == 1)
    return _reshape(a, tuple(n for i, n in enumerate(shape) if i not in axes))


def _expand_dims(a, axis):
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    ndim = len(shape_of(a)) + len(axes)
    axes = {int(x) % ndim for x in axes}
    if len(axes) != len(tuple(axis if isinstance(axis, (tuple, list)) else (axis,))):
        raise ValueError("repeated axis")
    rest = iter(shape_of(a))
    return _reshape(a, tuple(1 if i in axes else next(rest) for i in range(ndim)))


def _mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    _no_out(out)
    if where is not True:
        raise TraceError(f"tapegrad: np.mean(where=...) is not traced; use "
                         f"np.sum(x, where=m) / np.sum(m)\n  at {user_line()}")
    if dtype is not None and np.dtype(dtype) != dtype_of(a):
        a = P.cast(a, dtype=np.dtype(dtype).name)
    return P.mean(a, axis=_normalize_axis(axis, np.ndim(a)), keepdims=bool(keepdims))


_ARRAY_FUNCTIONS = {
    **numpy_api.ARRAY_FUNCTIONS,  # the one NumPy table; the entries below are the tracer's own
    np.sum: _sum, np.mean: _mean, np.prod: _prod, np.amax: _amax, np.amin: _amin, np.max: _amax,
    np.min: _amin, np.dot: _dot, np.matmul: P.matmul, np.reshape: _reshape,
    np.transpose: _transpose, np.concatenate: _concatenate, np.stack: _stack, np.where: _where,
    np.clip: _clip, np.copy: lambda a, order="K", subok=False: a.copy(), np.zeros_like: _like(0), np.ones_like: _like(1),
    np.broadcast_to: _broadcast_to, np.outer: _outer, np.squeeze: _squeeze,
    np.expand_dims: _expand_dims, np.shape: shape_of, np.ndim: lambda a: len(shape_of(a)),
    np.size: lambda a, axis=None: math.prod(shape_of(a)) if axis is None else shape_of(a)[axis],
    np.ravel: lambda a, order="C": _reshape(a, (-1,), order=order),
}


# ---------------------------------------------------------------------------------------------
# Reverse mode on the tape being recorded
# ---------------------------------------------------------------------------------------------

def backward_on_tape(ctx, start, output, wrt_slots, seeds=None, end=None):
    """Record the adjoint sweep of the instructions from `start` on, from `output` to `wrt_slots`.

    seeds ({slot: cotangent}, output None) starts the sweep from given cotangents of any slots
    instead of ones for a scalar output (vjp, jvp); seeds are not differentiated. The sweep covers
    the instructions [start, end) (end None: to the tape's end; jacobians sweep a function again
    and again, and the sweeps recorded since need not be walked).

    The cotangents are built by the registry's VJP rules applied to tracers, so the adjoint sweep
    is recorded as ordinary primitive instructions. Returns one cotangent per slot (zeros for
    inputs the output does not depend on).
    """
    tape = ctx.tape
    if seeds is None and output.size != 1:
        raise TypeError(f"tapegrad: grad needs a function with one scalar output, got shape "
                        f"{output.shape}; use vmap or sum the output")
    depends = set(wrt_slots)
    for ins in tape.instrs[start:end]:
        if ins.prim.differentiable and not depends.isdisjoint(ins.ins):
            depends.add(ins.out)
    cotangents = {}
    if seeds is not None:
        cotangents = {s: c for s, c in seeds.items() if s in depends}
    elif output._slot in depends:
        cotangents[output._slot] = np.ones(output.shape, dtype=output.dtype)
    # the seed 1 of a float64 scalar output, handed down sum chains to every term's rule, and
    # NumPy float64 cotangents (g * 0.5 of a constant): rules get them as Python floats (same
    # IEEE values and float64 dtypes where the instruction reads float64s and ints only),
    # skipping NumPy's dispatch for ndarray * tracer
    seed = cotangents.get(output._slot) if seeds is None and output.shape == () and \
        output.dtype == _F64 else None
    end = len(tape.instrs) if end is None else end
    consts, tracers, shapes, dtypes = tape.consts, ctx.tracers, tape.shapes, tape.dtypes
    instrs = tape.instrs
    previous_phase, ctx.phase = ctx.phase, ADJOINT
    # Element reads and writes: the registry's rules (index_add(zeros, g), setitem(g, 0)) build
    # a whole array per element; the adjoint of a loop over n elements would hold n of them
    # (O(n^2)). Instead a read's cotangent is scatter-added into the slot's cotangent, and a
    # write zeroes its positions in the cotangent, in place wherever this sweep made that
    # cotangent and nothing else holds it (`owned`): the same instructions simplify() would
    # give, with O(1) work each.
    owned = set()
    templated, plans = _TEMPLATE_ON, {}
    if templated and not _SUM_RECORDERS:
        _SUM_RECORDERS[:] = [_compiled(op, 2, (), False, op.__name__)
                             for op in (operator.add, operator.sub)]
    # what the templates' recorders write to
    state = (ctx, tape, shapes, dtypes, instrs, tracers, ADJOINT)
    try:
        for ins in reversed(instrs[start:end]):
            out = ins.out
            g = cotangents.pop(out, None)
            if g is None:
                continue
            prim, ins_slots = ins.prim, ins.ins
            if templated and dtypes[out] is _F64 and shapes[out] == () and not owned and \
                    not ins.params:
                plan = plans.get(prim, _UNPLANNED)
                if plan is _UNPLANNED:
                    plan = plans[prim] = _plan(prim)
                if plan is not None and plan(state, ins, g, cotangents, depends, consts):
                    continue
            name = prim.name
            # g = -t: the cotangents of add, mul, exp, ... are -(rule of t), unrecorded (IEEE
            # negation commutes with their rules exactly); other rules get -t recorded
            negated = type(g) is _Negated
            if negated:
                g = g.t
                if prim not in _NEGATION_LINEAR:
                    g, negated = -g, False
            special = name in _SPECIAL_VJPS     # sub, getitem, setitem: the cases below
            joint = None
            if special and name in _SCATTER_VJPS and type(g) is Tracer and g._slot in owned \
                    and len(set(ins_slots)) == len(ins_slots):
                # setitem: the values' cotangent reads g before g is zeroed in place
                argnums = (1, 0) if name == "setitem" else (0,)
            else:
                if owned:
                    owned.discard(getattr(g, "_slot", None))    # a rule may hand g on as it is
                argnums = range(len(ins_slots))
                joint = _JOINT_VJPS.get(prim)
                if joint is not None:
                    a, b = ins_slots
                    if joint[0] is prim.vjp_rules and a != b and a in depends and \
                            b in depends and dtypes[a].kind in "fc" and dtypes[b].kind in "fc":
                        # one call gives both (div's shared g / y); the divisor's first
                        argnums, joint = (1, 0), joint[1]
                    else:
                        joint = None
            args = None         # the rules' arguments, when a rule is called
            # Primitive.vjp inlined (one call less per cotangent) where it would call a rule
            rules = prim.vjp_rules if prim.variadic_vjp is None and prim.differentiable else ()
            for argnum in argnums:
                slot = ins_slots[argnum]
                if slot not in depends or dtypes[slot].kind not in "fc":
                    continue
                previous = cotangents.get(slot)
                if special:
                    if argnum == 1 and name == "sub" and type(g) is Tracer and \
                            g._value.shape == shapes[slot]:
                        # sub's rule is -g: kept unrecorded, so the next cotangent added to it
                        # makes one sub (c - g), not a neg and an add
                        cotangents[slot] = _minus(owned, previous, g)
                        continue
                    if argnum == 0 and name == "getitem":
                        if type(previous) is _Negated:
                            previous = -previous.t
                        base = np.zeros(shapes[slot], dtypes[slot]) if previous is None \
                            else previous
                        cotangents[slot] = _scatter_cotangent(ctx, owned, P.index_add, base, g,
                                                              ins.params)
                        continue
                if special and argnum == 0 and name == "setitem" and argnums == (1, 0):
                    c = _scatter_cotangent(ctx, owned, P.setitem, g, 0, ins.params)
                else:
                    if args is None:
                        if len(ins_slots) == 2:     # most instructions: no comprehension call
                            a, b = ins_slots
                            args = (consts[a] if a in consts else tracers[a],
                                    consts[b] if b in consts else tracers[b])
                        else:
                            args = [consts[s] if s in consts else tracers[s] for s in ins_slots]
                    n_instrs = len(instrs)
                    if argnum < len(rules):
                        rule = rules[argnum]
                        if joint is not None:
                            if argnum == 1:     # its cotangent is -t
                                first, t = _joint_call(joint, g, seed, ins, dtypes, consts,
                                                       tracers[out], args)
                                if type(t) is Tracer and t._value.shape == shapes[slot]:
                                    cotangents[slot] = _plus(owned, previous, t) if negated \
                                        else _minus(owned, previous, t)
                                    continue
                                c = -t
                            else:
                                c = first
                        elif rule is None:
                            c = None
                        elif (g is seed or type(g) is _F64_SCALAR) and \
                                _weak_seed_exact(ins, dtypes, consts):
                            c = rule(float(g), tracers[out], *args, **ins.params)
                            if type(c) is float:    # no tracer in it: NumPy's type of result
                                c = rule(g, tracers[out], *args, **ins.params)
                        else:
                            c = rule(g, tracers[out], *args, **ins.params) if ins.params else \
                                rule(g, tracers[out], *args)
                    else:
                        c = prim.vjp(argnum, g, tracers[out], args, ins.params)
                    if type(c) is Tracer and len(instrs) > n_instrs and \
                            instrs[-1].out == c._slot and instrs[-1].prim is _NEG:
                        t = _unneg(tape, tracers, c, shapes[slot])
                        if t is not None:
                            # the rule's last step negates (div's -(g / y * ans)): kept
                            # unrecorded as for sub, so the sum of such cotangents is one sub
                            # each, and one neg at most
                            cotangents[slot] = _plus(owned, previous, t) if negated else \
                                _minus(owned, previous, t)
                            continue
                if c is None:
                    continue
                kind = type(c)
                if (c._value.shape if kind is Tracer else c.shape if kind is np.ndarray
                        else None) != shapes[slot]:
                    c = P.unbroadcast(c, shapes[slot])
                cotangents[slot] = _minus(owned, previous, c) if negated else \
                    c if previous is None else _plus(owned, previous, c)
        result = []
        for slot in wrt_slots:
            c = cotangents.get(slot)
            c = -c.t if type(c) is _Negated else c
            result.append(np.zeros(tape.shapes[slot], tape.dtypes[slot]) if c is None else c)
    finally:
        ctx.phase = previous_phase
    return result


def _accumulate(state, previous, c, subtract):
    """_plus(previous, c), or _minus when subtract, for the 0-d float64 cotangent c: its sum
    recorded by the templates of + and - where previous is one too."""
    if previous is None:
        return _Negated(c) if subtract else c
    kind = type(previous)
    if kind is _Negated:
        t = previous.t
        if not subtract:        # c - t
            return _SUM_RECORDERS[1](state, c, t)[0] if _is_f64_scalar(t) else c - t
        return _Negated(_SUM_RECORDERS[0](state, t, c)[0] if _is_f64_scalar(t) else t + c)
    if kind is Tracer and previous._value.dtype is _F64 and not previous._value.ndim:
        return _SUM_RECORDERS[subtract](state, previous, c)[0]
    return previous - c if subtract else previous + c


def _is_f64_scalar(tracer):
    return type(tracer) is Tracer and tracer._value.dtype is _F64 and not tracer._value.ndim


def _joint_call(joint, g, seed, ins, dtypes, consts, ans, args):
    """Both cotangents of a binary instruction from its joint rule (g as a Python float where
    exact, as for single rules)."""
    if (g is seed or type(g) is _F64_SCALAR) and _weak_seed_exact(ins, dtypes, consts):
        pair = joint(float(g), ans, *args, **ins.params)
        if float not in map(type, pair):
            return pair
    return joint(g, ans, *args, **ins.params)


def _weak_seed_exact(ins, dtypes, consts):
    """Whether ins's rules given float(g) for a float64 g (the seed, a NumPy float64) compute
    g's bits and dtypes: rules linear in g, float64 result, operands float64s or integers (to
    which a Python float is no weaker than float64), no Python number a zero (1.0 / 0 raises
    where NumPy divides)."""
    if ins.prim not in _NEGATION_LINEAR or dtypes[ins.out] is not _F64:
        return False
    for s in ins.ins:
        dtype = dtypes[s]
        if dtype is not _F64 and dtype.kind not in "iub":
            return False
        if s in consts and type(consts[s]) in (int, float, bool) and consts[s] == 0:
            return False
    return True


def _plus(owned, previous, c):
    """The cotangent previous + c (previous None: c)."""
    if type(previous) is _Negated:
        return c - previous.t
    if previous is None:
        return c
    if owned:
        owned.discard(getattr(previous, "_slot", None))
    return previous + c


def _minus(owned, previous, t):
    """The cotangent previous - t (previous None: -t), negations left unrecorded."""
    if previous is None:
        return _Negated(t)
    if type(previous) is _Negated:
        return _Negated(previous.t + t)
    if owned:
        owned.discard(getattr(previous, "_slot", None))
    return previous - t


def _unneg(tape, tracers, c, shape):
    """t, when c = neg(t) is the tape's last instruction (just recorded by a VJP rule, so read
    by nothing) and of the cotangent's shape: that instruction is dropped. Else None."""
    neg = tape.instrs[-1]
    t = tracers.get(neg.ins[0])
    if t is None or c._value.shape != shape or t._value.shape != shape or \
            tape.guards and tape.guards[-1].position >= len(tape.instrs):
        return None
    tape.instrs.pop()
    if tape._producer is not None:
        tape._producer.pop(neg.out, None)
    return t


class _Negated:
    """The cotangent -t, not recorded yet (see backward_on_tape: sub's second operand)."""
    __slots__ = ("t",)

    def __init__(self, t):
        self.t = t


_SCATTER_VJPS = ("getitem", "setitem")
# primitives whose VJP rules are g itself or g times or over values that do not involve g
_NEGATION_LINEAR = frozenset((_ADD, _MUL, _DIV, P.pow_, P.exp, P.log, P.log1p, P.expm1, P.sqrt,
                              P.sin, P.tan, P.tanh, P.sigmoid, P.softplus))
_SPECIAL_VJPS = frozenset(("sub",) + _SCATTER_VJPS)
# a primitive's cotangents of both operands from one call, the second negated, while its registry
# rules are the ones the joint rule was written for (defvjp replaces the tuple)
_JOINT_VJPS = {P.div: (P.div.vjp_rules, P.div_vjps)}


def _scatter_cotangent(ctx, owned, prim, base, values, params):
    """prim(base, values, index) (index_add or setitem) recorded on the adjoint sweep. A base in
    `owned` is updated in place: its slot keeps a value-less shell (the VJP rules of index_add
    and setitem read shapes only), so n element reads cost O(1) each, not a copy of the array.
    The result is owned: this sweep holds it only in its table of cotangents."""
    index = params["index"]
    if type(base) is Tracer and base._slot in owned:
        owned.discard(base._slot)
        value = base._value
        base._value = ctx.tracers[base._slot]._value = ctx.shell(value)
    else:
        value = np.array(base._value if isinstance(base, Tracer) else base, copy=True)
    update = values._value if isinstance(values, Tracer) else values
    if prim is P.setitem:
        value[index] = update
    elif (len(index) != 1 or type(index[0]) is not int) and P._is_advanced(index):
        np.add.at(value, index, update)
    else:
        value[index] += update
    slots = [ctx.operand(base), ctx.operand(values)]
    out = ctx.append(prim, slots, params, value)
    owned.add(out._slot)
    return out


# ---------------------------------------------------------------------------------------------
# Adjoint templates: the registry's VJP rules traced once on 0-d float64 placeholders
# ---------------------------------------------------------------------------------------------
# Most steps of a scalar graph's adjoint sweep apply one small rule (g * ans, g / x, ...) to 0-d
# float64 tracers, and calling it costs a rule call and an operator dispatch per instruction.
# Each rule is traced once into a template instead, made into a straight-line function that
# records the very instructions the rule records (same slots and values: +, -, * and / of float64
# scalars are Python's float operations, NumPy's IEEE results, and other primitives call their
# forward). A rule whose template depends on the placeholders' values is left to the rule path.

_TEMPLATES = {}     # (prim, variant, const positions) -> (the rules traced, recorder or None)
_UNPLANNED = object()
# two sets of placeholder values (g, ans, args...): a rule gives one template for both, or none
_PLACEHOLDERS = ((0.8414709848078965, 0.5403023058681398, 0.9092974268256817, -0.4161468365471424),
                 (-1.2246467991473532, 2.718281828459045, -0.36787944117144233, 3.141592653589793))
_ARITH = {_ADD: "+", _SUB: "-", _MUL: "*", _DIV: "/"}
_TEMPLATE_ON = True     # tests compare the templates with the rules they come from
# the recorders of the cotangents' sums (_plus, _minus) of 0-d float64 tracers, made on the first
# sweep
_SUM_RECORDERS = []


def _plan(prim):
    """The sweep step of prim's 0-d float64 instructions by templates (see _step_source), or None
    when its steps take the rule path: rules that are not one fixed rule per operand (at most
    two), or one of the sweep's special cases."""
    rules = prim.vjp_rules
    subtracts = prim is _SUB
    if not (prim.differentiable and prim.variadic_vjp is None and 0 < len(rules) <= 2 and
            (subtracts or prim.name not in _SPECIAL_VJPS) and None not in rules):
        return None
    if subtracts:
        # the sweep's own case: the subtrahend's cotangent -g left unrecorded (its rule unused)
        first = _recorder(prim, 0, ())
        return None if first is None else _step(prim, (first, None), None, False, True)
    joint = _JOINT_VJPS.get(prim)
    if joint is not None and joint[0] is rules:
        joint = _recorder(prim, -1, ())
        if joint is None:       # the rule path calls the joint rule
            return None
    else:
        joint = None
    return _step(prim, tuple(_recorder(prim, k, ()) for k in range(len(rules))), joint,
                 prim in _NEGATION_LINEAR)


def _step(prim, rules, joint, linear, subtracts=False):
    # the recorders of operand 1's rule with operand 0 a constant, and of 0's with 1 one
    by_constant = (_recorder(prim, 1, (0,)), _recorder(prim, 0, (1,))) \
        if len(rules) == 2 and not subtracts else ()
    namespace = {"rules": rules, "joint": joint, "by_constant": by_constant,
                 "_Negated": _Negated, "Tracer": Tracer, "_F64": _F64,
                 "_accumulate": _accumulate, "_SUMS": _SUM_RECORDERS}
    exec(compile(_step_source(rules, joint, linear, subtracts), f"<adjoint step of {prim.name}>",
                 "exec"), namespace)
    return namespace["step"]


def _step_source(rules, joint, linear, subtracts):
    """The source of a primitive's sweep step by templates: the adjoint of one 0-d float64
    instruction as the rule path would record it (the same instructions, slots and values), or
    False (nothing recorded) where the rule path must run. Branches on the primitive's arity,
    joint rule and linearity are resolved here; subtracts: sub's step (see _plan)."""
    n = len(rules)
    operands = "ab"[:n]

    def accumulate(slot, c, subtract):
        # _accumulate, its commonest case (a sum of 0-d float64 tracers) without the call
        return [f"    previous = cotangents.get({slot})",
                "    if previous is None:",
                f"        cotangents[{slot}] = _Negated({c}) if {subtract} else {c}",
                "    elif type(previous) is Tracer and previous._value.dtype is _F64 and \\",
                "            not previous._value.ndim:",
                f"        cotangents[{slot}] = _SUMS[{subtract}](state, previous, {c})[0]",
                "    else:",
                f"        cotangents[{slot}] = _accumulate(state, previous, {c}, {subtract})"]

    lines = ["def step(state, ins, g, cotangents, depends, consts):",
             "    negated = type(g) is _Negated",
             "    if negated:",
             "        g = g.t" if linear else "        return False",
             "    if type(g) is not Tracer:", "        return False",
             "    value = g._value",
             "    if value.dtype is not _F64 or value.ndim:", "        return False",
             f"    {', '.join(operands)}, = ins.ins",
             "    shapes, dtypes, tracers = state[2], state[3], state[5]",
             "    if " + " or ".join(f"dtypes[{o}] is not _F64 or shapes[{o}] != ()"
                                for o in operands) + ":",
             "        return False"]
    if n == 1 or subtracts:
        lines += [f"    if {' or '.join(f'{o} in consts' for o in operands)}:",
                  "        return False"]
    else:
        # one operand a Python float constant: the other's rule, traced with a constant there
        lines += ["    if a in consts or b in consts:",
                  "        if a in consts and b in consts:", "            return False",
                  "        ans = tracers[ins.out]"]
        for k, (number, other) in enumerate((("a", "b"), ("b", "a"))):
            call = "number, tracers[b]" if k == 0 else "tracers[a], number"
            lines += [f"        if {number} in consts:",
                      f"            number = consts[{number}]",
                      "            if type(number) is not float:", "                return False",
                      f"            if {other} in depends:",
                      f"                record = by_constant[{k}]",
                      "                if record is None or record.reads and (number == 0.0 or "
                      "number == 1.0):",
                      "                    return False     # g * 1.0 is no instruction",
                      f"                c, unnegated = record(state, g, ans, {call})"]
            lines += ["            " + line
                      for line in accumulate(other, "c", "negated != unnegated")]
            lines += ["            return True"]
    lines += [f"    ans, {', '.join(f'x{o}' for o in operands)} = tracers[ins.out], "
              f"{', '.join(f'tracers[{o}]' for o in operands)}"]
    args = ", ".join(f"x{o}" for o in operands)
    # a rule with no template: the rule path, unless the joint rule serves (checked first)
    missing = [o for o, rule in zip(operands, rules) if rule is None and not subtracts]
    if missing:
        lines += [f"    if {' or '.join(f'{o} in depends' for o in missing)}:"] + (
            ["        if not (a != b and a in depends and b in depends):",
             "            return False"]
            if joint is not None else ["        return False"])

    if joint is not None:
        # as the rule path: the divisor's cotangent first, subtracted
        lines += ["    if a != b and a in depends and b in depends:",
                  f"        first, t = joint(state, g, ans, {args})"]
        lines += ["    " + line for line in accumulate("b", "t", "not negated")]
        lines += ["    " + line for line in accumulate("a", "first", "negated")]
        lines += ["        return True"]
    for k, o in enumerate(operands):
        if subtracts and k == 1:
            lines += [f"    if {o} in depends:"]
            lines += ["    " + line for line in accumulate(o, "g", "True")]
            continue
        if rules[k] is not None and rules[k].identity:
            lines += [f"    if {o} in depends:"]
            lines += ["    " + line for line in accumulate(o, "g", "negated")]
            continue
        lines += [f"    if {o} in depends:",
                  f"        c, unnegated = rules[{k}](state, g, ans, {args})"]
        lines += ["    " + line for line in accumulate(o, "c", "negated != unnegated")]
    lines.append("    return True")
    return "\n".join(lines) + "\n"


def _recorder(prim, variant, consts_at):
    """The recorder of prim's rule for operand `variant` (-1: the joint rule of _JOINT_VJPS) on
    0-d float64 values, Python floats at the operand positions consts_at; None when the rule
    does not trace to one fixed sequence of 0-d instructions."""
    key = (prim, variant, consts_at)
    entry = _TEMPLATES.get(key)
    rules = prim.vjp_rules
    if entry is None or entry[0] is not rules:
        rule = _JOINT_VJPS[prim][1] if variant < 0 else rules[variant]
        entry = _TEMPLATES[key] = (rules, _compiled(rule, 2 + len(rules), consts_at,
                                                    variant >= 0, prim.name))
    return entry[1]


def _compiled(fn, n, consts_at, drop_neg, name):
    """fn's template on n placeholders (Python floats at consts_at, 0-d float64 tracers
    elsewhere) made into a recorder, or None; drop_neg: the sweep drops a last negation."""
    try:
        made = [_template_source(fn, n, consts_at, values, drop_neg) for values in _PLACEHOLDERS]
    except Exception:       # a rule that cannot run on placeholders: the rule path runs it
        return None
    if made[0] is None or any(m != made[0] for m in made):
        return None
    source, namespace = made[0]
    namespace = dict(namespace, _asarray=_asarray, _new=_new, Instr=Instr, Tracer=Tracer,
                     _F64=_F64, _NO_PARAMS=_NO_PARAMS, _ndarray=np.ndarray)
    exec(compile(source, f"<adjoint template of {name}>", "exec"), namespace)
    record = namespace["record"]
    record.reads, record.identity = namespace["_reads"], namespace["_identity"]
    return record


def _template_source(fn, n, consts_at, values, drop_neg):
    """(source, names) of the recorder of fn (see _compiled), or None."""
    with TraceContext() as ctx:
        # consts_at counts the operands, after g and ans
        holders = [values[k] if k - 2 in consts_at else ctx.new_input(np.float64(values[k]))
                   for k in range(n)]
        results = fn(*holders)
        results = results if type(results) is tuple else (results,)
    tape = ctx.tape
    if tape.guards or not all(type(r) is Tracer and r._ctx is ctx and r._value.shape == () and
                              r._value.dtype is _F64 for r in results):
        return None
    params = ", ".join(f"P{k}" for k in range(len(holders)))
    lines = [f"def record(state, {params}):",
             "    ctx, tape, shapes, dtypes, instrs, tracers, phase = state",
             "    producer = tape._producer"]
    names, kinds = {}, {}       # template slot -> its names' suffix; 'tracer'/'number'
    for k, h in enumerate(holders):
        if type(h) is Tracer:
            names[h._slot], kinds[h._slot] = f"_{k}", "tracer"
    namespace, reads = {}, []      # reads: the constant operands the rule reads
    for slot, value in tape.consts.items():
        placeholder = [k for k, h in enumerate(holders) if type(h) is float and h == value]
        if placeholder and value is holders[placeholder[0]]:
            name = f"P{placeholder[0]}"
            reads.append(placeholder[0] - 2)
        elif type(value) in (int, float) and value not in values and abs(value) < _EXACT_INT:
            name = namespace_name = f"L{slot}"
            namespace[namespace_name] = value
        else:
            return None
        names[slot], kinds[slot] = f"c{slot}", "number"
        lines.append(f"    fc{slot} = vc{slot} = {name}")
    ready = set()       # slots whose names are set (a holder's read where first used)
    for k, ins in enumerate(tape.instrs):
        out = ins.out
        if ins.params or tape.shapes[out] != () or any(s not in names for s in ins.ins):
            return None
        ops = [names[s] for s in ins.ins]
        for s, o in zip(ins.ins, ops):
            if s not in ready:
                ready.add(s)
                # a number's slot where the rule path makes (or finds) it
                lines.append(f"    s{o} = ctx._number(v{o})" if kinds[s] == "number" else
                             f"    s{o}, v{o} = P{o[1:]}._slot, P{o[1:]}._value\n"
                             f"    f{o} = float(v{o})")
        namespace[f"R{k}"] = ins.prim
        namespace[f"I{k}"] = getattr(ins.prim.impl, "__wrapped__", ins.prim.impl)
        floats = tape.dtypes[out] is _F64 and all(
            tape.dtypes[s] is _F64 or kinds[s] == "number" for s in ins.ins)
        if floats and ins.prim in _ARITH and len(ops) == 2:
            a, b = ops
            expression = f"f{a} {_ARITH[ins.prim]} f{b}"
            if ins.prim is _DIV:    # Python raises on a zero divisor, where NumPy divides
                lines += [f"    if f{b} != 0.0:", f"        f_o{out} = {expression}",
                          f"        v_o{out} = _asarray(f_o{out})", "    else:",
                          f"        v_o{out} = _asarray(I{k}(v{a}, v{b}))",
                          f"        f_o{out} = float(v_o{out})"]
            else:
                lines += [f"    f_o{out} = {expression}", f"    v_o{out} = _asarray(f_o{out})"]
            dtype = "_F64"
        elif floats and ins.prim is _NEG:
            lines += [f"    f_o{out} = -f{ops[0]}", f"    v_o{out} = _asarray(f_o{out})"]
            dtype = "_F64"
        else:
            lines += [f"    v_o{out} = I{k}({''.join(f'v{o}, ' for o in ops)})",
                      f"    if type(v_o{out}) is not _ndarray:",
                      f"        v_o{out} = _asarray(v_o{out})",
                      f"    f_o{out} = float(v_o{out}) if v_o{out}.dtype is _F64 else None"]
            dtype = f"v_o{out}.dtype"
        lines += [f"    s_o{out} = len(shapes)", "    shapes.append(())",
                  f"    dtypes.append({dtype})"]
        last = k == len(tape.instrs) - 1
        if last and drop_neg and ins.prim is _NEG and results[0]._slot == out and \
                kinds[ins.ins[0]] == "tracer":
            # the sweep drops a rule's last negation (_unneg): its slot stays unused
            lines.append(f"    return {_returned(names[ins.ins[0]])}, True")
            break
        lines += [f"    if producer is not None:", f"        producer[s_o{out}] = len(instrs)",
                  "    i = _new(Instr)",
                  f"    i.prim, i.ins, i.out, i.phase = R{k}, ({''.join(f's{o}, ' for o in ops)}),"
                  f" s_o{out}, phase",
                  "    i.params = _NO_PARAMS", "    instrs.append(i)",
                  f"    t_o{out} = _new(Tracer)",
                  f"    t_o{out}._ctx, t_o{out}._slot, t_o{out}._value = ctx, s_o{out}, v_o{out}",
                  f"    tracers[s_o{out}] = t_o{out}"]
        names[out], kinds[out] = f"_o{out}", "tracer"
        ready.add(out)
    else:
        returned = [_returned(names[r._slot]) for r in results]
        lines.append(f"    return {returned[0]}, {returned[1] if len(results) > 1 else 'False'}")
    namespace["_reads"] = tuple(sorted(reads))
    # the rule is g itself (add's, sub's first): a step needs no call to it
    namespace["_identity"] = not tape.instrs and len(results) == 1 and results[0] is holders[0]
    return "\n".join(lines) + "\n", namespace


def _returned(name):
    """The recorder's name of the tracer with names' suffix `name` (a holder's: its argument)."""
    return f"t{name}" if name.startswith("_o") else f"P{name[1:]}"


def is_tracer(value):
    return isinstance(value, Tracer)


def pinned(value):
    """A handle on a traced value's current version: a later write or in-place op through the
    original handle (which moves it to the new version) leaves this one where it was. Transforms
    that record a function's inputs (checkpoint, custom rules) pin them before calling it."""
    if isinstance(value, Tracer):
        return Tracer(value._ctx, value._slot, value._value)
    return value


__all__ = ["Tracer", "TraceContext", "TraceError", "ConcreteNumber", "current", "user_line",
           "backward_on_tape", "is_tracer", "pinned", "bind"]
