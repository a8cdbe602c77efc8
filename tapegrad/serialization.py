"""torch.save / torch.load: pickles of tensors, state dicts and modules.

The file format is Python's pickle, not PyTorch's zip archive: files move between tapegrad
processes, not to PyTorch. load(weights_only=True) (PyTorch's default) unpickles only tensors,
NumPy arrays and plain containers, so a file cannot run code while loading."""
import os
import pickle

_SAFE = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "slice"), ("builtins", "complex"), ("copyreg", "_reconstructor"),
    ("copyreg", "__newobj__"), ("builtins", "object"),
    ("tapegrad.tensor", "Tensor"), ("tapegrad.tensor", "_View"),
    ("tapegrad._tensor_methods", "_rebuild_tensor"),
    ("tapegrad.nn.parameter", "Parameter"), ("tapegrad._device", "device"),
    ("tapegrad.dtypes", "dtype"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


_user_safe = {}   # (module, name) -> object, from add_safe_globals


def add_safe_globals(safe_globals):
    """Allow these classes and functions in load(weights_only=True), as PyTorch's does.

    Args:
        safe_globals: a list of classes/functions (or (object, "module.name") pairs).

    Returns:
        None.

    Example:
        >>> import io, tapegrad as torch
        >>> class Box:
        ...     pass
        >>> buffer = io.BytesIO(); torch.save(Box(), buffer); _ = buffer.seek(0)
        >>> torch.serialization.add_safe_globals([Box])
        >>> type(torch.load(buffer)).__name__
        'Box'
    """
    for item in safe_globals:
        obj, name = item if isinstance(item, tuple) else (item, None)
        if name is None:
            name = f"{obj.__module__}.{obj.__qualname__}"
        module, _, attr = name.rpartition(".")
        _user_safe[(module, attr)] = obj


def get_safe_globals():
    return list(_user_safe.values())


def clear_safe_globals():
    _user_safe.clear()


class safe_globals:
    """Context manager: add_safe_globals for the block only."""

    def __init__(self, safe_globals):
        self.items = safe_globals

    def __enter__(self):
        self.saved = dict(_user_safe)
        add_safe_globals(self.items)

    def __exit__(self, *exc):
        _user_safe.clear()
        _user_safe.update(self.saved)


class _WeightsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _user_safe:
            return _user_safe[(module, name)]
        if (module, name) in _SAFE or (module == "numpy" and name.endswith("DType")) or \
                module.startswith("numpy.dtypes"):
            return super().find_class(module, name)
        where = f"{module}.{name}"
        # PyTorch's message, naming the way out
        raise pickle.UnpicklingError(
            "Weights only load failed. This file can still be loaded, to do so you have two "
            "options, do those steps only if you trust the source of the checkpoint. \n\t(1) "
            "In PyTorch 2.6, we changed the default value of the `weights_only` argument in "
            "`torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` "
            "set to `False` will likely succeed, but it can result in arbitrary code execution. "
            "Do it only if you got the file from a trusted source.\n\t(2) Alternatively, to "
            "load with `weights_only=True` please check the recommended steps in the following "
            "error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL "
            f"{where} was not an allowed global by default. Please use "
            f"`torch.serialization.add_safe_globals([{where}])` or the "
            f"`torch.serialization.safe_globals([{where}])` context manager to allowlist this "
            "global if you trust this class/function.\n\n(tapegrad writes pickles, not "
            "PyTorch's zip files: load a file you trust with weights_only=False, or save "
            "model.state_dict() to keep loads safe.)")


def _opened(f, mode):
    if isinstance(f, (str, os.PathLike)):
        return open(f, mode)
    return None


def save(obj, f, pickle_module=pickle, pickle_protocol=pickle.DEFAULT_PROTOCOL, **kwargs):
    handle = _opened(f, "wb")
    try:
        pickle_module.dump(obj, handle or f, protocol=pickle_protocol)
    finally:
        if handle:
            handle.close()


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, **kwargs):
    from ._device import check_device
    if map_location is not None and not callable(map_location) and \
            not isinstance(map_location, dict):
        check_device(map_location)
    handle = _opened(f, "rb")
    try:
        stream = handle or f
        if weights_only is None or weights_only:   # PyTorch's default since 2.6
            return _WeightsUnpickler(stream).load()
        return (pickle_module or pickle).load(stream)
    finally:
        if handle:
            handle.close()


__all__ = ["save", "load", "add_safe_globals", "get_safe_globals", "clear_safe_globals",
           "safe_globals"]
