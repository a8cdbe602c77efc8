"""Tapes on NVIDIA GPUs through numba.cuda: the backend of `tapegrad.jit(..., device="cuda")`.

`compile(tape)` gives a `CudaProgram` that the jit front door (tapegrad.transforms.Jitted) calls:

  * `program(inputs) -> (ok, result)` runs an array tape: fused elementwise kernels (one kernel per
    chain of same-shaped elementwise instructions, broadcasting written into its index arithmetic),
    reductions, tiled matmul, and gathers/scatters for shape and index primitives. Every slot lives
    on the device; only guard flags (one element each) come back to the host, and a failed guard
    stops the sweep there, so nothing is computed on a path the inputs did not take.
  * `program.run_batched(inputs, input_axes, rows) -> (ok_rows, leaves)` runs the row tape of
    jit(vmap(f)) with one thread per row (see cuda_plan.row_kernel_source); a row whose guards
    differ from the traced path stops and is reported, and the front door runs it on its own path.
    Row tapes longer than config.MAX_ROW_OPS scalar operations (or with more inputs and outputs
    than a kernel's parameter space holds) run instead on the row interpreter:
    the CPU backend's instruction arrays (tapegrad_jit.cpu), one compiled kernel for every tape,
    with every row's slots in device memory at V[offset, row].
  * `program.run_all(...)` is the whole-batch fast path: failed rows are counted on the device, so
    a call whose rows all take one path does no per-row work on the host.

Inputs are NumPy arrays (copied to the device; results come back as NumPy) or device arrays
(`__cuda_array_interface__`: numba device arrays, CuPy; results stay on the device as numba
device arrays, which CuPy and PyTorch take without a copy).
"""
import math
import threading

import numpy as np

_INSTALL_HINT = (
    "install the 'cuda' extra (pip install -e '.[cuda]', or pip install numba-cuda); without an "
    "NVIDIA GPU, set NUMBA_ENABLE_CUDASIM=1 before numba is imported to run the kernels on "
    "Numba's CUDA simulator (slow, for tests)")

try:
    from numba import config as _numba_config
    from numba import cuda
except ImportError as exc:      # numba without its CUDA target (the numba-cuda package)
    raise ImportError(f"tapegrad.jit(device='cuda') needs numba-cuda: {_INSTALL_HINT}") from exc

from tapegrad.tape import tree_unflatten  # noqa: E402

from . import cuda_config as config  # noqa: E402
from . import cuda_kernels as K  # noqa: E402
from .cuda_plan import (GATHERS, REDUCTIONS, UnsupportedOnCuda, fused_kernel_source,  # noqa: E402
                        is_elementwise, lower, row_kernel_source)

__all__ = ["compile", "available", "is_device_array", "CudaUnavailableError", "CudaProgram",
           "UnsupportedOnCuda"]


class CudaUnavailableError(RuntimeError):
    """device='cuda' was asked for where numba.cuda sees no GPU."""


def available():
    """True when kernels can run: an NVIDIA GPU through numba.cuda, or the simulator."""
    try:
        return bool(cuda.is_available())
    except Exception:           # a broken driver install reads as no GPU
        return False


def require():
    if not available():
        raise CudaUnavailableError(
            "tapegrad.jit(device='cuda'): numba.cuda sees no usable NVIDIA GPU (no device, or no "
            f"driver). Run with device='cpu', or {_INSTALL_HINT}.")


def is_device_array(value):
    """A GPU array: anything with __cuda_array_interface__ (and the simulator's fake arrays)."""
    if hasattr(value, "__cuda_array_interface__"):
        return True
    return bool(_numba_config.ENABLE_CUDASIM) and type(value).__name__ == "FakeCUDAArray"


class _HostView:
    """What NumPy reads as an array through __array_interface__ (see _as_device)."""

    def __init__(self, interface):
        self.__array_interface__ = {key: interface.get(key) for key in ("shape", "typestr",
                                                                        "data", "strides")}
        self.__array_interface__["version"] = 3


def _as_device(value):
    """A numba device array viewing `value` (no copy)."""
    if hasattr(value, "copy_to_host"):
        return value
    if _numba_config.ENABLE_CUDASIM:
        # the simulator has no as_cuda_array, and its device memory is host memory: an object
        # exposing __cuda_array_interface__ there points at host memory, viewed as it is
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        return FakeCUDAArray(np.asarray(_HostView(value.__cuda_array_interface__)))
    return cuda.as_cuda_array(value)


def _flat(array):
    """A 1-D view of a C-contiguous device array."""
    if not array.is_c_contiguous():
        raise ValueError("tapegrad.jit(device='cuda'): device arrays must be C-contiguous; "
                         "copy it first (e.g. cupy.ascontiguousarray)")
    return array.reshape(array.size)


def _upload(value, dtype):
    return cuda.to_device(np.ascontiguousarray(np.asarray(value, dtype=dtype).reshape(-1)))


def compile(tape):  # noqa: A001  (the backend interface the jit front door calls)
    """A CudaProgram for an (optimized) tape; kernels are built on first use."""
    require()
    return CudaProgram(tape)


# ---------------------------------------------------------------------------------------------
# Array tapes: a plan of kernel launches over flat device buffers
# ---------------------------------------------------------------------------------------------

class _ArrayPlan:
    """Kernel launches for one lowered tape. Buffers are flat; reshape is an alias."""

    def __init__(self, tape):
        self.tape = tape
        self.alias = {}
        self.view_of = {}        # slot -> slot whose buffer it is a view of
        self.steps = []          # callables step(values) -> False to stop (a failed guard)
        self._pool = {}
        self._plan()
        self.escaping = self._escaping()
        self.lock = threading.Lock()    # kept buffers serve one call at a time

    def resolve(self, slot):
        while slot in self.alias:
            slot = self.alias[slot]
        return slot

    # ---- planning
    def _plan(self):
        tape = self.tape
        instrs = []
        for ins in tape.instrs:
            if ins.prim.name == "reshape":
                self.alias[ins.out] = self.resolve(ins.ins[0])
                continue
            if is_elementwise(ins.prim):
                # a reshaped value read elementwise at its own size is the same flat buffer
                size = math.prod(tape.shapes[ins.out])
                ins = type(ins)(ins.prim, tuple(
                    self.resolve(s) if math.prod(tape.shapes[s]) == size else s
                    for s in ins.ins), ins.out, ins.params, ins.phase)
            instrs.append((ins, self._position(ins)))
        units = self._units(instrs)
        outside = self._fit_parameters(units)
        for unit in units:
            kind, body = unit
            if kind == "group":
                stored = [ins.out for ins in body if ins.out in outside.get(id(unit), ())]
                self.steps.append(self._fused_step(body, stored))
            elif kind == "guard":
                self.steps.append(self._guard_step(body))
            else:
                self.steps.append(self._single_step(body))

    def _position(self, ins):
        return self.tape.producer[ins.out]

    def _units(self, instrs):
        """Groups of elementwise instructions, single instructions and guards, in tape order."""
        tape = self.tape
        guards = sorted(tape.guards, key=lambda g: g.position)
        units, group, members, shape, g = [], [], set(), None, 0

        def close():
            nonlocal group, members, shape
            if group:
                units.append(("group", group))
            group, members, shape = [], set(), None

        for ins, position in instrs + [(None, len(tape.instrs))]:
            while g < len(guards) and guards[g].position <= position:
                close()
                units.append(("guard", guards[g]))
                g += 1
            if ins is None:
                break
            if not is_elementwise(ins.prim):
                close()
                units.append(("single", ins))
                continue
            out_shape = tape.shapes[ins.out]
            # another thread's element of this kernel cannot be read: such a read ends the group
            reads_member = any(s not in members and self.resolve(s) in members for s in ins.ins)
            if out_shape != shape or reads_member:
                close()
                shape = out_shape
            group.append(ins)
            members.add(ins.out)
        close()
        return units

    def _fit_parameters(self, units):
        """Split (in place) each group whose kernel would take more arguments than CUDA's
        parameter space holds, until all fit; returns _reads_outside of the result."""
        while True:
            outside = self._reads_outside(units)
            for k, unit in enumerate(units):
                if unit[0] == "group" and len(unit[1]) > 1 and K.param_bytes(
                        self._fused_arguments(unit, outside)) > K.MAX_PARAM_BYTES:
                    body = unit[1]
                    units[k:k + 1] = [("group", body[:len(body) // 2]),
                                      ("group", body[len(body) // 2:])]
                    break
            else:
                return outside

    def _fused_arguments(self, unit, outside):
        """Dimensions of a group kernel's arguments (see cuda_plan.fused_kernel_source): n, then
        one flat array per input read and per result stored."""
        members = {ins.out for ins in unit[1]}
        consts = self.tape.consts
        reads = {s for ins in unit[1] for s in ins.ins if s not in members
                 and not (s in consts and np.size(consts[s]) == 1)}   # those are literals
        return [0] + [1] * (len(reads) + len(outside.get(id(unit), ())))

    def _reads_outside(self, units):
        """For each group unit, the member slots something outside it reads."""
        owner = {}
        for unit in units:
            if unit[0] == "group":
                for ins in unit[1]:
                    owner[ins.out] = id(unit)
        outside = {}

        def mark(slot, reader):
            slot = self.resolve(slot)
            if slot in owner and owner[slot] != reader:
                outside.setdefault(owner[slot], set()).add(slot)

        for unit in units:
            kind, body = unit
            if kind == "group":
                members = {ins.out for ins in body}
                for ins in body:
                    for s in ins.ins:
                        if s not in members:
                            mark(s, id(unit))
            elif kind == "guard":
                mark(body.slot, None)
            else:
                for s in body.ins:
                    mark(s, None)
        for slot in self.tape.outputs:
            mark(slot, None)
        return outside

    # ---- steps
    def _fused_step(self, group, stored):
        tape = self.tape
        view = _GroupView(tape, group)
        source, inputs = fused_kernel_source(view, list(range(len(group))), stored)
        shape = tape.shapes[group[0].out]
        n = math.prod(shape)
        kernel = K.compile_source(source, "fused")
        inputs = [self.resolve(s) for s in inputs]

        def step(values):
            outs = [self.buffer(s) for s in stored]
            K.launch_1d(kernel, n, n, *[values[s] for s in inputs], *outs)
            values.update(zip(stored, outs))
        return step

    def _guard_step(self, guard):
        slot, expected = self.resolve(guard.slot), guard.expected

        def step(values):
            flag = values[slot][:1].copy_to_host()[0]
            return bool(flag) == expected
        return step

    def _single_step(self, ins):
        name = ins.prim.name
        if name in REDUCTIONS:
            return self._reduce_step(ins)
        if name == "matmul":
            return self._matmul_step(ins)
        if name == "index_add":
            return self._index_add_step(ins)
        if name in GATHERS:
            return self._gather_step(ins)
        raise UnsupportedOnCuda(f"tapegrad.jit(device='cuda'): primitive '{name}' has no CUDA "
                                "kernel")

    def _reduce_step(self, ins):
        tape = self.tape
        x, out = self.resolve(ins.ins[0]), ins.out
        shape = tape.shapes[ins.ins[0]]
        axis = ins.params.get("axis")
        axes = tuple(range(len(shape))) if axis is None else tuple(sorted(axis))
        kept = [i for i in range(len(shape)) if i not in axes]
        contiguous = not axes or axes == tuple(range(axes[0], axes[-1] + 1))
        order = None
        if contiguous:
            outer = math.prod(shape[:axes[0]]) if axes else math.prod(shape)
            inner = math.prod(shape[axes[-1] + 1:]) if axes else 1
        else:
            # move the reduced axes last with one gather, then reduce contiguous runs
            order = _device_index(np.arange(math.prod(shape)).reshape(shape)
                                  .transpose(kept + list(axes)))
            outer, inner = math.prod(shape[i] for i in kept), 1
        count = math.prod(shape[i] for i in axes)
        op = ins.prim.name

        def fill(values, result):
            src = values[x]
            if order is not None:
                moved = self.buffer(("moved", out), src.dtype, src.shape[0])
                K.gather(src, order, moved)
                src = moved
            K.reduce(op, src, result, outer, count, inner)
        return self._writing(out, fill)

    def _matmul_step(self, ins):
        tape = self.tape
        a, b = ins.ins
        ashape, bshape = tape.shapes[a], tape.shapes[b]
        a2 = (1,) + ashape if len(ashape) == 1 else ashape
        b2 = bshape + (1,) if len(bshape) == 1 else bshape
        M, Kdim, N = a2[-2], a2[-1], b2[-1]
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
        a_off = np.broadcast_to(np.arange(math.prod(a2[:-2])).reshape(a2[:-2]), batch) * M * Kdim
        b_off = np.broadcast_to(np.arange(math.prod(b2[:-2])).reshape(b2[:-2]), batch) * Kdim * N
        a_off, b_off = _device_index(a_off), _device_index(b_off)
        a, b = self.resolve(a), self.resolve(b)
        return self._writing(ins.out, lambda values, result: K.matmul(
            values[a], values[b], result, a_off, b_off, M, Kdim, N))

    def _gather_step(self, ins):
        """Shape and index primitives: NumPy's own indexing on element numbers gives, for each
        output element, which input element it copies."""
        tape = self.tape
        tags, base = [], 0
        for s in ins.ins:
            size = math.prod(tape.shapes[s])
            tags.append((np.arange(size, dtype=np.int64) + base).reshape(tape.shapes[s]))
            base += size
        source = np.asarray(ins.prim.impl(*tags, **ins.params), dtype=np.int64).reshape(-1)
        out, dtype, size = ins.out, tape.dtypes[ins.out], source.size
        ins_slots = [self.resolve(s) for s in ins.ins]
        if len(ins_slots) == 1 and np.array_equal(source, np.arange(size)) and \
                tape.dtypes[ins.ins[0]] == dtype:
            self.alias[out] = ins_slots[0]
            return lambda values: None
        contiguous = size and np.array_equal(source, np.arange(source[0], source[0] + size))
        if len(ins_slots) == 1 and contiguous and tape.dtypes[ins.ins[0]] == dtype:
            start, base = int(source[0]), ins_slots[0]    # a contiguous run: a view, no copy
            self.view_of[out] = base

            def view(values):
                values[out] = values[base][start:start + size]
            return view
        if len(ins_slots) == 1:
            index = _device_index(source)
            return self._writing(out, lambda values, result: K.gather(
                values[ins_slots[0]], index, result))
        parts, start = [], 0
        for s, tag in zip(ins_slots, tags):
            hit = (source >= start) & (source < start + tag.size)
            if hit.any():
                parts.append((s, _device_index(source[hit] - start),
                              _device_index(np.nonzero(hit)[0])))
            start += tag.size

        def fill(values, result):
            for s, src_index, dst_index in parts:
                K.scatter(values[s], src_index, dst_index, result)
        return self._writing(out, fill)

    def _index_add_step(self, ins):
        tape = self.tape
        base, vals = ins.ins
        bshape, vshape = tape.shapes[base], tape.shapes[vals]
        dst = np.arange(math.prod(bshape)).reshape(bshape)[ins.params["index"]]
        src = np.ravel(np.broadcast_to(np.arange(math.prod(vshape)).reshape(vshape),
                                       np.shape(dst)))
        dst = np.ravel(dst)
        zero_base = base in tape.consts and not np.any(tape.consts[base])
        base, vals = self.resolve(base), self.resolve(vals)
        if dst.size and np.array_equal(dst, np.arange(dst[0], dst[0] + dst.size)) and \
                np.array_equal(src, np.arange(src.size)):
            # the adjoint of a slice: one pass adding the values into a run, no index maps
            start = int(dst[0])
            return self._writing(ins.out, lambda values, result: K.add_run(
                None if zero_base else values[base], values[vals], start, result))
        dst, src = _device_index(dst), _device_index(src)

        def fill(values, result):
            K.copy(values[base], result)
            K.scatter(values[vals], src, dst, result, add=True)
        return self._writing(ins.out, fill)

    def _writing(self, out, fill):
        """A step that takes the buffer of slot `out` and has fill(values, buffer) write it."""
        def step(values):
            result = self.buffer(out)
            fill(values, result)
            values[out] = result
        return step

    def _escaping(self):
        """Slots whose memory a result can reach (outputs, and what they are views of)."""
        escaping = set()
        for slot in self.tape.outputs:
            slot = self.resolve(slot)
            escaping.add(slot)
            while slot in self.view_of:
                slot = self.resolve(self.view_of[slot])
                escaping.add(slot)
        return escaping

    def buffer(self, slot, dtype=None, size=None):
        """Device memory for a slot: kept from call to call (allocating is slow on a GPU), except
        where a result can reach it, which gets fresh memory every call."""
        dtype = self.tape.dtypes[slot] if dtype is None else dtype
        size = math.prod(self.tape.shapes[slot]) if size is None else size
        if slot in self.escaping:
            return cuda.device_array(size, dtype=dtype)
        key = (slot, np.dtype(dtype).str, size)
        buffer = self._pool.get(key)
        if buffer is None:
            buffer = self._pool[key] = cuda.device_array(size, dtype=dtype)
        return buffer

    # ---- running
    def run(self, values):
        for step in self.steps:
            if step(values) is False:
                return False
        return True


class _GroupView:
    """The slice of a tape a fused kernel sees: its instructions, renumbered 0..n-1."""

    def __init__(self, tape, group):
        self.instrs = list(group)
        self.shapes, self.dtypes, self.consts = tape.shapes, tape.dtypes, tape.consts


def _device_index(array):
    return cuda.to_device(np.ascontiguousarray(np.asarray(array, dtype=np.int64).reshape(-1)))


# ---------------------------------------------------------------------------------------------
# The program the jit front door calls
# ---------------------------------------------------------------------------------------------

class CudaProgram:
    def __init__(self, tape):
        self.tape = lower(tape)
        self.out_tree = tape.out_tree
        self._lock = threading.Lock()
        self._plan = None
        self._consts = None
        self._row_kernels = {}
        self._no_rows = None
        self._interp = None

    def __repr__(self):
        return f"<CudaProgram: {len(self.tape.instrs)} instructions>"

    # ---- constants live on the device from the first call on
    def _device_consts(self):
        if self._consts is None:
            tape = self.tape
            self._consts = {slot: _upload(value, tape.dtypes[slot])
                            for slot, value in tape.consts.items()}
        return self._consts

    # ---- array tapes
    def __call__(self, inputs):
        """Run both sweeps on the device: (True, result tree) or (False, None) on a failed
        guard."""
        tape = self.tape
        with self._lock:
            if self._plan is None:
                self._plan = _ArrayPlan(tape)
            plan = self._plan
            consts = self._device_consts()
        on_device = any(is_device_array(a) for a in inputs)
        values = dict(consts)
        for slot, array in zip(tape.inputs, inputs):
            if is_device_array(array):
                values[slot] = _flat(_as_device(array))
            else:
                values[slot] = _upload(array, tape.dtypes[slot])
        with plan.lock:
            if not plan.run(values):
                return False, None
        leaves = []
        for slot in tape.outputs:
            base = plan.resolve(slot)
            buffer = values[base]
            shape = tape.shapes[slot]
            if on_device:
                if base in tape.consts or base in tape.inputs:
                    fresh = cuda.device_array(buffer.shape[0], dtype=buffer.dtype)
                    K.copy(buffer, fresh)
                    buffer = fresh
                leaves.append(buffer.reshape(shape))
            else:
                leaves.append(buffer.copy_to_host().reshape(shape))
        return True, tree_unflatten(self.out_tree, leaves)

    # ---- batched row tapes
    def _row_kernel(self, mapped):
        """(kernel, big constants) of straight-line row code, or None where the row tape is
        too long for it or has more inputs and outputs than a kernel's arguments hold (then the
        row interpreter runs it)."""
        with self._lock:
            if self._no_rows is None:
                self._no_rows = cuda.to_device(np.zeros(1, dtype=np.int64))
            if mapped not in self._row_kernels:
                try:
                    source, big = row_kernel_source(self.tape, mapped, config.MAX_ROW_OPS,
                                                    config.MAX_INLINE_CONST)
                except UnsupportedOnCuda as exc:
                    if "scalar operations" not in str(exc):
                        raise
                    self._row_kernels[mapped] = None
                else:
                    tape = self.tape
                    # rows, m, full, x.., c.., out.., status, failures
                    ndims = ([1, 0, 0] + [2] * len(tape.inputs) + [1] * len(big)
                             + [2] * len(tape.outputs) + [1, 1])
                    if K.param_bytes(ndims) > K.MAX_PARAM_BYTES:
                        self._row_kernels[mapped] = None    # the interpreter's are fixed
                    else:
                        consts = [_upload(tape.consts[s], np.float64) for s in big]
                        self._row_kernels[mapped] = (K.compile_source(source, "row_kernel"),
                                                     consts)
            return self._row_kernels[mapped]

    def _interpreter(self):
        with self._lock:
            if self._interp is None:
                self._interp = _RowInterpreter(self.tape)
            return self._interp

    def _rows_minor(self, array, slot, axis, n):
        """An input as (elements, rows) on the device; unmapped inputs as (elements, 1)."""
        tape = self.tape
        size = math.prod(tape.shapes[slot])
        dtype = tape.dtypes[slot]
        if not is_device_array(array):
            array = np.asarray(array, dtype=dtype)
            if axis is None:
                return cuda.to_device(np.ascontiguousarray(array.reshape(size, 1)))
            moved = np.moveaxis(array, axis, -1).reshape(size, n)
            return cuda.to_device(np.ascontiguousarray(moved))
        flat = _flat(_as_device(array))
        if axis is None:
            return flat.reshape(size, 1)
        if size == 1:
            return flat.reshape(1, n)
        shape = array.shape
        out = cuda.device_array((size, n), dtype=flat.dtype)
        K.to_rows_minor(flat, math.prod(shape[:axis]), n, math.prod(shape[axis + 1:]), out)
        return out

    def _launch(self, inputs, input_axes, rows):
        """Run the row kernel on `rows` (None: every row, in order). Returns (outputs as
        (elements, rows) device arrays, status per row on the device, number of failed rows,
        whether the inputs were device arrays)."""
        tape = self.tape
        mapped = tuple(ax is not None for ax in input_axes)
        straight = self._row_kernel(mapped)
        n = next(np.shape(a)[ax] for a, ax in zip(inputs, input_axes) if ax is not None)
        full = rows is None or len(rows) == n      # the rows are sorted and distinct: all of them
        m = n if full else len(rows)
        row_index = self._no_rows if full else cuda.to_device(np.asarray(rows, dtype=np.int64))
        on_device = any(is_device_array(a) for a in inputs)
        soa = [self._rows_minor(a, slot, ax, n)
               for a, slot, ax in zip(inputs, tape.inputs, input_axes)]
        if straight is None:
            outs, status, failures = self._interpreter().run(soa, mapped, row_index, full, m)
            return outs, status, failures, on_device
        kernel, big = straight
        outs = [cuda.device_array((math.prod(tape.shapes[s]), m), dtype=tape.dtypes[s])
                for s in tape.outputs]
        status = cuda.device_array(m, dtype=np.int32)
        failures = cuda.to_device(np.zeros(1, dtype=np.int32))
        blocks = max(1, (m + config.THREADS - 1) // config.THREADS)
        kernel[blocks, config.THREADS](row_index, m, full, *soa, *big, *outs, status, failures)
        return outs, status, int(failures.copy_to_host()[0]), on_device

    def _leaves(self, outs, m, on_device):
        """Output arrays with one entry per row, back in the rows-first layout."""
        leaves = []
        for slot, out in zip(self.tape.outputs, outs):
            shape = (m,) + tuple(self.tape.shapes[slot])
            if not on_device:
                leaves.append(np.ascontiguousarray(out.copy_to_host().T).reshape(shape))
            elif out.shape[0] == 1:
                leaves.append(out.reshape(shape))
            else:
                flat = cuda.device_array(out.shape[0] * m, dtype=out.dtype)
                K.to_rows_major(out, flat)
                leaves.append(flat.reshape(shape))
        return leaves

    def run_all(self, inputs, input_axes, n):
        """The whole batch when every row takes this tape's path: (out_tree, leaves), with no
        per-row work on the host; None when some row took another path."""
        outs, _, failures, on_device = self._launch(inputs, input_axes, None)
        if failures:
            return None
        return self.out_tree, self._leaves(outs, n, on_device)

    def run_batched(self, inputs, input_axes, rows):
        """Run the row tape on the given rows: (ok_rows mask, one array per output leaf, each with
        one entry per given row; rows whose guards failed hold garbage)."""
        outs, status, failures, on_device = self._launch(inputs, input_axes, rows)
        m = len(rows)
        ok_rows = status.copy_to_host() == 0 if failures else np.ones(m, dtype=bool)
        return ok_rows, self._leaves(outs, m, on_device)

    def merge(self, results, leaves, rows, ok_rows, n):
        """Fold one run_batched result into the full batch (results is None at first)."""
        rows = np.asarray(rows)
        if results is None and ok_rows.all() and rows.size == n:
            return self.out_tree, leaves             # the common case: every row on this path
        if results is None:
            results = (self.out_tree, [self._empty_like(leaf, n) for leaf in leaves])
        done = rows[ok_rows]
        for full, part in zip(results[1], leaves):
            if not is_device_array(full):
                full[done] = part[ok_rows]
                continue
            per_row = math.prod(full.shape[1:])
            src = (np.nonzero(ok_rows)[0][:, None] * per_row + np.arange(per_row)).ravel()
            dst = (done[:, None] * per_row + np.arange(per_row)).ravel()
            K.scatter(_flat(part), _device_index(src), _device_index(dst), _flat(full))
        return results

    @staticmethod
    def _empty_like(leaf, n):
        shape = (n,) + tuple(leaf.shape[1:])
        if is_device_array(leaf):
            return cuda.device_array(shape, dtype=leaf.dtype)
        return np.empty(shape, dtype=leaf.dtype)


class _RowInterpreter:
    """A row tape as the CPU backend's instruction arrays (one format for both backends), run by
    the row interpreter kernel: one thread per row, every row's slots in V[offset, thread]."""

    def __init__(self, tape):
        from . import cpu, lowering_linalg
        program = cpu.Program(tape)
        # CPU ops the row interpreter has no kernel for (the matrix routines and sorts of 'linalg'):
        # refuse only the tapes whose code uses one, naming their primitives
        missing = {cpu.OPCODE[name]: name for name in cpu._ARRAY_OPS
                   if name not in K.INTERPRETER_OPS}
        used = {missing[op] for op in np.unique(program.code[:, 0]).tolist() if op in missing}
        if used:
            names = sorted({ins.prim.name for ins in tape.instrs}
                           & set(lowering_linalg.LOWERINGS)) or sorted(used)
            raise UnsupportedOnCuda("tapegrad.jit(device='cuda'): no CUDA kernel for primitive "
                                    + ", ".join(f"'{name}'" for name in names)
                                    + "; run this function on the CPU (device='cpu')")
        self.kernel = K.interpreter(cpu.ELEMENTWISE_FORMS, cpu.OPCODE)
        self.code = cuda.to_device(np.ascontiguousarray(program.code))
        self.ipool = cuda.to_device(np.ascontiguousarray(program.ipool))
        self.v0 = program.v0
        self.inputs = program.inputs               # (offset, size, shape) per tape input
        self.outputs = program.outputs             # (offset, size, shape, dtype) per output

    def run(self, soa, mapped, row_index, full, m):
        """soa: each input as (elements, rows) or (elements, 1) device arrays. Returns (outputs as
        (elements, rows) device arrays of their dtypes, status, failed row count)."""
        v0 = self.v0.copy()
        X_parts, in_offsets, in_sizes = [], [], []
        for (offset, size, _), array, is_mapped in zip(self.inputs, soa, mapped):
            if is_mapped:
                X_parts.append(array)
                in_offsets.append(offset)
                in_sizes.append(size)
            else:                                  # the same value for every row: into v0
                v0[offset:offset + size] = array.copy_to_host().reshape(-1)
        v0_device = cuda.to_device(v0)
        n = X_parts[0].shape[1] if X_parts else 1
        X = cuda.device_array((max(sum(in_sizes), 1), n), dtype=np.float64)
        row = 0
        for part in X_parts:
            K.copy(_flat(part), X[row:row + part.shape[0]].reshape(part.shape[0] * n))
            row += part.shape[0]
        out_sizes = [size for _, size, _, _ in self.outputs]
        Y = cuda.device_array((max(sum(out_sizes), 1), m), dtype=np.float64)
        status = cuda.device_array(m, dtype=np.int32)
        failures = cuda.to_device(np.zeros(1, dtype=np.int32))
        chunk = max(1, min(m, config.INTERPRETER_BYTES // (8 * v0.size)))
        V = cuda.device_array((v0.size, chunk), dtype=np.float64)
        out_offsets = [offset for offset, _, _, _ in self.outputs]
        ints = [cuda.to_device(np.asarray(a, dtype=np.int64))
                for a in (in_offsets, in_sizes, out_offsets, out_sizes)]
        for first in range(0, m, chunk):
            count = min(chunk, m - first)
            blocks = (count + config.THREADS - 1) // config.THREADS
            self.kernel[blocks, config.THREADS](
                self.code, self.ipool, v0_device, V, row_index, full, first, count, ints[0],
                ints[1], X, ints[2], ints[3], Y, status, failures)
        outs, row = [], 0
        for _, size, _, dtype in self.outputs:
            out = cuda.device_array((size, m), dtype=dtype)
            K.copy(Y[row:row + size].reshape(size * m), out.reshape(size * m))
            outs.append(out)
            row += size
        return outs, status, int(failures.copy_to_host()[0])
