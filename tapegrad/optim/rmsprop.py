"""RMSprop and Adagrad, as torch.optim computes them."""
import numpy as np

from ..tensor import Tensor
from .adam import _lerp
from .optimizer import Optimizer, _buffer, _check, _step


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop).

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        lr: the learning rate.
        alpha: decay rate of the squared-gradient average.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient.
        momentum: the momentum factor.
        centered: normalise by the gradient's estimated variance.
        maximize: ascend instead of descend.
        capturable, foreach, differentiable: accepted for PyTorch compatibility.

    Returns:
        The optimizer; each step() updates the parameters in place from their .grad.

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = torch.optim.RMSprop([w], lr=0.01)
        >>> (w ** 2).sum().backward()
        >>> opt.step()
        >>> w
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        _check("learning rate", lr)
        _check("epsilon value", eps)
        _check("momentum value", momentum)
        _check("weight_decay value", weight_decay)
        _check("alpha value", alpha)
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps,
                                      centered=centered, weight_decay=weight_decay,
                                      capturable=capturable, foreach=foreach, maximize=maximize,
                                      differentiable=differentiable))

    def _update(self, p, grad, state, group):
        x = p._data
        alpha = group["alpha"]
        _step(state)
        square_avg = _buffer(state, "square_avg", p)
        if group["momentum"] > 0:
            _buffer(state, "momentum_buffer", p)
        if group["centered"]:
            _buffer(state, "grad_avg", p)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * x
        square_avg *= alpha
        square_avg += (1 - alpha) * (grad * grad)
        if group["centered"]:
            grad_avg = state["grad_avg"]._data
            _lerp(grad_avg, grad, 1 - alpha)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]._data
            buf *= group["momentum"]
            buf += grad / avg
            x -= group["lr"] * buf
        else:
            x -= group["lr"] * (grad / avg)


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad).

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        lr: the learning rate.
        lr_decay: learning-rate decay per step.
        weight_decay: L2 penalty added to the gradient.
        initial_accumulator_value: start of the squared-gradient sums.
        eps: added to the denominator.
        maximize: ascend instead of descend.
        foreach, differentiable, fused: accepted for PyTorch compatibility.

    Returns:
        The optimizer; each step() updates the parameters in place from their .grad.

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = torch.optim.Adagrad([w], lr=0.1)
        >>> (w ** 2).sum().backward()
        >>> opt.step()
        >>> w
        tensor([ 0.9000, -1.9000], requires_grad=True)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        _check("learning rate", lr)
        _check("lr_decay value", lr_decay)
        _check("weight_decay value", weight_decay)
        _check("initial_accumulator_value value", initial_accumulator_value)
        _check("epsilon value", eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      foreach=foreach, maximize=maximize,
                                      differentiable=differentiable, fused=fused))
        for group in self.param_groups:  # Adagrad's state exists from the start, as in torch
            for p in group["params"]:
                state = self.state[p]
                state["step"] = Tensor._wrap(np.zeros((), np.float32))
                _buffer(state, "sum", p, group["initial_accumulator_value"])

    def _update(self, p, grad, state, group):
        x = p._data
        step = _step(state)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * x
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        total = state["sum"]._data
        total += grad * grad
        std = np.sqrt(total) + group["eps"]
        x -= clr * (grad / std)
