"""Emit the derivative function: the forward sweep, then the adjoint sweep, as a Python AST.

The adjoint sweep visits statements in reverse. Its invariant: when it reaches a statement, every
variable holds the value it had just after that statement ran in the forward sweep. An
assignment that overwrites a value the adjoint sweep still needs therefore saves the old value
first (in `x_old` outside loops, in a stack inside them) and the adjoint sweep restores it right
after that statement's adjoint. Only values that adjoint code actually reads are saved: the
sweep is generated to learn which names it reads, again with those saved (which may read more),
until no new name is read, then once more for good.

Stacks are plain Numba-friendly containers: a preallocated `np.empty(trips)` indexed by the loop
variable in a top-level `for i in range(...)` loop without `break`, a list (`append`/`pop`)
elsewhere. Branches are replayed from their (restored) conditions, loops run their recorded
number of trips backwards.
"""
import ast
import math
import re

from .. import primitives as P
from . import forms, ir, table
from .analysis import index_kind, walk
from .errors import TransformError
from .namer import Namer
from .normalise import operand_node
from .symbol import Symbol, kind_of, literal

COMMENT = "__comment__"
ORIGIN = "tapegrad_origin"  # attribute of emitted statements: their ir.Origin
_CHEAP = {"add", "sub", "mul", "div", "neg", "lt", "le", "gt", "ge", "eq", "ne"}


def parse_stmts(text):
    return ast.parse(text).body


def comment(text):
    """A statement that stands for a comment until the source is printed (ASTs hold none)."""
    return ast.Expr(ast.Call(func=ast.Name(id=COMMENT, ctx=ast.Load()),
                             args=[ast.Constant(text)], keywords=[]))


def src(node):
    return ast.unparse(node)


def index_src(index):
    """An index as it reads inside brackets (`i, :`, not the tuple `(i, :)`, a syntax error)."""
    if isinstance(index, ast.Tuple) and len(index.elts) > 1:
        return ", ".join(src(e) for e in index.elts)
    return src(index)


def zero_of(kind, like):
    if kind.is_array:
        return f"np.zeros_like({like})"
    return {"float": "0.0", "int": "0", "bool": "False"}[kind.dtype]


def empty_of(kind):
    """A typed placeholder for a variable that is saved before its first assignment."""
    if not kind.is_array:
        return zero_of(kind, None)
    dtype = {"float": "", "int": ", np.int64", "bool": ", np.bool_"}[kind.dtype]
    return f"np.empty({(0,) * kind.ndim}{dtype})"


def _groups(stmts):
    """Runs of consecutive statements normalised from one user statement."""
    groups = []
    for stmt in stmts:
        if groups and groups[-1][0].origin is stmt.origin:
            groups[-1].append(stmt)
        else:
            groups.append([stmt])
    return groups


def _loads(nodes):
    return {n.id for node in nodes for n in ast.walk(node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _expand(text, ndim, axes, keepdims):
    """The cotangent of a reduction over `axes`, indexed to broadcast against its ndim-D input
    (`g[:, None]`): what primitives.expand_reduced does with static shapes, in a form Numba
    compiles (it has no keepdims). Reduced leading axes broadcast as they are."""
    if keepdims:
        return text
    parts = ["None" if k in axes else ":" for k in range(ndim)]
    while parts and parts[0] == "None":
        parts.pop(0)
    while parts and parts[-1] == ":":
        parts.pop()
    return f"({text})[{', '.join(parts)}]" if parts else text


def _sum_keeping(text, axis, ndim):
    """np.sum(text, axis=axis, keepdims=True), written without keepdims (Numba has none)."""
    if ndim == 1:
        return f"np.sum({text}) * np.ones(1)"
    parts = ["None" if k == axis else ":" for k in range(axis + 1)]
    return f"np.sum({text}, axis={axis})[{', '.join(parts)}]"


def _is_math_spelled(forward):
    """The user wrote `math.f(x)` or a builtin (`abs`, `max`) on scalars."""
    func = forward.func if isinstance(forward, ast.Call) else None
    return (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id == "math") or isinstance(func, ast.Name)


def _tagged(stmts, origin):
    """Mark emitted statements with the user's line they come from (kept by deep copies), so that
    an error in compiled code can name that line; nested statements keep their own marks."""
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.stmt) and not hasattr(node, ORIGIN):
                setattr(node, ORIGIN, origin)
    return stmts


def mentions(text, name):
    return re.search(rf"\b{re.escape(name)}\b", text) is not None


class Site:
    """A place in the forward sweep that saves a value for the adjoint sweep."""

    def __init__(self, storage, name, index=None):
        self.storage = storage  # "saved" | "list" | "array"
        self.name = name
        self.index = index  # the slot of an "array" stack: the loop variable (minus start)

    def push(self, value):
        if self.storage == "saved":
            return f"{self.name} = {value}"
        if self.storage == "list":
            return f"{self.name}.append({value})"
        return f"{self.name}[{self.index}] = {value}"

    def pop(self):
        if self.storage == "saved":
            return self.name
        if self.storage == "list":
            return f"{self.name}.pop()"
        return f"{self.name}[{self.index}]"


class Emitter:
    def __init__(self, fn, analysis, wrt):
        self.fn = fn
        self.kinds = analysis.kinds
        self.active = analysis.active
        self.wrt = list(wrt)
        self.temps = fn.temps
        names = set(fn.params) | set(fn.constants) | {"np", "math", "_"}
        for stmt in walk(fn.body):
            if isinstance(stmt, ir.Assign):
                names.add(stmt.target)
            elif isinstance(stmt, ir.Loop) and stmt.target:
                names.add(stmt.target)
        self.primal_names = names - {"np", "math", "_"}
        self.base_names = names
        self.assignments = self._count_assignments()
        # temporaries are assigned once: their defining statements
        self.definitions = {s.target: s for s in walk(fn.body)
                            if isinstance(s, ir.Assign) and s.target in self.temps}
        self.logged = set()  # temporaries the forward sweep logs (decided by the adjoint sweep)

    def _count_assignments(self):
        counts = {p: 1 for p in self.fn.params}
        for stmt in walk(self.fn.body):
            target = stmt.target if isinstance(stmt, (ir.Assign, ir.Loop)) else None
            if target:
                counts[target] = counts.get(target, 0) + 1
        return counts

    def _reset(self, needed):
        self.namer = Namer(self.base_names)
        self.index_names = {}
        self.needed = needed
        self.bars = {}
        self.new_names = {}
        self.sites = {}
        self.site_loops = {}
        self.preinit = {}
        self.list_stacks = []
        self.defined = {}  # site key -> (maybe defined, definitely defined)
        if needed is not None:
            self._scan(self.fn.body, set(self.fn.params), set(self.fn.params))

    # -- names ---------------------------------------------------------------------------------

    def bar(self, name):
        if name not in self.bars:
            self.bars[name] = self.namer.fresh(f"{name}_bar")
        return self.bars[name]

    def new_name(self, name):
        if name not in self.new_names:
            self.new_names[name] = self.namer.fresh(f"{name}_new")
        return self.new_names[name]

    def kind(self, operand):
        if isinstance(operand, ir.Const):
            return kind_of(operand.value)
        return self.kinds[operand]

    def sym(self, operand, math_style=False):
        if isinstance(operand, ir.Const):
            return operand.value
        return Symbol(operand, self.kinds[operand], math_style)

    def shape_source(self, name):
        """A name whose value has the shape of `name`: for a temporary made elementwise from
        arrays of its own ndim (whose shapes the forward sweep asserts equal), one of those, so
        that the adjoint does not log a temporary inside a loop only to read its shape."""
        while name in self.definitions:
            expr = self.definitions[name].expr
            if not isinstance(expr, ir.Call):
                break
            kind = self.kinds[name]
            if isinstance(expr.op, table.Identity):
                args = expr.args
            elif isinstance(expr.op, table.Elementwise):
                args = [a for a in expr.args[:expr.op.n_values]
                        if isinstance(a, str) and self.kinds[a].is_array]
                if any(self.kinds[a].ndim != kind.ndim for a in args):
                    break  # a lower-ndim operand may widen axes of length 1
                args = [a for a in args if self.kinds[a].ones == kind.ones]
            else:
                break
            args = sorted((a for a in args if isinstance(a, str)), key=self.temps.__contains__)
            if not args:
                break
            name = args[0]
        return name

    def is_active(self, operand):
        return isinstance(operand, str) and operand in self.active

    # -- which assignments save values ---------------------------------------------------------

    def _scan(self, stmts, maybe, definite):
        """Record, for each assignment, whether its target may / must hold a value already."""
        for stmt in stmts:
            if isinstance(stmt, ir.Assign):
                self.defined[id(stmt)] = (stmt.target in maybe, stmt.target in definite)
                maybe.add(stmt.target)
                definite.add(stmt.target)
            elif isinstance(stmt, ir.If):
                m1, d1 = set(maybe), set(definite)
                m2, d2 = set(maybe), set(definite)
                self._scan(stmt.body, m1, d1)
                self._scan(stmt.orelse, m2, d2)
                maybe |= m1 | m2
                definite |= d1 & d2
            elif isinstance(stmt, ir.Loop):
                inside = {s.target for s in walk(stmt.body) if isinstance(s, ir.Assign)}
                if stmt.target:
                    inside.add(stmt.target)
                self._scan(stmt.body, maybe | inside, set(definite) | ({stmt.target} - {None}))
                maybe |= inside

    def site(self, key, name, kind, loops, always=False):
        """The saving place for `name` at this statement, or None if nothing needs saving."""
        if self.needed is None or name not in self.needed:
            return None
        if isinstance(key, int) and name in self.temps:
            return None  # temporaries are recomputed or logged instead (_provide_temps)
        if key in self.sites:
            return self.sites[key]
        if not always:
            maybe, definite = self.defined.get(key, (True, False))
            if not maybe:
                return None
            if not definite and name not in self.fn.params:
                self.preinit.setdefault(name, kind)
        if not loops:
            site = Site("saved", self.namer.fresh(f"{name}_old"))
        elif len(loops) == 1 and loops[0].counted and not kind.is_array:
            loop = loops[0]
            index = loop.target if loop.start == ir.Const(0) else \
                f"{loop.target} - {src(operand_node(loop.start))}"
            site = Site("array", self.namer.fresh(f"{name}_stack"), index)
            self.site_loops.setdefault(id(loop), []).append((site, kind))
        else:
            site = Site("list", self.namer.fresh(f"{name}_stack"))
            self.list_stacks.append(site)
        self.sites[key] = site
        return site

    # -- forward sweep -------------------------------------------------------------------------

    def fwd_block(self, stmts, loops):
        out = []
        for stmt in stmts:
            out += _tagged(getattr(self, "fwd_" + type(stmt).__name__)(stmt, loops),
                           stmt.origin)
        return out

    def fwd_Assign(self, stmt, loops):
        out = []
        site = self.site(id(stmt), stmt.target, self.kinds[stmt.target], loops)
        if site is not None:
            out += parse_stmts(site.push(stmt.target))
        expr = stmt.expr
        lowered = None
        if isinstance(expr, ir.Index):
            value = ast.Subscript(value=ast.Name(id=expr.array, ctx=ast.Load()), slice=expr.index,
                                  ctx=ast.Load())
        else:
            value = expr.forward
            out += self._shape_check(stmt)
            lowered = self._lowered(stmt)
        if isinstance(lowered, list):
            out += parse_stmts("\n".join(lowered))
        else:
            value = value if lowered is None else ast.parse(lowered, mode="eval").body
            out.append(ast.Assign(targets=[ast.Name(id=stmt.target, ctx=ast.Store())],
                                  value=value))
        if id(stmt) in self.logged:
            site = self.site((id(stmt), "log"), stmt.target, self.kinds[stmt.target], loops,
                             always=True)
            if site is not None:
                out += parse_stmts(site.push(stmt.target))
        return out

    def _lowered(self, stmt):
        """The forward of a construct that Numba cannot compile as the user spelled it (see
        forms.py): an expression's text, lines that assign the target, or None to keep the
        user's spelling."""
        expr, target = stmt.expr, stmt.target
        op, args = expr.op, expr.args
        if isinstance(op, table.Elementwise) and op.prim is P.clamp:
            # np.clip with a bound left out: one-sided, as np.maximum / np.minimum
            x, low, high = (src(operand_node(a)) for a in args)
            if args[2] == ir.Const(None):
                return f"np.maximum({x}, {low})"
            if args[1] == ir.Const(None):
                return f"np.minimum({x}, {high})"
            return None
        if isinstance(op, table.Pack) and any(
                isinstance(a, str) and self.kinds[a].is_array for a in args):
            # np.array([x, y]) of arrays: Numba takes a tuple of arrays to np.stack only
            return f"np.stack(({''.join(src(operand_node(a)) + ', ' for a in args)}))"
        forward = expr.forward
        if isinstance(op, table.Reshape) and isinstance(forward.func, ast.Attribute) \
                and forward.func.attr == "reshape" and not self._fresh(args[0]):
            # Numba reshapes C-contiguous arrays only (a transpose or a slice is not)
            contiguous = ast.parse(f"np.ascontiguousarray({args[0]})", mode="eval").body
            if isinstance(forward.func, ast.Attribute) and forward.func.attr == "reshape" \
                    and not (isinstance(forward.func.value, ast.Name)
                             and forward.func.value.id == "np"):
                forward = ast.Call(func=ast.Attribute(value=contiguous, attr="reshape",
                                                      ctx=ast.Load()),
                                   args=forward.args, keywords=forward.keywords)
            else:
                forward = ast.Call(func=forward.func, args=[contiguous] + forward.args[1:],
                                   keywords=forward.keywords)
            return src(forward)
        if isinstance(op, table.MatMul) and max(self.kind(a).ndim for a in args) > 2:
            a, b = args
            result = self.namer.fresh(f"{target}_new") if target in args else target
            lines = forms.loop_matmul(result, a, self.kind(a).ndim, b, self.kind(b).ndim,
                                      self._fresh_index)
            return lines + ([f"{target} = {result}"] if result != target else [])
        if isinstance(op, table.Reduction):
            return self._lowered_reduction(stmt)
        return None

    def _fresh_index(self, base):
        """A loop index of generated loops: one name per base, reused by loops that follow each
        other (generated loop nests use different bases)."""
        if base not in self.index_names:
            self.index_names[base] = self.namer.fresh(base)
        return self.index_names[base]

    def _fresh(self, name):
        """Whether `name` is a temporary that holds a new C-contiguous array."""
        stmt = self.definitions.get(name) if isinstance(name, str) else None
        return (stmt is not None and isinstance(stmt.expr, ir.Call)
                and isinstance(stmt.expr.op, (table.Elementwise, table.MatMul, table.Reduction)))

    def _lowered_reduction(self, stmt):
        op, (x,), target = stmt.expr.op, stmt.expr.args, stmt.target
        ndim = self.kinds[x].ndim
        axes = op.axes(ndim)
        every = len(axes) == ndim
        simple = {"sum": "np.sum", "mean": "np.mean", "amax": "np.max", "amin": "np.min",
                  "prod": "np.prod"}
        # Numba compiles the user's spelling, except the inf-norm (Numba's skips NaNs after the
        # first element, where NumPy's is NaN)
        if not op.keepdims and (op.name == "sum" and isinstance(op.axis, int) or (
                op.axis is None and (op.name != "norm" or ndim <= 2 and op.ord != math.inf and (
                    op.ord is None or ndim == 1)))):
            return None
        if every or op.name in ("sum", "mean") or (op.name == "norm" and op.ord != math.inf):
            if op.name == "mean":
                value = f"{forms.sum_over(x, ndim, axes)} / {forms.count_over(x, ndim, axes)}" \
                    if not every else f"np.mean({x})"
            elif op.name == "norm" and op.ord == math.inf:
                value = f"np.max(np.abs({x}))"
            elif op.name == "norm":
                value = forms.sum_over(f"np.abs({x})" if op.ord == 1 else f"{x} * {x}", ndim,
                                       axes)
                value = value if op.ord == 1 else f"np.sqrt({value})"
            elif every:
                value = f"{simple[op.name]}({x})"
            else:
                value = forms.sum_over(x, ndim, axes)
            return forms.keep_dims(value, ndim, axes) if op.keepdims else value
        # max, min, prod and the inf-norm over some axes: a loop over the kept ones
        function = "np.max" if op.name == "norm" else simple[op.name]
        wrap = "np.abs({})" if op.name == "norm" else "{}"
        # x's dtype, as NumPy's result (a float32 max stays float32); float64 for an int's norm
        dtype = None if self.kinds[target].dtype == "float" != self.kinds[x].dtype else \
            f"{x}.dtype"
        result = self.namer.fresh(f"{target}_new") if target == x else target
        lines = forms.loop_reduce(result, function, x, ndim, axes, op.keepdims,
                                  self._fresh_index, dtype, wrap)
        return lines + ([f"{target} = {result}"] if result != target else [])

    def _shape_check(self, stmt):
        """Equal-ndim arrays that meet elementwise must have equal shapes: the adjoint does not
        sum over broadcast axes of length 1 (they are unknown before run time)."""
        expr = stmt.expr
        if isinstance(expr.op, table.MatMul):
            return self._matmul_check(stmt)
        if not isinstance(expr.op, table.Elementwise) or stmt.target not in self.active:
            return []
        arrays = [a for a in dict.fromkeys(expr.args[:expr.op.n_values]) if isinstance(a, str)
                  and self.kinds[a].is_array]
        checks = []
        message = (f"tapegrad.source: line {stmt.origin.lineno} broadcasts arrays of equal ndim "
                   "and different shapes")
        first = arrays[0] if arrays else None
        for other in arrays[1:]:
            a, b = self.kinds[first], self.kinds[other]
            if a.ndim != b.ndim:
                continue
            if not (a.ones | b.ones):
                checks += parse_stmts(f"assert {first}.shape == {other}.shape, {message!r}")
                continue
            # axes known to be 1 (keepdims) broadcast; the others must agree
            axes = [k for k in range(a.ndim) if k not in a.ones | b.ones]
            if axes:
                left = ", ".join(f"{first}.shape[{k}]" for k in axes)
                right = ", ".join(f"{other}.shape[{k}]" for k in axes)
                checks += parse_stmts(f"assert ({left},) == ({right},), {message!r}")
        return checks

    def _matmul_check(self, stmt):
        """Stacks of matrices must have equal batch shapes (no broadcasting of length 1)."""
        a, b = stmt.expr.args
        if stmt.target not in self.active or not isinstance(a, str) or not isinstance(b, str):
            return []
        na, nb = self.kinds[a].ndim, self.kinds[b].ndim
        m = min(na, nb)
        if m <= 2:
            return []
        message = f"tapegrad.source: line {stmt.origin.lineno} broadcasts batch axes"
        return parse_stmts(f"assert {a}.shape[{na - m}:-2] == {b}.shape[{nb - m}:-2], "
                           f"{message!r}")

    def fwd_SetIndex(self, stmt, loops):
        out = []
        element = index_kind(self.kinds[stmt.array], stmt.index)
        site = self.site(id(stmt), stmt.array, element, loops, always=True)
        target = f"{stmt.array}[{index_src(stmt.index)}]"
        if site is not None:
            out += parse_stmts(site.push(target + (".copy()" if element.is_array else "")))
        out += parse_stmts(f"{target} = {src(operand_node(stmt.value))}")
        return out

    def fwd_If(self, stmt, loops):
        body = self.fwd_block(stmt.body, loops)
        orelse = self.fwd_block(stmt.orelse, loops)
        if not body and orelse:  # `a or b`: b runs when a is false
            test = ast.UnaryOp(op=ast.Not(), operand=operand_node(stmt.cond))
            return [ast.If(test=test, body=orelse, orelse=[])]
        return [ast.If(test=operand_node(stmt.cond), body=body or [ast.Pass()], orelse=orelse)]

    def fwd_Loop(self, stmt, loops):
        inner = loops + (stmt,)
        body = []
        if stmt.count:
            body += parse_stmts(f"{stmt.count} += 1")
        if stmt.target and not stmt.counted:
            site = self.site((id(stmt), "target"), stmt.target, self.kinds[stmt.target], inner,
                             always=True)
            if site is not None:
                body += parse_stmts(site.push(stmt.target))
        body += self.fwd_block(stmt.body, inner)
        out = []
        for site, kind in self.site_loops.get(id(stmt), []):
            dtype = {"float": "", "int": ", np.int64", "bool": ", np.bool_"}[kind.dtype]
            out += parse_stmts(f"{site.name} = np.empty({self._trips(stmt)}{dtype})")
        if stmt.target is None:
            out.append(ast.While(test=ast.Constant(True), body=body, orelse=[]))
        else:
            bounds = [stmt.start, stmt.stop, stmt.step]
            if stmt.step == ir.Const(1):
                bounds = bounds[:2] if stmt.start != ir.Const(0) else bounds[1:2]
            call = ast.Call(func=ast.Name(id="range", ctx=ast.Load()),
                            args=[operand_node(b) for b in bounds], keywords=[])
            out.append(ast.For(target=ast.Name(id=stmt.target, ctx=ast.Store()), iter=call,
                               body=body, orelse=[]))
        return out

    def _trips(self, loop):
        start, stop = loop.start, loop.stop
        if isinstance(stop, ir.Const) and isinstance(start, ir.Const):
            return literal(max(stop.value - start.value, 0))
        if start == ir.Const(0):
            return f"max({src(operand_node(stop))}, 0)"
        return f"max({src(operand_node(stop))} - {src(operand_node(start))}, 0)"

    def fwd_Break(self, stmt, loops):
        return [ast.Break()]

    def fwd_Continue(self, stmt, loops):
        return [ast.Continue()]

    # -- adjoint sweep -------------------------------------------------------------------------

    def rev_block(self, stmts, loops):
        out = []
        enclosing = getattr(self, "_commented", None)
        for group in reversed(_groups(stmts)):
            code = []
            self._commented = group[0].origin
            for stmt in reversed(group):
                code += getattr(self, "rev_" + type(stmt).__name__)(stmt, loops)
            self._commented = enclosing
            if not code:
                continue
            if loops:
                code = self._provide_temps(group, code, loops) + code
            origin = group[0].origin
            if origin.text and origin is not enclosing:
                out.append(comment(f"line {origin.lineno}: {origin.text}"))
            out += _tagged(code, origin)
        return out

    def _provide_temps(self, group, code, loops):
        """Temporaries of one statement, as its adjoint reads them, inside loops (where later
        trips overwrote them): cheap scalar arithmetic is recomputed, the rest was logged by the
        forward sweep and is read back."""
        defs = {s.target: s for s in group if isinstance(s, ir.Assign) and s.target in self.temps}
        reads = _loads(code)
        assigned = set()
        for stmt in walk(group):
            if isinstance(stmt, ir.Assign) and stmt.target not in self.temps:
                assigned.add(stmt.target)
            elif isinstance(stmt, ir.SetIndex):
                assigned.add(stmt.array)
        need = {t for t in defs if t in reads}
        for temp in reversed(list(defs)):
            if temp in need and self._recomputable(defs[temp], assigned):
                need |= {a for a in _loads([defs[temp].expr.forward]) if a in defs}
        lines = []
        for temp, stmt in defs.items():
            if temp not in need:
                continue
            if self._recomputable(stmt, assigned):
                lines.append(ast.Assign(targets=[ast.Name(id=temp, ctx=ast.Store())],
                                        value=stmt.expr.forward))
            else:
                self.logged.add(id(stmt))
                site = self.site((id(stmt), "log"), temp, self.kinds[temp], loops, always=True)
                if site is not None:
                    lines += parse_stmts(f"{temp} = {site.pop()}")
        return lines

    def _recomputable(self, stmt, assigned):
        expr = stmt.expr
        if not isinstance(expr, ir.Call) or self.kinds[stmt.target].is_array:
            return False
        cheap = isinstance(expr.op, table.Identity) or (
            isinstance(expr.op, table.Elementwise) and expr.op.prim.name in _CHEAP)
        return cheap and not (_loads([expr.forward]) & assigned)

    def zero(self, name):
        like = self.shape_source(name) if name in self.temps else self.bar(name)
        return f"{self.bar(name)} = {zero_of(self.kinds[name], like)}"

    def rev_Assign(self, stmt, loops):
        target, expr = stmt.target, stmt.expr
        site = self.site(id(stmt), target, self.kinds[target], loops)
        if isinstance(expr, ir.Index):
            return self._rev_index(stmt, site)
        names = [a for a in expr.args if isinstance(a, str)]
        in_args = target in names
        new = self.new_name(target) if (in_args and site is not None) else target
        self.term_lines = []  # statements that the terms read (loops Numba compiles)
        terms = self.terms(expr, target, new) if target in self.active else []
        pre, post = [], []
        if site is not None:
            restore = f"{target} = {site.pop()}"
            if in_args:
                if any(mentions(text, new) for _, text in terms):
                    pre.append(f"{new} = {target}")
                pre.append(restore)
            else:
                post.append(restore)
        lines = self._accumulate([t for t in terms if t[0] != target], expr)
        if target in self.active:
            own = [text for name, text in terms if name == target]
            if in_args:
                if own != [self.bar(target)]:
                    lines.append(f"{self.bar(target)} = {' + '.join(own)}" if own
                                 else self.zero(target))
            elif target not in self.temps:
                lines.append(self.zero(target))
        return parse_stmts("\n".join(pre + self.term_lines + lines + post))

    def _accumulate(self, terms, expr):
        """`a_bar += term` (or `a_bar = term` for single-use temporaries), per argument."""
        grouped = {}
        for name, text in terms:
            grouped.setdefault(name, []).append(text)
        for arg in expr.args:
            if self.is_active(arg) and arg in self.temps and arg not in grouped:
                grouped[arg] = []  # used here, but no gradient flows: its adjoint is zero
        lines = []
        for name, texts in grouped.items():
            if name in self.temps:
                lines.append(f"{self.bar(name)} = {' + '.join(texts)}" if texts
                             else self.zero(name))
            else:
                lines.append(f"{self.bar(name)} += {' + '.join(texts)}")
        return lines

    def _rev_index(self, stmt, site):
        target, expr = stmt.target, stmt.expr
        lines = []
        if target in self.active and expr.array in self.active:
            if expr.array in self.temps:
                lines.append(f"{self.bar(expr.array)} = "
                             f"np.zeros_like({self.shape_source(expr.array)})")
            lines.append(f"{self.bar(expr.array)}[{index_src(expr.index)}] += {self.bar(target)}")
            if target not in self.temps:
                lines.append(self.zero(target))
        if site is not None:
            restore = f"{target} = {site.pop()}"
            lines = [restore] + lines if target in expr.reads else lines + [restore]
        return parse_stmts("\n".join(lines))

    def terms(self, expr, target, ans_name):
        """[(argument, adjoint contribution as source)] for the active arguments of `expr`."""
        out_kind = self.kinds[target]
        g = Symbol(self.bar(target), out_kind)
        ans = Symbol(ans_name, out_kind)
        op = expr.op
        args = expr.args
        active = [(k, a) for k, a in enumerate(args) if self.is_active(a)]
        if isinstance(op, table.Identity):
            return [(a, g.text) for _, a in active]
        if isinstance(op, table.Constant):
            return []
        if isinstance(op, table.Elementwise):
            if not op.prim.differentiable:
                return []
            style = _is_math_spelled(expr.forward)
            g = Symbol(g.text, g.kind, style)
            values = tuple(self.sym(a, style) for a in args[:op.n_values])
            params = {p: self.sym(a, style) for p, a in zip(op.params, args[op.n_values:])}
            terms = []
            for k, a in active:
                if k >= op.n_values:
                    continue  # a parameter (analysis refuses active ones)
                cot = op.prim.vjp(k, g, ans, values, params)
                if cot is None:
                    continue
                terms.append((a, self._unbroadcast(cot, self.kinds[a], a)))
            return terms
        if isinstance(op, table.Reduction):
            return [(a, self._reduction_adjoint(op, a, g, ans)) for _, a in active]
        if isinstance(op, table.MatMul):
            return self._matmul_adjoint(args, g, active)
        if isinstance(op, table.Transpose):
            # the registry's rule needs no shapes: transpose back by the inverse permutation
            x = args[0]
            axes = op.axes or tuple(reversed(range(self.kinds[x].ndim)))
            cot = P.transpose.vjp(0, g, ans, (self.sym(x),), {"axes": axes})
            return [(x, cot.text)] if self.is_active(x) else []
        if isinstance(op, table.Pack):
            return [(a, f"{g.text}[{k}]") for k, a in active]
        if isinstance(op, table.Concat):
            terms, start = [], "0"
            for a in args:
                stop = f"{start} + {a}.shape[0]" if start != "0" else f"{a}.shape[0]"
                if self.is_active(a):
                    terms.append((a, f"{g.text}[{start}:{stop}]"))
                start = stop
            return terms
        if isinstance(op, table.ArrayOp):
            x = args[0]
            return [(x, op.adjoint(src(operand_node(x)), g.text, ans.text, self.kinds[x]))] \
                if self.is_active(x) else []
        if isinstance(op, table.Reshape):
            # the registry's rule reshapes back to shape_of(x): x's shape is known at run time
            # (contiguous first: Numba reshapes only contiguous arrays, and g may be transposed)
            x = args[0]
            return [(x, f"np.ascontiguousarray({g.text}).reshape({self.shape_source(x)}.shape)")] \
                if self.is_active(x) else []
        raise AssertionError(op)

    def _unbroadcast(self, cot, kind, name):
        """Sum a cotangent back to the kind of its argument (the shape-aware part of
        `primitives.unbroadcast`, decided statically from ndims and axes known to be 1)."""
        text = cot.text if isinstance(cot, Symbol) else literal(cot)
        cot_kind = cot.kind if isinstance(cot, Symbol) else None
        cot_ndim = cot_kind.ndim if cot_kind else 0
        if kind.ndim == 0:
            return f"np.sum({text})" if cot_ndim else text
        for _ in range(cot_ndim - kind.ndim):
            text = f"np.sum({text}, axis=0)"
        if cot_ndim >= kind.ndim:
            lead = cot_ndim - kind.ndim
            for axis in sorted(kind.ones):
                if axis + lead not in cot_kind.ones:
                    text = _sum_keeping(text, axis, kind.ndim)
            return text
        return self._spread(text, cot_ndim == 0, name)

    def _spread(self, text, scalar, name):
        """A cotangent that broadcasts against `name`, made full-size for a temporary (whose
        adjoint is assigned, not added into an array of the right shape)."""
        if name not in self.temps:
            return text
        like = self.shape_source(name)
        # a writable, contiguous array (np.broadcast_to gives a read-only view, which Numba
        # types apart from other arrays and cannot reshape)
        return f"np.full_like({like}, {text})" if scalar else f"np.zeros_like({like}) + {text}"

    def _reduction_adjoint(self, op, x, g, ans):
        # primitives.py writes these rules with expand_reduced, which needs static shapes; here
        # they are written for the ndim and axes known when transforming (the test
        # test_shape_aware_rules_agree_with_the_registry checks them against the registry)
        ndim = self.kinds[x].ndim
        axes = op.axes(ndim)
        every = len(axes) == ndim and not op.keepdims  # the cotangent is a scalar

        def expand(text):  # the cotangent and the result, as the user reduced them
            return _expand(text, ndim, axes, op.keepdims)

        def reduce(text):  # summed and expanded again (no keepdims)
            return _expand(forms.sum_over(text, ndim, axes), ndim, axes, False)

        like = self.shape_source(x)
        spread = self._spread(expand(g.text), every, x)
        if op.name == "sum":
            return spread
        if op.name == "mean":
            count = f"{like}.size" if len(axes) == ndim else \
                " * ".join(f"{like}.shape[{a}]" for a in axes)
            return f"{spread} / ({count})"
        ans_e = expand(ans.text)
        if op.name in ("amax", "amin"):
            # as primitives._extremum_vjp: ties share the gradient evenly, NaNs share a NaN
            hit = self._hits(x, x, ans_e)
            return f"{expand(g.text)} * ({hit} / {reduce(hit)})"
        if op.name == "prod":
            # primitives._prod_vjp: ans / x, except at zeros (a lone zero gets the product of
            # the others, two zeros give 0)
            nonzero = f"np.where({x} == 0.0, 1.0, {x})"
            lone = f"{reduce(f'{x} == 0.0')} == 1"
            if len(axes) == ndim:
                others = f"np.prod({nonzero})"
            else:  # Numba's np.prod takes no axis: a loop over the kept axes
                nonzero_name = self.namer.fresh(f"{x}_nonzero")
                others_name = self.namer.fresh(f"{x}_others")
                self.term_lines.append(f"{nonzero_name} = {nonzero}")
                self.term_lines += forms.loop_reduce(others_name, "np.prod", nonzero_name, ndim,
                                                     axes, False, self._fresh_index)
                others = _expand(others_name, ndim, axes, False)
            at_zero = f"({others} if {lone} else 0.0)" if len(axes) == ndim else \
                f"np.where({lone}, {others}, 0.0)"
            return (f"{expand(g.text)} * np.where({x} == 0.0, {at_zero}, "
                    f"{ans_e} / {nonzero})")
        # norm, as primitives._norm_vjp
        sign = self._abs_slope(x)
        if op.ord == 1:
            return f"{expand(g.text)} * {sign}"
        if op.ord == math.inf:
            hit = self._hits(x, f"np.abs({x})", ans_e)
            return f"{expand(g.text)} * ({hit} / {reduce(hit)}) * {sign}"
        safe = f"({ans.text} if {ans.text} != 0.0 else 1.0)" if every else \
            f"np.where({ans_e} == 0.0, 1.0, {ans_e})"  # the subgradient 0 at x == 0
        return f"{expand(g.text)} * {x} / {safe}"

    def _hits(self, x, values, extremum):
        """A name for 1.0 where `values` reach their `extremum` or are NaN, else 0.0."""
        name = self.namer.fresh(f"{x}_hit")
        self.term_lines.append(f"{name} = np.where(np.logical_or({values} == {extremum}, "
                               f"np.isnan({values})), 1.0, 0.0)")
        return name

    def _abs_slope(self, x):
        """d|x|/dx as the registry's rule for abs writes it (0 at 0 and at NaN, as PyTorch)."""
        return P.abs_.vjp(0, 1, None, (self.sym(x),), {}).text

    def _matmul_adjoint(self, args, g, active):
        a, b = args
        na, nb = self.kind(a).ndim, self.kind(b).ndim
        a_t, b_t = src(operand_node(a)), src(operand_node(b))
        if max(na, nb) > 2:
            # stacks of matrices: primitives._matmul_vjp_left/right per matrix, in a loop over
            # the batch (Numba's @ takes 2-D arrays), summed for an operand the batch shares
            positions = {k for k, _ in active}
            cots = [self.namer.fresh(f"{name}_cot") if k in positions else None
                    for k, name in enumerate((a_t, b_t))]
            self.term_lines += forms.loop_matmul_adjoint(g.text, a_t, na, b_t, nb, *cots,
                                                         self._fresh_index, self.shape_source)
            return [(arg, cots[k]) for k, arg in active]
        rules = {  # the cases of primitives._matmul_vjp_left/right, written for known ndims
            (1, 1): (f"{g.text} * {b_t}", f"{g.text} * {a_t}"),
            (2, 1): (f"np.outer({g.text}, {b_t})", f"np.dot({g.text}, {a_t})"),
            (1, 2): (f"np.dot({b_t}, {g.text})", f"np.outer({a_t}, {g.text})"),
            (2, 2): (f"np.dot({g.text}, {b_t}.T)", f"np.dot({a_t}.T, {g.text})"),
        }[(na, nb)]
        return [(arg, rules[k]) for k, arg in active]

    def rev_SetIndex(self, stmt, loops):
        element = index_kind(self.kinds[stmt.array], stmt.index)
        site = self.site(id(stmt), stmt.array, element, loops, always=True)
        target = f"{stmt.array}[{index_src(stmt.index)}]"
        lines = []
        if stmt.array in self.active:
            bar_elem = f"{self.bar(stmt.array)}[{index_src(stmt.index)}]"
            value = stmt.value
            if self.is_active(value):
                vkind = self.kinds[value]
                text = bar_elem
                if element.is_array and vkind.ndim < element.ndim:
                    text = f"np.sum({text})" if vkind.ndim == 0 else text
                elif element.is_array and value in self.temps:
                    text += ".copy()"  # the slice is zeroed next: keep its values
                op = "=" if value in self.temps else "+="
                lines.append(f"{self.bar(value)} {op} {text}")
            lines.append(f"{bar_elem} = 0.0")
        if site is not None:
            lines.append(f"{target} = {site.pop()}")
        return parse_stmts("\n".join(lines))

    def rev_If(self, stmt, loops):
        body = self.rev_block(stmt.body, loops)
        orelse = self.rev_block(stmt.orelse, loops)
        if not body and not orelse:
            return []
        if not body:
            test = ast.UnaryOp(op=ast.Not(), operand=operand_node(stmt.cond))
            return [ast.If(test=test, body=orelse, orelse=[])]
        return [ast.If(test=operand_node(stmt.cond), body=body, orelse=orelse)]

    def rev_Loop(self, stmt, loops):
        inner = loops + (stmt,)
        body = self.rev_block(stmt.body, inner)
        if stmt.target and not stmt.counted:
            site = self.site((id(stmt), "target"), stmt.target, self.kinds[stmt.target], inner,
                             always=True)
            if site is not None:
                body = parse_stmts(f"{stmt.target} = {site.pop()}") + body
        if not body:
            return []
        if stmt.counted:
            start = src(operand_node(stmt.start))
            stop = src(operand_node(stmt.stop))
            last = literal(stmt.stop.value - 1) if isinstance(stmt.stop, ir.Const) \
                else f"{stop} - 1"
            end = literal(stmt.start.value - 1) if isinstance(stmt.start, ir.Const) \
                else f"{start} - 1"
            head = parse_stmts(f"for {stmt.target} in range({last}, {end}, -1): pass")[0]
        else:
            head = parse_stmts(f"for _ in range({stmt.count}): pass")[0]
        head.body = body
        return [head]

    def rev_Break(self, stmt, loops):
        return []

    def rev_Continue(self, stmt, loops):
        return []

    # -- the whole function --------------------------------------------------------------------

    def build(self):
        fn = self.fn
        result_kind = self.kinds.get(fn.result)
        if result_kind is None or result_kind.is_array:
            returns = [s.origin for s in walk(fn.body)
                       if isinstance(s, ir.Assign) and s.target == fn.result]
            raise TransformError(f"the function must return a scalar, not {result_kind}: reduce "
                                 "it (np.sum, np.mean, ...), or use tg.jacrev for the Jacobian",
                                 filename=fn.filename,
                                 lineno=returns[-1].lineno if returns else None,
                                 construct="Return")
        # the names the adjoint sweep reads, to a fixpoint: restoring one value can make a
        # branch's adjoint non-empty, whose replayed condition then reads more values
        self._reset(None)
        needed = None
        while True:
            probe = ast.Module(body=self.rev_block(fn.body, ()), type_ignores=[])
            reads = {n.id for n in ast.walk(probe) if isinstance(n, ast.Name)
                     and isinstance(n.ctx, ast.Load)} & self.primal_names
            if needed is not None and reads <= needed:
                break
            needed = reads | (needed or set())
            self._reset(needed)
        self._reset(needed)
        forward = self.fwd_block(fn.body, ())
        seed = []
        if fn.result in self.active:
            bars = [n for n in self._active_in_order() if n not in self.temps]
            seed = [f"{self.bar(n)} = {zero_of(self.kinds[n], n)}" for n in bars
                    if n != fn.result]
            seed.append(f"{self.bar(fn.result)} = 1.0")
        adjoint = self.rev_block(fn.body, ())
        header = [f"{name} = {empty_of(kind)}" for name, kind in self.preinit.items()]
        header += [f"{site.name} = []" for site in self.list_stacks]
        grads = []
        for name in self.wrt:
            if fn.result in self.active:
                grads.append(self.bar(name))
            else:
                grads.append(zero_of(self.kinds[name], name))
        value = fn.result
        if any(fn.result == name for name in self._saved_names()):
            # the adjoint sweep restores earlier values of the result: keep the final one
            value = self.namer.fresh(f"{fn.result}_value")
            forward += parse_stmts(f"{value} = {fn.result}")
        body = parse_stmts("\n".join(header)) + forward
        body.append(comment("adjoint sweep"))
        body += parse_stmts("\n".join(seed)) + adjoint
        return body, grads, value

    def _saved_names(self):
        for key, site in self.sites.items():
            if isinstance(key, int):
                stmt = next(s for s in walk(self.fn.body) if id(s) == key)
                yield stmt.target if isinstance(stmt, ir.Assign) else stmt.array
            elif key[1] == "target":
                yield next(s for s in walk(self.fn.body) if id(s) == key[0]).target

    def generated_temps(self):
        """Names the cleanup may substitute away: temporaries and their adjoints."""
        names = set(self.temps) | set(self.new_names.values())
        return names | {self.bars[t] for t in self.temps if t in self.bars}

    def scalar_names(self):
        return {self.bars[n] for n in self.bars if not self.kinds[n].is_array}

    def array_names(self):
        arrays = {n for n in self.primal_names if self.kinds.get(n) and self.kinds[n].is_array}
        return arrays | {self.bars[n] for n in self.bars if self.kinds[n].is_array}

    def _active_in_order(self):
        seen = [p for p in self.fn.params if p in self.active]
        for stmt in walk(self.fn.body):
            if isinstance(stmt, ir.Assign) and stmt.target in self.active:
                seen.append(stmt.target)
            if isinstance(stmt, ir.SetIndex) and stmt.array in self.active:
                seen.append(stmt.array)
        return list(dict.fromkeys(seed for seed in seen))

