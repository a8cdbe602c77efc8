"""Cleanup of emitted code: no dead code, few temporaries.

Passes over the function body, repeated until nothing changes:
- dead stores: assignments to names that are not read afterwards are dropped (liveness over
  the structured code; loops iterate to a fixed point);
- `a_bar = 0.0` followed by `a_bar += e` (nothing reading `a_bar` in between) becomes `a_bar = e`;
- a generated temporary used once, later in the same block, is substituted into that use.
"""
import ast
import copy


def _loads(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _stores(node):
    names = {n.id for n in ast.walk(node)
             if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for n in ast.walk(node):
        if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
            names.add(n.target.id)
        # an element store changes the array: `a[i] = v` counts as a store of `a`
        targets = n.targets if isinstance(n, ast.Assign) else [n.target] \
            if isinstance(n, ast.AugAssign) else []
        for target in targets:
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                names.add(target.value.id)
    return names


def _pure(expr):
    """No side effects: stack pops and appends are the only impure calls emitted code makes."""
    for n in ast.walk(expr):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) \
                and n.func.attr in ("pop", "append"):
            return False
    return True


class _Liveness:
    def __init__(self, keep_augmented):
        self.keep_augmented = keep_augmented  # arrays updated in place: never dropped
        self.live_after = {}
        self.changed = False

    def block(self, stmts, live, loop_live):
        out = []
        for stmt in reversed(stmts):
            kept, live = self.stmt(stmt, live, loop_live)
            out.extend(reversed(kept))
        out.reverse()
        return out, live

    def stmt(self, stmt, live, loop_live):
        self.live_after[id(stmt)] = set(live)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            if name not in live and _pure(stmt.value):
                self.changed = True
                return [], live
            return [stmt], (live - {name}) | _loads(stmt.value)
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            name = stmt.target.id
            if name not in live and name not in self.keep_augmented and _pure(stmt.value):
                self.changed = True
                return [], live
            return [stmt], live | {name} | _loads(stmt.value)
        if isinstance(stmt, ast.If):
            body, live_body = self.block(stmt.body, set(live), loop_live)
            orelse, live_else = self.block(stmt.orelse, set(live), loop_live)
            if not body and not orelse and _pure(stmt.test):
                self.changed = True
                return [], live
            stmt.body = body or [ast.Pass()]
            stmt.orelse = orelse
            return [stmt], live_body | live_else | _loads(stmt.test)
        if isinstance(stmt, (ast.For, ast.While)):
            head = _loads(stmt.iter) if isinstance(stmt, ast.For) else _loads(stmt.test)
            live_loop = set(live)
            while True:
                changed_before = self.changed
                # a probe on a copy: the pass rewrites nested blocks in place, and must not drop
                # stores whose reads (in the next trip) it has not seen yet
                body, live_in = self.block(copy.deepcopy(stmt.body), live_loop | live,
                                           live_loop | live)
                self.changed = changed_before
                if live_in <= live_loop:
                    break
                live_loop |= live_in
            stmt.body, live_in = self.block(stmt.body, live_loop | live, live_loop | live)
            if not stmt.body:
                stmt.body = [ast.Pass()]
            return [stmt], live | live_loop | head
        if isinstance(stmt, (ast.Break, ast.Continue)):
            return [stmt], set(loop_live)
        if isinstance(stmt, ast.Return):
            return [stmt], _loads(stmt.value) if stmt.value else set()
        if isinstance(stmt, ast.Pass):
            return [], live
        # stores into arrays, pushes, asserts, comment markers: kept, and everything they read
        return [stmt], live | _loads(stmt) | _subscript_bases(stmt)


def _subscript_bases(stmt):
    return {n.value.id for n in ast.walk(stmt) if isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name)}


def _fold_zero_then_add(stmts, scalars):
    """`a = 0.0 ... a += e` -> `a = e` in one block, when nothing in between mentions `a`."""
    changed = False
    for i, stmt in enumerate(stmts):
        if not (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
                and isinstance(stmt.value, ast.Constant) and stmt.value.value == 0.0
                and stmt.targets[0].id in scalars):
            continue
        name = stmt.targets[0].id
        for j in range(i + 1, len(stmts)):
            later = stmts[j]
            if isinstance(later, ast.AugAssign) and isinstance(later.target, ast.Name) \
                    and later.target.id == name and isinstance(later.op, ast.Add) \
                    and name not in _loads(later.value):
                stmts[j] = ast.Assign(targets=[ast.Name(id=name, ctx=ast.Store())],
                                      value=later.value)
                stmts[i] = ast.Pass()
                changed = True
                break
            if name in _loads(later) | _stores(later):
                break
    return [s for s in stmts if not isinstance(s, ast.Pass)] or stmts[:1], changed


class _Substitute(ast.NodeTransformer):
    def __init__(self, name, value):
        self.name = name
        self.value = value

    def visit_Name(self, node):
        if node.id == self.name and isinstance(node.ctx, ast.Load):
            return self.value
        return node


def _count_loads(node, name):
    return sum(1 for n in ast.walk(node) if isinstance(n, ast.Name) and n.id == name
               and isinstance(n.ctx, ast.Load))


def _substitute_single_uses(stmts, live_after, substitutable):
    changed = False
    i = 0
    while i < len(stmts):
        stmt = stmts[i]
        if (isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id in substitutable and _pure(stmt.value)):
            name = stmt.targets[0].id
            reads = _loads(stmt.value)
            for j in range(i + 1, len(stmts)):
                later = stmts[j]
                mentioned = name in _loads(later) | _stores(later)
                if mentioned:
                    simple = isinstance(later, (ast.Assign, ast.AugAssign, ast.Expr))
                    if (simple and _count_loads(later, name) == 1 and name not in _stores(later)
                            and name not in live_after.get(id(later), {name})):
                        _Substitute(name, stmt.value).visit(later)
                        del stmts[i]
                        changed = True
                        i -= 1
                    break
                if reads & _stores(later):
                    break
        i += 1
    return changed


def statements(body):
    """Every statement of `body`, nested ones after their loop or `if`, in order."""
    for stmt in body:
        yield stmt
        for field in ("body", "orelse"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list):
                yield from statements(inner)


def _blocks(stmts):
    yield stmts
    for stmt in stmts:
        for field in ("body", "orelse"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                yield from _blocks(inner)


class _DoubleNegation(ast.NodeTransformer):
    """-(-x) -> x: rules chained through negations produce these."""

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.UnaryOp) \
                and isinstance(node.operand.op, ast.USub):
            return node.operand.operand
        return node


def _is_comment(stmt, marker):
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == marker)


def drop_orphan_comments(body, marker):
    """A comment whose code was all cleaned away goes too."""
    for block in list(_blocks(body)):
        kept = []
        for i, stmt in enumerate(block):
            nxt = block[i + 1] if i + 1 < len(block) else None
            if _is_comment(stmt, marker) and (nxt is None or _is_comment(nxt, marker)
                                              or isinstance(nxt, ast.Return)):
                continue
            kept.append(stmt)
        block[:] = kept or [ast.Pass()]
    return body


def optimise(body, keep, substitutable=(), scalars=(), arrays=()):
    """Clean `body` (a function body); names in `keep` are results and are never dropped."""
    substitutable = set(substitutable) - set(keep)
    for _ in range(20):
        liveness = _Liveness(set(arrays))
        body, _ = liveness.block(body, set(keep), set())
        changed = liveness.changed
        for block in list(_blocks(body)):
            folded, did = _fold_zero_then_add(block, set(scalars))
            if did:
                block[:] = folded
                changed = True
        liveness = _Liveness(set(arrays))
        body, _ = liveness.block(body, set(keep), set())
        for block in list(_blocks(body)):
            changed |= _substitute_single_uses(block, liveness.live_after, substitutable)
        if not changed:
            break
    for stmt in body:
        _DoubleNegation().visit(stmt)
    return body
