"""Parse a user function and bring it to the normal form of ir.py.

Calls to other user functions are inlined (their locals get the callee's name as prefix, as in
`helper_x`), so their adjoints appear in place, transformed like the caller's code. Names that are
not local resolve through the function's closure and globals: modules `np` and `math`, numbers and
arrays (closures over constants), other user functions; everything else is refused.
"""
import ast
import builtins
import contextlib
import copy
import dataclasses
import inspect
import linecache
import math
import numbers
import textwrap
import types

import numpy as np

from .. import numpy_api
from .. import primitives as P
from . import ir, table
from .kinds import BOOL, INT, broadcast
from .errors import TransformError
from .namer import Namer
from .restructure import restructure

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow",
           ast.MatMult: "matmul"}
_COMPARE = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq",
            ast.NotEq: "ne"}
_NP = "__tapegrad_np__"  # NumPy in code the normaliser writes, whatever the user calls it
_PLAIN_CALLS = {builtins.len, builtins.int, builtins.min, builtins.max, builtins.abs,
                builtins.range}


def _canonical_spelling(obj):
    """`np.sin`, `math.exp` or `len`: how emitted code names a known function."""
    name = getattr(obj, "__name__", None)
    if name and getattr(np, name, None) is obj:
        return ast.parse(f"np.{name}", mode="eval").body
    if name and getattr(math, name, None) is obj:
        return ast.parse(f"math.{name}", mode="eval").body
    if name and getattr(np.linalg, name, None) is obj:
        return ast.parse(f"np.linalg.{name}", mode="eval").body
    if name and getattr(builtins, name, None) is obj:
        return ast.Name(id=name, ctx=ast.Load())
    raise TypeError(obj)


def static_node(value):
    """Source of a static argument (an axis, keepdims, ord) as emitted code spells it."""
    if isinstance(value, tuple):
        return ast.Tuple(elts=[static_node(v) for v in value], ctx=ast.Load())
    if value == math.inf:
        return ast.parse("np.inf", mode="eval").body
    return ast.Constant(value)


def operand_node(operand):
    if isinstance(operand, ir.Const):
        value = operand.value
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and value < 0:
            return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(-value))
        return ast.Constant(value)
    return ast.Name(id=operand, ctx=ast.Load())


class _Scope:
    """One function being normalised: the main function, or a callee being inlined."""

    def __init__(self, fun, node, filename, line_offset, lines, rename, reads):
        self.fun = fun
        self.node = node
        self.filename = filename
        self.line_offset = line_offset
        self.lines = lines
        self.rename = rename  # local name -> emitted name
        self.reads = reads  # {(function, name): value}: what the emitted code was made from
        self.varargs = None  # `args` of `def wrapper(*args)`: its values' local names
        self.kwargs = None  # `kwargs` of `**kwargs`: always empty here
        self.functions = {}  # name -> _Local: `def`s and lambdas of this function, inlined

    def lookup(self, name):
        if name == _NP:
            return np
        value = resolve(self.fun, name)
        if not isinstance(value, types.ModuleType):  # `np` and `math` are not rebound
            self.reads[self.fun, name] = value
        return value


def resolve(fun, name):
    """What `name` means inside `fun` now: a closure cell, a global or a builtin (KeyError)."""
    code = fun.__code__
    if name in code.co_freevars and fun.__closure__:
        cell = fun.__closure__[code.co_freevars.index(name)]
        try:
            return cell.cell_contents
        except ValueError:  # a cell not assigned yet
            raise KeyError(name) from None
    if name in fun.__globals__:
        return fun.__globals__[name]
    if hasattr(builtins, name):
        return getattr(builtins, name)
    raise KeyError(name)


def _same(old, new):
    if isinstance(old, tuple) and isinstance(new, list):  # a list of numbers read as values
        return old == tuple(new)
    if old is new:
        return True
    if type(old) is not type(new) or not isinstance(old, (numbers.Number, np.generic)):
        return False
    return bool(old == new) or (old != old and new != new)  # NaN stays NaN


def stale(reads):
    """True when a global or closure value that emitted code was made from has changed since
    (`k = 3.0` after `x * k` was emitted with k = 2.0; a helper function rebound): the code
    holds numbers as literals and inlines helpers, so it must be emitted again."""
    for (fun, name), value in reads.items():
        try:
            if not _same(value, resolve(fun, name)):
                return True
        except KeyError:
            return True
    return False


def same_values(fun):
    """The Python function behind a wrapper that computes the same values (numba.njit's
    dispatcher, tg.jit without vmap), or None."""
    kind = type(fun)
    if kind.__module__.split(".")[0] == "numba" and isinstance(getattr(fun, "py_func", None),
                                                             types.FunctionType):
        return fun.py_func
    if kind.__module__ == "tapegrad.transforms" and kind.__name__ == "Jitted" \
            and not getattr(fun, "batched", True):
        return fun.fun
    return None


def _decorated(fun):
    """A note for errors about a wrapper made by a decorator with functools.wraps, or ''."""
    if not isinstance(fun, types.FunctionType) or getattr(fun, "__wrapped__", None) is None:
        return ""
    code = fun.__code__
    return (f"`{fun.__name__}` is decorated: it is the wrapper `{code.co_qualname}` "
            f"({code.co_filename}:{code.co_firstlineno}) that functools.wraps named after the "
            f"function it wraps. tapegrad.source differentiates the function you pass, so it "
            f"read the wrapper, and cannot transform it. Pass the undecorated function "
            f"(`{fun.__name__}.__wrapped__`) if the decorator does not change the value, or "
            f"write what the decorator computes into a function of your own. The wrapper: ")


def _parse(fun):
    """(FunctionDef, filename, line offset, lines) of `fun` itself: the source of its own code
    object, never the function that functools.wraps says it wraps (inspect.getsource follows
    `__wrapped__`, which would differentiate the undecorated body of a decorated function)."""
    if not isinstance(fun, types.FunctionType):
        raise TransformError(f"can only transform Python functions, not {type(fun).__name__}",
                             construct=type(fun).__name__)
    code = fun.__code__
    filename = inspect.getsourcefile(fun) or code.co_filename
    if code.co_name == "<lambda>":
        return _parse_lambda(fun, filename)
    try:
        lines, first = inspect.getsourcelines(code)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError) as exc:
        raise TransformError(f"no source for {fun.__name__} ({exc}): tapegrad.source reads a "
                             "function's source, so define it in a file (a module or a script), "
                             "not in `python -c`, exec() or an interactive prompt",
                             filename=filename, construct="source") from exc
    node = tree.body[0]
    if isinstance(node, ast.AsyncFunctionDef):
        raise TransformError("async functions are not supported", filename=filename,
                             lineno=first, construct="AsyncFunctionDef")
    if not isinstance(node, ast.FunctionDef) or node.name != code.co_name:
        raise TransformError(f"no source for {fun.__name__}: the source at its line is not its "
                             "`def`", filename=filename, lineno=first, construct="source")
    return node, filename, first - 1, lines


def _parse_lambda(fun, filename):
    """A lambda as `def lambda_(params): return body`. The lambda is found in its file by its
    line and by the columns its bytecode comes from (a line may hold several lambdas)."""
    code = fun.__code__
    lines = linecache.getlines(filename, fun.__globals__)
    try:
        tree = ast.parse("".join(lines)) if lines else None
    except SyntaxError:
        tree = None
    if tree is None:
        raise TransformError(f"no source for the lambda at line {code.co_firstlineno}",
                             filename=filename, lineno=code.co_firstlineno, construct="source")
    # (RESUME and RETURN carry an empty span at column 0)
    spots = {(line, col) for line, end, col, end_col in code.co_positions()
             if None not in (line, end, col, end_col) and (end, end_col) > (line, col)}
    params = list(code.co_varnames[:code.co_argcount])
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)
             and n.lineno == code.co_firstlineno and [a.arg for a in n.args.args] == params
             and spots and all(_inside(n, spot) for spot in spots)]
    # nested lambdas: the innermost one holds all of the code's positions
    found = [n for n in found if not any(m is not n and _inside(n, (m.lineno, m.col_offset))
                                         for m in found)]
    if len(found) != 1:
        raise TransformError("cannot tell which lambda on this line to transform: write it "
                             "as a `def`", filename=filename, lineno=code.co_firstlineno,
                             construct="Lambda")
    lam = found[0]
    node = ast.FunctionDef(name="lambda_", args=lam.args,
                           body=[ast.copy_location(ast.Return(value=lam.body), lam.body)],
                           decorator_list=[], returns=None, type_comment=None)
    return ast.copy_location(node, lam), filename, 0, lines


def _inside(node, spot):
    """Whether the (line, column) `spot` lies within `node`'s source span."""
    return (node.lineno, node.col_offset) <= spot < (node.end_lineno, node.end_col_offset)


class Normaliser:
    def __init__(self, fun, n_args=None):
        self.fun = fun
        self.n_args = n_args  # how many arguments the call passes (for `*args`)
        self.namer = Namer()
        self.temps = set()
        self.constants = {}
        self.lists = set()  # names bound to list literals: list arithmetic is refused on them
        # names bound to tuples and dicts of values (tuple/dict arguments, `p = (a, b)`): a
        # structure of operands, known statically; they are indexed, unpacked and passed on
        self.structs = {}
        self.inlining = []
        self.temp_base = "t"
        self.reads = {}  # the globals and closure values looked up (see `stale`)
        self.fixed = {}  # emitted name -> constant: parameters bound to constants, never rebound
        self._global_structs = {}  # (id, values) of a global tuple of numbers -> its struct

    # -- errors --------------------------------------------------------------------------------

    def error(self, message, node, construct=None, scope=None):
        scope = scope or self.scope
        lineno = getattr(node, "lineno", None)
        if lineno is not None:
            lineno += scope.line_offset
        return TransformError(message, filename=scope.filename, lineno=lineno,
                              construct=construct or type(node).__name__)

    def origin(self, node):
        scope = self.scope
        lineno = node.lineno + scope.line_offset
        text = scope.lines[node.lineno - 1].strip() if node.lineno <= len(scope.lines) else ""
        if isinstance(node, (ast.If, ast.For, ast.While)):
            text = text.split("#")[0].strip()
        if scope.fun is not self.fun or scope.node is not self.scope_node:
            text = f"{scope.node.name}: {text}"
        return ir.Origin(lineno, text, scope.filename)

    # -- entry ---------------------------------------------------------------------------------

    def run(self):
        with _explained(self.fun):
            return self._run()

    def _run(self):
        node, filename, offset, lines = _parse(self.fun)
        local_names = self._local_names(node)
        self.namer.taken |= local_names
        rename = {n: n for n in local_names}
        self.scope = _Scope(self.fun, node, filename, offset, lines, rename, self.reads)
        self.scope_node = node
        params = self._parameters(node, self.n_args, self.namer.fresh)
        result = self._result_name(node)
        flag = self.namer.fresh("returned")
        rename.update({result: result, flag: flag})
        body, flag_used = restructure(self._appends_filled(node.body), [result], flag,
                                      self._located, self._fresh_local)
        out = []
        # parameters the call leaves out take their defaults (the function's own values)
        passed = len(node.args.args) if self.n_args is None or node.args.vararg \
            else self.n_args
        defaults = _default_values(self.fun)
        for name in [a.arg for a in node.args.args[passed:] + node.args.kwonlyargs]:
            if name not in defaults:
                raise self.error(f"`{node.name}` needs its argument `{name}`", node, "arguments")
            value = self._value_operand(defaults[name], name, node)
            self._bind(rename[name], value, out, self.origin(node))
            if isinstance(value, ir.Const) and name not in _stored(node.body):
                self.fixed[rename[name]] = value.value
        if flag_used:
            out.append(self._set(flag, ir.Const(False), node))
        self.block(body, out)
        return ir.Function(name=node.name, params=params, body=out, result=result,
                           temps=self.temps, constants=self.constants, filename=filename,
                           lines=lines, reads=self.reads)

    def _located(self, message, node, construct):
        return self.error(message, node if node is not None else self.scope.node, construct)

    def _parameters(self, node, n_args, local):
        """The parameters of the scope's function for a call with n_args arguments (None:
        unknown). `*args` and `**kwargs` are taken as a decorator's wrapper uses them, passed
        on (`f(*args, **kwargs)`): `args` stands for n_args - (named ones) values `args_0`, ...,
        `kwargs` for no keywords. `local` makes the emitted name of a new local."""
        args = node.args
        if args.posonlyargs or ((args.vararg or args.kwarg) and n_args is None):
            raise self.error("only plain positional parameters are supported", node, "arguments")
        params = [a.arg for a in args.args]
        if n_args is not None and not args.vararg:
            params = params[:n_args]  # the rest take their defaults
        if args.kwarg:
            self.scope.kwargs = args.kwarg.arg
        if args.vararg:
            if n_args < len(params):
                raise self.error(f"`{node.name}` takes at least {len(params)} arguments", node,
                                 "arguments")
            names = [f"{args.vararg.arg}_{k}" for k in range(n_args - len(params))]
            for name in names:
                self.scope.rename[name] = local(name)
            self.scope.varargs = names
            # `args` itself: the tuple of those values (len(args), args[0], for v in args)
            packed = self.scope.rename[args.vararg.arg] = local(args.vararg.arg)
            self.structs[packed] = tuple(self.scope.rename[n] for n in names)
            params += names
        return [self.scope.rename[p] for p in params]

    def _call_arguments(self, node, out, origin):
        """Operands of a user function call's positional arguments (`*args` passed on as its
        values) and of its keyword arguments, in the order Python evaluates them."""
        values, keywords = [], {}
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                if not (isinstance(arg.value, ast.Name) and self.scope.varargs is not None
                        and arg.value.id == self.scope.node.args.vararg.arg):
                    raise self.error("`*` is supported only to pass on the function's own "
                                     "`*args`", arg, "Starred")
                values += [self.scope.rename[name] for name in self.scope.varargs]
            else:
                values.append(self.expr(arg, out, origin))
        for keyword in node.keywords:
            if keyword.arg is None:
                if not (isinstance(keyword.value, ast.Name)
                        and keyword.value.id == self.scope.kwargs):
                    raise self.error("`**` is supported only to pass on the function's own "
                                     "`**kwargs`", node, "keyword")
                continue
            keywords[keyword.arg] = self.expr(keyword.value, out, origin)
        return values, keywords

    def _bind(self, name, operand, out, origin):
        """name = operand, for a parameter: tuples and dicts are passed on as structures."""
        if isinstance(operand, str) and operand in self.structs:
            self.structs[name] = self.structs[operand]
        else:
            out.append(ir.Assign(name, ir.Call(table.Identity(), [operand],
                                               operand_node(operand)), origin))

    def _value_operand(self, value, name, node):
        """A default argument's value as an operand: a number, an array (a constant of the
        emitted code) or a tuple of them."""
        if isinstance(value, tuple):
            struct = self.namer.fresh(f"{name}_default")
            self.structs[struct] = tuple(self._value_operand(v, name, node) for v in value)
            return struct
        if isinstance(value, np.ndarray):
            return self.global_value(self.namer.fresh(f"{name}_default"), value, node)
        if isinstance(value, (bool, int, float, np.floating, np.integer)):
            return self.global_value(name, value, node)
        raise self.error(f"the default of `{name}` is a {type(value).__name__}, not a number, "
                         "array or tuple: pass the argument", node, "arguments")

    def _result_name(self, node):
        returns = [n for n in ast.walk(node) if isinstance(n, ast.Return)]
        last = node.body[-1] if node.body else None
        if (len(returns) == 1 and returns[0] is last and isinstance(last.value, ast.Name)
                and last.value.id in self.scope.rename):
            return self.scope.rename[last.value.id]
        return self.namer.fresh("result")

    @staticmethod
    def _local_names(node):
        return {a.arg for a in node.args.args + node.args.kwonlyargs} | _stored(node.body)

    # -- statements ----------------------------------------------------------------------------

    def block(self, stmts, out):
        for stmt in stmts:
            self.statement(stmt, out)
        return out

    def statement(self, node, out):
        method = getattr(self, "stmt_" + type(node).__name__, None)
        if method is None:
            raise self.error(f"`{type(node).__name__}` statements are not supported", node)
        method(node, out)

    def stmt_FunctionDef(self, node, out):
        """A local `def`: inlined where it is called, reading the enclosing function's
        variables as they are at the call (Python's closures); defaults are taken now."""
        if node.decorator_list:
            raise self.error(f"a decorated local `def` is not supported: define `{node.name}` "
                             "at module level", node, "FunctionDef")
        origin = self.origin(node)
        args = node.args
        defaults = {a.arg: self.expr(d, out, origin)
                    for a, d in zip(args.args[len(args.args) - len(args.defaults):],
                                    args.defaults)}
        defaults.update({a.arg: self.expr(d, out, origin)
                         for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
        self.scope.functions[node.name] = _Local(node, self.scope, defaults)

    def stmt_Pass(self, node, out):
        pass

    def stmt_Expr(self, node, out):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return  # docstring
        call = node.value
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) \
                and call.func.attr == "append":
            raise self.error("`.append` is supported once per trip of a `for ... in range(...)` "
                             "loop filling a list started empty (`xs = []`), outside branches: "
                             "fill an array (np.zeros(n), then xs[i] = ...) instead", node, "Expr")
        raise self.error("expression statements (calls for their side effects) are not supported",
                         node, "Expr")

    def stmt_Assign(self, node, out):
        if len(node.targets) != 1:
            raise self.error("chained assignment `a = b = ...` is not supported", node, "Assign")
        target = node.targets[0]
        origin = self.origin(node)
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Lambda):
            lam = node.value  # `f = lambda t: ...`: a local function named f
            self.stmt_FunctionDef(ast.copy_location(ast.FunctionDef(
                name=target.id, args=lam.args, body=[ast.copy_location(ast.Return(
                    value=lam.body), lam.body)], decorator_list=[], returns=None,
                type_comment=None), node), out)
        elif isinstance(target, ast.Name):
            name = self.local(target)
            self.temp_base = name
            self.expr(node.value, out, origin, target=name)
        elif isinstance(target, ast.Subscript):
            self.assign_index(target, node.value, out, origin)
        elif isinstance(target, ast.Tuple):
            self.assign_tuple(target, node.value, out, origin)
        else:
            raise self.error(f"assignment to {type(target).__name__} is not supported", target)

    def stmt_AugAssign(self, node, out):
        origin = self.origin(node)
        target = node.target
        if isinstance(target, ast.Name):
            name = self.local(target)
            self.temp_base = name
            value = ast.copy_location(ast.BinOp(left=ast.Name(id=target.id, ctx=ast.Load()),
                                                op=node.op, right=node.value), node)
            self.expr(value, out, origin, target=name)
        elif isinstance(target, ast.Subscript):
            load = ast.copy_location(ast.Subscript(value=target.value, slice=target.slice,
                                                   ctx=ast.Load()), target)
            value = ast.copy_location(ast.BinOp(left=load, op=node.op, right=node.value), node)
            self.assign_index(target, value, out, origin)
        else:
            raise self.error("augmented assignment to this target is not supported", node)

    def assign_index(self, target, value_node, out, origin):
        array = self.name_operand(target.value, out, origin, "indexed assignment")
        self.temp_base = array
        index, reads = self.plain(target.slice)
        value = self.expr(value_node, out, origin)
        out.append(ir.SetIndex(array, index, reads, value, origin))

    def assign_tuple(self, target, value_node, out, origin):
        names = []
        for elt in target.elts:
            if not isinstance(elt, ast.Name):
                raise self.error("tuple targets must be plain names", elt, "Tuple")
            names.append(self.local(elt))
        if isinstance(value_node, ast.Tuple) and len(value_node.elts) == len(names):
            values = []
            for elt in value_node.elts:
                self.temp_base = names[len(values)]
                operand = self.expr(elt, out, origin)
                if isinstance(operand, str) and operand in names:
                    # `a, b = b, a`: read every right-hand value before writing any target
                    operand = self.copy_to_temp(operand, out, origin)
                values.append(operand)
        elif isinstance(value_node, ast.Call) and self._user_function(value_node) is not None:
            values = self.inline(value_node, out, origin, n_results=len(names))
        else:
            values = self._struct_of(value_node)
            if values is None and isinstance(value_node, ast.Call):  # divmod(a, b)
                operand = self.expr(value_node, out, origin)
                values = self.structs.get(operand) if isinstance(operand, str) else None
            if not isinstance(values, tuple):
                raise self.error("tuple unpacking needs a tuple of values or a helper returning "
                                 "one", value_node, "Tuple")
            if len(values) != len(names):
                raise self.error(f"{len(values)} values cannot be unpacked into {len(names)} "
                                 "names", value_node, "Tuple")
        for name, value in zip(names, values):
            if isinstance(value, str) and value in self.structs:
                self.structs[name] = self.structs[value]  # a nested tuple or dict
                continue
            out.append(ir.Assign(name, ir.Call(table.Identity(), [value], operand_node(value)),
                                 origin))

    def stmt_If(self, node, out):
        origin = self.origin(node)
        self.temp_base = "cond"
        cond = self.expr(node.test, out, origin)
        body = self.block(node.body, [])
        orelse = self.block(node.orelse, [])
        out.append(ir.If(cond, body, orelse, origin))

    def stmt_Break(self, node, out):
        out.append(ir.Break(self.origin(node)))

    def stmt_Continue(self, node, out):
        out.append(ir.Continue(self.origin(node)))

    def stmt_While(self, node, out):
        # restructure() left only `while True:`
        origin = self.origin(node)
        count = self.namer.fresh("loop_trips")
        out.append(self._set(count, ir.Const(0), node))
        body = self.block(node.body, [])
        out.append(ir.Loop(None, None, None, None, body, origin, counted=False, count=count))

    def stmt_For(self, node, out):
        origin = self.origin(node)
        stmts = self._indexed_loop(node, out, origin)
        if stmts is not None:
            with self._numpy_named():
                self.block(stmts, out)
            return
        struct = self._struct_of(node.iter) if isinstance(node.iter, ast.Name) else None
        if isinstance(node.iter, (ast.Tuple, ast.List)) or struct is not None:
            self._unrolled(node, out, origin)
            return
        if not isinstance(node.target, ast.Name):
            raise self.error("loop targets must be plain names", node.target, "For.target")
        target = self.local(node.target)
        assigned = {self.scope.rename.get(n.id, n.id) for n in ast.walk(ast.Module(node.body, []))
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if target in assigned:
            raise self.error(f"the loop variable `{target}` is assigned inside the loop", node,
                             "For.target")
        prefix = []
        if self._is_range(node.iter):
            args = node.iter.args
            if node.iter.keywords or not 1 <= len(args) <= 3:
                raise self.error("range() takes 1 to 3 positional arguments here", node.iter,
                                 "range")
            self.temp_base = target
            bounds = [self.expr(a, out, origin) for a in args]
            for bound in bounds:
                if isinstance(bound, str) and bound in assigned:
                    raise self.error(f"the range bound `{bound}` changes inside the loop",
                                     node.iter, "range")
            start, stop, step = ([ir.Const(0)] + bounds + [ir.Const(1)])[:3] if len(bounds) == 1 \
                else (bounds + [ir.Const(1)])[:3]
            loop_var = target
        else:
            # for row in array  ->  for row_index in range(len(array)): row = array[row_index]
            array = self.name_operand(node.iter, out, origin, "loop over a value")
            length = self.namer.fresh(f"{array}_len")
            out.append(ir.Assign(length, ir.Call(table.CALLS[builtins.len], [array], ast.Call(
                func=ast.Name(id="len", ctx=ast.Load()), args=[operand_node(array)],
                keywords=[])), origin))
            loop_var = self.namer.fresh(f"{target}_index")
            start, stop, step = ir.Const(0), length, ir.Const(1)
            prefix.append(ir.Assign(target, ir.Index(array, ast.Name(id=loop_var, ctx=ast.Load()),
                                                     [loop_var]), origin))
        body = self.block(node.body, prefix)
        counted = step == ir.Const(1) and not _has_break(body)
        count = None if counted else self.namer.fresh(f"{loop_var}_trips")
        if count:
            out.append(self._set(count, ir.Const(0), node))
        out.append(ir.Loop(loop_var, start, stop, step, body, origin, counted=counted, count=count))

    def _indexed_loop(self, node, out, origin):
        """`for i, v in enumerate(x)` and `for u, v in zip(x, y)` as a loop over
        range(len(...)) that reads the elements; None for other loops."""
        call = node.iter
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and not
                call.keywords and call.func.id not in self.scope.rename):
            return None
        try:
            fun = self.scope.lookup(call.func.id)
        except KeyError:
            return None
        names = node.target.elts if isinstance(node.target, ast.Tuple) else None
        if fun is builtins.enumerate and len(call.args) == 1 and names and len(names) == 2:
            counter, targets, sequences = names[0], names[1:], call.args
        elif fun is builtins.zip and call.args and names and len(names) == len(call.args):
            counter, targets, sequences = None, names, call.args
        else:
            return None
        if not all(isinstance(n, ast.Name) for n in names):
            raise self.error("loop targets must be plain names", node.target, "For.target")
        seqs = []
        for seq in sequences:  # each sequence is read once, before the loop (as Python does)
            name = self._fresh_local("seq")
            self.expr(seq, out, origin, target=name)
            seqs.append(ast.Name(id=name, ctx=ast.Load()))
        index = ast.Name(id=counter.id if counter else self._fresh_local("k"), ctx=ast.Store())
        lengths = [ast.Call(func=ast.Name(id="len", ctx=ast.Load()), args=[s], keywords=[])
                   for s in seqs]
        stop = lengths[0] if len(lengths) == 1 else ast.Call(
            func=ast.Name(id="min", ctx=ast.Load()), args=lengths, keywords=[])
        reads = [ast.Assign(targets=[ast.Name(id=t.id, ctx=ast.Store())], value=ast.Subscript(
            value=s, slice=ast.Name(id=index.id, ctx=ast.Load()), ctx=ast.Load()))
            for t, s in zip(targets, seqs)]
        loop = ast.For(target=index, iter=ast.Call(func=ast.Name(id="range", ctx=ast.Load()),
                                                   args=[stop], keywords=[]),
                       body=reads + node.body, orelse=[])
        return [_located_like(loop, node)]

    def _unrolled(self, node, out, origin):
        """`for v in (a, b)` and `for v in args` (a tuple of values known when transforming):
        the body once per value."""
        if _has_jump(node.body):
            raise self.error("`break` and `continue` are not supported in a loop over a tuple",
                             node, "For")
        if isinstance(node.iter, (ast.Tuple, ast.List)):
            values = [self.expr(e, out, origin) for e in node.iter.elts]
        else:
            values = list(self._struct_of(node.iter))
        for value in values:
            self._assign_target(node.target, value, out, origin)
            self.block(copy.deepcopy(node.body), out)

    def _assign_target(self, target, value, out, origin):
        if isinstance(target, ast.Name):
            name = self.local(target)
            if isinstance(value, str) and value in self.structs:
                self.structs[name] = self.structs[value]
            else:
                out.append(self._copy(name, value, origin))
            return
        if isinstance(target, ast.Tuple) and isinstance(value, str) and isinstance(
                self.structs.get(value), tuple) and len(self.structs[value]) == len(target.elts):
            for t, v in zip(target.elts, self.structs[value]):
                self._assign_target(t, v, out, origin)
            return
        raise self.error("loop targets must be plain names or tuples of them", target,
                         "For.target")

    def _is_range(self, node):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            return False
        if node.func.id in self.scope.rename:
            return False
        try:
            return self.scope.lookup(node.func.id) is range
        except KeyError:
            return False

    def _set(self, name, const, node):
        return ir.Assign(name, ir.Call(table.Identity(), [const], operand_node(const)),
                         ir.Origin(node.lineno + self.scope.line_offset, ""))

    # -- expressions ---------------------------------------------------------------------------

    def local(self, name_node):
        return self.scope.rename[name_node.id]

    def new_temp(self):
        name = self.namer.fresh(self.temp_base)
        self.temps.add(name)
        return name

    def copy_to_temp(self, operand, out, origin):
        temp = self.new_temp()
        out.append(ir.Assign(temp, ir.Call(table.Identity(), [operand], operand_node(operand)),
                             origin))
        return temp

    def name_operand(self, node, out, origin, what):
        operand = self.expr(node, out, origin)
        if not isinstance(operand, str):
            raise self.error(f"{what} needs an array, not a constant", node)
        return operand

    def emit(self, op, args, forward, out, origin, target):
        for arg in args:
            if isinstance(arg, str) and arg in self.structs:
                name = next((k for k, v in self.scope.rename.items() if v == arg), arg)
                raise TransformError(
                    f"`{name}` is a tuple or dict: index it with a constant (`{name}[0]`), "
                    "unpack it (`a, b = ...`) or pass it to a helper; it is no array here",
                    filename=self.scope.filename, lineno=origin.lineno, construct="Tuple")
        name = target or self.new_temp()
        out.append(ir.Assign(name, ir.Call(op, args, forward), origin))
        return name

    def expr(self, node, out, origin, target=None):
        """Normalise `node`; returns its operand (a name or Const). With `target`, the value is
        written to that name."""
        method = getattr(self, "expr_" + type(node).__name__, None)
        if method is None:
            raise self.error(f"`{type(node).__name__}` expressions are not supported", node)
        operand = method(node, out, origin, target)
        if target is not None and operand != target and operand in self.structs:
            self.structs[target] = self.structs[operand]  # `q = p`: the same structure
            return target
        if target is not None and operand != target:
            out.append(ir.Assign(target, ir.Call(table.Identity(), [operand],
                                                 operand_node(operand)), origin))
            operand = target
        return operand

    def expr_Constant(self, node, out, origin, target):
        if isinstance(node.value, (bool, int, float)):
            return ir.Const(node.value)
        raise self.error(f"constant {node.value!r} is not a number", node, "Constant")

    def expr_Name(self, node, out, origin, target):
        if node.id in self.scope.rename:
            return self.scope.rename[node.id]
        numbers = self._global_numbers(node)
        if numbers is not None:
            return numbers
        return self.global_value(node.id, self._resolve(node), node)

    def _global_numbers(self, node):
        """A global or closure tuple or list of numbers (`COEFFS = (1.0, 0.5)`) as a tuple
        of constants: indexed, unpacked, iterated and passed on as the user's tuples are."""
        try:
            value = self.scope.lookup(node.id)
        except KeyError:
            return None
        if not (isinstance(value, (tuple, list)) and value and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            return None
        if isinstance(value, list):  # the values, not the list object, made the code
            self.reads[self.scope.fun, node.id] = tuple(value)
        key = (id(value), tuple(value))
        name = self._global_structs.get(key)
        if name is None:
            name = self._global_structs[key] = self.namer.fresh(f"{node.id}_values")
            self.structs[name] = tuple(ir.Const(v) for v in value)
        return name

    def global_value(self, name, value, node):
        if isinstance(value, (bool, int, float, np.floating, np.integer)):
            return ir.Const(value.item() if isinstance(value, np.generic) else value)
        if isinstance(value, np.ndarray):
            known = self.constants.get(name)
            if known is not None and known is not value:
                raise self.error(f"two different arrays are both called `{name}`", node, "Name")
            self.constants[name] = value
            self.namer.reserve(name)
            return name
        raise self.error(f"`{name}` ({type(value).__name__}) can only be called or is not a "
                         "number or array", node, "Name")

    def expr_Attribute(self, node, out, origin, target):
        base = node.value
        if self._module(base) is not None or (isinstance(base, ast.Name)
                                              and base.id not in self.scope.rename):
            module = self._module(base)
            if module in table.MODULES:
                value = getattr(module, node.attr, None)
                if isinstance(value, (int, float)):
                    return ir.Const(value)
            raise self.error(f"`{base.id}.{node.attr}` is not supported", node, "Attribute")
        if node.attr == "T":
            array = self.name_operand(base, out, origin, ".T")
            forward = ast.Attribute(value=operand_node(array), attr="T", ctx=ast.Load())
            return self.emit(table.Transpose(), [array], forward, out, origin, target)
        if node.attr in table.INT_ATTRIBUTES:
            array = self.name_operand(base, out, origin, f".{node.attr}")
            forward = ast.Attribute(value=operand_node(array), attr=node.attr, ctx=ast.Load())
            return self.emit(table.Constant(lambda kinds, nodes: INT), [array], forward,
                             out, origin, target)
        raise self.error(f"attribute `.{node.attr}` is not supported", node, "Attribute")

    def _resolve(self, name_node):
        packed = self.scope.node.args.vararg, self.scope.node.args.kwarg
        if any(p is not None and p.arg == name_node.id for p in packed):
            raise self.error(f"`{name_node.id}` can only be passed on here "
                             "(`f(*args, **kwargs)`)", name_node, "Name")
        try:
            return self.scope.lookup(name_node.id)
        except KeyError:
            raise self.error(f"name `{name_node.id}` is not defined", name_node, "Name") from None

    def expr_UnaryOp(self, node, out, origin, target):
        if isinstance(node.op, ast.UAdd):
            return self.expr(node.operand, out, origin)
        operand = self.expr(node.operand, out, origin)
        if isinstance(node.op, ast.USub):
            if isinstance(operand, ir.Const):
                return ir.Const(-operand.value)
            forward = ast.UnaryOp(op=ast.USub(), operand=operand_node(operand))
            return self.emit(table.Elementwise(P.neg, 1), [operand], forward, out, origin, target)
        if isinstance(node.op, ast.Not):
            forward = ast.UnaryOp(op=ast.Not(), operand=operand_node(operand))
            return self.emit(table.Constant(lambda kinds, nodes: BOOL), [operand],
                             forward, out, origin, target)
        raise self.error(f"unary `{type(node.op).__name__}` is not supported", node, "UnaryOp")

    def expr_BinOp(self, node, out, origin, target):
        left = self.expr(node.left, out, origin)
        right = self.expr(node.right, out, origin)
        if left in self.lists or right in self.lists:
            raise self.error("arithmetic on a list repeats or joins it in Python but is "
                             "elementwise on arrays: write np.array([...])", node, "List")
        forward = ast.BinOp(left=operand_node(left), op=node.op, right=operand_node(right))
        name = _BINOPS.get(type(node.op))
        if name == "matmul":
            op = table.MatMul()
        elif name is not None:
            op = table.Elementwise(getattr(P, name if name != "pow" else "pow_"), 2)
        elif isinstance(node.op, ast.FloorDiv):
            op = table.Constant(_broadcast_kinds)  # piecewise constant: zero gradient is right
        elif isinstance(node.op, ast.Mod):
            op = table.Elementwise(P.remainder, 2)  # Python's % on floats is np.remainder
        else:
            raise self.error(f"operator `{type(node.op).__name__}` is not supported", node,
                             "BinOp")
        return self.emit(op, [left, right], forward, out, origin, target)

    def expr_Compare(self, node, out, origin, target):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise self.error(f"comparison `{type(op).__name__}` is not supported", node,
                                 "Compare")
        left = self.expr(node.left, out, origin)
        if len(node.ops) == 1:
            right = self.expr(node.comparators[0], out, origin)
            return self._compare(left, node.ops[0], right, out, origin, target)
        # `a < b < c` is `a < b and b < c`: b is read once, c only when a < b holds
        name = target or self.namer.fresh(self.temp_base)
        block = out
        for k, (op, comparator) in enumerate(zip(node.ops, node.comparators)):
            right = self.expr(comparator, block, origin)
            test = self._compare(left, op, right, block, origin, None)
            block.append(self._copy(name, test, origin))
            if k < len(node.ops) - 1:
                inner = []
                block.append(ir.If(test, inner, [], origin))
                block = inner
            left = right
        return name

    def _compare(self, left, op, right, out, origin, target):
        forward = ast.Compare(left=operand_node(left), ops=[op], comparators=[operand_node(right)])
        return self.emit(table.Elementwise(getattr(P, _COMPARE[type(op)]), 2), [left, right],
                         forward, out, origin, target)

    def _copy(self, name, operand, origin):
        return ir.Assign(name, ir.Call(table.Identity(), [operand], operand_node(operand)),
                         origin)

    def expr_BoolOp(self, node, out, origin, target):
        # short-circuit, as Python runs it: a later operand runs only when the ones before it
        # leave the result open (`i < n and x[i] > 0` must not read x[n])
        name = target or self.namer.fresh(self.temp_base)
        block = out
        for k, value_node in enumerate(node.values):
            value = self.expr(value_node, block, origin)
            block.append(self._copy(name, value, origin))
            if k < len(node.values) - 1:
                inner = []
                if isinstance(node.op, ast.And):
                    block.append(ir.If(value, inner, [], origin))
                else:
                    block.append(ir.If(value, [], inner, origin))
                block = inner
        return name

    def expr_IfExp(self, node, out, origin, target):
        cond = self.expr(node.test, out, origin)
        name = target or self.namer.fresh(self.temp_base)
        body = []
        self.expr(node.body, body, origin, target=name)
        orelse = []
        self.expr(node.orelse, orelse, origin, target=name)
        out.append(ir.If(cond, body, orelse, origin))
        return name

    def expr_Tuple(self, node, out, origin, target):
        name = target or self.new_temp()
        self.structs[name] = tuple(self.expr(e, out, origin) for e in node.elts)
        return name

    def expr_Dict(self, node, out, origin, target):
        keys = []
        for key in node.keys:
            if not (isinstance(key, ast.Constant) and isinstance(key.value, (str, int))):
                raise self.error("dict keys must be constant strings or ints here",
                                 key if key is not None else node, "Dict")
            keys.append(key.value)
        name = target or self.new_temp()
        self.structs[name] = dict(zip(keys, (self.expr(v, out, origin) for v in node.values)))
        return name

    def _struct_of(self, node):
        """The structure a name or a constant subscript of one means, or None."""
        if isinstance(node, ast.Name) and node.id not in self.scope.rename:
            return self.structs.get(self._global_numbers(node))
        if isinstance(node, ast.Name):
            return self.structs.get(self.scope.rename.get(node.id))
        if isinstance(node, ast.Subscript):
            parent = self._struct_of(node.value)
            if parent is not None:
                leaf = self._struct_item(parent, node)
                return self.structs.get(leaf) if isinstance(leaf, str) else None
        return None

    def _struct_item(self, struct, node):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            key = key.value
        else:
            key = self.static_value(key, "index")
        try:
            return struct[key]
        except (KeyError, IndexError, TypeError):
            raise self.error(f"`{ast.unparse(node)}`: no item {key!r} in "
                             f"{'this dict' if isinstance(struct, dict) else 'this tuple'}",
                             node, "Subscript") from None

    def _static(self, node):
        try:
            self.static_value(node, "index")
            return True
        except TransformError:
            return False

    def _select(self, struct, node, out, origin, target):
        """`t[i]` of a tuple `t = (a, b, c)` with an int `i` known only when it runs: the
        branch `if i == 0 (or -3): a elif ...`, whose adjoint reaches the value selected."""
        index = self.expr(node.slice, out, origin)
        name = target or self.new_temp()
        chain = [self._copy(name, ir.Const(math.nan), origin)]  # out of range: NaN, never a value
        n = len(struct)
        for k in reversed(range(n)):
            if isinstance(struct[k], str) and struct[k] in self.structs:
                raise self.error(f"`{ast.unparse(node)}`: a tuple holding tuples or dicts is "
                                 "indexed here by a value known only when it runs", node,
                                 "Subscript")
            test = []
            hit = self.emit(table.Elementwise(P.eq, 2), [index, ir.Const(k)], ast.Compare(
                left=operand_node(index), ops=[ast.Eq()], comparators=[ast.Constant(k)]),
                test, origin, None)
            back = self.emit(table.Elementwise(P.eq, 2), [index, ir.Const(k - n)], ast.Compare(
                left=operand_node(index), ops=[ast.Eq()], comparators=[operand_node(
                    ir.Const(k - n))]), test, origin, None)
            either = self.namer.fresh(self.temp_base)
            test += [self._copy(either, hit, origin),
                     ir.If(back, [self._copy(either, ir.Const(True), origin)], [], origin)]
            chain = test + [ir.If(either, [self._copy(name, struct[k], origin)], chain, origin)]
        out.extend(chain)
        return name

    def _struct_constant(self, struct, node):
        """A tuple of constants (`shape = (2, 3)` passed as an argument) as its value."""
        if isinstance(struct, tuple) and all(isinstance(e, ir.Const) for e in struct):
            return tuple(e.value for e in struct)
        raise self.error(f"`{ast.unparse(node)}` must be a tuple of constants here", node,
                         "Tuple")

    def expr_List(self, node, out, origin, target):
        """`[a, b]` as a value: NumPy's array of it (np.array([a, b])), which Numba compiles and
        differentiates; list arithmetic (`[a] * 2`, `l1 + l2`) is refused where it is used."""
        operands = [self.expr(e, out, origin) for e in node.elts]
        forward = ast.Call(func=ast.parse("np.array", mode="eval").body,
                           args=[ast.List(elts=[operand_node(o) for o in operands],
                                          ctx=ast.Load())], keywords=[])
        name = self.emit(table.Pack(), operands, forward, out, origin, target)
        self.lists.add(name)
        return name

    def _np_array(self, node, out, origin, target):
        """np.array(v) / np.asarray(v): a list or tuple literal is packed, an array copied."""
        if node.keywords or len(node.args) != 1:
            raise self.error("np.array takes one list, tuple or array here (no dtype=)", node,
                             "Call")
        arg = node.args[0]
        if isinstance(arg, (ast.List, ast.Tuple)):
            name = self.expr_List(arg, out, origin, target)
            self.lists.discard(name)
            return name
        operand = self.expr(arg, out, origin)
        forward = ast.Call(func=ast.parse("np.copy", mode="eval").body,
                           args=[operand_node(operand)], keywords=[])
        return self.emit(table.Identity(), [operand], forward, out, origin, target)

    def expr_Subscript(self, node, out, origin, target):
        base = node.value
        struct = self._struct_of(base)
        if struct is not None and isinstance(struct, tuple) and not self._static(node.slice):
            return self._select(struct, node, out, origin, target)
        if struct is not None:
            return self._struct_item(struct, node)
        if isinstance(base, ast.Attribute) and base.attr == "shape":
            array = self.name_operand(base.value, out, origin, ".shape")
            index, _ = self.plain(node.slice)
            forward = ast.Subscript(value=ast.Attribute(value=operand_node(array), attr="shape",
                                                        ctx=ast.Load()), slice=index,
                                    ctx=ast.Load())
            return self.emit(table.Constant(lambda kinds, nodes: INT), [array], forward,
                             out, origin, target)
        array = self.name_operand(base, out, origin, "indexing")
        index, reads = self.plain(node.slice)
        name = target or self.new_temp()
        out.append(ir.Assign(name, ir.Index(array, index, reads), origin))
        return name

    def expr_Call(self, node, out, origin, target):
        func = node.func
        if (isinstance(func, ast.Attribute) and self._module(func.value) is None
                and not (isinstance(func.value, ast.Name)
                         and func.value.id not in self.scope.rename)):
            return self.method_call(node, out, origin, target)
        if self._user_function(node) is not None:
            return self.inline(node, out, origin, n_results=1, target=target)[0]
        obj = self._callee(node)
        spelled = self._respelled(obj, node, out, origin) if _hashable(obj) else None
        if spelled is not None:
            if isinstance(spelled, ast.AST):
                with self._numpy_named():
                    return self.expr(spelled, out, origin, target)
            if len(spelled) == 4:  # (op, None, forward, operands): emitted as it is
                op, _, forward, operands = spelled
                return self.emit(op, operands, forward, out, origin, target)
            op, spelling, node = spelled
            return self.call_op(op, spelling, [], node, f"`{ast.unparse(func)}`", out, origin,
                                target)
        if obj is np.array or obj is np.asarray:
            return self._np_array(node, out, origin, target)
        if obj is np.concatenate and len(node.args) == 1 and isinstance(
                node.args[0], (ast.List, ast.Tuple)) and all(
                k.arg == "axis" and self.static_value(k.value, "axis") == 0
                for k in node.keywords):  # along the first axis; a tuple, as Numba takes it
            operands = [self.name_operand(e, out, origin, "np.concatenate")
                        for e in node.args[0].elts]
            forward = ast.Call(func=_canonical_spelling(np.concatenate), keywords=[], args=[
                ast.Tuple(elts=[operand_node(o) for o in operands], ctx=ast.Load())])
            return self.emit(table.Concat(), operands, forward, out, origin, target)
        if obj is np.stack and len(node.args) == 1 and all(
                k.arg == "axis" and self.static_value(k.value, "axis") == 0
                for k in node.keywords):  # along a new first axis: np.array of the list
            return self._np_array(ast.copy_location(ast.Call(func=node.func, args=node.args,
                                                             keywords=[]), node),
                                  out, origin, target)
        if obj is builtins.len and len(node.args) == 1 and self._struct_of(node.args[0]) \
                is not None:
            return ir.Const(len(self._struct_of(node.args[0])))
        op = table.CALLS.get(obj) if _hashable(obj) else None
        if op is None:
            note = numpy_api.describe("source", obj) if _hashable(obj) else None  # the table's
            raise self.error(f"call to `{ast.unparse(func)}` is not supported"
                             + (f": {note}" if note else ""), node, "Call")
        spelling = _canonical_spelling(obj)
        if isinstance(op, table.Constant) and obj not in (np.sign, np.floor, np.isnan):
            if node.keywords:
                raise self.error("keyword arguments are not supported", node, "keyword")
            # constructors and integer helpers: arguments are plain integer code (shapes)
            plain_args = [self.plain(a)[0] for a in node.args]
            forward = ast.Call(func=spelling, args=plain_args, keywords=[])
            args = [a for a in (self._maybe_operand(a) for a in node.args) if a is not None]
            return self.emit(op, args, forward, out, origin, target)
        return self.call_op(op, spelling, [], node, f"`{ast.unparse(func)}`", out, origin, target)

    def _respelled(self, obj, node, out, origin):
        """Calls that are other calls the table knows, or loops: an AST to normalise instead,
        (op, spelling, call) for a reduction, (op, None, forward, operands) for an op
        emitted as it is, or None."""
        args, keywords, func = node.args, node.keywords, node.func
        allocate = {np.zeros_like: "zeros", np.ones_like: "ones", np.empty_like: "empty"}
        if obj in allocate and len(args) == 1 and [k.arg for k in keywords] == ["shape"]:
            # np.zeros_like(x, shape=s): np.zeros(s) of floats (x's kind matters no more)
            return _located_like(ast.Call(func=ast.Attribute(value=ast.Name(id=_NP, ctx=ast.Load()),
                                                             attr=allocate[obj], ctx=ast.Load()),
                                          args=[keywords[0].value], keywords=[]), node)
        if keywords and obj is not builtins.dict:
            return None
        new = None
        if obj is math.log and len(args) == 2:        # math.log(x, base)
            new = ast.BinOp(left=ast.Call(func=func, args=[args[0]], keywords=[]), op=ast.Div(),
                            right=ast.Call(func=func, args=[args[1]], keywords=[]))
        elif obj is builtins.divmod and len(args) == 2:
            new = ast.Tuple(elts=[ast.BinOp(left=args[0], op=ast.FloorDiv(), right=args[1]),
                                  ast.BinOp(left=args[0], op=ast.Mod(), right=args[1])],
                            ctx=ast.Load())
        elif obj is builtins.pow and len(args) == 2:
            new = ast.BinOp(left=args[0], op=ast.Pow(), right=args[1])
        elif obj is np.square and len(args) == 1:
            new = ast.BinOp(left=args[0], op=ast.Pow(), right=ast.Constant(2))
        elif obj is np.outer and len(args) == 2:      # ravel(a)[:, None] * ravel(b)[None, :]
            def flat(arg, index):
                return ast.Subscript(value=ast.Call(func=ast.Attribute(value=ast.Name(
                    id=_NP, ctx=ast.Load()), attr="ravel", ctx=ast.Load()), args=[arg],
                    keywords=[]), slice=ast.Tuple(elts=index, ctx=ast.Load()), ctx=ast.Load())
            new = ast.BinOp(left=flat(args[0], [ast.Slice(), ast.Constant(None)]), op=ast.Mult(),
                            right=flat(args[1], [ast.Constant(None), ast.Slice()]))
        elif obj in (np.var, np.std) and len(args) == 1:
            # mean((x - mean(x)) ** 2); std is its square root (ddof 0, over all elements)
            def call(name, *arguments):
                return ast.Call(func=ast.Attribute(value=ast.Name(id=_NP, ctx=ast.Load()),
                                                   attr=name, ctx=ast.Load()),
                                args=list(arguments), keywords=[])
            new = call("mean", ast.BinOp(left=ast.BinOp(left=args[0], op=ast.Sub(),
                                                        right=call("mean", args[0])),
                                         op=ast.Pow(), right=ast.Constant(2)))
            new = new if obj is np.var else call("sqrt", new)
        elif obj is np.swapaxes and len(args) == 3:   # a transpose, its axes known with ndim
            swap = (self.static_value(args[1], "axis"), self.static_value(args[2], "axis"))
            if not all(_is_int(a) for a in swap):
                raise self.error("np.swapaxes takes two constant axes here", node, "axis")
            operand = self.name_operand(args[0], out, origin, "np.swapaxes")
            forward = ast.Call(func=_canonical_spelling(np.swapaxes), keywords=[],
                               args=[operand_node(operand)])
            return table.Transpose(swap=swap), None, forward, [operand]
        elif obj is np.matmul and len(args) == 2:     # as `@`, which Numba compiles
            new = ast.BinOp(left=args[0], op=ast.MatMult(), right=args[1])
        elif obj in (np.expand_dims, np.squeeze) and len(args) == 2:
            # x[:, :, None] and x[:, :, 0] at a constant axis >= 0
            axis = self.static_value(args[1], "axis")
            if not _is_int(axis) or axis < 0:
                raise self.error(f"`{ast.unparse(func)}` takes a constant axis >= 0 here", node,
                                 "axis")
            last = ast.Constant(None if obj is np.expand_dims else 0)
            new = ast.Subscript(value=args[0], ctx=ast.Load(), slice=ast.Tuple(
                elts=[ast.Slice() for _ in range(axis)] + [last], ctx=ast.Load()))
        elif obj in (builtins.min, builtins.max) and len(args) > 2:   # min(a, b, c)
            new = ast.Call(func=func, keywords=[], args=[
                ast.Call(func=func, args=args[:-1], keywords=[]), args[-1]])
        elif obj in (builtins.min, builtins.max) and len(args) == 1 and not isinstance(
                args[0], (ast.GeneratorExp, ast.ListComp)):              # min(x) of an array
            reduction = np.min if obj is builtins.min else np.max
            return table.CALLS[reduction], _canonical_spelling(reduction), node
        elif obj is builtins.dict and not args and all(k.arg for k in keywords):
            new = ast.Dict(keys=[ast.Constant(k.arg) for k in keywords],
                           values=[k.value for k in keywords])
        elif obj is builtins.sum and len(args) == 1:
            return self._summed(args[0], node, out, origin)
        if new is None:
            return None
        return _located_like(new, node)

    def _summed(self, arg, node, out, origin):
        """sum(x), sum(e for v in x), sum([e for ...]), sum([a, b]) as the loop adding them up,
        from 0.0 as Python's sum starts from 0."""
        if isinstance(arg, (ast.List, ast.Tuple)) and arg.elts:
            new = arg.elts[0]
            for elt in arg.elts[1:]:
                new = ast.BinOp(left=new, op=ast.Add(), right=elt)
            return _located_like(new, node)
        if not isinstance(arg, (ast.GeneratorExp, ast.ListComp)):
            item = self.namer.fresh("item")
            arg = ast.GeneratorExp(elt=ast.Name(id=item, ctx=ast.Load()), generators=[
                ast.comprehension(target=ast.Name(id=item, ctx=ast.Store()), iter=arg,
                                  ifs=[], is_async=0)])
            self.scope.rename[item] = item
        total = self._local(self.namer.fresh("total"))
        stmts = [ast.Assign(targets=[ast.Name(id=total, ctx=ast.Store())],
                            value=ast.Constant(0.0))]
        update = ast.Assign(targets=[ast.Name(id=total, ctx=ast.Store())], value=ast.BinOp(
            left=ast.Name(id=total, ctx=ast.Load()), op=ast.Add(), right=arg.elt))
        stmts += self._comprehension_loops(arg, [update])
        self.block([_located_like(s, node) for s in stmts], out)
        return _located_like(ast.Name(id=total, ctx=ast.Load()), node)

    def _appends_filled(self, stmts):
        """`xs = []` and then `for i in range(...): ... xs.append(e)` (once a trip, not under a
        branch, xs read nowhere else in the loop) as an array of the loop's length filled in
        place: `xs = np.zeros(len(range(...)))`, `xs[count] = e`. Other appends are refused
        where they are (an expression statement)."""
        stmts = list(stmts)
        for k, stmt in enumerate(stmts):
            name = _empty_list(stmt)
            loop = next((s for s in stmts[k + 1:] if name and _mentions(s, name)), None)
            if loop is None or not isinstance(loop, ast.For) or loop.orelse \
                    or not self._is_range(loop.iter) or _has_jump(loop.body) \
                    or any(isinstance(n, ast.Return) for n in ast.walk(loop)):
                continue
            appends = [s for s in loop.body if _append_of(s, name) is not None]
            if len(appends) != 1 or sum(_mentions(s, name) for s in loop.body) != 1:
                continue
            after = stmts[stmts.index(loop) + 1:]
            if any(_append_of(n, name) is not None for s in after for n in ast.walk(s)):
                continue
            count = self._fresh_local(f"{name}_count")
            length = ast.Call(func=ast.Name(id="len", ctx=ast.Load()), keywords=[], args=[
                ast.Call(func=ast.Name(id="range", ctx=ast.Load()), args=loop.iter.args,
                         keywords=[])])
            allocate = [
                ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=ast.Call(
                    func=ast.Attribute(value=ast.Name(id=_NP, ctx=ast.Load()), attr="zeros",
                                       ctx=ast.Load()), args=[length], keywords=[])),
                ast.Assign(targets=[ast.Name(id=count, ctx=ast.Store())],
                           value=ast.Constant(0))]
            fill = [ast.Assign(targets=[ast.Subscript(
                        value=ast.Name(id=name, ctx=ast.Load()),
                        slice=ast.Name(id=count, ctx=ast.Load()), ctx=ast.Store())],
                        value=_append_of(appends[0], name)),
                    ast.AugAssign(target=ast.Name(id=count, ctx=ast.Store()), op=ast.Add(),
                                  value=ast.Constant(1))]
            new_loop = copy.copy(loop)
            new_loop.body = [b for s in loop.body for b in (
                [_located_like(f, s) for f in fill] if s is appends[0] else [s])]
            at = stmts.index(loop)
            stmts[at:at + 1] = [_located_like(a, loop) for a in allocate] + [new_loop]
            stmts[k] = _located_like(ast.Pass(), stmt)
        return stmts

    def _fresh_local(self, base):
        return self._local(self.namer.fresh(base))

    def _local(self, name):
        """A name the normaliser made, usable in the AST it normalises (its own emitted name)."""
        self.scope.rename[name] = name
        return name

    def _comprehension_loops(self, comp, body):
        """The `for` statements (with `if` filters) of a comprehension around `body`. Its
        targets get names of their own: a comprehension's variables do not leak in Python."""
        renames = {}
        for gen in comp.generators:
            if gen.is_async or not isinstance(gen.target, ast.Name):
                raise self.error("comprehensions here take `for name in ...` clauses", comp,
                                 "comprehension")
            renames[gen.target.id] = self._local(self.namer.fresh(gen.target.id))
        rename = _NameSwap(renames)
        body = [rename.visit(copy.deepcopy(b)) for b in body]
        for gen in reversed(comp.generators):
            for test in reversed(gen.ifs):
                body = [ast.If(test=rename.visit(copy.deepcopy(test)), body=body, orelse=[])]
            loop = ast.For(target=ast.Name(id=renames[gen.target.id], ctx=ast.Store()),
                           iter=gen.iter, body=body, orelse=[])
            body = [loop]
        # a later clause's iterable may read an earlier clause's variable
        for loop in ast.walk(body[0]):
            if isinstance(loop, ast.For):
                loop.iter = rename.visit(copy.deepcopy(loop.iter))
        return body

    def expr_ListComp(self, node, out, origin, target):
        """[e for v in x] as a 1-D array of its values, filled by a loop: one `for` clause over
        a range or an array, no filter (the length must be known before the loop)."""
        if len(node.generators) != 1 or node.generators[0].ifs:
            raise self.error("a list comprehension here takes one `for` clause and no `if`: "
                             "write the loop, or sum(... for ...) for a sum", node, "ListComp")
        gen = node.generators[0]
        length = ast.Call(func=ast.Name(id="len", ctx=ast.Load()), args=[gen.iter], keywords=[])
        if self._is_range(gen.iter):
            length.args = [ast.Call(func=ast.Name(id="range", ctx=ast.Load()),
                                    args=gen.iter.args, keywords=[])]
        values = self._local(target or self.namer.fresh("values"))
        count = self._local(self.namer.fresh("count"))
        stmts = [ast.Assign(targets=[ast.Name(id=values, ctx=ast.Store())], value=ast.Call(
                     func=ast.Attribute(value=ast.Name(id=_NP, ctx=ast.Load()), attr="zeros",
                                        ctx=ast.Load()), args=[length], keywords=[])),
                 ast.Assign(targets=[ast.Name(id=count, ctx=ast.Store())],
                            value=ast.Constant(0))]
        fill = [ast.Assign(targets=[ast.Subscript(value=ast.Name(id=values, ctx=ast.Load()),
                                                  slice=ast.Name(id=count, ctx=ast.Load()),
                                                  ctx=ast.Store())], value=node.elt),
                ast.AugAssign(target=ast.Name(id=count, ctx=ast.Store()), op=ast.Add(),
                              value=ast.Constant(1))]
        stmts += self._comprehension_loops(node, fill)
        with self._numpy_named():
            self.block([_located_like(s, node) for s in stmts], out)
        self.lists.add(values)
        return values

    @contextlib.contextmanager
    def _numpy_named(self):
        """`np` and `len` in code the normaliser writes mean NumPy and the builtin, whatever the
        user's module calls them."""
        lookup = self.scope.lookup
        fixed = {_NP: np, "len": builtins.len, "range": builtins.range, "min": builtins.min}
        self.scope.lookup = lambda name: fixed[name] if name in fixed else lookup(name)
        try:
            yield
        finally:
            self.scope.lookup = lookup

    def call_op(self, op, spelling, operands, node, what, out, origin, target):
        """A call of a table entry: `operands` holds the receiver of a method call; the static
        arguments (axis, keepdims, shapes, axes) are checked and printed as written."""
        receiver = len(operands)
        arg_nodes = list(node.args)
        if node.keywords and not isinstance(op, table.Reduction):
            raise self.error("keyword arguments are not supported here", node, "keyword")
        n_values = {table.Elementwise: getattr(op, "nargs", 0), table.MatMul: 2}.get(type(op), 1)
        n_values -= len(getattr(op, "params", ()))
        while len(operands) < n_values and arg_nodes:
            operands.append(self.expr(arg_nodes.pop(0), out, origin))
        if len(operands) < n_values:
            raise self.error(f"{what} takes {n_values} arguments here", node, "Call")
        statics, keywords = [], []
        if isinstance(op, table.Elementwise):
            if len(arg_nodes) != len(op.params):
                raise self.error(f"{what} takes {op.nargs} arguments here", node, "Call")
            for arg in arg_nodes:  # np.clip(x, 0.0, None): a bound may be left out
                none = isinstance(arg, ast.Constant) and arg.value is None
                operands.append(ir.Const(None) if none else self.expr(arg, out, origin))
            arg_nodes = []
        elif isinstance(op, table.Reduction):
            op, statics, keywords = self._reduction_params(op, arg_nodes, node, what)
        elif isinstance(op, table.Reshape):
            op, statics = self._reshape_params(op, arg_nodes, node, what)
        elif isinstance(op, table.Transpose):
            axes = tuple(self.static_value(a, "axes") for a in arg_nodes)
            if len(axes) == 1 and not isinstance(axes[0], int):
                axes = axes[0]
            if axes is not None and not (axes == () or all(isinstance(a, int) for a in axes)):
                raise self.error(f"{what} takes a tuple of axes", node, "Call")
            op = table.Transpose(axes or None)
            statics = [static_node(self.static_value(a, "axes")) for a in arg_nodes]
        elif arg_nodes:
            raise self.error(f"{what} takes {n_values} arguments here", node, "Call")
        printed = operands[receiver:]  # a method's receiver is part of its spelling
        forward = ast.Call(func=spelling, args=[operand_node(a) for a in printed] + statics,
                           keywords=keywords)
        return self.emit(op, operands, forward, out, origin, target)

    def static_value(self, node, what):
        """The value of a static argument (axis, keepdims, ord): constants, tuples of them, and
        global numbers such as `np.inf`."""
        if isinstance(node, ast.Tuple):
            return tuple(self.static_value(e, what) for e in node.elts)
        struct = self._struct_of(node)
        if struct is not None:
            return self._struct_constant(struct, node)
        if isinstance(node, ast.Constant) and (node.value is None
                                               or isinstance(node.value, (bool, int, float))):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            value = self.static_value(node.operand, what)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return -value
        if isinstance(node, ast.Name) and self.scope.rename.get(node.id) in self.fixed:
            return self.fixed[self.scope.rename[node.id]]
        if isinstance(node, ast.Name) and node.id not in self.scope.rename:
            value = self._resolve(node)
            if isinstance(value, (bool, int, float, np.integer, np.floating)):
                return value.item() if isinstance(value, np.generic) else value
        if isinstance(node, ast.Attribute) and self._module(node.value) is not None:
            value = getattr(self._module(node.value), node.attr, None)
            if isinstance(value, float):
                return value
        raise self.error(f"`{what}` must be a constant here, not `{ast.unparse(node)}`", node,
                         what)

    def _reduction_params(self, op, arg_nodes, node, what):
        names = table.REDUCTION_PARAMS.get(op.name, table.DEFAULT_PARAMS)
        if len(arg_nodes) > len(names):
            raise self.error(f"{what} takes at most {len(names)} arguments after the array here",
                             node, "Call")
        params = {n: self.static_value(a, n) for n, a in zip(names, arg_nodes)}
        for keyword in node.keywords:
            if keyword.arg not in table.KEYWORDS or keyword.arg in params \
                    or (keyword.arg == "ord" and op.name != "norm"):
                raise self.error(f"keyword `{keyword.arg}=` is not supported by {what}", node,
                                 "keyword")
            params[keyword.arg] = self.static_value(keyword.value, keyword.arg)
        axis = params.get("axis")
        if not (axis is None or _is_int(axis)
                or (isinstance(axis, tuple) and all(_is_int(a) for a in axis))):
            raise self.error(f"`axis` must be an int or a tuple of ints, not {axis!r}", node,
                             "axis")
        keepdims = params.get("keepdims", False)
        if not isinstance(keepdims, bool):
            raise self.error("`keepdims` must be True or False", node, "keepdims")
        order = params.get("ord")
        if order not in (None, 1, 2, math.inf):
            raise self.error(f"norm of order {order!r} is not supported (None, 1, 2, np.inf)",
                             node, "ord")
        op = dataclasses.replace(op, axis=axis, keepdims=keepdims, ord=order)
        statics = [static_node(params[n]) for n in names[:len(arg_nodes)]]
        keywords = [ast.keyword(arg=k.arg, value=static_node(params[k.arg]))
                    for k in node.keywords if not (k.arg == "keepdims" and not keepdims)]
        # (keepdims=False is the default, and Numba takes no keepdims at all)
        return op, statics, keywords

    def _reshape_params(self, op, arg_nodes, node, what):
        if op.ndim is not None:  # ravel / flatten
            if arg_nodes:
                raise self.error(f"{what} takes no arguments here", node, "Call")
            return op, []
        if not arg_nodes:
            raise self.error(f"{what} needs a shape", node, "Call")
        like = self._shape_of_local(arg_nodes[0]) if len(arg_nodes) == 1 else None
        if like is not None:  # np.reshape(y, np.shape(t)), y.reshape(t.shape): t's kind
            return table.Reshape(like=like), [ast.Attribute(
                value=ast.Name(id=like, ctx=ast.Load()), attr="shape", ctx=ast.Load())]
        shape = [self.plain(a)[0] for a in arg_nodes]
        parts = shape[0].elts if len(shape) == 1 and isinstance(shape[0], ast.Tuple) else shape
        ones = frozenset(i for i, p in enumerate(parts)
                         if isinstance(p, ast.Constant) and p.value == 1)
        return table.Reshape(len(parts), ones), shape

    def _shape_of_local(self, node):
        """The emitted name of t in `np.shape(t)` or `t.shape` (t a local), else None."""
        if isinstance(node, ast.Attribute) and node.attr == "shape":
            base = node.value
        elif isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords \
                and isinstance(node.func, ast.Attribute) and node.func.attr == "shape" \
                and self._module(node.func.value) is np:
            base = node.args[0]
        else:
            return None
        if isinstance(base, ast.Name) and base.id in self.scope.rename:
            return self.scope.rename[base.id]
        return None

    def _maybe_operand(self, node):
        if isinstance(node, ast.Name) and node.id in self.scope.rename:
            return self.scope.rename[node.id]
        return None

    def method_call(self, node, out, origin, target):
        func = node.func
        op = table.METHODS.get(func.attr)
        if op is None:
            raise self.error(f"method `.{func.attr}()` is not supported", node, "Call")
        receiver = self.name_operand(func.value, out, origin, f".{func.attr}()")
        spelling = ast.Attribute(value=operand_node(receiver), attr=func.attr, ctx=ast.Load())
        return self.call_op(op, spelling, [receiver], node, f"`.{func.attr}()`", out, origin,
                            target)

    def _module(self, node):
        """The module a dotted name means (`np`, `math`, `np.linalg`), or None."""
        if isinstance(node, ast.Name):
            if node.id in self.scope.rename:
                return None
            try:
                value = self.scope.lookup(node.id)
            except KeyError:
                return None
        elif isinstance(node, ast.Attribute):
            base = self._module(node.value)
            value = getattr(base, node.attr, None) if base is not None else None
        else:
            return None
        return value if isinstance(value, types.ModuleType) else None

    def _callee(self, node):
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in self.scope.rename:
                raise self.error(f"calling the local value `{func.id}` is not supported", node,
                                 "Call")
            return self._resolve(func)
        if isinstance(func, ast.Attribute) and (isinstance(func.value, ast.Name)
                                                or self._module(func.value) is not None):
            module = self._module(func.value)
            if module is None:
                module = self._resolve(func.value)
            if module in table.MODULES:
                return getattr(module, func.attr, None)
            raise self.error(f"`{ast.unparse(func)}` is not a numpy or math function", node,
                             "Call")
        raise self.error(f"call to `{ast.unparse(func)}` is not supported", node, "Call")

    def _user_function(self, node):
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.scope.functions:
            return self.scope.functions[func.id]
        if isinstance(func, ast.Name) and func.id not in self.scope.rename:
            try:
                obj = self.scope.lookup(func.id)
            except KeyError:
                return None
        elif isinstance(func, ast.Attribute):
            # `helpers.energy(x)`: a function of the user's own module, inlined like a local one
            module = self._module(func.value)
            if module is None or module in table.MODULES or module.__name__.split(".")[0] in (
                    "numpy", "math", "builtins"):
                return None
            obj = getattr(module, func.attr, None)
        else:
            return None
        obj = same_values(obj) or obj
        if isinstance(obj, types.FunctionType) and not _hashable_known(obj):
            return obj
        return None

    # -- plain integer code (indices, shapes) ---------------------------------------------------

    def plain(self, node):
        """Check integer/slice code and rename its locals; returns (ast, names read)."""
        reads = []

        def visit(n):
            struct = self._struct_of(n)
            if struct is not None:
                return static_node(self._struct_constant(struct, n))
            if isinstance(n, ast.Name):
                if n.id in self.scope.rename:
                    name = self.scope.rename[n.id]
                    reads.append(name)
                    return ast.Name(id=name, ctx=ast.Load())
                value = self._resolve(n)
                if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                    return ast.Constant(int(value))
                raise self.error(f"`{n.id}` cannot appear in an index or a shape", n, "Name")
            if isinstance(n, ast.Constant):
                if n.value is None or isinstance(n.value, (int, float)):
                    return ast.Constant(n.value)
            if (isinstance(n, ast.Attribute) and n.attr == "newaxis"
                    and self._module(n.value) is np):
                return ast.Constant(None)  # np.newaxis is None
            if isinstance(n, ast.Slice):
                return ast.Slice(*(visit(p) if p is not None else None
                                   for p in (n.lower, n.upper, n.step)))
            if isinstance(n, ast.Tuple):
                return ast.Tuple(elts=[visit(e) for e in n.elts], ctx=ast.Load())
            if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub, ast.Mult,
                                                               ast.FloorDiv, ast.Mod)):
                return ast.BinOp(left=visit(n.left), op=n.op, right=visit(n.right))
            if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
                return ast.UnaryOp(op=n.op, operand=visit(n.operand))
            if (isinstance(n, ast.Subscript) and isinstance(n.value, ast.Attribute)
                    and n.value.attr == "shape"):
                return ast.Subscript(value=ast.Attribute(value=visit(n.value.value), attr="shape",
                                                         ctx=ast.Load()),
                                     slice=visit(n.slice), ctx=ast.Load())
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name) \
                    and n.value.id in self.scope.rename:  # len(m[0]), x.shape[...] of a row
                return ast.Subscript(value=visit(n.value), slice=visit(n.slice), ctx=ast.Load())
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and not n.keywords:
                if self._resolve(n.func) in _PLAIN_CALLS:
                    return ast.Call(func=ast.Name(id=n.func.id, ctx=ast.Load()),
                                    args=[visit(a) for a in n.args], keywords=[])
            raise self.error(f"`{ast.unparse(n)}` is not supported in an index or a shape", n,
                             type(n).__name__)

        return visit(node), reads

    # -- inlining user functions ----------------------------------------------------------------

    def inline(self, node, out, origin, n_results, target=None):
        callee = self._user_function(node)
        if callee in self.inlining or callee is self.fun:
            name = callee.node.name if isinstance(callee, _Local) else callee.__name__
            raise self.error(f"recursive call to `{name}`: tapegrad.source inlines calls, so "
                             "it cannot differentiate recursion; write it as a loop, or use "
                             "tapegrad.grad (the traced face), which follows the calls as they run",
                             node, "Call")
        args, keywords = self._call_arguments(node, out, origin)
        with _explained(callee):
            return self._inline(callee, args, keywords, node, out, origin, n_results, target)

    def _inline(self, callee, args, keywords, node, out, origin, n_results, target):
        if isinstance(callee, _Local):
            home = callee.scope
            callee_node, filename, offset, lines = (callee.node, home.filename,
                                                    home.line_offset, home.lines)
            defaults, fun = callee.defaults, home.fun
        else:
            callee_node, filename, offset, lines = _parse(callee)
            defaults, fun = None, callee
        outer = self.scope
        prefix = callee_node.name
        own = self._local_names(callee_node)
        rename = {n: self.namer.fresh(f"{prefix}_{n}") for n in sorted(own)}
        if isinstance(callee, _Local):  # the enclosing function's variables, as closures
            rename = {**{n: v for n, v in home.rename.items() if n not in own}, **rename}
        self.scope = _Scope(fun, callee_node, filename, offset, lines, rename, self.reads)
        if isinstance(callee, _Local):
            self.scope.functions = {n: f for n, f in home.functions.items() if n not in own}
        self.inlining.append(callee)
        try:
            spec = callee_node.args
            named = [a.arg for a in spec.args]
            if spec.vararg:
                if keywords:
                    raise self.error(f"`{prefix}` takes no keyword arguments here", node,
                                     "Call", scope=outer)
                params = self._parameters(callee_node, len(args),
                                          lambda name: self.namer.fresh(f"{prefix}_{name}"))
                values, names = list(args), [None] * len(params)
            else:
                if len(args) > len(named):
                    raise self.error(f"`{prefix}` takes {len(named)} arguments", node, "Call",
                                     scope=outer)
                if defaults is None:
                    defaults = {k: self._value_operand(v, k, callee_node)
                                for k, v in _default_values(callee).items()}
                params, values, names = [], [], named + [a.arg for a in spec.kwonlyargs]
                for k, name in enumerate(names):
                    if k < len(args) and k < len(named):
                        value = args[k]
                    elif name in keywords:
                        value = keywords.pop(name)
                    elif name in defaults:
                        value = defaults[name]
                    else:
                        raise self.error(f"`{prefix}` needs its argument `{name}`", node,
                                         "Call", scope=outer)
                    params.append(rename[name])
                    values.append(value)
                if keywords:
                    raise self.error(f"`{prefix}` has no parameter `{next(iter(keywords))}`",
                                     node, "Call", scope=outer)
            assigned = _stored(callee_node.body)
            for param, arg, name in zip(params, values, names):
                self._bind(param, arg, out, origin)
                if isinstance(arg, ir.Const) and name is not None and name not in assigned:
                    self.fixed[param] = arg.value  # a static argument (keepdims=flag, axis=k)
            if n_results == 1 and target is not None and target not in rename:
                results = [target]
            elif n_results == 1:
                # the caller's `b = mul(a, a)` with `def mul(a, b)`: the callee's own b must not
                # become the caller's; a fresh result is copied to the target by the caller
                results = [self.namer.fresh(f"{prefix}_result")]
            else:
                results = [self.namer.fresh(f"{prefix}_result") for _ in range(n_results)]
            flag = self.namer.fresh(f"{prefix}_returned")
            rename.update({name: name for name in results + [flag]})
            body, flag_used = restructure(self._appends_filled(callee_node.body), results, flag,
                                          self._located, self._fresh_local)
            if flag_used:
                out.append(self._set(flag, ir.Const(False), callee_node))
            self.block(body, out)
        finally:
            self.inlining.pop()
            self.scope = outer
        return results


@dataclasses.dataclass(eq=False)
class _Local:
    """A `def` or lambda inside the function: inlined at its calls."""
    node: ast.FunctionDef
    scope: _Scope  # where it was defined: its closures and globals
    defaults: dict  # parameter -> operand, evaluated at the `def`


def _stored(stmts):
    """The names that statements assign (nested blocks and local defs' bodies included)."""
    return {child.id for stmt in stmts for child in ast.walk(stmt)
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)}


def _default_values(fun):
    """{parameter: default value} of a Python function."""
    code = fun.__code__
    names = code.co_varnames[:code.co_argcount]
    values = dict(zip(names[len(names) - len(fun.__defaults__ or ()):], fun.__defaults__ or ()))
    values.update(fun.__kwdefaults__ or {})
    return values


def _located_like(new, node):
    """`new` (made by the normaliser) at `node`'s place in the user's source."""
    for child in ast.walk(new):
        if "lineno" in child._attributes and not hasattr(child, "lineno"):
            ast.copy_location(child, node)
    return new


class _NameSwap(ast.NodeTransformer):
    def __init__(self, renames):
        self.renames = renames

    def visit_Name(self, node):
        new = self.renames.get(node.id)
        return node if new is None else ast.copy_location(ast.Name(id=new, ctx=node.ctx), node)


@contextlib.contextmanager
def _explained(fun):
    """Errors inside a decorator's wrapper say that it is one, and what to pass instead."""
    try:
        yield
    except TransformError as exc:
        note = _decorated(fun)
        if not note or exc.construct == "decorator":
            raise
        raise TransformError(note + exc.message, filename=exc.filename, lineno=exc.lineno,
                             construct="decorator") from exc


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _broadcast_kinds(kinds, nodes):
    return broadcast(*kinds)


def _hashable(obj):
    try:
        hash(obj)
        return True
    except TypeError:
        return False


def _hashable_known(obj):
    return _hashable(obj) and obj in table.CALLS


def _empty_list(stmt):
    """`xs` of `xs = []`, else None."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
            and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.List) \
            and not stmt.value.elts:
        return stmt.targets[0].id
    return None


def _append_of(stmt, name):
    """The value of a statement `name.append(value)`, else None."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        call = stmt.value
        if isinstance(call.func, ast.Attribute) and call.func.attr == "append" \
                and isinstance(call.func.value, ast.Name) and call.func.value.id == name \
                and len(call.args) == 1 and not call.keywords:
            return call.args[0]
    return None


def _mentions(stmt, name):
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(stmt))


def _has_jump(stmts):
    """A `break` or `continue` of the loop these statements are the body of."""
    for stmt in stmts:
        if isinstance(stmt, (ast.Break, ast.Continue)):
            return True
        if isinstance(stmt, ast.If) and (_has_jump(stmt.body) or _has_jump(stmt.orelse)):
            return True
    return False


def _has_break(stmts):
    for stmt in stmts:
        if isinstance(stmt, ir.Break):
            return True
        if isinstance(stmt, ir.If) and (_has_break(stmt.body) or _has_break(stmt.orelse)):
            return True
    return False


def normalise(fun, n_args=None):
    """`fun` in normal form; n_args (the number of arguments of the call) gives `*args` its
    values."""
    return Normaliser(fun, n_args).run()
