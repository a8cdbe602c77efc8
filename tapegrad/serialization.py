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


class _WeightsUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _SAFE or (module == "numpy" and name.endswith("DType")) or \
                module.startswith("numpy.dtypes"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"Weights only load failed: the file holds {module}.{name}, which is not a tensor "
            "or plain container. If you trust the file, call tapegrad.load(f, "
            "weights_only=False); to keep loads safe, save model.state_dict() instead of the "
            "model object.")


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


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **kwargs):
    from ._device import check_device
    if map_location is not None and not callable(map_location) and \
            not isinstance(map_location, dict):
        check_device(map_location)
    handle = _opened(f, "rb")
    try:
        stream = handle or f
        if weights_only:
            return _WeightsUnpickler(stream).load()
        return (pickle_module or pickle).load(stream)
    finally:
        if handle:
            handle.close()


__all__ = ["save", "load"]
