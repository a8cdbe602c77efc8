"""Function transforms: grad, value_and_grad, vmap, make_tape, and the jit front door.

Transforms take NumPy arrays, Python scalars or Tensors and return NumPy values. Called on plain
values they trace the function (define-by-run) and return the traced results; called inside
another trace (nested transforms, or under jit) they record onto the same tape, so
`jit(value_and_grad(f))` compiles one tape holding the forward and the adjoint sweep.

`jit` imports `tapegrad_jit` (and with it numba) only when a jitted function is first called.
"""
import contextlib
import functools
import gc
import importlib
import threading
import warnings
from collections import OrderedDict

import numpy as np

from . import primitives as P
from .tape import optimize, tree_flatten, tree_unflatten
from .trace import TraceContext, Tracer, backward_on_tape, current


def _as_array(value):
    """NumPy data of an argument (Tensors give their data; Python floats become 0-d float64)."""
    if getattr(type(value), "_bind_level", 0) == 1:
        return value.detach().numpy()
    if _is_gpu_array(value):                # tracing reads a GPU array's values on the host
        return value.copy_to_host() if hasattr(value, "copy_to_host") else value.get()
    return np.asarray(value)


def _is_gpu_array(value):
    # numba device arrays (and the CUDA simulator's) have copy_to_host; CuPy has the interface
    return hasattr(value, "__cuda_array_interface__") or hasattr(value, "copy_to_host")


def _is_static(value):
    # Python ints and bools steer shapes and loops: they are part of the signature, not traced
    return isinstance(value, (bool, int, np.integer, str, type(None))) and not isinstance(
        value, np.ndarray)


def _concrete(tree):
    leaves, structure = tree_flatten(tree, lambda x: isinstance(x, Tracer))
    return tree_unflatten(structure, [x._value if isinstance(x, Tracer) else x for x in leaves])


def _in_trace(fun, args, body):
    """Run body(ctx, args) inside the current trace, or in a fresh one returning plain values."""
    ctx = current()
    for arg in args:
        if isinstance(arg, Tracer):
            ctx = arg._ctx
    if ctx is not None:
        return body(ctx, args)
    with TraceContext() as ctx:
        traced = [a if _is_static(a) else ctx.new_input(_as_array(a)) for a in args]
        return _concrete(body(ctx, traced))


# ---------------------------------------------------------------------------------------------
# grad and value_and_grad
# ---------------------------------------------------------------------------------------------

def value_and_grad(fun, argnums=0, has_aux=False):
    """A function returning (fun(*args), d fun / d args[argnums]); with has_aux fun returns
    (value, aux) and the result is ((value, aux), grad). argnums may be a tuple."""
    single = isinstance(argnums, int)
    positions = (argnums,) if single else tuple(argnums)

    def body(ctx, args):
        args = list(args)
        wrt = []
        for i in positions:
            if _is_static(args[i]) or np.asarray(_value(args[i])).dtype.kind not in "fc":
                raise TypeError(f"tapegrad: grad needs floating-point inputs; argument {i} is "
                                f"{type(args[i]).__name__} {np.asarray(_value(args[i])).dtype}")
            # a fresh slot per argument, so that closures over the same value stay constants
            alias = ctx.record(P.reshape, (args[i],), {"shape": tuple(np.shape(_value(args[i])))})
            args[i] = alias
            wrt.append(alias._slot)     # the slot now: an element write moves the handle on
        start = len(ctx.tape.instrs)
        out = fun(*args)
        value, aux = out if has_aux else (out, None)
        if isinstance(value, Tracer):
            grads = backward_on_tape(ctx, start, value, wrt)
        else:
            if np.size(value) != 1:
                raise TypeError("tapegrad: grad needs a function with one scalar output")
            grads = [np.zeros(ctx.tape.shapes[s], ctx.tape.dtypes[s]) for s in wrt]
        grads = grads[0] if single else tuple(grads)
        return ((value, aux), grads) if has_aux else (value, grads)

    @functools.wraps(fun)
    def value_and_grad_fun(*args):
        return _in_trace(fun, args, body)

    value_and_grad_fun._tapegrad_transform = ("value_and_grad", fun)
    return value_and_grad_fun


def _value(x):
    if _is_gpu_array(x):
        return x                            # shape and dtype are read without a copy
    return x._value if isinstance(x, Tracer) else _as_array(x)


def grad(fun, argnums=0, has_aux=False):
    """A function returning d fun / d args[argnums] (and aux, with has_aux)."""
    vg = value_and_grad(fun, argnums, has_aux)

    @functools.wraps(fun)
    def grad_fun(*args):
        value, g = vg(*args)
        return (g, value[1]) if has_aux else g

    grad_fun._tapegrad_transform = ("grad", fun)
    return grad_fun


# ---------------------------------------------------------------------------------------------
# vmap
# ---------------------------------------------------------------------------------------------

def _take(value, row, axis):
    if isinstance(value, Tracer):
        return P.getitem(value, index=(slice(None),) * axis + (row,))
    return np.take(_as_array(value), row, axis=axis)


class Vmapped:
    """fun mapped over one axis of its arguments; jit runs the rows of its tape in parallel."""

    def __init__(self, fun, in_axes=0):
        self.fun = fun
        self.in_axes = in_axes
        functools.update_wrapper(self, fun, updated=())

    def axes_for(self, args):
        axes = self.in_axes
        if not isinstance(axes, (tuple, list)):
            axes = (axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"tapegrad.vmap: in_axes has {len(axes)} entries for {len(args)} "
                             "arguments")
        axes = tuple(None if a is None or _is_static(args[i]) and not isinstance(args[i], int)
                     else a % max(np.ndim(_value(args[i])), 1) if a is not None else None
                     for i, a in enumerate(axes))
        sizes = {np.shape(_value(a))[ax] for a, ax in zip(args, axes) if ax is not None}
        if len(sizes) != 1:
            raise ValueError(f"tapegrad.vmap: mapped axes must have one size, got {sorted(sizes)}")
        return axes, sizes.pop()

    def __call__(self, *args):
        axes, n = self.axes_for(args)
        rows = [self.fun(*[a if ax is None else _take(a, r, ax) for a, ax in zip(args, axes)])
                for r in range(n)]
        leaves_per_row = []
        structure = None
        for row in rows:
            leaves, structure = tree_flatten(row, lambda x: isinstance(x, Tracer))
            leaves_per_row.append(leaves)
        stacked = []
        for column in zip(*leaves_per_row):
            if any(isinstance(x, Tracer) for x in column):
                stacked.append(P.stack(*column, axis=0))
            else:
                stacked.append(np.stack([np.asarray(x) for x in column]))
        return tree_unflatten(structure, stacked)


def vmap(fun, in_axes=0):
    """fun mapped over axis in_axes (an int, None, or one per argument) of its arguments."""
    return Vmapped(fun, in_axes)


# ---------------------------------------------------------------------------------------------
# Tracing a whole function onto a tape
# ---------------------------------------------------------------------------------------------

_gc_lock = threading.Lock()
_gc_pauses = [0, False]     # active pauses, and whether the collector was enabled at the first


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while a tape is traced, optimised and lowered.

    These steps allocate one small object after another (tracers, instructions, slots) and free
    almost none of them, so the collector would run a generation-2 sweep over the growing heap again
    and again: more than half of the time of a 100k-instruction trace+compile. Reference counting
    still frees what dies; the collector is enabled again (if it was) when the last pause ends.
    """
    with _gc_lock:
        if _gc_pauses[0] == 0:
            _gc_pauses[1] = gc.isenabled()
            gc.disable()
        _gc_pauses[0] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses[0] -= 1
            if _gc_pauses[0] == 0 and _gc_pauses[1]:
                gc.enable()


def trace_to_tape(fun, args):
    """Trace fun(*args): returns (tape, traced result as plain values). Static args are baked in."""
    with TraceContext() as ctx:
        traced = [a if _is_static(a) else ctx.new_input(_as_array(a)) for a in args]
        out = fun(*traced)
    leaves, structure = tree_flatten(out, lambda x: isinstance(x, Tracer))
    tape = ctx.tape
    tape.outputs = [x._slot if isinstance(x, Tracer) and x._ctx is ctx else tape.add_const(x)
                    for x in leaves]
    tape.out_tree = structure
    values = [x._value if isinstance(x, Tracer) else x for x in leaves]
    # tracers refer to their context and the context to its tracers: break the cycle, so that they
    # are freed by reference counting instead of waiting for (and slowing) the cyclic collector
    ctx.tracers.clear()
    return tape, tree_unflatten(structure, values)


def make_tape(fun, optimized=True):
    """A function returning the tape of fun at the given arguments: `print(make_tape(f)(x))`."""
    @functools.wraps(fun)
    def tape_of(*args):
        with gc_paused():
            tape, _ = trace_to_tape(fun, args)
            return optimize(tape) if optimized else tape
    return tape_of


# ---------------------------------------------------------------------------------------------
# jit
# ---------------------------------------------------------------------------------------------

MAX_PATHS = 8           # tapes kept per input signature (one per guard outcome seen)
MAX_SIGNATURES = 32


def _backend(device):
    name = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda"}.get(device)
    if name is None:
        raise ValueError(f"tapegrad.jit: unknown device {device!r}; use 'cpu' or 'cuda'")
    try:
        return importlib.import_module(f"tapegrad_jit.{name}")
    except ImportError as exc:
        if name == "cuda":
            raise RuntimeError(
                "tapegrad.jit(device='cuda') needs numba-cuda and an NVIDIA GPU: install the "
                "'cuda' extra (pip install tapegrad[cuda]); without a GPU, set "
                f"NUMBA_ENABLE_CUDASIM=1 to run on the simulator ({exc})") from exc
        raise RuntimeError(f"tapegrad.jit needs numba: pip install numba ({exc})") from exc


class Jitted:
    """A function compiled per input signature; each signature keeps a tape per guard path."""

    def __init__(self, fun, device="cpu"):
        self.fun = fun
        self.device = device
        self.batched = isinstance(fun, Vmapped)
        self._signatures = OrderedDict()     # signature -> list of compiled programs
        self._lock = threading.RLock()
        self._backend_module = None
        self.traces = 0                      # how many times fun was traced (for tests and users)
        self._retrace_streak = 0
        self._warned = False
        functools.update_wrapper(self, fun, updated=())

    # ---- signature
    def _split(self, args):
        """(signature, traced input arrays, call template)."""
        key, inputs = [], []
        for a in args:
            if type(a) is np.ndarray and self.device == "cpu":
                key.append((a.shape, a.dtype.str))     # the common case, checked cheaply
                inputs.append(a)
            elif _is_static(a):
                key.append(("static", a))
            else:
                array = self._device_array(a)
                key.append((array.shape, array.dtype.str))
                inputs.append(array)
        return tuple(key), inputs

    def _device_array(self, value):
        if _is_gpu_array(value) and self.device != "cpu":
            return value
        array = _as_array(value)
        return array if array.dtype.kind != "O" else np.asarray(array, dtype=np.float64)

    def _module(self):
        if self._backend_module is None:
            self._backend_module = _backend(self.device)
        return self._backend_module

    # ---- tapes
    def tape(self, *args):
        """The optimized tape this function runs for these arguments."""
        fun, args = self._row_function(args) if self.batched else (self.fun, args)
        with gc_paused():
            tape, _ = trace_to_tape(fun, args)
            return optimize(tape)

    def _row_function(self, args, row=0):
        """For jit(vmap(f)): f and the arguments of one row (the tape describes one row)."""
        axes, n = self.fun.axes_for(args)
        if n == 0:
            raise ValueError("tapegrad.vmap: empty batch")
        row_args = [a if ax is None else np.take(_as_array(a), row, axis=ax)
                    for a, ax in zip(args, axes)]
        return self.fun.fun, row_args

    def _new_program(self, fun, args, signature):
        module = self._module()
        with gc_paused():
            tape, traced = trace_to_tape(fun, args)
            program = module.compile(optimize(tape))
            del tape
        with self._lock:
            self.traces += 1
            paths = self._signatures.setdefault(signature, [])
            paths.insert(0, program)
            if len(paths) > MAX_PATHS:
                paths.pop()
                self._warn(f"more than {MAX_PATHS} branch paths for one input signature")
            self._signatures.move_to_end(signature)
            if len(self._signatures) > MAX_SIGNATURES:
                self._signatures.popitem(last=False)
                self._warn(f"more than {MAX_SIGNATURES} input signatures (shapes/dtypes/ints)")
        return program, traced

    def _warn(self, reason):
        if not self._warned:
            self._warned = True
            warnings.warn(f"tapegrad.jit: {getattr(self.fun, '__name__', 'function')} is retraced "
                          f"on most calls ({reason}); each retrace costs a trace and compile. Pass "
                          "varying numbers as arrays, not Python ints, and avoid branches whose "
                          "outcome changes on every call.", RuntimeWarning, stacklevel=3)

    def _note_retrace(self, retraced):
        self._retrace_streak = self._retrace_streak + 1 if retraced else 0
        if self._retrace_streak >= 2 * MAX_PATHS:
            self._warn("its guards fail on every call")

    # ---- calling
    def __call__(self, *args):
        if current() is not None or any(isinstance(a, Tracer) for a in args):
            return self.fun(*args)           # inside another trace: inline
        if self.batched:
            return self._call_batched(args)
        signature, inputs = self._split(args)
        with self._lock:
            paths = list(self._signatures.get(signature, ()))
        for program in paths:
            ok, result = program(inputs)
            if ok:
                self._note_retrace(False)
                return result
        self._note_retrace(True)
        program, traced = self._new_program(self.fun, args, signature)
        if any(_is_gpu_array(a) for a in inputs):
            ok, result = program(inputs)    # results stay on the GPU, as on later calls
            if ok:
                return result
        return traced

    def _call_batched(self, args):
        axes, n = self.fun.axes_for(args)
        signature, inputs = self._split(args)
        input_axes = [ax for a, ax in zip(args, axes) if not _is_static(a)]
        with self._lock:
            paths = list(self._signatures.get(signature, ()))
        if paths and hasattr(paths[0], "run_all"):
            # a GPU program runs the whole batch and counts failed rows on the device: when none
            # failed there is no per-row work on the host (an arange of 1e7 rows costs more than
            # the kernel)
            done = paths[0].run_all(inputs, input_axes, n)
            if done is not None:
                self._note_retrace(False)
                return tree_unflatten(*done)
        pending = np.arange(n)
        results = None
        retraced = False
        while pending.size:
            for program in paths:
                ok_rows, leaves = program.run_batched(inputs, input_axes, pending)
                results = self._merge(results, program, leaves, pending, ok_rows, n)
                pending = pending[~ok_rows]
                if not pending.size:
                    break
            if pending.size:
                # a row took a path no tape has seen: trace it and run the rows that follow it
                retraced = True
                fun, row_args = self._row_function(args, int(pending[0]))
                program, _ = self._new_program(fun, row_args, signature)
                paths = [program]
        self._note_retrace(retraced)
        return tree_unflatten(results[0], results[1])

    @staticmethod
    def _merge(results, program, leaves, rows, ok_rows, n):
        if hasattr(program, "merge"):       # a GPU backend keeps results where the inputs live
            return program.merge(results, leaves, rows, ok_rows, n)
        if results is None:
            stacked = [np.empty((n,) + leaf.shape[1:], leaf.dtype) for leaf in leaves]
            results = (program.out_tree, stacked)
        for full, part in zip(results[1], leaves):
            full[rows[ok_rows]] = part[ok_rows]
        return results


def jit(fun=None, *, device="cpu"):
    """Compile fun with Numba: `jit(f)`, `@jit`, `@jit(device="cuda")`."""
    if fun is None:
        return lambda f: Jitted(f, device)
    return Jitted(fun, device)
