"""Source transformation: emit explicit derivative source code that people can read and Numba can
compile.

    from tapegrad import source
    df = source.grad(f, argnums=0, jit=False)   # df(*args) -> gradient
    df.source                                   # the emitted derivative code (str)
    source.value_and_grad(f, argnums=0, jit=False)

Emitted code is specialised to the kinds of the arguments (float, int, bool, arrays by ndim), as
Numba specialises to types: the first call with new kinds emits (and, with jit=True, compiles) a
new function. `df.source` shows the code for the kinds of the last call, or for float arguments
before any call; `df.source_for(*args)` shows it for given example arguments.
"""
from .api import grad, value_and_grad
from .errors import JitError, TransformError

__all__ = ["grad", "value_and_grad", "TransformError", "JitError"]
