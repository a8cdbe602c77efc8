"""The `loops` report (issue 12): element loops at n = 1e3 and 1e5, with first call and memory.

    python -m benchmarks.workloads.loops [--sizes 1000 100000] [--impls NAME ...] [--out FILE]

For `diff_energy` (s += (x[i+1] - x[i]) ** 2) and `fd_energy` (a 1-D finite-difference energy
written element by element), both from element_loop.py, every implementation runs in a fresh
Python process: the first call (trace + optimise + compile for jit systems; wall and CPU
seconds), the steady call (min over repeats), and the peak resident memory the first call
added (ru_maxrss after it minus before it: the high-water mark of tracing, passes and lowering).
The yardstick is element_loop's hand-written Numba gradient; JAX and PyTorch run when installed.
The harness tables (`python -m benchmarks`) time the same workloads without memory.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

from ..frameworks import eager_setup, jax_setup, tapegrad_jit_setup, tapegrad_source_setup
from ..harness import check
from .element_loop import WORKLOADS, numba_setup

IMPLS = {
    "Numba hand-written": numba_setup,
    "tapegrad jit CPU": tapegrad_jit_setup("cpu"),
    "tapegrad source jit": tapegrad_source_setup,
    "PyTorch eager": eager_setup("torch"),
    "JAX jit": jax_setup("cpu"),
}
# PyTorch's adjoint of t[i] is a full-length array (IndexBackward0): O(n^2) per call, about
# 24 ms at n = 1e3 here, so minutes at 1e5
MAX_N = {"PyTorch eager": 10_000}
STEADY_BUDGET_S = 2.0
TIMEOUT_S = 600


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # kB on Linux


def run_one(workload_name, n, impl_name):
    """One implementation at one size, in this process; a result dict."""
    workload = next(w for w in WORKLOADS if w.name == workload_name)
    problem = workload.build(n)
    result = dict(workload=workload_name, n=n, impl=impl_name)
    try:
        run = IMPLS[impl_name](problem)
    except Exception as exc:        # noqa: BLE001 - a peer that is not installed is a result too
        return dict(result, status="skipped", note=f"{type(exc).__name__}: {exc}"[:120])
    before = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    result.update(first_call_s=time.perf_counter() - wall, first_call_cpu_s=time.process_time() - cpu,
                  peak_added_mb=_rss_mb() - before)
    reason = check(out, problem, workload.rtol, workload.atol)
    if reason:
        return dict(result, status="FAILED", note=reason)
    times, spent = [], 0.0
    while len(times) < 3 or spent < STEADY_BUDGET_S and len(times) < 200:
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
        spent += times[-1]
    return dict(result, status="ok", steady_s=min(times), peak_total_mb=_rss_mb())


def _in_subprocess(workload_name, n, impl_name):
    if n > MAX_N.get(impl_name, n):
        return dict(workload=workload_name, n=n, impl=impl_name, status="skipped",
                    note=f"n > {MAX_N[impl_name]}: each element read's adjoint is n long")
    cmd = [sys.executable, "-m", "benchmarks.workloads.loops", "--one", workload_name, str(n),
           impl_name]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=root)
    except subprocess.TimeoutExpired:
        return dict(workload=workload_name, n=n, impl=impl_name, status="timeout",
                    note=f"over {TIMEOUT_S} s")
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return dict(workload=workload_name, n=n, impl=impl_name, status="error", note=tail[:160])
    return json.loads(lines[-1])


def table(results):
    rows = ["| workload | n | implementation | first call (CPU) | steady | x Numba | peak added |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    base = {(r["workload"], r["n"]): r["steady_s"] for r in results
            if r["impl"] == "Numba hand-written" and r["status"] == "ok"}
    for r in results:
        head = f"| {r['workload'].replace('element_loop_', '')} | {r['n']:.0e} | {r['impl']} |"
        if r["status"] != "ok":
            rows.append(f"{head} {r['status']}: {r.get('note', '')} | | | |")
            continue
        ref = base.get((r["workload"], r["n"]))
        ratio = f"{r['steady_s'] / ref:.1f}" if ref else ""
        rows.append(f"{head} {r['first_call_s']:.2f} s ({r['first_call_cpu_s']:.2f} s) | "
                    f"{r['steady_s'] * 1e3:.3f} ms | {ratio} | {r['peak_added_mb']:.0f} MB |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--workloads", nargs="+", default=[w.name for w in WORKLOADS])
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--one", nargs=3, metavar=("WORKLOAD", "N", "IMPL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.one[2])))
        return 0
    results = [_in_subprocess(w, n, impl) for w in args.workloads for n in args.sizes
               for impl in args.impls]
    print(table(results))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
