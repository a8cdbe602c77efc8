"""Rosenbrock function of n = 1e6 variables, value and gradient, float64.

The fused one-pass Numba gradient (no fastmath) is the yardstick; the value-only rows give the
gradient/function cost ratio.
"""
import numpy as np

from ..frameworks import standard
from ..harness import Goal, Impl, Problem, Workload


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def numpy_value_and_grad(x):
    a = x[1:] - x[:-1] ** 2
    b = 1.0 - x[:-1]
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * x[:-1] - 2.0 * b
    g[1:] += 200.0 * a
    return np.sum(100.0 * a ** 2 + b ** 2), g


def build(n):
    x = np.random.default_rng(0).uniform(-2.0, 2.0, n)
    value, grad = numpy_value_and_grad(x)
    return Problem(f=rosenbrock, args=(x,), argnums=(0,), value=float(value), grad=grad,
                   size=f"n={n}")


def numba_setup(name):
    def setup(p):
        from .. import kernels
        kernel = getattr(kernels, name)
        x = p.args[0]
        g = np.empty_like(x)
        return lambda: (kernel(x, g), g)
    return setup


def numba_value_setup(p):
    from ..kernels import rosenbrock_value
    x = p.args[0]
    return lambda: (rosenbrock_value(x), None)


def tapegrad_value_setup(p):
    import tapegrad as tg
    f = tg.jit(rosenbrock)
    x = p.args[0]
    return lambda: (f(x), None)


WORKLOAD = Workload(
    name="rosenbrock",
    title="Rosenbrock, value+grad",
    build=build,
    sizes={"full": 1_000_000, "quick": 10_000},
    impls=[
        Impl("Numba fused", "hand-written", numba_setup("rosenbrock_value_and_grad"),
             note="one pass, no fastmath"),
        Impl("Numba fused fastmath", "hand-written",
             numba_setup("rosenbrock_value_and_grad_fastmath")),
        Impl("NumPy hand-written", "hand-written",
             lambda p: lambda: numpy_value_and_grad(p.args[0])),
        Impl("Numba value only", "hand-written", numba_value_setup, value_only=True),
        Impl("tapegrad jit CPU value only", "tapegrad", tapegrad_value_setup, value_only=True),
    ] + standard(),
    yardsticks=("Numba fused", "NumPy hand-written"),
    dtype="float64",
    target="tapegrad jit CPU <= 1.0x Numba fused; grad/f cost <= 3; "
           "tapegrad source jit <= 1.5x Numba fused, first call <= 1 s",
    goals=(Goal("tapegrad jit CPU", 1.0),                # issue 14
           Goal("tapegrad jit CPU", 3.0, versus="tapegrad jit CPU value only"),
           Goal("tapegrad source jit", 1.5),   # fused loops (tapegrad/source/fuse.py)
           Goal("tapegrad source jit", 1.0, measure="first_call_s")),
    rtol=1e-9,
    atol=1e-12,
    ratios=(("grad/f cost, hand-written Numba", "Numba fused", "Numba value only"),
            ("grad/f cost, tapegrad jit", "tapegrad jit CPU", "tapegrad jit CPU value only")),
)
