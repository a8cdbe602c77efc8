"""The scalar graph written in two other ways, against the same C tape interpreter.

scalar_graph.py's graph repeats one pattern of four ops and writes softmax as a list of scalars;
the numbers it gives could owe much to that shape (a compiled tape re-rolls the repeats into
loops, and a branch predictor learns the pattern). These two workloads keep the C and Numba
yardsticks (the same op list swept by hand) and change only what the traced function looks like:

  shuffled  the same four ops in a random order within each block of four: no period, so no
            loop re-rolling, and the interpreter's dispatch follows no pattern;
  arrays    the benchmark's order, but written the way NumPy code usually is: softplus as
            np.logaddexp(0, x), softmax as np.stack of the last 4 nodes, np.exp(s - s.max()),
            e / e.sum(), then indexed back into nodes (small-array instructions on the tape).

Their targets are scalar_graph's (issue 14); a run says whether they are met.
"""
import numpy as np

from ..frameworks import tapegrad_jit_setup
from ..harness import CS_STEP, Impl, Problem, complex_step
from . import scalar_graph as sg
from .scalar_graph import N_INPUTS, SOFTMAX, SOFTPLUS, SUM


def shuffled_ops(n_ops, seed):
    """scalar_graph.graph_ops with each block of four ops in a random order."""
    rng = np.random.default_rng(seed)
    return sg.graph_ops(n_ops, np.concatenate([rng.permutation(4) for _ in range(n_ops // 4 + 1)]))


def array_graph_function(ops):
    """The op list's function with NumPy array idioms (same values up to rounding)."""
    program = [(int(o["op"]), [int(i) for i in o["ins"][:o["nin"]]]) for o in ops]

    def scalar_graph_arrays(x):
        v = [x[i] for i in range(N_INPUTS)]
        for op, ins in program:
            args = [v[i] for i in ins]
            if op == SOFTMAX:
                s = np.stack(args)
                e = np.exp(s - s.max())
                soft = e / e.sum()
                v.extend(soft[j] for j in range(len(args)))
            else:
                v.append(np.logaddexp(0.0, args[0]) if op == SOFTPLUS else
                         sum(args) if op == SUM else args[0] * args[1])
        return v[-1]
    return scalar_graph_arrays


def _problem(f, ops, n_vals, label):
    """The reference by complex step through the scalar-list function of the same op list (the
    array idioms' np.logaddexp and max take no complex numbers)."""
    x = np.random.default_rng(0).standard_normal(N_INPUTS)
    value, grad = complex_step(sg.make_graph_function(ops),
                               x[:, None] + 1j * CS_STEP * np.eye(N_INPUTS))
    return Problem(f=f, args=(x,), argnums=(0,), value=float(value[0]), grad=grad, size=label,
                   extra=dict(ops=ops, n_vals=n_vals))


def build_shuffled(n_ops):
    # the first seed whose graph stays finite (sums and products of non-softmax nodes can
    # overflow exp in some orders; the C sweep would then compare NaNs)
    for seed in range(100):
        ops, n_vals = shuffled_ops(n_ops, seed)
        f = sg.make_graph_function(ops)
        with np.errstate(all="ignore"):
            finite = np.isfinite(f(np.random.default_rng(0).standard_normal(N_INPUTS)))
        if finite:
            return _problem(f, ops, n_vals, f"{n_ops} ops, order seed {seed}")
    raise RuntimeError("no finite shuffled graph in 100 seeds")


def build_arrays(n_ops):
    ops, n_vals = sg.graph_ops(n_ops)
    return _problem(array_graph_function(ops), ops, n_vals, f"{n_ops} ops")


def _workload(kind, build, n_ops, quick_ops, title):
    label = f"{n_ops // 1000}k" if n_ops >= 1000 else str(n_ops)
    return sg.graph_workload(f"scalar_graph_{kind}_{label}",
                             f"scalar graph, {n_ops} ops, {title}, value+grad", build, n_ops,
                             quick_ops, [Impl("tapegrad jit CPU", "tapegrad",
                                              tapegrad_jit_setup("cpu"))])


WORKLOADS = [
    _workload(kind, build, n_ops, quick, title)
    for kind, build, title in (
        ("shuffled", build_shuffled, "the four ops in random order"),
        ("arrays", build_arrays, "softmax over np.stack, softplus by np.logaddexp"))
    for n_ops, quick in ((1000, 1000), (10000, 2000))
]
