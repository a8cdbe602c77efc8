"""torch.compile on the CPU with the traced face: the function (or a module's forward) is traced
onto a tape and compiled by tapegrad.jit, which checks the trace's guards on every call and traces
again for a new path, input shape or dtype.

Gradients: when an input (or, for a module, a parameter) requires grad, the compiled call is one
autograd node. A scalar result computes its value and gradient in one compiled sweep. Any other
result (a module's logits, the loss computed outside) runs the forward once: one tape records
the result and its vector-Jacobian product at a cotangent input, and is cut in two where the
cotangent is first read. The forward part returns the result and the values the backward part
reads (residuals); the backward part takes them and the cotangent.
A module's parameters and buffers are inputs of the tape, never constants, so an optimiser's
updates are seen by the next call and `loss.backward(); opt.step()` works as in eager code.

What cannot be traced (a construct the tracer refuses, random numbers drawn inside, a buffer
written in place such as BatchNorm's running statistics in training) runs eagerly, with one
warning per compiled object.
"""
import collections
import functools
import math
import os
import sys
import time
import types
import warnings

import numpy as np

from . import primitives as _primitives
from . import transforms as _transforms
from .autograd.function import Function
from .autograd.graph import _INT_OF_WIDTH as _MASK_WIDTHS, masked
from .autograd.grad_mode import is_grad_enabled
from .func import _rng_state, functional_call, _swapped
from .nn.modules.module import Module
from .tape import _renumber_guards, eliminate_dead_code, optimize, tree_flatten, tree_unflatten
from .tensor import Tensor

__all__ = ["compile", "OptimizedModule"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class _Untraceable(Exception):
    pass


def _no_random(fun):
    """fun, refusing to be traced when it draws random numbers: the draws would be constants of
    the tape, the same on every call (dropout masks that never change)."""
    @functools.wraps(fun)
    def traced(*args):
        before = _rng_state()
        out = fun(*args)
        if _rng_state() != before:
            raise _Untraceable("it draws random numbers, which a compiled tape would replay as "
                               "constants")
        return out
    return traced


def _needs_grad(values):
    return is_grad_enabled() and any(isinstance(v, Tensor) and v.requires_grad for v in values)


def _any(value):
    return True


@functools.lru_cache(maxsize=256)
def _flat_structure(n):
    """tree_flatten's structure of a list of n Tensors (each a leaf)."""
    return tree_flatten([0] * n, _any)[1]


def _of_leaves(fun, structure):
    return lambda *leaves: fun(*tree_unflatten(structure, leaves))


def _tensors(tree):
    leaves, structure = tree_flatten(tree, _any)
    return tree_unflatten(structure, [Tensor._wrap(np.asarray(x)) if isinstance(
        x, (np.ndarray, np.generic)) else x for x in leaves])


def _cut(tape, n_out):
    """A tape of (*values, cotangent) -> ((value, out...), grads) cut where the cotangent is first
    read: (forward tape: values -> (out..., residuals...), backward tape: (residuals...,
    cotangent) -> grads), or None when a guard or a result needs the cotangent."""
    cotangent = tape.inputs[-1]
    late = {cotangent}
    early, later = [], []
    for ins in tape.instrs:
        if late.intersection(ins.ins):
            late.add(ins.out)
            later.append(ins)
        else:
            early.append(ins)
    outs, grads = tape.outputs[1:1 + n_out], tape.outputs[1 + n_out:]
    if late.intersection(outs) or any(g.slot in late for g in tape.guards):
        return None
    reads = [s for ins in later for s in ins.ins] + grads
    residuals = list(dict.fromkeys(s for s in reads if s not in late and s not in tape.consts))
    forward = _renumber_guards(tape, early)
    forward.inputs, forward.outputs = tape.inputs[:-1], outs + residuals
    forward.out_tree = (tuple, ("*",) * len(forward.outputs))
    backward = tape.rebuilt(later, [])
    backward.inputs, backward.outputs = residuals + [cotangent], grads
    backward.out_tree = (tuple, ("*",) * len(grads))
    return eliminate_dead_code(forward), eliminate_dead_code(backward)


class _Split:
    """The compiled forward and backward parts of one guard path (see _cut)."""

    def __init__(self, fun, positions, values, example_out):
        def pulled(*args):
            *inputs, cotangent = args
            out = fun(*inputs)
            return (out * cotangent).sum(), out
        traced = _transforms.value_and_grad(pulled, positions, has_aux=True)
        cotangent = np.zeros(np.shape(example_out), np.asarray(example_out).dtype)
        with _transforms.gc_paused():
            tape, _ = _transforms.trace_to_tape(traced, list(values) + [cotangent])
            parts = _cut(optimize(tape), 1)
            if parts is None:
                raise _NoSplit()
            backend = _transforms._backend("cpu")
            forward, backward = (backend.compile(part) for part in parts)
        arrays = _arrays(values)
        self.forward = _faster_part(forward, parts[0], arrays)
        _, results = self.forward(arrays)
        self.backward = _faster_part(backward, parts[1], list(results[1:]) + [cotangent])


class _NoSplit(Exception):
    pass


def _is_plus_zero(value):
    array = np.asarray(value)
    return array.shape == () and array == 0 and not np.signbit(array)


class _NumPyProgram:
    """A cut tape's part on NumPy: the reference interpreter's values (the registry's NumPy
    forwards, guards checked where the tape checks them), with the per-instruction work done
    once here instead of on every call, and two patterns of backward sweeps run in fewer passes:
    a masked cotangent (where(c, 0, g), ReLU's rule) as a bit mask, and a matmul read only
    transposed (a weight's gradient, x.T @ g transposed) as the transposed product, so that the
    gradient comes out in the weight's own layout (a transposed gradient costs a strided copy
    when it is written to .grad)."""

    def __init__(self, tape):
        self.tape = tape
        uses = tape.use_counts()
        producer = {ins.out: ins for ins in tape.instrs}
        shapes, dtypes, consts = tape.shapes, tape.dtypes, tape.consts
        skipped = set()
        for ins in tape.instrs:     # matmuls whose only reader is a 2-D transpose
            src = producer.get(ins.ins[0])
            if (ins.prim.name == "transpose" and ins.params["axes"] == (1, 0) and src is not
                    None and src.prim.name == "matmul" and uses[src.out] == 1 and
                    all(len(shapes[s]) == 2 for s in src.ins)):
                skipped.add(src.out)
        steps = []
        guards = sorted(tape.guards, key=lambda g: g.position)
        at = 0
        for k, ins in enumerate(tape.instrs + [None]):
            while at < len(guards) and guards[at].position <= k:
                steps.append((None, guards[at].slot, guards[at].expected, guards[at]))
                at += 1
            if ins is None:
                break
            if ins.out in skipped:
                continue
            fn, args, params = ins.prim.impl, ins.ins, ins.params
            name = ins.prim.name
            if name in ("reshape", "transpose") and args[0] not in consts and \
                    len(params) == 1 and args[0] not in skipped:
                fn = _VIEW_IMPLS[name]
            if name == "sum" and fn is _primitives._sum and set(params) == {"axis", "keepdims"} \
                    and dtypes[args[0]].kind == "f":
                fn = np.add.reduce      # np.sum's own reduction, without its dispatch (~1 us)
            elif name == "transpose" and args[0] in skipped:
                a, b = producer[args[0]].ins
                fn, args, params = _transposed_product, (a, b), {}
            elif name == "where" and dtypes[ins.out].kind == "f" and \
                    dtypes[ins.out].itemsize in _MASK_WIDTHS and dtypes[args[0]] == bool and \
                    all(shapes[s] == shapes[ins.out] for s in args if s not in consts):
                c, x, y = args
                if y in consts and x not in consts and _is_plus_zero(consts[y]) and \
                        dtypes[x] == dtypes[ins.out]:
                    fn, args, params = masked, (c, x), {"keep_where_true": True}
                elif x in consts and y not in consts and _is_plus_zero(consts[x]) and \
                        dtypes[y] == dtypes[ins.out]:
                    fn, args, params = masked, (c, y), {"keep_where_true": False}
            steps.append((fn, args, ins.out, params))
        self.steps = steps
        self.inputs = [(s, dtypes[s], shapes[s]) for s in tape.inputs]
        self.outputs = list(tape.outputs)
        self._run = self._generate(consts)

    def _generate(self, consts):
        """One Python function of the steps: a local per slot and a call per step (a loop over
        the steps spent ~1 us a step on indexing and argument lists)."""
        def name(slot):
            return f"c{slot}" if slot in consts else f"v{slot}"
        env = {"asarray": np.asarray, "_input": _input}
        env.update((name(s), v) for s, v in consts.items())
        lines = ["def run(inputs):"]
        for k, (slot, dtype, shape) in enumerate(self.inputs):
            env[f"d{slot}"], env[f"s{slot}"] = dtype, shape
            lines.append(f"    v{slot} = _input(inputs[{k}], d{slot}, s{slot})")
        for k, (fn, args, out, params) in enumerate(self.steps):
            if fn is None:              # a guard: (None, slot, expected, guard)
                lines.append(f"    if bool({name(args)}) != {out}: return False, None")
                continue
            if fn in _VIEWS:            # the ndarray's own method, its one parameter bound
                (env[f"p{k}"],) = params.values()
                lines.append(f"    v{out} = {name(args[0])}.{_VIEWS[fn]}(p{k})")
                continue
            env[f"f{k}"], env[f"p{k}"] = fn, params
            call = f"f{k}({', '.join(map(name, args))}{', **p%d' % k if params else ''})"
            lines.append(f"    v{out} = asarray({call})")
        lines.append(f"    return True, ({''.join(name(s) + ', ' for s in self.outputs)})")
        exec("\n".join(lines), env)       # noqa: S102  (our own generated source)
        return env["run"]

    def __call__(self, inputs):
        if len(inputs) != len(self.inputs):
            raise TypeError(f"tapegrad: this tape takes {len(self.inputs)} inputs, got "
                            f"{len(inputs)}")
        return self._run(inputs)


_VIEW_IMPLS = {"reshape": np.reshape, "transpose": np.transpose}    # markers: see _generate
_VIEWS = {np.reshape: "reshape", np.transpose: "transpose"}


def _input(arg, dtype, shape):
    """A tape input as the reference interpreter converts it (the array itself when it is)."""
    if type(arg) is np.ndarray and arg.dtype == dtype and arg.shape == shape:
        return arg
    return np.asarray(arg, dtype=dtype).reshape(shape)


def _transposed_product(a, b):
    """matmul(a, b).T as b.T @ a.T: C-contiguous where the product's transpose would not be."""
    return np.matmul(b.T, a.T)


def _arrays(values):
    """The tape inputs among a call's values (statics are baked into the tape)."""
    return [v.detach().numpy() if isinstance(v, Tensor) else v for v in values
            if not _transforms._is_static(v)]


def _faster_part(compiled, tape, inputs):
    """A cut tape's part: compiled, or its NumPy program where that may win and ran faster."""
    return _faster(compiled, _NumPyProgram(tape), inputs) if _numpy_may_win(tape) else compiled


def _faster(compiled, reference, inputs, rounds=3):
    """compiled, or the NumPy program of the same tape where that ran these inputs faster: the
    CPU interpreter computes a scalar at a time and loses to NumPy's whole-array calls on large
    arrays (a convolution's matmul and transposes: 24 ms against 0.5 ms for a 64-image batch),
    so a cut tape's parts are timed when they are made: the best of a few alternating calls
    each (other work on the machine makes single calls vary), a few more when they are close."""
    programs = (compiled, reference)
    best = [float("inf"), float("inf")]
    for program in programs:
        program(inputs)                      # the first call may compile
    for round_ in range(3 * rounds):
        if round_ == rounds and (best[0] > 1.5 * best[1] or best[1] > 1.5 * best[0]):
            break                            # a clear winner
        for k, program in enumerate(programs):
            start = time.perf_counter()
            program(inputs)
            best[k] = min(best[k], time.perf_counter() - start)
    return compiled if best[0] <= best[1] else reference


class _FasterOf:
    """A tape's compiled program and its NumPy program behind jit's program interface: the
    first call that passes the guards times both (see _faster) and later calls run the faster
    (a CNN's no-grad forward: 1.4 ms on the CPU interpreter against 0.4 ms on NumPy)."""

    def __init__(self, compiled, numpy_program, out_tree):
        self.compiled, self.numpy_program, self.out_tree = compiled, numpy_program, out_tree
        self.chosen = None

    def __call__(self, inputs):
        chosen = self.chosen
        if chosen is None:
            ok, leaves = self.numpy_program(inputs)
            if not ok:
                return False, None
            chosen = self.chosen = _faster(self.compiled, self.numpy_program, inputs)
        if chosen is self.compiled:
            return chosen(inputs)
        ok, leaves = chosen(inputs)
        return (True, tree_unflatten(self.out_tree, leaves)) if ok else (False, None)

    def call_arrays(self, inputs):
        ok, result = self(inputs)
        return result if ok else None


class _FasterBackend:
    """The CPU backend for jit whose programs are _FasterOf (where NumPy may win)."""

    def compile(self, tape):
        compiled = _transforms._backend("cpu").compile(tape)
        if not _numpy_may_win(tape):
            return compiled
        return _FasterOf(compiled, _NumPyProgram(tape), tape.out_tree)


def _numpy_may_win(tape):
    """Whether a NumPy program could beat the compiled one: NumPy pays ~1 us a call, so only
    where the instructions' arrays are large on average (a tape of scalar or small-vector ops
    runs compiled, without generating and timing a NumPy program for it)."""
    sizes = [math.prod(tape.shapes[ins.out]) for ins in tape.instrs]
    return bool(sizes) and sum(sizes) >= _NUMPY_MIN_MEAN_SIZE * len(sizes)


_NUMPY_MIN_MEAN_SIZE = 64


def _jit(fun):
    jitted = _transforms.jit(fun)
    jitted._backend_module = _FasterBackend()     # its tapes: compiled or NumPy, the faster
    return jitted


class _Program:
    """The compiled forms of one function of positional values (arrays, Tensors, statics)."""

    def __init__(self, fun):
        self.fun = _no_random(fun)
        self.forward = _jit(self.fun)
        self._grads = {}       # differentiated positions -> (jitted value_and_grad, jitted vjp)
        self.scalar = {}       # input shapes -> whether the result is 0-d
        self._splits = {}      # (input shapes, positions) -> [_Split per guard path] or None

    def forward_with_pullback(self, key, positions, values, arrays):
        """(result, residuals, compiled backward part) from one forward sweep; None where the
        tape cannot be cut (then the backward runs the forward again). arrays: _arrays(values)."""
        paths = self._splits.setdefault((key, positions), [])
        if paths is None:
            return None
        for split in paths:
            ok, results = split.forward(arrays)
            if ok:
                return results[0], results[1:], split.backward
        try:
            split = _Split(self.fun, positions, values, self.forward(*values))
        except _NoSplit:
            self._splits[(key, positions)] = None
            return None
        paths.insert(0, split)
        del paths[8:]           # as jit, a few guard paths per signature
        ok, results = split.forward(arrays)
        return (results[0], results[1:], split.backward) if ok else None

    def _grad_programs(self, positions):
        progs = self._grads.get(positions)
        if progs is None:
            fun = self.fun

            def pulled(*args_and_cotangent):
                *args, cotangent = args_and_cotangent
                return (fun(*args) * cotangent).sum()
            progs = self._grads[positions] = (
                _jit(_transforms.value_and_grad(fun, positions)),
                _jit(_transforms.value_and_grad(pulled, positions)))
        return progs


class _CompiledCall(Function):
    """The compiled call as one autograd node; its inputs are the program's values."""

    @staticmethod
    def forward(ctx, program, *values):
        positions, key, arrays = [], [], []     # key: what selects the tape, so its result rank
        for i, v in enumerate(values):
            if isinstance(v, Tensor):
                data = v._data
                if v._requires_grad:
                    positions.append(i)
                key.append((data.shape, data.dtype))
                arrays.append(data)
            elif _transforms._is_static(v):
                key.append(v)
            else:
                key.append((np.shape(v), getattr(v, "dtype", "")))
                arrays.append(v)
        positions, key = tuple(positions), tuple(key)
        ctx.program, ctx.values, ctx.positions, ctx.grads = program, values, positions, None
        ctx.pullback = None
        scalar = program.scalar.get(key)
        if scalar is None:      # the first call learns the result's rank (tracing the forward)
            out = program.forward(*values)
            if not isinstance(out, np.ndarray):
                raise _Untraceable("it returns several values while gradients are needed")
            scalar = program.scalar[key] = out.ndim == 0
        if scalar:
            value, ctx.grads = program._grad_programs(positions)[0](*values)
            return Tensor._wrap(np.asarray(value))
        cut = program.forward_with_pullback(key, positions, values, arrays)
        if cut is not None:
            out, ctx.residuals, ctx.pullback = cut
            return Tensor._wrap(out)
        return Tensor._wrap(program.forward(*values))

    @staticmethod
    def backward(ctx, g):
        g = g.detach().numpy()
        if ctx.grads is not None:
            grads = [gr * g for gr in ctx.grads]
        elif ctx.pullback is not None:
            ok, grads = ctx.pullback(list(ctx.residuals) + [g])
            if not ok:
                raise RuntimeError("tapegrad.compile: the backward part has no guards to fail")
        else:
            _, grads = ctx.program._grad_programs(ctx.positions)[1](*ctx.values, g)
        it = iter(grads)
        out = [None] * len(ctx.values)
        for i in ctx.positions:
            out[i] = Tensor._wrap(np.asarray(next(it), ctx.values[i].detach().numpy().dtype))
        return (None, *out)


def _user_level():
    """warnings' stacklevel of the first frame outside tapegrad (the user's call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


class _Compiled:
    """One compiled callable: programs per keyword-argument names; eager where untraceable."""

    def __init__(self, fun, name):
        self.fun, self.name = fun, name
        self._programs = {}
        self._eager = set()       # program keys that could not be traced
        self._warned = False

    def _program(self, key, build):
        program = self._programs.get(key)
        if program is None:
            program = self._programs[key] = _Program(build())
        return program

    def call(self, key, build, values, eager):
        """build() gives a function of the positional values; eager() runs the original."""
        if key in self._eager:
            return eager()
        try:
            # Tensors inside lists/dicts need grad too: the autograd node takes the leaves
            if all([isinstance(v, Tensor) for v in values]):     # tree_flatten's, at once
                leaves, structure = values, _flat_structure(len(values))
            else:
                leaves, structure = tree_flatten(list(values), _any)
            if _needs_grad(leaves):
                program = self._program((key, structure), lambda: _of_leaves(build(), structure))
                return _CompiledCall.apply(program, *leaves)
            return _tensors(self._program(key, build).forward(*values))
        except Exception as error:   # noqa: BLE001  (eager raises the user's own errors)
            result = eager()
            self._eager.add(key)
            if not self._warned:
                self._warned = True
                reason = " ".join(str(error).split())   # with the tracer's "at file:line"
                warnings.warn(f"tapegrad.compile: {self.name} cannot be traced ({reason}); it "
                              "runs eagerly", RuntimeWarning, stacklevel=_user_level())
            return result


class _CompiledFunction:
    """torch.compile(fn): call it as fn."""

    def __init__(self, fun):
        self._orig_mod = fun
        self._compiled = _Compiled(fun, getattr(fun, "__name__", type(fun).__name__))
        functools.update_wrapper(self, fun, updated=())

    def __call__(self, *args, **kwargs):
        fun, names, n = self._orig_mod, tuple(kwargs), len(args)
        captured = _captured_tensors(fun)
        n_given = n + len(names)
        values = list(args) + [kwargs[k] for k in names] + [t for _, _, t in captured]

        def build():
            def run(*v):
                # the trace reads the captured Tensors' values as inputs: swapped in meanwhile
                with _swapped(_capture_swaps(captured, v[n_given:])):
                    return fun(*v[:n], **dict(zip(names, v[n:n_given])))
            return run
        key = (n, names, _capture_key(captured))
        return self._compiled.call(key, build, values, lambda: fun(*args, **kwargs))


def _capture_key(captured):
    return tuple((type(store) is _Cells, name) for store, name, _ in captured)


def _capture_swaps(captured, values):
    return [(store, name, value) for (store, name, _), value in zip(captured, values)]


class _Cells:
    """A function's closure cells as a store: cells[name] reads and writes the cell's value."""

    def __init__(self, fun):
        self._cells = dict(zip(fun.__code__.co_freevars, fun.__closure__))

    def __getitem__(self, name):
        return self._cells[name].cell_contents

    def __setitem__(self, name, value):
        self._cells[name].cell_contents = value


def _captured_tensors(fun):
    """[(store, name, Tensor)] for the Tensors fun (a function, or a module's forward) reads from
    its module's globals or its closure (k in `return x * k`): inputs of the compiled call, read
    on every call, as PyTorch's compile lifts them (a constant in the tape would be stale after
    `k = ...` or `k.mul_(2)`). Tensors reached through helpers or containers are not followed:
    pass those as arguments."""
    code = getattr(fun, "__code__", None)
    if code is None:
        return []
    out = []
    module_globals = fun.__globals__
    for name in code.co_names:
        value = module_globals.get(name)
        if isinstance(value, Tensor):
            out.append((module_globals, name, value))
    if fun.__closure__:
        cells = _Cells(fun)
        for name in code.co_freevars:
            try:
                value = cells[name]
            except ValueError:          # an empty cell (assigned later)
                continue
            if isinstance(value, Tensor):
                out.append((cells, name, value))
    return out


_SCALARS = (bool, int, float, str, type(None))


_TABLES = frozenset((dict, collections.OrderedDict, set))     # a module's own bookkeeping
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType)


def _settings(module):
    """A module's class and plain Python settings (training, p, eps, negative_slope, stride,
    ...; a function held as an attribute): the tape holds them as constants, so they select it
    (eval(), a new slope, or a submodule swapped for another class traces again)."""
    out = [type(module)]
    for item in module.__dict__.items():
        v = item[1]
        t = type(v)
        if t in _TABLES:                  # most of __dict__: skipped without isinstance calls
            continue
        if isinstance(v, _SCALARS) or isinstance(v, _FUNCTIONS) or \
                t is tuple and all([isinstance(e, _SCALARS) for e in v]):
            out.append(item)
    return tuple(out)


def _named_modules(module, prefix, memo, out):
    """named_modules() into out, without its generator per module (this runs on every call)."""
    if id(module) in memo:
        return
    memo.add(id(module))
    out.append((prefix, module))
    for name, sub in module._modules.items():
        if sub is not None:
            _named_modules(sub, prefix + "." + name if prefix else name, memo, out)


def _state(module):
    """(names, tensors, settings, attributes): named_parameters() then named_buffers() (first
    occurrences, in their order), each module's _settings, and the Tensors modules hold as plain
    attributes (self.scale = torch.tensor(2.0)), from one walk of the module tree. Attributes are
    (dotted name, index into tensors): an attribute that is a parameter or buffer takes its index,
    any other Tensor is one more input after them, so a new value or an in-place change reaches
    the compiled call as PyTorch's guards would make it (a constant in the tape would be stale)."""
    modules = []
    _named_modules(module, "", set(), modules)
    names, tensors, index = [], [], {}
    for members in ("_parameters", "_buffers"):
        seen = set()
        for prefix, m in modules:
            for k, v in getattr(m, members).items():
                if v is None or id(v) in seen:
                    continue
                seen.add(id(v))
                index.setdefault(id(v), len(tensors))
                names.append(prefix + "." + k if prefix else k)
                tensors.append(v)
    attributes = []
    for prefix, m in modules:
        for k, v in m.__dict__.items():
            if isinstance(v, Tensor):
                at = index.get(id(v))
                if at is None:
                    at = index[id(v)] = len(tensors)
                    tensors.append(v)
                attributes.append((prefix + "." + k if prefix else k, at))
    return tuple(names), tensors, tuple(_settings(m) for _, m in modules), tuple(attributes)


def _attribute_swaps(module, attributes, values):
    """[(owner's __dict__, attribute name, value)] putting values in for the plain attributes."""
    swaps = []
    for name, at in attributes:
        path, _, attr = name.rpartition(".")
        owner = module.get_submodule(path) if path else module
        swaps.append((owner.__dict__, attr, values[at]))
    return swaps


class OptimizedModule(Module):
    """torch.compile(module): a Module wrapping the original (as `_orig_mod`; its parameters
    are the original's, named with the `_orig_mod.` prefix as in PyTorch)."""

    def __init__(self, mod):
        super().__init__()
        self._orig_mod = mod
        self._compiled = _Compiled(mod, type(mod).__name__)

    def forward(self, *args, **kwargs):
        mod = self._orig_mod
        names, values, settings, attributes = _state(mod)
        captured = _captured_tensors(getattr(type(mod).forward, "__func__", type(mod).forward))
        n_named, n_state, n_args, kw = len(names), len(values), len(args), tuple(kwargs)
        n_given = n_args + len(kw)
        key = (names, settings, attributes, _capture_key(captured), n_args, kw)

        def build():
            def run(*v):
                state = dict(zip(names, v[:n_named]))
                rest = v[n_state:]
                swaps = _attribute_swaps(mod, attributes, v) + _capture_swaps(captured,
                                                                                rest[n_given:])
                with _swapped(swaps):
                    return functional_call(mod, state, tuple(rest[:n_args]),
                                           dict(zip(kw, rest[n_args:n_given])))
            return run
        values += list(args) + [kwargs[k] for k in kw] + [t for _, _, t in captured]
        return self._compiled.call(key, build, values, lambda: mod(*args, **kwargs))

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "_orig_mod":     # not yet set (while __init__ runs)
                raise
            return getattr(self._orig_mod, name)

    def __repr__(self):
        return f"OptimizedModule(\n  (_orig_mod): {repr(self._orig_mod).replace(chr(10), chr(10) + '  ')}\n)"


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
            options=None, disable=False):
    """torch.compile: model (a function or an nn.Module) compiled with tapegrad.jit on the CPU.

    Also a decorator (@compile or @compile(mode=...)). PyTorch's options are accepted and
    checked; backend and options do not change how tapegrad compiles. disable=True returns the
    model as it is. A Module stays a Module (an OptimizedModule); see the module docstring for
    gradients and the eager fallback.

    Args:
        model: the function or nn.Module (omitted when used as @compile(...)).
        fullgraph: accepted for PyTorch compatibility.
        dynamic: accepted for PyTorch compatibility.
        backend: accepted and checked; tapegrad always compiles with tapegrad.jit.
        mode: one of PyTorch's modes (None, "default", "reduce-overhead", ...).
        options: accepted and checked (not with mode).
        disable: return model unchanged.

    Returns:
        The compiled function or OptimizedModule (or, without model, a decorator).

    Example:
        >>> import tapegrad as torch
        >>> double_sum = torch.compile(lambda x: (x * 2).sum())
        >>> double_sum(torch.tensor([1.0, 2.0]))
        tensor(6.)
    """
    if mode not in _MODES:
        raise RuntimeError(f"Unrecognized mode={mode}, should be one of: "
                           f"{', '.join(m for m in _MODES if m)}")
    if mode is not None and options is not None:
        raise RuntimeError("Either mode or options can be specified, but both can't be "
                           "specified at the same time.")
    if model is None:
        return functools.partial(compile, fullgraph=fullgraph, dynamic=dynamic, backend=backend,
                                 mode=mode, options=options, disable=disable)
    if not callable(model):
        raise TypeError(f"tapegrad.compile: expected a function or an nn.Module, got "
                        f"{type(model).__name__}")
    if disable:
        return model
    if isinstance(model, Module):
        return OptimizedModule(model)
    return _CompiledFunction(model)
