"""PyTorch's dtype objects, each tied to a NumPy dtype. They print as PyTorch prints them."""
import builtins

import numpy as np


class dtype:
    __slots__ = ("name", "np_dtype", "is_floating_point", "tensor_type")

    def __init__(self, name, np_dtype, tensor_type):
        self.name = name
        self.np_dtype = np.dtype(np_dtype)
        self.is_floating_point = self.np_dtype.kind == "f"
        self.tensor_type = tensor_type

    def __repr__(self):
        return f"torch.{self.name}"

    @property
    def itemsize(self):
        return self.np_dtype.itemsize


float32 = dtype("float32", np.float32, "FloatTensor")
float64 = dtype("float64", np.float64, "DoubleTensor")
float16 = dtype("float16", np.float16, "HalfTensor")
int64 = dtype("int64", np.int64, "LongTensor")
int32 = dtype("int32", np.int32, "IntTensor")
int16 = dtype("int16", np.int16, "ShortTensor")
int8 = dtype("int8", np.int8, "CharTensor")
uint8 = dtype("uint8", np.uint8, "ByteTensor")
bool = dtype("bool", np.bool_, "BoolTensor")  # noqa: A001 - PyTorch's name
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
short = int16

ALL = (float32, float64, float16, int64, int32, int16, int8, uint8, bool)
_BY_NUMPY = {d.np_dtype: d for d in ALL}


def from_numpy_dtype(np_dtype):
    try:
        return _BY_NUMPY[np.dtype(np_dtype)]
    except KeyError:
        raise TypeError(f"tapegrad: NumPy dtype {np_dtype} has no tensor dtype; "
                        f"convert the array to one of {[d.name for d in ALL]}") from None


def to_numpy_dtype(d):
    """Accept a tapegrad dtype, a NumPy dtype, or a Python type (float -> default float32)."""
    if isinstance(d, dtype):
        return d.np_dtype
    if d is builtins.float:
        return np.dtype(np.float32)
    if d is builtins.int:
        return np.dtype(np.int64)
    if d is builtins.bool:
        return np.dtype(np.bool_)
    return from_numpy_dtype(d).np_dtype
