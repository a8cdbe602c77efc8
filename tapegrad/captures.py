"""The Python values a traced function reads from outside its arguments, which select a jitted tape.

A tape bakes in every value its function read while it was traced. Python scalars that the function
reads from module globals or closures (`if x[0] > k`, `return x * k`, `cfg.k`, `params["k"]`) change
between calls without the function changing, so `jit` reads them again on every call and uses their
values, with the input signature, to pick a tape: a new value gives a new trace, never a stale one.

`captured(fun)` finds them once per trace by reading bytecode (without calling fun), so every
branch is covered, taken or not. It follows:
  * global names and closure cells of fun, with attribute and constant-subscript chains on them
    (`k`, `cfg.k`, `cfg.sub.k`, `params["k"]`, `consts[0]`),
  * lambdas, generator expressions and nested functions defined inside fun,
  * user functions fun reaches through those names (helpers, closures of closures, `mod.helper`),
    the functions that tapegrad transforms, `functools.partial` and bound methods wrap (`self.k`),
    and callable objects' `__call__`.
It does not follow: functions and module attributes of the standard library, NumPy, tapegrad and
installed packages (site-packages), values reached through calls or loops (`getattr(cfg, name)`,
`cfg.get("k")`, `for v in table`). A name that held an object or module when fun was traced is
followed through its attributes (`cfg.k` is watched) but not watched itself.
Scalars here are bool, int, float, complex, str, bytes, None, NumPy scalars, enum members and
tuples of these.
Arrays read this way are constants of the tape: rebinding the name to a scalar retraces, but a new
array (or an in-place change) is not seen; pass arrays that change as arguments.
"""
import builtins
import dis
import enum
import functools
import os
import sys
import types

import numpy as np

# enum members too: `if MODE is Mode.A` on a global branches like a scalar (keyed by identity)
_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.bool_, np.number, enum.Enum)
_NUMBERS = (float, complex, np.inexact)
_LOAD_ROOT = {"LOAD_GLOBAL": "global", "LOAD_NAME": "global", "LOAD_DEREF": "cell",
              "LOAD_CLASSDEREF": "cell", "LOAD_FAST": "local", "LOAD_FAST_CHECK": "local",
              "LOAD_FAST_BORROW": "local"}     # the last two: Python 3.12 and 3.14 spellings
_LOAD_ATTR = ("LOAD_ATTR", "LOAD_METHOD")
_MAX_FUNCTIONS = 200            # functions analysed per trace (bounds deep call graphs)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def _library_dirs():
    import sysconfig        # on first use: its data module costs ~10 ms of `import tapegrad`
    paths = sysconfig.get_paths()
    dirs = {os.path.dirname(os.path.abspath(np.__file__)),
            os.path.join(os.path.dirname(_PACKAGE_DIR), "tapegrad_jit"),
            *(paths[k] for k in ("stdlib", "purelib", "platlib"))}
    return tuple(os.path.join(d, "") for d in dirs)     # "/lib/python3.11/", not a prefix


class _Marker:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


MISSING = _Marker("<missing>")      # the name, attribute or item does not exist (now)
OPAQUE = _Marker("<array or object>")   # not a scalar: a constant of the tape


def is_scalar(value):
    if isinstance(value, tuple):
        return all(is_scalar(v) for v in value)
    return isinstance(value, _SCALARS)


_PLAIN = frozenset({int, bool, str, bytes, type(None)})


def value_key(value):
    """What identifies a captured value: scalars by type and value (NaN, 0.0 and -0.0 apart),
    functions by identity, anything else (arrays, objects) as one opaque constant."""
    kind = type(value)
    if kind in _PLAIN:
        return kind, value
    if isinstance(value, _NUMBERS):
        # NaN != NaN would retrace every call; 0.0 == -0.0 would reuse a tape for 1/k
        return (kind, repr(value)) if value != value or value == 0 else (kind, value)
    if isinstance(value, _SCALARS):
        return kind, value
    if kind is tuple:
        return (tuple, tuple(value_key(v) for v in value)) if is_scalar(value) else OPAQUE
    if kind is types.MethodType:    # a new object on every attribute read: key what it binds
        return kind, value.__func__, id(value.__self__)
    if kind is types.FunctionType or kind is functools.partial:
        return value        # rebinding a helper changes what is traced
    return OPAQUE


def _compile_key(reads, slow):
    """One generated function reading every location in a single tuple expression: the per-call
    cost of captures is a few dictionary and attribute reads, like the input signature."""
    namespace = {"_key": value_key, "slow": slow, "_plain": _PLAIN,
                 "_function": types.FunctionType}
    terms = []
    for n, (kind, root, name, chain) in enumerate(reads):
        namespace[f"r{n}"] = root
        term = location(n, kind, name, chain)
        # ints, strings and ordinary floats inline; everything else through value_key
        terms.append(f"((t{n}, v{n}) if (t{n} := type(v{n} := {term})) in _plain or t{n} is float "
                     f"and v{n} != 0 and v{n} == v{n} else v{n} if t{n} is _function "
                     f"else _key(v{n}))")
    source = ("def key():\n    try:\n        return (" + ", ".join(terms) + ",)\n"
              "    except Exception:\n        return slow()\n")
    exec(source, namespace)
    return namespace["key"]


def location(n, kind, name, chain):
    """The expression reading a location in generated code, its root bound to the name r<n>."""
    term = f"r{n}[{name!r}]" if kind == "global" else f"r{n}.cell_contents" if kind == "cell" \
        else f"r{n}"
    for step, item in chain:
        term += f".{item}" if step == "." else f"[{item!r}]"
    return term


def _read(kind, root, name, chain):
    value = root[name] if kind == "global" else root.cell_contents if kind == "cell" else root
    for step, item in chain:
        value = getattr(value, item) if step == "." else value[item]
    return value


class Captures:
    """Locations (root, chain) a function reads; `key()` gives their current values' keys."""

    def __init__(self, reads):
        self.reads = tuple(reads)
        # identity of the locations, to tell when a retrace found a different set
        self.identity = tuple((kind, id(root), name, chain) for kind, root, name, chain in reads)
        self.key = _compile_key(self.reads, self.read_slowly) if self.reads else tuple

    def __bool__(self):
        return bool(self.reads)

    def __len__(self):
        return len(self.reads)

    def read_slowly(self):
        """key(), one location at a time: a location that cannot be read gives MISSING."""
        out = []
        for read in self.reads:
            try:
                out.append(value_key(_read(*read)))
            except Exception:           # deleted name, empty cell, raising property
                out.append(MISSING)
        return tuple(out)

    def describe(self):
        """Readable names of the locations (for messages and tests)."""
        names = []
        for kind, root, name, chain in self.reads:
            text = name
            for step, item in chain:
                text += f".{item}" if step == "." else f"[{item!r}]"
            names.append(text)
        return names


def captured(fun):
    """The Captures of fun (see the module docstring for what is followed)."""
    walker = _Walker()
    walker.callable(fun)
    return Captures(walker.reads.values())


class _Walker:
    def __init__(self):
        self.reads = {}         # identity -> (kind, root, name, chain), in first-seen order
        self.seen = set()

    # ---- callables
    def callable(self, obj):
        if id(obj) in self.seen or len(self.seen) > _MAX_FUNCTIONS:
            return
        self.seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            self.function(obj, {})
        elif isinstance(obj, types.MethodType):
            if isinstance(obj.__func__, types.FunctionType):
                self.function(obj.__func__, {0: obj.__self__})
        elif isinstance(obj, functools.partial):
            if isinstance(obj.func, types.FunctionType):
                # arguments bound by the partial are roots like `self`: `partial(Model.loss, m)`
                bound = dict(enumerate(obj.args))
                bound.update(obj.keywords)
                self.function(obj.func, bound)
            else:
                self.callable(obj.func)
        elif type(obj).__module__.startswith("tapegrad") and "fun" in getattr(obj, "__dict__", ()):
            self.callable(obj.fun)          # Jitted, Vmapped
        elif not isinstance(obj, type):
            call = getattr(type(obj), "__call__", None)
            if isinstance(call, types.FunctionType):
                self.function(call, {0: obj})   # a callable object: `self.k` in __call__

    def function(self, fun, bound):
        """Analyse a Python function; bound maps parameters (by position or name) to the objects
        bound to them (a method's self, a partial's arguments)."""
        filename = fun.__code__.co_filename
        if not filename.startswith("<"):        # "<string>", "<stdin>": the user's code
            filename = os.path.abspath(filename)
        # tapegrad first: installed, it lives under site-packages too
        if filename.startswith(_PACKAGE_DIR + os.sep):
            # tapegrad's own wrappers (grad, value_and_grad, ...): follow what their closures wrap,
            # but their own flags are not the user's state
            for cell in fun.__closure__ or ():
                try:
                    contents = cell.cell_contents
                except ValueError:
                    continue
                if callable(contents):
                    self.callable(contents)
            return
        if filename.startswith(_library_dirs()):
            return
        code = fun.__code__
        cells = dict(zip(code.co_freevars, fun.__closure__ or ()))
        parameters = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        objects = {}
        for where, value in bound.items():
            name = parameters[where] if isinstance(where, int) and where < len(parameters) \
                else where
            if name in parameters:
                objects[name] = value
        self.code(code, fun.__globals__, cells, objects)

    # ---- bytecode
    def code(self, code, globals_, cells, objects):
        instructions = list(dis.get_instructions(code))
        i = 0
        while i < len(instructions):
            ins = instructions[i]
            kind = _LOAD_ROOT.get(ins.opname)
            i += 1
            if kind is None:
                continue
            name = ins.argval
            if kind == "global":
                if name not in globals_ and hasattr(builtins, name):
                    continue
                root = globals_
            elif kind == "cell":
                if name not in cells:
                    continue                # a local variable of fun that inner code shares
                root = cells[name]
            elif name in objects:
                kind, root = "object", objects[name]
            else:
                continue
            chain = []
            follow = self.location(kind, root, name, ())
            while follow and i < len(instructions):
                nxt = instructions[i]
                if nxt.opname in _LOAD_ATTR:
                    chain.append((".", nxt.argval))
                    i += 1
                elif (nxt.opname == "LOAD_CONST" and i + 1 < len(instructions)
                      and instructions[i + 1].opname == "BINARY_SUBSCR"
                      and isinstance(nxt.argval, (int, str))):
                    chain.append(("[]", nxt.argval))
                    i += 2
                else:
                    break
                follow = self.location(kind, root, name, tuple(chain))
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                # nested def/lambda/genexpr: globals are shared; a free variable is one of fun's
                # closure cells when fun received it from outside, else a local of fun
                inner = {n: cells[n] for n in const.co_freevars if n in cells}
                self.code(const, globals_, inner, {})

    def location(self, kind, root, name, chain):
        """Record a location if it holds state; False when its attributes are not followed."""
        identity = (kind, id(root), name, chain)
        if identity in self.reads:
            return True
        try:
            value = _read(kind, root, name, chain)
        except Exception:
            if kind == "global" and not chain:
                self.reads[identity] = (kind, root, name, chain)   # defined later: watch it
            return False
        if kind == "object" and not chain:
            return True                     # self itself: its attributes are the state
        if isinstance(value, types.ModuleType):
            return not _is_library_module(value)   # np.pi, math.inf: not the user's state
        if is_scalar(value) or isinstance(value, np.ndarray):
            self.reads[identity] = (kind, root, name, chain)
        elif isinstance(value, (types.FunctionType, types.MethodType, functools.partial)):
            self.reads[identity] = (kind, root, name, chain)
            self.callable(value)
        elif callable(value) and not isinstance(value, (type, types.BuiltinFunctionType)):
            self.callable(value)
        return True


def _is_library_module(module):
    if module.__name__ in sys.builtin_module_names:
        return True
    filename = getattr(module, "__file__", None)
    if filename is None:
        return False                # made at run time (types.ModuleType): the user's
    filename = os.path.abspath(filename)
    return filename.startswith(_library_dirs()) or filename.startswith(_PACKAGE_DIR + os.sep)
