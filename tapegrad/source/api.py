"""`grad` and `value_and_grad`: callables that run emitted derivative code."""
import functools
import hashlib
import inspect
import linecache
import math
import os
import re
import types

import numpy as np

from . import ir
from .emit import emit
from .errors import JitError, TransformError
from .kinds import FLOAT, kind_of_value
from .normalise import same_values, stale

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tapegrad/


class _SourceDerivative:
    def __init__(self, fun, argnums, jit, mode):
        self.fun, self._bound = _target(fun)
        # arguments that functools.partial binds come first: argnums count after them
        shift = len(self._bound)
        nums = tuple(_absolute_argnum(n, self.fun, shift) for n in (
            (argnums,) if isinstance(argnums, int) else argnums))
        self.argnums = nums[0] if isinstance(argnums, int) else nums
        self.jit = jit
        self.mode = mode
        self._compiled = {}  # kinds -> (Emitted, callable)
        self._float64 = set()  # kinds whose float32 arrays Numba computes in float64 only
        self._last = None
        self._structured = {}  # wrapper source -> derivative of it (tuple and dict arguments)
        self._last_structured = None
        # name and docstring only: copying fun's __dict__ would overwrite this object's state
        # when fun is itself a derivative
        functools.update_wrapper(self, fun, updated=())

    def __getstate__(self):
        # pickled without compiled code (cloudpickle, as Dask ships it): the receiving process
        # emits and compiles again, from the source lines the function's bytecode came with
        state = dict(self.__dict__, _compiled={}, _last=None, _structured={},
                     _last_structured=None, _float64=set())
        fun = self.fun
        while isinstance(fun, _SourceDerivative):
            fun = fun.fun
        filename = fun.__code__.co_filename
        state["_lines"] = (filename, linecache.getlines(filename, fun.__globals__))
        return state

    def __setstate__(self, state):
        filename, lines = state.pop("_lines")
        self.__dict__.update(state)
        fun = self.fun
        while isinstance(fun, _SourceDerivative):
            fun = fun.fun
        if lines and fun.__code__.co_filename != filename:
            # cloudpickle names code it ships by value "<dynamic-code>": name the file again
            fun.__code__ = fun.__code__.replace(co_filename=filename)
        if lines and linecache.getlines(filename, fun.__globals__) != lines:
            # the file is missing or differs here; mtime None: linecache.checkcache keeps
            # these lines, the ones the bytecode was compiled from
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)

    def _wrt(self):
        nums = (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)
        if isinstance(self.fun, _SourceDerivative):  # both see the same (float) arguments
            nums += self.fun._wrt()
        return nums

    def _emit(self, kinds, fused=None):
        # jit=True: elementwise array code as fused loops (Numba compiles them; Python would crawl)
        fused = self.jit if fused is None else fused
        if not isinstance(self.fun, _SourceDerivative):
            return emit(self.fun, self.argnums, kinds, self.mode, fused=fused)
        # a derivative of a derivative: the code emitted for the inner one, transformed again
        inner = self.fun._emit(kinds, fused=False)
        try:
            emitted = emit(_exec_source(inner, ieee=False), self.argnums, kinds, self.mode,
                           fused=fused)
        except TransformError as exc:
            raise TransformError(
                f"a derivative of `{inner.function}`'s derivative transforms the code emitted "
                f"for the first derivative, and cannot here: {exc.message}. Use the traced "
                "face for this one: tg.grad(tg.grad(f))", filename=exc.filename,
                lineno=exc.lineno, construct=exc.construct) from exc
        emitted.reads = {**inner.reads, **emitted.reads}  # stale when either's globals change
        return emitted

    def _n_params(self):
        fun = self.fun
        while isinstance(fun, _SourceDerivative):
            fun = fun.fun
        if fun.__code__.co_flags & inspect.CO_VARARGS:  # a wrapper: the wrapped function's
            return len(inspect.signature(fun).parameters)
        return fun.__code__.co_argcount

    def _prepare(self, args):
        """Kinds of the arguments; differentiated ones are made float (as JAX and torch want).
        NumPy scalars and 0-d arrays become Python numbers (Numba would type a 0-d array as an
        array, which math.sin and scalar code refuse). Float arrays keep their dtype where all
        are float32 or all float64, as NumPy computes them; other mixes are computed in float64
        (Numba will not multiply a float32 matrix by a float64 one; float16 is not Numba's)."""
        args = [_plain_scalar(value) for value in self._bound + tuple(args)]
        for num in self._wrt():
            if num < len(args):
                value = args[num]
                if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
                    value = np.asarray(value)
                    if value.dtype not in _KEPT_FLOATS:
                        value = value.astype(np.float64)
                    args[num] = value.item() if value.ndim == 0 else value
                elif not isinstance(value, (bool, complex)):
                    args[num] = float(value)
        floats = {value.dtype for value in args
                  if isinstance(value, np.ndarray) and value.dtype.kind == "f"}
        if len(floats) > 1 or floats - set(_KEPT_FLOATS):
            args = [_as_float64(value) for value in args]
        kinds = []
        for position, value in enumerate(args):
            kind = kind_of_value(value)
            if kind is None:
                what = "complex numbers are not supported" if np.iscomplexobj(value) else \
                    "is not a number or a NumPy array of bool, int or float"
                raise TransformError(f"argument {position} ({type(value).__name__}) of "
                                     f"`{getattr(self.fun, '__name__', self.fun)}`: {what}",
                                     construct="argument")
            kinds.append(kind)
        return args, tuple(kinds)

    def _build(self, kinds):
        known = self._compiled.get(kinds)
        if known is None or stale(known[0].reads):
            emitted = self._emit(kinds)
            if self.jit:
                from tapegrad_jit.source_jit import compile_source  # numba only when asked
                function = compile_source(emitted.source, emitted.name, emitted.constants)
            else:
                function = _exec_source(emitted)
            self._compiled[kinds] = (emitted, function)
        self._last = kinds
        return self._compiled[kinds]

    def __call__(self, *args):
        if any(isinstance(a, _STRUCTURES) or type(a) is bool for a in self._bound + tuple(args)):
            return self._call_structured(args)
        args, kinds = self._prepare(args)
        if not any(map(_float32, args)):
            return self._run(args, kinds, False)
        return self._in_argument_dtypes(self._run(args, kinds, True), args)

    def _run(self, args, kinds, narrow):
        """The emitted code's result for prepared arguments (`narrow`: some are float32)."""
        emitted, function = self._build(kinds)
        if not self.jit:
            # NumPy floats follow IEEE (1/0 -> inf, sqrt(-1) -> nan) where Python's raise;
            # integers stay Python's (np.int64 refuses 2 ** -n, which Python and Numba take)
            args = [np.float64(a) if type(a) is float else a for a in args]
            with np.errstate(all="ignore"):  # as compiled code: no warnings
                return _numbers(function(*args))
        from tapegrad_jit.source_jit import compile_errors
        if narrow and kinds in self._float64:
            return function(*map(_as_float64, args))
        try:
            return function(*args)  # Numba compiles on the first call with new types
        except compile_errors() as exc:
            if narrow:
                # code Numba cannot type in float32 (float32 @ float64: Numba refuses what
                # NumPy promotes) runs in float64
                self._float64.add(kinds)
                try:
                    return function(*map(_as_float64, args))
                except compile_errors():
                    pass
            raise _jit_error(emitted, exc) from None  # not Numba's traceback: the user's line

    def _in_argument_dtypes(self, result, args):
        """The gradient of a float32 array in float32 (as torch and JAX give it), also where
        a float64 number met it (NumPy's float32 * np.float64 is float64)."""
        if isinstance(self.fun, _SourceDerivative):
            return result
        single = isinstance(self.argnums, int)
        value, grads = (None, result) if self.mode == "grad" else result
        nums, grads = ((self.argnums,), (grads,)) if single else (self.argnums, grads)
        grads = tuple(g.astype(np.float32) if _float32(args[num]) and isinstance(g, np.ndarray)
                      and g.dtype != np.float32 else g for num, g in zip(nums, grads))
        grads = grads[0] if single else grads
        return grads if self.mode == "grad" else (value, grads)

    def _call_structured(self, args):
        """Tuple, list and dict arguments: fun is called from a generated function of their
        leaves (`f_leaves(a0, a1_0, a1_1): return f(a0, (a1_0, a1_1))`), which is transformed
        (the call inlined); gradients come back in the arguments' structures. Tuples of ints
        and Python bools that are not differentiated are constants of the emitted code
        (shapes, axes, keepdims flags), one derivative per value."""
        if isinstance(self.fun, _SourceDerivative):
            raise TransformError("derivatives of derivatives take numbers and arrays, not "
                                 "tuples or dicts; use the traced face, tg.grad(tg.grad(f))",
                                 construct="argument")
        values = self._bound + tuple(args)
        wrt = (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)
        wrapper, leaves, positions = _leaf_function(self.fun, values, wrt)
        flat_argnums = tuple(p for k in wrt for p in positions[k])
        inner = self._structured.get(wrapper)
        if inner is None:
            inner = self._structured[wrapper] = _SourceDerivative(
                _exec_wrapper(wrapper, self.fun), flat_argnums, self.jit, self.mode)
        self._last_structured = inner
        result = inner(*leaves)
        value, flat = (None, result) if self.mode == "grad" else result
        grads, start = [], 0
        for k in wrt:
            part = flat[start:start + len(positions[k])]
            start += len(positions[k])
            grads.append(_rebuild(values[k], iter(part)) if isinstance(values[k], _STRUCTURES)
                         else part[0])
        grads = grads[0] if isinstance(self.argnums, int) else tuple(grads)
        return grads if self.mode == "grad" else (value, grads)

    def source_for(self, *args):
        """The emitted source for arguments like these."""
        _, kinds = self._prepare(args)
        return self._emit(kinds).source

    @property
    def source(self):
        if self._last_structured is not None:
            return self._last_structured.source
        if self._last is not None:
            return self._compiled[self._last][0].source
        bound = self._prepare(())[1]  # kinds of what functools.partial binds
        kinds = bound + (FLOAT,) * (self._n_params() - len(bound))
        return self._emit(kinds).source


def _absolute_argnum(num, fun, shift):
    """argnum `num` as a position in the whole argument list (the `shift` arguments that
    functools.partial binds come first); a negative one counts from the end, as in tg.grad (it
    used to be shifted too, and silently picked a bound argument)."""
    if num >= 0:
        return num + shift
    count = getattr(getattr(fun, "__code__", None), "co_argcount", None)
    if count is None:
        raise TransformError(f"argnums {num}: count the arguments from 0 (a negative argnum needs "
                             "a plain Python function)", construct="argnums")
    if count + num < shift:
        raise TransformError(f"argnums {num} is out of range: "
                             f"`{getattr(fun, '__name__', fun)}` takes {count - shift} arguments"
                             f"{' besides those functools.partial binds' if shift else ''}",
                             filename=fun.__code__.co_filename,
                             lineno=fun.__code__.co_firstlineno, construct="argnums")
    return count + num


def _target(fun):
    """(the Python function to transform, the leading arguments functools.partial binds), or a
    TransformError saying what to pass instead."""
    bound = ()
    while True:
        if isinstance(fun, staticmethod):
            fun = fun.__func__
        elif isinstance(fun, functools.partial):
            if fun.keywords:
                raise TransformError(
                    f"functools.partial binds keyword arguments ({', '.join(fun.keywords)}): "
                    "tapegrad.source takes positional arguments only; bind them positionally",
                    construct="partial")
            bound = tuple(fun.args) + bound
            fun = fun.func
        elif same_values(fun) is not None:
            fun = same_values(fun)
        else:
            break
    name = getattr(fun, "__name__", type(fun).__name__)
    if isinstance(fun, types.FunctionType):
        filename = os.path.abspath(fun.__code__.co_filename)
        if filename.startswith(_PACKAGE + os.sep):
            raise TransformError(
                f"`{name}` is a wrapper made by tapegrad ({fun.__code__.co_qualname}), not "
                "the code of your function: pass the plain Python function to "
                "tapegrad.source (jit=True compiles it with Numba); for derivatives of "
                "derivatives use the traced face, tg.grad(tg.grad(f))",
                filename=filename, lineno=fun.__code__.co_firstlineno, construct="decorator")
        return fun, bound
    if isinstance(fun, _SourceDerivative):
        if fun.mode == "grad" and isinstance(fun.argnums, int):
            return fun, fun._bound + bound  # its code is emitted, then transformed again
        reason = ("is a tapegrad.source derivative that returns a tuple: differentiate "
                  "source.grad(f, argnums=k) with one argnum (a derivative of a scalar), or use "
                  "the traced face, tg.hessian(f)")
    elif isinstance(fun, types.MethodType):
        reason = (f"is a method bound to {type(fun.__self__).__name__} `{fun.__self__!r:.40}`, "
                  "which is not a number or an array: write it as a function of numbers and "
                  "arrays (a @staticmethod or a module-level def) and pass that")
    elif isinstance(fun, classmethod):
        reason = ("is a classmethod, whose first argument is a class: write it as a function of "
                  "numbers and arrays (a @staticmethod or a module-level def) and pass that")
    elif type(fun).__module__.split(".")[0] == "tapegrad":
        reason = (f"is a tapegrad {type(fun).__name__} object (from tg.jit, tg.vmap, ...): "
                  "pass the plain Python function (jit=True compiles it with Numba)")
    else:
        reason = (f"is a {type(fun).__name__}, not a Python function: pass the `def` or "
                  "`lambda` that computes the value")
        inner = getattr(fun, "__wrapped__", None)
        if inner is not None:
            reason += (f" (it wraps `{getattr(inner, '__name__', inner)}`: pass that if the "
                       "wrapper does not change the value)")
    # name the user's def it came from (a wrapper's, a method's), not "<unknown>"
    code = getattr(getattr(fun, "__wrapped__", getattr(fun, "__func__", None)), "__code__", None)
    where = {} if code is None else {"filename": code.co_filename,
                                     "lineno": code.co_firstlineno}
    raise TransformError(f"`{name}` {reason}", construct=type(fun).__name__, **where)


_STRUCTURES = (tuple, list, dict)


def _static(value):
    """A (nested) tuple of ints: a shape or axes, a constant of the emitted code."""
    return isinstance(value, tuple) and all(
        _static(v) if isinstance(v, tuple) else type(v) is int for v in value)


def _leaf_function(fun, values, wrt):
    """(source of a function of the leaves of `values` that calls fun with them in their
    structures, the leaves, {position: [positions of its leaves among the parameters]})."""
    params, leaves, parts, positions = [], [], [], {}

    def build(value, prefix):
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise TransformError(f"dict argument keys must be strings or ints, not "
                                         f"{key!r}", construct="argument")
            return "{" + ", ".join(f"{key!r}: {build(v, f'{prefix}_{n}')}"
                                   for n, (key, v) in enumerate(value.items())) + "}"
        if isinstance(value, (tuple, list)):  # lists pass as tuples: indexed and unpacked alike
            return "(" + "".join(f"{build(v, f'{prefix}_{n}')}, " for n, v in enumerate(value)) \
                + ")"
        params.append(prefix)
        leaves.append(value)
        return prefix

    for k, value in enumerate(values):
        start = len(params)
        if k not in wrt and (_static(value) or type(value) is bool):
            parts.append(repr(value))
        else:
            parts.append(build(value, f"a{k}"))
        positions[k] = list(range(start, len(params)))
    name = _identifier(fun)
    source = (f"def {name}_of_leaves({', '.join(params)}):\n"
              f"    return {name}({', '.join(parts)})\n")
    return source, leaves, positions


def _exec_wrapper(source, fun):
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    filename = f"<tapegrad.source leaves {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {_identifier(fun): fun}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[f"{_identifier(fun)}_of_leaves"]


def _identifier(fun):
    name = getattr(fun, "__name__", "")
    return name if name.isidentifier() else "f"  # a lambda


def _rebuild(like, grads):
    """The gradients (an iterator over leaves) in the structure of the argument `like`."""
    if isinstance(like, dict):
        return {key: _rebuild(v, grads) for key, v in like.items()}
    if isinstance(like, (tuple, list)):
        return type(like)(_rebuild(v, grads) for v in like)
    return next(grads)


def _numbers(result):
    """NumPy scalars in a result as Python numbers, as compiled code returns them."""
    if isinstance(result, tuple):
        return tuple(_numbers(part) for part in result)
    return result.item() if isinstance(result, np.generic) else result


_KEPT_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _float32(value):
    return isinstance(value, np.ndarray) and value.dtype == np.float32


def _as_float64(value):
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != np.float64:
        return value.astype(np.float64)
    return value


def _plain_scalar(value):
    """np.float64(2.0), np.int64(3), np.bool_(True) and 0-d arrays as Python numbers."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value.item()
    return value


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
    filename = getattr(origin, "filename", None) or emitted.filename  # an inlined helper's
    return JitError(message, filename=filename, lineno=origin.lineno if origin else None,
                    construct=construct)


def _exec_source(emitted, ieee=True):
    """The emitted function, run by Python. ieee=False leaves `math` and `float` as they are,
    for a function that is to be transformed again (a derivative of a derivative)."""
    digest = hashlib.sha256(emitted.source.encode()).hexdigest()[:12]
    filename = f"<tapegrad.source {emitted.name} {digest}>"  # one name per text: see linecache
    # registered so that tracebacks and pdb show the emitted lines
    linecache.cache[filename] = (len(emitted.source), None, emitted.source.splitlines(True),
                                 filename)
    namespace = dict(emitted.constants)
    exec(compile(emitted.source, filename, "exec"), namespace)
    # the emitted code reads these names as globals at call time: IEEE versions of `math.*` and
    # `float`, so that plain Python gives what Numba and NumPy give at singular points
    if ieee:
        namespace.update(math=_IEEE_MATH, float=np.float64)
    return namespace[emitted.name]


def _ieee(ufunc):
    def function(*args):
        return ufunc(*(np.float64(a) for a in args))
    function.__name__ = ufunc.__name__
    return function


# math.* functions that raise (ValueError, OverflowError) where NumPy gives nan or inf
_IEEE_MATH = types.SimpleNamespace(**{name: getattr(math, name) for name in dir(math)
                                      if not name.startswith("_")})
for _name, _ufunc in {"sin": np.sin, "cos": np.cos, "tan": np.tan, "sinh": np.sinh,
                      "cosh": np.cosh, "tanh": np.tanh, "asin": np.arcsin, "acos": np.arccos,
                      "atan": np.arctan, "asinh": np.arcsinh, "acosh": np.arccosh,
                      "atanh": np.arctanh, "exp": np.exp, "expm1": np.expm1, "log": np.log,
                      "log1p": np.log1p, "log2": np.log2, "log10": np.log10, "sqrt": np.sqrt,
                      "fabs": np.abs, "pow": np.power, "hypot": np.hypot, "atan2": np.arctan2,
                      "fmod": np.fmod}.items():
    setattr(_IEEE_MATH, _name, _ieee(_ufunc))


def grad(fun, argnums=0, jit=False):
    """A function computing the gradient of scalar `fun` by emitted derivative code.

    Args:
        fun: a Python function (a `def` or a `lambda`, or functools.partial of one) of numbers
            and NumPy arrays that returns a number; see the module docstring for decorated
            functions, closures and second derivatives.
        argnums: the position of the argument to differentiate, or a tuple of positions.
        jit: compile the emitted code with numba.njit (the result is callable from @njit code).

    Returns:
        A callable taking fun's arguments and returning the gradient (a tuple for a tuple of
        argnums); its `.source` is the emitted derivative code. Values at singular points
        follow IEEE (inf, nan) on both jit settings.

    Example:
        >>> import numpy as np
        >>> from tapegrad import source
        >>> def f(x, y):
        ...     return np.sin(x) * y
        >>> dx, dy = source.grad(f, argnums=(0, 1))(0.5, 2.0)
        >>> print(round(dx, 6), round(dy, 6))
        1.755165 0.479426
        >>> print(source.grad(lambda x: x ** 3)(2.0))
        12.0
        >>> print(source.grad(lambda x: np.sqrt(x))(0.0))
        inf
    """
    return _SourceDerivative(fun, argnums, jit, "grad")


def value_and_grad(fun, argnums=0, jit=False):
    """A function returning ``(fun(*args), gradient)``, by emitted derivative code.

    Args:
        fun: as for `grad`: a Python function of numbers and NumPy arrays returning a number.
        argnums: the position of the argument to differentiate, or a tuple of positions.
        jit: compile the emitted code with numba.njit.

    Returns:
        A callable taking fun's arguments and returning (value, gradient); `.source` is the
        emitted code, which computes both in one forward and one adjoint sweep.

    Example:
        >>> import numpy as np
        >>> from tapegrad import source
        >>> def energy(x):
        ...     return np.sum(x * x) / 2.0
        >>> value, gradient = source.value_and_grad(energy)(np.array([1.0, 2.0]))
        >>> print(value, gradient)
        2.5 [1. 2.]
    """
    return _SourceDerivative(fun, argnums, jit, "value_and_grad")
