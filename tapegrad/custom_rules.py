"""Custom derivative rules on the traced face: custom_vjp, custom_jvp and checkpoint.

Each output leaf of such a function is recorded as `custom_call(*input leaves, output leaf)`: its
value is the output leaf, so the forward is the function's own recording, but its VJP rule sends
nothing into that recording and gives the inputs' cotangents from the user's rule instead (bwd;
the transposed jvp rule; or, for checkpoint, the function recomputed in the adjoint sweep). The
rule's work is recorded as ordinary primitives, so the results differentiate again and compile.
The instruction exists only while tracing: trace_to_tape lowers it to the identity on its last
input before any backend sees the tape.
"""
import functools

import numpy as np

from . import primitives as P
from .core import Primitive
from .tape import Instr, tree_flatten, tree_unflatten
from .trace import Tracer, backward_on_tape, pinned, user_line
from .forward import _context_of, _differentiable, _is_tracer


def _last(*args, rule, index):
    return args[-1]


def _custom_call_vjp(argnum, g, ans, *args, rule, index):
    if argnum == len(args) - 1:
        return None                 # the function's own recording gets no cotangent
    return rule.cotangents(index, g)[argnum]


custom_call = Primitive("custom_call", _last, grad_fn_name="CustomFunctionBackward",
                        kind="other")
custom_call.variadic_vjp = _custom_call_vjp
# tapes hand backends the identity on the recorded output (reshape to its own shape: an alias)
custom_call.lower = lambda ins, tape: Instr(P.reshape, (ins.ins[-1],), ins.out,
                                            {"shape": tape.shapes[ins.out]}, ins.phase)


def _split_args(args, nondiff_argnums):
    nondiff = tuple(args[i] for i in nondiff_argnums)
    diff = [a for i, a in enumerate(args) if i not in nondiff_argnums]
    return nondiff, diff


def _leaves(tree):
    return tree_flatten(tree, _is_tracer)[0]


class _Rule:
    """The cotangents of a call's input leaves, per output leaf and output cotangent."""

    def __init__(self, ctx, in_leaves, out_leaves, out_tree):
        self.ctx, self.in_leaves = ctx, in_leaves
        self.out_leaves, self.out_tree = out_leaves, out_tree
        self._memo = None

    def cotangents(self, index, g):
        # backward_on_tape asks once per input with the same g: compute all of them once
        if self._memo is None or self._memo[0] != index or self._memo[1] is not g:
            self._memo = (index, g, self.compute(index, g))
        return self._memo[2]

    def check_leaves(self, what, leaves, names):
        if len(leaves) != len(self.in_leaves):
            raise TypeError(f"tapegrad.{what} returned {len(leaves)} arrays for "
                            f"{len(self.in_leaves)} differentiable inputs; return one per "
                            f"{names}, in the arguments' structure\n  at {user_line()}")


def _wrap(ctx, rule, in_leaves, out, out_leaves, out_tree):
    wrapped = [custom_call(*in_leaves, o, rule=rule, index=k) if _differentiable(ctx, o) else o
               for k, o in enumerate(out_leaves)]
    return tree_unflatten(out_tree, wrapped)


class _VjpRule(_Rule):
    def __init__(self, ctx, in_leaves, out_leaves, out_tree, bwd, nondiff, residuals, diff):
        super().__init__(ctx, in_leaves, out_leaves, out_tree)
        self.bwd, self.nondiff, self.residuals, self.diff = bwd, nondiff, residuals, diff

    def compute(self, index, g):
        cts = [g if k == index else np.zeros(np.shape(o._value if isinstance(o, Tracer) else o),
                                             np.result_type(o._value if isinstance(o, Tracer)
                                                            else o))
               for k, o in enumerate(self.out_leaves)]
        result = self.bwd(*self.nondiff, self.residuals, tree_unflatten(self.out_tree, cts))
        if not isinstance(result, (tuple, list)) or len(result) != len(self.diff):
            raise TypeError(f"tapegrad.custom_vjp: bwd must return a tuple with one cotangent "
                            f"per differentiable argument ({len(self.diff)}), got "
                            f"{type(result).__name__}; return e.g. (ct_x,) for one argument"
                            f"\n  at {user_line()}")
        leaves = []
        for arg, ct in zip(self.diff, result):
            arg_leaves = tree_flatten(arg, lambda x: True)[0]
            leaves.extend([None] * len(arg_leaves) if ct is None else _leaves(ct))
        self.check_leaves("custom_vjp: bwd", leaves, "input array")
        return leaves


class custom_vjp:
    """A function with a user-given VJP (JAX's convention).

        f = tg.custom_vjp(f)              # or @tg.custom_vjp
        f.defvjp(fwd, bwd)                # fwd(*args) -> (out, residuals)
                                          # bwd(residuals, out_cotangent) -> tuple, one per arg

    With nondiff_argnums, those arguments are passed first to bwd and get no cotangent. Every
    transform (grad, vjp, jvp, jacfwd, hessian, vmap) and jit use bwd; called on plain values, f
    runs as written.

    Args:
        fun: the function whose derivative is given.
        nondiff_argnums: positions of arguments that are not differentiated.

    Returns:
        The wrapped function; call its defvjp(fwd, bwd) before differentiating it.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> f = tg.custom_vjp(lambda x: np.sin(x))
        >>> f.defvjp(lambda x: (np.sin(x), np.cos(x)), lambda cos_x, g: (cos_x * g,))
        >>> tg.grad(lambda x: np.sum(f(x)))(np.zeros(2))
        array([1., 1.])
    """

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun, self.nondiff_argnums = fun, tuple(nondiff_argnums)
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        self.fwd, self.bwd = fwd, bwd

    def _eager_fwd(self, *args):
        out, residuals = self.fwd(*args)
        return out, (args, residuals)

    def _eager_bwd(self, saved, g):
        # autograd.Function wants a gradient per argument: None for nondiff_argnums
        args, residuals = saved
        nondiff, _ = _split_args(args, self.nondiff_argnums)
        grads = iter(self.bwd(*nondiff, residuals, g))
        return tuple(None if i in self.nondiff_argnums else next(grads) for i in range(len(args)))

    def __call__(self, *args):
        if self.fwd is None:
            raise TypeError(f"tapegrad.custom_vjp: no VJP defined for {self.__name__}; call "
                            f"{self.__name__}.defvjp(fwd, bwd) first")
        ctx = _context_of(args)
        if ctx is None:
            if _eager_tensors(args):        # eager Tensors: bwd through an autograd.Function
                return _eager_function(self, self._eager_fwd, self._eager_bwd).apply(*args)
            return self.fun(*args)
        nondiff, diff = _split_args(args, self.nondiff_argnums)
        # the inputs as fwd receives them (a write in fwd moves the caller's handles on)
        in_leaves = [pinned(leaf) for arg in diff for leaf in tree_flatten(arg, lambda x: True)[0]]
        result = self.fwd(*args)
        if not isinstance(result, tuple) or len(result) != 2:
            raise TypeError("tapegrad.custom_vjp: fwd must return a pair (output, residuals)"
                            f"\n  at {user_line()}")
        out, residuals = result
        out_leaves, out_tree = tree_flatten(out, _is_tracer)
        rule = _VjpRule(ctx, in_leaves, out_leaves, out_tree, self.bwd, nondiff, residuals, diff)
        return _wrap(ctx, rule, in_leaves, out, out_leaves, out_tree)


def _eager_tensors(args):
    """Arguments include an eager Tensor that requires grad (with grad mode on)."""
    from .autograd.grad_mode import is_grad_enabled
    return is_grad_enabled() and any(
        getattr(type(leaf), "_bind_level", 0) == 1 and leaf.requires_grad
        for leaf in tree_flatten(list(args), lambda x: True)[0])


def _eager_function(owner, forward, backward):
    """An autograd.Function (made once per custom function) running forward(*args) -> (out,
    saved) and backward(saved, g) -> one gradient per argument, for eager Tensors."""
    function = owner.__dict__.get("_eager")
    if function is None:
        from .autograd.function import Function

        def fwd(ctx, *args):
            out, ctx.custom_saved = forward(*args)
            return out

        def bwd(ctx, g):
            return backward(ctx.custom_saved, g)
        function = type(owner.__name__, (Function,), {"forward": staticmethod(fwd),
                                                      "backward": staticmethod(bwd)})
        owner._eager = function
    return function


def _fresh_like(ctx, leaves, make):
    """A new slot per differentiable leaf (make(leaf) -> tracer); None for the others."""
    return [make(leaf) if _differentiable(ctx, leaf) else None for leaf in leaves]


class _Replayed(_Rule):
    """A rule that records a function of fresh copies of the inputs once (the first time a
    cotangent is asked for) and sweeps back over that recording for each cotangent."""

    def __init__(self, ctx, in_leaves, out_leaves, out_tree):
        super().__init__(ctx, in_leaves, out_leaves, out_tree)
        self._recorded = None

    def compute(self, index, g):
        if self._recorded is None:
            fresh = _fresh_like(self.ctx, self.in_leaves, self.fresh)
            # the slots before the function runs: a write in it moves the handles on
            slots = [f._slot for f in fresh if f is not None]
            start = len(self.ctx.tape.instrs)
            outs = [pinned(o) for o in self.record(fresh)]
            self._recorded = fresh, slots, start, outs, len(self.ctx.tape.instrs)
        fresh, slots, start, outs, end = self._recorded
        target = outs[index]
        if not _differentiable(self.ctx, target) or not slots:
            return [None] * len(fresh)
        found = iter(backward_on_tape(self.ctx, start, None, slots, {target._slot: g}, end))
        return [None if f is None else next(found) for f in fresh]


class _JvpRule(_Replayed):
    """Reverse mode of a custom_jvp function: the jvp rule's tangent map, transposed."""

    def __init__(self, ctx, in_leaves, out_leaves, out_tree, jvp, nondiff, diff):
        super().__init__(ctx, in_leaves, out_leaves, out_tree)
        self.jvp, self.nondiff, self.diff = jvp, nondiff, diff

    def fresh(self, leaf):
        # a tangent slot (value 0): the rule is linear in it, so its value never matters
        return self.ctx.record(P.reshape, (np.zeros(leaf.shape, leaf.dtype),),
                               {"shape": leaf.shape})

    def record(self, fresh):
        it = iter(fresh)
        tangents = []
        for arg in self.diff:
            leaves, structure = tree_flatten(arg, lambda x: True)
            tangents.append(tree_unflatten(structure, [
                t if t is not None else np.zeros(np.shape(leaf), np.float64)
                for leaf, t in zip(leaves, it)]))
        result = self.jvp(*self.nondiff, tuple(self.diff), tuple(tangents))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError("tapegrad.custom_jvp: the jvp rule must return a pair "
                            f"(primal_out, tangent_out)\n  at {user_line()}")
        outs, structure = tree_flatten(result[1], _is_tracer)
        if structure != self.out_tree:
            raise TypeError("tapegrad.custom_jvp: the jvp rule's tangent_out must have the "
                            f"structure of the function's output\n  at {user_line()}")
        return outs


class custom_jvp:
    """A function with a user-given JVP (JAX's convention).

        f = tg.custom_jvp(f)             # or @tg.custom_jvp
        @f.defjvp
        def f_jvp(primals, tangents):    # tuples, one entry per argument
            ...
            return primal_out, tangent_out   # tangent_out linear in tangents

    Reverse mode (grad, vjp, jacrev) transposes tangent_out's map, so one rule serves every
    transform and jit. With nondiff_argnums, those arguments come first in the rule's call.

    Args:
        fun: the function whose derivative is given.
        nondiff_argnums: positions of arguments that are not differentiated.

    Returns:
        The wrapped function; give its rule with defjvp before differentiating it.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> @tg.custom_jvp
        ... def f(x):
        ...     return np.exp(x)
        >>> @f.defjvp
        ... def f_jvp(primals, tangents):
        ...     (x,), (t,) = primals, tangents
        ...     return np.exp(x), np.exp(x) * t
        >>> tg.grad(lambda x: np.sum(f(x)))(np.zeros(2))
        array([1., 1.])
    """

    def __init__(self, fun, nondiff_argnums=()):
        functools.update_wrapper(self, fun)
        self.fun, self.nondiff_argnums = fun, tuple(nondiff_argnums)
        self.jvp = None

    def defjvp(self, jvp):
        self.jvp = jvp
        return jvp

    def _eager_bwd(self, args, g):
        from .forward import vjp
        from .functions import tensor
        values = [a.detach().numpy() if getattr(type(a), "_bind_level", 0) == 1 else a
                  for a in args]
        nondiff, diff = _split_args(values, self.nondiff_argnums)
        zeros = [np.zeros(np.shape(d), np.result_type(d, np.float32)) for d in diff]
        _, pull = vjp(lambda *t: self.jvp(*nondiff, tuple(diff), t)[1], *zeros)
        grads = iter(pull(g.detach().numpy()))
        return tuple(None if i in self.nondiff_argnums else tensor(next(grads))
                     for i in range(len(args)))

    def __call__(self, *args):
        if self.jvp is None:
            raise TypeError(f"tapegrad.custom_jvp: no JVP defined for {self.__name__}; decorate "
                            f"the rule with @{self.__name__}.defjvp first")
        ctx = _context_of(args)
        if ctx is None:
            if _eager_tensors(args):        # eager Tensors: the rule transposed on a tape
                return _eager_function(self, lambda *a: (self.fun(*a), a),
                                       self._eager_bwd).apply(*args)
            return self.fun(*args)
        nondiff, diff = _split_args(args, self.nondiff_argnums)
        # the inputs as fun receives them (a write in fun moves the caller's handles on)
        in_leaves = [pinned(leaf) for arg in diff for leaf in tree_flatten(arg, lambda x: True)[0]]
        out = self.fun(*args)
        out_leaves, out_tree = tree_flatten(out, _is_tracer)
        rule = _JvpRule(ctx, in_leaves, out_leaves, out_tree, self.jvp, nondiff, diff)
        return _wrap(ctx, rule, in_leaves, out, out_leaves, out_tree)


def function_on_tape(cls, args):
    """autograd.Function.apply on traced values: forward is recorded, backward is the adjoint."""
    from .autograd.function import FunctionCtx
    fn_ctx = FunctionCtx()
    fn_ctx.needs_input_grad = tuple(isinstance(a, Tracer) for a in args)

    def fwd(*args):
        return cls.forward(fn_ctx, *args), None

    def bwd(_, g):
        grads = cls.backward(fn_ctx, g)
        grads = tuple(grads) if isinstance(grads, (tuple, list)) else (grads,)
        if len(grads) != len(args):
            raise RuntimeError(f"function {cls.__name__}Backward returned an incorrect number "
                               f"of gradients (expected {len(args)}, got {len(grads)})")
        return grads
    function = custom_vjp(lambda *args: cls.forward(fn_ctx, *args))
    function.defvjp(fwd, bwd)
    return function(*args)
