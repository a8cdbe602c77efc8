"""Fused loops for the elementwise array statements of emitted code (jit=True).

Numba compiles each array operation of `100.0 * (x[1:] - x[:-1] ** 2) ** 2` to its own loop
writing its own temporary array. For code that Numba compiles, runs of consecutive elementwise
statements over the same shape become one loop nest instead, with one scalar per element where
the array temporaries were (Rosenbrock's forward and adjoint sweeps share one loop):

    result_1 = x[1:]                           for i in range(x[:-1].shape[0]):
    result_4 = result_1 - x[:-1] ** 2              result_4_i = x[i + 1] - x[i] ** 2
    result = np.sum(100.0 * result_4 ** 2)  ->     result += 100.0 * result_4_i ** 2
    ...                                            ...
    x_bar[1:] += result_4_bar                      x_bar[i + 1] += result_4_bar_i

A run holds statements `t = E` (t an array, E elementwise: arithmetic, comparisons, NumPy ufuncs,
np.where, np.full_like/zeros_like), full reductions `s = np.sum(E)`, `np.mean(E)`, `s += np.sum(E)`
and sums over axes `b = np.sum(E, axis=0)`, `b_bar += ...` (accumulated in the loop), and element
updates `a[slices] += E` (index arithmetic: `x_bar[1:]` is `x_bar[i + 1]`; a name bound to a
slice is read through its array). Matrix products inside E (`np.tanh(x @ w + b)`) are computed
before the loop (BLAS); an elementwise operand of a product and a sum over axes inside a larger
expression (a keepdims mean) are first bound to names, so that loops compute them; a cotangent
whose first write is a product is that product's array (`w_bar = np.dot(x.T, g)`, no zeros). Broadcasting follows the static kinds: an operand of lower ndim lines up
with the last axes, an axis known to be 1 is indexed 0. A temporary is an array only when code
after the run reads it; statements that read none of the run's results (seeding
`x_bar = np.zeros_like(x)`) move above the loop.

Statements join a run only when their shapes are known equal (from the emitter's shape asserts,
`*_like`, views and aliases); one assert before each loop checks the operands against the loop
bounds, naming the user's line. Fusing is legal because nothing in a run reads an array the run
writes (an update `a[i] += e` reads only its own element), and nothing reads a sum before its
loop ends.
"""
import ast
import copy
from dataclasses import dataclass, field

from .adjoint import COMMENT, ORIGIN
from .kinds import Kind, broadcast
from .optimise import _Liveness, _loads, _pure, statements

# NumPy ufuncs that Numba also takes on scalars, with the same values
_UFUNCS = {
    "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "square", "sin", "cos",
    "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "arcsinh", "arccosh",
    "arctanh", "abs", "absolute", "fabs", "sign", "floor", "ceil", "maximum", "minimum",
    "power", "arctan2", "hypot", "logaddexp", "negative", "deg2rad", "rad2deg",
}
# ufuncs whose element form is a function of tapegrad_jit.source_jit (np.tanh's value, faster)
_HELPERS = {"tanh"}
_PREDICATES = {"isnan", "isinf", "isfinite", "logical_and", "logical_or", "logical_not"}
_LIKE = {"zeros_like": "0.0", "ones_like": "1.0"}
_ALLOCATIONS = {"zeros_like", "ones_like", "empty_like", "zeros", "ones", "empty", "full"}
# expressions that may return a view of (or the same array as) their first argument
_VIEW_METHODS = {"T", "transpose", "reshape", "ravel", "squeeze", "swapaxes", "view"}
_VIEW_FUNCTIONS = {"transpose", "reshape", "ravel", "squeeze", "swapaxes", "expand_dims",
                   "atleast_1d", "atleast_2d", "atleast_3d", "asarray", "ascontiguousarray",
                   "broadcast_to", "moveaxis"}
_CMP = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)


class _NotFusable(Exception):
    pass


def src(node):
    return ast.unparse(node)


def _is_np(node, names):
    return (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "np" and node.attr in names)


def _axis_sum(value):
    """(axes, E) for `np.sum(E, axis=k)` and nested ones (outermost axis first), or None."""
    axes, node = [], value
    while isinstance(node, ast.Call) and _is_np(node.func, {"sum"}) and len(node.args) == 1 \
            and [k.arg for k in node.keywords] == ["axis"] \
            and isinstance(node.keywords[0].value, ast.Constant) \
            and type(node.keywords[0].value.value) is int and node.keywords[0].value.value >= 0:
        axes.append(node.keywords[0].value.value)
        node = node.args[0]
    return (axes, node) if axes else None


def _is_comment(stmt):
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == COMMENT)


class _Classes:
    """Union-find over names and view texts (`x[1:]`); the earliest-made member names a class,
    so that a view keyed by its base's class stays the same key when later names join."""

    def __init__(self):
        self.parent = {}
        self.order = {}

    def find(self, key):
        self.order.setdefault(key, len(self.order))
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            first, second = sorted((a, b), key=self.order.__getitem__)
            self.parent[second] = first


@dataclass
class _Operand:
    text: str  # the array as the code spells it: `x`, `x[1:]`
    ndim: int  # of the view
    axes: list  # (view axis, domain axis) for the view's axes that are not 1
    cls: str  # its shape class
    exact: str  # its class of shapes equal by construction
    dtype: str = "float"


@dataclass
class _Piece:
    stmt: ast.stmt
    # "assign" | "sum" | "mean" | "addsum" (`s += np.sum(E)`) | "store" | "sumto" (a new array
    # summed over axes: `s = np.sum(E, axis=0)`)
    form: str
    kind: Kind  # the loop's domain
    cls: str
    expr: ast.expr  # the element expression (index names are placeholders `__i0`, `__i1`)
    operands: list
    reads: set  # names read (arrays and scalars)
    roots: set  # arrays read, as alias roots
    target: str = None  # assign: the array; sum/mean: the accumulator; store: the base
    lvalue: ast.expr = None  # store: the element written (placeholders)
    op: ast.operator = None  # store: the augmented operator, None for `=`
    hoisted: list = field(default_factory=list)  # statements computed before the loop
    kept: list = None  # sumto: the domain axes the sum keeps


class Fuser:
    def __init__(self, body, kinds, namer, substitutable):
        self.kinds = dict(kinds)
        self.namer = namer
        self.substitutable = set(substitutable)
        self.products = {}  # matrix product text -> the name computed before a loop
        self.helpers = {}  # scalar helper of tapegrad_jit.source_jit -> its name in the code
        self.assigned = {}  # name -> times bound (in-place updates of arrays keep shapes)
        for stmt in statements(body):
            for node in ast.walk(stmt):
                bound = []
                if isinstance(node, (ast.Assign, ast.For)):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    bound = [n.id for t in targets for n in ast.walk(t)
                             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
                elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                    kind = self.kinds.get(node.target.id)
                    bound = [] if kind is not None and kind.is_array else [node.target.id]
                for name in bound:
                    self.assigned[name] = self.assigned.get(name, 0) + 1
        self.shapes = _Classes()  # shapes known equal (asserted by the code or exact)
        self.exact = _Classes()  # shapes equal by construction: views, aliases, *_like
        self.aliases = _Classes()
        self.index_names = []
        self.views = {}  # name -> the slice of another array it stands for (both bound once)
        self._operands, self._reads, self._hoisted, self._locals = [], set(), [], frozenset()
        for stmt in statements(body):
            self._facts(stmt)

    # -- facts about shapes and aliases (names assigned once only) ------------------------------

    def _single(self, name):
        return self.assigned.get(name, 0) <= 1 and self.kinds.get(name) is not None

    def _facts(self, stmt):
        if isinstance(stmt, ast.Assert):
            test = stmt.test
            if isinstance(test, ast.Compare) and len(test.ops) == 1 \
                    and isinstance(test.ops[0], ast.Eq):
                sides = [test.left, test.comparators[0]]
                names = [s.value.id for s in sides if isinstance(s, ast.Attribute)
                         and s.attr == "shape" and isinstance(s.value, ast.Name)]
                if len(names) == 2 and all(map(self._single, names)):
                    self.shapes.union(*names)
            return
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            return
        target, value = stmt.targets[0].id, stmt.value
        kind = self.kinds.get(target)
        if kind is None or not kind.is_array:
            return
        base = self._view_base(value)
        if base is not None:
            self.aliases.union(target, base)
        if not self._single(target):
            return
        same = None
        if isinstance(value, ast.Name) and self._single(value.id):
            same = value.id, value.id
        elif isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) \
                and self._single(value.value.id):
            same = (self._view_key(value.value.id, value.slice),
                    self._view_key(value.value.id, value.slice, self.exact))
            parts = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
            if value.value.id not in self.views and all(
                    isinstance(s, ast.Slice) and s.step is None and s.lower is None
                    or isinstance(s, ast.Slice) and s.step is None
                    and isinstance(s.lower, ast.Constant) and type(s.lower.value) is int
                    and s.lower.value >= 0 for s in parts):
                self.views[target] = value
        elif isinstance(value, ast.Call) and _is_np(value.func, {"zeros_like", "ones_like",
                                                                 "full_like", "empty_like"}) \
                and value.args and isinstance(value.args[0], ast.Name) \
                and self._single(value.args[0].id):
            same = value.args[0].id, value.args[0].id
        if same is not None:
            self.shapes.union(target, same[0])
            self.exact.union(target, same[1])
        else:
            try:  # an elementwise result has the shape its full-size operands agree on
                piece = self._classify(stmt)
            except _NotFusable:
                return
            if piece.form == "assign" and piece.cls is not None:
                self.shapes.union(target, piece.cls)

    def _view_base(self, value):
        """The array that `value` may be a view of, or None for a new array."""
        node = value
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr in _VIEW_METHODS \
                    and not (isinstance(node.func.value, ast.Name) and node.func.value.id == "np"):
                node = node.func.value
            elif _is_np(node.func, _VIEW_FUNCTIONS) and node.args:
                node = node.args[0]
            else:
                return None
        while isinstance(node, (ast.Subscript, ast.Attribute)) and not (
                isinstance(node, ast.Attribute) and node.attr not in _VIEW_METHODS):
            node = node.value
        return node.id if isinstance(node, ast.Name) and node.id in self.kinds else None

    def _view_key(self, base, index, classes=None):
        return f"{(classes or self.shapes).find(base)}[{src(index)}]"

    def _root(self, name):
        return self.aliases.find(name)

    # -- one statement -> a piece of a loop --------------------------------------------------

    def _classify(self, stmt, group_targets=frozenset()):
        """The statement as a piece of a fused loop, or _NotFusable."""
        self._operands, self._reads, self._hoisted = [], set(), []
        self._locals = group_targets
        if isinstance(stmt, (ast.Assign, ast.AugAssign)):
            target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
            into = isinstance(stmt, ast.AugAssign)
            if isinstance(target, ast.Name) and _axis_sum(stmt.value) \
                    and (not into or isinstance(stmt.op, ast.Add)):
                return self._axis_reduction(stmt, target.id, stmt.value, into)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            value = stmt.value
            if isinstance(target, ast.Name):
                name = target.id
                kind = self.kinds.get(name)
                if kind is None:
                    raise _NotFusable
                if not kind.is_array:
                    return self._reduction(stmt, name, kind, value)
                if _is_product(value):
                    raise _NotFusable  # BLAS makes the array: a loop would only copy it
                if isinstance(value, ast.Name) and value.id in group_targets:
                    pass  # another name for a result of the run: its element
                elif isinstance(value, (ast.Name, ast.Subscript)) or isinstance(
                        value, ast.Call) and _is_np(value.func, _ALLOCATIONS):
                    raise _NotFusable  # a view, an alias, an allocation: no loop needed
                if isinstance(value, ast.Call) and _is_np(value.func, {"full_like"}) \
                        and not group_targets:
                    raise _NotFusable  # worth a loop only as part of a run
                self._domain = kind
                expr, expr_kind = self._element(value)
                if expr_kind.ndim != kind.ndim or name in self._reads or kind.dtype == "bool" \
                        and expr_kind.dtype != "bool":
                    raise _NotFusable
                return self._piece(stmt, "assign", kind, expr, target=name)
            if isinstance(target, ast.Subscript):
                return self._store(stmt, target, value, None)
            raise _NotFusable
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, (ast.Add, ast.Sub, ast.Mult)):
            target = stmt.target
            if isinstance(target, ast.Name) and self.kinds.get(target.id) \
                    and self.kinds[target.id].is_array:
                return self._store(stmt, target, stmt.value, stmt.op)
            if isinstance(target, ast.Subscript):
                return self._store(stmt, target, stmt.value, stmt.op)
            kind = self.kinds.get(target.id) if isinstance(target, ast.Name) else None
            if kind is not None and isinstance(stmt.op, ast.Add):  # `s_bar += np.sum(E)`
                return self._reduction(stmt, target.id, kind, stmt.value, into=True)
        raise _NotFusable

    def _reduction(self, stmt, name, kind, value, into=False):
        """`s = np.sum(E)`, `s = np.mean(E)`, or (into) `s += np.sum(E)`."""
        if not (isinstance(value, ast.Call) and _is_np(value.func, {"sum"} if into
                                                       else {"sum", "mean"})
                and len(value.args) == 1 and not value.keywords):
            raise _NotFusable
        inner = value.args[0]
        domain = self._kind_of(inner)
        if domain is None or not domain.is_array or domain.dtype != "float" \
                or kind.dtype != "float":
            raise _NotFusable
        self._domain = domain
        expr, _ = self._element(inner)
        if name in self._reads:
            raise _NotFusable
        return self._piece(stmt, "addsum" if into else value.func.attr, domain, expr,
                           target=name)

    def _axis_reduction(self, stmt, name, value, into):
        """`s = np.sum(E, axis=k)` (nested: several axes) or `s += ...`: each element of E is
        added into s at the indices of the axes kept, in E's loop."""
        axes, node = _axis_sum(value)
        domain, kind = self._kind_of(node), self.kinds.get(name)
        if domain is None or domain.dtype != "float" or domain.ones or kind is None \
                or kind.dtype != "float" or kind.ones or name in self._locals:
            raise _NotFusable
        kept = list(range(domain.ndim))
        for axis in reversed(axes):  # the innermost sum first
            if axis >= len(kept):
                raise _NotFusable
            kept.pop(axis)
        if not kept or len(kept) != kind.ndim:
            raise _NotFusable
        self._domain = domain
        expr, _ = self._element(node)
        if any(self._root(n) == self._root(name) for n in self._reads):
            raise _NotFusable
        if into:  # checked against the loop's bounds
            self._operands.append(_Operand(name, len(kept), list(enumerate(kept)),
                                           self.shapes.find(name), self.exact.find(name)))
        piece = self._piece(stmt, "store" if into else "sumto", domain, expr, target=name)
        parts = [self._index(a) for a in kept]
        piece.lvalue = ast.Subscript(value=ast.Name(id=name, ctx=ast.Load()), slice=parts[0] if
                                     len(parts) == 1 else ast.Tuple(elts=parts, ctx=ast.Load()),
                                     ctx=ast.Load())
        piece.op, piece.kept = ast.Add(), kept
        if into:
            piece.reads.add(name)
        return piece

    def _store(self, stmt, target, value, op):
        base = target.value if isinstance(target, ast.Subscript) else target
        if not isinstance(base, ast.Name) or base.id in self._locals:
            raise _NotFusable
        self._domain = None
        lvalue, kind, operand = self._view(target)
        if kind.dtype != "float" or not kind.is_array:
            raise _NotFusable
        self._domain = kind
        lvalue, _, operand = self._view(target)
        self._operands.append(operand)
        index_reads, self._reads = self._reads - {base.id}, set()
        expr, expr_kind = self._element(value)
        if expr_kind.ndim > kind.ndim:
            raise _NotFusable
        root = self._root(base.id)
        if any(self._root(n) == root for n in self._reads):
            raise _NotFusable  # the array written is read too: not elementwise any more
        piece = self._piece(stmt, "store", kind, expr, target=base.id)
        piece.reads |= index_reads | {base.id}
        piece.lvalue, piece.op = lvalue, op
        piece.cls = operand.cls
        return piece

    def _piece(self, stmt, form, kind, expr, target):
        full = [o for o in self._operands
                if o.ndim == kind.ndim and len(o.axes) == kind.ndim - len(kind.ones)]
        classes = {o.cls for o in full}
        if len(classes) > 1:
            raise _NotFusable  # shapes not known equal: NumPy may broadcast axes of length 1
        locals_ = [n for n in self._reads if n in self._locals]
        if not classes and not locals_ and form != "store":
            raise _NotFusable  # nothing sets the loop bounds
        cls = classes.pop() if classes else None
        roots = {self._root(n) for n in self._reads if self.kinds.get(n) is not None
                 and self.kinds[n].is_array}
        return _Piece(stmt, form, kind, cls, expr, list(self._operands), set(self._reads),
                      roots, target=target, hoisted=list(self._hoisted))

    def _kind_of(self, node):
        """The kind of an elementwise expression (without building it), or None."""
        saved = (self._operands, self._reads, self._hoisted, getattr(self, "_domain", None))
        try:
            self._operands, self._reads, self._hoisted, self._domain = [], set(), [], None
            return self._element(node)[1]
        except _NotFusable:
            return None
        finally:
            self._operands, self._reads, self._hoisted, self._domain = saved

    # -- element expressions -------------------------------------------------------------------

    def _index(self, axis):
        return ast.Name(id=f"__i{axis}", ctx=ast.Load())

    def _view(self, node):
        """(element access, kind of the view, operand) for `x` or `x[slices]`, placed in the
        current domain (None: only the kind is wanted)."""
        if isinstance(node, ast.Name):
            base, parts = node.id, []
        else:
            if not isinstance(node.value, ast.Name):
                raise _NotFusable  # a subscript of a call: np.sum(x, axis=0)[None, :]
            base = node.value.id
            parts = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        base_kind = self.kinds.get(base)
        if base_kind is None or not base_kind.is_array or base in self._locals:
            raise _NotFusable
        taking = [p for p in parts if not (isinstance(p, ast.Constant) and p.value is None)]
        if len(taking) > base_kind.ndim:
            raise _NotFusable
        parts = parts + [ast.Slice(lower=None, upper=None, step=None)] * (
            base_kind.ndim - len(taking))
        view_axes = []  # per view axis: (array position or None, lower bound, from the base's 1s)
        indices = []
        array_axis = 0
        for part in parts:
            if isinstance(part, ast.Constant) and part.value is None:
                view_axes.append((None, 0, True))
            elif isinstance(part, ast.Slice):
                lower = part.lower
                if part.step is not None or not (
                        lower is None or isinstance(lower, ast.Constant)
                        and type(lower.value) is int and lower.value >= 0):
                    raise _NotFusable
                view_axes.append((len(indices), lower.value if lower else 0,
                                  array_axis in base_kind.ones))
                indices.append(None)
                array_axis += 1
            else:
                self._scalar_index(part)
                indices.append(part)
                array_axis += 1
        ones = frozenset(k for k, (_, _, one) in enumerate(view_axes) if one)
        kind = Kind(base_kind.dtype, len(view_axes), ones)
        self._reads.add(base)
        if self._domain is None:
            return None, kind, None
        lead = self._domain.ndim - kind.ndim
        if lead < 0:
            raise _NotFusable
        axes = []
        for k, (position, lower, one) in enumerate(view_axes):
            axis = lead + k
            if not one and axis in self._domain.ones:
                raise _NotFusable
            if position is None:
                continue
            if one:
                indices[position] = ast.Constant(lower)
                continue
            axes.append((k, axis))
            index = self._index(axis)
            indices[position] = index if lower == 0 else ast.BinOp(
                left=index, op=ast.Add(), right=ast.Constant(lower))
        key, exact = (base, base) if isinstance(node, ast.Name) else (
            self._view_key(base, node.slice), self._view_key(base, node.slice, self.exact))
        operand = _Operand(src(node), kind.ndim, axes, self.shapes.find(key),
                           self.exact.find(exact), base_kind.dtype)
        if not indices:
            raise _NotFusable
        index = indices[0] if len(indices) == 1 else ast.Tuple(elts=indices, ctx=ast.Load())
        return ast.Subscript(value=ast.Name(id=base, ctx=ast.Load()), slice=index,
                             ctx=ast.Load()), kind, operand

    def _scalar_index(self, part):
        """An integer index: constants and integer scalars not computed in the loop."""
        for n in ast.walk(part):
            if isinstance(n, ast.Name):
                kind = self.kinds.get(n.id)
                if kind is None or kind.is_array or kind.dtype != "int" or n.id in self._locals:
                    raise _NotFusable
                self._reads.add(n.id)
            elif not isinstance(n, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.operator,
                                    ast.unaryop, ast.Load)):
                raise _NotFusable

    def _element(self, node):
        """(the expression for one element, its kind)."""
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float, bool):
                raise _NotFusable
            return node, Kind({bool: "bool", int: "int", float: "float"}[type(node.value)])
        if isinstance(node, ast.Name):
            kind = self.kinds.get(node.id)
            if kind is None:
                raise _NotFusable
            if node.id in self._locals:
                self._reads.add(node.id)
                return ast.Name(id=f"__local_{node.id}", ctx=ast.Load()), kind
            if not kind.is_array:
                self._reads.add(node.id)
                return node, kind
            return self._array(node)
        if isinstance(node, ast.Subscript):
            if isinstance(node.value, ast.Attribute) and node.value.attr == "shape" \
                    and isinstance(node.value.value, ast.Name):
                return self._invariant(node, node.value.value.id)
            if not isinstance(node.value, ast.Name):
                raise _NotFusable
            return self._array(node)
        if isinstance(node, ast.Attribute) and node.attr == "size" \
                and isinstance(node.value, ast.Name):
            return self._invariant(node, node.value.id)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.MatMult):
                return self._product(node)
            if not isinstance(node.op, _ARITH):
                raise _NotFusable
            left, lk = self._element(node.left)
            right, rk = self._element(node.right)
            if lk.dtype == "bool" and rk.dtype == "bool":
                raise _NotFusable  # NumPy's bool + bool is `or`, a scalar's is an int
            kind = broadcast(lk, rk, dtype="float" if isinstance(node.op, ast.Div) else None)
            return ast.BinOp(left=left, op=node.op, right=right), kind
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand, kind = self._element(node.operand)
            if kind.dtype == "bool":
                raise _NotFusable
            return ast.UnaryOp(op=node.op, operand=operand), kind
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], _CMP):
            left, lk = self._element(node.left)
            right, rk = self._element(node.comparators[0])
            return ast.Compare(left=left, ops=node.ops, comparators=[right]), \
                broadcast(lk, rk, dtype="bool")
        if isinstance(node, ast.Call) and not node.keywords:
            return self._call(node)
        raise _NotFusable

    def _array(self, node):
        if isinstance(node, ast.Name) and node.id in self.views and node.id not in self._locals:
            self._reads.add(node.id)
            node = self.views[node.id]  # `result_1 = x[1:]`: read as x[i + 1]
        element, kind, operand = self._view(node)
        if not kind.is_array:
            raise _NotFusable
        self._operands.append(operand)
        return element, kind

    def _invariant(self, node, name):
        """`a.size`, `a.shape[k]`: a result of the run has the loop's shape (placeholders)."""
        if self.kinds.get(name) is None:
            raise _NotFusable
        if name in self._locals:
            if isinstance(node, ast.Attribute):
                return ast.Name(id="__size", ctx=ast.Load()), Kind("int")
            axis = node.slice
            if not (isinstance(axis, ast.Constant) and type(axis.value) is int
                    and 0 <= axis.value < self.kinds[name].ndim):
                raise _NotFusable
            return ast.Name(id=f"__shape{axis.value}", ctx=ast.Load()), Kind("int")
        self._reads.add(name)
        return node, Kind("int")

    def _call(self, node):
        func, args = node.func, node.args
        if _is_np(func, _UFUNCS | _PREDICATES):
            parts = [self._element(a) for a in args]
            if not parts:
                raise _NotFusable
            if func.attr in _PREDICATES:
                dtype = "bool"
            elif func.attr in ("abs", "absolute", "sign", "maximum", "minimum", "negative",
                               "square", "power"):
                dtype = None
            else:
                dtype = "float"
            kinds = [k for _, k in parts]
            if dtype is None and any(k.dtype == "bool" for k in kinds):
                raise _NotFusable
            if func.attr in _HELPERS:  # Numba's float32 tanh is a slow libm call
                func = ast.Name(id=self.helper(func.attr), ctx=ast.Load())
            return ast.Call(func=func, args=[e for e, _ in parts], keywords=[]), \
                broadcast(*kinds, dtype=dtype)
        if _is_np(func, {"where"}) and len(args) == 3:
            cond, ck = self._element(args[0])
            yes, yk = self._element(args[1])
            no, nk = self._element(args[2])
            return ast.IfExp(test=cond, body=yes, orelse=no), \
                broadcast(ck, yk, nk, dtype=broadcast(yk, nk).dtype)
        if _is_np(func, set(_LIKE) | {"full_like"}) and args and isinstance(args[0], (
                ast.Name, ast.Subscript)):
            _, like = self._array(args[0])
            if like.dtype != "float":
                raise _NotFusable
            if func.attr == "full_like":
                if len(args) != 2:
                    raise _NotFusable
                value, kind = self._element(args[1])
                if kind.is_array:
                    raise _NotFusable
                return ast.BinOp(left=ast.Constant(0.0), op=ast.Add(), right=value) \
                    if kind.dtype != "float" else value, like
            if len(args) != 1:
                raise _NotFusable
            return ast.Constant(float(_LIKE[func.attr])), like
        if _is_np(func, {"dot"}) and len(args) == 2:
            return self._product(node)
        raise _NotFusable

    def helper(self, name):
        if name not in self.helpers:
            self.helpers[name] = self.namer.fresh(name)
        return self.helpers[name]

    def _product(self, node):
        """A matrix product inside an elementwise expression: computed before the loop (BLAS),
        from arrays the loop does not make."""
        if self._domain is None:
            raise _NotFusable
        left, right = (node.left, node.right) if isinstance(node, ast.BinOp) else node.args
        kinds = []
        for side in (left, right):
            names = [n.id for n in ast.walk(side) if isinstance(n, ast.Name) and n.id != "np"]
            if not isinstance(side, (ast.Name, ast.Attribute, ast.Subscript)) or any(
                    n in self._locals or self.kinds.get(n) is None for n in names):
                raise _NotFusable
            base = next((n for n in names if self.kinds[n].is_array), None)
            if base is None:
                raise _NotFusable
            self._reads.update(names)
            kinds.append(self.kinds[base].ndim)
        if not all(k in (1, 2) for k in kinds) or not (
                isinstance(left, ast.Name) and isinstance(right, (ast.Name, ast.Attribute))):
            raise _NotFusable
        ndim = sum(kinds) - 2
        if ndim == 0:
            raise _NotFusable
        text = src(node)
        if text not in self.products:
            self.products[text] = self.namer.fresh(f"{left.id}_times_{self._base_name(right)}")
        name = self.products[text]
        self.kinds[name] = Kind("float", ndim)
        self._hoisted.append(ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())],
                                        value=node))
        return self._array(ast.Name(id=name, ctx=ast.Load()))

    @staticmethod
    def _base_name(node):
        while not isinstance(node, ast.Name):
            node = node.value
        return node.id


def fuse(body, kinds, namer, substitutable, arrays):
    """(`body` with its runs of elementwise array statements as fused loops (see the module),
    {function of tapegrad_jit.source_jit: the name the loops call it by})."""
    seeded = {}
    body = _products_into_zeros(body, seeded)
    # the scout names products of its own: a copy of the namer keeps them out of the code
    scout = Fuser(body, kinds, copy.deepcopy(namer), substitutable)
    body, made = _name_fusable_parts(body, scout, namer)
    kinds = {**kinds, **made}
    fuser = Fuser(body, kinds, namer, substitutable)
    for name, like in seeded.items():  # the product has the shape its zeros had
        if fuser._single(name) and fuser._single(like):
            fuser.shapes.union(name, like)
            fuser.exact.union(name, like)
    liveness = _Liveness(set(arrays) | set(made))
    body, _ = liveness.block(body, set(), set())
    body = _Blocks(fuser, liveness.live_after).block(body)
    # views that loops now index through their arrays are read no more
    body, _ = _Liveness(set(arrays)).block(body, set(), set())
    return body, fuser.helpers


def _is_product(node):
    return isinstance(node, ast.Call) and _is_np(node.func, {"dot"}) and len(node.args) == 2 \
        or isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult)


def _products_into_zeros(stmts, seeded):
    """`a_bar = np.zeros_like(a)`, statements not reading a_bar, `a_bar += np.dot(g, b.T)` ->
    `a_bar = np.dot(g, b.T)`: the product's own new array is the cotangent (a matrix
    product's cotangent has its operand's shape), not zeros plus a temporary added in.
    `seeded` gets {a_bar: a} for the names changed so."""
    out = list(stmts)
    for k, stmt in enumerate(out):
        for name in ("body", "orelse"):
            inner = getattr(stmt, name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                setattr(stmt, name, _products_into_zeros(inner, seeded))
        if not (isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Add)
                and isinstance(stmt.target, ast.Name) and _is_product(stmt.value)):
            continue
        name = stmt.target.id
        if name in _loads(stmt.value):
            continue
        j = next((j for j in range(k - 1, -1, -1) if out[j] is not None and any(
            isinstance(n, ast.Name) and n.id == name for n in ast.walk(out[j]))), None)
        seed = out[j] if j is not None else None
        if isinstance(seed, ast.Assign) and len(seed.targets) == 1 \
                and isinstance(seed.targets[0], ast.Name) and seed.targets[0].id == name \
                and isinstance(seed.value, ast.Call) and _is_np(seed.value.func, {"zeros_like"}) \
                and len(seed.value.args) == 1 and isinstance(seed.value.args[0], ast.Name) \
                and not seed.value.keywords:
            seeded[name] = seed.value.args[0].id
            out[j] = None
            out[k] = ast.copy_location(ast.Assign(
                targets=[ast.Name(id=name, ctx=ast.Store())], value=stmt.value), stmt)
            if hasattr(stmt, ORIGIN):
                setattr(out[k], ORIGIN, getattr(stmt, ORIGIN))
    return [stmt for stmt in out if stmt is not None]


def _name_fusable_parts(stmts, scout, namer, made=None):
    """(`stmts` with parts that a loop can compute bound to names first: each elementwise
    operand of a matrix product (`w_bar += np.dot(x.T, h_bar * (h > 0))` -> `w_bar_factor =
    h_bar * (h > 0)`, `w_bar += np.dot(x.T, w_bar_factor)`: computed in the operands' dtype,
    no temporary per operation) and each sum over axes inside a larger expression (`mu =
    (np.sum(z, axis=1) / n)[:, None]` -> `mu_sum = np.sum(z, axis=1)` first); {name: kind})."""
    made = {} if made is None else made
    out = []
    for stmt in stmts:
        for name in ("body", "orelse"):
            inner = getattr(stmt, name, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                setattr(stmt, name, _name_fusable_parts(inner, scout, namer, made)[0])
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
            else getattr(stmt, "target", None)
        if isinstance(stmt, (ast.Assign, ast.AugAssign)) and isinstance(target, ast.Name) \
                and not any(isinstance(n, (ast.IfExp, ast.BoolOp, ast.Lambda))
                            for n in ast.walk(stmt.value)):  # parts run unconditionally
            parts = _Parts(scout, namer, target.id, made)
            stmt.value = parts.visit(stmt.value) if _axis_sum(stmt.value) is None else \
                parts.generic_visit(stmt.value)  # a whole sum is a loop's already
            for bind in parts.binds:
                ast.copy_location(bind, stmt)
                if hasattr(stmt, ORIGIN):
                    setattr(bind, ORIGIN, getattr(stmt, ORIGIN))
            out += parts.binds
        out.append(stmt)
    return out, made


class _Parts(ast.NodeTransformer):
    def __init__(self, scout, namer, target, made):
        self.scout, self.namer, self.target, self.made = scout, namer, target, made
        self.binds = []

    def visit_Call(self, node):
        self.generic_visit(node)
        if _is_np(node.func, {"dot"}) and len(node.args) == 2:
            node.args = [self._factor(side) for side in node.args]
            return node
        found = _axis_sum(node)
        if found is None:
            return node
        axes, inner = found
        domain = self._kind(inner)
        if domain is None or domain.ones or len(axes) >= domain.ndim:
            return node
        return self._bind(node, "sum", Kind("float", domain.ndim - len(axes)))

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.MatMult):
            node.left, node.right = self._factor(node.left), self._factor(node.right)
        return node

    def _kind(self, node):
        """The kind of an elementwise float array expression, or None."""
        kind = self.scout._kind_of(node)
        return kind if kind is not None and kind.is_array and kind.dtype == "float" else None

    def _factor(self, side):
        if isinstance(side, (ast.Name, ast.Attribute, ast.Subscript)):
            return side
        kind = self._kind(side)
        return side if kind is None else self._bind(side, "factor", kind)

    def _bind(self, value, suffix, kind):
        name = self.namer.fresh(f"{self.target}_{suffix}")
        self.made[name] = self.scout.kinds[name] = kind
        self.binds.append(ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=value))
        return ast.Name(id=name, ctx=ast.Load())


class _Group:
    def __init__(self):
        self.pieces = []
        self.items = []  # pieces and comment markers, in order: the loop's body
        self.pre = []  # statements moved above the loop
        self.asserts = []
        self.original = []  # everything, as it came
        self.assigned = set()
        self.sums = set()
        self.reads = set()
        self.read_roots = set()
        self.written = {}  # root -> augmented operator of its updates (None: a plain store)
        self.kind = None
        self.cls = None


class _Blocks:
    def __init__(self, fuser, live_after):
        self.fuser = fuser
        self.live_after = live_after

    def block(self, stmts):
        out = []
        group = _Group()
        for stmt in stmts:
            for name in ("body", "orelse"):
                inner = getattr(stmt, name, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    setattr(stmt, name, self.block(inner))
            group = self._add(stmt, group, out)
        out += self._flush(group)
        return out

    def _add(self, stmt, group, out):
        """Put `stmt` into the run being built, or close the run; returns the run to go on."""
        if _is_comment(stmt) or (isinstance(stmt, ast.Assert) and group.pieces):
            (group.items if _is_comment(stmt) else group.asserts).append(stmt)
            group.original.append(stmt)
            return group
        try:
            piece = self.fuser._classify(stmt, frozenset(group.assigned - group.sums))
        except _NotFusable:
            piece = None
        if piece is not None and piece.cls is None and group.pieces:
            piece.cls = group.cls  # made from the run's own results only
        if piece is not None and piece.cls is not None and self._accepts(group, piece):
            self._join(group, piece)
            return group
        if piece is None and group.pieces and self._movable(group, stmt):
            group.pre.append(stmt)
            group.original.append(stmt)
            group.reads |= _loads(stmt)
            return group
        out += self._flush(group)
        group = _Group()
        try:  # again: in an empty run, the statement reads no results of a run
            piece = self.fuser._classify(stmt)
        except _NotFusable:
            piece = None
        if piece is not None and piece.cls is not None:
            self._join(group, piece)
        else:
            out.append(stmt)
        return group

    def _accepts(self, group, piece):
        if not group.pieces:
            return True
        if piece.kind != group.kind or piece.cls != group.cls:
            return False
        if piece.roots & set(group.written) or piece.reads & group.sums:
            return False
        if piece.form != "store" and piece.target in (
                group.reads | group.assigned):
            return False
        if piece.form == "store":
            root = self.fuser._root(piece.target)
            if root in group.read_roots:
                return False
            if root in group.written and (piece.op is None or group.written[root] is None
                                          or type(piece.op) is not type(group.written[root])):
                return False
        return not any(h.targets[0].id in group.reads for h in piece.hoisted)

    def _join(self, group, piece):
        if not group.pieces:
            group.kind, group.cls = piece.kind, piece.cls
        group.pieces.append(piece)
        group.items.append(piece)
        group.original.append(piece.stmt)
        group.pre += piece.hoisted
        group.reads |= piece.reads
        if piece.form == "store":
            root = self.fuser._root(piece.target)
            group.written[root] = piece.op
            group.read_roots |= piece.roots - {root}
        else:
            group.read_roots |= piece.roots
            group.assigned.add(piece.target)
            if piece.form != "assign":
                group.sums.add(piece.target)

    def _movable(self, group, stmt):
        """A statement that reads nothing the run makes or writes, and whose target the run does
        not read: it may run before the loop."""
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name) and _pure(stmt.value)):
            return False
        target = stmt.targets[0].id
        reads = _loads(stmt.value)
        roots = {self.fuser._root(n) for n in reads if n in self.fuser.kinds}
        return not (reads & group.assigned or roots & set(group.written)
                    or target in group.reads | group.assigned
                    or self.fuser._root(target) in set(group.written) | group.read_roots)

    # -- writing the loop -----------------------------------------------------------------------

    def _flush(self, group):
        if not group.pieces:
            return group.original
        fuser = self.fuser
        last = group.original[-1]
        while _is_comment(last) or isinstance(last, ast.Assert):
            last = group.original[group.original.index(last) - 1]
        live = self.live_after.get(id(last), set())
        trailing = []
        while group.items and _is_comment(group.items[-1]):
            trailing.insert(0, group.items.pop())
        first = group.pieces[0]
        origin = getattr(first.stmt, ORIGIN, None)
        kind = group.kind
        while len(fuser.index_names) < kind.ndim:  # the same for every loop: i, j, ...
            fuser.index_names.append(fuser.namer.fresh("ijklmnpqrs"[len(fuser.index_names)]))
        indices = {a: fuser.index_names[a] for a in range(kind.ndim) if a not in kind.ones}
        bounds, checks, source = self._bounds(group, indices)
        # float arrays made here take the precision of the arrays they are made from
        like = f", {source.text}.dtype" if source is not None and source.dtype == "float" \
            and source.text.isidentifier() else ""
        shape = [bounds.get(a, "1") for a in range(kind.ndim)]
        shape_text = shape[0] if len(shape) == 1 else f"({', '.join(shape)})"
        before, after = [], []
        element_names = {}
        suffix = "".join(indices[a] for a in sorted(indices))
        reads_later = set()
        for piece in reversed(group.pieces):
            if piece.form == "assign":
                piece.keep = piece.target in live
                piece.local_reads = piece.target in reads_later
            reads_later |= piece.reads
        for piece in group.pieces:
            if piece.form == "assign":
                element_names[piece.target] = fuser.namer.fresh(f"{piece.target}_{suffix}")
                if piece.keep:
                    dtype = {"float": like, "int": ", np.int64", "bool": ", np.bool_"}[
                        fuser.kinds[piece.target].dtype]
                    before.append(f"{piece.target} = np.empty({shape_text}{dtype})")
            elif piece.form in ("sum", "mean"):
                before.append(f"{piece.target} = 0.0")
                if piece.form == "mean":
                    count = " * ".join(bounds.get(a, "1") for a in range(kind.ndim))
                    after.append(f"{piece.target} = {piece.target} / ({count})")
            elif piece.form == "sumto":
                kept = [bounds[a] for a in piece.kept]
                kept_text = kept[0] if len(kept) == 1 else f"({', '.join(kept)})"
                before.append(f"{piece.target} = np.zeros({kept_text}{like})")
        if checks:
            line = f"line {origin.lineno}: " if origin is not None else ""
            message = (f"tapegrad.source: {line}arrays that meet elementwise have different "
                       "shapes (an axis broadcasts only where the code makes it 1: x[:, None], "
                       "keepdims=True)")
            before.append(f"assert {' and '.join(checks)}, {message!r}")
        index = {a: indices.get(a) for a in range(kind.ndim)}
        count = " * ".join(shape)
        index.update({"__size": count if len(shape) == 1 else f"({count})"})
        index.update({f"__shape{a}": text for a, text in enumerate(shape)})
        body = []
        for item in group.items:
            if _is_comment(item):
                body.append(item)
                continue
            body += self._lines(item, index, element_names)
        body = self._merge_updates(self._inline(body, element_names))
        loop = body
        for a in reversed(sorted(indices)):
            loop = [ast.For(target=ast.Name(id=indices[a], ctx=ast.Store()),
                            iter=ast.parse(f"range({bounds[a]})", mode="eval").body,
                            body=loop, orelse=[], type_comment=None)]
        made = [s for line in before for s in ast.parse(line).body]
        closing = [s for line in after for s in ast.parse(line).body]
        kept_asserts = [a for a in group.asserts
                        if not (_loads(a) & {p.target for p in group.pieces
                                             if p.form == "assign" and not p.keep})]
        for stmt in made + loop + closing:
            for node in ast.walk(stmt):
                if isinstance(node, ast.stmt) and not hasattr(node, ORIGIN) and origin:
                    setattr(node, ORIGIN, origin)
        return group.pre + made + loop + closing + kept_asserts + trailing

    def _bounds(self, group, indices):
        """{domain axis: bound text} from the operands of the run's shape class, and the checks
        that every operand agrees with them."""
        bounds = {}
        operands = [o for p in group.pieces for o in p.operands]
        ranked = sorted(operands, key=lambda o: (o.cls != group.cls, not o.text.isidentifier()))
        for axis in indices:
            for o in ranked:
                found = [k for k, a in o.axes if a == axis]
                if found:
                    bounds[axis] = f"{o.text}.shape[{found[0]}]"
                    break
            else:
                raise AssertionError("a fused loop without bounds")
        sources = {b[:b.rindex(".shape[")] for b in bounds.values()}
        source = next(o for o in ranked if o.text == sources.pop()) if len(sources) == 1 \
            else None
        whole = source is not None and source.ndim == group.kind.ndim and not group.kind.ones
        checks, checked = [], {source.exact} if source is not None else set()
        for o in operands:
            if o.exact in checked or o is source:
                continue  # equal by construction (a view, *_like) to one checked already
            checked.add(o.exact)
            if whole and o.ndim == source.ndim and len(o.axes) == o.ndim:
                check = f"{o.text}.shape == {source.text}.shape"
                if check not in checks:
                    checks.append(check)
                continue
            for k, axis in o.axes:
                check = f"{o.text}.shape[{k}] == {bounds[axis]}"
                if bounds[axis] != f"{o.text}.shape[{k}]" and check not in checks:
                    checks.append(check)
        return bounds, checks, source

    def _lines(self, piece, index, element_names):
        expr = self._placed(piece.expr, index, element_names)
        if piece.form == "assign":
            name = element_names[piece.target]
            lines = [ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=expr)]
            if piece.keep:
                store = self._element_of(piece.target, index)
                lines.append(ast.Assign(targets=[store], value=ast.Name(id=name, ctx=ast.Load())))
            out = lines
        elif piece.form in ("sum", "mean", "addsum"):
            out = [ast.AugAssign(target=ast.Name(id=piece.target, ctx=ast.Store()), op=ast.Add(),
                                 value=expr)]
        else:
            target = self._placed(piece.lvalue, index, element_names)
            target.ctx = ast.Store()
            out = [ast.Assign(targets=[target], value=expr) if piece.op is None else
                   ast.AugAssign(target=target, op=piece.op, value=expr)]
        origin = getattr(piece.stmt, ORIGIN, None)
        for stmt in out:
            if origin is not None:
                setattr(stmt, ORIGIN, origin)
        return out

    @staticmethod
    def _element_of(name, index):
        axes = sorted(a for a in index if isinstance(a, int))
        parts = [ast.Name(id=index[a], ctx=ast.Load()) if index[a] else ast.Constant(0)
                 for a in axes]
        return ast.Subscript(value=ast.Name(id=name, ctx=ast.Load()),
                             slice=parts[0] if len(parts) == 1 else ast.Tuple(
                                 elts=parts, ctx=ast.Load()), ctx=ast.Store())

    @staticmethod
    def _placed(expr, index, element_names):
        """The element expression with the loop's index names and element variables."""
        expr = copy.deepcopy(expr)

        class Place(ast.NodeTransformer):
            def visit_Name(self, node):
                if node.id.startswith("__i") and node.id[3:].isdigit():
                    return ast.Name(id=index[int(node.id[3:])], ctx=node.ctx)
                if node.id in index:  # the size and shape of the loop
                    return ast.parse(index[node.id], mode="eval").body
                if node.id.startswith("__local_"):
                    return ast.Name(id=element_names[node.id[len("__local_"):]], ctx=node.ctx)
                return node

        return Place().visit(expr)

    @staticmethod
    def _merge_updates(body):
        """`x_bar[i] += a` then `x_bar[i] += b` -> `x_bar[i] += a + b`: one read and one write
        of the element (nothing in the loop reads an array it updates)."""
        out = []
        for stmt in body:
            earlier = next((s for s in out if isinstance(s, ast.AugAssign)
                            and isinstance(stmt, ast.AugAssign)
                            and type(s.op) is type(stmt.op) and isinstance(s.op, ast.Add)
                            and src(s.target) == src(stmt.target)), None)
            if earlier is not None:  # moved down: `b` may read element variables set between
                out.remove(earlier)
                stmt.value = ast.BinOp(left=earlier.value, op=ast.Add(), right=stmt.value)
            out.append(stmt)
        return out

    def _inline(self, body, element_names):
        """An element variable of a temporary read once later in the loop is written into
        that use (as the array code had it), unless its array is kept."""
        temps = {element_names[t] for t in element_names if t in self.fuser.substitutable}
        for k, stmt in enumerate(body[:-1]):  # `h_ij = ...; h[i, j] = h_ij`: one line
            nxt = body[k + 1]
            if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name) \
                    and isinstance(nxt, ast.Assign) and isinstance(nxt.value, ast.Name) \
                    and nxt.value.id == stmt.targets[0].id:
                temps.add(nxt.value.id)
        changed = True
        while changed:
            changed = False
            for k, stmt in enumerate(body):
                if not (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
                        and stmt.targets[0].id in temps):
                    continue
                name = stmt.targets[0].id
                uses = [s for s in body[k + 1:] for n in ast.walk(s)
                        if isinstance(n, ast.Name) and n.id == name]
                if len(uses) != 1 and not isinstance(stmt.value, (ast.Name, ast.Constant)):
                    continue

                class Put(ast.NodeTransformer):
                    def visit_Name(self, node):
                        return copy.deepcopy(stmt.value) if node.id == name else node

                for later in body[k + 1:]:
                    Put().visit(later)
                del body[k]
                changed = True
                break
        return body
