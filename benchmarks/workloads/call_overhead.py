"""The per-call path of a jitted function, measured apart: an empty tape of three small arrays.

f(x, y, z) = (x, (y, z)) records no instruction, so a call of tg.jit(f) is all path: the
signature check, the guard status, copying the arguments into the sweep's buffer, the compiled
(empty) sweep and the result tree of fresh arrays. The yardstick is a Numba function doing the same
job (three arrays in, copies out), so the ratio says what tapegrad adds to Numba's own dispatch;
"Python copies" is the floor of any call that returns fresh arrays.

`python -m benchmarks.workloads.call_overhead` prints tapegrad jit's min-of-repeats ratios to the
yardsticks of the scalar graphs, Rosenbrock and the pendulum ODE, and the seed graph's time (interleaved in one
process: steadier than medians on a shared machine), the path's parts, and the per-call cost of
the scalar-graph and seed workloads over their compiled sweeps and of generated array code over
its function.
"""
import time

import numpy as np

from ..harness import Goal, Impl, Problem, Workload

TARGET_US = 1.5         # the bound on the per-call path for a few small arrays


def identity(x, y, z):
    return x, (y, z)


def build(shape):
    rng = np.random.default_rng(0)
    x, y, z = (rng.standard_normal(shape) for _ in range(3))
    # the harness checks (value, grad): here the first array's first entry and the other two
    return Problem(f=identity, args=(x, y, z), argnums=(0,), value=float(x.flat[0]),
                   grad=np.concatenate([y.ravel(), z.ravel()]), size="3 x " + "x".join(
                       map(str, shape)))


def _result(out):
    x, (y, z) = out
    return x, (y, z)


def tapegrad_setup(p):
    import tapegrad as tg
    f = tg.jit(identity)
    args = p.args
    return lambda: _result(f(*args))


def numba_setup(p):
    from numba import njit

    @njit(cache=True)
    def copies(x, y, z):
        return x.copy(), (y.copy(), z.copy())
    args = p.args
    return lambda: _result(copies(*args))


def python_setup(p):
    args = p.args
    return lambda: _result((args[0].copy(), (args[1].copy(), args[2].copy())))


WORKLOAD = Workload(
    name="call_overhead",
    title="per-call path: jit of an empty tape, 3 small arrays in, 3 fresh arrays out",
    build=build,
    sizes={"full": (2, 2), "quick": (2, 2)},
    impls=[Impl("Numba njit", "hand-written", numba_setup, note="three arrays in, copies out"),
           Impl("Python copies", "hand-written", python_setup, note="the copies alone"),
           Impl("tapegrad jit CPU", "tapegrad", tapegrad_setup, note="tg.jit(identity)")],
    yardsticks=("Numba njit", "Python copies"),
    dtype="float64",
    target=f"tapegrad jit CPU under {TARGET_US} us a call (<= 2x a Numba call doing the same)",
    goals=(Goal("tapegrad jit CPU", 2.0),),
    rtol=0.0,
    atol=0.0,
)


# ---------------------------------------------------------------- the parts, printed

def _best(fn, number=20000, repeats=9):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def parts():
    """Per-call microseconds of the empty tape's path and of its pieces, interleaved."""
    import tapegrad as tg
    from tapegrad_jit import cpu
    p = build((2, 2))
    f = tg.jit(identity)
    f(*p.args)
    f(*p.args)
    program = f._fast_calls and next(iter(f._fast_calls))
    v, views, outs = program._io()
    rows = {
        "tg.jit call (whole path)": lambda: f(*p.args),
        "program.call_arrays (copy in, sweep, results)": lambda: program.call_arrays(p.args),
        "compiled sweep alone (Numba dispatch)": lambda: program._run(program.code,
                                                                      program.ipool, v),
        "results alone (3 fresh arrays)": lambda: program._results(outs),
        "plain Python call returning its arguments": lambda: identity(*p.args),
    }
    del cpu
    times = {name: float("inf") for name in rows}
    for _ in range(3):              # interleaved: load from other work hits every row alike
        for name, fn in rows.items():
            times[name] = min(times[name], _best(fn, number=5000, repeats=3))
    return {name: t * 1e6 for name, t in times.items()}


def _scaled(x, n):
    return x * n


def _affine(p, x):
    return p[0] * x + p[1]


def _layer(p, x):
    return p["w"] * x + p["b"]


def argument_kinds():
    """Per-call microseconds of tg.jit with arguments of each kind the fast path checks (2x2
    float64 arrays, a static int, a NumPy scalar, tuple and dict arguments), interleaved."""
    import tapegrad as tg
    x, y = build((2, 2)).args[:2]
    cases = {"two arrays": (_scaled, (x, y)), "array, static int": (_scaled, (x, 3)),
             "array, np.float64": (_scaled, (x, np.float64(2.5))),
             "tuple of 2 arrays, array": (_affine, ((x, y), x)),
             "dict of 2 arrays, array": (_layer, ({"w": x, "b": y}, x))}
    calls = {}
    for name, (fun, args) in cases.items():
        f = tg.jit(fun)
        f(*args)
        f(*args)
        calls[name] = lambda f=f, args=args: f(*args)
    times = {name: float("inf") for name in calls}
    for _ in range(3):
        for name, fn in calls.items():
            times[name] = min(times[name], _best(fn, number=5000, repeats=3))
    return {name: t * 1e6 for name, t in times.items()}


def graph_overheads():
    """Microseconds a jitted call adds over its compiled sweep, for the seed and 100-op graphs."""
    import tapegrad as tg
    from . import scalar_graph, seed
    out = {}
    for label, problem in [("seed (2x2 float32)", seed.build((2, 2))),
                           ("scalar graph, 100 ops", scalar_graph.build(100))]:
        f = tg.jit(tg.value_and_grad(problem.f))
        f(*problem.args)
        f(*problem.args)
        program = next(iter(f._fast_calls))
        v = program._io()[0]
        call = _best(lambda: f(*problem.args), number=3000)
        sweep = _best(lambda: program._run(program.code, program.ipool, v), number=3000)
        out[label] = (call * 1e6, sweep * 1e6)
    return out


def generated_overhead(n=5000):
    """Microseconds a jitted call of generated array code (Rosenbrock value and gradient, n
    elements) adds over the generated function called with its arrays."""
    import tapegrad as tg
    from . import rosenbrock
    x = np.random.default_rng(0).uniform(-2.0, 2.0, n)
    f = tg.jit(tg.value_and_grad(rosenbrock.rosenbrock))
    f(x)
    f(x)
    program = next(iter(f._fast_calls))
    arrays = [x, *program.consts, *program.workspace.take(), program.sizes, program.scalars]
    call = function = float("inf")
    for _ in range(3):              # interleaved
        call = min(call, _best(lambda: f(x), number=500))
        function = min(function, _best(lambda: program.function(*arrays), number=500))
    return call * 1e6, function * 1e6


def min_ratios(repeats=6):
    """Min-of-repeats times of tapegrad jit CPU and its yardstick, interleaved in one process
    (robust on a machine shared with other work, where medians drift): the scalar graphs against
    the C interpreter, Rosenbrock 1e6 against fused Numba, the pendulum ODE against the Numba
    adjoint; the seed graph's time alone."""
    import tapegrad as tg
    from .. import kernels
    from . import ode, rosenbrock, scalar_graph, seed
    cases = []
    for n in (100, 1000, 10000):
        problem = scalar_graph.build(n)
        f, x = tg.jit(tg.value_and_grad(problem.f)), problem.args[0]
        cases.append((f"scalar_graph_{n}", scalar_graph.c_setup(problem),
                      lambda f=f, x=x: f(x), max(20, 20000 // n)))
    x = np.random.default_rng(0).uniform(-2.0, 2.0, 1_000_000)
    g, f_rosen = np.empty_like(x), tg.jit(tg.value_and_grad(rosenbrock.rosenbrock))
    cases.append(("rosenbrock", lambda: kernels.rosenbrock_value_and_grad(x, g),
                  lambda: f_rosen(x), 10))
    pendulum = ode.build(1000)
    f_ode = tg.jit(tg.value_and_grad(pendulum.f, argnums=(0, 1)))
    cases.append(("ode", lambda: kernels.pendulum_adjoint(*pendulum.args, 1000, ode.DT),
                  lambda: f_ode(*pendulum.args), 200))
    problem = seed.build((2, 2))
    f_seed = tg.jit(tg.value_and_grad(seed.seed_graph))
    cases.append(("seed", None, lambda: f_seed(*problem.args), 20000))
    out = {}
    for name, yardstick, jitted, number in cases:
        jitted()
        jitted()
        ref = jit = float("inf")
        for _ in range(repeats):
            if yardstick is not None:
                ref = min(ref, _best(yardstick, number, 5))
            jit = min(jit, _best(jitted, number, 5))
        out[name] = (ref * 1e6, jit * 1e6)
    return out


def main():
    from ..machine import describe, summary
    print(summary(describe()))
    print("tapegrad jit CPU against its yardstick, min of repeats, interleaved:")
    for name, (ref, jit) in min_ratios().items():
        print(f"  {name:18s} jit {jit:9.2f} us" + (
            "" if ref == float("inf") else f"  yardstick {ref:9.2f} us  ratio {jit / ref:.2f}x"))
    print("per-call path of tg.jit on an empty tape, 3 arrays of 2x2 float64 "
          "(min over interleaved repeats):")
    for name, us in parts().items():
        print(f"  {name:48s} {us:6.2f} us")
    print("tg.jit call by argument kind (min over interleaved repeats):")
    for name, us in argument_kinds().items():
        print(f"  {name:48s} {us:6.2f} us")
    for label, (call, sweep) in graph_overheads().items():
        print(f"{label}: call {call:.2f} us, compiled sweep {sweep:.2f} us, "
              f"path {call - sweep:.2f} us")
    call, function = generated_overhead()
    print(f"generated code, Rosenbrock n=5000: call {call:.2f} us, generated function "
          f"{function:.2f} us, path {call - function:.2f} us")


if __name__ == "__main__":
    main()
