"""checkpoint: the adjoint sweep recomputes a function's forward instead of keeping its values.

The forward is recorded as usual; the adjoint of its outputs records the function again on
copies of its inputs (copies: so that the tape optimiser's common-subexpression pass cannot merge
the recomputation back into the forward) and sweeps back over that recording. Between the forward
and the adjoint only the inputs and outputs of the function are read, so a compiled tape, which
reuses a buffer once its last reader has run, frees the intermediates of each checkpointed call
after its forward and holds one call's intermediates at a time in the adjoint.
"""
import functools

from . import primitives as P
from .custom_rules import _Replayed, _split_args, _wrap
from .forward import _context_of, _is_tracer
from .tape import tree_flatten, tree_unflatten
from .trace import pinned, user_line


class _Recompute(_Replayed):
    def __init__(self, ctx, in_leaves, out_leaves, out_tree, fun, args, static):
        super().__init__(ctx, in_leaves, out_leaves, out_tree)
        self.fun, self.args, self.static = fun, args, static

    def fresh(self, leaf):
        return P.clone(leaf)

    def record(self, fresh):
        it = iter(fresh)
        args = []
        for i, arg in enumerate(self.args):
            if i in self.static:
                args.append(arg)
                continue
            leaves, structure = tree_flatten(arg, lambda x: True)
            copies = [next(it) for _ in leaves]
            args.append(tree_unflatten(structure, [
                leaf if copy is None else copy for leaf, copy in zip(leaves, copies)]))
        outs, structure = tree_flatten(self.fun(*args), _is_tracer)
        if structure != self.out_tree:
            raise TypeError("tapegrad.checkpoint: the function returned a different structure "
                            "when recomputed; it must be a pure function of its arguments"
                            f"\n  at {user_line()}")
        return outs


def checkpoint(fun=None, *, static_argnums=()):
    """fun, with its intermediates recomputed in the adjoint sweep instead of kept.

    Use as `tg.checkpoint(f)` or `@tg.checkpoint`. Gradients are unchanged; the forward runs twice
    (once more in the adjoint), the tape's memory holds one checkpointed call's intermediates at
    a time. fun must be pure: it runs again on the same inputs. Arguments at static_argnums (and
    Python ints, strings) are passed as they are.

    Args:
        fun: the function (omitted when used as `@tg.checkpoint(static_argnums=...)`).
        static_argnums: positions of arguments passed as they are, not traced.

    Returns:
        The checkpointed function (or, without fun, a decorator).

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> step = tg.checkpoint(lambda y: y + 0.1 * np.sin(y))
        >>> tg.grad(lambda y: np.sum(step(step(y))))(np.zeros(2))
        array([1.21, 1.21])
    """
    if fun is None:
        return lambda f: checkpoint(f, static_argnums=static_argnums)

    @functools.wraps(fun)
    def checkpointed(*args):
        ctx = _context_of(args)
        if ctx is None:
            return fun(*args)
        _, diff = _split_args(args, {i % len(args) for i in static_argnums})
        # the inputs as fun receives them (a write in fun moves the caller's handles on)
        in_leaves = [pinned(leaf) for arg in diff for leaf in tree_flatten(arg, lambda x: True)[0]]
        out = fun(*args)
        out_leaves, out_tree = tree_flatten(out, _is_tracer)
        static = {i % len(args) for i in static_argnums}
        rule = _Recompute(ctx, in_leaves, out_leaves, out_tree, fun, args, static)
        return _wrap(ctx, rule, in_leaves, out, out_leaves, out_tree)
    checkpointed._tapegrad_transform = ("checkpoint", fun)
    return checkpointed
