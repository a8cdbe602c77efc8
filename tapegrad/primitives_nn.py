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

from .core import Primitive, defprim, defvjp, dtype_of, shape_of


def out_size(size, kernel, stride, dilation, pad):
    """Output length along one axis of a window of `kernel` taps sliding over `size` + pads."""
    return (size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1


def _padded(x, pads, value):
    """x (N, C, H, W) inside `value` pads: np.pad's result without its generic machinery
    (half its time on a CNN's activations)."""
    (pt, pb), (pl, pr) = pads
    n, c, h, w = x.shape
    out = np.full((n, c, h + pt + pb, w + pl + pr), value, x.dtype)
    out[:, :, pt:pt + h, pl:pl + w] = x
    return out


def _windows(x, kernel, stride, dilation, pads, pad_value=0.0, batch_inner=False):
    """A read-only strided view of x's windows (x padded first): (N, C, kh, kw, oh, ow), or
    (C, kh, kw, N, oh, ow) with batch_inner (the layout that makes a convolution one matmul)."""
    x = np.asarray(x)
    if any(pads[0]) or any(pads[1]):
        x = _padded(x, pads, pad_value)
    n, c, h, w = x.shape
    oh = out_size(h, kernel[0], stride[0], dilation[0], (0, 0))
    ow = out_size(w, kernel[1], stride[1], dilation[1], (0, 0))
    s = x.strides
    shape = (n, c, kernel[0], kernel[1], oh, ow)
    strides = (s[0], s[1], s[2] * dilation[0], s[3] * dilation[1], s[2] * stride[0],
               s[3] * stride[1])
    if batch_inner:
        order = (1, 2, 3, 0, 4, 5)
        shape, strides = tuple(shape[i] for i in order), tuple(strides[i] for i in order)
    return as_strided(x, shape, strides, writeable=False)


def _im2col(x, kernel, stride, dilation, pads, pad_value=0.0, batch_inner=False):
    return np.ascontiguousarray(_windows(x, kernel, stride, dilation, pads, pad_value,
                                         batch_inner))


def _col2im(cols, shape, kernel, stride, dilation, pads, batch_inner=False):
    """Sum each window entry back onto the input position it was read from."""
    cols = np.asarray(cols)
    n, c, h, w = shape
    (pt, pb), (pl, pr) = pads
    # batch_inner columns (C, kh, kw, N, oh, ow) sum into a (C, N, H, W) array, returned as its
    # (N, C, H, W) view: each tap's block is read contiguously (a third faster than adding the
    # transposed blocks into (N, C, H, W)); each position sums its taps in the same order
    lead = (c, n) if batch_inner else (n, c)
    out = np.zeros(lead + (h + pt + pb, w + pl + pr), dtype=cols.dtype)
    oh, ow = cols.shape[4:]
    for i in range(kernel[0]):
        top = i * dilation[0]
        for j in range(kernel[1]):
            left = j * dilation[1]
            out[:, :, top:top + stride[0] * (oh - 1) + 1:stride[0],
                left:left + stride[1] * (ow - 1) + 1:stride[1]] += cols[:, i, j] if \
                batch_inner else cols[:, :, i, j]
    out = out[:, :, pt:pt + h, pl:pl + w]
    return out.transpose(1, 0, 2, 3) if batch_inner else out


im2col = defprim("im2col", _im2col, grad_fn_name="Im2ColBackward0", kind="other")
col2im = defprim("col2im", _col2im, grad_fn_name="Col2ImBackward0", kind="other")
defvjp(im2col, lambda g, ans, x, kernel, stride, dilation, pads, pad_value=0.0,
       batch_inner=False:
       col2im(g, shape=shape_of(x), kernel=kernel, stride=stride, dilation=dilation, pads=pads,
              batch_inner=batch_inner))
defvjp(col2im, lambda g, ans, cols, shape, kernel, stride, dilation, pads, batch_inner=False:
       im2col(g, kernel=kernel, stride=stride, dilation=dilation, pads=pads,
              batch_inner=batch_inner))


# ---------------------------------------------------------------------------------------------
# Max pooling: the gradient goes to the first maximum of each window (NaN counts as maximum)
# ---------------------------------------------------------------------------------------------

def _taps(x, kernel, stride, dilation, pads, pad_value=-np.inf):
    """Yield (i, j, view) for each kernel tap: the (N, C, oh, ow) strided slice of padded x that
    tap reads. Pooling loops over taps (few) on output-sized views, never over pixels."""
    x = np.asarray(x)
    if any(pads[0]) or any(pads[1]):
        x = _padded(x, pads, pad_value)
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


def _winners(x, geometry):
    """For each window, the number of the tap holding its first maximum (or its first NaN,
    the NaN the forward's maximum returns). Whole-array steps per tap, no masked writes."""
    taps = [view for _, _, view in _taps(x, **geometry)]
    best = np.array(taps[0])
    for view in taps[1:]:
        np.maximum(best, view, out=best)
    nan = np.isnan(best).any()

    def holds(view):
        return (view == best) | np.isnan(view) if nan else view == best

    winner = np.zeros(best.shape, np.int32)
    found = holds(taps[0])
    for k in range(1, len(taps)):
        hit = holds(taps[k])
        hit &= ~found
        found |= hit
        winner += hit * np.int32(k)
    return winner


def _pool_scatter(g, x, **geometry):
    """x-shaped: each window's cotangent g added at the window's first maximum."""
    g, winner = np.asarray(g), _winners(x, geometry)
    (pt, pb), (pl, pr) = geometry["pads"]
    n, c, h, w = np.shape(x)
    out = np.zeros((n, c, h + pt + pb, w + pl + pr), g.dtype)
    span = [d * (k - 1) + 1 for k, d in zip(geometry["kernel"], geometry["dilation"])]
    # windows that share no cell, and a finite g (0 * inf is NaN): write g * mask in place
    direct = all(s >= e for s, e in zip(geometry["stride"], span)) and np.isfinite(g).all()
    for k, (_, _, view) in enumerate(_taps(out, **dict(geometry, pads=((0, 0), (0, 0))))):
        if direct:
            np.multiply(g, winner == k, out=view)
        else:
            view += np.where(winner == k, g, 0)  # `view` is a writable view of `out`
    return out[:, :, pt:pt + h, pl:pl + w]


def _pool_gather(gx, x, **geometry):
    """output-shaped: gx read at each window's first maximum (the adjoint of _pool_scatter)."""
    winner = _winners(x, geometry)
    out = np.zeros(winner.shape, np.asarray(gx).dtype)
    for k, (_, _, view) in enumerate(_taps(gx, pad_value=0, **geometry)):
        np.copyto(out, view, where=winner == k)
    return out


max_pool2d = defprim("max_pool2d", _max_pool2d, grad_fn_name="MaxPool2DWithIndicesBackward0",
                     kind="other")
pool_scatter = defprim("pool_scatter", _pool_scatter,
                       grad_fn_name="MaxPool2DWithIndicesBackwardBackward0", kind="other")
pool_gather = defprim("pool_gather", _pool_gather, kind="other")
defvjp(max_pool2d, lambda g, ans, x, **geometry: pool_scatter(g, x, **geometry))
defvjp(pool_scatter, lambda gx, ans, g, x, **geometry: pool_gather(gx, x, **geometry), None)
defvjp(pool_gather, lambda g, ans, gx, x, **geometry: pool_scatter(g, x, **geometry), None)


# ---------------------------------------------------------------------------------------------
# Eager-only fused nodes (one graph node with a numeric backward, as PyTorch's AddmmBackward0 and
# NllLossBackward0). Not in REGISTRY: the traced faces compose the same values from registry ops.
# ---------------------------------------------------------------------------------------------

def _addmm(bias, x, wt):
    from . import primitives as P
    return P.add.eager_impl(bias, P.matmul.eager_impl(x, wt))  # the unfused ops' rounding


def _addmm_bias_vjp(g, ans, bias, x, wt):
    return np.sum(g, axis=0) if isinstance(g, np.ndarray) else g  # (unbroadcast sums a Tensor)


def _addmm_input_vjp(g, ans, bias, x, wt):
    if isinstance(g, np.ndarray):  # the matmul rule's NumPy calls without its dispatch
        return np.matmul(g, wt.T)
    from . import primitives as P
    return P._matmul_vjp_left(g, ans, x, wt)


def _addmm_weight_vjp(g, ans, bias, x, wt):
    if isinstance(g, np.ndarray):
        # wt is weight.t(): (g.T @ x).T, so the weight's gradient comes out in the weight's own
        # layout, as PyTorch's mm_mat2_backward computes it for a transposed mat2
        return np.matmul(g.T, x).T if wt.flags.f_contiguous else np.matmul(x.T, g)
    from . import primitives as P
    return P._matmul_vjp_right(g, ans, x, wt)


addmm = Primitive("addmm", _addmm, grad_fn_name="AddmmBackward0", kind="linalg")
defvjp(addmm, _addmm_bias_vjp, _addmm_input_vjp, _addmm_weight_vjp)


def _nll(logp, rows, cols, w, total, reduction):
    """-(w * logp[rows, cols]), summed (and / total for 'mean'), rounded as the unfused ops."""
    loss = -logp[rows, cols] if w is None else -(logp[rows, cols] * w)  # (w None: all ones)
    if reduction == "none":
        return loss
    loss = loss.sum()  # (-a).sum() is -(a.sum()) exactly: a sign flip commutes with the rounding
    return loss if total is None else loss / total


def _nll_vjp(g, ans, logp, rows, cols, w, total, reduction):
    scale = -g if total is None else -(g / total)
    if isinstance(g, np.ndarray):
        out = np.zeros(shape_of(logp), g.dtype)
        picked = scale + 0.0 if w is None else scale * w
        picked += 0.0  # -0 (an ignored target) reads +0, as a scatter into zeros gives
        out[rows, cols] = picked
        return out
    dense = np.zeros(shape_of(logp), dtype_of(ans))  # create_graph: a product of recorded ops
    dense[rows, cols] = 1 if w is None else w
    if reduction == "none":
        scale = scale.reshape(-1, 1)
    return scale * dense


nll_loss = Primitive("nll_loss", _nll, grad_fn_name="NllLossBackward0", kind="loss")
defvjp(nll_loss, _nll_vjp)


def _log_softmax(x, axis):
    """The registry's log_softmax: its operations in its order (equal bits), as array methods
    and without its error-state context where nothing can warn (a finite row maximum: exp of
    x - max never overflows, and its sum is at least 1)."""
    m = x.max(axis=axis, keepdims=True)
    finite = np.isfinite(m)
    if finite.all():
        return x - (np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m)
    m = np.where(finite, m, 0)
    with np.errstate(divide="ignore"):
        return x - (np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m)


def _log_softmax_vjp(g, ans, x, axis):
    if isinstance(g, np.ndarray):  # the registry rule's NumPy calls without its dispatch
        return g - np.exp(ans) * np.sum(g, axis=(axis,), keepdims=True)
    from . import primitives as P
    return g - P.exp(ans) * P.sum_(g, axis=(axis,), keepdims=True)


# eager cross_entropy's log_softmax node (the registry's name, so the graph treats it alike)
log_softmax = Primitive("log_softmax", _log_softmax, grad_fn_name="LogSoftmaxBackward0",
                        kind="reduction")
defvjp(log_softmax, _log_softmax_vjp)


def pool_scatter_tiled(g, x, ans, kernel, stride, dilation, pads):
    """_pool_scatter's value for windows that tile x (stride == kernel, no dilation or padding),
    read against the forward's output `ans` instead of recomputing each window's maximum, and
    written tap by tap into one x-shaped array. None where the windows do not tile."""
    if stride != kernel or dilation != (1, 1) or any(pads[0]) or any(pads[1]):
        return None
    kh, kw = kernel
    n, c, h, w = x.shape
    oh, ow = ans.shape[2:]
    out = np.zeros(x.shape, g.dtype)
    tiles = out[:, :, :oh * kh, :ow * kw].reshape(n, c, oh, kh, ow, kw)  # a view of out
    x_tiles = x[:, :, :oh * kh, :ow * kw].reshape(n, c, oh, kh, ow, kw)
    nan = np.isnan(ans).any()
    finite = np.isfinite(g).all()  # 0 * inf is NaN: a non-finite g is copied, not multiplied
    found = None
    for i in range(kh):
        for j in range(kw):
            tap = x_tiles[:, :, :, i, :, j]
            hit = tap == ans
            if nan:  # the forward's NaN came from the window's first NaN
                hit |= np.isnan(tap)
            if found is None:
                found = hit.copy()
            else:
                hit &= ~found
                found |= hit
            if finite:
                np.multiply(g, hit, out=tiles[:, :, :, i, :, j])
            else:
                np.copyto(tiles[:, :, :, i, :, j], g, where=hit)
    return out
