"""CPU lowering of the convolution and pooling primitives (tapegrad/primitives_nn.py).

Each is built from the interpreter's own ops, with index maps computed once from the registry's
NumPy forward applied to a grid of positions, so the layouts cannot drift from the eager ones:

    im2col        a gather (after a padded copy when there are pads)
    col2im        a scatter-add into the padded shape (then the interior, when there are pads)
    max_pool2d    one `pool` op (a kernel of this module): each window's maximum (NaN wins)
    pool_scatter  g added at each window's first maximum (ties do not split), as `_winners`
    pool_gather   gx read at each window's first maximum

The pool op reads each window's taps through an index map of their flat positions (-1 on a pad),
one pass over the windows: the gathers and masks of whole arrays cost ten times more.
"""
import functools
import math

import numpy as np

from tapegrad.primitives_nn import _im2col, out_size

_NO_PADS = ((0, 0), (0, 0))


def _size(shape):
    return math.prod(shape)


def _padded(lowering, ref, shape, pads, fill):
    """ref's (N, C, H, W) values inside `fill` pads: (ref, padded shape, its position grid)."""
    (pt, pb), (pl, pr) = pads
    n, c, h, w = shape
    padded = (n, c, h + pt + pb, w + pl + pr)
    grid = np.arange(_size(padded)).reshape(padded)
    if padded == tuple(shape):
        return ref, padded, grid
    positions = grid[:, :, pt:pt + h, pl:pl + w]
    out = lowering.buffer(_size(padded))
    base = lowering.const(np.full(_size(padded), fill)) if fill else out
    lowering.emit("scatter_set", out, _size(padded), base, ref, sb=1,
                  x0=lowering.index_map(positions), x1=positions.size, x2=1 if fill else 0)
    return out, padded, grid


def _lower_im2col(lowering, ins, shapes, out_shape, kernel, stride, dilation, pads,
                  pad_value=0.0, batch_inner=False):
    ref, _, grid = _padded(lowering, lowering.ref(ins.ins[0]), shapes[0], pads, pad_value)
    lowering.gather(lowering.ref(ins.out), ref,
                    _im2col(grid, kernel, stride, dilation, _NO_PADS, batch_inner=batch_inner))


def _lower_col2im(lowering, ins, shapes, out_shape, shape, kernel, stride, dilation, pads,
                  batch_inner=False):
    (pt, pb), (pl, pr) = pads
    n, c, h, w = shape
    padded = (n, c, h + pt + pb, w + pl + pr)
    grid = np.arange(_size(padded)).reshape(padded)
    positions = _im2col(grid, kernel, stride, dilation, _NO_PADS, batch_inner=batch_inner)
    out = lowering.ref(ins.out)
    target = out if padded == tuple(shape) else lowering.buffer(_size(padded))
    lowering.emit("scatter_add", target, _size(padded), target, lowering.ref(ins.ins[0]), sb=1,
                  x0=lowering.index_map(positions), x1=positions.size, x2=0)
    if target is not out:
        lowering.gather(out, target, grid[:, :, pt:pt + h, pl:pl + w])


def _taps(grid, kernel, stride, dilation):
    """Positions (N, C, oh, ow, K) of each window's K taps in a padded grid."""
    oh = out_size(grid.shape[2], kernel[0], stride[0], dilation[0], (0, 0))
    ow = out_size(grid.shape[3], kernel[1], stride[1], dilation[1], (0, 0))
    taps = [grid[:, :, i * dilation[0]:i * dilation[0] + stride[0] * (oh - 1) + 1:stride[0],
                 j * dilation[1]:j * dilation[1] + stride[1] * (ow - 1) + 1:stride[1]]
            for i in range(kernel[0]) for j in range(kernel[1])]
    return np.stack(taps, axis=-1)


def _emit_pool(lowering, ins, kind, g_ref, x_shape, kernel, stride, dilation, pads):
    """One `pool` op over every window of x (the last operand, padded with -inf): its taps'
    flat positions in the padded x are the op's index map. kind 1 writes into the padded shape
    (its interior is the result), kind 2 reads g padded with zeros."""
    x, padded, grid = _padded(lowering, lowering.ref(ins.ins[-1]), x_shape, pads, -np.inf)
    taps = _taps(grid, kernel, stride, dilation)
    out = lowering.ref(ins.out)
    target = lowering.buffer(_size(padded)) if kind == 1 and padded != tuple(x_shape) else out
    if kind == 2:
        g_ref = _padded(lowering, g_ref, x_shape, pads, 0.0)[0]
    lowering.emit("pool", target, _size(taps.shape[:-1]), g_ref, x, sa=kind,
                  sb=taps.shape[-1], sc=_size(padded), x0=lowering.index_map(taps))
    if target is not out:
        (pt, _), (pl, _) = pads
        lowering.gather(out, target, grid[:, :, pt:pt + x_shape[2], pl:pl + x_shape[3]])


def _lower_max_pool2d(lowering, ins, shapes, out_shape, **geometry):
    _emit_pool(lowering, ins, 0, lowering.ref(ins.ins[0]), shapes[0], **geometry)


def _lower_pool_scatter(lowering, ins, shapes, out_shape, **geometry):
    _emit_pool(lowering, ins, 1, lowering.ref(ins.ins[0]), shapes[1], **geometry)


def _lower_pool_gather(lowering, ins, shapes, out_shape, **geometry):
    _emit_pool(lowering, ins, 2, lowering.ref(ins.ins[0]), shapes[1], **geometry)


# appended to the interpreter's generated module (tapegrad_jit.cpu.interpreter_source)
KERNEL_SOURCE = '''

@njit(**OPTIONS)
def _first_maximum(v, x, ipool, start, taps):
    """(tap, value) of a window's first maximum, or of its first NaN. Plain loads and a strict
    `>` keep the loop fast (a test per load, or NaN-aware compares, cost several times more);
    NaN is rare and looked for again."""
    best = v[x + ipool[start]]
    first = 0
    nan = best != best
    for t in range(1, taps):
        y = v[x + ipool[start + t]]
        nan |= y != y
        if y > best:
            best = y
            first = t
    if nan:
        for t in range(taps):
            y = v[x + ipool[start + t]]
            if y != y:
                return t, y
    return first, best


@njit(**OPTIONS)
def pool(v, ipool, o, n, a, b, kind, taps, count, m):
    # n windows of `taps` taps over x at b, window w's positions at ipool[m + w * taps:].
    # kind 0: the max; 1 (pool_scatter): g at a added at the first maximum, into count zeros;
    # 2 (pool_gather): gx at a (laid out as x) read at the first maximum
    if kind == 1:
        for j in range(count):
            v[o + j] = 0.0
    for w in range(n):
        start = m + w * taps
        first, best = _first_maximum(v, b, ipool, start, taps)
        if kind == 0:
            v[o + w] = best
        elif kind == 1:
            v[o + ipool[start + first]] += v[a + w]
        else:
            v[o + w] = v[a + ipool[start + first]]

'''


LOWERINGS = {"im2col": _lower_im2col, "col2im": _lower_col2im, "max_pool2d": _lower_max_pool2d,
             "pool_scatter": _lower_pool_scatter, "pool_gather": _lower_pool_gather}


def lowering_for(lowering, name):
    """The lowering of primitive `name` bound to `lowering` (a cpu._Lowering), or None."""
    rule = LOWERINGS.get(name)
    return None if rule is None else functools.partial(rule, lowering)
