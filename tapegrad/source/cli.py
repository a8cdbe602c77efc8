"""`tapegrad grad-source FILE.py:FUNC [--argnums ...] [--kinds ...]`: print derivative code."""
import argparse
import importlib.util
import inspect
import os
import sys

from .emit import emit
from .errors import TransformError
from .kinds import FLOAT, parse_kind


def _load_function(target):
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise SystemExit(f"grad-source: expected FILE.py:FUNC, got {target!r}")
    if not os.path.exists(path):
        raise SystemExit(f"grad-source: no file {path}")
    module_name = "_tapegrad_grad_source_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # inspect.getsource finds the file through the module
    spec.loader.exec_module(module)
    fun = getattr(module, name, None)
    if fun is None:
        raise SystemExit(f"grad-source: {path} has no function {name!r}")
    return fun


def grad_source_main(argv):
    parser = argparse.ArgumentParser(
        prog="tapegrad grad-source",
        description="Print the derivative source that tapegrad.source emits for FILE.py:FUNC.")
    parser.add_argument("target", help="FILE.py:FUNC")
    parser.add_argument("--argnums", type=int, nargs="+", default=[0],
                        help="positions of the arguments to differentiate (default: 0)")
    parser.add_argument("--kinds", default=None,
                        help="comma-separated argument kinds: float, int, bool, array (= float1d), "
                             "float2d, int1d, ... (default: float for every argument)")
    parser.add_argument("--value", action="store_true",
                        help="emit value_and_grad (returns the value too)")
    args = parser.parse_args(argv)
    fun = _load_function(args.target)
    n_params = len(inspect.signature(fun).parameters)
    try:
        kinds = tuple(parse_kind(k) for k in args.kinds.split(",")) if args.kinds \
            else (FLOAT,) * n_params
    except ValueError as exc:
        parser.error(str(exc))
    argnums = args.argnums[0] if len(args.argnums) == 1 else tuple(args.argnums)
    mode = "value_and_grad" if args.value else "grad"
    try:
        print(emit(fun, argnums, kinds, mode).source, end="")
    except TransformError as exc:
        print(f"tapegrad grad-source: {exc}", file=sys.stderr)
        return 1
    return 0

