"""torch.nn.functional: losses and activations composed from registry primitives."""
import math

import numpy as np

from .. import primitives as P
from ..tensor import Tensor, _dim

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(x, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if reduction == "mean":
        return x.mean()
    return x.sum() if reduction == "sum" else x


def _same_shape(name, input, target):
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{name}: target size ({tuple(target.shape)}) must be the same as input "
                         f"size ({tuple(input.shape)}); reshape one of them")


# ---------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------

def relu(input, inplace=False):
    return P.relu(input)


def sigmoid(input):
    return P.sigmoid(input)


def tanh(input):
    return P.tanh(input)


def softplus(input, beta=1.0, threshold=20.0):
    if beta == 1.0:
        return P.softplus(input)
    return P.softplus(input * beta) / beta


def gelu(input, approximate="none"):
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1 + P.tanh(inner))
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return 0.5 * input * (1 + P.erf(input * (1 / math.sqrt(2))))


def silu(input):
    return input * P.sigmoid(input)


def leaky_relu(input, negative_slope=0.01):
    return P.where(input > 0, input, input * negative_slope)


def elu(input, alpha=1.0):
    return P.where(input > 0, input, P.expm1(input) * alpha)


def softmax(input, dim=None, dtype=None):
    return input.softmax(-1 if dim is None else dim)


def log_softmax(input, dim=None, dtype=None):
    return input.log_softmax(-1 if dim is None else dim)


def linear(input, weight, bias=None):
    out = input @ weight.t()
    return out if bias is None else out + bias


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

def mse_loss(input, target, reduction="mean"):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if tuple(input.shape) != tuple(target.shape):
        import warnings
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                      f"({input.shape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=2)
    return P.mse_loss(input, target, reduction=reduction)


def l1_loss(input, target, reduction="mean"):
    return _reduce(P.abs_(input - target), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    diff = P.abs_(input - target)
    if beta == 0:
        return _reduce(diff, reduction)
    loss = P.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    _same_shape("binary_cross_entropy", input, target)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return P.binary_cross_entropy(input, target, 1.0 if weight is None else weight,
                                  reduction=reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    _same_shape("binary_cross_entropy_with_logits", input, target)
    # log(1 + e^-x) written with softplus stays finite for large |x|
    if pos_weight is None:
        loss = (1 - target) * input + P.softplus(-input)
    else:
        log_weight = (pos_weight - 1) * target + 1
        loss = (1 - target) * input + log_weight * P.softplus(-input)
    return _reduce(loss if weight is None else loss * weight, reduction)


def _class_dim_last(x):
    """(N, C, d1, ...) -> (N * d1 * ..., C) so that one code path serves every rank."""
    if x.ndim <= 2:
        return x
    perm = (0,) + tuple(range(2, x.ndim)) + (1,)
    return x.permute(*perm).reshape(-1, x.shape[1])


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    target_data = target._data if isinstance(target, Tensor) else np.asarray(target)
    if target_data.dtype.kind not in "iu":
        raise RuntimeError("nll_loss: expected target of integer class indices (dtype long), got "
                           f"{target_data.dtype}; for probabilities use cross_entropy")
    out_shape = target_data.shape
    logp = _class_dim_last(input) if input.ndim > 1 else input.reshape(1, -1)
    classes = target_data.reshape(-1)
    n_classes = logp.shape[1]
    keep = classes != ignore_index
    if ((classes[keep] < 0) | (classes[keep] >= n_classes)).any():
        raise IndexError(f"Target {classes[keep].max()} is out of bounds.")
    safe = np.where(keep, classes, 0)
    w = np.ones(n_classes, logp._data.dtype) if weight is None else weight._data
    sample_w = np.where(keep, w[safe], 0).astype(logp._data.dtype)
    picked = logp[np.arange(len(classes)), safe] * sample_w
    if reduction == "none":
        return picked.neg().reshape(out_shape)
    if reduction == "sum":
        return -picked.sum()
    total = float(sample_w.sum())
    if total == 0:  # every target ignored: PyTorch's loss is nan, its gradient zero
        return -picked.sum() + float("nan")
    return -picked.sum() / total


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    class_dim = 1 if input.ndim > 1 else 0
    logp = input.log_softmax(class_dim)
    target_data = target._data if isinstance(target, Tensor) else np.asarray(target)
    if target_data.dtype.kind == "f":  # class probabilities
        loss = -(logp * target).sum(_dim(class_dim, input.ndim))
        return _reduce(loss, reduction)
    if label_smoothing:
        smooth = -logp.mean(class_dim)
        nll = nll_loss(logp, target, weight, ignore_index, "none")
        loss = nll * (1 - label_smoothing) + smooth * label_smoothing
        return _reduce(loss, reduction)
    return nll_loss(logp, target, weight, ignore_index, reduction)
