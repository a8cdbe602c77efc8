"""Adam (with amsgrad) and AdamW (decoupled weight decay), as torch.optim computes them."""
import math

import numpy as np

from .optimizer import Optimizer, _buffer, _check, _step


def _lerp(a, b, weight):
    """a += weight * (b - a) in place, with torch.lerp's two forms (exact at either end)."""
    if abs(weight) < 0.5:
        step = b - a                         # one temporary, scaled in place
        step *= weight
        a += step
    else:
        a[...] = b - (b - a) * (1 - weight)


class Adam(Optimizer):
    """Adam (torch.optim.Adam).

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        lr: the learning rate.
        betas: decay rates of the first and second moment averages.
        eps: added to the denominator.
        weight_decay: L2 penalty (decoupled, as AdamW, with decoupled_weight_decay).
        amsgrad: use the maximum of past second moments.
        maximize: ascend instead of descend.
        decoupled_weight_decay: apply weight decay to the weights directly (AdamW).
        foreach, capturable, differentiable, fused: accepted for PyTorch compatibility.

    Returns:
        The optimizer; each step() updates the parameters in place from their .grad.

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = torch.optim.Adam([w], lr=0.1)
        >>> (w ** 2).sum().backward()
        >>> opt.step()
        >>> w
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=None):
        _check("learning rate", lr)
        _check("epsilon value", eps)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        _check("weight_decay value", weight_decay)
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, p, grad, state, group):
        x = p._data
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        step = _step(state)
        exp_avg = _buffer(state, "exp_avg", p)
        exp_avg_sq = _buffer(state, "exp_avg_sq", p)
        if group["weight_decay"] != 0:
            if group["decoupled_weight_decay"]:
                x *= 1 - lr * group["weight_decay"]
            else:
                grad = grad + group["weight_decay"] * x
        _lerp(exp_avg, grad, 1 - beta1)
        exp_avg_sq *= beta2
        square = grad * grad                 # the temporaries reused in place: same operations
        square *= 1 - beta2
        exp_avg_sq += square
        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        second = exp_avg_sq
        if group["amsgrad"]:
            second = _buffer(state, "max_exp_avg_sq", p)
            np.maximum(second, exp_avg_sq, out=second)
        denom = np.sqrt(second, out=np.empty_like(second))     # an array even when 0-d
        denom /= bias_correction2_sqrt
        denom += eps
        update = np.divide(exp_avg, denom, out=denom)
        update *= step_size
        x -= update


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW).

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        lr: the learning rate.
        betas: decay rates of the first and second moment averages.
        eps: added to the denominator.
        weight_decay: decay applied to the weights directly.
        amsgrad: use the maximum of past second moments.
        **kwargs: Adam's keyword arguments.

    Returns:
        The optimizer; each step() updates the parameters in place from their .grad.

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = torch.optim.AdamW([w], lr=0.1)
        >>> (w ** 2).sum().backward()
        >>> opt.step()
        >>> w
        tensor([ 0.8990, -1.8980], requires_grad=True)
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, **kwargs):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, **kwargs)
