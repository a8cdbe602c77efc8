"""CPU lowering of the convolution and pooling primitives (tapegrad/primitives_nn.py).

Each is built from the interpreter's own ops, with index maps computed once from the registry's
NumPy forward applied to a grid of positions, so the layouts cannot drift from the eager ones:

    im2col        a gather (after a padded copy when there are pads)
    col2im        a scatter-add into the padded shape (then the interior, when there are pads)
    max_pool2d    a gather of every window's taps, then a max over the taps (NaN wins)
    pool_scatter  the first maximum of each window as a mask over its taps (ties do not split),
    pool_gather   then a scatter-add of g at it, or a sum over the taps of the masked gather

The first maximum is the smallest tap number holding the window's maximum (or a NaN): a min over
`where(hit, tap, K)`, as the registry's `_winners`.
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


def _windows(lowering, ref, shape, kernel, stride, dilation, pads, fill):
    """Every window's taps gathered: (ref, window shape, tap positions in the padded grid, the
    padded shape)."""
    ref, padded, grid = _padded(lowering, ref, shape, pads, fill)
    taps = _taps(grid, kernel, stride, dilation)
    return lowering.gather(None, ref, taps), taps.shape, taps, padded


def _lower_max_pool2d(lowering, ins, shapes, out_shape, kernel, stride, dilation, pads):
    windows, shape, _, _ = _windows(lowering, lowering.ref(ins.ins[0]), shapes[0], kernel,
                                    stride, dilation, pads, -np.inf)
    lowering.reduce("max", lowering.ref(ins.out), windows, shape, (4,))


def _first_maximum(lowering, x_ref, x_shape, kernel, stride, dilation, pads):
    """1.0 at each window's first maximum (or first NaN), 0.0 elsewhere, over the window shape;
    with the tap positions and the padded shape."""
    windows, shape, taps, padded = _windows(lowering, x_ref, x_shape, kernel, stride, dilation,
                                            pads, -np.inf)
    best, kept = lowering.reduce("max", None, windows, shape, (4,))
    best = lowering.broadcast(best, kept, shape)
    hit = lowering.elementwise("logical_or", None, shape, [
        (lowering.elementwise("eq", None, shape, [(windows, shape), (best, shape)]), shape),
        (lowering.elementwise("ne", None, shape, [(windows, shape), (windows, shape)]), shape)])
    n_taps = shape[-1]
    tap = lowering.broadcast(lowering.const(np.arange(n_taps)), (n_taps,), shape)
    candidate = lowering.elementwise("where", None, shape, [
        (hit, shape), (tap, shape), (lowering.const(float(n_taps)), ())])
    first, kept = lowering.reduce("min", None, candidate, shape, (4,))
    mask = lowering.elementwise("eq", None, shape, [
        (tap, shape), (lowering.broadcast(first, kept, shape), shape)])
    return mask, shape, taps, padded


def _lower_pool_scatter(lowering, ins, shapes, out_shape, kernel, stride, dilation, pads):
    g_shape, x_shape = shapes
    mask, shape, taps, padded = _first_maximum(lowering, lowering.ref(ins.ins[1]), x_shape,
                                               kernel, stride, dilation, pads)
    g = lowering.broadcast(lowering.ref(ins.ins[0]), g_shape + (1,), shape)
    zero = lowering.const(0.0)
    routed = lowering.elementwise("where", None, shape, [(mask, shape), (g, shape), (zero, ())])
    out = lowering.ref(ins.out)
    target = out if padded == tuple(x_shape) else lowering.buffer(_size(padded))
    lowering.emit("scatter_add", target, _size(padded), target, routed, sb=1,
                  x0=lowering.index_map(taps), x1=taps.size, x2=0)
    if target is not out:
        (pt, _), (pl, _) = pads
        grid = np.arange(_size(padded)).reshape(padded)
        lowering.gather(out, target, grid[:, :, pt:pt + x_shape[2], pl:pl + x_shape[3]])


def _lower_pool_gather(lowering, ins, shapes, out_shape, kernel, stride, dilation, pads):
    gx_shape, x_shape = shapes
    geometry = (kernel, stride, dilation, pads)
    mask, shape, _, _ = _first_maximum(lowering, lowering.ref(ins.ins[1]), x_shape, *geometry)
    read, _, _, _ = _windows(lowering, lowering.ref(ins.ins[0]), gx_shape, *geometry, 0.0)
    zero = lowering.const(0.0)
    routed = lowering.elementwise("where", None, shape, [(mask, shape), (read, shape), (zero, ())])
    lowering.reduce("sum", lowering.ref(ins.out), routed, shape, (4,))


LOWERINGS = {"im2col": _lower_im2col, "col2im": _lower_col2im, "max_pool2d": _lower_max_pool2d,
             "pool_scatter": _lower_pool_scatter, "pool_gather": _lower_pool_gather}


def lowering_for(lowering, name):
    """The lowering of primitive `name` bound to `lowering` (a cpu._Lowering), or None."""
    rule = LOWERINGS.get(name)
    return None if rule is None else functools.partial(rule, lowering)
