"""The `tapegrad` command: demo, grad-source FILE:FUNC, tape FILE:FUNC, bench.

Every subcommand has its own --help and takes its options in any order; errors a user can cause
(a missing file or function, a bad --arg expression) end with one line naming the fix, not a
traceback.
"""
import argparse
import importlib
import importlib.util
import inspect
import os
import runpy
import sys
import textwrap
import traceback
from pathlib import Path

import numpy as np

# A source checkout holds tapegrad/ beside benchmarks/ and examples/; an install holds them as
# the packages tapegrad_benchmarks and tapegrad_examples (see setup.py).
CHECKOUT = Path(__file__).resolve().parents[1]

DEMO_SOURCE = '''\
import numpy as np
import tapegrad as tg

@tg.jit
@tg.value_and_grad
def log_density(theta):
    """An HMC-style target: a Gaussian with a softplus-shaped tail."""
    return -0.5 * np.sum(theta * theta) - np.sum(np.log1p(np.exp(theta - 2.0)))
'''

EXAMPLES_HELP = """\
examples:
  tapegrad demo
  tapegrad grad-source model.py:energy --argnums 0
  tapegrad grad-source model.py:energy --arg "np.ones(3)"
  tapegrad grad-source model.py:pendulum --argnums 2 3 --kinds float,float,float,float,float,int
  tapegrad tape model.py:energy --grad --arg "np.ones(3)"
  tapegrad bench --quick"""


class UserError(Exception):
    """A mistake on the command line or in the user's file: printed as one message, exit 2."""


def _banner(title):
    print()
    print("=" * 78)
    print(title)
    print("=" * 78)


def _companion(installed, folder):
    """In a source checkout its `folder` package (imported as `folder`), else the installed
    package `installed`, else None.

    A checkout's folder is imported under its own name even where an editable install also maps
    `installed` to it: Numba's on-disk cache of the benchmark kernels records the module name,
    so one file must keep one name (`python -m benchmarks` uses `benchmarks`)."""
    if (CHECKOUT / "setup.py").is_file() and (CHECKOUT / folder / "__init__.py").is_file():
        if str(CHECKOUT) not in sys.path:
            sys.path.insert(0, str(CHECKOUT))
        return importlib.import_module(folder)
    try:
        return importlib.import_module(installed)
    except ImportError:
        return None


def benchmarks_package():
    """tapegrad's benchmarks (installed as tapegrad_benchmarks, or benchmarks/ of a checkout)."""
    return _companion("tapegrad_benchmarks", "benchmarks")


def examples_package():
    """tapegrad's examples (installed as tapegrad_examples, or examples/ of a checkout)."""
    return _companion("tapegrad_examples", "examples")


# ---------------------------------------------------------------------------------------------
# FILE.py:FUNC and --arg values, shared by `tape` and `grad-source`
# ---------------------------------------------------------------------------------------------

def load_function(target):
    """FILE.py:FUNC -> the function object; UserError naming the fix when that fails."""
    path, _, name = target.rpartition(":")
    if not path or not name:
        raise UserError(f"expected FILE.py:FUNC, got {target!r} (e.g. model.py:energy)")
    if not os.path.isfile(path):
        where = os.path.abspath(path)
        raise UserError(f"no file {path!r} (looked for {where}); give the path of a Python file "
                        f"relative to {os.getcwd()}, then :FUNC")
    module_name = "_tapegrad_cli_" + Path(path).stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None:
        raise UserError(f"{path!r} is not a Python file: give FILE.py:FUNC")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # inspect.getsource finds the file through the module
    folder = os.path.dirname(os.path.abspath(path))
    if folder not in sys.path:          # as `python FILE.py` would: its siblings import
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UserError(f"{exc.filename}:{exc.lineno}: {exc.msg}: fix the syntax of {path}") \
            from None
    except Exception as exc:  # the user's module failed at import: show its lines only
        raise UserError(f"{_user_frame(exc, path)}{type(exc).__name__}: {exc} (while importing "
                        f"{path}; fix the module so that `python {path}` runs)") from None
    fun = getattr(module, name, None)
    if not callable(fun):
        defined = sorted(k for k, v in vars(module).items()
                         if inspect.isfunction(v) and v.__module__ == module_name)
        raise UserError(f"{path} defines no function {name!r}; it defines: "
                        f"{', '.join(defined) or 'no functions'}")
    return fun


def parse_values(values):
    """--arg expressions, evaluated with NumPy as np (the user's own command line)."""
    parsed = []
    for text in values or ():
        try:
            parsed.append(eval(text, {"np": np, "numpy": np}))
        except Exception as exc:
            raise UserError(f"--arg {text!r}: {type(exc).__name__}: {exc}; give a Python/NumPy "
                            f"expression such as 1.5 or \"np.ones(3)\"") from None
    return parsed


def call_arguments(fun, values):
    """The --arg values, then 1.0 for every remaining parameter without a default."""
    parameters = [p for p in inspect.signature(fun).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    args = parse_values(values)
    if len(args) > len(parameters):
        raise UserError(f"{fun.__name__} takes {len(parameters)} arguments, got {len(args)} --arg")
    args += [1.0 for p in parameters[len(args):] if p.default is p.empty]
    return args


def add_target_arguments(parser):
    parser.add_argument("target", metavar="FILE.py:FUNC",
                        help="the function to read, e.g. model.py:energy")
    parser.add_argument("--arg", action="append", metavar="EXPR",
                        help="an argument value as a Python/NumPy expression (np is NumPy), one "
                             "--arg per argument in order, e.g. --arg \"np.ones(3)\"; "
                             "default 1.0 for each argument")


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------

def demo(args):
    _banner("1. Eager autograd: the seed tutorial, run unchanged with `import tapegrad as torch`")
    examples = examples_package()
    if examples is None:
        raise UserError("the examples (tapegrad_examples) are not installed: reinstall tapegrad "
                        "with `pip install -e .` from its repository")
    os.environ["TORCH"] = "tapegrad"
    print(f"$ python {os.path.relpath(examples.SEED_TUTORIAL)}\n")
    runpy.run_path(str(examples.SEED_TUTORIAL), run_name="__main__")

    _banner("2. A decorated function, traced onto a tape and compiled with Numba")
    print(DEMO_SOURCE)
    namespace = {}
    exec(compile(DEMO_SOURCE, "<demo>", "exec"), namespace)
    log_density = namespace["log_density"]
    theta = np.linspace(-1.0, 3.0, 5)
    value, gradient = log_density(theta)
    print(f"theta            = {theta}")
    print(f"log_density      = {float(value):.6f}")
    print(f"d log_density    = {gradient}")
    print("\nIts tape (forward sweep, guards, adjoint sweep):\n")
    print(log_density.tape(theta))

    _banner("3. Source transformation: the gradient as code a person can read")
    from . import source
    model = importlib.import_module(examples.__name__ + ".model")
    print(f"{inspect.getsource(model.pendulum_energy)}")
    dfun = source.grad(model.pendulum_energy, argnums=(0, 1))
    print(dfun.source)
    d_theta, d_omega = (float(d) for d in dfun(0.3, 1.2, 9.81))
    print(f"grad at (0.3, 1.2, 9.81) = ({d_theta:.6f}, {d_omega:.6f})")

    if args.no_bench:
        return 0
    _banner("4. A quick benchmark (tapegrad bench --quick --brief --only seed rosenbrock)")
    bench_args = ["--quick", "--brief", "--only", "seed", "rosenbrock", "--out", args.out]
    return _run_bench(_bench_parser().parse_args(bench_args), bench_args)


def grad_source(args):
    from .source.cli import grad_source_run
    return grad_source_run(args)


def tape(args):
    from .transforms import grad, make_tape
    fun = load_function(args.target)
    call_args = call_arguments(fun, args.arg)
    argnums = args.argnums[0] if len(args.argnums) == 1 else tuple(args.argnums)
    target = grad(fun, argnums=argnums) if args.grad else fun
    try:
        tape = make_tape(target)(*call_args)
    except Exception as exc:  # tracing the user's function failed: name its line, not ours
        code = fun.__code__
        where = (_user_frame(exc, code.co_filename)
                 or f"{os.path.relpath(code.co_filename)}:{code.co_firstlineno}: {fun.__name__}: ")
        raise UserError(f"{where}{type(exc).__name__}: {exc}") from None
    print(tape)
    return 0


def _user_frame(exc, path):
    """'file:line: code: ' of the innermost traceback frame in the user's file `path`, or ''."""
    path = os.path.abspath(path)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename) == path]
    if not frames:
        return ""
    return f"{os.path.relpath(frames[-1].filename)}:{frames[-1].lineno}: {frames[-1].line}: "


def _bench_parser():
    parser = argparse.ArgumentParser(prog="tapegrad bench")
    package = benchmarks_package()
    if package is not None:
        package.add_arguments(parser)
    return parser


def _run_bench(args, argv):
    package = benchmarks_package()
    if package is None:
        raise UserError("the benchmarks (tapegrad_benchmarks) are not installed: reinstall "
                        "tapegrad with `pip install -e '.[bench]'` from its repository")
    return package.run(args, argv)


def bench(args):
    return _run_bench(args, args.argv)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tapegrad", description="Reverse-mode automatic differentiation for numerical Python.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="every face of tapegrad on a small example",
                       description="Run the seed tutorial with tapegrad, a compiled tape, emitted "
                                   "gradient source and a quick benchmark.")
    p.add_argument("--out", default="bench-results", metavar="DIR",
                   help="where the quick benchmark writes (default: bench-results/)")
    p.add_argument("--no-bench", action="store_true", help="leave out the quick benchmark")
    p.set_defaults(run=demo)

    from .source.cli import add_arguments as add_grad_source_arguments
    p = sub.add_parser("grad-source", help="print the emitted gradient source of FILE.py:FUNC",
                       description="Print the derivative source that tapegrad.source emits for "
                                   "FILE.py:FUNC.",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=textwrap.dedent("""\
                           examples:
                             tapegrad grad-source model.py:energy --arg "np.ones(3)"
                             tapegrad grad-source model.py:energy --kinds array
                             tapegrad grad-source model.py:pendulum --argnums 2 3 \\
                                 --kinds float,float,float,float,float,int"""))
    add_grad_source_arguments(p)
    p.set_defaults(run=grad_source)

    p = sub.add_parser("tape", help="print the tape of FILE.py:FUNC",
                       description="Trace FILE.py:FUNC on the --arg values and print its tape.")
    add_target_arguments(p)
    p.add_argument("--grad", action="store_true", help="show the gradient tape (adjoint sweep)")
    p.add_argument("--argnums", type=int, nargs="+", default=[0], metavar="N",
                   help="with --grad: positions of the arguments to differentiate (default: 0)")
    p.set_defaults(run=tape)

    p = sub.add_parser("bench", help="benchmarks against PyTorch, JAX and others",
                       description=getattr(benchmarks_package(), "DESCRIPTION", None))
    package = benchmarks_package()
    if package is not None:
        package.add_arguments(p)
    p.set_defaults(run=bench)
    return parser


def main(argv=None):
    """Entry point of the ``tapegrad`` command.

    Args:
        argv: the command line after ``tapegrad`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 when a transform fails, 2 for a mistake on the command line or in
        the user's file (one message on stderr naming the fix).

    Example:
        >>> from tapegrad.cli import main
        >>> main(["tape", "no_such_file.py:f"])
        2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[argv.index(args.command) + 1:]     # what followed the subcommand
    try:
        return args.run(args) or 0
    except UserError as exc:
        print(f"tapegrad {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
