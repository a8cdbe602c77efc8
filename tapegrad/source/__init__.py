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

What is transformed is the function passed: a `def` or a `lambda`; functools.partial (its bound
arguments come first, argnums count after them), a staticmethod, a numba.njit dispatcher and
tg.jit(f) stand for their function. A decorator's wrapper is read as written (never the function
functools.wraps names), and refused, saying so, when it cannot be transformed; bound methods,
classmethods and tapegrad's other wrappers are refused with the fix. source.grad(source.grad(f))
transforms the code emitted for the first derivative again (scalar code).

Numbers read from globals and closures are written into the emitted code, which is emitted again
when one of them (or a helper function) is rebound. Arrays read from globals and closures are
constants of the emitted code, as in Numba: taken when the code is emitted, not changed by later
in-place writes; binding the name to another array emits the code again.

Values follow IEEE as NumPy does on both jit settings: derivatives at singular points are inf or
nan (sqrt and log at 0, 1/x at 0), never an exception.
"""
from .api import grad, value_and_grad
from .errors import JitError, TransformError

__all__ = ["grad", "value_and_grad", "TransformError", "JitError"]
