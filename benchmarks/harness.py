"""The pieces every workload shares: what a workload and an implementation are, how an
implementation is checked against the reference, and how it is timed.

A workload builds a `Problem` (the function, its inputs, the reference value and gradient) for a
size; an `Impl` turns a problem into a zero-argument `run()` that computes value and gradient once.
`measure_impl` checks the first result of `run()` against the reference and only then times it.
"""
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np


class Skip(Exception):
    """Raised by an implementation's setup when it cannot run here (peer not installed, no GPU)."""


# An implementation whose setup raises one of these is not there yet (a tapegrad face still being
# built, a peer that does not import): it is skipped with a note, never counted as a failure.
NOT_AVAILABLE = (Skip, ImportError, AttributeError, NotImplementedError)


@dataclass
class Problem:
    """One workload at one size: everything an implementation needs to set itself up."""
    f: Callable                      # the function, written against `np` (see frameworks.rebind)
    args: tuple                      # NumPy inputs
    argnums: tuple                   # which args the gradient is taken with respect to
    value: Any                       # reference value (None: the workload checks gradients only)
    grad: np.ndarray                 # reference gradient, flattened (see flat_grad)
    size: str                        # human-readable size, e.g. "n=1000000"
    batched: bool = False            # f maps points to points; the gradient is taken pointwise
    extra: dict = field(default_factory=dict)   # workload-specific data for hand-written impls


@dataclass
class Impl:
    name: str
    group: str                       # "tapegrad", "peer" or "hand-written"
    setup: Callable[[Problem], Callable[[], Any]]
    note: str = ""
    runs_in: str = "quick"           # lightest level it runs at: "quick", "full" or "slow"
    rtol: Optional[float] = None     # looser check for approximate methods (finite differences)
    value_only: bool = False         # computes the value alone (for grad/f cost ratios)


@dataclass
class Goal:
    """A target the project states, checked in every run (quick runs too).

    measure "ratio": impl's median / versus's median (versus defaults to the workload's first
    yardstick) must be at most `limit`; "first_call_s": impl's first call at most `limit` s."""
    impl: str
    limit: float
    versus: Optional[str] = None
    measure: str = "ratio"


@dataclass
class Workload:
    name: str
    title: str
    build: Callable[[Any], Problem]  # size -> Problem
    sizes: dict                      # {"full": size, "quick": size}
    impls: list                      # Impl list: hand-written ones + frameworks.standard(...)
    yardsticks: tuple                # impl names, first one that ran is the ratio's denominator
    dtype: str
    target: str = ""
    rtol: float = 1e-6               # elementwise relative tolerance of the check
    atol: float = 1e-9               # absolute tolerance, as a fraction of the largest entry
    ratios: tuple = ()               # (label, numerator, denominator impl) printed below the table
    goals: tuple = ()                # Goal list: the targets a run flags as met or MISSED


# quick: --quick; full: the default; slow: --slow adds what takes minutes (huge JAX compiles).
LEVELS = {"quick": 0, "full": 1, "slow": 2}


@dataclass
class Settings:
    repeats: int                     # timed samples per implementation, at most
    budget_s: float                  # stop sampling once this much time went into timing
    min_sample_s: float              # one sample runs run() often enough to last this long
    quick: bool                      # small sizes
    level: str                       # which implementations run (see LEVELS)


QUICK = Settings(repeats=5, budget_s=0.3, min_sample_s=0.005, quick=True, level="quick")
FULL = Settings(repeats=21, budget_s=3.0, min_sample_s=0.02, quick=False, level="full")


# ---------------------------------------------------------------- results into NumPy

def to_numpy(x):
    """NumPy copy of whatever an implementation returned (torch, JAX, numba device arrays)."""
    if hasattr(x, "detach"):                     # torch tensor (also tapegrad's Tensor)
        x = x.detach()
        x = x.cpu() if hasattr(x, "cpu") else x
        return np.asarray(x.numpy())
    if hasattr(x, "copy_to_host"):               # numba.cuda device array
        return x.copy_to_host()
    return np.asarray(x)


def flat_grad(grad):
    """One flat float64 vector from a gradient that may be a tuple of arrays (argnums tuple)."""
    if isinstance(grad, (tuple, list)):
        return np.concatenate([flat_grad(g) for g in grad]) if grad else np.zeros(0)
    return np.ravel(to_numpy(grad)).astype(np.float64)


def _scale(ref):
    # atol is relative to the reference's largest entry, so one tolerance serves
    # gradients of 1e-35 (deep scalar graphs) and of 1e3 (Rosenbrock) alike.
    top = float(np.max(np.abs(ref))) if np.size(ref) else 0.0
    return top if top > 0 else 1.0


def check(out, problem, rtol, atol, value_only=False):
    """None when `out` = (value, grad) matches the reference, else a short reason."""
    value, grad = out
    if problem.value is not None and value is not None:
        v = float(np.ravel(to_numpy(value))[0])
        if not np.isclose(v, problem.value, rtol=rtol, atol=atol * _scale(problem.value)):
            return f"value {v:.6g} != reference {problem.value:.6g}"
    if value_only:
        return None
    g = flat_grad(grad)
    if g.shape != problem.grad.shape:
        return f"gradient shape {g.shape} != reference {problem.grad.shape}"
    bad = ~np.isclose(g, problem.grad, rtol=rtol, atol=atol * _scale(problem.grad))
    if bad.any():
        i = int(np.argmax(bad))
        return (f"gradient differs at {int(bad.sum())} of {g.size} entries "
                f"(e.g. [{i}] {g[i]:.6g} vs {problem.grad[i]:.6g})")
    return None


# ---------------------------------------------------------------- timing

def _time_calls(run, number):
    t0 = time.perf_counter()
    for _ in range(number):
        run()
    return time.perf_counter() - t0


def measure(run, settings):
    """Median, spread and count of per-call times of `run` (already warm)."""
    # Calibrate the inner loop like timeit.autorange, so timer resolution and loop
    # overhead do not matter for microsecond workloads; these runs also warm up caches.
    number = 1
    while True:
        t = _time_calls(run, number)
        if t >= settings.min_sample_s or number >= 1 << 20:
            break
        number *= max(2, min(10, int(settings.min_sample_s / max(t, 1e-9)) + 1))
    samples = []
    spent = 0.0
    while len(samples) < settings.repeats and (len(samples) < 3 or spent < settings.budget_s):
        t = _time_calls(run, number)
        spent += t
        samples.append(t / number)
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return dict(median_s=float(median), q1_s=float(q1), q3_s=float(q3),
                min_s=min(samples), max_s=max(samples), samples=len(samples), number=number)


def _short(exc):
    text = str(exc) if isinstance(exc, Skip) else f"{type(exc).__name__}: {exc}"
    text = (text.strip().splitlines() or [""])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def measure_impl(impl, problem, workload, settings):
    """Set up, check, then time one implementation; returns a result dict for results.json."""
    result = dict(impl=impl.name, group=impl.group, status="ok", note=impl.note)
    if LEVELS[impl.runs_in] > LEVELS[settings.level]:
        how = "--slow" if impl.runs_in == "slow" else "full mode (no --quick)"
        return dict(result, status="skipped", note=f"runs only in {how}: {impl.note}")
    t0 = time.perf_counter()
    try:
        run = impl.setup(problem)    # imports, building inputs, wrapping (not timed as a call)
        t1 = time.perf_counter()
        out = run()                  # tracing / compilation happen here for jit systems
        t2 = time.perf_counter()
    except NOT_AVAILABLE as exc:
        return dict(result, status="skipped", note=_short(exc))
    except Exception as exc:         # noqa: BLE001 - a crashing implementation is a result too
        if type(exc).__name__ == "TransformError":   # tapegrad.source refuses this code
            return dict(result, status="skipped", note=_short(exc))
        return dict(result, status="error", note=_short(exc))
    result["setup_s"] = t1 - t0
    result["first_call_s"] = t2 - t1
    rtol = impl.rtol if impl.rtol is not None else workload.rtol
    reason = check(out, problem, rtol, workload.atol, impl.value_only)
    if reason:
        return dict(result, status="FAILED", note=reason)
    try:
        run()                        # one more warm-up call after the check
        result.update(measure(run, settings))
    except Exception as exc:         # noqa: BLE001
        return dict(result, status="error", note="while timing: " + _short(exc))
    return result


def add_ratios(results, yardsticks):
    """Ratio of each median to the first yardstick that ran; returns the yardstick used."""
    times = {r["impl"]: r["median_s"] for r in results if r["status"] == "ok"}
    base = next((name for name in yardsticks if name in times), None)
    for r in results:
        if base is not None and r["status"] == "ok":
            r["ratio"] = r["median_s"] / times[base]
    return base


def check_goals(goals, results, yardsticks):
    """One dict per goal: impl, what, limit, value (None: not measured) and met (bool/None)."""
    ok = {r["impl"]: r for r in results if r["status"] == "ok"}
    checked = []
    for goal in goals:
        versus = goal.versus or yardsticks[0]
        value = None
        if goal.measure == "first_call_s":
            what = "first call (s)"
            if goal.impl in ok:
                value = ok[goal.impl]["first_call_s"]
        else:
            what = f"time / {versus}"
            if goal.impl in ok and versus in ok:
                value = ok[goal.impl]["median_s"] / ok[versus]["median_s"]
        checked.append(dict(impl=goal.impl, what=what, limit=goal.limit, value=value,
                            met=None if value is None else bool(value <= goal.limit)))
    return checked


# ---------------------------------------------------------------- references

CS_STEP = 1e-30


def complex_step(f, *args):
    """Value and derivative of analytic code, exact to rounding (no cancellation as in FD).

    The caller puts perturbations 1j * CS_STEP * direction into the arguments; then
    f(x + i h d) = f(x) + i h f'(x) d + O(h^2), so the real part is the value and the
    imaginary part / h the directional derivative, one direction per array element.
    """
    out = np.asarray(f(*args))
    return out.real, out.imag / CS_STEP
