"""nn.Module: parameters, buffers and child modules registered by attribute assignment."""
import collections
import itertools

import numpy as np

from ... import dtypes
from ..._device import check_device
from ...autograd import Function
from ...tensor import Tensor
from ..parameter import Parameter
from ..utils import zero_grad_

_hook_ids = itertools.count()


class RemovableHandle:
    def __init__(self, *hook_dicts):
        self.id = next(_hook_ids)
        self._dicts = hook_dicts

    def remove(self):
        for hooks in self._dicts:
            hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class _IncompatibleKeys(collections.namedtuple("IncompatibleKeys",
                                               ["missing_keys", "unexpected_keys"])):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(s, spaces):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _set_data(t, data):
    """Replace a parameter's or buffer's values in place, outside autograd (load_state_dict)."""
    t._data[...] = data
    t._version_counter[0] += 1


class Module:
    """Base class of every layer: subclass it, assign layers and Parameters in __init__, and write
    forward(). Call the module (not forward) so that hooks run."""

    training: bool
    _version = 1
    call_super_init = False

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got unexpected arguments; "
                            "Module.__init__ takes none")
        setattr_ = object.__setattr__
        setattr_(self, "training", True)
        setattr_(self, "_parameters", {})
        setattr_(self, "_buffers", {})
        setattr_(self, "_non_persistent_buffers_set", set())
        setattr_(self, "_modules", {})
        setattr_(self, "_forward_hooks", collections.OrderedDict())
        setattr_(self, "_forward_hooks_with_kwargs", {})
        setattr_(self, "_forward_pre_hooks", collections.OrderedDict())
        setattr_(self, "_forward_pre_hooks_with_kwargs", {})

    def forward(self, *input):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required '
                                  '"forward" function')

    # ------------------------------------------------------------------ registration
    def _check_init(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name} before Module.__init__() call (call "
                                 "super().__init__() first in your __init__)")

    def register_parameter(self, name, param):
        self._check_init("parameters")
        if not isinstance(name, str):
            raise TypeError(f"parameter name should be a string. Got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f'parameter name can\'t contain "." or be empty, got {name!r}')
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{_typename(param)}' object to parameter '{name}' "
                            "(torch.nn.Parameter or None required)")
        if param is not None and param.grad_fn is not None:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'. Model "
                             "parameters must be created explicitly. To express '{name}' as a "
                             "function of another Tensor, compute the value in the forward() "
                             "method.")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        self._check_init("buffers")
        if "." in name or name == "":
            raise KeyError(f'buffer name can\'t contain "." or be empty, got {name!r}')
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_typename(tensor)}' object to buffer '{name}' "
                            "(torch Tensor or None required)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{_typename(module)} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {type(name).__name__}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name or name == "":
            raise KeyError(f'module name can\'t contain "." or be empty, got {name!r}')
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        def remove_from(*dicts):
            for d in dicts:
                d.pop(name, None)

        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call "
                                     "(call super().__init__() first in your __init__)")
            remove_from(self.__dict__, self._buffers, self._modules)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as parameter '{name}' "
                                "(torch.nn.Parameter or None expected)")
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            if params is None:
                raise AttributeError("cannot assign module before Module.__init__() call "
                                     "(call super().__init__() first in your __init__)")
            remove_from(self.__dict__, self._parameters, self._buffers)
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign '{_typename(value)}' as child module '{name}' "
                                "(torch.nn.Module or None expected)")
            self._modules[name] = value
        elif params is not None and name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_typename(value)}' as buffer '{name}' "
                                "(torch.Tensor or None expected)")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = list(object.__dir__(self)) + list(self._parameters) + list(self._modules) + \
            list(self._buffers)
        return sorted(k for k in set(keys) if not k[0].isdigit())

    def get_submodule(self, target):
        module = self
        for item in target.split(".") if target else ():
            if item not in module._modules:
                raise AttributeError(f"{module._get_name()} has no attribute `{item}`")
            module = module._modules[item]
        return module

    def get_parameter(self, target):
        path, _, name = target.rpartition(".")
        module = self.get_submodule(path)
        if name not in module._parameters:
            raise AttributeError(f"{module._get_name()} has no parameter `{name}`")
        return module._parameters[name]

    # ------------------------------------------------------------------ iteration
    def _named_members(self, get_members, prefix="", recurse=True, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for k, v in get_members(module):
                if v is None or (remove_duplicate and id(v) in seen):
                    continue
                seen.add(id(v))
                yield (module_prefix + ("." if module_prefix else "") + k, v)

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse,
                                       remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse,
                                       remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        if memo is None:
            memo = set()
        if id(self) in memo:
            return
        if remove_duplicate:
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    # ------------------------------------------------------------------ calling and hooks
    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks or "_backward_hooks" in
                self.__dict__ or "_backward_pre_hooks" in self.__dict__):
            return self.forward(*args, **kwargs)      # no hooks: nothing to wrap or run
        for hook_id, hook in list(self._forward_pre_hooks.items()):
            if hook_id in self._forward_pre_hooks_with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    args, kwargs = result
            else:
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        hooked = self.__dict__.get("_backward_hooks") or self.__dict__.get("_backward_pre_hooks")
        if hooked:
            state = _BackwardHookState(self)
            args = state.wrap_inputs(args)
        output = self.forward(*args, **kwargs)
        if hooked:
            output = state.wrap_output(output)
        for hook_id, hook in list(self._forward_hooks.items()):
            if hook_id in self._forward_hooks_with_kwargs:
                result = hook(self, args, kwargs, output)
            else:
                result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_pre_hook(self, hook, *, prepend=False, with_kwargs=False):
        handle = RemovableHandle(self._forward_pre_hooks, self._forward_pre_hooks_with_kwargs)
        _insert(self._forward_pre_hooks, handle.id, hook, prepend)
        if with_kwargs:
            self._forward_pre_hooks_with_kwargs[handle.id] = True
        return handle

    def register_forward_hook(self, hook, *, prepend=False, with_kwargs=False,
                              always_call=False):
        handle = RemovableHandle(self._forward_hooks, self._forward_hooks_with_kwargs)
        _insert(self._forward_hooks, handle.id, hook, prepend)
        if with_kwargs:
            self._forward_hooks_with_kwargs[handle.id] = True
        return handle

    def register_full_backward_hook(self, hook, prepend=False):
        """hook(module, grad_input, grad_output), once the gradient wrt the input is known; it
        may return a replacement for grad_input."""
        return self._backward_hook_into("_backward_hooks", hook, prepend)

    def register_full_backward_pre_hook(self, hook, prepend=False):
        """hook(module, grad_output), before the module's backward; it may replace grad_output."""
        return self._backward_hook_into("_backward_pre_hooks", hook, prepend)

    def _backward_hook_into(self, name, hook, prepend):
        if name not in self.__dict__:
            object.__setattr__(self, name, collections.OrderedDict())
        handle = RemovableHandle(self.__dict__[name])
        _insert(self.__dict__[name], handle.id, hook, prepend)
        return handle

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        zero_grad_(self.parameters(), set_to_none)

    def apply(self, fn):
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ devices and dtypes
    def _apply_to_tensors(self, fn):
        for module in self.modules():
            for store in (module._parameters, module._buffers):
                for key, t in store.items():
                    if t is None:
                        continue
                    data = fn(t._data)
                    if data is not t._data:
                        t._data = data  # in place, so optimisers holding t see the change
                        if t._grad is not None:
                            t._grad._data = fn(t._grad._data)
        return self

    def to(self, *args, **kwargs):
        dtype = kwargs.pop("dtype", None)
        for a in list(args) + [kwargs.pop("device", None)]:
            if isinstance(a, dtypes.dtype):
                dtype = a
            elif isinstance(a, Tensor):
                dtype = a.dtype
            elif a is not None:
                check_device(a)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        if dtype is None:
            return self
        if not dtypes.to_numpy_dtype(dtype).kind == "f":
            raise TypeError("nn.Module.to only accepts floating point dtypes, but got desired "
                            f"dtype={dtype}")
        target = dtypes.to_numpy_dtype(dtype)
        return self._apply_to_tensors(
            lambda a: a.astype(target) if a.dtype.kind == "f" and a.dtype != target else a)

    def cpu(self):
        return self

    def cuda(self, device=None):
        check_device("cuda" if device is None else device)
        return self

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def type(self, dst_type):
        return self.to(dst_type)

    # ------------------------------------------------------------------ state dict
    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        if destination is None:
            destination = collections.OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True, assign=False):
        if not isinstance(state_dict, collections.abc.Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            data = value._data if isinstance(value, Tensor) else np.asarray(value)
            if data.shape != target._data.shape:
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{_size(data.shape)} from checkpoint, the shape in current model "
                              f"is {_size(target._data.shape)}.")
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: " +
                              ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: " +
                              ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t" +
                               "\n\t".join(errors))
        for key, target in own.items():
            if key in state_dict:
                value = state_dict[key]
                data = value._data if isinstance(value, Tensor) else np.asarray(value)
                if assign:
                    target._data = np.array(data, dtype=data.dtype)
                else:
                    _set_data(target, data)
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def _get_name(self):
        return type(self).__name__

    def extra_repr(self):
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _addindent(repr(module), 2)
                       for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    def __setstate__(self, state):
        self.__dict__.update(state)


class _BackwardHookState:
    """One call's backward hooks: identity nodes around the module's input and output."""

    def __init__(self, module):
        self.module = module
        self.grad_output = None
        self.input_tracked = False

    def wrap_inputs(self, args):
        tracked = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        if len(tracked) > 1:
            raise NotImplementedError(
                f"{self.module._get_name()}: tapegrad runs full backward hooks on modules with "
                "one tensor input needing grad; register a hook on each input tensor "
                "(tensor.register_hook) instead")
        if not tracked:
            return args
        self.input_tracked = True
        args = list(args)
        args[tracked[0]] = _HookInput.apply(args[tracked[0]], self)
        return tuple(args)

    def wrap_output(self, output):
        if not isinstance(output, Tensor):
            raise NotImplementedError(f"{self.module._get_name()}: tapegrad runs full backward "
                                      "hooks on modules that return one tensor")
        return _HookOutput.apply(output, self) if output.requires_grad else output


class _HookIdentity(Function):
    """x itself; its backward is where the module's backward hooks run."""

    @staticmethod
    def forward(ctx, x, state):
        ctx.state = state
        return x


class _HookOutput(_HookIdentity):
    @staticmethod
    def backward(ctx, g):
        state, module = ctx.state, ctx.state.module
        grad_output = _run_hooks(module, "_backward_pre_hooks", (g,),
                                 lambda hook, grads: hook(module, grads))
        state.grad_output = grad_output
        if not state.input_tracked:  # no input gradient will come: call the hooks now
            for hook in list(module.__dict__.get("_backward_hooks", {}).values()):
                hook(module, (None,), grad_output)
        return grad_output[0], None


class _HookInput(_HookIdentity):
    @staticmethod
    def backward(ctx, g):
        state, module = ctx.state, ctx.state.module
        grad_input = _run_hooks(module, "_backward_hooks", (g,),
                                lambda hook, grads: hook(module, grads, state.grad_output))
        return grad_input[0], None


def _run_hooks(module, name, grads, call):
    """Call each hook of module.<name> in turn; a hook's non-None result replaces the grads."""
    for hook in list(module.__dict__.get(name, {}).values()):
        result = call(hook, grads)
        if result is not None:
            grads = tuple(result) if isinstance(result, (tuple, list)) else (result,)
    return grads


def _insert(hooks, key, hook, prepend):
    hooks[key] = hook
    if prepend:
        hooks.move_to_end(key, last=False)


def _typename(value):
    if isinstance(value, Tensor):
        return "torch." + value.dtype.tensor_type
    return type(value).__module__ + "." + type(value).__qualname__ \
        if type(value).__module__ != "builtins" else type(value).__name__


def _size(shape):
    return "torch.Size([" + ", ".join(map(str, shape)) + "])"
