"""Sphinx directives that build the tables of supported functions from tapegrad's own tables,
so the documentation cannot drift from what the code dispatches on:

    .. supported-numpy::       NumPy/math calls: traced face (ufuncs and __array_function__
                               handlers in tapegrad.trace) and source face (tapegrad.source.table)
    .. supported-torch::       torch.*, Tensor methods and torch.nn.functional names
    .. supported-primitives::  the primitive registry: name, family, PyTorch grad_fn, source form
"""
import inspect
import math

import numpy as np
from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

YES, NO = "yes", "--"


def _qualified(fun):
    """'np.sin', 'np.linalg.norm', 'math.sin', 'abs' for a function object."""
    name = getattr(fun, "__name__", repr(fun))
    if fun is getattr(np.linalg, name, None):
        return f"np.linalg.{name}"
    if fun is getattr(np, name, None):
        return f"np.{name}"
    if fun is getattr(math, name, None):
        return f"math.{name}"
    return name


def numpy_rows():
    from tapegrad import trace
    from tapegrad.source import table
    # the tracer's tables: ufuncs it records, ufuncs it composes, functions it intercepts
    traced = set(trace._UFUNCS) | set(trace._COMPOSED_UFUNCS) | set(trace._ARRAY_FUNCTIONS)
    traced |= set(trace._REDUCE_UFUNCS)
    source = set(table.CALLS)
    by_name = {}
    for fun in traced | source:
        by_name.setdefault(_qualified(fun), set()).add(fun)
    rows = []
    for name in sorted(by_name, key=lambda n: (n.count("."), n.lower())):
        funs = by_name[name]
        rows.append([f"``{name}``", YES if funs & traced else NO, YES if funs & source else NO])
    methods = ", ".join(f"``x.{m}()``" for m in sorted(table.METHODS))
    return rows, methods


def torch_rows():
    import tapegrad
    import tapegrad.nn.functional as F
    from tapegrad.tensor import Tensor
    skip = {"grad", "jit", "make_tape", "value_and_grad", "vmap"}   # traced-face transforms
    functions = sorted(n for n, v in vars(tapegrad).items()
                       if not n.startswith("_") and n not in skip and inspect.isroutine(v))
    methods = sorted(n for n in dir(Tensor) if not n.startswith("_")
                     and callable(getattr(Tensor, n, None)))
    functional = sorted(n for n, v in vars(F).items()
                        if not n.startswith("_") and inspect.isfunction(v)
                        and v.__module__ == F.__name__)
    return [("``torch.*``", functions), ("``Tensor`` methods", methods),
            ("``torch.nn.functional``", functional)]


def primitive_rows():
    from tapegrad.core import REGISTRY
    rows = []
    for name in sorted(REGISTRY):
        prim = REGISTRY[name]
        grad_fn = prim.grad_fn_name if isinstance(prim.grad_fn_name, str) else "(by arguments)"
        rows.append([f"``{name}``", prim.kind, grad_fn or NO,
                     YES if getattr(prim, "differentiable", True) else NO])
    return rows


def list_table(header, rows, widths):
    lines = [".. list-table::", "   :header-rows: 1",
             f"   :widths: {' '.join(map(str, widths))}", ""]
    for row in [header] + rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines


class _Generated(Directive):
    has_content = False

    def rst_lines(self):
        raise NotImplementedError

    def run(self):
        container = nodes.container()
        self.state.nested_parse(StringList(self.rst_lines(), source="tapegrad_tables"),
                                self.content_offset, container)
        return container.children


class SupportedNumpy(_Generated):
    def rst_lines(self):
        rows, methods = numpy_rows()
        return (list_table(["function", "traced tapes (grad, jit, vmap)", "source transformer"],
                           rows, [40, 30, 30])
                + ["", f"Array methods the source transformer knows: {methods}. Tracers also "
                       "take the operators, indexing, ``.T``, ``.shape`` and the Tensor methods "
                       "that mirror these functions."])


class SupportedTorch(_Generated):
    def rst_lines(self):
        lines = []
        for title, names in torch_rows():
            lines += [f"{title} ({len(names)}): " + ", ".join(f"``{n}``" for n in names), ""]
        return lines


class SupportedPrimitives(_Generated):
    def rst_lines(self):
        return list_table(["primitive", "family", "PyTorch grad_fn", "differentiable"],
                          primitive_rows(), [30, 20, 35, 15])


def setup(app):
    app.add_directive("supported-numpy", SupportedNumpy)
    app.add_directive("supported-torch", SupportedTorch)
    app.add_directive("supported-primitives", SupportedPrimitives)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
