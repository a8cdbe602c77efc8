"""Registry primitives for convolution and pooling (imported by nn.functional).

Convolution is im2col + matmul: `im2col` lays every kernel window of a padded (N, C, H, W) input
out as (N, C, kh, kw, oh, ow) with stride tricks (no Python loop over pixels); `col2im` is its
adjoint (a loop over the kh*kw kernel offsets only). Each is the other's VJP, so double backward
works. Max pooling has its own primitive, whose rule routes the gradient to the first maximum of
each window, as PyTorch's max_pool2d does (ties do not split).

Parameters: kernel, stride, dilation are (h, w) pairs; pads is ((top, bottom), (left, right)).
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .core import defprim, defvjp, shape_of
from .primitives import reshape


def out_size(size, kernel, stride, dilation, pad):
    """Output length along one axis of a window of `kernel` taps sliding over `size` + pads."""
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def _windows(x, kernel, stride, dilation, pads, pad_value=0.0):
    """A read-only strided view (N, C, kh, kw, oh, ow) of x's windows (x padded first)."""
    x = np.asarray(x)
    if any(pads[0]) or any(pads[1]):
        x = np.pad(x, ((0, 0), (0, 0)) + tuple(pads), constant_values=pad_value)
    n, c, h, w = x.shape
    oh = out_size(h, kernel[0], stride[0], dilation[0], (0, 0))
    ow = out_size(w, kernel[1], stride[1], dilation[1], (0, 0))
    s = x.strides
    return as_strided(x, (n, c, kernel[0], kernel[1], oh, ow),
                      (s[0], s[1], s[2] * dilation[0], s[3] * dilation[1],
                       s[2] * stride[0], s[3] * stride[1]), writeable=False)


def _im2col(x, kernel, stride, dilation, pads, pad_value=0.0):
    return np.ascontiguousarray(_windows(x, kernel, stride, dilation, pads, pad_value))


def _col2im(cols, shape, kernel, stride, dilation, pads):
    """Sum each window entry back onto the input position it was read from."""
    cols = np.asarray(cols)
    n, c, h, w = shape
    (pt, pb), (pl, pr) = pads
    out = np.zeros((n, c, h + pt + pb, w + pl + pr), dtype=cols.dtype)
    oh, ow = cols.shape[4:]
    for i in range(kernel[0]):
        top = i * dilation[0]
        for j in range(kernel[1]):
            left = j * dilation[1]
            out[:, :, top:top + stride[0] * (oh - 1) + 1:stride[0],
                left:left + stride[1] * (ow - 1) + 1:stride[1]] += cols[:, :, i, j]
    return out[:, :, pt:pt + h, pl:pl + w]


im2col = defprim("im2col", _im2col, grad_fn_name="Im2ColBackward0", kind="other")
col2im = defprim("col2im", _col2im, grad_fn_name="Col2ImBackward0", kind="other")
defvjp(im2col, lambda g, ans, x, kernel, stride, dilation, pads, pad_value=0.0:
       col2im(g, shape=shape_of(x), kernel=kernel, stride=stride, dilation=dilation, pads=pads))
defvjp(col2im, lambda g, ans, cols, shape, kernel, stride, dilation, pads:
       im2col(g, kernel=kernel, stride=stride, dilation=dilation, pads=pads))


# ---------------------------------------------------------------------------------------------
# Max pooling: the gradient goes to the first maximum of each window (NaN counts as maximum)
# ---------------------------------------------------------------------------------------------

def _taps(x, kernel, stride, dilation, pads):
    """Yield (i, j, view) for each kernel tap: the (N, C, oh, ow) strided slice of padded x that
    tap reads. Pooling loops over taps (few) on output-sized views, never over pixels."""
    x = np.asarray(x)
    if any(pads[0]) or any(pads[1]):
        x = np.pad(x, ((0, 0), (0, 0)) + tuple(pads), constant_values=-np.inf)
    oh = out_size(x.shape[2], kernel[0], stride[0], dilation[0], (0, 0))
    ow = out_size(x.shape[3], kernel[1], stride[1], dilation[1], (0, 0))
    for i in range(kernel[0]):
        top = i * dilation[0]
        for j in range(kernel[1]):
            left = j * dilation[1]
            yield i, j, x[:, :, top:top + stride[0] * (oh - 1) + 1:stride[0],
                          left:left + stride[1] * (ow - 1) + 1:stride[1]]


def _max_pool2d(x, kernel, stride, dilation, pads):
    taps = _taps(x, kernel, stride, dilation, pads)
    out = np.array(next(taps)[2])
    for _, _, view in taps:
        np.maximum(out, view, out=out)  # NaN wins, as in PyTorch
    return out


def _pool_argmax_mask(x, kernel, stride, dilation, pads):
    """One-hot (N, C, kh, kw, oh, ow) of each window's first maximum (or first NaN), x's dtype."""
    taps = _taps(x, kernel, stride, dilation, pads)
    _, _, first = next(taps)
    best = np.array(first)
    winner = np.zeros(best.shape, np.intp)
    for k, (_, _, view) in enumerate(taps, start=1):
        better = (view > best) | (np.isnan(view) & ~np.isnan(best))
        np.copyto(best, view, where=better)
        winner[better] = k
    taps = np.arange(kernel[0] * kernel[1]).reshape(1, 1, kernel[0], kernel[1], 1, 1)
    return (winner[:, :, None, None] == taps).astype(best.dtype)


max_pool2d = defprim("max_pool2d", _max_pool2d, grad_fn_name="MaxPool2DWithIndicesBackward0",
                     kind="other")
pool_argmax_mask = defprim("pool_argmax_mask", _pool_argmax_mask, differentiable=False,
                           kind="other")


def _max_pool2d_vjp(g, ans, x, kernel, stride, dilation, pads):
    mask = pool_argmax_mask(x, kernel=kernel, stride=stride, dilation=dilation, pads=pads)
    n, c, oh, ow = shape_of(g)
    spread = mask * reshape(g, shape=(n, c, 1, 1, oh, ow))
    return col2im(spread, shape=shape_of(x), kernel=kernel, stride=stride, dilation=dilation,
                  pads=pads)


defvjp(max_pool2d, _max_pool2d_vjp)
