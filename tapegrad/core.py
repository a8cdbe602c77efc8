"""Primitives and dispatch: where every kind of value meets the one registry of derivative rules.

A `Primitive` is an operation with a NumPy forward (`impl`), one vector-Jacobian rule per argument,
the name PyTorch shows for its `grad_fn`, and a source template for emitted code. Calling a primitive
*binds* it: the argument with the highest `_bind_level` decides who handles the call.

    level 0  NumPy arrays and Python scalars  -> impl runs at once
    level 1  tapegrad.Tensor                  -> eager autograd records a graph node
    level 2  trace.Tracer                     -> an instruction is appended to a tape
    level 3  source symbols                   -> source text is built

Derivative rules are written with primitives and operators only, so one rule serves every face: run
on arrays it computes a gradient, on Tensors it builds a graph (create_graph), on tracers it records
the adjoint sweep of a tape, on symbols it writes source code.
"""
import numpy as np

REGISTRY = {}

try:  # NumPy's error state is a context variable: setting it directly costs a third of errstate
    from numpy._core._ufunc_config import _extobj_contextvar as _ERROR_STATE
    with np.errstate(all="ignore"):
        _QUIET = _ERROR_STATE.get()
except (ImportError, AttributeError):  # another NumPy: the public context manager
    _ERROR_STATE = _QUIET = None


def quiet_errors():
    """Switch NumPy's floating-point warnings off (for a backward sweep); returns the token
    restore_errors takes."""
    if _ERROR_STATE is None:
        state = np.errstate(all="ignore")
        state.__enter__()
        return state
    return _ERROR_STATE.set(_QUIET)


def restore_errors(token):
    if _ERROR_STATE is None:
        token.__exit__(None, None, None)
    else:
        _ERROR_STATE.reset(token)


def quiet(fn):
    """fn with NumPy's floating-point warnings off: overflow and log(0) follow IEEE, as in PyTorch.
    It sits on the eager hot path (exp, log, div, pow), hence no `with np.errstate` here."""
    if _ERROR_STATE is None:
        def impl(*args, **params):
            with np.errstate(all="ignore"):
                return fn(*args, **params)
    else:
        def impl(*args, **params):
            token = _ERROR_STATE.set(_QUIET)
            try:
                return fn(*args, **params)
            finally:
                _ERROR_STATE.reset(token)
        impl.quiet_fn = fn  # Tensor._bind switches the state itself and calls fn: one frame less
    impl.__name__ = fn.__name__
    impl.__wrapped__ = fn  # tracing calls fn inside one errstate for the whole trace
    return impl


class Primitive:
    """One operation of the registry. Instances are callable: `sin(x)` binds `sin` to x.

    vjp_rules: tuple with one entry per positional argument: `rule(g, ans, *args, **params)` returns
    the cotangent of that argument (before unbroadcasting), or the entry is None for arguments that
    carry no gradient (masks, indices). `variadic_vjp(argnum, g, ans, *args, **params)` serves
    primitives with any number of arguments (cat, stack).
    """

    def __init__(self, name, impl, *, grad_fn_name, source=None, kind="elementwise",
                 differentiable=True, eager_impl=None):
        self.name = name
        self.impl = impl
        # the eager face follows PyTorch's values where they differ from NumPy's (sign(NaN))
        self.eager_impl = impl if eager_impl is None else eager_impl
        self.grad_fn_name = grad_fn_name  # a str, or a function (args, params) -> str
        self.source = source  # template such as "np.sin({0})"; None where an emitter needs care
        self.kind = kind  # elementwise | reduction | linalg | shape | index | loss | other
        self.differentiable = differentiable
        self.vjp_rules = ()
        self.variadic_vjp = None

    def __call__(self, *args, **params):
        # dispatch (bind delegates here): the argument type with the highest _bind_level handles it
        handler, level = None, 0
        for arg in args:
            kind = type(arg)
            arg_level = _levels.get(kind)
            if arg_level is None:
                arg_level = _levels[kind] = getattr(kind, "_bind_level", 0)
            if arg_level > level:
                handler, level = kind, arg_level
        if handler is None:
            return self.impl(*args, **params)
        return handler._bind(self, args, params)

    def __repr__(self):
        return f"<primitive {self.name}>"

    def torch_name(self, args, params):
        name = self.grad_fn_name
        return name if isinstance(name, str) else name(args, params)

    def vjp(self, argnum, g, ans, args, params):
        """The cotangent of args[argnum] given the output cotangent g; None means zero."""
        if self.variadic_vjp is not None:
            return self.variadic_vjp(argnum, g, ans, *args, **params)
        if not self.differentiable:
            return None
        if argnum >= len(self.vjp_rules):
            raise NotImplementedError(
                f"tapegrad: primitive '{self.name}' has no derivative rule for argument {argnum}")
        rule = self.vjp_rules[argnum]
        return None if rule is None else rule(g, ans, *args, **params)


def defprim(name, impl, *, grad_fn_name=None, **kwargs):
    """Register a primitive; grad_fn_name defaults to PyTorch's convention (`ExpBackward0`)."""
    if grad_fn_name is None:
        grad_fn_name = name.capitalize() + "Backward0"
    prim = Primitive(name, impl, grad_fn_name=grad_fn_name, **kwargs)
    REGISTRY[name] = prim
    return prim


def defvjp(prim, *rules):
    """Attach one rule per argument (None: that argument gets no gradient)."""
    prim.vjp_rules = tuple(rules)


def defvjp_variadic(prim, rule):
    prim.variadic_vjp = rule


_levels = {}  # type -> _bind_level, cached: bind sits on every eager operation's hot path


def bind(prim, args, params):
    """Run `prim` on args: the value type with the highest _bind_level handles the call."""
    return prim(*args, **params)  # the dispatch itself lives, inlined, in Primitive.__call__


def shape_of(x):
    return getattr(x, "shape", ())


def ndim_of(x):
    return len(shape_of(x))


def dtype_of(x):
    """The NumPy dtype of any value; Tensors and tracers expose theirs as `np_dtype`."""
    np_dtype = getattr(x, "np_dtype", None)
    return np_dtype if np_dtype is not None else np.result_type(x)
