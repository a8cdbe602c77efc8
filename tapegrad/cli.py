"""The `tapegrad` command: demo, grad-source FILE:FUNC, tape FILE:FUNC, bench."""
import argparse
import importlib.util
import os
import runpy
import sys
import textwrap
from pathlib import Path

import numpy as np

SEED_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed"

DEMO_SOURCE = '''\
import numpy as np
import tapegrad as tg

@tg.jit
@tg.value_and_grad
def log_density(theta):
    """An HMC-style target: a Gaussian with a softplus-shaped tail."""
    return -0.5 * np.sum(theta * theta) - np.sum(np.log1p(np.exp(theta - 2.0)))
'''


def _banner(title):
    print()
    print("=" * 78)
    print(title)
    print("=" * 78)


def _load_function(spec):
    """FILE.py:FUNC -> the function object."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise SystemExit(f"tapegrad: expected FILE.py:FUNC, got {spec!r}")
    module_spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    if module_spec is None:
        raise SystemExit(f"tapegrad: cannot load {path!r}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    try:
        return getattr(module, name)
    except AttributeError:
        raise SystemExit(f"tapegrad: {path} defines no function {name!r}") from None


def _parse_args(values, n_params):
    """--arg expressions (NumPy available as np); default: 1.0 for each parameter."""
    if not values:
        return [1.0] * n_params
    return [eval(v, {"np": np}) for v in values]  # the user's own command line


# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------

def demo(args):
    _banner("1. Eager autograd: the seed tutorial, run unchanged with `import tapegrad as torch`")
    seed = SEED_DIR / "seed_tutorial.py"
    if seed.exists():
        os.environ["TORCH"] = "tapegrad"
        runpy.run_path(str(seed), run_name="__main__")
    else:
        print(f"(the seed tutorial is not beside this checkout at {seed}; skipped)")

    _banner("2. A decorated function, traced onto a tape and compiled with Numba")
    print(DEMO_SOURCE)
    namespace = {}
    exec(compile(DEMO_SOURCE, "<demo>", "exec"), namespace)
    log_density = namespace["log_density"]
    theta = np.linspace(-1.0, 3.0, 5)
    value, gradient = log_density(theta)
    print(f"theta            = {theta}")
    print(f"log_density      = {value:.6f}")
    print(f"d log_density    = {gradient}")
    print("\nIts tape (forward sweep, guards, adjoint sweep):\n")
    print(log_density.tape(theta))

    _banner("3. Source transformation: the gradient as code a person can read")
    from . import source

    def pendulum_energy(theta, omega, g):
        kinetic = 0.5 * omega * omega
        potential = g * (1.0 - np.cos(theta))
        return kinetic + potential

    dfun = source.grad(pendulum_energy, argnums=(0, 1))
    print(dfun.source)
    print(f"grad at (0.3, 1.2, 9.81) = {dfun(0.3, 1.2, 9.81)}")

    _banner("4. A quick benchmark table")
    try:
        from benchmarks import main as bench_main
    except ImportError:
        print("(the benchmarks package is not installed beside tapegrad; skipped)")
        return 0
    return bench_main(["--quick", "--only", "seed", "rosenbrock", "--out", args.out])


def grad_source(args):
    from .source.cli import grad_source_main
    return grad_source_main(args.rest)


def tape(args):
    import inspect
    from .transforms import grad, make_tape
    fun = _load_function(args.target)
    n_params = len(inspect.signature(fun).parameters)
    call_args = _parse_args(args.arg, n_params)
    target = grad(fun) if args.grad else fun
    print(make_tape(target)(*call_args))
    return 0


def bench(args):
    try:
        from benchmarks import main as bench_main
    except ImportError:
        raise SystemExit("tapegrad bench needs the benchmarks/ package of a source checkout "
                         "(pip install -e '.[bench]' from the repository)") from None
    return bench_main(args.rest)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="tapegrad", description="Reverse-mode automatic differentiation for numerical Python.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent("""\
            examples:
              tapegrad demo
              tapegrad grad-source model.py:energy --argnums 0
              tapegrad tape model.py:energy --grad --arg "np.ones(3)"
              tapegrad bench --quick"""))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="every face of tapegrad on a small example")
    p.add_argument("--out", default="bench-results", help="where the quick benchmark writes")
    p.set_defaults(run=demo)

    p = sub.add_parser("grad-source", help="print the emitted gradient source of FILE.py:FUNC",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=grad_source)

    p = sub.add_parser("tape", help="print the tape of FILE.py:FUNC")
    p.add_argument("target", help="FILE.py:FUNC")
    p.add_argument("--arg", action="append", help="an argument as a Python/NumPy expression")
    p.add_argument("--grad", action="store_true", help="show the gradient tape (adjoint sweep)")
    p.set_defaults(run=tape)

    p = sub.add_parser("bench", help="benchmarks against PyTorch, JAX and others", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=bench)

    args = parser.parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
