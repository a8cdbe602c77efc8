"""vjp, jvp, linearize, jacrev, jacfwd, hessian and hvp on the traced face (JAX's conventions).

Everything derives from the registry's VJP rules. A function is recorded once on the tape at the
primals (a `_Linear`); its pullback is the adjoint sweep started from given output cotangents.
Forward mode transposes the pullback: the pullback is linear in its cotangent `u`, so recording
it at a traced `u` and sweeping back from the input tangents to `u` gives J t (the "double vjp").
Every step is recorded as ordinary primitives, so the results compose with grad, vmap, jit and
with each other (a Hessian is jacfwd of jacrev).
"""
import numpy as np

from . import primitives as P
from .tape import tree_flatten, tree_unflatten
from .trace import TraceContext, TraceError, Tracer, backward_on_tape, current, pinned
from .trace import lift_tree
from .transforms import (_any_leaf, _argnum_positions, _complex_error, _concrete, _function_name,
                         _in_trace, _is_int, _leaf_names, _trace_arg, _value, _wrt_leaf,
                         value_and_grad)


def _is_tracer(x):
    return isinstance(x, Tracer)


def _context_of(tree):
    """The trace a value belongs to (its tracers'), else the innermost active trace, else None."""
    for leaf in tree_flatten(tree, _any_leaf)[0]:     # leaves as they are (Tensors too)
        if isinstance(leaf, Tracer):
            return leaf._ctx
    return current()


def _positions(where, argnums):
    positions = (argnums,) if _is_int(argnums) else tuple(argnums) if isinstance(
        argnums, (tuple, list)) else None
    if positions is None or not all(_is_int(i) for i in positions):
        raise TypeError(f"tapegrad.{where}: argnums must be an int or a tuple of ints, got "
                        f"{argnums!r}")
    return positions


def _differentiable(ctx, leaf):
    return (isinstance(leaf, Tracer) and leaf._ctx is ctx
            and ctx.tape.dtypes[leaf._slot].kind == "f")


def _zeros_like(leaf):
    value = _value(leaf)
    dtype = np.dtype(value.dtype) if hasattr(value, "dtype") else np.float64
    return np.zeros(np.shape(value), dtype if dtype.kind == "f" else np.float64)


class _Linear:
    """fun recorded on ctx's tape at args, differentiated with respect to the arguments at
    `positions` (each leaf of a pytree argument gets its own slot, as grad does)."""

    def __init__(self, ctx, fun, args, positions, where, argnums, has_aux=False):
        self.ctx, self.fun, self.where, self.has_aux = ctx, fun, where, has_aux
        self.primals = list(args)
        fname = _function_name(fun)
        args = list(args)
        self.wanted = _argnum_positions(where, argnums, positions, len(args), fname)
        self.trees = {}                 # position -> (structure, alias tracers)
        for i in dict.fromkeys(self.wanted):
            leaves, structure = tree_flatten(args[i], _any_leaf)
            names = _leaf_names(args[i], f"argument {i}")
            aliases = [_wrt_leaf(where, ctx, leaf, name, argnums, fname)
                       for leaf, name in zip(leaves, names)]
            args[i] = tree_unflatten(structure, aliases)
            self.trees[i] = structure, aliases
        self.wrt = [a for _, aliases in self.trees.values() for a in aliases]
        self.wrt_slots = [a._slot for a in self.wrt]   # now: a write in fun moves the handles
        self.start = len(ctx.tape.instrs)        # after the aliases: they are the sweep's ends
        first_slot = len(ctx.tape.dtypes)
        out = lift_tree(fun(*args))              # np.array([t0, t1]) is an object array
        self.end = len(ctx.tape.instrs)          # sweeps recorded later need not be walked
        if any(dt.kind == "c" for dt in ctx.tape.dtypes[first_slot:]):
            # as grad: real arithmetic only (the sweeps would drop imaginary parts silently)
            raise _complex_error(where, fname, "a value computed inside (from a complex "
                                 "constant, captured scalar or result)")
        self.out, self.aux = out if has_aux else (out, None)
        out_leaves, self.out_tree = tree_flatten(self.out, _is_tracer)
        # the outputs as returned: a later write through the caller's handles moves those on
        self.out_leaves = [pinned(o) for o in out_leaves]
        self._transposed = None

    # ---- reverse
    def pullback_leaves(self, cts):
        """Cotangents of the wrt leaves for the cotangents `cts` of the output leaves (None: 0)."""
        seeds = {}
        for o, c in zip(self.out_leaves, cts):
            if c is not None and _differentiable(self.ctx, o):
                seeds[o._slot] = c if o._slot not in seeds else seeds[o._slot] + c
        if not seeds:
            return [_zeros_like(w) for w in self.wrt]
        return backward_on_tape(self.ctx, self.start, None, self.wrt_slots, seeds, self.end)

    def per_argument(self, leaves):
        """Values per wrt leaf -> the structure of the differentiated arguments (argnums)."""
        it = iter(leaves)
        per_arg = {i: tree_unflatten(structure, [next(it) for _ in aliases])
                   for i, (structure, aliases) in self.trees.items()}
        return [per_arg[i] for i in self.wanted]

    def check_like(self, what, values, reference, names):
        """values must be leaves shaped as reference's leaves (tangents, cotangents)."""
        if len(values) != len(reference):
            raise ValueError(f"tapegrad.{self.where}: {what} has {len(values)} arrays where the "
                             f"{names} have {len(reference)}; give one per array, same structure")
        for k, (v, r) in enumerate(zip(values, reference)):
            if np.shape(_value(v)) != np.shape(_value(r)):
                raise ValueError(
                    f"tapegrad.{self.where}: {what} {k} has shape {np.shape(_value(v))} but the "
                    f"{names[:-1]} it goes with has shape {np.shape(_value(r))}; pass arrays "
                    "shaped like the " + names)

    def pullback(self, cotangent):
        leaves, structure = tree_flatten(cotangent, _is_tracer)
        if structure != self.out_tree:
            raise ValueError(f"tapegrad.{self.where}: the cotangent's structure does not match "
                             "the function's output; pass one array per output, in its structure")
        self.check_like("cotangent", leaves, self.out_leaves, "outputs")
        return tuple(self.per_argument(self.pullback_leaves(leaves)))

    # ---- forward (the pullback transposed)
    def pushforward_leaves(self, tangents):
        """Tangents of the output leaves for tangents of the wrt leaves (None: 0)."""
        ctx = self.ctx
        if self._transposed is None:
            us = {}
            for o in self.out_leaves:
                if _differentiable(ctx, o) and o._slot not in us:
                    zero = np.zeros(o.shape, o.dtype)
                    us[o._slot] = ctx.record(P.reshape, (zero,), {"shape": o.shape})
            start = len(ctx.tape.instrs)
            # each output slot seeded once: an output returned twice ((y, y)) would be seeded
            # u + u, and its tangent come out doubled
            cts, seeded = [], set()
            for o in self.out_leaves:
                first = _differentiable(ctx, o) and o._slot not in seeded
                cts.append(us[o._slot] if first else None)
                if first:
                    seeded.add(o._slot)
            pulled = self.pullback_leaves(cts)
            self._transposed = us, start, pulled, len(ctx.tape.instrs)
        us, start, pulled, end = self._transposed
        seeds = {}
        for p, t in zip(pulled, tangents):
            if t is not None and isinstance(p, Tracer):
                seeds[p._slot] = t if p._slot not in seeds else seeds[p._slot] + t
        slots = list(us)
        found = dict(zip(slots, backward_on_tape(ctx, start, None, [u._slot for u in us.values()],
                                                 seeds, end))) if seeds else {}
        return [found[o._slot] if _differentiable(ctx, o) and o._slot in found
                else _zeros_like(o) for o in self.out_leaves]

    def pushforward(self, tangents):
        leaves = [leaf for t in tangents for leaf in tree_flatten(t, _is_tracer)[0]]
        self.check_like("tangent", leaves, self.wrt, "primals")
        for k, (t, w) in enumerate(zip(leaves, self.wrt)):
            dtype = np.dtype(_value(t).dtype) if hasattr(_value(t), "dtype") else None
            if dtype is not None and dtype.kind != "f":
                raise TypeError(f"tapegrad.{self.where}: tangent {k} has dtype {dtype}; tangents "
                                "are floating-point arrays like their primals")
        return tree_unflatten(self.out_tree, self.pushforward_leaves(leaves))


def _linearize_at(fun, primals, positions, where, argnums, has_aux=False):
    """A _Linear in the primals' trace, or in a new trace this function keeps (owned=True)."""
    ctx = _context_of(primals)
    if ctx is not None:
        return _Linear(ctx, fun, primals, positions, where, argnums, has_aux), False
    ctx = TraceContext()
    with ctx:
        args = [_trace_arg(ctx, a) for a in primals]
        return _Linear(ctx, fun, args, positions, where, argnums, has_aux), True


def _later(lin, owned, method, where):
    """method(value) run in lin's trace: recorded there when called inside it, as plain values
    when called outside any trace, re-linearised when called inside another trace (jit)."""
    def call(value):
        ctx = _context_of(value)
        if ctx is lin.ctx:
            return method(lin, value)
        if ctx is None:
            if not owned:
                raise TraceError(f"tapegrad.{where}: the function returned by {where} was called "
                                 "after the trace it was made in ended; call it inside the same "
                                 "transformed function")
            with lin.ctx:
                return _concrete(method(lin, value))
        again = _Linear(ctx, lin.fun, [_concrete(a) for a in lin.primals],
                        tuple(lin.wanted), where, tuple(lin.wanted), lin.has_aux)
        return method(again, value)
    return call


def _plain(tree, owned):
    return _concrete(tree) if owned else tree


def vjp(fun, *primals, has_aux=False):
    """fun's value at primals and its pullback (reverse mode, any output).

    Args:
        fun: a function of NumPy arrays / floats / pytrees of them, with any (pytree) output.
        *primals: the point; every argument is differentiated.
        has_aux: fun returns (output, aux); aux comes back as a third result.

    Returns:
        (out, vjp_fn) or (out, vjp_fn, aux). vjp_fn(cotangent) takes one array per output, in
        the output's structure, and returns a tuple with one cotangent per primal.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> out, f_vjp = tg.vjp(lambda x: x ** 2, np.array([1.0, 3.0]))
        >>> f_vjp(np.ones(2))
        (array([2., 6.]),)
    """
    positions = tuple(range(len(primals)))
    lin, owned = _linearize_at(fun, primals, positions, "vjp", positions, has_aux)
    vjp_fn = _later(lin, owned, _Linear.pullback, "vjp")
    out = _plain(lin.out, owned)
    return (out, vjp_fn, _plain(lin.aux, owned)) if has_aux else (out, vjp_fn)


def _check_tangent_tuples(primals, tangents, where="jvp"):
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(f"tapegrad.{where}: primals and tangents must be tuples (or lists) with "
                        f"one entry per argument, e.g. tg.{where}(f, (x,), (v,))")
    if len(primals) != len(tangents):
        raise ValueError(f"tapegrad.{where}: {len(primals)} primals but {len(tangents)} "
                         "tangents; give one tangent per primal")


def jvp(fun, primals, tangents, has_aux=False):
    """fun's value at primals and its directional derivative along tangents (forward mode).

    Args:
        fun: a function of NumPy arrays / floats / pytrees of them, with any (pytree) output.
        primals: a tuple with one entry per argument of fun.
        tangents: a tuple shaped like primals (same structures and shapes).

    Returns:
        (out, tangent_out), tangent_out shaped like out ((out, tangent_out, aux) with has_aux).

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.jvp(np.sin, (np.array([0.0, 1.0]),), (np.array([1.0, 0.0]),))
        (array([0.        , 0.84147098]), array([1., 0.]))
    """
    _check_tangent_tuples(primals, tangents)
    positions = tuple(range(len(primals)))
    lin, owned = _linearize_at(fun, tuple(primals), positions, "jvp", positions, has_aux)
    if owned:
        with lin.ctx:
            try:
                result = _concrete((lin.out, lin.pushforward(tangents), lin.aux))
            finally:
                lin.ctx.tracers.clear()     # nothing refers to this trace later: no cycle
    else:
        result = (lin.out, lin.pushforward(tangents), lin.aux)
    return result if has_aux else result[:2]


def linearize(fun, *primals):
    """fun's value at primals and its Jacobian-vector product there, recorded once.

    Args:
        fun: a function of arrays (pytrees) returning an array (pytree).
        *primals: the point: fun's arguments.

    Returns:
        (out, f_jvp) with f_jvp(*tangents) -> tangent_out; tangents shaped like primals.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> out, f_jvp = tg.linearize(np.exp, np.array([0.0, 1.0]))
        >>> f_jvp(np.array([1.0, 1.0]))
        array([1.        , 2.71828183])
    """
    positions = tuple(range(len(primals)))
    lin, owned = _linearize_at(fun, primals, positions, "linearize", positions)
    push = _later(lin, owned, _Linear.pushforward, "linearize")

    def f_jvp(*tangents):
        if len(tangents) != len(primals):
            raise ValueError(f"tapegrad.linearize: f_jvp takes {len(primals)} tangents (one per "
                             f"primal), got {len(tangents)}")
        return push(tangents)
    return _plain(lin.out, owned), f_jvp


# ---------------------------------------------------------------------------------------------
# Jacobians
# ---------------------------------------------------------------------------------------------

def _block(columns, lead_shape, trail_shape, axis):
    """Stack per-element derivatives (each shaped lead_shape or trail_shape) into one
    lead_shape + trail_shape array: axis 0 stacks rows (jacrev), axis -1 columns (jacfwd)."""
    shape = tuple(lead_shape) + tuple(trail_shape)
    if not columns:
        return np.zeros(shape, np.float64)
    if any(isinstance(c, Tracer) for c in columns):
        flat = [P.reshape(c, shape=(-1,)) if isinstance(c, Tracer) else np.ravel(c)
                for c in columns]
        return P.reshape(P.stack(*flat, axis=0 if axis == 0 else 1), shape=shape)
    flat = [np.ravel(c) for c in columns]
    return np.reshape(np.stack(flat, axis=0 if axis == 0 else 1), shape)


def _one_hot(shape, dtype, k):
    e = np.zeros(int(np.prod(shape, dtype=np.int64)), dtype)
    e[k] = 1
    return e.reshape(shape)


def _assemble(lin, blocks, single):
    """blocks[o][w] (output leaf o, wrt leaf w) -> fun's output structure, each leaf holding the
    arguments' structure (a tuple of them for tuple argnums), as JAX's jacobians."""
    per_out = [lin.per_argument(row) for row in blocks]
    return tree_unflatten(lin.out_tree, [p[0] if single else tuple(p) for p in per_out])


def _jacobian(where, fun, argnums, has_aux, build, sparsity=None):
    positions = _positions(where, argnums)

    def jac_fun(*args):
        if sparsity is not None:
            return _sparse(where, fun, args, positions, argnums, has_aux, sparsity)
        def body(ctx, args):
            lin = _Linear(ctx, fun, args, positions, where, argnums, has_aux)
            jac = _assemble(lin, build(lin), _is_int(argnums))
            return (jac, lin.aux) if has_aux else jac
        return _in_trace(fun, args, body)
    jac_fun.__name__ = f"{where}_{_function_name(fun)}"
    jac_fun._tapegrad_transform = (where, fun)
    return jac_fun


def _sparse(where, fun, args, positions, argnums, has_aux, sparsity):
    from .sparse_jacobian import sparse_jacobian
    if _context_of(args) is not None:
        raise TypeError(f"tapegrad.{where}(sparsity=...) returns a scipy.sparse matrix, which "
                        "cannot be traced: call it outside jit/grad/vmap (or drop sparsity= for "
                        "a dense Jacobian inside them)")
    if not _is_int(argnums):
        raise TypeError(f"tapegrad.{where}(sparsity=...) takes one int argnums")
    with TraceContext() as ctx:
        try:
            lin = _Linear(ctx, fun, [_trace_arg(ctx, a) for a in args], positions, where,
                          argnums, has_aux)
            jac = sparse_jacobian(lin, sparsity, forward=where == "jacfwd")
            return (jac, _concrete(lin.aux)) if has_aux else jac
        finally:
            ctx.tracers.clear()


def _shape_dtype(leaf):
    value = _value(leaf)
    return np.shape(value), np.dtype(getattr(value, "dtype", np.float64))


def _reverse_blocks(lin):
    blocks = []
    for o, out_leaf in enumerate(lin.out_leaves):
        shape, dtype = _shape_dtype(out_leaf)
        rows = []
        if _differentiable(lin.ctx, out_leaf):
            for k in range(int(np.prod(shape, dtype=np.int64))):
                cts = [None] * len(lin.out_leaves)
                cts[o] = _one_hot(shape, dtype, k)
                rows.append(lin.pullback_leaves(cts))
        blocks.append([_block([r[w] for r in rows], shape, _shape_dtype(wl)[0], 0)
                       for w, wl in enumerate(lin.wrt)])
    return blocks


def _forward_blocks(lin):
    columns = []            # per wrt leaf: per element, the output tangents
    for w, wrt_leaf in enumerate(lin.wrt):
        shape, dtype = _shape_dtype(wrt_leaf)
        cols = []
        for k in range(int(np.prod(shape, dtype=np.int64))):
            tangents = [None] * len(lin.wrt)
            tangents[w] = _one_hot(shape, dtype, k)
            cols.append(lin.pushforward_leaves(tangents))
        columns.append(cols)
    return [[_block([c[o] for c in cols], _shape_dtype(out_leaf)[0], _shape_dtype(wl)[0], -1)
             for wl, cols in zip(lin.wrt, columns)]
            for o, out_leaf in enumerate(lin.out_leaves)]


def jacrev(fun, argnums=0, has_aux=False, sparsity=None):
    """The Jacobian of fun by reverse mode: one adjoint sweep per output element.

    Args:
        fun: a function of arrays / pytrees with any (pytree) output.
        argnums: the argument(s) to differentiate (an int or a tuple of ints).
        has_aux: fun returns (output, aux).
        sparsity: None (dense), or for a function of one array returning one array, the
            Jacobian's pattern (scipy.sparse or boolean, out.size x x.size) or "detect" (from
            the tape): rows sharing no column share one sweep, and the result is a
            scipy.sparse CSR matrix (see tapegrad.sparse_jacobian).

    Returns:
        A function of fun's arguments returning, for each output leaf, an array shaped
        out.shape + arg.shape (a pytree argument gives its structure; tuple argnums a tuple).
        With has_aux, (jacobian, aux).

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.jacrev(lambda x: x[:2] * x[1:])(np.array([1.0, 2.0, 3.0]))
        array([[2., 1., 0.],
               [0., 3., 2.]])
    """
    return _jacobian("jacrev", fun, argnums, has_aux, _reverse_blocks, sparsity)


jacobian = jacrev


def jacfwd(fun, argnums=0, has_aux=False, sparsity=None):
    """The Jacobian of fun by forward mode: one tangent sweep per input element (cheaper than
    jacrev for functions with fewer inputs than outputs). Same results and arguments as jacrev;
    with sparsity=, columns sharing no row share one sweep (column colouring).

    Args:
        fun: a function of arrays (pytrees) returning an array (pytree).
        argnums: the argument (int) or arguments (tuple) to differentiate.
        has_aux: fun returns (output, aux); the result is then (jacobian, aux).
        sparsity: None (dense), "detect" (the pattern found by tracing) or a known pattern;
            the Jacobian is then a scipy.sparse matrix.

    Returns:
        A function of fun's arguments returning the Jacobian, out.shape + arg.shape.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> J = tg.jacfwd(lambda u: u[1:] - u[:-1], sparsity="detect")(np.zeros(4))
        >>> J.toarray()
        array([[-1.,  1.,  0.,  0.],
               [ 0., -1.,  1.,  0.],
               [ 0.,  0., -1.,  1.]])
    """
    return _jacobian("jacfwd", fun, argnums, has_aux, _forward_blocks, sparsity)


def hessian(fun, argnums=0, has_aux=False):
    """The Hessian of a scalar fun, forward-over-reverse: jacfwd(jacrev(fun)).

    Args:
        fun: a scalar function of arrays / pytrees.
        argnums: the argument(s) to differentiate; a tuple gives nested tuples of blocks.
        has_aux: fun returns (value, aux); the result is then (hessian, aux).

    Returns:
        A function of fun's arguments returning arrays shaped arg.shape + arg.shape.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 2.0]))
        array([[4., 2.],
               [2., 0.]])
    """
    return jacfwd(jacrev(fun, argnums, has_aux), argnums, has_aux)


def hvp(fun, primals, tangents):
    """fun's value and its Hessian-vector product, forward-over-reverse (no Hessian formed).

    Args:
        fun: a scalar function.
        primals, tangents: tuples, one entry per argument (as in jvp).

    Returns:
        (out, hvp): hvp is shaped like the single primal, or a tuple when there are several.

    Example:
        >>> import numpy as np, tapegrad as tg
        >>> tg.hvp(lambda x: np.sum(x ** 3), (np.array([1.0, 2.0]),), (np.array([1.0, 0.0]),))
        (array(9.), array([6., 0.]))
    """
    _check_tangent_tuples(primals, tangents, "hvp")
    argnums = 0 if len(primals) == 1 else tuple(range(len(primals)))
    (value, _), (_, product) = jvp(value_and_grad(fun, argnums, _where="hvp"), primals,
                                   tangents)
    return value, product
