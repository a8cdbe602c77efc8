"""nn.utils: gradient clipping and parameter <-> vector conversion."""
import math

import numpy as np

from ..tensor import Tensor


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def zero_grad_(parameters, set_to_none=True):
    """Module.zero_grad and Optimizer.zero_grad: drop the grads, or zero them outside autograd."""
    for p in parameters:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            grad = p.grad.detach()
            grad._data[...] = 0
            p.grad = grad


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale the gradients in place so that their joint norm is at most max_norm; returns the
    norm before clipping (a tensor), as PyTorch does."""
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        from ..functions import tensor
        return tensor(0.0)
    if norm_type == math.inf:
        norms = [np.abs(g._data).max() if g._data.size else 0.0 for g in grads]
        total = np.max(norms)
    else:
        norms = [np.linalg.norm(g._data.ravel(), norm_type) for g in grads]
        total = np.linalg.norm(np.asarray(norms), norm_type)
    total = np.asarray(total, dtype=grads[0]._data.dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                           "`parameters` is non-finite, so it cannot be clipped. To disable this "
                           "error and scale the gradients by the non-finite norm anyway, set "
                           "`error_if_nonfinite=False`")
    # PyTorch multiplies by the clamped coefficient, so a small norm leaves grads unchanged
    coef = min(float(max_norm) / (float(total) + 1e-6), 1.0)
    for g in grads:
        g._data *= g._data.dtype.type(coef)
        g._version_counter[0] += 1
    return Tensor._wrap(total)


def clip_grad_value_(parameters, clip_value, foreach=None):
    for g in _grads(parameters):
        np.clip(g._data, -clip_value, clip_value, out=g._data)
        g._version_counter[0] += 1


def parameters_to_vector(parameters):
    from ..functions import cat
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    offset = 0
    for p in parameters:
        n = p.numel()
        p._data[...] = vec._data[offset:offset + n].reshape(p._data.shape)
        p._version_counter[0] += 1
        offset += n
