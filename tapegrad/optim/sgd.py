"""SGD with momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD)."""
import numpy as np

from ..tensor import Tensor
from .optimizer import Optimizer, _check, _run_closure


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (torch.optim.SGD).

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        lr: the learning rate.
        momentum: the momentum factor.
        dampening: dampening of the momentum.
        weight_decay: L2 penalty added to the gradient.
        nesterov: use Nesterov momentum.
        maximize: ascend instead of descend.
        foreach, differentiable, fused: accepted for PyTorch compatibility.

    Returns:
        The optimizer; each step() updates the parameters in place from their .grad.

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
        >>> opt = torch.optim.SGD([w], lr=0.1)
        >>> (w ** 2).sum().backward()
        >>> opt.step()
        >>> w
        tensor([ 0.8000, -1.6000], requires_grad=True)
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, foreach=None, differentiable=False, fused=None):
        _check("learning rate", lr)
        _check("momentum value", momentum)
        _check("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def step(self, closure=None):
        loss = _run_closure(closure)
        for group in self.param_groups:
            if group["momentum"] != 0 or group["weight_decay"] != 0 or group["maximize"]:
                self._step_group(group)
                continue
            # plain SGD, PyTorch's param.add_(grad, alpha=-lr): one in-place NumPy op per
            # parameter, and no state (torch keeps none without momentum)
            lr = group["lr"]
            for p in group["params"]:
                grad = p._grad
                if grad is not None:
                    x = p._data
                    x -= lr * grad._data
                    p._version_counter[0] += 1
        return loss

    def _update(self, p, grad, state, group):
        x = p._data
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * x
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = Tensor._wrap(np.array(grad, dtype=x.dtype))
            else:
                b = buf._data
                b *= momentum
                # (1 - 0) * grad is grad exactly: skip the multiply and its temporary
                b += grad if group["dampening"] == 0 else (1 - group["dampening"]) * grad
            grad = grad + momentum * buf._data if group["nesterov"] else buf._data
        x -= group["lr"] * grad
