"""The first call of a jitted scalar tape of about 10,000 instructions, stage by stage.

`python -m benchmarks.workloads.first_call [--ops N]` runs, in a fresh process each (so that
nothing is warm but the disk cache), the first call of tg.jit(tg.value_and_grad(f)) for two
graphs: the scalar-graph workload's (softplus/sum/prod/softmax, 100 inputs) and a random mix of
scalar ops with wide sums and long chains (another shape of graph, not the benchmark's), and
prints each stage: loading the compiled interpreter from the disk cache (with Numba's own set-up
on its first load in a process), tracing (and the part of it that records the adjoint sweep),
optimising the
tape, lowering it to the interpreter's ops, and the first compiled sweep. The stages are timed the
way Jitted._new_program runs them (collector paused); "first call" is the sum, which is what the
scalar_graph_10k row's first-call column measures (the interpreter is loaded by then).
"""
import argparse
import contextlib
import json
import subprocess
import sys
import time

import numpy as np

STAGES = ("load interpreter", "trace", "optimise", "lower", "first sweep")


def random_mix(n_ops, width=100, seed=0):
    """f(x) of n_ops random scalar ops over earlier values: sums of 2-8 terms, products,
    quotients, exp, log(1 + exp), tanh, sin, square roots, 2-way softmax weights."""
    rng = np.random.default_rng(seed)
    kinds = ["sum", "mul", "div", "exp", "softplus", "tanh", "sin", "sqrt", "softmax", "sub"]
    program = [(str(rng.choice(kinds)), [int(i) for i in rng.integers(1, 60, size=8)],
                int(rng.integers(2, 9))) for _ in range(n_ops)]

    def f(x):
        v = [x[i] for i in range(width)]
        for op, back, terms in program:
            a, b = v[-back[0]], v[-back[1]]
            if op == "sum":
                r = sum(v[-i] for i in back[:terms]) * 0.25
            elif op == "mul":
                r = a * b
            elif op == "div":
                r = a / (1.0 + b * b)
            elif op == "exp":
                r = np.exp(-a * a)
            elif op == "softplus":
                r = np.log(1.0 + np.exp(a))
            elif op == "tanh":
                r = np.tanh(a + b)
            elif op == "sin":
                r = np.sin(a) * b
            elif op == "sqrt":
                r = np.sqrt(a * a + 1.0)
            elif op == "softmax":
                r = np.exp(a) / (np.exp(a) + np.exp(b))
            else:
                r = a - 0.5 * b
            v.append(r)
        return v[-1]
    return f, rng.standard_normal(width)


class _Clock:
    """`with clock(stage):` records the stage's wall seconds in times[stage] and its CPU seconds
    (this process's, which other processes on a loaded machine inflate less) in
    times[stage + " cpu"]."""

    def __init__(self, times):
        self.times = times

    @contextlib.contextmanager
    def __call__(self, stage):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.times[stage] = time.perf_counter() - wall
            self.times[stage + " cpu"] = time.process_time() - cpu


def stages(graph, n_ops):
    """Seconds per stage of the first call (run in a fresh process by main)."""
    t0 = time.perf_counter()
    import tapegrad as tg
    from tapegrad.tape import optimize
    from tapegrad.transforms import gc_paused, trace_to_tape
    from tapegrad_jit import cpu
    if graph == "scalar_graph":
        from .scalar_graph import build
        problem = build(n_ops)
        f, x = problem.f, problem.args[0]
    else:
        f, x = random_mix(n_ops)
    g = tg.value_and_grad(f)
    imported = time.perf_counter()
    # Numba's first load in a process also sets up its registries (importing scipy.linalg for
    # BLAS): a one-off per process that any Numba code pays, timed here apart
    cpu.Program(tg.make_tape(lambda y: y * 2.0)(1.0))([np.float64(1.0)])
    times = {"load interpreter": time.perf_counter() - imported}
    # the adjoint sweep's share of tracing (the registry's VJP rules recorded on tracers)
    from tapegrad import transforms
    sweep, adjoint = transforms.backward_on_tape, [0.0, 0.0]

    def timed_sweep(*args, **kwargs):
        t, cpu = time.perf_counter(), time.process_time()
        try:
            return sweep(*args, **kwargs)
        finally:
            adjoint[0] += time.perf_counter() - t
            adjoint[1] += time.process_time() - cpu
    transforms.backward_on_tape = timed_sweep
    clock = _Clock(times)
    with gc_paused():
        with clock("trace"):
            tape, _ = trace_to_tape(g, (x,))
        times["recorded"] = len(tape.instrs)
        with clock("optimise"):
            tape = optimize(tape)
        with clock("lower"):
            program = cpu.compile(tape)
    transforms.backward_on_tape = sweep
    times["adjoint sweep"], times["adjoint sweep cpu"] = adjoint
    with clock("first sweep"):
        ok, _ = program([x])
    assert ok
    times["instructions"] = len(tape.instrs)
    times["ops"] = len(getattr(program, "code", ()))
    times["imports"] = imported - t0
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workloads.first_call")
    parser.add_argument("--ops", type=int, default=10000, help="graph ops (scalar graph)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per graph")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(stages(args.child[0], int(args.child[1]))))
        return
    from ..machine import describe, summary
    print(summary(describe()))
    # the random mix has about as many tape instructions as the scalar graph at --ops
    for graph, n in (("scalar_graph", args.ops), ("random_mix", args.ops * 11 // 10)):
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-m", "benchmarks.workloads.first_call",
                                  "--child", graph, str(n)], capture_output=True, text=True,
                                 check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = {k: min(r[k] for r in runs) for k in runs[0]}
        print(f"{graph} ({n} ops: {best['recorded']} instructions recorded, "
              f"{best['instructions']} after the passes, {best['ops']} interpreter ops), "
              f"min of {args.repeats} fresh processes, wall (CPU of this process):")
        for k in STAGES:
            cpu = f" ({best[k + ' cpu'] * 1e3:8.1f} ms)" if k + " cpu" in best else ""
            print(f"  {k:18s} {best[k] * 1e3:8.1f} ms{cpu}")
            if k == "trace":
                print(f"  {'  of it adjoint':18s} {best['adjoint sweep'] * 1e3:8.1f} ms "
                      f"({best['adjoint sweep cpu'] * 1e3:8.1f} ms) (the VJP rules recorded: "
                      "backward_on_tape)")
        first, first_cpu = (sum(best[k + suffix] for k in STAGES[1:]) for suffix in ("", " cpu"))
        print(f"  {'first call':18s} {first * 1e3:8.1f} ms ({first_cpu * 1e3:8.1f} ms) "
              "(trace + optimise + lower + sweep)")


if __name__ == "__main__":
    main()
