"""Function transforms: grad, value_and_grad, vmap, make_tape, and the jit front door.

Transforms take NumPy arrays, Python scalars or Tensors and return NumPy values. Called on plain
values they trace the function (define-by-run) and return the traced results; called inside
another trace (nested transforms, or under jit) they record onto the same tape, so
`jit(value_and_grad(f))` compiles one tape holding the forward and the adjoint sweep.

`jit` imports `tapegrad_jit` (and with it numba) only when a jitted function is first called.
"""
import contextlib
import enum
import functools
import gc
import importlib
import sys
import threading
import warnings
from collections import OrderedDict
from operator import attrgetter

import numpy as np

from . import primitives as P
from .captures import captured, location
from .tape import optimize, tree_flatten, tree_unflatten
from .trace import _PACKAGE_DIR, TraceContext, Tracer, _state, backward_on_tape, current, layout_key
from .trace import lift_tree


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
    # Python ints and bools steer shapes and loops (enum members, branches): they are part of
    # the signature, not traced; so are classes (isinstance(x, kind) with kind an argument)
    return isinstance(value, (bool, int, np.integer, str, type(None), enum.Enum, type)) and \
        not isinstance(value, np.ndarray)


_CONTAINERS = (tuple, list, dict)      # pytree nodes: a traced input per leaf


def _any_leaf(value):
    return True


def _leaves(args):
    """The leaves of the arguments, containers (pytrees) flattened."""
    return tree_flatten(list(args), _any_leaf)[0]


def _trace_arg(ctx, value):
    """An argument as the traced function sees it: static values as they are, arrays as new
    inputs of the tape, containers rebuilt around their traced leaves."""
    if _is_static(value):
        return value
    if type(value) in _CONTAINERS:
        leaves, structure = tree_flatten(value, _any_leaf)
        return tree_unflatten(structure, [_trace_arg(ctx, leaf) for leaf in leaves])
    return ctx.new_input(_as_array(value))


def _concrete(tree):
    leaves, structure = tree_flatten(tree, lambda x: isinstance(x, Tracer))
    return tree_unflatten(structure, [x._value if isinstance(x, Tracer) else x for x in leaves])


def _in_trace(fun, args, body):
    """Run body(ctx, args) inside the current trace, or in a fresh one returning plain values."""
    ctx = current()
    for arg in args:
        if isinstance(arg, Tracer):
            ctx = arg._ctx
        elif type(arg) in _CONTAINERS:
            for leaf in _leaves((arg,)):
                if isinstance(leaf, Tracer):
                    ctx = leaf._ctx
    if ctx is not None:
        return body(ctx, args)
    with TraceContext() as ctx:
        try:
            return _concrete(body(ctx, [_trace_arg(ctx, a) for a in args]))
        finally:
            # each tracer refers to ctx and ctx to every tracer: without this the cycle keeps
            # every intermediate value of the trace alive until the cyclic collector runs
            ctx.tracers.clear()


def _input_leaves(args):
    """(argument position, leaf) of each value that becomes a tape input, in input order."""
    for i, a in enumerate(args):
        for leaf in _leaves((a,)) if type(a) in _CONTAINERS else (a,):
            if not _is_static(leaf):
                yield i, leaf


def _function_name(fun):
    return getattr(fun, "__name__", type(fun).__name__)


def _complex_error(where, fname, what):
    return TypeError(
        f"tapegrad.{where}: {what} of {fname} is complex; the traced face computes gradients and "
        "compiled code in real arithmetic only, and would drop the imaginary part. Split complex "
        "values into real and imaginary parts (pass z.real and z.imag as two float arguments and "
        "compute with them), or call the function without tapegrad")


# ---------------------------------------------------------------------------------------------
# grad and value_and_grad
# ---------------------------------------------------------------------------------------------

def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _argnum_positions(where, argnums, positions, nargs, fname):
    """argnums normalised against the positional arguments of this call (negative ones count
    from the end, as in Python indexing)."""
    out = []
    for i in positions:
        if not -nargs <= i < nargs:
            raise TypeError(
                f"tapegrad.{where}: differentiating with respect to argnums={argnums!r} needs at "
                f"least {i + 1 if i >= 0 else -i} positional arguments, but {fname} was called "
                f"with {nargs}; pass the argument positionally or change argnums")
        out.append(int(i) % nargs)
    return out


def _leaf_names(tree, prefix):
    """'argument 0["w"][1]' for each leaf of a pytree, in tree_flatten's order."""
    if isinstance(tree, (tuple, list)):
        return [n for k, child in enumerate(tree) for n in _leaf_names(child, f"{prefix}[{k}]")]
    if isinstance(tree, dict):
        return [n for k in tree for n in _leaf_names(tree[k], f"{prefix}[{k!r}]")]
    return [] if tree is None else [prefix]


def _wrt_leaf(where, ctx, leaf, name, argnums, fname):
    """A fresh slot for one differentiated leaf (so that closures over the same value stay
    constants), after checking that it is a floating-point value."""
    if _is_static(leaf):
        kind = type(leaf).__name__
        kind = f"Python {kind}" if type(leaf).__module__ == "builtins" else f"NumPy {kind} scalar"
        raise TypeError(
            f"tapegrad.{where} requires floating-point inputs, but {name} of {fname} "
            f"(argnums={argnums!r}) is a {kind} ({leaf!r}), which tapegrad treats as "
            f"static; pass a float instead, e.g. float({leaf!r}) or an np.float64 array")
    dtype = np.dtype(_value(leaf).dtype) if hasattr(_value(leaf), "dtype") else np.asarray(
        _value(leaf)).dtype
    if dtype.kind == "c":
        raise _complex_error(where, fname, f"{name} (argnums={argnums!r}, {dtype})")
    if dtype.kind != "f":
        raise TypeError(
            f"tapegrad.{where} requires floating-point inputs, but {name} of {fname} "
            f"(argnums={argnums!r}) has dtype {dtype}; convert it, e.g. x.astype(np.float64), "
            "or leave it out of argnums")
    return ctx.record(P.reshape, (leaf,), {"shape": tuple(np.shape(_value(leaf)))})


def value_and_grad(fun, argnums=0, has_aux=False, *, _where="value_and_grad"):
    """A function returning fun's value and its gradient, from one trace.

    Args:
        fun: a function of NumPy arrays, Python floats or Tensors returning a scalar (with
            has_aux, a pair (scalar, aux)).
        argnums: the positional argument to differentiate (an int; negative counts from the
            end), or a tuple of them; an argument named twice gets its gradient twice.
        has_aux: fun returns (value, aux); aux comes back as computed, not differentiated.

    Returns:
        A function taking fun's arguments and returning (value, grad), or ((value, aux), grad)
        with has_aux; grad is a tuple (one entry per argnums entry) when argnums is a tuple. A
        differentiated argument may be a pytree (dict, list, tuple of arrays): its gradient has
        the same structure. Differentiated arguments must be floating-point arrays or Python
        floats; integer, complex and out-of-range ones raise TypeError naming the argument.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.value_and_grad(lambda p: np.sum(p["w"] ** 2))({"w": np.array([1.0, 2.0])})
        (array(5.), {'w': array([2., 4.])})
    """
    single = _is_int(argnums)
    positions = (argnums,) if single else tuple(argnums) if isinstance(
        argnums, (tuple, list)) else None
    if positions is None or not all(_is_int(i) for i in positions):
        raise TypeError(f"tapegrad.{_where}: argnums must be an int or a tuple of ints, got "
                        f"{argnums!r}")
    fname = _function_name(fun)

    def body(ctx, args):
        args = list(args)
        wanted = _argnum_positions(_where, argnums, positions, len(args), fname)
        trees = {}                  # position -> (structure, wrt slots), each argument once
        for i in dict.fromkeys(wanted):
            leaves, structure = tree_flatten(args[i], _any_leaf)
            names = _leaf_names(args[i], f"argument {i}")
            aliases = [_wrt_leaf(_where, ctx, leaf, name, argnums, fname)
                       for leaf, name in zip(leaves, names)]
            args[i] = tree_unflatten(structure, aliases)
            trees[i] = structure, [a._slot for a in aliases]   # slots now: writes move handles
        wrt = [s for _, slots in trees.values() for s in slots]
        start, first_slot = len(ctx.tape.instrs), len(ctx.tape.dtypes)
        out = lift_tree(fun(*args))             # np.array([t0, t1]) is an object array
        value, aux = out if has_aux else (out, None)
        if any(dt.kind == "c" for dt in set(ctx.tape.dtypes[first_slot:])):  # set(): C speed
            raise _complex_error(_where, fname, "a value computed inside (from a complex "
                                 "constant, captured scalar or result)")
        if (value.dtype if isinstance(value, Tracer) else np.asarray(value).dtype).kind == "b":
            raise TypeError(f"tapegrad.{_where}: {fname} returns a boolean, which has no "
                            "gradient; return the float quantity the comparison was made on")
        if isinstance(value, Tracer):
            grads = backward_on_tape(ctx, start, value, wrt)
        else:
            if np.size(value) != 1:
                raise TypeError("tapegrad: grad needs a function with one scalar output")
            grads = [np.zeros(ctx.tape.shapes[s], ctx.tape.dtypes[s]) for s in wrt]
        grads = iter(grads)
        per_arg = {i: tree_unflatten(structure, [next(grads) for _ in slots])
                   for i, (structure, slots) in trees.items()}
        grads = per_arg[wanted[0]] if single else tuple(per_arg[i] for i in wanted)
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
    """A function returning the gradient of fun with respect to the arguments argnums.

    Args:
        fun: a function of NumPy arrays, Python floats or Tensors returning a scalar (with
            has_aux, a pair (scalar, aux)).
        argnums: the positional argument to differentiate (an int; negative counts from the
            end), or a tuple of them; an argument named twice gets its gradient twice.
        has_aux: fun returns (value, aux); the result is then (grad, aux).

    Returns:
        A function taking fun's arguments and returning the gradient as NumPy arrays shaped
        like the differentiated arguments (a tuple when argnums is a tuple). See value_and_grad
        for pytrees and errors.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.grad(lambda x: np.sum(x ** 2))(np.array([1.0, 2.0]))
        array([2., 4.])
        >>> tg.grad(lambda x, w: np.sum(x * w), argnums=(1, 0, 1))(np.ones(2), np.array([3.0, 4.0]))
        (array([1., 1.]), array([3., 4.]), array([1., 1.]))
    """
    vg = value_and_grad(fun, argnums, has_aux, _where="grad")

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
    """Row `row` of a mapped argument (each leaf of a pytree along its own axis: a negative
    axis counts from each leaf's end)."""
    if type(value) not in _CONTAINERS:
        axis %= max(np.ndim(_value(value)), 1)
    if isinstance(value, Tracer):
        return P.getitem(value, index=(slice(None),) * axis + (row,))
    if type(value) in _CONTAINERS:
        leaves, structure = tree_flatten(value, _any_leaf)
        return tree_unflatten(structure, [_take(leaf, row, axis) for leaf in leaves])
    return np.take(_as_array(value), row, axis=axis)


def _fresh(value):
    """value with its arrays copied: an unmapped argument as one row sees it (a row's element
    writes reach neither the caller's array nor the next row), or results the caller owns."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if type(value) in _CONTAINERS:
        leaves, structure = tree_flatten(value, _any_leaf)
        return tree_unflatten(structure, [_fresh(leaf) for leaf in leaves])
    return value


def _mapped_shapes(value):
    """Shapes of an argument's leaves (one for an array, several for a pytree)."""
    if type(value) in _CONTAINERS:
        return [np.shape(_value(leaf)) for leaf in _leaves((value,))]
    return [np.shape(_value(value))]


def _zero_row(value, axis):
    """A row of an argument whose mapped axis is empty: zeros of the row's shape and dtype."""
    if type(value) in _CONTAINERS:
        leaves, structure = tree_flatten(value, _any_leaf)
        return tree_unflatten(structure, [_zero_row(leaf, axis) for leaf in leaves])
    array = _value(value)
    shape = np.shape(array)
    axis %= len(shape)
    return np.zeros(shape[:axis] + shape[axis + 1:], np.dtype(array.dtype))


class Vmapped:
    """fun mapped over one axis of its arguments; jit runs the rows of its tape in parallel."""

    def __init__(self, fun, in_axes=0):
        self.fun = fun
        self.in_axes = in_axes
        functools.update_wrapper(self, fun, updated=())

    def axes_for(self, args):
        """The mapped axis of each argument (None: not mapped), normalised, and the batch size.
        Errors name the argument, the axis and its shape (JAX's checks)."""
        axes = self.in_axes
        if not isinstance(axes, (tuple, list)):
            axes = (axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"tapegrad.vmap: in_axes has {len(axes)} entries for {len(args)} "
                             "arguments")
        normalised, sizes = [], {}
        for i, (arg, axis) in enumerate(zip(args, axes)):
            if axis is None or isinstance(arg, (str, bytes, type(None))):
                normalised.append(None)
                continue
            if not _is_int(axis):
                raise TypeError(f"tapegrad.vmap: in_axes entries must be ints or None, got "
                                f"{axis!r} for argument {i}")
            for shape in _mapped_shapes(arg):
                if not shape:
                    raise ValueError(
                        f"tapegrad.vmap: argument {i} is 0-d (a scalar), so it has no axis "
                        f"{axis} to map; use in_axes=None for it, or give it a batch axis")
                if not -len(shape) <= axis < len(shape):
                    need = axis + 1 if axis >= 0 else -axis
                    raise ValueError(
                        f"tapegrad.vmap: in_axes={axis} for argument {i} maps its axis {axis}, "
                        f"so it must have at least {need} dimensions, but it has {len(shape)} "
                        f"(shape {shape}); use in_axes=None for an argument that is not mapped")
                sizes.setdefault(shape[axis % len(shape)], i)
            # a pytree keeps its axis as given: leaves of different ranks normalise it each
            normalised.append(int(axis) if type(arg) in _CONTAINERS else
                              int(axis) % len(_mapped_shapes(arg)[0]))
        if not sizes:
            raise ValueError("tapegrad.vmap: in_axes maps no argument (all None); map at least "
                             "one argument over its batch axis")
        if len(sizes) != 1:
            detail = ", ".join(f"argument {i} has {n}" for n, i in sizes.items())
            raise ValueError(f"tapegrad.vmap: the mapped axes must have one size ({detail})")
        return tuple(normalised), next(iter(sizes))

    def __call__(self, *args):
        axes, n = self.axes_for(args)
        if n == 0:
            return self.empty(args, axes)
        rows = [lift_tree(self.fun(*[_fresh(a) if ax is None else _take(a, r, ax)
                                     for a, ax in zip(args, axes)])) for r in range(n)]
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

    def empty(self, args, axes):
        """An empty batch gives empty results of the right shapes and dtypes (as JAX does): fun
        runs once on a row of zeros to learn them."""
        row = [_fresh(a) if ax is None else _zero_row(a, ax) for a, ax in zip(args, axes)]
        with np.errstate(all="ignore"):
            out = self.fun(*row)
        leaves, structure = tree_flatten(out, lambda x: isinstance(x, Tracer))
        return tree_unflatten(structure, [np.empty((0,) + np.shape(_value(x)), _value(x).dtype)
                                          for x in leaves])


def vmap(fun, in_axes=0):
    """fun mapped over a batch axis of its arguments, row by row (in parallel under jit).

    Args:
        fun: the function of one row.
        in_axes: the axis of each argument to map: an int (negative counts from the end) for
            all arguments, or a tuple with an int or None (not mapped) per argument. A pytree
            argument is mapped along that axis of each of its leaves.

    Returns:
        A function taking batched arguments and returning fun's results stacked along a new
        leading axis. An empty batch gives empty results of the right shapes; an axis an
        argument does not have, a 0-d mapped argument, or mapped axes of different sizes raise
        ValueError naming the argument.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.vmap(lambda row: np.sum(row ** 2))(np.arange(6.0).reshape(3, 2))
        array([ 1., 13., 41.])
        >>> tg.vmap(lambda row: row * 2.0)(np.zeros((0, 4))).shape
        (0, 4)
    """
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


_PRIM_OF = attrgetter("prim")


def trace_to_tape(fun, args):
    """Trace fun(*args): returns (tape, traced result as plain values). Static args are baked in."""
    with TraceContext() as ctx:
        try:
            out = lift_tree(fun(*[_trace_arg(ctx, a) for a in args]))
        except BaseException:
            ctx.tracers.clear()
            raise
    leaves, structure = tree_flatten(out, lambda x: isinstance(x, Tracer))
    tape = ctx.tape
    # the distinct primitives first (map and set run in C): this scans every instruction
    if any(hasattr(prim, "lower") for prim in set(map(_PRIM_OF, tape.instrs))):
        # instructions that exist only while tracing (custom rules, checkpoint) become registry
        # primitives: the derivatives they stand for are recorded by now
        tape.instrs[:] = [ins.prim.lower(ins, tape) if hasattr(ins.prim, "lower") else ins
                          for ins in tape.instrs]
    tape.outputs = [x._slot if isinstance(x, Tracer) and x._ctx is ctx else tape.add_const(x)
                    for x in leaves]
    tape.out_tree = structure
    values = [x._value if isinstance(x, Tracer) else x for x in leaves]
    # tracers refer to their context and the context to its tracers: break the cycle, so that they
    # are freed by reference counting instead of waiting for (and slowing) the cyclic collector
    ctx.tracers.clear()
    return tape, tree_unflatten(structure, values)


def make_tape(fun, optimized=True):
    """A function returning the tape fun records at the given arguments (print it to read it).

    Args:
        fun: the function to trace.
        optimized: run the tape optimisations (dead code, constant folding, common
            subexpressions) as jit does; False gives the tape as recorded.

    Returns:
        A function taking fun's arguments and returning its Tape.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tape = tg.make_tape(lambda x: np.sum(np.sin(x) * 2.0))(np.ones(3))
        >>> [instr.prim.name for instr in tape.instrs]
        ['sin', 'mul', 'sum']
    """
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
MAX_RECENT = 3          # earlier signatures' fast calls a miss tries before building a key


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
    """A function compiled per input signature; each signature keeps a tape per guard path.

    The signature is the arguments' shapes and dtypes, the values of static arguments (Python
    ints, bools, strings, None), the structure of pytree arguments, and the values of the Python
    scalars the function reads from globals and closures (see tapegrad.captures)."""

    def __init__(self, fun, device="cpu"):
        self.fun = fun
        self.device = device
        self.batched = isinstance(fun, Vmapped)
        self._signatures = OrderedDict()     # signature -> list of compiled programs
        self._captures = None                # what fun reads from globals/closures (first trace)
        self._capture_key = None             # its key reader, None when it reads nothing
        self._lock = threading.RLock()
        self._trace_lock = threading.RLock()
        self._backend_module = None
        self.traces = 0                      # how many times fun was traced (for tests and users)
        self._retrace_streak = 0
        self._warned = False
        self._fast = None                    # the last signature's call, checked cheaply
        self._fast_calls = {}                # program -> its fast call (None: has none)
        self._recent = []                    # earlier signatures' fast calls, latest first
        functools.update_wrapper(self, fun, updated=())

    def __reduce__(self):
        # pickled as the function and device (cloudpickle, as Dask ships it): the receiving
        # process traces again and loads compiled code from its own disk cache, never ours
        return Jitted, (self.fun, self.device)     # not the per-instance class (_set_fast)

    # ---- signature
    def _split(self, args):
        """(signature, traced input arrays, call template)."""
        key, inputs = [], []
        for a in args:
            if type(a) is np.ndarray and self.device == "cpu":
                if a.flags.c_contiguous:
                    key.append((a.shape, a.dtype.str))     # the common case, checked cheaply
                else:       # the trace's view-or-copy choices depend on the layout
                    key.append((a.shape, a.dtype.str, layout_key(a)))
                inputs.append(a)
            elif _is_static(a):
                key.append(("static", type(a), a))     # 1 and True are equal but trace apart
            elif type(a) in _CONTAINERS:
                leaves, structure = tree_flatten(a, _any_leaf)
                leaf_key, leaf_inputs = self._split(leaves)
                key.append((structure, leaf_key))
                inputs.extend(leaf_inputs)
            else:
                array = self._device_array(a)
                if isinstance(array, np.ndarray) and not array.flags.c_contiguous:
                    key.append((array.shape, array.dtype.str, layout_key(array)))
                else:
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
        row_args = [a if ax is None else _take(a, row, ax) for a, ax in zip(args, axes)]
        return self.fun.fun, row_args

    def _paths(self, base):
        """The programs kept for these arguments (base: their _split key) and captured values."""
        read = self._capture_key
        signature = base if read is None else (base, read())
        with self._lock:
            return list(self._signatures.get(signature, ()))

    def _new_program(self, fun, args, signature):
        """Trace and compile fun(*args) and keep it under the arguments' signature (as _split
        gives it) and the captured scalars' values read now."""
        module = self._module()
        captures = captured(self.fun)
        captured_key = captures.key()
        with gc_paused():
            tape, traced = trace_to_tape(fun, args)
            tape = optimize(tape)
            self._refuse_complex(tape, args)
            program = module.compile(tape)
            del tape
        with self._lock:
            if self._captures is None or captures.identity != self._captures.identity:
                # keys made with another set of captured locations never match again
                if self._captures is not None:
                    self._signatures.clear()
                    self._set_fast(None)
                    self._fast_calls = {}
                    self._recent = []
                self._captures = captures
                self._capture_key = captures.key if captures else None
            if captures:
                signature = (signature, captured_key)
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

    def _refuse_complex(self, tape, args):
        """The compiled backends hold every slot in real arrays: refuse complex rather than
        drop imaginary parts."""
        complex_inputs = [n for n, s in enumerate(tape.inputs) if tape.dtypes[s].kind == "c"]
        if complex_inputs:
            names = [f"argument {i}" for i, _ in _input_leaves(args)]
            what = names[complex_inputs[0]] if len(names) == len(tape.inputs) else "an argument"
            raise _complex_error("jit", _function_name(self.fun), what)
        if any(dtype.kind == "c" for dtype in set(tape.dtypes)):
            raise _complex_error("jit", _function_name(self.fun), "a value computed inside "
                                 "(from a complex constant, captured scalar or result)")

    def _warn(self, reason):
        if not self._warned:
            self._warned = True
            # point at the user's call: skip the frames of tapegrad (and tapegrad_jit)
            frame, level = sys._getframe(1), 2
            while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
                frame, level = frame.f_back, level + 1
            warnings.warn(f"tapegrad.jit: {getattr(self.fun, '__name__', 'function')} is retraced "
                          f"on most calls ({reason}); each retrace costs a trace and compile. Pass "
                          "varying numbers as arrays, not as Python ints or as scalars the "
                          "function reads from globals or closures, and avoid branches whose "
                          "outcome changes on every call.", RuntimeWarning, stacklevel=level)

    def _note_retrace(self, retraced):
        self._retrace_streak = self._retrace_streak + 1 if retraced else 0
        if self._retrace_streak >= 2 * MAX_PATHS:
            self._warn("its guards fail on every call")

    # ---- calling
    def __call__(self, *args):
        fast = self._fast
        if fast is not None and not _state.stack:
            result = fast(args)
            if result is not None:
                if self._retrace_streak:
                    self._retrace_streak = 0
                return result
        return self._call_slow(args)

    def _call_slow(self, args):
        """A call the last signature's fast path did not serve."""
        if not _state.stack:
            # signatures used in turn: their written checks (which no Tracer passes) first
            for fast in self._recent:
                result = fast(args)
                if result is not None:
                    self._retrace_streak = 0
                    self._set_fast(fast)
                    return result
        if current() is not None or any(isinstance(a, Tracer) for a in args):
            return self.fun(*args)           # inside another trace: inline
        if self.batched:
            return self._call_batched(args)
        base, inputs = self._split(args)
        read = self._capture_key            # the captured scalars' values join the signature
        with self._lock:
            paths = list(self._signatures.get(base if read is None else (base, read()), ()))
        for program in paths:
            ok, result = program(inputs)
            if ok:
                self._note_retrace(False)
                self._fast_path(args, program)
                return result
        with self._trace_lock:
            # threads that missed together trace once: the first traces, the others find its tape
            for program in self._paths(base):
                ok, result = program(inputs)
                if ok:
                    self._note_retrace(False)
                    return result
            self._note_retrace(True)
            program, traced = self._new_program(self.fun, args, base)
        if any(_is_gpu_array(a) for a in inputs):
            ok, result = program(inputs)    # results stay on the GPU, as on later calls
            if ok:
                return result
        # the next call takes the slow path, which resets the retrace streak when a kept tape
        # serves it (the generated fast path does not look at the streak) and makes it fast
        self._set_fast(None)
        # the trace computed with the caller's values: a result may be an argument, a captured
        # constant or a view of one; later calls hand out arrays of their own, so does this one
        return _fresh(traced)

    def _fast_path(self, args, program):
        """Make program, which just ran for args, the one the next call tries first."""
        fast = self._fast_calls.get(program, False)
        if fast is False:
            fast = _fast_call(args, program, self._captures if self._capture_key else None) \
                if self.device == "cpu" else None
            if len(self._fast_calls) >= MAX_SIGNATURES * MAX_PATHS:
                self._fast_calls = {}       # programs dropped from the signatures go too
            self._fast_calls[program] = fast
        self._set_fast(fast)

    def _set_fast(self, fast):
        """Make fast (or None) the last signature's call. Its method form becomes this instance's
        __call__ (Python looks __call__ up on the type: each instance gets its own subclass), so
        that a call enters one Python frame. The one it replaces is tried first on a miss."""
        old = self._fast
        recent = [f for f in self._recent if f is not old and f is not fast]
        if old is not None and old is not fast:
            recent.insert(0, old)
        self._recent = recent[:MAX_RECENT]
        self._fast = fast
        cls = type(self)
        if cls is Jitted:
            if fast is None:
                return
            cls = self.__class__ = type("Jitted", (Jitted,), {
                "__slots__": (), "__module__": __name__, "__qualname__": "Jitted",
                "__doc__": Jitted.__doc__, "_own_class": True})
        cls.__call__ = Jitted.__call__ if fast is None else fast.method

    def __del__(self):
        # a class is a reference cycle (its __mro__ holds it): this instance's own class would
        # keep the fast call, and through it the compiled programs, until a collection
        cls = type(self)
        if cls.__dict__.get("_own_class"):
            del cls.__call__

    def _call_batched(self, args):
        axes, n = self.fun.axes_for(args)
        if n == 0:
            return self.fun.empty(args, axes)
        base, inputs = self._split(args)
        input_axes = [None if axes[i] is None else axes[i] % np.ndim(_value(leaf))
                      for i, leaf in _input_leaves(args)]
        paths = self._paths(base)
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
                program, _ = self._new_program(fun, row_args, base)
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


def _fast_call(args, program, captures):
    """A function of the argument tuple that runs `program` when the arguments give the
    signature `args` gave (shapes, dtypes and layouts of NumPy arrays, Python and NumPy float
    scalars, static values, the structure of tuple/list/dict arguments) and the captured
    scalars (`captures`, or None) their current values, else returns None; None when an
    argument is of a kind it does not check (Tensors, GPU arrays, object arrays). Written out
    for the signature, so that a call builds no key: the per-call path of a jitted function.
    Captured ints, bools, strings and ordinary floats are compared where they are read; any
    other captured value through the captures' whole key."""
    call = getattr(program, "call_arrays", None)
    if call is None:
        return None
    names = dict(call=call, ndarray=np.ndarray)
    tests, inputs = [], []
    for k, a in enumerate(args):
        if not _signature_tests(a, f"a{k}", f"a{k}", names, tests, inputs) or \
                len(tests) > _MAX_TESTS:
            return None
    if len(inputs) != len(getattr(program, "inputs", inputs)):
        return None
    if captures is not None:
        key = captures.key()
        names.update(read=captures.key, key=key)
        for n, ((kind, root, name, chain), entry) in enumerate(zip(captures.reads, key)):
            if type(entry) is tuple and len(entry) == 2 and type(entry[0]) is type and (
                    entry[0] in _PLAIN_SCALARS or entry[0] is float and entry[1] == entry[1]
                    and entry[1] != 0):
                names[f"r{n}"], names[f"t{n}"], names[f"c{n}"] = root, entry[0], entry[1]
                tests.append(f"type(w{n} := {location(n, kind, name, chain)}) is t{n} "
                             f"and w{n} == c{n}")
            else:
                tests = [t for t in tests if not t.startswith("type(w")] + ["read() == key"]
                break
    params = [f"a{k}" for k in range(len(args))]
    listed = "".join(f"{a}, " for a in params)
    # the program's own call written into this function when it offers its source: one Python
    # frame from the check to the sweep
    source = getattr(program, "call_source", None)
    body = [f"result = call(({''.join(f'{x}, ' for x in inputs)}))", "if result is None:",
            "    return None", "return result"]
    written = None if source is None else source(inputs)
    if written is not None:
        extra, body = written
        names.update(extra)
    names.update(state=_state, slow=Jitted._call_slow, given=_given, miss=_MISSING)
    check = " and ".join(tests) or "True"
    exec("def fast(args):\n    try:\n"                 # returns None on a miss
         + f"        {listed or '()'} = args\n"           # another count of arguments: ValueError
         + f"        hit = {check}\n    except Exception:\n        return None\n"  # name deleted
         + "    if not hit:\n        return None\n" + "".join(f"    {line}\n" for line in body),
         names)
    # Jitted's __call__ form (see _set_fast): the arguments are positional-only parameters (no
    # tuple to unpack); a miss goes on to the slow path with the arguments as given
    miss = f"return slow(self, given(({listed}), rest))"
    exec(f"def __call__(self, {''.join(f'{a}=miss, ' for a in params)}/, *rest):\n"
         + f"    if not state.stack:\n        try:\n            hit = {check} and not rest\n"
         + "        except Exception:\n            hit = False\n        if hit:\n"
         + "".join(f"            {line.replace('return None', miss)}\n" for line in body)
         + f"    {miss}\n", names)
    # taken out of their globals: functions and namespace are then no reference cycle
    fast = names.pop("fast")
    fast.method = names.pop("__call__")
    return fast


_MISSING = object()         # a parameter of a fast __call__ the caller did not pass
# pytrees with more entries keep the slow path: writing their check out costs more than it saves
# (900 floats in a list: ~0.05 s once, 10,000: ~0.7 s, when the slow path takes ~0.03 s a call)
_MAX_TESTS = 1000


def _given(head, rest):
    """The arguments a fast __call__ was called with: its parameters up to the first one not
    passed, then the rest."""
    return tuple(a for a in head if a is not _MISSING) + rest


_PLAIN_SCALARS = (int, bool, str, bytes, type(None))


def _signature_tests(value, first, name, names, tests, inputs):
    """Append to tests the conditions under which an argument (or a leaf of one) gives the
    signature entry Jitted._split gives value, and to inputs the expression of each tape input it
    holds; False for a value the fast path does not check. `first` is the expression's first use
    (a leaf of a container binds its local `name` there, so that it is read once)."""
    kind, n = type(value), len(names)      # names x..: apart from the captures' r, t, c, w
    if kind is np.ndarray:
        if value.dtype.kind == "O":
            return False
        names[f"xs{n}"], names[f"xd{n}"] = value.shape, value.dtype
        if not value.flags.c_contiguous:
            # the layout is part of the signature: equal shapes, dtypes and strides are one
            names[f"xb{n}"] = value.strides
            layout = f" and {name}.strides == xb{n}"
        else:       # an array of at most one element is C-contiguous whatever its strides
            layout = f" and {name}.flags.c_contiguous" if value.size > 1 else ""
        tests.append(f"type({first}) is ndarray and {name}.shape == xs{n} and "
                     f"{name}.dtype is xd{n}{layout}")
        inputs.append(name)
    elif kind is float or kind in _SCALAR_INPUTS:
        names[f"xt{n}"] = kind                  # a NumPy scalar's type fixes its dtype
        tests.append(f"type({first}) is xt{n}")
        inputs.append(name)
    elif _is_static(value):
        names[f"xc{n}"] = value
        if value is None or kind is bool or isinstance(value, (enum.Enum, type)):
            tests.append(f"{first} is xc{n}")
        elif kind in _PLAIN_SCALARS or isinstance(value, np.integer):
            names[f"xt{n}"] = kind              # 1 and True are equal but trace apart
            tests.append(f"type({first}) is xt{n} and {name} == xc{n}")
        else:
            return False
    elif kind is tuple or kind is list:
        tests.append(f"type({first}) is {kind.__name__} and len({name}) == {len(value)}")
        for i, child in enumerate(value):
            if not _leaf_tests(child, f"{name}[{i}]", names, tests, inputs):
                return False
    elif kind is dict:
        names[f"xk{n}"] = keys = tuple(value)
        tests.append(f"type({first}) is dict and tuple({name}) == xk{n}")
        for i, key in enumerate(keys):
            if not _leaf_tests(value[key], f"{name}[xk{n}[{i}]]", names, tests, inputs):
                return False
    else:
        return False
    return True


def _leaf_tests(value, expr, names, tests, inputs):
    """_signature_tests for a container's entry `expr`, read once into a local. Entries are
    what tree_flatten makes of them: None is structure, not a leaf."""
    local = f"xl{len(names)}"
    names[local] = None                     # reserves the number
    if value is None:
        tests.append(f"({local} := {expr}) is None")
        return True
    return _signature_tests(value, f"({local} := {expr})", local, names, tests, inputs)


# NumPy scalars that become tape inputs (0-d, their type's dtype); NumPy integers are static
_SCALAR_INPUTS = frozenset(np.dtype(code).type for code in "?efdg")


def jit(fun=None, *, device="cpu"):
    """Compile fun with Numba: `jit(f)`, `@jit`, `@jit(device="cuda")`.

    Args:
        fun: the function to compile (also grad, value_and_grad or vmap of one); None gives a
            decorator.
        device: "cpu" (Numba) or "cuda" (numba.cuda; NUMBA_ENABLE_CUDASIM=1 for the simulator).

    Returns:
        A callable with fun's arguments and results (NumPy values; device arrays stay on the
        GPU), and `.tape(*args)` giving the optimised tape it runs.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> k = 2.0
        >>> def scaled(x):
        ...     return x * k
        >>> f = tg.jit(scaled)
        >>> f(np.ones(2))
        array([2., 2.])
        >>> k = 3.0                 # a captured scalar selects the tape: traced again
        >>> f(np.ones(2))
        array([3., 3.])

    What a compiled tape holds constant, exactly: a tape is traced for, and only reused with,
    the same argument shapes and dtypes, the same static arguments (Python ints, bools, strings,
    None, enum members; 1 and True apart), the same structure of dict/list/tuple arguments,
    passing guards, and the same values of the Python scalars (bool, int, float, complex, str,
    bytes, None, NumPy scalars, enum members, tuples of these) the function reads from module globals and closures: by name,
    through attribute and constant-subscript chains (`cfg.k`, `params["k"]`), inside lambdas,
    generator expressions and nested functions, and in the user functions, closures of closures,
    `functools.partial`s, bound methods (`self.k`) and callable objects it reaches that way. A
    change to any of these traces again, so a call never runs a stale tape.

    Arrays read from globals or closures are constants of the tape, as in Numba and JAX: an
    in-place change, or binding the name to another array, is not seen (binding it to a scalar
    is). Pass arrays that change as arguments. Not covered: values reached through calls, loops or
    computed names (`cfg.get("k")`, `getattr(cfg, name)`), and functions of the standard library,
    NumPy and installed packages. Complex values raise TypeError (the compiled sweeps are real).
    """
    if fun is None:
        return lambda f: Jitted(f, device)
    return Jitted(fun, device)
