"""Gradients over data on a Dask cluster (the optional extra `dask`: dask[array], distributed).

    import tapegrad.dask as tgd
    vg = tgd.value_and_grad(loss)            # loss(params, *chunks): a sum over the chunk's rows
    value, grad = vg(params, X, y)           # X, y: dask arrays chunked along rows; NumPy results
    tgd.vmap(tg.jit(tg.vmap(tg.grad(f))))(X) # a lazy dask array, one task per row chunk

Everything runs on Dask's own scheduler: the active `distributed.Client` when there is one
(`LocalCluster()` or `Client("tcp://scheduler:8786")`), Dask's threads otherwise. Functions travel
as cloudpickle sends them: a `tg.jit` object or a `source.*(jit=True)` derivative is sent as its
Python function, and each worker traces or emits it once, compiles once (from its own disk cache
when it has compiled the same code before) and keeps it for every later task and call.
"""
import collections
import inspect
import threading
import uuid
import warnings

import dask
import dask.array as da
import numpy as np

from . import transforms
from .tape import tree_flatten, tree_unflatten

__all__ = ["value_and_grad", "vmap"]


# ---------------------------------------------------------------------------------------------
# Shipping functions: one live copy per worker process
# ---------------------------------------------------------------------------------------------

_RECEIVED = collections.OrderedDict()   # token -> _Shipped, in a worker: its traces stay warm
_KEEP = 32
_RECEIVING = threading.Lock()


class _Shipped:
    """A function sent with every task of a graph. The first copy a worker unpickles is kept
    under the token and stands in for the later ones, so a jit traces and compiles once per
    worker, not once per task or per call."""

    def __init__(self, fun, token=None):
        self.fun = fun
        self.token = token or uuid.uuid4().hex

    def __reduce__(self):
        return _receive, (self.token, self.fun)

    def __dask_tokenize__(self):
        return self.token


def _receive(token, fun):
    with _RECEIVING:  # a worker's threads unpickle tasks at the same time
        shipped = _RECEIVED.get(token)
        if shipped is None:
            shipped = _RECEIVED[token] = _Shipped(fun, token)
            while len(_RECEIVED) > _KEEP:
                _RECEIVED.popitem(last=False)
        return shipped


# ---------------------------------------------------------------------------------------------
# Arguments: dask arrays are row-chunked data, anything else goes to every task as it is
# ---------------------------------------------------------------------------------------------

def _lazy_positions(args, where):
    lazy = [k for k, a in enumerate(args) if isinstance(a, da.Array)]
    if not lazy:
        raise TypeError(f"tapegrad.dask.{where}: no dask array among the arguments; pass the "
                        "data as dask.array.from_array(x, chunks=(rows, -1)), or use "
                        f"tapegrad.{where} for NumPy data")
    return lazy


def _row_aligned(arrays, where):
    """The arrays with the first one's row chunks and each other axis in one chunk."""
    first = arrays[0]
    for k, a in enumerate(arrays):
        if any(np.isnan(c) for c in a.chunks[0]):
            raise ValueError(f"tapegrad.dask.{where}: dask array argument {k} has unknown chunk "
                             "sizes (after boolean indexing or a filter, say); call "
                             "x.compute_chunk_sizes() on it first")
        if a.ndim == 0:
            raise ValueError(f"tapegrad.dask.{where}: dask array argument {k} is 0-d; the dask "
                             "arrays are data with rows along axis 0")
        if a.shape[0] != first.shape[0]:
            raise ValueError(f"tapegrad.dask.{where}: the dask arrays have different numbers of "
                             f"rows: shapes {first.shape} and {a.shape}; rows are split into "
                             "chunks together, so every dask argument needs the same axis 0")
    return [a.rechunk((first.chunks[0],) + (-1,) * (a.ndim - 1)) for a in arrays]


def _blockwise_inputs(arrays):
    """(array, index) pairs for da.blockwise: rows share index 'i', other axes get their own
    letters (single chunks, handed to the function whole)."""
    letters = iter("abcdefghjklmnopqrstuvwxy")  # not i (rows) nor z (value_and_grad's)
    pairs = []
    for a in arrays:
        pairs += [a, "i" + "".join(next(letters) for _ in range(a.ndim - 1))]
    return pairs, letters


def _context(shipped, template, lazy):
    """The function and the arguments every task shares, as one key of the graph: a worker
    receives them once per call, not once per task."""
    return dask.delayed((shipped, template, lazy), pure=True, traverse=False)


def _fill(template, lazy, blocks):
    args = list(template)
    for k, block in zip(lazy, blocks):
        args[k] = block
    return args


# ---------------------------------------------------------------------------------------------
# value_and_grad: a loss summed over row chunks
# ---------------------------------------------------------------------------------------------

def _chunk_value_and_grad(context, width, *blocks):
    """One row chunk: [value, gradient leaves...] as one row of float64."""
    shipped, template, lazy = context
    value, grads = shipped.fun(*_fill(template, lazy, blocks))
    leaves, _ = tree_flatten(grads, lambda x: isinstance(x, np.ndarray))
    out = np.empty((1, width))
    out[0, 0] = value
    np.concatenate([np.ravel(g) for g in leaves] or [np.empty(0)], out=out[0, 1:])
    return out


def _named(fun):
    """`name` (file:line of its def), for errors about the user's function."""
    code = getattr(inspect.unwrap(fun), "__code__", None)  # tg.jit(f): f's
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"`{getattr(fun, '__name__', fun)}`{where}"


def _check_row_sum(loss, args, lazy):
    """Refuse a loss that is not a sum over rows, as far as its value over no rows shows: a
    row sum is 0.0 there; per-row values have shape (0,), a mean is nan, and a part that does
    not depend on the rows (a penalty on the parameters) would be added once per chunk."""
    empty = [np.zeros((0,) + a.shape[1:], a.dtype) for a in (args[k] for k in lazy)]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # np.mean's "Mean of empty slice"
            value = np.asarray(loss(*_fill(args, lazy, empty)))
    except Exception:  # noqa: BLE001  (a loss that cannot run on no rows: nothing to learn)
        return
    name = _named(loss)
    if value.shape != ():
        raise ValueError(
            f"tapegrad.dask.value_and_grad: {name} returns shape {value.shape} for 0 rows, "
            "not a scalar: it must return the sum over the chunk's rows of the per-row losses "
            "(np.sum(...)), which the chunks' sums add up")
    if value.dtype.kind in "fc" and np.isnan(value):
        raise ValueError(
            f"tapegrad.dask.value_and_grad: {name} is nan over 0 rows, as a mean is: it must "
            "return a sum over the chunk's rows (np.sum, not np.mean or a division by "
            "len(X)); divide the total afterwards if you want the mean")
    if value != 0:
        raise ValueError(
            f"tapegrad.dask.value_and_grad: {name} is {value.item()!r} over 0 rows, not 0: "
            "it has a part that does not depend on the rows (a penalty on the parameters?), "
            "which summing chunks would count once per chunk; leave it out of the loss and "
            "add it (and its gradient) to the result")


def value_and_grad(loss, argnums=0, *, jit=False, face="trace", split_every=None):
    """The value and gradient of a loss summed over the rows of dask arrays.

    Args:
        loss: `loss(params, *data)` returning a scalar that is a sum over the rows of its
            data chunks (np.sum of per-row losses; no mean, no term of the parameters alone).
        argnums: which arguments to differentiate (an int or a tuple): the parameters, NumPy
            arrays, scalars or pytrees of them, never the dask arrays.
        jit: compile the per-chunk derivative with Numba (tg.jit, or source jit=True).
        face: "trace" (tg.value_and_grad) or "source" (tapegrad.source.value_and_grad).
        split_every: fan-in of Dask's tree reduction (Dask's default when None).

    Returns:
        `f(*args) -> (value, grads)`: the dask arguments are split into their row chunks (all
        share the first one's), every other argument goes whole to each task; `value` is a
        NumPy float64, `grads` NumPy arrays in the structure of the differentiated arguments.
        The computation runs on the active Dask scheduler (a distributed.Client if one
        exists). `scipy.optimize.minimize(f, x0, args=(X, y), jac=True)` takes f as it is.

    Example:
        >>> import dask, dask.array as da, numpy as np, tapegrad.dask as tgd
        >>> X = da.from_array(np.arange(6.0).reshape(3, 2), chunks=2)
        >>> f = tgd.value_and_grad(lambda w, X: np.sum((X @ w) ** 2))
        >>> with dask.config.set(scheduler="synchronous"):  # no cluster needed
        ...     f(np.ones(2), X)
        (np.float64(107.0), array([ 92., 122.]))

    A loss that is not a row sum is refused where its value over no rows shows it (shape,
    nan, not 0); a per-row loss of another form (a median, a max) is not detected.
    """
    if face == "trace":
        per_chunk = transforms.value_and_grad(loss, argnums)
        per_chunk = transforms.jit(per_chunk) if jit else per_chunk
    elif face == "source":
        from . import source
        per_chunk = source.value_and_grad(loss, argnums, jit=jit)
    else:
        raise ValueError(f"tapegrad.dask.value_and_grad: face={face!r}; use 'trace' or 'source'")
    shipped = _Shipped(per_chunk)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)

    def summed(*args):
        lazy = _lazy_positions(args, "value_and_grad")
        for k in nums:
            if k >= len(args):
                raise IndexError(f"tapegrad.dask.value_and_grad: argnums={argnums} but "
                                 f"{len(args)} arguments were passed")
            if k in lazy:
                raise TypeError(f"tapegrad.dask.value_and_grad: argument {k} (argnums) is a "
                                "dask array; gradients are summed over row chunks, so they are "
                                "taken with respect to parameters (NumPy arrays, scalars, "
                                "pytrees), not the data; pass it with np.asarray if it is one")
        arrays = _row_aligned([args[k] for k in lazy], "value_and_grad")
        _check_row_sum(loss, list(args), lazy)  # every call: a penalty may be 0 at the start
        wrt = args[argnums] if isinstance(argnums, int) else tuple(args[k] for k in nums)
        leaves, structure = tree_flatten(wrt, lambda x: isinstance(x, np.ndarray))
        sizes = [np.size(x) for x in leaves]
        width = 1 + sum(sizes)
        template = [None if k in lazy else a for k, a in enumerate(args)]
        pairs, _ = _blockwise_inputs(arrays)
        rows = da.blockwise(_chunk_value_and_grad, "iz", _context(shipped, template, lazy),
                            None, width, None, *pairs, new_axes={"z": width},
                            adjust_chunks={"i": 1}, dtype=np.float64, concatenate=True,
                            meta=np.empty((0, 0)))
        total = rows.sum(axis=0, split_every=split_every).compute()
        grads, start = [], 1
        for leaf, size in zip(leaves, sizes):
            dtype = leaf.dtype if leaf.dtype.kind == "f" else np.float64
            grads.append(total[start:start + size].reshape(np.shape(leaf)).astype(dtype))
            start += size
        return total[0], tree_unflatten(structure, grads)

    summed.__name__ = f"dask_value_and_grad_{getattr(loss, '__name__', 'loss')}"
    summed._shipped = shipped
    return summed


# ---------------------------------------------------------------------------------------------
# vmap: a batched function mapped over row chunks, lazily
# ---------------------------------------------------------------------------------------------

def _chunk_map(context, *blocks):
    shipped, template, lazy = context
    out = np.asarray(shipped.fun(*_fill(template, lazy, blocks)))
    if out.ndim == 0 or out.shape[0] != blocks[0].shape[0]:
        raise ValueError(f"tapegrad.dask.vmap: {_named(shipped.fun)} returned shape "
                         f"{out.shape} for a chunk of {blocks[0].shape[0]} rows; it must "
                         "return one row per input row")
    return out


def _describe(value):
    return f"shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__


def vmap(fun):
    """Map a batched function over the row chunks of dask arrays, lazily.

    Args:
        fun: a function of batches that returns one array with a row per input row, e.g.
            `tg.jit(tg.vmap(tg.grad(f)))`.

    Returns:
        `g(*args) -> dask.array.Array`: one task per row chunk of the dask arguments (all
        split as the first one is); other arguments go whole to each task. The result's row
        chunks are the input's; its row shape and dtype come from calling fun on one row of
        zeros here (which also traces and compiles fun once in this process).

    Example:
        >>> import dask, dask.array as da, numpy as np, tapegrad.dask as tgd
        >>> X = da.from_array(np.arange(6.0).reshape(3, 2), chunks=2)
        >>> with dask.config.set(scheduler="synchronous"):  # no cluster needed
        ...     tgd.vmap(lambda X: X * 2.0)(X).compute()
        array([[ 0.,  2.],
               [ 4.,  6.],
               [ 8., 10.]])
    """
    shipped = _Shipped(fun)

    def mapped(*args):
        lazy = _lazy_positions(args, "vmap")
        arrays = _row_aligned([args[k] for k in lazy], "vmap")
        template = [None if k in lazy else a for k, a in enumerate(args)]
        probe = fun(*_fill(template, lazy, [np.zeros((1,) + a.shape[1:], a.dtype)
                                            for a in arrays]))
        if not isinstance(probe, np.ndarray) or probe.ndim == 0 or probe.shape[0] != 1:
            raise ValueError(f"tapegrad.dask.vmap: {_named(fun)} returned "
                             f"{_describe(probe)} for 1 row; it must return one array with a "
                             "row per input row (tuples: map each output on its own)")
        pairs, letters = _blockwise_inputs(arrays)
        new = "".join(next(letters) for _ in range(probe.ndim - 1))
        return da.blockwise(_chunk_map, "i" + new, _context(shipped, template, lazy), None,
                            *pairs, new_axes=dict(zip(new, probe.shape[1:])), dtype=probe.dtype,
                            concatenate=True, meta=np.empty((0,) * probe.ndim, probe.dtype))

    mapped.__name__ = f"dask_vmap_{getattr(fun, '__name__', 'fun')}"
    return mapped
