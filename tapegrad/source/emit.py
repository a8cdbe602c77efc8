"""Put the pieces together: normal form -> analysis -> adjoint AST -> cleanup -> source (astor)."""
import ast
import re
from dataclasses import dataclass

import astor
import numpy as np

from .adjoint import COMMENT, ORIGIN, Emitter
from .analysis import analyse
from .errors import TransformError
from .fuse import fuse
from .kinds import kind_of_value
from .normalise import normalise
from .optimise import drop_orphan_comments, optimise, statements
from .symbol import literal


@dataclass
class Emitted:
    source: str
    name: str  # of the emitted function
    constants: dict  # arrays the emitted code reads as globals (closures over constants)
    origins: dict = None  # line of `source` -> ir.Origin (the user's line it comes from)
    function: str = ""  # the user's function, for messages
    filename: str = "<unknown>"
    reads: dict = None  # globals and closure values it was made from (normalise.stale)


def emit(fun, argnums, arg_kinds, mode="value_and_grad", fused=False):
    """Emit derivative source for `fun` specialised to `arg_kinds` (one Kind per parameter).
    mode: "grad" returns the gradient, "value_and_grad" returns (value, gradient).
    fused: elementwise array statements as fused loops (fuse.py), for code Numba compiles."""
    fn = normalise(fun, len(arg_kinds))
    if len(arg_kinds) != len(fn.params):
        raise TransformError(f"{fn.name} takes {len(fn.params)} arguments, got "
                             f"{len(arg_kinds)}", filename=fn.filename, construct="Call")
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for num in nums:
        if not 0 <= num < len(fn.params):
            raise TransformError(f"argnums {num} is out of range for {fn.name}",
                                 filename=fn.filename, construct="argnums")
        if arg_kinds[num].dtype == "bool":
            raise TransformError(f"cannot differentiate with respect to the flag "
                                 f"`{fn.params[num]}`", filename=fn.filename, construct="argnums")
    wrt = [fn.params[n] for n in nums]
    known = dict(zip(fn.params, arg_kinds))
    known.update({name: kind_of_value(value) for name, value in fn.constants.items()})
    analysis = analyse(fn, known, wrt)
    emitter = Emitter(fn, analysis, wrt)
    body, grads, value = emitter.build()
    grad_text = grads[0] if single else f"({', '.join(grads)}{',' if len(grads) == 1 else ''})"
    returned = grad_text if mode == "grad" else f"{value}, {grad_text}"
    body += ast.parse(f"return {returned}").body
    name = f"{'grad' if mode == 'grad' else 'value_and_grad'}_{fn.name}"
    body = optimise(body, keep=set(), substitutable=emitter.generated_temps(),
                    scalars=emitter.scalar_names(), arrays=emitter.array_names())
    helpers = {}
    if fused:
        kinds = dict(analysis.kinds)
        kinds.update({bar: analysis.kinds[name] for name, bar in emitter.bars.items()})
        body, helpers = fuse(body, kinds, emitter.namer, emitter.generated_temps(),
                             emitter.array_names())
    body = drop_orphan_comments(body, COMMENT)
    args = ast.arguments(posonlyargs=[], args=[ast.arg(arg=p) for p in fn.params], vararg=None,
                         kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[])
    doc = ast.Expr(ast.Constant(f"{'Gradient' if mode == 'grad' else 'Value and gradient'} of "
                                f"{fn.name} with respect to {', '.join(wrt)} "
                                f"(emitted by tapegrad.source)."))
    func = ast.FunctionDef(name=name, args=args, body=[doc] + body, decorator_list=[],
                           returns=None, type_comment=None)
    if fused:
        _rename_numba_versions(func, kinds)
    scalars = {k: v for k, v in fn.constants.items() if not hasattr(v, "shape")}
    prelude = [ast.parse(f"{k} = {literal(v)}").body[0] for k, v in scalars.items()]
    module = ast.Module(body=prelude + [func], type_ignores=[])
    ast.fix_missing_locations(module)
    texts = _number_comments(module)
    marked = astor.to_source(module)
    text = _comments(marked, texts)
    header = "import math\n\nimport numpy as np\n"
    if helpers:  # scalar functions for fused loops (Numba compiles them; fuse.py says why)
        header += "from tapegrad_jit.source_jit import " + ", ".join(
            name if name == used else f"{name} as {used}" for name, used in helpers.items()) + "\n"
    arrays = [k for k, v in fn.constants.items() if hasattr(v, "shape")]
    if arrays:
        header += "".join(f"# {k}: array from the enclosing scope\n" for k in arrays)
    header += "\n\n"
    offset = header.count("\n")
    origins = {line + offset: origin for line, origin in _origins(module, marked).items()}
    # captured arrays are constants of the emitted code, as Numba freezes them under jit=True:
    # copies, so that jit=False does not see later in-place changes that jit=True would not
    return Emitted(header + text, name,
                   {k: np.array(v, copy=True) for k, v in fn.constants.items()
                    if hasattr(v, "shape")},
                   origins, fn.name, fn.filename, fn.reads)


def _rename_numba_versions(func, kinds):
    """Numba names the versions of a variable bound more than once `z.1`, `z.2`, and spells
    them `z_1`, `z_2` in the arrays of an array expression: an emitted array `z_2` beside them
    fails its compile ("AssertionError: 'z_2_2' not unique"). Such an array becomes `z_v2`."""
    bound = {arg.arg: 1 for arg in func.args.args}
    fixed = set(bound) | {n.target.id for n in ast.walk(func) if isinstance(n, ast.For)
                          and isinstance(n.target, ast.Name)}
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound[node.id] = bound.get(node.id, 0) + 1
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            bound[node.target.id] = bound.get(node.target.id, 0) + 1
    names = set(bound) | {n.id for n in ast.walk(func) if isinstance(n, ast.Name)}
    renames = {}
    for name in sorted(bound):
        found = re.fullmatch(r"(.+)_(\d+)", name)
        if found and bound.get(found.group(1), 0) > 1 and name not in fixed \
                and (name not in kinds or kinds[name].is_array):
            new = f"{found.group(1)}_v{found.group(2)}"
            while new in names:
                new += "_"
            names.add(new)
            renames[name] = new
    for node in ast.walk(func):
        if isinstance(node, ast.Name) and node.id in renames:
            node.id = renames[node.id]


def _origins(module, text):
    """Printed line -> origin of the statement printed there: the printed text parses back to
    the same statements in the same order (comment markers are one line each, as comments)."""
    printed = list(statements(ast.parse(text).body))
    built = list(statements(module.body))
    if len(printed) != len(built):
        return {}
    origins = {}
    for old, new in zip(built, printed):
        origin = getattr(old, ORIGIN, None)
        if origin is not None:  # a loop or an `if`: its header line (its body has its own)
            last = new.lineno if hasattr(new, "body") else new.end_lineno or new.lineno
            origins.update({line: origin for line in range(new.lineno, last + 1)})
    return origins


def _number_comments(module):
    """Swap each marker's text for a number, so that astor never wraps a marker's line."""
    texts = []
    for node in ast.walk(module):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == COMMENT):
            texts.append(node.args[0].value)
            node.args[0] = ast.Constant(len(texts) - 1)
    return texts


def _comments(text, texts):
    """Turn the comment marker statements back into `# ...` lines."""
    pattern = re.compile(rf"^(\s*){COMMENT}\((\d+)\)$", re.M)
    return pattern.sub(lambda m: f"{m.group(1)}# {texts[int(m.group(2))]}", text)
