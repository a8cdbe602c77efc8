"""torch.save / torch.load in PyTorch's file format: a zip archive holding a pickle (data.pkl)
whose tensors point at raw storages (data/0, data/1, ...) through PyTorch's own names
(torch._utils._rebuild_tensor_v2, torch.FloatStorage, ...). So PyTorch loads tapegrad's state
dicts and tapegrad loads PyTorch's, and neither imports the other: the names are written and read
here. load(weights_only=True) (PyTorch's default) unpickles only tensors, storages, NumPy arrays
and plain containers, so a file cannot run code while loading. Whole modules pickle by their
tapegrad classes (loadable by tapegrad, with weights_only=False). Files from earlier tapegrad
versions (plain pickles) still load."""
import collections
import io
import os
import pickle
import zipfile

import numpy as np

_SAFE = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "slice"), ("builtins", "complex"), ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),   # how protocol 2 (PyTorch's) writes bytes; PyTorch allows it
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
        import _compat_pickle
        # protocol 2 (PyTorch's) writes Python 2 names: __builtin__.set is builtins.set
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
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
            "global if you trust this class/function.\n\n(Load a file you trust with "
            "weights_only=False, or save model.state_dict() to keep loads safe.)")


def _opened(f, mode):
    if isinstance(f, (str, os.PathLike)):
        return open(f, mode)
    return None


# ---------------------------------------------------------------------------------------------
# PyTorch's zip format
# ---------------------------------------------------------------------------------------------

class _TorchName:
    """Pickled as the global `module.name` of PyTorch (never imported: written by name)."""
    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):   # pickle wants a callable in a reduce tuple; only its name is used
        raise TypeError(f"{self.module}.{self.name} is a PyTorch name in a saved file")


_REBUILD_TENSOR = _TorchName("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _TorchName("torch._utils", "_rebuild_parameter")
_STORAGE_NAMES = {np.dtype(k): v for k, v in [
    (np.float32, "FloatStorage"), (np.float64, "DoubleStorage"), (np.float16, "HalfStorage"),
    (np.int64, "LongStorage"), (np.int32, "IntStorage"), (np.int16, "ShortStorage"),
    (np.int8, "CharStorage"), (np.uint8, "ByteStorage"), (np.bool_, "BoolStorage")]}
_STORAGE_TYPES = {name: _TorchName("torch", name) for name in _STORAGE_NAMES.values()}
_STORAGE_DTYPES = {name: dtype for dtype, name in _STORAGE_NAMES.items()}


class _Storage:
    __slots__ = ("key", "array")

    def __init__(self, key, array):
        self.key, self.array = key, array


class _ZipPickler(pickle._Pickler):
    """Tensors become PyTorch's (storage, offset, size, stride) records; storages are written as
    separate zip entries, as torch.save does."""

    def __init__(self, file, protocol):
        super().__init__(file, protocol=protocol)
        self.storages = []

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _TorchName):
            seen = self.memo.get(id(obj))
            if seen is not None:
                self.write(self.get(seen[0]))
                return
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            self.memoize(obj)
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = _STORAGE_TYPES[_STORAGE_NAMES[obj.array.dtype]]
            return ("storage", kind, obj.key, "cpu", int(obj.array.size))
        return None

    def reducer_override(self, obj):
        from .tensor import Tensor
        from .nn.parameter import Parameter
        if isinstance(obj, Parameter):
            return _REBUILD_PARAMETER, (obj.detach(), obj.requires_grad, collections.OrderedDict())
        if isinstance(obj, Tensor):
            data = np.array(obj._data, order="C")   # keeps 0-d (ascontiguousarray gives 1-d)
            if data.dtype not in _STORAGE_NAMES:
                raise TypeError(f"torch.save: tensors of dtype {data.dtype} are not supported")
            storage = _Storage(str(len(self.storages)), data.astype(data.dtype.newbyteorder("<")))
            self.storages.append(storage)
            stride = tuple(st // data.itemsize for st in data.strides)
            return _REBUILD_TENSOR, (storage, 0, tuple(data.shape), stride, obj.requires_grad,
                                     collections.OrderedDict())
        return NotImplemented


def _save_zip(obj, stream, protocol):
    buffer = io.BytesIO()
    pickler = _ZipPickler(buffer, protocol)
    pickler.dump(obj)
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/.format_version", "1")
        archive.writestr("archive/.storage_alignment", "64")
        archive.writestr("archive/byteorder", "little")
        for storage in pickler.storages:
            archive.writestr(f"archive/data/{storage.key}", storage.array.tobytes())
        archive.writestr("archive/version", "3\n")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    from .tensor import Tensor
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return Tensor._wrap(np.array(view), requires_grad and view.dtype.kind == "f")


def _rebuild_parameter(data, requires_grad, backward_hooks=None):
    from .nn.parameter import Parameter
    return Parameter(data, requires_grad)


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad)


def _torch_size(*args):
    from .tensor import Size
    return Size(*args)


_TORCH_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch", "Size"): _torch_size,
}


def _torch_global(module, name):
    if (module, name) in _TORCH_GLOBALS:
        return _TORCH_GLOBALS[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
        return _STORAGE_TYPES[name]
    if module == "torch" and name in ("float32", "float64", "float16", "int64", "int32",
                                      "int16", "int8", "uint8", "bool"):
        from . import dtypes
        return getattr(dtypes, name)
    if (module, name) == ("torch", "device"):
        from ._device import device
        return device
    return None


def _zip_unpickler(base, archive, prefix):
    class Unpickler(base):
        def find_class(self, module, name):
            found = _torch_global(module, name)
            return found if found is not None else super().find_class(module, name)

        def persistent_load(self, pid):
            kind, storage_type, key = pid[0], pid[1], pid[2]
            if kind != "storage":
                raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
            dtype = _STORAGE_DTYPES[storage_type.name] if isinstance(storage_type, _TorchName) \
                else np.dtype(storage_type)
            cache = self.__dict__.setdefault("_storages", {})
            if key not in cache:
                raw = archive.read(f"{prefix}data/{key}")
                cache[key] = np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype)
            return cache[key]
    return Unpickler


def _load_zip(stream, weights_only, pickle_module):
    with zipfile.ZipFile(stream) as archive:
        names = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if not names:
            raise RuntimeError("torch.load: a zip file without data.pkl is not a PyTorch file")
        prefix = names[0][:-len("data.pkl")]
        base = _WeightsUnpickler if weights_only else (pickle_module or pickle).Unpickler
        unpickler = _zip_unpickler(base, archive, prefix)(io.BytesIO(archive.read(names[0])))
        return unpickler.load()


def save(obj, f, pickle_module=pickle, pickle_protocol=2, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False):
    """Save obj (tensors, state dicts, optimizers' states, whole modules) to f in PyTorch's
    zip format (a path or a binary file object).

    Args:
        obj: what to save.
        f: a path or a writable binary file object.
        pickle_module: the pickle module for the legacy format.
        pickle_protocol: the pickle protocol (PyTorch writes 2).
        _use_new_zipfile_serialization: False writes tapegrad's earlier plain pickle.
        _disable_byteorder_record: accepted for PyTorch compatibility.

    Returns:
        None.

    Example:
        >>> import io, tapegrad as torch
        >>> buffer = io.BytesIO()
        >>> torch.save({"w": torch.tensor([1.0, 2.0])}, buffer)
        >>> _ = buffer.seek(0)
        >>> torch.load(buffer)
        {'w': tensor([1., 2.])}
    """
    handle = _opened(f, "wb")
    try:
        if _use_new_zipfile_serialization:
            _save_zip(obj, handle or f, pickle_protocol)
        else:
            pickle_module.dump(obj, handle or f, protocol=pickle_protocol)
    finally:
        if handle:
            handle.close()


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, **kwargs):
    """Load what torch.save wrote (PyTorch's zip files and tapegrad's own, earlier pickles).

    Args:
        f: a path or a readable binary file object.
        map_location: the CPU (or None); other devices are refused.
        pickle_module: the pickle module used when weights_only is False.
        weights_only: True (the default, as in PyTorch) unpickles only tensors and plain
            containers; False allows any class (only for files you trust).
        mmap: accepted for PyTorch compatibility.

    Returns:
        The saved object.

    Example:
        >>> import io, tapegrad as torch
        >>> buffer = io.BytesIO()
        >>> torch.save([torch.ones(2)], buffer)
        >>> _ = buffer.seek(0)
        >>> torch.load(buffer, weights_only=True)
        [tensor([1., 1.])]
    """
    from ._device import check_device
    if map_location is not None and not callable(map_location) and \
            not isinstance(map_location, dict):
        check_device(map_location)
    weights_only = True if weights_only is None else weights_only   # PyTorch's default since 2.6
    handle = _opened(f, "rb")
    try:
        stream = handle or f
        start = stream.tell() if hasattr(stream, "tell") else 0
        if zipfile.is_zipfile(stream):
            stream.seek(start)
            return _load_zip(stream, weights_only, pickle_module)
        stream.seek(start)
        if weights_only:
            return _WeightsUnpickler(stream).load()
        return (pickle_module or pickle).load(stream)
    finally:
        if handle:
            handle.close()


__all__ = ["save", "load", "add_safe_globals", "get_safe_globals", "clear_safe_globals",
           "safe_globals"]
