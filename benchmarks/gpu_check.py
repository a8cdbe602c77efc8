"""The GPU workloads of the one-command GPU check (.ci/gpu), in one process.

    python -m benchmarks.gpu_check --json PATH [--simulate] [--tapegrad-only] [--budget S]

Workloads, float64, at 1e7 points (64 under --simulate, on Numba's CUDA simulator):
  batched_grad  f'(x) at every point of the ~100-instruction scalar function of benchmarks'
                batched workloads: tapegrad jit(vmap(grad(f)), device="cuda"), one thread per
                point, against JAX jit(vmap(grad(f))) and torch.func.vmap(grad(f)) on the same GPU
  rosenbrock    value and gradient of Rosenbrock: tapegrad jit(value_and_grad(f), device="cuda")
                (an array tape: fused kernels and a block reduction) against JAX
                jit(value_and_grad(f))
tapegrad runs each with its inputs as numba device arrays, then as CuPy arrays (read through
__cuda_array_interface__ without a copy; results stay on the GPU). Under --simulate, where CuPy
cannot run, a stand-in object exposing __cuda_array_interface__ takes CuPy's place. The batched
workload runs once more on the row interpreter (what row tapes longer than
cuda_config.MAX_ROW_OPS run on), weighing its run time against straight-line code's compile time.

Every implementation's first result is checked against a reference (complex step on a strided
sample of the points; Rosenbrock's closed form) before it is timed. Reported apart: the first
call, the time spent compiling kernels (numba-cuda's dispatcher, timed around each compile:
typing, NVVM and linking; JAX: lower, then compile), and the steady-state run (median of
synchronised calls). The JSON file is rewritten after every implementation, so a run stopped by
its time limit keeps what finished.
"""
import argparse
import contextlib
import json
import os
import platform
import sys
import time

import numpy as np

from .frameworks import rebind
from .harness import CS_STEP, Problem, check, complex_step, to_numpy
from .workloads.batched import bumpy
from .workloads.rosenbrock import numpy_value_and_grad, rosenbrock

SIZES = {"gpu": 10_000_000, "simulate": 64}
CHECKED_POINTS = 100_000        # batched gradients are checked on this many strided points
RTOL, ATOL = 1e-8, 1e-10        # as benchmarks' batched and Rosenbrock workloads check


class Skipped(Exception):
    """An implementation that cannot run here (not installed, no GPU backend)."""


# ---------------------------------------------------------------------------------------------
# Timing: kernel compiles apart from runs; runs synchronised with the device
# ---------------------------------------------------------------------------------------------

class CompileClock:
    """Seconds numba-cuda spends compiling kernels, summed over every CUDADispatcher.compile
    (typing, lowering, NVVM, linking to a cubin; a disk-cache hit counts as the load it is).
    The simulator compiles nothing: there `seconds` stays None."""

    def __init__(self, simulate):
        self.seconds = self.kernels = None
        if simulate:
            return
        try:
            from numba.cuda.dispatcher import CUDADispatcher
            original = CUDADispatcher.compile
        except (ImportError, AttributeError):  # another numba-cuda layout: compile not timed
            return
        self.seconds, self.kernels = 0.0, 0
        clock = self

        def timed_compile(dispatcher, sig):
            known = len(dispatcher.overloads)
            start = time.perf_counter()
            try:
                return original(dispatcher, sig)
            finally:
                clock.seconds += time.perf_counter() - start
                clock.kernels += len(dispatcher.overloads) - known
        CUDADispatcher.compile = timed_compile

    def reading(self):
        return self.seconds, self.kernels


def steady(run, sync, budget_s, repeats=21):
    """Median, min and count of synchronised calls: at least 3, at most `repeats`, stopping
    once `budget_s` went into them."""
    samples, spent = [], 0.0
    while len(samples) < repeats and (len(samples) < 3 or spent < budget_s):
        start = time.perf_counter()
        run()
        sync()
        samples.append(time.perf_counter() - start)
        spent += samples[-1]
    return dict(run_s=float(np.median(samples)), run_min_s=min(samples), runs=len(samples))


# ---------------------------------------------------------------------------------------------
# Problems and their references
# ---------------------------------------------------------------------------------------------

def batched_problem(n):
    x = np.random.default_rng(0).uniform(-3.0, 3.0, n)
    sample = np.unique(np.linspace(0, n - 1, min(n, CHECKED_POINTS)).astype(np.int64))
    _, grad = complex_step(bumpy, x[sample] + 1j * CS_STEP)
    problem = Problem(f=bumpy, args=(x,), argnums=(0,), value=None, grad=grad,
                      size=f"{n} points", batched=True)
    return problem, lambda out: (None, to_numpy(out)[sample])


def rosenbrock_problem(n):
    x = np.random.default_rng(0).uniform(-2.0, 2.0, n)
    value, grad = numpy_value_and_grad(x)
    problem = Problem(f=rosenbrock, args=(x,), argnums=(0,), value=float(value), grad=grad,
                      size=f"n={n}")
    return problem, lambda out: out


WORKLOADS = {   # label: as README.md's GPU rows name the workload
    "batched_grad": dict(title="batched grad of a ~100-instruction scalar function, 1 thread/point",
                         label="batched grad, {n} points (`jit(vmap(grad))`)",
                         build=batched_problem, batched=True),
    "rosenbrock": dict(title="Rosenbrock value+grad, array tape",
                       label="Rosenbrock value+grad, n = {n}", build=rosenbrock_problem,
                       batched=False),
}


def short_count(n):
    """1e7 for 10000000; other counts as they are."""
    exponent = len(str(n)) - 1
    return f"1e{exponent}" if n == 10 ** exponent and exponent >= 3 else str(n)


# ---------------------------------------------------------------------------------------------
# Inputs on the device: numba, CuPy, and CuPy's stand-in on the simulator
# ---------------------------------------------------------------------------------------------

class InterfaceArray:
    """A host array exposing __cuda_array_interface__, as CuPy's arrays do: under the simulator
    device memory is host memory, so this is what a CuPy array looks like there."""

    def __init__(self, array):
        self._array = np.ascontiguousarray(array)
        self.shape, self.dtype = self._array.shape, self._array.dtype
        self.ndim, self.size = self._array.ndim, self._array.size

    def get(self):                          # CuPy's copy to the host
        return self._array.copy()

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "strides": None,
                "data": (self._array.ctypes.data, False), "version": 3}


def cupy_inputs(simulate):
    """(what makes a CuPy-like input from NumPy, its name) or Skipped."""
    if simulate:
        return InterfaceArray, "CuPy stand-in (simulator)"
    try:
        import cupy
    except ImportError as exc:
        raise Skipped("CuPy not installed") from exc
    return cupy.asarray, f"CuPy {cupy.__version__}"


# ---------------------------------------------------------------------------------------------
# Implementations: each returns a result dict (first call, compile, steady state)
# ---------------------------------------------------------------------------------------------

def tapegrad_impl(spec, problem, inputs, clock, budget_s, interpreter=False):
    """Row tapes run as straight-line code (what the GPU's cuda_config.MAX_ROW_OPS chooses for
    this workload's; the simulator's smaller limit would choose the interpreter), or with
    `interpreter` on the row interpreter, to weigh one against the other."""
    import tapegrad as tg
    from numba import cuda
    from tapegrad_jit import cuda_config
    from tapegrad_jit.cuda import is_device_array
    if interpreter and not spec["batched"]:
        raise Skipped("row tapes only (the batched workload)")
    f = problem.f
    fn = tg.jit(tg.vmap(tg.grad(f)) if spec["batched"] else tg.value_and_grad(f),
                device="cuda")
    args = [inputs(a) for a in problem.args]
    seconds, kernels = clock.reading()
    limit = cuda_config.MAX_ROW_OPS
    start = time.perf_counter()
    try:
        cuda_config.MAX_ROW_OPS = 0 if interpreter else 10**9    # read as the kernel is built
        out = fn(*args)
        cuda.synchronize()
    finally:
        cuda_config.MAX_ROW_OPS = limit
    first = time.perf_counter() - start
    result = dict(first_call_s=first)
    if seconds is not None:
        result["compile_s"] = clock.seconds - seconds
        result["kernels_compiled"] = clock.kernels - kernels
    leaves = out if isinstance(out, tuple) else (out,)
    result["results_on_device"] = all(is_device_array(leaf) for leaf in leaves)
    if spec["batched"]:
        row_kernels = [k for paths in fn._signatures.values() for program in paths
                       for k in program._row_kernels.values()]
        result["rows_ran_on"] = ("row interpreter" if None in row_kernels
                                 else "straight-line code")
    result.update(steady(lambda: fn(*args), cuda.synchronize, budget_s))
    return result, out


def jax_impl(spec, problem, simulate, budget_s):
    if simulate:
        raise Skipped("JAX does not run on Numba's CUDA simulator")
    try:
        import jax
    except ImportError as exc:
        raise Skipped("JAX not installed") from exc
    jax.config.update("jax_enable_x64", True)
    try:
        device = jax.devices("gpu")[0]
    except RuntimeError as exc:
        raise Skipped("JAX has no GPU backend here") from exc
    f = rebind(problem.f, np=__import__("jax.numpy", fromlist=["numpy"]))
    fn = jax.jit(jax.vmap(jax.grad(f)) if spec["batched"] else jax.value_and_grad(f))
    args = [jax.device_put(a, device) for a in problem.args]
    start = time.perf_counter()
    lowered = fn.lower(*args)
    traced = time.perf_counter()
    compiled = lowered.compile()
    built = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    done = time.perf_counter()
    result = dict(first_call_s=done - start, trace_s=traced - start, compile_s=built - traced,
                  device=str(device))
    # JAX dispatches asynchronously: each call waits for its own result
    result.update(steady(lambda: jax.block_until_ready(compiled(*args)), lambda: None,
                         budget_s))
    return result, out


def torch_impl(spec, problem, simulate, budget_s):
    if simulate:
        raise Skipped("PyTorch does not run on Numba's CUDA simulator")
    if not spec["batched"]:
        raise Skipped("compared on the batched workload only")
    try:
        import torch
    except ImportError as exc:
        raise Skipped("PyTorch not installed") from exc
    if not torch.cuda.is_available():
        raise Skipped("PyTorch sees no CUDA GPU")
    from torch.func import grad, vmap
    fn = vmap(grad(rebind(problem.f, np=torch)))
    x = torch.tensor(problem.args[0], device="cuda")
    start = time.perf_counter()
    out = fn(x)
    torch.cuda.synchronize()
    result = dict(first_call_s=time.perf_counter() - start)
    result.update(steady(lambda: fn(x), torch.cuda.synchronize, budget_s))
    return result, out


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def implementations(simulate, tapegrad_only):
    """(name, group, run(spec, problem, clock, budget_s) -> (result, out)) in report order."""
    def tapegrad_with(inputs, interpreter=False):
        return lambda spec, problem, clock, budget: tapegrad_impl(spec, problem, inputs(), clock,
                                                                  budget, interpreter)

    def numba_inputs():
        from numba import cuda
        return cuda.to_device

    def cupy_like():
        return cupy_inputs(simulate)[0]

    impls = [("tapegrad jit CUDA", "tapegrad", tapegrad_with(numba_inputs)),
             ("tapegrad jit CUDA, CuPy inputs", "tapegrad", tapegrad_with(cupy_like)),
             ("tapegrad jit CUDA, row interpreter", "tapegrad",
              tapegrad_with(numba_inputs, interpreter=True))]
    if not tapegrad_only:
        impls += [("JAX jit GPU", "peer",
                   lambda spec, problem, clock, budget: jax_impl(spec, problem, simulate, budget)),
                  ("PyTorch func.vmap(grad) GPU", "peer",
                   lambda spec, problem, clock, budget: torch_impl(spec, problem, simulate,
                                                                   budget))]
    return impls


def run_impl(run, spec, problem, sample, clock, budget_s):
    try:
        result, out = run(spec, problem, clock, budget_s)
    except Skipped as exc:
        return dict(status="skipped", note=str(exc))
    except Exception as exc:            # noqa: BLE001 - a crash is a result, the next one runs
        return dict(status="error", note=f"{type(exc).__name__}: {exc}"[:300])
    reason = check(sample(out), problem, RTOL, ATOL)
    result = dict(result, status="FAILED" if reason else "ok", note=reason or "")
    if result["status"] == "ok":
        points = problem.args[0].size
        result["points_per_s"] = points / result["run_s"]
    return result


def throughput_ratios(entry):
    """tapegrad's throughput over each peer's (>= 1.0: tapegrad is faster)."""
    times = {r["impl"]: r["run_s"] for r in entry["results"] if r["status"] == "ok"}
    ours = times.get("tapegrad jit CUDA")
    return {peer: times[peer] / ours for peer in times
            if ours and not peer.startswith("tapegrad")}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", required=True, help="where the results go (rewritten as "
                                                      "each implementation finishes)")
    parser.add_argument("--simulate", action="store_true",
                        help="tiny sizes on Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
    parser.add_argument("--tapegrad-only", action="store_true",
                        help="tapegrad alone (e.g. a second process timing the disk cache)")
    parser.add_argument("--budget", type=float, default=2.0,
                        help="seconds of timed calls per implementation (default 2)")
    parser.add_argument("--size", type=int, help="points per workload (default 1e7; 64 "
                                                 "simulated)")
    args = parser.parse_args(argv)
    from numba import config as numba_config
    if args.simulate != bool(numba_config.ENABLE_CUDASIM):
        raise SystemExit("--simulate goes with NUMBA_ENABLE_CUDASIM=1 set before numba is "
                         "imported, and only with it")
    size = args.size or SIZES["simulate" if args.simulate else "gpu"]
    clock = CompileClock(args.simulate)
    report = dict(schema=1, simulate=args.simulate, size=size, python=platform.python_version(),
                  tapegrad_cache=os.environ.get("TAPEGRAD_CACHE_DIR"), workloads=[])

    def save():
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, args.json)

    for name, spec in WORKLOADS.items():
        entry = dict(name=name, title=spec["title"], label=spec["label"].format(
            n=short_count(size)), results=[])
        report["workloads"].append(entry)
        problem, sample = spec["build"](size)
        entry["size"] = problem.size
        for impl, group, run in implementations(args.simulate, args.tapegrad_only):
            print(f"{name}: {impl} ...", flush=True)
            result = dict(impl=impl, group=group,
                          **run_impl(run, spec, problem, sample, clock, args.budget))
            entry["results"].append(result)
            entry["throughput_vs"] = throughput_ratios(entry)
            print(f"{name}: {impl}: {summary(result)}", flush=True)
            save()
    save()
    # a peer that fails is reported in the results, but only tapegrad's rows fail the check
    bad = [r for e in report["workloads"] for r in e["results"]
           if r["group"] == "tapegrad" and r["status"] in ("FAILED", "error")]
    return 1 if bad else 0


def summary(result):
    if result["status"] != "ok":
        return f"{result['status']}: {result['note']}"
    parts = [f"run {result['run_s'] * 1e3:.3f} ms (median of {result['runs']})",
             f"first call {result['first_call_s']:.2f} s"]
    if result.get("compile_s") is not None:
        parts.append(f"compile {result['compile_s']:.2f} s")
    return ", ".join(parts)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
