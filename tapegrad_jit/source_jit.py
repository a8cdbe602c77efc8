"""Compile derivative source emitted by tapegrad.source with `numba.njit`.

The emitted module is written to the shared on-disk cache (tapegrad_jit.cache) and imported from
there, so that Numba's `cache=True` can keep the machine code beside it: a new process loads the
compiled gradient without compiling again. Arrays the code reads from the enclosing scope become
module globals (Numba freezes them as constants), and a hash of their bytes is part of the entry's
text, so different arrays never share an entry.
"""
import hashlib
import re

import numpy as np
from numba import njit, types
from numba.extending import overload

from .cache import load_module, seal
from .fused import _HELPERS


# Scalar functions that fused loops of emitted code call (`from tapegrad_jit.source_jit import
# tanh`): NumPy's values, computed faster than Numba computes the ufunc on one element.
_fused_helpers = {"njit": njit, "np": np}
exec(_HELPERS, _fused_helpers)  # tanh_f32: the traced face's float32 tanh, one definition


def tanh(x):
    """np.tanh(x) of one number; float32 as the traced face computes it (within 2 ulp, and
    vectorised by LLVM), where Numba's float32 tanh is a libm call about 25x slower."""
    return np.tanh(x)


@overload(tanh)
def _tanh(x):
    if x == types.float32:
        tanh_f32 = _fused_helpers["tanh_f32"]
        return lambda x: np.float32(tanh_f32(x))
    return lambda x: np.tanh(x)


# part of the entry's text, so that machine code Numba cached under other options is not reused
_PREAMBLE = "# numba.njit(cache=True, error_model='numpy')\n"


def _constants_line(constants):
    digest = hashlib.sha256()
    for name in sorted(constants):
        value = constants[name]
        digest.update(name.encode() + str(value.dtype).encode() + str(value.shape).encode())
        digest.update(value.tobytes())
    return f"# constants {digest.hexdigest()}\n" if constants else ""


def compile_source(source, name, constants=None):
    """The function `name` of emitted `source`, compiled with numba.njit(cache=True)."""
    import numba

    from . import nopython
    nopython.register_source_face()     # the result is callable from users' njit code
    constants = constants or {}
    module = load_module("source", _PREAMBLE + _constants_line(constants) + source)
    for key, value in constants.items():
        setattr(module, key, value)
    compiled = getattr(module, f"_{name}_njit", None)
    if compiled is None:
        # NumPy's error model: 1/0 gives inf (not ZeroDivisionError), as jit=False and the
        # traced face do
        compiled = seal(numba.njit(cache=True, error_model="numpy")(getattr(module, name)))
        setattr(module, f"_{name}_njit", compiled)
    return compiled


def compile_errors():
    """What Numba raises when it cannot type or lower code (not errors the code raises)."""
    from numba.core.errors import NumbaError
    return (NumbaError,)


def failure(exc, source, constants=None):
    """(line of `source` that Numba could not compile or None, Numba's reason in one line)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Numba colours its messages
    lines = [int(n) for n in re.findall(r'source_[0-9a-f]{24}\.py", line (\d+)', text)]
    lines += [int(n) for n in re.findall(r"source_[0-9a-f]{24}\.py \((\d+)\)", text)]
    # lines put before `source`: load_module's header, the preamble, the constants' hash
    prefix = 2 + bool(_constants_line(constants or {}))
    line = lines[-1] - prefix if lines else None
    reasons = [r.strip() for r in text.splitlines() if r.strip().startswith(">>>")]
    specific = re.findall(r"TypingError: (.+)", text)
    reason = specific[-1].strip() if specific else reasons[0][3:].strip() if reasons else \
        next((r.strip() for r in text.splitlines() if r.strip() and "Failed in" not in r), "")
    return line, reason
