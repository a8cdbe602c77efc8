"""`grad` and `value_and_grad`: callables that run emitted derivative code."""
import functools
import inspect
import linecache
import re

import numpy as np

from . import ir
from .emit import emit
from .errors import JitError, TransformError
from .kinds import FLOAT, kind_of_value


class _SourceDerivative:
    def __init__(self, fun, argnums, jit, mode):
        self.fun = fun
        self.argnums = argnums
        self.jit = jit
        self.mode = mode
        self._compiled = {}  # kinds -> (Emitted, callable)
        self._last = None
        functools.update_wrapper(self, fun)

    def _wrt(self):
        return (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)

    def _prepare(self, args):
        """Kinds of the arguments; differentiated ones are made float (as JAX and torch want).
        Float arrays are computed in float64: Numba will not multiply a float32 matrix by a
        float64 one (and a literal such as 2.0 makes float32 code float64), and jit=False runs
        the same code on the same values so that both give the same numbers."""
        args = list(args)
        for num in self._wrt():
            if num < len(args):
                value = args[num]
                if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
                    args[num] = np.asarray(value, dtype=np.float64)
                elif not isinstance(value, (bool, np.bool_)):
                    args[num] = float(value)
        for position, value in enumerate(args):
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" \
                    and value.dtype != np.float64:
                args[position] = value.astype(np.float64)
        kinds = []
        for position, value in enumerate(args):
            kind = kind_of_value(value)
            if kind is None:
                raise TransformError(f"argument {position} ({type(value).__name__}) is not a "
                                     "number or a NumPy array", construct="argument")
            kinds.append(kind)
        return args, tuple(kinds)

    def _build(self, kinds):
        if kinds not in self._compiled:
            emitted = emit(self.fun, self.argnums, kinds, self.mode)
            if self.jit:
                from tapegrad_jit.source_jit import compile_source  # numba only when asked
                function = compile_source(emitted.source, emitted.name, emitted.constants)
            else:
                function = _exec_source(emitted)
            self._compiled[kinds] = (emitted, function)
        self._last = kinds
        return self._compiled[kinds]

    def __call__(self, *args):
        args, kinds = self._prepare(args)
        emitted, function = self._build(kinds)
        if not self.jit:
            return function(*args)
        from tapegrad_jit.source_jit import compile_errors
        try:
            return function(*args)  # Numba compiles on the first call with new types
        except compile_errors() as exc:
            raise _jit_error(emitted, exc) from None  # not Numba's traceback: the user's line

    def source_for(self, *args):
        """The emitted source for arguments like these."""
        _, kinds = self._prepare(args)
        return emit(self.fun, self.argnums, kinds, self.mode).source

    @property
    def source(self):
        if self._last is not None:
            return self._compiled[self._last][0].source
        n_params = len(inspect.signature(self.fun).parameters)
        return emit(self.fun, self.argnums, (FLOAT,) * n_params, self.mode).source


def _jit_error(emitted, exc):
    from tapegrad_jit.source_jit import failure
    line, reason = failure(exc, emitted.source, emitted.constants)
    lines = emitted.source.splitlines()
    origin = (emitted.origins or {}).get(line)
    if origin is None and line is not None:  # an adjoint line: the comment above its block
        for text in reversed(lines[:line - 1]):
            found = re.match(r"\s*# line (\d+): (.*)", text)
            if found:
                origin = ir.Origin(int(found.group(1)), found.group(2))
                break
    emitted_text = lines[line - 1].strip() if line and line <= len(lines) else None
    construct = re.match(r"(\w+)\(", reason)
    construct = construct.group(1) if construct and not construct.group(1).startswith("_") \
        else "numba.njit"
    where = f"line {origin.lineno} (`{origin.text}`)" if origin else "its derivative code"
    message = (f"numba.njit cannot compile the derivative of `{emitted.function}`: {where}"
               + (f" emits `{emitted_text}`" if emitted_text else "")
               + f", which Numba does not support ({reason}). Use jit=False for this function "
               "(the same emitted code runs as plain Python), or rewrite that line")
    return JitError(message, filename=emitted.filename, lineno=origin.lineno if origin else None,
                    construct=construct)


def _exec_source(emitted):
    filename = f"<tapegrad.source {emitted.name}>"
    # registered so that tracebacks and pdb show the emitted lines
    linecache.cache[filename] = (len(emitted.source), None, emitted.source.splitlines(True),
                                 filename)
    namespace = dict(emitted.constants)
    exec(compile(emitted.source, filename, "exec"), namespace)
    return namespace[emitted.name]


def grad(fun, argnums=0, jit=False):
    """A function computing the gradient of scalar `fun` by emitted derivative code."""
    return _SourceDerivative(fun, argnums, jit, "grad")


def value_and_grad(fun, argnums=0, jit=False):
    """A function returning (fun(*args), gradient), by emitted derivative code."""
    return _SourceDerivative(fun, argnums, jit, "value_and_grad")
