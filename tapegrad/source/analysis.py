"""Kinds and activity of every variable of a normalised function (flow-insensitive fixpoints).

A variable is *active* when its value may depend on a differentiated argument; only active
variables get an adjoint (`x_bar`). One kind per variable: a name that is a scalar in one place
and an array in another is refused, as Numba would refuse it.
"""
import ast
import dataclasses

import numpy as np

from . import ir, table
from .errors import TransformError
from .kinds import INT, Kind, broadcast, unify
from .symbol import kind_of

_BOOL_PRIMS = {"lt", "le", "gt", "ge", "eq", "ne"}


def walk(stmts):
    """Every statement, nested ones included, in program order."""
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, ir.If):
            yield from walk(stmt.body)
            yield from walk(stmt.orelse)
        elif isinstance(stmt, ir.Loop):
            yield from walk(stmt.body)


def index_kind(array_kind, index):
    """Kind of array[index]: each integer component drops a dimension, a slice keeps it, and
    `None` adds an axis of length 1."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    new = [p for p in parts if isinstance(p, ast.Constant) and p.value is None]
    if len(parts) - len(new) > array_kind.ndim:
        return None
    ndim, ones = 0, set()
    for part in parts:
        if part in new:
            ones.add(ndim)
        if part in new or isinstance(part, ast.Slice):
            ndim += 1
    ndim += array_kind.ndim - (len(parts) - len(new))  # trailing axes not indexed
    return Kind(array_kind.dtype, ndim, frozenset(ones))


class Analysis:
    def __init__(self, fn, arg_kinds, wrt):
        self.fn = fn
        self.kinds = dict(arg_kinds)
        self.wrt = set(wrt)
        self.active = set()

    def error(self, message, stmt, construct):
        return TransformError(message, filename=stmt.origin.filename or self.fn.filename,
                              lineno=stmt.origin.lineno,
                              construct=construct)

    def kind(self, operand):
        if isinstance(operand, ir.Const):
            return kind_of(operand.value)
        return self.kinds.get(operand)

    def run(self):
        for name in self.wrt:
            if self.kinds[name].dtype != "float":
                self.kinds[name] = dataclasses.replace(self.kinds[name], dtype="float")
        changed = True
        while changed:
            changed = False
            for stmt in walk(self.fn.body):
                changed |= self._kinds_of(stmt)
        missing = [n for n in self._assigned() if n not in self.kinds]
        if missing:
            raise TransformError(f"could not work out the kind of {', '.join(sorted(missing))}",
                                 filename=self.fn.filename, construct="kind")
        self.active = set(self.wrt)
        changed = True
        while changed:
            changed = False
            for stmt in walk(self.fn.body):
                changed |= self._activity_of(stmt)
        self._check(self.fn.body)
        self._prune_temps()
        return self

    def _prune_temps(self):
        """A temporary that only feeds conditions (`np.sum(y * y) < 100.0`) carries no
        gradient: it is made inactive, so the adjoint sweep writes nothing for it."""
        changed = True
        while changed:
            changed = False
            carried = set()
            for stmt in walk(self.fn.body):
                if isinstance(stmt, ir.Assign) and stmt.target in self.active:
                    expr = stmt.expr
                    if isinstance(expr, ir.Index):
                        carried.add(expr.array)
                    elif isinstance(expr.op, table.Elementwise):
                        if expr.op.prim.differentiable:
                            carried.update(a for a in expr.args[:expr.op.n_values]
                                           if isinstance(a, str))
                    elif not isinstance(expr.op, table.Constant):
                        carried.update(a for a in expr.args if isinstance(a, str))
                elif isinstance(stmt, ir.SetIndex) and isinstance(stmt.value, str):
                    carried.add(stmt.value)
            for name in (self.fn.temps & self.active) - carried:
                self.active.discard(name)
                changed = True

    def _assigned(self):
        for stmt in walk(self.fn.body):
            if isinstance(stmt, ir.Assign):
                yield stmt.target

    def _set_kind(self, name, kind, stmt):
        if kind is None:
            return False
        old = self.kinds.get(name)
        new = unify(old, kind)
        if new is None:
            raise _KindConflict(name, self.error(
                f"`{name}` is a {old} in one place and a {kind} in another: give the {kind} "
                f"a name of its own (one kind per variable, as Numba needs)", stmt, "kind"))
        if new != old:
            self.kinds[name] = new
            return True
        return False

    def _kinds_of(self, stmt):
        if isinstance(stmt, ir.Loop):
            changed = False
            if stmt.target:
                changed |= self._set_kind(stmt.target, INT, stmt)
            return changed
        if not isinstance(stmt, ir.Assign):
            return False
        expr = stmt.expr
        if isinstance(expr, ir.Index):
            array = self.kinds.get(expr.array)
            if array is None:
                return False
            kind = index_kind(array, expr.index)
            if kind is None or array.ndim == 0:
                raise self.error(f"`{expr.array}` ({array}) cannot take this index", stmt,
                                 "Subscript")
            return self._set_kind(stmt.target, kind, stmt)
        kinds = [self.kind(a) for a in expr.args]
        if any(k is None for k in kinds):
            return False
        return self._set_kind(stmt.target, self._call_kind(expr, kinds, stmt), stmt)

    def _call_kind(self, expr, kinds, stmt):
        op = expr.op
        if isinstance(op, table.Identity):
            return dataclasses.replace(kinds[0], dtype="float") if op.to_float else kinds[0]
        if isinstance(op, table.Elementwise):
            kinds = kinds[:op.n_values]
            name = op.prim.name
            if name in _BOOL_PRIMS:
                return broadcast(*kinds, dtype="bool")
            if name == "where":
                return broadcast(*kinds, dtype=broadcast(*kinds[1:]).dtype)
            if name == "pow" and _int_power(expr, kinds):
                return broadcast(*kinds, dtype="float")
            if _float_result(op.prim, len(kinds)):
                return broadcast(*kinds, dtype="float")
            return broadcast(*kinds)
        if isinstance(op, table.Reduction):
            x = kinds[0]
            if x.ndim == 0:
                raise self.error("reductions take arrays", stmt, "Call")
            try:
                axes = op.axes(x.ndim)
            except ValueError as exc:
                raise self.error(str(exc), stmt, "axis") from None
            if op.name == "norm" and op.ord is not None and len(axes) > 1:
                raise self.error("matrix norms are not supported: give `axis` for vector norms",
                                 stmt, "ord")
            return op.kind(x)
        if isinstance(op, table.MatMul):
            a, b = kinds
            if op.dot and not (1 <= a.ndim <= 2 and 1 <= b.ndim <= 2):
                raise self.error("np.dot takes 1-D or 2-D arrays here (np.matmul or @ take "
                                 "stacks of matrices)", stmt, "Call")
            if a.ndim == 0 or b.ndim == 0 or (max(a.ndim, b.ndim) > 2 and min(a.ndim, b.ndim) < 2):
                raise self.error("matmul takes arrays, and 1-D ones only with 1-D or 2-D "
                                 "partners here", stmt, "MatMult")
            if max(a.ndim, b.ndim) > 2:
                return Kind("float", max(a.ndim, b.ndim))
            return Kind("float", a.ndim + b.ndim - 2)
        if isinstance(op, table.Reshape):
            if op.like is not None:  # the shape of another array: its kind once known
                like = self.kinds.get(op.like)
                return None if like is None else Kind(kinds[0].dtype, like.ndim, like.ones)
            return Kind(kinds[0].dtype, op.ndim, op.ones)
        if isinstance(op, table.Transpose) and op.swap is not None:
            # np.swapaxes(x, a, b) is np.transpose(x, axes) with a and b exchanged
            x, (a, b) = kinds[0], op.swap
            if not (-x.ndim <= a < x.ndim and -x.ndim <= b < x.ndim):
                raise self.error(f"axes {a}, {b} do not fit {x.ndim}-D arrays", stmt, "Call")
            axes = list(range(x.ndim))
            axes[a], axes[b] = axes[b], axes[a]
            expr.op = table.Transpose(tuple(axes))
            expr.forward = ast.Call(func=ast.parse("np.transpose", mode="eval").body,
                                    args=[expr.forward.args[0], ast.Tuple(elts=[
                                        ast.Constant(k) for k in axes], ctx=ast.Load())],
                                    keywords=[])
            return self._call_kind(expr, kinds, stmt)
        if isinstance(op, table.Transpose):
            x = kinds[0]
            axes = op.axes or tuple(reversed(range(x.ndim)))
            if sorted(axes) != list(range(x.ndim)):
                raise self.error(f"axes {axes} do not fit {x.ndim}-D arrays", stmt, "Call")
            return Kind(x.dtype, x.ndim, frozenset(i for i, a in enumerate(axes) if a in x.ones))
        if isinstance(op, table.Concat):
            if any(k.ndim == 0 or k.ndim != kinds[0].ndim for k in kinds):
                raise self.error(f"`{ast.unparse(expr.forward)}` joins arrays of different "
                                 "ndim, or scalars", stmt, "Call")
            return Kind(broadcast(*kinds).dtype, kinds[0].ndim)
        if isinstance(op, table.Pack):
            if not kinds:
                raise self.error("an empty list has no kind: start from np.zeros(n)", stmt,
                                 "List")
            if any(k.ndim != kinds[0].ndim for k in kinds):
                raise self.error(f"`{ast.unparse(expr.forward)}` packs values of different "
                                 "shapes", stmt, "List")
            element = broadcast(*kinds)
            return Kind(element.dtype, element.ndim + 1,
                        frozenset(a + 1 for a in element.ones) | (
                            frozenset((0,)) if len(kinds) == 1 else frozenset()))
        if isinstance(op, table.ArrayOp):
            kind = op.result(kinds[0])
            if isinstance(kind, str):
                raise self.error(f"`{ast.unparse(expr.forward)}` {kind}", stmt, "Call")
            return kind
        if isinstance(op, table.Constant):
            nodes = expr.forward.args if isinstance(expr.forward, ast.Call) else []
            return op.result(kinds, nodes)
        raise AssertionError(op)

    def _activity_of(self, stmt):
        target = None
        if isinstance(stmt, ir.Assign):
            expr = stmt.expr
            if isinstance(expr, ir.Index):
                flows = expr.array in self.active
            elif isinstance(expr.op, table.Constant):
                flows = False
            elif isinstance(expr.op, table.Elementwise) and not expr.op.prim.differentiable:
                flows = False
            elif isinstance(expr.op, table.Elementwise):
                flows = any(isinstance(a, str) and a in self.active
                            for a in expr.args[:expr.op.n_values])
            else:
                flows = any(isinstance(a, str) and a in self.active for a in expr.args)
            target = stmt.target if flows else None
        elif isinstance(stmt, ir.SetIndex):
            if isinstance(stmt.value, str) and stmt.value in self.active:
                target = stmt.array
        if target is None or target in self.active or self.kinds[target].dtype != "float":
            return False
        self.active.add(target)
        return True

    def _check(self, stmts):
        aliases = {}
        for stmt in walk(stmts):
            if isinstance(stmt, ir.Assign) and isinstance(stmt.expr, ir.Call):
                expr = stmt.expr
                if (isinstance(expr.op, table.Elementwise) and expr.op.params
                        and any(isinstance(a, str) and a in self.active
                                for a in expr.args[expr.op.n_values:])):
                    raise self.error(f"`{ast.unparse(expr.forward)}`: no gradient flows to "
                                     f"its {' and '.join(expr.op.params)} arguments; they must "
                                     "not depend on a differentiated argument", stmt, "Call")
                if (isinstance(expr.op, table.Identity) and isinstance(expr.forward, ast.Name)
                        and self.kinds[stmt.target].is_array):
                    aliases[stmt.target] = stmt
            if isinstance(stmt, ir.SetIndex) and stmt.array in aliases:
                raise self.error(f"`{stmt.array}` is another name for an array (`b = a`); "
                                 "write `b = a.copy()` before changing its elements", stmt,
                                 "Subscript")


_FLOAT_RESULT = {}


def _float_result(prim, nargs):
    """Whether NumPy gives a float for integer arguments (np.sqrt, np.arcsin, /: yes; +: no)."""
    known = _FLOAT_RESULT.get(prim.name)
    if known is None:
        with np.errstate(all="ignore"):
            out = prim.impl(*[np.ones((), np.int64)] * nargs)
        known = _FLOAT_RESULT[prim.name] = np.result_type(out).kind == "f"
    return known


def _int_power(expr, kinds):
    """`n ** m` of Python ints with an exponent that may be negative: a float, as Python gives
    (2 ** -2 == 0.25), where Numba would compute an integer (0). The forward sweep computes it
    as float(n) ** m in both modes."""
    base, exponent = kinds[:2]
    if base.dtype == "float" or exponent.dtype == "float" or base.ndim or exponent.ndim:
        return False
    m = expr.args[1]
    if isinstance(m, ir.Const) and isinstance(m.value, (int, bool)) and m.value >= 0:
        return False
    forward = expr.forward
    if isinstance(forward, ast.BinOp):
        forward.left = _as_float(forward.left)
    else:  # np.power(n, m)
        forward.args[0] = _as_float(forward.args[0])
    return True


def _as_float(node):
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "float":
        return node  # kinds are worked out to a fixpoint: wrap once
    return ast.Call(func=ast.Name(id="float", ctx=ast.Load()), args=[node], keywords=[])


class _KindConflict(Exception):
    def __init__(self, name, error):
        super().__init__(name)
        self.name, self.error = name, error


def analyse(fn, arg_kinds, wrt):
    """Kinds and activity of fn's variables. A name whose kind changes where it is assigned
    anew in the function's straight-line body (`x = np.sum(x)` for an array x) becomes one
    name per assignment there (`x`, `x_1`), as Python's values are, and Numba needs."""
    versioned = set()
    while True:
        try:
            return Analysis(fn, arg_kinds, wrt).run()
        except _KindConflict as conflict:
            if conflict.name in versioned or not _version(fn, conflict.name):
                raise conflict.error from None
            versioned.add(conflict.name)


def _version(fn, name):
    """Give each top-level assignment that rebinds `name` a new name, read by the statements
    after it (nested ones included: they see the version current when they start). False
    when there is no such assignment (the kinds then clash inside a branch or a loop)."""
    taken = _names(fn)
    current, defined, made = name, name in fn.params, False
    for stmt in fn.body:
        _rename(stmt, name, current, reads_only=True)
        if isinstance(stmt, ir.Assign) and stmt.target == name and defined:
            k = 1
            while f"{name}_{k}" in taken:
                k += 1
            current = f"{name}_{k}"
            taken.add(current)
            stmt.target, made = current, True
            continue
        _rename(stmt, name, current, reads_only=False)
        defined = defined or name in _written(stmt)
    if fn.result == name:
        fn.result = current
    return made


def _written(stmt):
    return {s.target for s in walk([stmt]) if isinstance(s, (ir.Assign, ir.Loop))}


def _names(fn):
    names = set(fn.params) | set(fn.constants) | {fn.result}
    for stmt in walk(fn.body):
        for value in vars(stmt).values():
            if isinstance(value, str):
                names.add(value)
        for node in _asts(stmt):
            names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    return names


def _asts(stmt):
    expr = getattr(stmt, "expr", None)
    for node in (getattr(expr, "forward", None), getattr(expr, "index", None),
                 getattr(stmt, "index", None)):
        if isinstance(node, ast.AST):
            yield node


class _Renamer(ast.NodeTransformer):
    def __init__(self, old, new):
        self.old, self.new = old, new

    def visit_Name(self, node):
        return ast.Name(id=self.new, ctx=node.ctx) if node.id == self.old else node


def _rename(stmt, old, new, reads_only):
    """`old` -> `new` in what `stmt` reads (and, unless reads_only, in all it holds: a nested
    block both reads and writes the current version)."""
    if old == new:
        return
    swap = (lambda v: new if v == old else v)
    if isinstance(stmt, ir.Assign):
        expr = stmt.expr
        if isinstance(expr, ir.Call):
            expr.args = [swap(a) for a in expr.args]
            expr.forward = _Renamer(old, new).visit(expr.forward)
            if isinstance(expr.op, table.Reshape) and expr.op.like == old:
                expr.op = dataclasses.replace(expr.op, like=new)
        else:
            expr.array, expr.reads = swap(expr.array), [swap(r) for r in expr.reads]
            expr.index = _Renamer(old, new).visit(expr.index)
        if not reads_only:
            stmt.target = swap(stmt.target)
    elif isinstance(stmt, ir.SetIndex):
        stmt.array, stmt.value = swap(stmt.array), swap(stmt.value)
        stmt.reads = [swap(r) for r in stmt.reads]
        stmt.index = _Renamer(old, new).visit(stmt.index)
    elif isinstance(stmt, ir.If):
        stmt.cond = swap(stmt.cond)
        if not reads_only:
            for child in stmt.body + stmt.orelse:
                _rename(child, old, new, False)
    elif isinstance(stmt, ir.Loop):
        stmt.start, stmt.stop, stmt.step = swap(stmt.start), swap(stmt.stop), swap(stmt.step)
        if not reads_only:
            stmt.target = swap(stmt.target)
            for child in stmt.body:
                _rename(child, old, new, False)


