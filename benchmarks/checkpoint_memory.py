"""Peak memory and time of a long ODE adjoint with and without tg.checkpoint.

    python -m benchmarks.checkpoint_memory [--steps 10000] [--block 100] [--n 64]

Explicit Euler steps y <- y + h (sin(p y) - y^3) on a state of n values; the loss is sum(y^2) at
the end and its gradient is taken with respect to p (n parameters), compiled with tg.jit on the
CPU. `checkpoint` wraps each block of `--block` steps in tg.checkpoint, so the adjoint sweep
recomputes a block's forward instead of keeping every step's values.

Reported per variant: the tape's length; the compiled program's slot buffer (the memory the
compiled sweeps work in; buffers are reused once their last reader has run); the traced
Python heap's peak while tracing and compiling (tracemalloc); the time of the first call (trace
and compile) and the median of later calls. Not a timed test: numbers vary by machine.
"""
import argparse
import statistics
import time
import tracemalloc

import numpy as np

import tapegrad as tg


def make_loss(steps, block, n, checkpointed):
    h = 1.0 / steps

    def run_block(y, p):
        for _ in range(block):
            y = y + h * (np.sin(p * y) - y ** 3)
        return y
    blk = tg.checkpoint(run_block) if checkpointed else run_block

    def loss(p, y0):
        y = y0
        for _ in range(steps // block):
            y = blk(y, p)
        return np.sum(y ** 2)
    return loss


def measure(steps, block, n, checkpointed, repeats=5):
    p, y0 = np.linspace(0.5, 1.5, n), np.linspace(-1.0, 1.0, n)
    fn = tg.jit(tg.grad(make_loss(steps, block, n, checkpointed)))
    tracemalloc.start()
    start = time.perf_counter()
    first = fn(p, y0)
    first_s = time.perf_counter() - start
    heap_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(p, y0)
        times.append(time.perf_counter() - start)
    program = next(iter(fn._signatures.values()))[0]
    buffer = getattr(program, "v0", None)
    tape = fn.tape(p, y0)
    return {"variant": "checkpoint" if checkpointed else "plain", "instructions": len(tape.instrs),
            "buffer_MB": None if buffer is None else buffer.nbytes / 1e6,
            "trace_heap_peak_MB": heap_peak / 1e6, "first_call_s": first_s,
            "call_ms": 1e3 * statistics.median(times), "grad": first}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args(argv)
    rows = [measure(args.steps, args.block, args.n, c) for c in (False, True)]
    np.testing.assert_allclose(rows[1]["grad"], rows[0]["grad"], rtol=1e-10)
    print(f"ODE adjoint: {args.steps} Euler steps, state and parameters of {args.n}, blocks of "
          f"{args.block} steps; gradients agree")
    print(f"{'variant':<12}{'instrs':>9}{'buffer MB':>11}{'trace heap MB':>15}"
          f"{'first call s':>14}{'call ms':>9}")
    for r in rows:
        print(f"{r['variant']:<12}{r['instructions']:>9}{r['buffer_MB']:>11.2f}"
              f"{r['trace_heap_peak_MB']:>15.1f}{r['first_call_s']:>14.2f}{r['call_ms']:>9.2f}")
    return rows


if __name__ == "__main__":
    main()
