"""tg.jit objects and source.grad(..., jit=True) called from a user's @numba.njit code.

Numba types a global or closure variable by its Python type; for a tg.jit object this module
answers with a Numba dispatcher that runs the object's compiled tape (the interpreter's `run` on
the tape's instruction arrays) for the signature it was last called with from Python. So

    g = tg.jit(tg.grad(f)); g(x0)          # trace once from Python
    @numba.njit
    def descend(x):
        for _ in range(100):
            x = x - 0.1 * g(x)
        return x

runs entirely in nopython mode; every branch path traced for that signature is tried in turn.
The source face's derivative object stands for its compiled Numba function (emitted for the kinds
of its last call from Python). Inside nopython code the tape cannot be traced again: inputs of
another shape, or a guard (a branch the trace recorded) that fails, raise an error naming the
guard's line and saying to call from Python to retrace.
"""
import weakref

import numpy as np
from numba import njit, types
from numba.extending import typeof_impl

from tapegrad.transforms import Jitted

_dispatchers = weakref.WeakKeyDictionary()    # Jitted -> (program, dispatcher)


def _leaf_expr(offset, size, shape, dtype):
    if shape == ():
        return f"np.{np.dtype(dtype).name}(v[{offset}])"
    return f"v[{offset}:{offset + size}].reshape({shape!r}).astype(np.{np.dtype(dtype).name})"


def _tree_expr(structure, leaves):
    if structure == "*":
        return next(leaves)
    if structure is None or structure[0] is dict or structure[0] is not tuple:
        raise TypeError("tapegrad: a tg.jit function called from nopython code must return "
                        "arrays, numbers or tuples of them")
    items = [_tree_expr(child, leaves) for child in structure[1]]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _run_lines(program, k):
    """Lines running program k on the arguments; status_k is 0 when every guard held."""
    lines = [f"    v = v0_{k}.copy()"]
    for j, (offset, size, shape) in enumerate(program.inputs):
        if shape == ():
            lines.append(f"    v[{offset}] = x{j}")
        else:
            lines += [f"    if x{j}.shape != {shape!r}:",
                      f"        raise ValueError('tapegrad: argument {j} has another shape than "
                      f"the one traced ({shape}); call the function from Python to trace it "
                      f"for this shape')",
                      f"    v[{offset}:{offset + size}] = x{j}.ravel()"]
    leaves = iter(_leaf_expr(o, n, shape, dtype) for o, n, shape, dtype in program.outputs)
    return lines + [f"    status_{k} = run(code_{k}, ipool_{k}, v)",
                    f"    if status_{k} == 0:",
                    f"        return {_tree_expr(program.out_tree, leaves)}"]


def _source(programs, name):
    """A function of the inputs trying each traced path (most recent first); when every path's
    guards fail, the first path's failed guard is named."""
    lines = [f"def {name}({', '.join(f'x{j}' for j in range(len(programs[0].inputs)))}):"]
    for k, program in enumerate(programs):
        lines += _run_lines(program, k)
    for number, guard in enumerate(programs[0].guards, 1):
        message = repr(f"tapegrad: a guard recorded at {guard.where} failed inside nopython "
                       f"code; this branch was not traced: call the function from Python to "
                       f"retrace")
        lines += [f"    if status_0 == {number}:", f"        raise RuntimeError({message})"]
    lines.append("    raise RuntimeError('tapegrad: a guard failed inside nopython code')")
    return "\n".join(lines)


def dispatcher_for(jitted):
    """The njit dispatcher running `jitted`'s programs for its most recently used signature."""
    from . import cpu
    if jitted.device != "cpu" or jitted.batched:
        raise TypeError("tapegrad: only tg.jit(...) on the CPU without vmap can be called from "
                        "nopython code")
    with jitted._lock:
        if not jitted._signatures:
            raise TypeError(f"tapegrad: call {getattr(jitted, '__name__', 'the function')} once "
                            f"from Python before calling it from nopython code (that call "
                            f"traces it for its argument shapes)")
        programs = tuple(next(reversed(jitted._signatures.values())))
    cached = _dispatchers.get(jitted)
    if cached is not None and cached[0] == programs:
        return cached[1]
    namespace = dict(np=np, run=cpu.kernels().run)
    interpreted = []
    for k, program in enumerate(programs):
        if not isinstance(program, cpu.Program):
            program = cpu.Program(program.tape)
        interpreted.append(program)
        namespace.update({f"code_{k}": program.code, f"ipool_{k}": program.ipool,
                          f"v0_{k}": program.v0})
    name = "tapegrad_" + "".join(c for c in getattr(jitted, "__name__", "jitted")
                                 if c.isalnum() or c == "_")
    exec(compile(_source(interpreted, name), f"<tapegrad nopython {name}>", "exec"), namespace)
    dispatcher = njit(namespace[name])
    _dispatchers[jitted] = (programs, dispatcher)
    return dispatcher


def source_dispatcher_for(derivative):
    """The njit dispatcher of source.grad(..., jit=True)'s emitted code for its last call."""
    name = getattr(derivative, "__name__", "the derivative")
    if not derivative.jit:
        raise TypeError(f"tapegrad: {name} was made with jit=False; make it with jit=True to call "
                        f"it from nopython code")
    if derivative._last is None or derivative._bound or derivative._last_structured is not None:
        raise TypeError(f"tapegrad: call {name} once from Python, with numbers and arrays, "
                        f"before calling it from nopython code (that call emits and compiles it)")
    return derivative._compiled[derivative._last][1]


@typeof_impl.register(Jitted)
def _typeof_jitted(value, context):
    return types.Dispatcher(dispatcher_for(value))


def _typeof_source_derivative(value, context):
    return types.Dispatcher(source_dispatcher_for(value))


_source_face = []


def register_source_face():
    """Type source-face derivatives too; called when one is compiled (source_jit), so that the
    traced face never imports the source face (nor astor)."""
    if not _source_face:
        from tapegrad.source.api import _SourceDerivative
        typeof_impl.register(_SourceDerivative)(_typeof_source_derivative)
        _source_face.append(_SourceDerivative)
