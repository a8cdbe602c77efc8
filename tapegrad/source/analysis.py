"""Kinds and activity of every variable of a normalised function (flow-insensitive fixpoints).

A variable is *active* when its value may depend on a differentiated argument; only active
variables get an adjoint (`x_bar`). One kind per variable: a name that is a scalar in one place
and an array in another is refused, as Numba would refuse it.
"""
import ast

from . import ir, table
from .errors import TransformError
from .kinds import FLOAT, INT, Kind, broadcast, unify
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
    """Kind of array[index]: each integer component drops a dimension, a slice keeps it."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    if len(parts) > array_kind.ndim:
        return None
    dropped = sum(not isinstance(p, ast.Slice) for p in parts)
    return Kind(array_kind.dtype, array_kind.ndim - dropped)


class Analysis:
    def __init__(self, fn, arg_kinds, wrt):
        self.fn = fn
        self.kinds = dict(arg_kinds)
        self.wrt = set(wrt)
        self.active = set()

    def error(self, message, stmt, construct):
        return TransformError(message, filename=self.fn.filename, lineno=stmt.origin.lineno,
                              construct=construct)

    def kind(self, operand):
        if isinstance(operand, ir.Const):
            return kind_of(operand.value)
        return self.kinds.get(operand)

    def run(self):
        for name in self.wrt:
            if self.kinds[name].dtype != "float":
                self.kinds[name] = Kind("float", self.kinds[name].ndim)
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
        return self

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
            raise self.error(f"`{name}` is a {old} in one place and a {kind} in another", stmt,
                             "kind")
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
            return Kind("float", kinds[0].ndim) if op.to_float else kinds[0]
        if isinstance(op, table.Elementwise):
            name = op.prim.name
            if name in _BOOL_PRIMS:
                return broadcast(*kinds, dtype="bool")
            if name == "where":
                return broadcast(*kinds, dtype=broadcast(*kinds[1:]).dtype)
            if name in ("div", "sqrt", "exp", "log", "log1p", "expm1", "sin", "cos", "tan",
                        "tanh", "erf"):
                return broadcast(*kinds, dtype="float")
            return broadcast(*kinds)
        if isinstance(op, table.Reduction):
            if kinds[0].ndim == 0:
                raise self.error("reductions take arrays", stmt, "Call")
            return FLOAT if op.name == "mean" else Kind(kinds[0].dtype)
        if isinstance(op, table.MatMul):
            a, b = kinds
            if not (1 <= a.ndim <= 2 and 1 <= b.ndim <= 2):
                raise self.error("matmul/dot take 1-D or 2-D arrays here", stmt, "MatMult")
            return Kind("float", a.ndim + b.ndim - 2)
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
                if (isinstance(expr.op, table.Constant) and not expr.op.active_ok
                        and any(isinstance(a, str) and a in self.active for a in expr.args)):
                    raise self.error(f"`{ast.unparse(expr.forward)}` has a derivative this "
                                     "transformer does not know", stmt, type(expr.forward.op)
                                     .__name__ if isinstance(expr.forward, ast.BinOp) else "Call")
                if (isinstance(expr.op, table.Identity) and isinstance(expr.forward, ast.Name)
                        and self.kinds[stmt.target].is_array):
                    aliases[stmt.target] = stmt
            if isinstance(stmt, ir.SetIndex) and stmt.array in aliases:
                raise self.error(f"`{stmt.array}` is another name for an array (`b = a`); "
                                 "write `b = a.copy()` before changing its elements", stmt,
                                 "Subscript")


def analyse(fn, arg_kinds, wrt):
    return Analysis(fn, arg_kinds, wrt).run()


