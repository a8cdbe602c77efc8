"""torch.nn.functional: losses and activations composed from registry primitives."""
import math

import numpy as np

from .. import primitives as P
from .. import primitives_nn as PN
from ..tensor import Tensor, _dim, _View
from .parameter import Parameter

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
    """max(input, 0) elementwise.

    Args:
        input: the input Tensor.
        inplace: write the result into input.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.relu(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0., 0., 2.])
    """
    return P.relu(input)


def sigmoid(input):
    """1 / (1 + exp(-input)) elementwise.

    Args:
        input: the input Tensor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.sigmoid(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0.2689, 0.5000, 0.8808])
    """
    return P.sigmoid(input)


def tanh(input):
    """tanh(input) elementwise.

    Args:
        input: the input Tensor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.tanh(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.7616,  0.0000,  0.9640])
    """
    return P.tanh(input)


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * input)) / beta elementwise, linear above threshold.

    Args:
        input: the input Tensor.
        beta: the sharpness.
        threshold: beta * input above which the result is input.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.softplus(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0.3133, 0.6931, 2.1269])
    """
    if beta == 1.0:
        return P.softplus(input)
    return P.softplus(input * beta) / beta


def gelu(input, approximate="none"):
    """The Gaussian error linear unit elementwise.

    Args:
        input: the input Tensor.
        approximate: 'none' (erf) or 'tanh'.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.gelu(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.1587,  0.0000,  1.9545])
    """
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1 + P.tanh(inner))
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return 0.5 * input * (1 + P.erf(input * (1 / math.sqrt(2))))


def silu(input):
    """input * sigmoid(input) elementwise.

    Args:
        input: the input Tensor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.silu(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.2689,  0.0000,  1.7616])
    """
    return input * P.sigmoid(input)


def leaky_relu(input, negative_slope=0.01):
    """input where positive, negative_slope * input elsewhere.

    Args:
        input: the input Tensor.
        negative_slope: the slope below 0.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.leaky_relu(torch.tensor([-1.0, 0.0, 2.0]), 0.1)
        tensor([-0.1000,  0.0000,  2.0000])
    """
    return P.where(input > 0, input, input * negative_slope)


def elu(input, alpha=1.0):
    """input where positive, alpha * (exp(input) - 1) elsewhere.

    Args:
        input: the input Tensor.
        alpha: the scale below 0.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.elu(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.6321,  0.0000,  2.0000])
    """
    return P.where(input > 0, input, P.expm1(input) * alpha)


def softmax(input, dim=None, dtype=None):
    """exp(input) normalised to sum to 1 along dim.

    Args:
        input: the input Tensor.
        dim: the dimension reduced over.
        dtype: cast the input to this dtype first.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.softmax(torch.tensor([[1.0, 2.0, 0.5]]), dim=1)
        tensor([[0.2312, 0.6285, 0.1402]])
    """
    return input.softmax(-1 if dim is None else dim)


def log_softmax(input, dim=None, dtype=None):
    """log(softmax(input, dim)), computed stably.

    Args:
        input: the input Tensor.
        dim: the dimension reduced over.
        dtype: cast the input to this dtype first.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.log_softmax(torch.tensor([[1.0, 2.0, 0.5]]), dim=1)
        tensor([[-1.4644, -0.4644, -1.9644]])
    """
    if (type(input) in _PLAIN and type(dim) is int and input._data.dtype.kind == "f"
            and -input._data.ndim <= dim < input._data.ndim):    # eager: the NumPy node
        return Tensor._bind(PN.log_softmax, (input,), {"axis": dim % input._data.ndim})
    return input.log_softmax(-1 if dim is None else dim)


def _named(prim, args, name):
    """prim(*args), its eager node shown under PyTorch's grad_fn name for the fused op."""
    if all(isinstance(a, Tensor) or np.isscalar(a) for a in args):
        return Tensor._bind(prim, args, {}, name)
    return prim(*args)


# the types whose operations bind through Tensor._bind (other subclasses may override dispatch:
# they take the unfused path)
_PLAIN = frozenset({Tensor, Parameter, _View})


def linear(input, weight, bias=None):
    """input @ weight.T + bias.

    Args:
        input: the input Tensor.
        weight: the (out_features, in_features) weight.
        bias: the bias Tensor (None for none).

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.linear(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([0.5]))
        tensor([[3.5000]])
    """
    if bias is None:
        return input @ weight.t()
    if (type(input) in _PLAIN and type(weight) in _PLAIN and type(bias) in _PLAIN
            and input.ndim == 2 and weight.ndim == 2 and bias.shape == weight.shape[:1]
            and input.shape[1] == weight.shape[1]):
        # one AddmmBackward0 node over (bias, input, weight.t()), as PyTorch records
        return Tensor._bind(PN.addmm, (bias, input, weight.t()), {})
    if input.ndim == 2:  # PyTorch runs addmm here, and shows it
        # bias first: next_functions[0] is the bias, as in addmm(bias, input, weight.t())
        return _named(P.add, (bias, input @ weight.t()), "AddmmBackward0")
    # other ranks go through a matrix, as in PyTorch (ViewBackward0)
    out = linear(input.reshape(-1, input.shape[-1]), weight, bias)
    return out.reshape(tuple(input.shape[:-1]) + (weight.shape[0],))


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

def mse_loss(input, target, reduction="mean"):
    """The mean squared error.

    Args:
        input: the input Tensor.
        target: the target Tensor.
        reduction: 'mean', 'sum' or 'none' (per element).

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.mse_loss(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
        tensor(0.1562)
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if tuple(input.shape) != tuple(target.shape):
        import warnings
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                      f"({input.shape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=2)
    return P.mse_loss(input, target, reduction=reduction)


def l1_loss(input, target, reduction="mean"):
    """The mean absolute error.

    Args:
        input: the input Tensor.
        target: the target Tensor.
        reduction: 'mean', 'sum' or 'none' (per element).

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.l1_loss(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
        tensor(0.3750)
    """
    return _reduce(P.abs_(input - target), reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """The L1 loss, squared (divided by 2 beta) where the error is below beta.

    Args:
        input: the input Tensor.
        target: the target Tensor.
        reduction: 'mean', 'sum' or 'none' (per element).
        beta: the error below which the loss is quadratic.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.smooth_l1_loss(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
        tensor(0.0781)
    """
    diff = P.abs_(input - target)
    if beta == 0:
        return _reduce(diff, reduction)
    loss = P.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return _reduce(loss, reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """The binary cross entropy of probabilities input against target.

    Args:
        input: probabilities in [0, 1].
        target: the target Tensor.
        weight: a rescaling weight per element (None for none).
        reduction: 'mean', 'sum' or 'none' (per element).

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.binary_cross_entropy(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
        tensor(0.4904)
    """
    _same_shape("binary_cross_entropy", input, target)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return P.binary_cross_entropy(input, target, 1.0 if weight is None else weight,
                                  reduction=reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean",
                                     pos_weight=None):
    """binary_cross_entropy(sigmoid(input), target), computed stably.

    Args:
        input: the logits.
        target: the target Tensor.
        weight: a rescaling weight per element (None for none).
        reduction: 'mean', 'sum' or 'none' (per element).
        pos_weight: a weight of the positive examples per class.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.binary_cross_entropy_with_logits(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
        tensor(0.6500)
    """
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
    """The negative log likelihood of target classes under log-probabilities input.

    Args:
        input: log-probabilities, (N, C) or (N, C, ...).
        target: class indices (int64).
        weight: a weight per class (None for none).
        ignore_index: a target value that contributes nothing.
        reduction: 'mean', 'sum' or 'none' (per element).

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.nll_loss(torch.tensor([[-0.5, -1.0]]), torch.tensor([1]))
        tensor(1.)
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if _traced(input, target):
        return _nll_traced(input, target, weight, ignore_index, reduction)
    target_data = target._data if isinstance(target, Tensor) else np.asarray(target)
    if target_data.dtype.kind not in "iu":
        raise RuntimeError("nll_loss: expected target of integer class indices (dtype long), got "
                           f"{target_data.dtype}; for probabilities use cross_entropy")
    out_shape = target_data.shape
    logp = _class_dim_last(input) if input.ndim > 1 else input.reshape(1, -1)
    classes = target_data.reshape(-1)
    n_classes = logp.shape[1]
    if input.ndim == 2 and weight is None and classes.size:
        lo, hi = classes.min(), classes.max()
        if 0 <= lo and hi < n_classes and not (
                lo <= ignore_index <= hi and (classes == ignore_index).any()):
            # every target in range and counted with weight 1: no masks, no weights
            total = float(classes.size) if reduction == "mean" else None
            return Tensor._bind(PN.nll_loss, (input,), dict(
                rows=np.arange(classes.size), cols=classes.copy(), w=None, total=total,
                reduction=reduction))
    keep = _check_classes(classes, n_classes, ignore_index)
    safe = np.where(keep, classes, 0)
    w = np.ones(n_classes, logp._data.dtype) if weight is None else weight._data
    sample_w = np.where(keep, w[safe], 0).astype(logp._data.dtype)
    total = float(sample_w.sum()) if reduction == "mean" else None
    if input.ndim == 2 and total != 0:
        # one NllLossBackward0 node with a numeric backward (PyTorch's node)
        return Tensor._bind(PN.nll_loss, (input,), dict(rows=np.arange(len(classes)), cols=safe,
                                                         w=sample_w, total=total,
                                                         reduction=reduction))
    picked = logp[np.arange(len(classes)), safe] * sample_w
    if reduction == "none":
        return picked.neg().reshape(out_shape)
    if reduction == "sum":
        return -picked.sum()
    total = float(sample_w.sum())
    if total == 0:  # every target ignored: PyTorch's loss is nan, its gradient zero
        return -picked.sum() + float("nan")
    return -picked.sum() / total


def _check_classes(classes, n_classes, ignore_index):
    """The mask of targets not ignored; raises as PyTorch does for a class out of range."""
    keep = classes != ignore_index
    bad = classes[keep][(classes[keep] < 0) | (classes[keep] >= n_classes)]
    if bad.size:
        raise IndexError(f"Target {bad[0]} is out of bounds.")
    return keep


def _traced(*values):
    return any(getattr(type(v), "_bind_level", 0) > 1 for v in values)   # tapegrad tracers


def _nll_traced(input, target, weight, ignore_index, reduction):
    """nll_loss on the traced face (torch.func, torch.compile): the targets may be traced, so the
    picked log-probabilities come from a one-hot mask instead of an index."""
    logp = _class_dim_last(input) if input.ndim > 1 else input.reshape(1, -1)
    classes = target.reshape(-1)[:, None]
    n_classes = logp.shape[1]
    if not _traced(target):          # known now: raise as eager does
        _check_classes(np.asarray(target).reshape(-1), n_classes, ignore_index)
    hit = (classes == np.arange(n_classes)) & (classes != ignore_index)
    w = np.ones(n_classes, logp.dtype) if weight is None else weight
    sample_w = (hit * w).sum(1)      # the target class's weight; 0 where ignored
    # a tape cannot raise when it runs: a class out of range makes the loss and its gradient NaN
    # (it used to pick nothing and add 0, silently)
    valid = (classes == ignore_index) | ((classes >= 0) & (classes < n_classes))
    picked = (logp * hit * w).sum(1) * np.where(valid.all(), 1.0, np.nan).astype(logp.dtype)
    if reduction == "none":
        return -picked.reshape(target.shape)
    if reduction == "sum":
        return -picked.sum()
    return -picked.sum() / sample_w.sum()


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """nll_loss(log_softmax(input, 1), target), or against class probabilities.

    Args:
        input: the logits, (N, C) or (N, C, ...).
        target: class indices (int64) or class probabilities.
        weight: a weight per class (None for none).
        ignore_index: a target value that contributes nothing.
        reduction: 'mean', 'sum' or 'none' (per element).
        label_smoothing: the share of the target spread evenly over the classes.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))
        tensor(0.6931)
    """
    class_dim = 1 if input.ndim > 1 else 0
    if type(input) in _PLAIN and input._data.dtype.kind == "f":   # eager: the NumPy node
        logp = Tensor._bind(PN.log_softmax, (input,), {"axis": class_dim})
    else:
        logp = input.log_softmax(class_dim)
    target_data = target if _traced(target) else target._data if isinstance(
        target, Tensor) else np.asarray(target)
    if target_data.dtype.kind == "f":  # class probabilities
        loss = -(logp * target).sum(_dim(class_dim, input.ndim))
        return _reduce(loss, reduction)
    if label_smoothing:
        smooth = -logp.mean(class_dim)
        nll = nll_loss(logp, target, weight, ignore_index, "none")
        loss = nll * (1 - label_smoothing) + smooth * label_smoothing
        return _reduce(loss, reduction)
    # nll_loss's own body: its NllLossBackward0 needs no renaming by the wrapper below
    return nll_loss.__wrapped__(logp, target, weight, ignore_index, reduction)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """The Huber loss: squared / 2 below delta, delta * (|error| - delta / 2) above.

    Args:
        input: the input Tensor.
        target: the target Tensor.
        reduction: 'mean', 'sum' or 'none' (per element).
        delta: the error below which the loss is quadratic.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.huber_loss(torch.tensor([0.5, 0.25]), torch.tensor([1.0, 0.0]))
        tensor(0.0781)
    """
    diff = P.abs_(input - target)
    loss = P.where(diff < delta, 0.5 * diff * diff, delta * (diff - 0.5 * delta))
    return _reduce(loss, reduction)


def kl_div(input, target, reduction="mean", log_target=False):
    """The Kullback-Leibler divergence with input given as log-probabilities.

    Args:
        input: log-probabilities.
        target: probabilities (log-probabilities with log_target).
        reduction: 'mean', 'batchmean', 'sum' or 'none'.
        log_target: target is given as log-probabilities.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> half = torch.tensor([0.5, 0.5])
        >>> F.kl_div(half.log(), half, reduction='batchmean')
        tensor(0.)
    """
    if log_target:
        loss = P.exp(target) * (target - input)
    else:  # 0 * log 0 is 0, as in PyTorch's xlogy
        safe = P.where(target > 0, target, 1.0)
        loss = P.where(target > 0, target * (P.log(safe) - input), 0.0)
    if reduction == "batchmean":
        return loss.sum() / input.shape[0]
    return _reduce(loss, reduction)


# ---------------------------------------------------------------------------------------------
# More activations
# ---------------------------------------------------------------------------------------------

def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """input clamped to [min_val, max_val].

    Args:
        input: the input Tensor.
        min_val: the lower bound.
        max_val: the upper bound.
        inplace: write the result into input.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.hardtanh(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-1.,  0.,  1.])
    """
    return P.clamp(input, min=min_val, max=max_val)


def relu6(input, inplace=False):
    """input clamped to [0, 6].

    Args:
        input: the input Tensor.
        inplace: write the result into input.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.relu6(torch.tensor([-1.0, 3.0, 8.0]))
        tensor([0., 3., 6.])
    """
    return hardtanh(input, 0.0, 6.0)


def logsigmoid(input):
    """log(sigmoid(input)), computed stably.

    Args:
        input: the input Tensor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.logsigmoid(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-1.3133, -0.6931, -0.1269])
    """
    return -P.softplus(-input)


def softsign(input):
    """input / (1 + |input|) elementwise.

    Args:
        input: the input Tensor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.softsign(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.5000,  0.0000,  0.6667])
    """
    return input / (1 + P.abs_(input))


def mish(input):
    """input * tanh(softplus(input)) elementwise.

    Args:
        input: the input Tensor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.mish(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.3034,  0.0000,  1.9440])
    """
    return input * P.tanh(P.softplus(input))


def softmin(input, dim=None, dtype=None):
    """softmax(-input, dim).

    Args:
        input: the input Tensor.
        dim: the dimension reduced over.
        dtype: cast the input to this dtype first.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.softmin(torch.tensor([[1.0, 2.0, 0.5]]), dim=1)
        tensor([[0.3315, 0.1220, 0.5465]])
    """
    return (-input).softmax(-1 if dim is None else dim)


# ---------------------------------------------------------------------------------------------
# Convolution and pooling (im2col + matmul; see primitives_nn)
# ---------------------------------------------------------------------------------------------

def _tuple(value, n, name):
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * n
    if len(value) != n:
        raise ValueError(f"expected {name} to be a single integer value or a list of {n} values "
                         f"to match the convolution dimensions, but got {name}={list(value)}")
    return value


def _conv_pads(padding, kernel, stride, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * len(kernel)
        if padding != "same":
            raise ValueError(f"Invalid padding string '{padding}'; use 'valid', 'same' or ints")
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        # PyTorch puts the odd extra element of an even kernel's padding at the end
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    return tuple((p, p) for p in _tuple(padding, len(kernel), "padding"))


def _conv_nd(name, nd, input, weight, bias, stride, padding, dilation, groups):
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to "
                           f"{name}, but got input of size: {list(input.shape)}")
    batched = input.ndim == nd + 2
    x = input if batched else input.unsqueeze(0)
    out_ch, in_per_group = weight.shape[:2]
    if x.shape[1] != in_per_group * groups:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
            f"{list(x.shape)} to have {in_per_group * groups} channels, but got {x.shape[1]} "
            "channels instead")
    if out_ch % groups:
        raise RuntimeError("out_channels must be divisible by groups")
    w = weight
    if nd == 1:  # a 1-d convolution is a 2-d one over a height of 1
        x, w = x.unsqueeze(2), weight.unsqueeze(2)
    kernel = tuple(w.shape[2:])
    stride = (1,) * (2 - nd) + _tuple(stride, nd, "stride")
    dilation = (1,) * (2 - nd) + _tuple(dilation, nd, "dilation")
    pads = ((0, 0),) * (2 - nd) + _conv_pads(padding, kernel[2 - nd:], stride[2 - nd:],
                                             dilation[2 - nd:])
    n, c, h, wd = x.shape
    oh = PN.out_size(h, kernel[0], stride[0], dilation[0], pads[0])
    ow = PN.out_size(wd, kernel[1], stride[1], dilation[1], pads[1])
    if oh <= 0 or ow <= 0:
        raise RuntimeError(f"{name}: input size {list(input.shape[-nd:])} (after padding) is "
                           f"smaller than the kernel {list(weight.shape[2:])}; pad the input or "
                           "use a smaller kernel")
    # one matmul per group over the whole batch: (O/G, C/G*kh*kw) @ (C/G*kh*kw, N*oh*ow)
    cols = PN.im2col(x, kernel=kernel, stride=stride, dilation=dilation, pads=pads,
                     batch_inner=True)
    cols = cols.reshape(groups, (c // groups) * kernel[0] * kernel[1], n * oh * ow)
    out = w.reshape(groups, out_ch // groups, -1) @ cols  # (G, O/G, N*L)
    out = out.reshape((out_ch, n) + ((ow,) if nd == 1 else (oh, ow)))
    if bias is not None:
        out = out + bias.reshape((out_ch,) + (1,) * (nd + 1))
    axes = (1, 0) + tuple(range(2, nd + 2))
    if isinstance(out, Tensor):
        out = Tensor._bind(P.transpose, (out,), {"axes": axes}, "ConvolutionBackward0")
        # PyTorch's convolution output is contiguous, so `.view(-1, n)` on it works
        out._data = np.ascontiguousarray(out._data)
    else:
        out = P.transpose(out, axes=axes)
    return out if batched else out.squeeze(0)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The 1-d cross-correlation of input (N, C_in, L) with weight (C_out, C_in / groups, k).

    Args:
        input: the input Tensor.
        weight: the (C_out, C_in / groups, k) filters.
        bias: the bias Tensor (None for none).
        stride: the stride.
        padding: the zero padding on each side.
        dilation: the spacing between kernel elements.
        groups: the number of blocked connections from input to output channels.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.conv1d(torch.tensor([[[1.0, 2.0, 3.0]]]), torch.tensor([[[1.0, -1.0]]]))
        tensor([[[-1., -1.]]])
    """
    return _conv_nd("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The 2-d cross-correlation of input (N, C_in, H, W) with weight (C_out, C_in/groups, kH, kW).

    Args:
        input: the input Tensor.
        weight: the (C_out, C_in / groups, kH, kW) filters.
        bias: the bias Tensor (None for none).
        stride: the stride.
        padding: the zero padding on each side.
        dilation: the spacing between kernel elements.
        groups: the number of blocked connections from input to output channels.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))
        tensor([[[[4., 4.],
                  [4., 4.]]]])
    """
    return _conv_nd("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def _pool_pads(size, kernel, stride, padding, dilation, ceil_mode):
    """Padding per side along one axis; ceil_mode adds what the last partial window needs."""
    if padding > (dilation * (kernel - 1) + 1) // 2:
        raise RuntimeError(f"pad should be at most half of effective kernel size, but got "
                           f"pad={padding}, kernel_size={kernel} and dilation={dilation}")
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return (padding, padding)
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + padding:  # the last window must start inside the input
        out -= 1
    return (padding, padding + max(0, (out - 1) * stride - span))


def _pool_setup(name, input, kernel_size, stride, padding, dilation, ceil_mode):
    if input.ndim not in (3, 4):
        raise RuntimeError(f"{name}: Expected 3D or 4D (batch mode) tensor for input, but got "
                           f"input of size: {list(input.shape)}")
    kernel = _tuple(kernel_size, 2, "kernel_size")
    stride = kernel if stride is None or stride == [] else _tuple(stride, 2, "stride")
    padding = _tuple(padding, 2, "padding")
    dilation = _tuple(dilation, 2, "dilation")
    x = input if input.ndim == 4 else input.unsqueeze(0)
    pads = tuple(_pool_pads(x.shape[2 + i], kernel[i], stride[i], padding[i], dilation[i],
                            ceil_mode) for i in range(2))
    for i in range(2):
        if PN.out_size(x.shape[2 + i], kernel[i], stride[i], dilation[i], pads[i]) <= 0:
            raise RuntimeError(f"{name}: Given input size {list(input.shape)}, the output size "
                               "is too small; use a smaller kernel or pad the input")
    return x, dict(kernel=kernel, stride=stride, dilation=dilation, pads=pads)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """The maximum over each window of input (N, C, H, W) or (C, H, W).

    Args:
        input: the input Tensor.
        kernel_size: the pooling window size.
        stride: the window's step (default kernel_size).
        padding: implicit -inf padding on each side.
        dilation: the spacing between kernel elements.
        ceil_mode: round the output size up instead of down.
        return_indices: also return the flat indices of the maxima.

    Returns:
        The Tensor (with return_indices, (Tensor, indices)).

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.max_pool2d(torch.arange(16.0).reshape(1, 1, 4, 4), 2)
        tensor([[[[ 5.,  7.],
                  [13., 15.]]]])
    """
    if return_indices:
        raise NotImplementedError("max_pool2d: return_indices=True is not supported by tapegrad")
    x, geometry = _pool_setup("max_pool2d", input, kernel_size, stride, padding, dilation,
                              ceil_mode)
    out = PN.max_pool2d(x, **geometry)
    return out if input.ndim == 4 else out.squeeze(0)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """The mean over each window of input (N, C, H, W) or (C, H, W).

    Args:
        input: the input Tensor.
        kernel_size: the pooling window size.
        stride: the window's step (default kernel_size).
        padding: the zero padding on each side.
        ceil_mode: round the output size up instead of down.
        count_include_pad: count padded zeros in the mean.
        divisor_override: divide by this instead of the window size.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.avg_pool2d(torch.arange(16.0).reshape(1, 1, 4, 4), 2)
        tensor([[[[ 2.5000,  4.5000],
                  [10.5000, 12.5000]]]])
    """
    x, geometry = _pool_setup("avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    sums = PN.im2col(x, **geometry).sum((2, 3))
    if divisor_override:
        divisor = divisor_override
    else:  # count each window's cells inside the input (and its padding when included)
        (pt, pb), (pl, pr) = geometry["pads"]
        h, w = x.shape[2:]
        region = np.zeros((1, 1, h + pt + pb, w + pl + pr), x.np_dtype)
        if count_include_pad:  # the padding PyTorch counts is the symmetric one, not ceil_mode's
            region[:, :, :h + 2 * pt, :w + 2 * pl] = 1
        else:
            region[:, :, pt:pt + h, pl:pl + w] = 1
        no_pads = ((0, 0), (0, 0))
        divisor = PN._im2col(region, geometry["kernel"], geometry["stride"], (1, 1),
                             no_pads).sum((2, 3))
    out = sums / divisor
    return out if input.ndim == 4 else out.squeeze(0)


def adaptive_avg_pool2d(input, output_size):
    """Mean pooling to a given output size (H_out, W_out).

    Args:
        input: the input Tensor.
        output_size: an int or (H_out, W_out); None keeps that size.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.adaptive_avg_pool2d(torch.arange(16.0).reshape(1, 1, 4, 4), 1)
        tensor([[[[7.5000]]]])
    """
    h, w = input.shape[-2:]
    if isinstance(output_size, (tuple, list)):  # None keeps that dimension's size
        output_size = tuple(d if s is None else s for s, d in zip(output_size, (h, w)))
    size = _tuple(output_size, 2, "output_size")
    if h % size[0] or w % size[1]:
        # PyTorch's windows [floor(i*n/m), ceil((i+1)*n/m)) overlap here: average by matrices
        rows = Tensor._wrap(_adaptive_weights(h, size[0], input.np_dtype))
        cols = Tensor._wrap(_adaptive_weights(w, size[1], input.np_dtype))
        return rows @ (input @ cols.t())
    kernel = (h // size[0], w // size[1])
    return avg_pool2d(input, kernel, kernel)


def _adaptive_weights(n, m, dtype):
    """(m, n) matrix whose row i averages input positions floor(i*n/m) .. ceil((i+1)*n/m) - 1."""
    a = np.zeros((m, n), dtype)
    for i in range(m):
        start, end = (i * n) // m, -((-(i + 1) * n) // m)
        a[i, start:end] = 1.0 / (end - start)
    return a


# ---------------------------------------------------------------------------------------------
# Dropout, embedding, normalisation
# ---------------------------------------------------------------------------------------------

def dropout(input, p=0.5, training=True, inplace=False):
    """input with elements zeroed with probability p and the rest scaled by 1 / (1 - p).

    Args:
        input: the input Tensor.
        p: the probability of zeroing an element.
        training: apply dropout (False returns input).
        inplace: write the result into input.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.dropout(torch.tensor([-1.0, 0.0, 2.0]), p=0.5, training=False)
        tensor([-1.,  0.,  2.])
    """
    if p < 0 or p > 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    from ..functions import _generator
    keep = _generator().random(tuple(input.shape)) >= p
    noise = keep.astype(input.np_dtype) / input.np_dtype.type(1 - p) if p < 1 else \
        np.zeros(tuple(input.shape), input.np_dtype)
    return input * noise


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """The rows of weight at the indices in input.

    Args:
        input: indices (int64).
        weight: the (num_embeddings, dim) table.
        padding_idx: an index whose row gets no gradient.
        max_norm: renormalise looked-up rows to at most this norm (in place).
        norm_type: the p of max_norm's norm.
        scale_grad_by_freq: scale gradients by the inverse frequency of the indices.
        sparse: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.embedding(torch.tensor([1, 0]), torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
        tensor([[2., 3.],
                [0., 1.]])
    """
    index = input._data if isinstance(input, Tensor) else np.asarray(input)
    if index.dtype.kind not in "iu":
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following "
                           f"scalar types: Long, Int; but got {index.dtype} instead (call .long())")
    if max_norm is not None or scale_grad_by_freq:
        raise NotImplementedError("embedding: max_norm and scale_grad_by_freq are not supported")
    rows = weight[index]
    if padding_idx is None:
        return rows
    if padding_idx < 0:
        padding_idx += weight.shape[0]
    # the padding row reads its value but takes no gradient, as in PyTorch
    return P.where((index != padding_idx)[..., None], rows, rows.detach())


def _affine(out, weight, bias, name):
    """out * weight + bias, the last step named as PyTorch's fused normalisation node."""
    if weight is not None:
        out = _named(P.mul, (out, weight), name) if bias is None else out * weight
    return out if bias is None else _named(P.add, (out, bias), name)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """input normalised to mean 0 and variance 1 over its last dimensions, then scaled and shifted.

    Args:
        input: the input Tensor.
        normalized_shape: the trailing shape normalised over.
        weight: the elementwise scale (None for 1).
        bias: the elementwise shift (None for 0).
        eps: added to the denominator for stability.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.layer_norm(torch.tensor([[1.0, 3.0]]), (2,))
        tensor([[-1.0000,  1.0000]])
    """
    normalized_shape = _tuple(normalized_shape, len(normalized_shape)
                              if not isinstance(normalized_shape, int) else 1, "normalized_shape")
    if tuple(input.shape[input.ndim - len(normalized_shape):]) != normalized_shape:
        raise RuntimeError(f"Given normalized_shape={list(normalized_shape)}, expected input with "
                           f"shape [*, {', '.join(map(str, normalized_shape))}], but got input of "
                           f"size{list(input.shape)}")
    dims = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    centred = input - input.mean(dims, keepdim=True)
    var = (centred * centred).mean(dims, keepdim=True)
    return _affine(centred * P.pow_(var + eps, -0.5), weight, bias,
                   "NativeLayerNormBackward0")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """input normalised per channel (dimension 1) by batch or running statistics.

    Args:
        input: the input Tensor.
        running_mean: the running mean per channel (updated in training; None for none).
        running_var: the running variance per channel (updated in training; None for none).
        weight: the scale per channel (None for 1).
        bias: the shift per channel (None for 0).
        training: use (and update running statistics from) the batch's statistics.
        momentum: the running statistics' update rate.
        eps: added to the denominator for stability.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.batch_norm(torch.tensor([[1.0], [3.0]]), None, None, training=True)
        tensor([[-1.0000],
                [ 1.0000]])
    """
    if input.ndim < 2:
        raise ValueError(f"expected 2D or more input (got {input.ndim}D input)")
    channels = input.shape[1]
    dims = (0,) + tuple(range(2, input.ndim))
    shape = (1, channels) + (1,) * (input.ndim - 2)
    count = input.numel() // channels
    if training:
        if count <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got input "
                             f"size {input.shape}")
        mean = input.mean(dims, keepdim=True)
        centred = input - mean
        var = (centred * centred).mean(dims, keepdim=True)
        if running_mean is not None:  # PyTorch keeps the unbiased variance in running_var
            _blend(running_mean, mean._data.reshape(channels), momentum)
        if running_var is not None:
            _blend(running_var, var._data.reshape(channels) * (count / (count - 1)), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when "
                             "training=False")
        centred = input - running_mean.reshape(shape)
        var = running_var.reshape(shape)
    out = centred * P.pow_(var + eps, -0.5)
    return _affine(out, None if weight is None else weight.reshape(shape),
                   None if bias is None else bias.reshape(shape), "NativeBatchNormBackward0")


def _blend(running, batch_value, momentum):
    """running <- (1 - momentum) * running + momentum * batch_value, in place, outside autograd."""
    data = running._data
    data *= 1 - momentum
    data += momentum * batch_value.astype(data.dtype)
    running._version_counter[0] += 1


def bilinear(input1, input2, weight, bias=None):
    """input1^T A input2 + b for each output feature.

    Args:
        input1: the first input, (N, in1).
        input2: the second input, (N, in2).
        weight: the (out, in1, in2) weight.
        bias: the bias Tensor (None for none).

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.bilinear(torch.tensor([[1.0]]), torch.tensor([[2.0]]), torch.tensor([[[3.0]]]))
        tensor([[6.]])
    """
    # out[n, o] = x1[n] . W[o] . x2[n]
    left = input1.unsqueeze(1).unsqueeze(1) @ weight  # (N, 1, 1, I1) @ (O, I1, I2): (N, O, 1, I2)
    out = (left.squeeze(2) * input2.unsqueeze(1)).sum(-1)
    return out if bias is None else out + bias


def pad(input, pad, mode="constant", value=None):
    """input padded on its last dimensions.

    Args:
        input: the input Tensor.
        pad: (left, right) sizes for the last dimension, then for the one before, ...
        mode: 'constant', 'reflect', 'replicate' or 'circular'.
        value: the fill value of 'constant' (default 0).

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.pad(torch.tensor([1.0, 2.0]), (1, 2))
        tensor([0., 1., 2., 0., 0.])
    """
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is not supported by tapegrad")
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise RuntimeError("Padding length must be divisible by 2 and at most twice the number "
                           "of dimensions of the input")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):  # pairs run from the last dimension backwards
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    shape = tuple(n + a + b for n, (a, b) in zip(input.shape, widths))
    base = np.full(shape, 0 if value is None else value, input.np_dtype)
    index = tuple(slice(a, a + n) for n, (a, b) in zip(input.shape, widths))
    base[index] = 0  # the input is added onto the fill
    return P.index_add(base, input, index=index)


def one_hot(tensor, num_classes=-1):
    """An int64 Tensor with a trailing class dimension holding 1 at each index.

    Args:
        tensor: class indices (int64).
        num_classes: the number of classes (-1: the largest index + 1).

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.one_hot(torch.tensor([0, 2]))
        tensor([[1, 0, 0],
                [0, 0, 1]])
    """
    data = tensor._data
    if num_classes < 0:
        num_classes = int(data.max()) + 1
    return Tensor._wrap((data[..., None] == np.arange(num_classes)).astype(np.int64))


def normalize(input, p=2.0, dim=1, eps=1e-12):
    """input divided by its p-norm along dim (at least eps).

    Args:
        input: the input Tensor.
        p: the norm's exponent.
        dim: the dimension normalised over.
        eps: added to the denominator for stability.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.normalize(torch.tensor([[3.0, 4.0]]))
        tensor([[0.6000, 0.8000]])
    """
    norm = input.norm(p, dim, keepdim=True)
    return input / P.maximum(norm, eps)


# ---------------------------------------------------------------------------------------------
# PyTorch's grad_fn names for the composite functions above
# ---------------------------------------------------------------------------------------------

def _shown_as(name, fn):
    """fn, its result's grad_fn shown under PyTorch's name for the fused op (BCE-with-logits'
    last node is an add or a mean here; PyTorch's is BinaryCrossEntropyWithLogitsBackward0)."""
    import functools
    from .._tensor_methods import shown_as

    @functools.wraps(fn)
    def wrapper(input, *args, **kwargs):
        return shown_as(fn(input, *args, **kwargs), name, input)
    return wrapper


smooth_l1_loss = _shown_as("SmoothL1LossBackward0", smooth_l1_loss)
huber_loss = _shown_as("HuberLossBackward0", huber_loss)
binary_cross_entropy_with_logits = _shown_as("BinaryCrossEntropyWithLogitsBackward0",
                                             binary_cross_entropy_with_logits)
nll_loss = _shown_as("NllLossBackward0", nll_loss)
cross_entropy = _shown_as("NllLossBackward0", cross_entropy)
embedding = _shown_as("EmbeddingBackward0", embedding)
avg_pool2d = _shown_as("AvgPool2DBackward0", avg_pool2d)
layer_norm = _shown_as("NativeLayerNormBackward0", layer_norm)
gelu = _shown_as("GeluBackward0", gelu)
silu = _shown_as("SiluBackward0", silu)
leaky_relu = _shown_as("LeakyReluBackward0", leaky_relu)
elu = _shown_as("EluBackward0", elu)
hardtanh = _shown_as("HardtanhBackward0", hardtanh)
relu6 = _shown_as("HardtanhBackward0", relu6)
logsigmoid = _shown_as("LogSigmoidBackward0", logsigmoid)


# ---------------------------------------------------------------------------------------------
# More activations, pooling, normalisation, distances, attention and losses
# ---------------------------------------------------------------------------------------------

def selu(input, inplace=False):
    """SELU: scale * (x if x > 0 else alpha * (exp(x) - 1)), PyTorch's constants.

    Args:
        input: the input Tensor.
        inplace: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.selu(torch.tensor([-1.0, 0.5, 2.0]))
        tensor([-1.1113,  0.5254,  2.1014])
    """
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    return scale * P.where(input > 0, input, alpha * P.expm1(input))


def celu(input, alpha=1.0, inplace=False):
    """CELU: x if x > 0 else alpha * (exp(x / alpha) - 1).

    Args:
        input: the input Tensor.
        alpha: the scale of the negative part.
        inplace: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.celu(torch.tensor([-1.0, 0.5, 2.0]), alpha=0.5)
        tensor([-0.4323,  0.5000,  2.0000])
    """
    return P.where(input > 0, input, alpha * P.expm1(input / alpha))


def hardsigmoid(input, inplace=False):
    """clamp(x / 6 + 1/2, 0, 1).

    Args:
        input: the input Tensor.
        inplace: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.hardsigmoid(torch.tensor([-4.0, 0.0, 1.5]))
        tensor([0.0000, 0.5000, 0.7500])
    """
    return P.clamp(input / 6 + 0.5, min=0.0, max=1.0)


def hardswish(input, inplace=False):
    """x * hardsigmoid(x).

    Args:
        input: the input Tensor.
        inplace: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.hardswish(torch.tensor([-4.0, 0.0, 1.5]))
        tensor([-0.0000, 0.0000, 1.1250])
    """
    return input * hardsigmoid(input)


def softshrink(input, lambd=0.5):
    """x - lambd above lambd, x + lambd below -lambd, 0 between.

    Args:
        input: the input Tensor.
        lambd: the threshold.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.softshrink(torch.tensor([-1.0, 0.5, 2.0]))
        tensor([-0.5000,  0.0000,  1.5000])
    """
    return P.where(input > lambd, input - lambd, P.where(input < -lambd, input + lambd, 0))


def tanhshrink(input):
    """x - tanh(x).

    Args:
        input: the input Tensor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.tanhshrink(torch.tensor([-1.0, 0.5, 2.0]))
        tensor([-0.2384,  0.0379,  1.0360])
    """
    return input - P.tanh(input)


def threshold(input, threshold, value, inplace=False):
    """x where x > threshold, else value.

    Args:
        input: the input Tensor.
        threshold: the threshold.
        value: the value below it.
        inplace: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.threshold(torch.tensor([-1.0, 0.5, 2.0]), 0.0, -5.0)
        tensor([-5.0000,  0.5000,  2.0000])
    """
    return P.where(input > threshold, input, value)


def prelu(input, weight):
    """x where x > 0, else weight * x (one weight, or one per channel of dim 1).

    Args:
        input: the input Tensor.
        weight: the slopes: one element, or one per channel.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.prelu(torch.tensor([-1.0, 0.5, 2.0]), torch.tensor([0.25]))
        tensor([-0.2500,  0.5000,  2.0000])
    """
    w = weight.reshape((-1,) + (1,) * (input.ndim - 2)) if input.ndim > 1 and \
        weight.numel() > 1 else weight
    return P.where(input > 0, input, w * input)


def glu(input, dim=-1):
    """The gated linear unit: a * sigmoid(b), a and b the halves of input along dim.

    Args:
        input: the input Tensor (even length along dim).
        dim: the dimension split in two.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.glu(torch.tensor([1.0, 2.0, 0.0, 100.0]))
        tensor([0.5000, 2.0000])
    """
    a, b = input.chunk(2, dim)
    return a * P.sigmoid(b)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-d max pooling over the last dimension of (N, C, L) or (C, L).

    Args:
        input: the input Tensor.
        kernel_size: the window length.
        stride: the step (default kernel_size).
        padding: implicit -inf padding on both sides.
        dilation: the spacing inside a window.
        ceil_mode: round the output length up.
        return_indices: accepted for PyTorch compatibility (False only).

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.max_pool1d(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
        tensor([[[3., 2.]]])
    """
    k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
    s = k if stride is None else (stride if isinstance(stride, int) else stride[0])
    p = padding if isinstance(padding, int) else padding[0]
    d = dilation if isinstance(dilation, int) else dilation[0]
    out = max_pool2d(input.unsqueeze(-2), (1, k), (1, s), (0, p), (1, d), ceil_mode)
    return out.squeeze(-2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-d mean pooling over the last dimension of (N, C, L) or (C, L).

    Args:
        input: the input Tensor.
        kernel_size: the window length.
        stride: the step (default kernel_size).
        padding: implicit zero padding on both sides.
        ceil_mode: round the output length up.
        count_include_pad: count the padding in the divisor.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.avg_pool1d(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 2)
        tensor([[[2., 1.]]])
    """
    k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
    s = k if stride is None else (stride if isinstance(stride, int) else stride[0])
    p = padding if isinstance(padding, int) else padding[0]
    return avg_pool2d(input.unsqueeze(-2), (1, k), (1, s), (0, p), ceil_mode,
                      count_include_pad).squeeze(-2)


def adaptive_avg_pool1d(input, output_size):
    """Mean pooling of the last dimension to output_size windows (PyTorch's windows).

    Args:
        input: the input Tensor.
        output_size: the output length.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.adaptive_avg_pool1d(torch.tensor([[[1.0, 3.0, 2.0, 0.0]]]), 3)
        tensor([[[2.0000, 2.5000, 1.0000]]])
    """
    size = output_size if isinstance(output_size, int) else output_size[0]
    return adaptive_avg_pool2d(input.unsqueeze(-2), (1, size)).squeeze(-2)


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, L) with probability p, scaling the rest by 1 / (1 - p).

    Args:
        input: the input Tensor.
        p: the probability of zeroing a channel.
        training: apply dropout (False returns input).
        inplace: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.dropout1d(torch.ones(1, 2, 3), 0.5, training=False)
        tensor([[[1., 1., 1.],
                 [1., 1., 1.]]])
    """
    return _channel_dropout(input, p, training, 1)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) with probability p, scaling the rest by 1 / (1 - p).

    Args:
        input: the input Tensor.
        p: the probability of zeroing a channel.
        training: apply dropout (False returns input).
        inplace: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.dropout2d(torch.ones(1, 1, 1, 2), 0.5, training=False)
        tensor([[[[1., 1.]]]])
    """
    return _channel_dropout(input, p, training, 2)


def _channel_dropout(input, p, training, spatial):
    if p < 0 or p > 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0:
        return input
    from ..functions import _generator
    batched = input.ndim == spatial + 2
    shape = tuple(input.shape[:2] if batched else input.shape[:1]) + (1,) * spatial
    keep = (_generator().random(shape) >= p).astype(input.np_dtype)
    return input * (keep / input.np_dtype.type(1 - p) if p < 1 else keep * 0)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise (N, C, ...) over groups of channels, then scale and shift per channel.

    Args:
        input: the input Tensor.
        num_groups: the number of channel groups (divides C).
        weight: a scale per channel (None for none).
        bias: a shift per channel (None for none).
        eps: added to the variance.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.group_norm(torch.tensor([[[1.0], [3.0]]]), 1)
        tensor([[[-1.0000],
                 [ 1.0000]]])
    """
    n, c = input.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by "
                           f"num_groups, but got input of shape {list(input.shape)} and "
                           f"num_groups={num_groups}")
    x = input.reshape(n, num_groups, -1)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    out = ((x - mean) * P.pow_(var + eps, -0.5)).reshape(tuple(input.shape))
    shape = (1, c) + (1,) * (input.ndim - 2)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each channel of each sample of (N, C, ...) over its own elements.

    Args:
        input: the input Tensor.
        running_mean: accepted for PyTorch compatibility (running statistics are not kept).
        running_var: as running_mean.
        weight: a scale per channel (None for none).
        bias: a shift per channel (None for none).
        use_input_stats: accepted for PyTorch compatibility.
        momentum: accepted for PyTorch compatibility.
        eps: added to the variance.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.instance_norm(torch.tensor([[[1.0, 3.0]]]))
        tensor([[[-1.0000,  1.0000]]])
    """
    return group_norm(input, input.shape[1], weight, bias, eps)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """The cosine of the angle between x1 and x2 along dim.

    Args:
        x1: the first Tensor.
        x2: the second Tensor (broadcast with x1).
        dim: the dimension of the vectors.
        eps: the smallest norm used.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.cosine_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
        tensor([0.7071])
    """
    dot = (x1 * x2).sum(dim)
    n1 = P.maximum((x1 * x1).sum(dim), eps * eps)
    n2 = P.maximum((x2 * x2).sum(dim), eps * eps)
    return dot / P.sqrt(n1 * n2)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """The p-norm of x1 - x2 + eps along the last dimension.

    Args:
        x1: the first Tensor.
        x2: the second Tensor.
        p: the norm degree.
        eps: added to the difference.
        keepdim: keep the reduced dimension.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.pairwise_distance(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), eps=0.0)
        tensor([5.])
    """
    diff = x1 - x2 + eps
    if p == 2.0:
        return P.sqrt((diff * diff).sum(-1, keepdim=keepdim))
    return (diff.abs() ** p).sum(-1, keepdim=keepdim) ** (1.0 / p)


def pixel_shuffle(input, upscale_factor):
    """Rearrange (*, C * r^2, H, W) into (*, C, H * r, W * r).

    Args:
        input: the input Tensor.
        upscale_factor: r.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.pixel_shuffle(torch.arange(4.0).reshape(1, 4, 1, 1), 2)
        tensor([[[[0., 1.],
                  [2., 3.]]]])
    """
    r = upscale_factor
    *lead, c, h, w = input.shape
    x = input.reshape(tuple(lead) + (c // (r * r), r, r, h, w))
    k = len(lead)
    x = x.permute(*range(k), k, k + 3, k + 1, k + 4, k + 2)
    return x.reshape(tuple(lead) + (c // (r * r), h * r, w * r))


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dimensions of (N, C, ...) by nearest neighbour (PyTorch's 'nearest').

    Args:
        input: the input Tensor.
        size: the output spatial size.
        scale_factor: or the factor(s) to scale by.
        mode: 'nearest' (the only mode here).
        align_corners: accepted for PyTorch compatibility.
        recompute_scale_factor: accepted for PyTorch compatibility.
        antialias: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.interpolate(torch.tensor([[[1.0, 2.0]]]), scale_factor=2)
        tensor([[[1., 1., 2., 2.]]])
    """
    if mode != "nearest":
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported by tapegrad "
                                  "(mode='nearest' is)")
    spatial = input.shape[2:]
    if size is None:
        factors = scale_factor if isinstance(scale_factor, (tuple, list)) else \
            (scale_factor,) * len(spatial)
        size = tuple(int(math.floor(n * f)) for n, f in zip(spatial, factors))
    elif isinstance(size, int):
        size = (size,) * len(spatial)
    out = input
    for i, (n, m) in enumerate(zip(spatial, size)):
        index = np.floor(np.arange(m) * (n / m)).astype(np.int64)   # PyTorch's 'nearest'
        out = out[(slice(None),) * (2 + i) + (np.minimum(index, n - 1),)]
    return out


upsample = interpolate


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """softmax(Q K^T / sqrt(d) + mask) V.

    Args:
        query: the (..., L, d) queries.
        key: the (..., S, d) keys.
        value: the (..., S, e) values.
        attn_mask: a bool mask (True: may attend) or an additive float mask.
        dropout_p: dropout on the weights.
        is_causal: mask out later positions.
        scale: the scale (default 1 / sqrt(d)).
        enable_gqa: accepted for PyTorch compatibility.

    Returns:
        The Tensor.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.scaled_dot_product_attention(torch.ones(1, 2, 2), torch.ones(1, 2, 2), torch.tensor([[[1.0], [3.0]]]))
        tensor([[[2.],
                 [2.]]])
    """
    d = query.shape[-1]
    scores = (query @ key.transpose(-2, -1)) * (1.0 / math.sqrt(d) if scale is None else scale)
    if is_causal:
        lq, lk = query.shape[-2], key.shape[-2]
        attn_mask = Tensor._wrap(np.tril(np.ones((lq, lk), bool)))
    if attn_mask is not None:
        if attn_mask.dtype.name == "bool":
            scores = P.where(attn_mask, scores, -np.inf)
        else:
            scores = scores + attn_mask
    weights = softmax(scores, -1)
    if dropout_p:
        weights = dropout(weights, dropout_p)
    return weights @ value


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """max(0, -target * (input1 - input2) + margin).

    Args:
        input1: the first scores.
        input2: the second scores.
        target: 1 where input1 should rank higher, -1 otherwise.
        margin: the margin.
        reduction: 'mean', 'sum' or 'none'.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.margin_ranking_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))
        tensor(0.5000)
    """
    return _reduce(P.maximum(-target * (input1 - input2) + margin, 0.0), reduction)


def soft_margin_loss(input, target, reduction="mean"):
    """log(1 + exp(-target * input)).

    Args:
        input: the scores.
        target: 1 or -1 per element.
        reduction: 'mean', 'sum' or 'none'.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.soft_margin_loss(torch.tensor([2.0, -1.0]), torch.tensor([1.0, -1.0]))
        tensor(0.2201)
    """
    return _reduce(P.softplus(-target * input), reduction)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean"):
    """1 - cos(x1, x2) where target is 1, max(0, cos(x1, x2) - margin) where it is -1.

    Args:
        input1: the first vectors (N, D).
        input2: the second vectors (N, D).
        target: 1 or -1 per row.
        margin: the margin for dissimilar pairs.
        reduction: 'mean', 'sum' or 'none'.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.cosine_embedding_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([1.0]))
        tensor(0.2929)
    """
    cos = cosine_similarity(input1, input2, dim=-1, eps=1e-12)
    loss = P.where(target > 0, 1 - cos, P.maximum(cos - margin, 0.0))
    return _reduce(loss, reduction)


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False,
                        reduction="mean"):
    """max(d(anchor, positive) - d(anchor, negative) + margin, 0).

    Args:
        anchor: the anchors (N, D).
        positive: the positives.
        negative: the negatives.
        margin: the margin.
        p: the norm degree of the distance.
        eps: added to differences.
        swap: use the smaller of the two negative distances.
        reduction: 'mean', 'sum' or 'none'.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.triplet_margin_loss(torch.zeros(1, 2), torch.ones(1, 2), torch.zeros(1, 2) + 3, eps=0.0)
        tensor(0.)
    """
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = P.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce(P.maximum(d_pos - d_neg + margin, 0.0), reduction)


def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean"):
    """The Poisson negative log likelihood: exp(input) - target * input for log inputs.

    Args:
        input: the predicted (log) rates.
        target: the counts.
        log_input: input holds log rates.
        full: add Stirling's term.
        eps: added inside the log when log_input is False.
        reduction: 'mean', 'sum' or 'none'.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.poisson_nll_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]))
        tensor(0.8591)
    """
    loss = P.exp(input) - target * input if log_input else input - target * P.log(input + eps)
    if full:
        t = target
        stirling = t * P.log(P.where(t > 1, t, 1.0)) - t + 0.5 * P.log(2 * math.pi * P.where(
            t > 1, t, 1.0))
        loss = loss + P.where(t > 1, stirling, 0.0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """The Gaussian negative log likelihood: (log var + (input - target)^2 / var) / 2.

    Args:
        input: the predicted means.
        target: the targets.
        var: the predicted variances (clamped to eps).
        full: add the constant log(2 pi) / 2.
        eps: the smallest variance.
        reduction: 'mean', 'sum' or 'none'.

    Returns:
        The loss: a 0-d Tensor, or per element with reduction='none'.

    Example:
        >>> import tapegrad as torch
        >>> import tapegrad.nn.functional as F
        >>> F.gaussian_nll_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]), torch.ones(2))
        tensor(0.2500)
    """
    var = P.maximum(var, eps)
    loss = 0.5 * (P.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)
