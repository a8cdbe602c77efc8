"""Optimizer: param_groups, per-parameter state, zero_grad, state_dict.

Updates are written on the parameters' NumPy arrays in place, in the order of operations of
PyTorch's single-tensor (for-loop) implementations, so that trajectories agree to float rounding.
"""
import collections
import copy

import numpy as np

from ..autograd import enable_grad
from ..nn.utils import zero_grad_
from ..tensor import Tensor


class _RequiredParameter:
    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """The base of the optimizers: parameter groups, zero_grad, state_dict / load_state_dict.

    Args:
        params: an iterable of Tensors, or of dicts (parameter groups) with per-group options.
        defaults: the options' default values, for groups that do not set them.

    Returns:
        The optimizer; subclasses implement step().

    Example:
        >>> import tapegrad as torch
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> opt = torch.optim.Optimizer([w], {"lr": 0.1})
        >>> opt.param_groups[0]["lr"]
        0.1
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = collections.defaultdict(dict)
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got " + _typename(params))
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        params = list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):
            # model.named_parameters(): torch keeps the names in the group
            param_group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        param_group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + _typename(p))
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        if not set_to_none:
            zero_grad_((p for group in self.param_groups for p in group["params"]), False)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p._grad = None  # (parameters are leaves: no retain_grad warning to give)

    def step(self, closure=None):
        loss = _run_closure(closure)
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group):
        state = self.state
        maximize = group.get("maximize")
        for p in group["params"]:
            grad = p._grad
            if grad is None:
                continue
            grad = grad._data
            if maximize:
                grad = -grad
            self._update(p, grad, state[p], group)
            p._version_counter[0] += 1  # an in-place write, as torch's no_grad update is

    def _update(self, p, grad, state, group):
        raise NotImplementedError

    # ------------------------------------------------------------------ state dict
    def state_dict(self):
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: value for p, value in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        state_dict = copy.deepcopy(state_dict)
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for mine, theirs in zip(self.param_groups, groups):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 "match the size of optimizer's group")
        params = {}
        for mine, theirs in zip(self.param_groups, groups):
            params.update(zip(theirs["params"], mine["params"]))
            mine.update({k: v for k, v in theirs.items() if k != "params"})
        self.state = collections.defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in params:
                p = params[key]
                self.state[p] = {k: _cast_like(v, p, k) for k, v in value.items()}

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self):
        text = type(self).__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"


def _run_closure(closure):
    """The loss the closure re-evaluates (with grad enabled, as step may run under no_grad)."""
    if closure is None:
        return None
    with enable_grad():
        return closure()


def _cast_like(value, p, key):
    """Loaded state follows the parameter's dtype, except the step count (as in PyTorch)."""
    if isinstance(value, Tensor) and key != "step" and value._data.dtype.kind == "f":
        return Tensor._wrap(value._data.astype(p._data.dtype))
    return value


def _typename(value):
    return "torch." + value.dtype.tensor_type if isinstance(value, Tensor) \
        else type(value).__name__


def _buffer(state, key, p, fill=0.0):
    """state[key] as a NumPy array shaped like p (created filled with `fill` on first use)."""
    if key not in state:
        state[key] = Tensor._wrap(np.full_like(p._data, fill))
    return state[key]._data


def _step(state):
    """Count the step in state['step'] (a float32 scalar tensor, as torch keeps it)."""
    if "step" not in state:
        state["step"] = Tensor._wrap(np.zeros((), np.float32))
    state["step"]._data += 1
    return float(state["step"]._data)


def _check(name, value, low=0.0):
    if not value >= low:
        raise ValueError(f"Invalid {name}: {value}")
