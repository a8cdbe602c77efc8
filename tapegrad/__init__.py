"""tapegrad: reverse-mode automatic differentiation for numerical Python.

Three faces share one registry of derivative rules (tapegrad.primitives):
  * eager autograd with PyTorch's interface:   import tapegrad as torch
  * traced tapes compiled with Numba:          tapegrad.jit(tapegrad.value_and_grad(f))
  * source transformation:                     tapegrad.source.grad(f).source

Importing tapegrad never imports numba; the compiled backends load on first use.
"""
__version__ = "0.1.0"

from .dtypes import (bool, double, dtype, float, float16, float32, float64, half, int,  # noqa: A004
                     int8, int16, int32, int64, long, short, uint8)
from .tensor import Size, Tensor
from .functions import *  # noqa: F401,F403  (the torch.* namespace)
from .functions import _METHOD_FUNCTIONS, manual_seed, tensor  # noqa: F401
from .functions import (BoolTensor, ByteTensor, CharTensor, DoubleTensor, FloatTensor,  # noqa: F401
                        HalfTensor, IntTensor, LongTensor, ShortTensor)
from . import autograd, nn
from . import accelerator, backends, cuda, linalg, optim, utils  # noqa: F401  (torch's)
from . import functional, profiler  # noqa: F401,E402
from .functional import broadcast_shapes, broadcast_tensors, atleast_1d, atleast_2d  # noqa: F401
from ._device import device, get_default_device, set_default_device
from .serialization import load, save
from .autograd import enable_grad, no_grad, set_grad_enabled
from ._tensor_str import set_printoptions

from .functions import get_default_dtype, set_default_dtype  # noqa: F401,E402
from .transforms import grad, jit, make_tape, value_and_grad, vmap  # noqa: E402  (traced tapes)
from .forward import hessian, hvp, jacfwd, jacobian, jacrev, jvp, linearize, vjp  # noqa: E402
from .custom_rules import custom_jvp, custom_vjp  # noqa: E402
from .checkpoint import checkpoint  # noqa: E402
from . import func  # noqa: E402  (torch.func, on the traced face)
from .compile import compile  # noqa: E402,A004  (torch.compile, with tapegrad.jit)

from . import scipy_special as _scipy_special, scipy_stats as _scipy_stats  # noqa: E402,F401
_scipy_special.install()   # scipy.special's Python functions and scipy.stats' take traced values
