"""torch.func on the traced face: grad, grad_and_value, vmap, jacrev, jacfwd, hessian and
functional_call, with PyTorch's names and result layouts.

Tensors go in and Tensors come out, as in torch.func. The function runs on tapegrad's tracer
(tapegrad.trace): it sees traced values, which take tapegrad functions, NumPy functions, operators
and the common Tensor methods; transforms nest (hessian = jacfwd(jacrev)). Python ints (and
other non-array arguments) are static, as in tapegrad.grad.
"""
import contextlib
import functools

import numpy as np

from . import forward as _forward
from . import transforms as _transforms
from .tape import tree_flatten, tree_unflatten
from .tensor import Tensor

__all__ = ["functional_call", "grad", "grad_and_value", "hessian", "jacfwd", "jacrev", "vmap"]


def _to_tensors(tree):
    """Concrete NumPy results become Tensors; traced ones (inside an outer transform) and static
    values stay."""
    leaves, structure = tree_flatten(tree, lambda x: True)
    return tree_unflatten(structure, [
        Tensor._wrap(np.asarray(x)) if isinstance(x, (np.ndarray, np.generic)) else x
        for x in leaves])


def _on_tracer(transformed, fun):
    """transformed (a tapegrad transform of fun) called on traced arguments: in the caller's
    trace when it has one, else in a fresh one whose results come back as Tensors. Keyword
    arguments pass through to fun, not differentiated or mapped (torch.func's rule)."""
    @functools.wraps(fun)
    def call(*args, **kwargs):
        inner = transformed(functools.partial(fun, **kwargs) if kwargs else fun)
        out = _transforms._in_trace(inner, args, lambda ctx, targs: inner(*targs))
        return _to_tensors(out)
    return call


def grad_and_value(func, argnums=0, has_aux=False):
    """torch.func.grad_and_value: a function returning (grad, value), or with has_aux
    (grad, (value, aux)). argnums is an int or a tuple of ints (then grad is a tuple).

    Args:
        func: a function of Tensors returning a one-element Tensor.
        argnums: the argument (int) or arguments (tuple) to differentiate.
        has_aux: func returns (output, aux); aux is passed through.

    Returns:
        A function of func's arguments returning (grad, value).

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.func import grad_and_value
        >>> grad_and_value(lambda x: (x ** 2).sum())(torch.tensor([1.0, 2.0]))
        (tensor([2., 4.]), tensor(5.))
    """
    def transformed(f):
        vg = _transforms.value_and_grad(f, argnums, has_aux, _where="func.grad_and_value")

        def gv(*args):
            value, g = vg(*args)
            return g, value
        return gv
    return _on_tracer(transformed, func)


def grad(func, argnums=0, has_aux=False):
    """torch.func.grad: a function returning the gradient of func's scalar output with respect to
    the arguments argnums; with has_aux, (grad, aux).

    Args:
        func: a function of Tensors returning a one-element Tensor.
        argnums: the argument (int) or arguments (tuple) to differentiate.
        has_aux: func returns (output, aux); aux is passed through.

    Returns:
        A function of func's arguments returning the gradient.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.func import grad
        >>> grad(lambda x: (x ** 2).sum())(torch.tensor([1.0, 2.0]))
        tensor([2., 4.])
    """
    def transformed(f):
        vg = _transforms.value_and_grad(f, argnums, has_aux, _where="func.grad")

        def g(*args):
            value, gr = vg(*args)
            return (gr, value[1]) if has_aux else gr
        return g
    return _on_tracer(transformed, func)


def jacrev(func, argnums=0, *, has_aux=False, chunk_size=None, _preallocate_and_copy=False):
    """torch.func.jacrev: the Jacobian by reverse mode, out.shape + arg.shape per output and
    argument; with has_aux, (jacobian, aux). chunk_size is accepted (sweeps run one by one).

    Args:
        func: a function of Tensors returning a Tensor (or a tuple of them).
        argnums: the argument (int) or arguments (tuple) to differentiate.
        has_aux: func returns (output, aux); aux is passed through.
        chunk_size: accepted for PyTorch compatibility.

    Returns:
        A function of func's arguments returning the Jacobian.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.func import jacrev
        >>> jacrev(lambda x: x ** 2)(torch.tensor([1.0, 2.0]))
        tensor([[2., 0.],
                [0., 4.]])
    """
    _check_chunk("jacrev", chunk_size)
    return _on_tracer(lambda f: _forward.jacrev(f, argnums, has_aux), func)


def jacfwd(func, argnums=0, has_aux=False, *, randomness="error"):
    """torch.func.jacfwd: the Jacobian by forward mode (same layout as jacrev).

    Args:
        func: a function of Tensors returning a Tensor (or a tuple of them).
        argnums: the argument (int) or arguments (tuple) to differentiate.
        has_aux: func returns (output, aux); aux is passed through.
        randomness: as for vmap ('error', 'different' or 'same').

    Returns:
        A function of func's arguments returning the Jacobian.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.func import jacfwd
        >>> jacfwd(lambda x: x ** 2)(torch.tensor([1.0, 2.0]))
        tensor([[2., 0.],
                [0., 4.]])
    """
    _check_randomness("jacfwd", randomness)
    return _on_tracer(lambda f: _forward.jacfwd(f, argnums, has_aux), func)


def hessian(func, argnums=0):
    """torch.func.hessian: jacfwd(jacrev(func)), arg.shape + arg.shape for a scalar func.

    Args:
        func: a function of Tensors returning a one-element Tensor.
        argnums: the argument (int) or arguments (tuple) to differentiate.

    Returns:
        A function of func's arguments returning the Hessian.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.func import hessian
        >>> hessian(lambda x: (x ** 3).sum())(torch.tensor([1.0, 2.0]))
        tensor([[ 6.,  0.],
                [ 0., 12.]])
    """
    return _on_tracer(lambda f: _forward.hessian(f, argnums), func)


def _check_chunk(where, chunk_size):
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size <= 0):
        raise ValueError(f"tapegrad.func.{where}: chunk_size should be a positive int or None, "
                         f"got {chunk_size!r}")


def _check_randomness(where, randomness):
    if randomness not in ("error", "different", "same"):
        raise RuntimeError(f"tapegrad.func.{where}: Only allowed values for randomness are "
                           f"'error', 'different', or 'same'. Got {randomness!r}")


def _check_dims(name, dims):
    for d in dims if isinstance(dims, (tuple, list)) else (dims,):
        if d is not None and not isinstance(d, (int, np.integer)):
            raise ValueError(f"tapegrad.func.vmap: {name} entries must be an int or None, got "
                             f"{d!r}; per-leaf dims of a nested structure are not supported, give "
                             "one dim for the whole argument")


def _move_out(out, out_dims):
    """Results come stacked on axis 0; torch.func.vmap puts them on out_dims."""
    if isinstance(out, tuple) and isinstance(out_dims, (tuple, list)):
        if len(out_dims) != len(out):
            raise ValueError(f"tapegrad.func.vmap: out_dims has {len(out_dims)} entries for "
                             f"{len(out)} outputs")
        return tuple(_move_out(o, d) for o, d in zip(out, out_dims))
    if out_dims == 0:
        return out
    leaves, structure = tree_flatten(out, lambda x: True)
    return tree_unflatten(structure, [np.moveaxis(x, 0, out_dims) for x in leaves])


def vmap(func, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
    """torch.func.vmap: func mapped over in_dims of its arguments (an int or None for all, or a
    tuple with one per argument; a dict/list/tuple argument maps each of its leaves), results
    stacked on out_dims. randomness: 'error' (PyTorch's default) refuses random numbers drawn
    inside func, 'different' draws them per row; 'same' is refused when func draws any.

    Args:
        func: a function of one example's Tensors.
        in_dims: the mapped dimension of each argument (int, None, or a tuple per argument).
        out_dims: where the batch dimension goes in the results.
        randomness: 'error', 'different' or 'same' (see above).
        chunk_size: rows per chunk (None for all at once).

    Returns:
        The batched function.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.func import vmap
        >>> vmap(lambda x: x.sum())(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        tensor([3., 7.])
    """
    _check_randomness("vmap", randomness)
    _check_chunk("vmap", chunk_size)
    _check_dims("in_dims", in_dims)
    _check_dims("out_dims", out_dims)

    def transformed(f):
        mapped = _transforms.vmap(f, in_dims)

        def run(*args):
            before = _rng_state()
            out = mapped(*args)
            # rows run one by one, so each row's draws differ: what 'different' asks for
            if randomness != "different" and _rng_state() != before:
                raise RuntimeError(
                    f"vmap: called random operation while in randomness {randomness} mode; pass "
                    "randomness='different' to draw different numbers per row" +
                    (" ('same' is not supported)" if randomness == "same" else ""))
            return _move_out(out, out_dims)
        return run
    return _on_tracer(transformed, func)


def _rng_state():
    from .functions import _generator
    return _generator().bit_generator.state


# ---------------------------------------------------------------------------------------------
# functional_call: a module run with the given parameters and buffers in place of its own
# ---------------------------------------------------------------------------------------------

def _slot_of(module, name):
    """(owner module, its store dict, attribute name) of a dotted parameter or buffer name."""
    path, _, attr = name.rpartition(".")
    try:
        owner = module.get_submodule(path) if path else module
    except AttributeError:
        owner = None
    for store in (owner._parameters, owner._buffers) if owner is not None else ():
        if attr in store:
            return owner, store, attr
    raise AttributeError(f"tapegrad.func.functional_call: {type(module).__name__} has no "
                         f"parameter or buffer named {name!r}; the names are those of "
                         "module.named_parameters() and module.named_buffers()")


def _as_value(value):
    # a NumPy array would lack the Tensor methods the module's forward calls
    return Tensor._wrap(value) if isinstance(value, np.ndarray) else value


def functional_call(module, parameter_and_buffer_dicts, args=None, kwargs=None, *,
                    tie_weights=True, strict=False):
    """torch.func.functional_call: module(*args, **kwargs) with the parameters and buffers named
    in parameter_and_buffer_dicts (a dict, or a tuple of dicts) in place of its own; the module
    is left as it was. The values may be Tensors or traced values, so grad/vmap of a function
    calling functional_call differentiate a module's output with respect to its weights.

    Args:
        module: the nn.Module.
        parameter_and_buffer_dicts: names to values, a dict or a tuple of dicts.
        args: the positional arguments (one value or a tuple).
        kwargs: the keyword arguments.
        tie_weights: accepted for PyTorch compatibility.
        strict: require every parameter and buffer to be given.

    Returns:
        module's output.

    Example:
        >>> import tapegrad as torch
        >>> from tapegrad.func import functional_call
        >>> lin = torch.nn.Linear(2, 1, bias=False)
        >>> functional_call(lin, {"weight": torch.tensor([[1.0, 2.0]])}, (torch.tensor([3.0, 4.0]),))
        tensor([11.])
    """
    dicts = parameter_and_buffer_dicts
    dicts = tuple(dicts) if isinstance(dicts, (tuple, list)) else (dicts,)
    given = {}
    for d in dicts:
        for name in d:
            if name in given:
                raise ValueError(f"tapegrad.func.functional_call: {name!r} appeared in multiple "
                                 "dictionaries; give each name once")
        given.update(d)
    if strict:
        expected = {n for n, _ in module.named_parameters(remove_duplicate=False)} | \
            {n for n, _ in module.named_buffers(remove_duplicate=False)}
        missing, unexpected = sorted(expected - set(given)), sorted(set(given) - expected)
        if missing or unexpected:
            raise RuntimeError(f"Error(s) in reparametrizing for {type(module).__name__}: "
                               f"missing key(s): {missing}, unexpected key(s): {unexpected}")
    swaps = {}                                  # (store id, attr) -> (store, attr, new value)
    by_tensor = {}
    for name, value in given.items():
        owner, store, attr = _slot_of(module, name)
        by_tensor[id(store[attr])] = _as_value(value)
        swaps[id(store), attr] = store, attr, _as_value(value)
    if tie_weights:   # a weight shared by two names takes the value given under either
        for name, t in list(module.named_parameters(remove_duplicate=False)) + \
                list(module.named_buffers(remove_duplicate=False)):
            if id(t) in by_tensor and name not in given:
                _, store, attr = _slot_of(module, name)
                swaps.setdefault((id(store), attr), (store, attr, by_tensor[id(t)]))
    args = () if args is None else args if isinstance(args, tuple) else (args,)
    with _swapped(swaps.values()):
        return module(*args, **(kwargs or {}))


@contextlib.contextmanager
def _swapped(swaps):
    """Each (store, name, value) put in for the duration of the block (store[name] = value);
    the old values back after it, however it ends."""
    swaps = list(swaps)
    saved = [(store, name, store[name]) for store, name, _ in swaps]
    try:
        for store, name, value in swaps:
            store[name] = value
        yield
    finally:
        for store, name, old in saved:
            store[name] = old
