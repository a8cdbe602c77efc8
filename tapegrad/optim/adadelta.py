"""Adadelta and Adamax, as torch.optim computes them."""
import numpy as np

from .optimizer import Optimizer, _buffer, _check, _step


class Adadelta(Optimizer):
    """Adadelta (torch.optim.Adadelta), the optimiser of PyTorch's MNIST example.

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        lr: the coefficient scaling the delta.
        rho: decay rate of the running averages.
        eps: added inside the square roots.
        weight_decay: L2 penalty added to the gradient.
        maximize: ascend instead of descend.
        foreach, capturable, differentiable: accepted for PyTorch compatibility.

    Returns:
        The optimizer; each step() updates the parameters in place from their .grad.

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = torch.optim.Adadelta([w], lr=1.0)
        >>> (w ** 2).sum().backward()
        >>> opt.step()
        >>> w
        tensor([ 0.9968, -1.9968], requires_grad=True)
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False):
        _check("learning rate", lr)
        _check("epsilon value", eps)
        _check("weight_decay value", weight_decay)
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, capturable=capturable, maximize=maximize,
                                      differentiable=differentiable))

    def _update(self, p, grad, state, group):
        x = p._data
        _step(state)
        square_avg = _buffer(state, "square_avg", p)
        acc_delta = _buffer(state, "acc_delta", p)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * x
        rho, eps = group["rho"], group["eps"]
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        x -= group["lr"] * delta


class Adamax(Optimizer):
    """Adamax (torch.optim.Adamax): Adam with the infinity norm.

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        lr: the learning rate.
        betas: decay rates of the first moment and of the infinity norm.
        eps: added to the norm.
        weight_decay: L2 penalty added to the gradient.
        maximize: ascend instead of descend.
        foreach, capturable, differentiable: accepted for PyTorch compatibility.

    Returns:
        The optimizer; each step() updates the parameters in place from their .grad.

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = torch.optim.Adamax([w], lr=0.1)
        >>> (w ** 2).sum().backward()
        >>> opt.step()
        >>> w
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        _check("learning rate", lr)
        _check("epsilon value", eps)
        _check("weight_decay value", weight_decay)
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, capturable=capturable))

    def _update(self, p, grad, state, group):
        x = p._data
        step = _step(state)
        exp_avg = _buffer(state, "exp_avg", p)
        exp_inf = _buffer(state, "exp_inf", p)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * x
        beta1, beta2 = group["betas"]
        exp_avg += (grad - exp_avg) * (1 - beta1)
        np.maximum(exp_inf * beta2, np.abs(grad) + group["eps"], out=exp_inf)
        clr = group["lr"] / (1 - beta1 ** step)
        x -= clr * (exp_avg / exp_inf)
