"""tg.jit objects called from a user's @numba.njit code.

Numba types a global or closure variable by its Python type; for a tg.jit object this module
answers with a Numba dispatcher that runs the object's compiled tape (the interpreter's `run` on
the tape's instruction arrays) for the signature it was last called with from Python. So

    g = tg.jit(tg.grad(f)); g(x0)          # trace once from Python
    @numba.njit
    def descend(x):
        for _ in range(100):
            x = x - 0.1 * g(x)
        return x

runs entirely in nopython mode. Inside nopython code the tape cannot be traced again: inputs of
another shape, or a guard (a branch the trace recorded) that fails, raise an error naming the
guard's line and saying to call from Python to retrace.
"""
import weakref

import numpy as np
from numba import njit, types
from numba.extending import typeof_impl

from tapegrad.transforms import Jitted

from . import cpu

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


def _source(program, name):
    lines = [f"def {name}({', '.join(f'x{k}' for k in range(len(program.inputs)))}):",
             "    v = v0.copy()"]
    for k, (offset, size, shape) in enumerate(program.inputs):
        if shape == ():
            lines.append(f"    v[{offset}] = x{k}")
        else:
            lines += [f"    if x{k}.shape != {shape!r}:",
                      f"        raise ValueError('tapegrad: argument {k} has another shape than "
                      f"the one traced ({shape}); call the function from Python to trace it "
                      f"for this shape')",
                      f"    v[{offset}:{offset + size}] = x{k}.ravel()"]
    lines.append("    status = run(code, ipool, v)")
    for number, guard in enumerate(program.guards, 1):
        where = repr(f"tapegrad: a guard recorded at {guard.where} failed inside nopython code; "
                     f"this branch was not traced: call the function from Python to retrace")
        lines += [f"    if status == {number}:", f"        raise RuntimeError({where})"]
    leaves = iter(_leaf_expr(o, n, shape, dtype) for o, n, shape, dtype in program.outputs)
    structure = "*" if program.out_tree == "*" else program.out_tree
    lines.append(f"    return {_tree_expr(structure, leaves)}")
    return "\n".join(lines)


def dispatcher_for(jitted):
    """The njit dispatcher running `jitted`'s most recently used program."""
    if jitted.device != "cpu" or jitted.batched:
        raise TypeError("tapegrad: only tg.jit(...) on the CPU without vmap can be called from "
                        "nopython code")
    with jitted._lock:
        if not jitted._signatures:
            raise TypeError(f"tapegrad: call {getattr(jitted, '__name__', 'the function')} once "
                            f"from Python before calling it from nopython code (that call "
                            f"traces it for its argument shapes)")
        program = next(reversed(jitted._signatures.values()))[0]
    cached = _dispatchers.get(jitted)
    if cached is not None and cached[0] is program:
        return cached[1]
    interpreted = program if isinstance(program, cpu.Program) else cpu.Program(program.tape)
    namespace = dict(np=np, run=cpu.kernels().run, code=interpreted.code,
                     ipool=interpreted.ipool, v0=interpreted.v0)
    name = "tapegrad_" + getattr(jitted, "__name__", "jitted").replace("<", "").replace(">", "")
    exec(compile(_source(interpreted, name), f"<tapegrad nopython {name}>", "exec"), namespace)
    dispatcher = njit(namespace[name])
    _dispatchers[jitted] = (program, dispatcher)
    return dispatcher


@typeof_impl.register(Jitted)
def _typeof_jitted(value, context):
    return types.Dispatcher(dispatcher_for(value))
