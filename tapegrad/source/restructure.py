"""Control flow made explicit before normalisation: afterwards a function body has

- no `return` (each becomes an assignment to the result variable; inside loops it also sets a
  `returned` flag and breaks, and the code after such a loop runs under `if not returned`),
- no `while test:` (it becomes `while True:` whose body is `if test: ... else: break`),
- `break` / `continue` only as the last statement of a block, with the statements that followed
  the enclosing `if` moved into the branches that fall through.

Then the adjoint sweep can replay branches from their conditions alone: a statement that did not
run in the forward sweep is never reversed.
"""
import ast
import copy

from .errors import TransformError


class _State:
    def __init__(self, result_names, flag_name, located, fresh):
        self.result_names = result_names  # one name, or several for `return a, b`
        self.flag_name = flag_name
        self.flag_used = False
        self.located = located
        self.fresh = fresh  # a new local name from a base (a `for ... else` flag)


def _contains(stmts, types, into_loops):
    for stmt in stmts:
        for node in _walk(stmt, into_loops):
            if isinstance(node, types):
                return True
    return False


def _walk(stmt, into_loops):
    yield stmt
    if isinstance(stmt, ast.If):
        for child in stmt.body + stmt.orelse:
            yield from _walk(child, into_loops)
    elif isinstance(stmt, (ast.For, ast.While)) and into_loops:
        for child in stmt.body:
            yield from _walk(child, into_loops)


def _assign(name, value, like):
    node = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())], value=value)
    return ast.copy_location(node, like)


def _return_assignments(stmt, state):
    value = stmt.value
    if value is None:
        raise state.located("a bare `return` gives no value to differentiate", stmt, "Return")
    names = state.result_names
    if len(names) == 1:
        if isinstance(value, ast.Name) and value.id == names[0]:
            return []
        return [_assign(names[0], value, stmt)]
    if not isinstance(value, ast.Tuple) or len(value.elts) != len(names):
        raise state.located("every return of a helper must give the same number of values",
                            stmt, "Return")
    return [_assign(n, v, stmt) for n, v in zip(names, value.elts)]


def restructure_block(stmts, state, in_loop):
    out = []
    for index, stmt in enumerate(stmts):
        rest = stmts[index + 1:]
        if isinstance(stmt, ast.Return):
            out += _return_assignments(stmt, state)
            if in_loop:
                state.flag_used = True
                out.append(_assign(state.flag_name, ast.Constant(True), stmt))
                out.append(ast.copy_location(ast.Break(), stmt))
            return out
        if isinstance(stmt, (ast.Break, ast.Continue)):
            out.append(stmt)
            return out
        if isinstance(stmt, (ast.For, ast.While)) and stmt.orelse:
            # `else` runs when the loop ends without `break`: after it, or under a flag that
            # every break of this loop sets
            loop, after = copy.copy(stmt), stmt.orelse
            loop.orelse = []
            before = []
            if _contains(stmt.body, ast.Break, into_loops=False):
                flag = state.fresh("no_break")
                before = [_assign(flag, ast.Constant(True), stmt)]
                loop.body = _mark_breaks(stmt.body, flag)
                after = [ast.copy_location(ast.If(test=ast.Name(id=flag, ctx=ast.Load()),
                                                  body=after, orelse=[]), stmt)]
            out += restructure_block(before + [loop] + after + rest, state, in_loop)
            return out
        if isinstance(stmt, ast.While):
            test_true = isinstance(stmt.test, ast.Constant) and stmt.test.value is True
            body = stmt.body if test_true else [ast.copy_location(
                ast.If(test=stmt.test, body=stmt.body,
                       orelse=[ast.copy_location(ast.Break(), stmt)]), stmt)]
            stmt = ast.copy_location(ast.While(test=ast.Constant(True), body=body, orelse=[]), stmt)
        if isinstance(stmt, (ast.For, ast.While)):
            returns_inside = _contains(stmt.body, ast.Return, into_loops=True)
            stmt.body = restructure_block(stmt.body, state, in_loop=True)
            out.append(stmt)
            if returns_inside:
                # leave through every enclosing loop, then skip the rest of the function
                flag = ast.Name(id=state.flag_name, ctx=ast.Load())
                leave = ast.copy_location(ast.Return(value=_result_value(state)), stmt)
                guard = ast.copy_location(ast.If(test=flag, body=[leave], orelse=[]), stmt)
                out += restructure_block([guard] + rest, state, in_loop)
                return out
            continue
        if isinstance(stmt, ast.If):
            jumps = _contains([stmt], (ast.Return, ast.Break, ast.Continue), into_loops=False)
            if jumps and rest:
                # the statements after this `if` run only on paths that fall through
                stmt.body = stmt.body + copy.deepcopy(rest)
                stmt.orelse = (stmt.orelse or []) + copy.deepcopy(rest)
                stmt.body = restructure_block(stmt.body, state, in_loop) or [_pass(stmt)]
                stmt.orelse = restructure_block(stmt.orelse, state, in_loop)
                out.append(stmt)
                return out
            stmt.body = restructure_block(stmt.body, state, in_loop) or [_pass(stmt)]
            stmt.orelse = restructure_block(stmt.orelse, state, in_loop)
        out.append(stmt)
    return out


def _mark_breaks(stmts, flag):
    """stmts with `flag = False` before each `break` of their loop (not of loops inside)."""
    out = []
    for stmt in stmts:
        if isinstance(stmt, ast.Break):
            out.append(_assign(flag, ast.Constant(False), stmt))
        elif isinstance(stmt, ast.If):
            stmt = copy.copy(stmt)
            stmt.body, stmt.orelse = _mark_breaks(stmt.body, flag), _mark_breaks(stmt.orelse, flag)
        out.append(stmt)
    return out


def _pass(like):
    return ast.copy_location(ast.Pass(), like)


def _result_value(state):
    names = [ast.Name(id=n, ctx=ast.Load()) for n in state.result_names]
    return names[0] if len(names) == 1 else ast.Tuple(elts=names, ctx=ast.Load())


def restructure(body, result_names, flag_name, located, fresh):
    """Returns (new body, whether the `returned` flag is used). fresh(base) names a new local."""
    state = _State(result_names, flag_name, located, fresh)
    if not _contains(body, ast.Return, into_loops=True):
        raise located("the function has no `return`", body[0] if body else None, "Return")
    new_body = restructure_block(list(body), state, in_loop=False)
    return new_body, state.flag_used


__all__ = ["restructure", "TransformError"]
