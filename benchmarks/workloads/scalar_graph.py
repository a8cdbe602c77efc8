"""The scalar graph of "Fastest Autograd in the West" (A. Rogozhnikov, 2023), float64.

100 inputs, then n operations cycling through softplus of node[-10], sum of nodes[-30:-10:5],
product node[-20] * node[-10], and softmax of the last 4 nodes (adding 4 nodes); value and
gradient of the last node with respect to the inputs. The graph is one op list: the Python
function every framework differentiates interprets it (unrolling into the same graph when traced),
and the C and Numba yardsticks sweep the very same list.

The gradient shrinks geometrically with depth (about 1e-35 after 1k ops) and underflows to zero
well before 10k ops, in every implementation: at 10k ops the check has the value and zeros.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..frameworks import standard
from ..harness import CS_STEP, Goal, Impl, Problem, Skip, Workload, complex_step

N_INPUTS = 100
SOFTPLUS, SUM, PROD, SOFTMAX = range(4)
# One op per record; the C interpreter takes it in compressed-row form (compressed_rows)
OP_DTYPE = np.dtype([("op", np.int32), ("nin", np.int32), ("out", np.int32),
                     ("ins", np.int32, 8)])


def graph_ops(n_ops, order=None):
    """The op list; `out` is the first slot an op writes (softmax writes nin slots). `order`: the
    op kind of each op (default: the cycle k % 4)."""
    ops = np.zeros(n_ops, OP_DTYPE)
    n = N_INPUTS
    for k in range(n_ops):
        op = k % 4 if order is None else int(order[k])
        ins = {SOFTPLUS: [n - 10], SUM: range(n - 30, n - 10, 5),
               PROD: [n - 20, n - 10], SOFTMAX: range(n - 4, n)}[op]
        ops[k]["op"], ops[k]["nin"], ops[k]["out"] = op, len(ins), n
        ops[k]["ins"][:len(ins)] = ins
        n += 4 if op == SOFTMAX else 1
    return ops, n


def make_graph_function(ops):
    program = [(int(o["op"]), [int(i) for i in o["ins"][:o["nin"]]]) for o in ops]

    def scalar_graph(x):
        v = [x[i] for i in range(N_INPUTS)]
        for op, ins in program:
            if op == SOFTPLUS:
                v.append(np.log(1.0 + np.exp(v[ins[0]])))
            elif op == SUM:
                v.append(sum([v[i] for i in ins]))
            elif op == PROD:
                v.append(v[ins[0]] * v[ins[1]])
            else:
                # No max shift: values here stay far from exp overflow, and tracers need no max.
                e = [np.exp(v[i]) for i in ins]
                s = sum(e)
                v.extend([ei / s for ei in e])
        return v[-1]
    return scalar_graph


def build(n_ops):
    ops, n_vals = graph_ops(n_ops)
    f = make_graph_function(ops)
    x = np.random.default_rng(0).standard_normal(N_INPUTS)
    # All 100 directions at once: row i of the input carries the perturbation of x[i].
    value, grad = complex_step(f, x[:, None] + 1j * CS_STEP * np.eye(N_INPUTS))
    return Problem(f=f, args=(x,), argnums=(0,), value=float(value[0]), grad=grad,
                   size=f"{n_ops} ops", extra=dict(ops=ops, n_vals=n_vals))


# ---------------------------------------------------------------- yardsticks

def _sweep_buffers(p):
    v = np.zeros(p.extra["n_vals"])
    v[:N_INPUTS] = p.args[0]     # inputs are never overwritten: fill them once
    return v, np.zeros_like(v)


def numba_setup(p):
    from .. import kernels
    ops = p.extra["ops"]
    code, nin, out = (np.ascontiguousarray(ops[k]) for k in ("op", "nin", "out"))
    ins = np.ascontiguousarray(ops["ins"])
    v, g = _sweep_buffers(p)
    target = p.extra["n_vals"] - 1
    return lambda: (kernels.graph_sweeps(code, nin, out, ins, v, g, target), g[:N_INPUTS])


C_SOURCE = Path(__file__).resolve().parents[1] / "tape_interpreter.c"
C_FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]


def build_c_interpreter():
    """Compile tape_interpreter.c into a per-user cache; the path of the shared library.

    The key covers the source, the flags and the CPU (-march=native code may not run on
    another one), so an edit or another machine sharing the home directory rebuilds."""
    from ..machine import cpu_model
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise Skip("no C compiler (cc or gcc, or $CC) to build the C tape interpreter")
    key = hashlib.sha256(C_SOURCE.read_bytes() + " ".join([cc] + C_FLAGS + [cpu_model()])
                         .encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tapegrad-bench"
    lib = cache / f"tape_interpreter-{key}.so"
    if not lib.exists():
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Build under a temporary name, then rename: concurrent runs never see half a file.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        done = subprocess.run([cc, *C_FLAGS, "-o", tmp, str(C_SOURCE), "-lm"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            os.unlink(tmp)
            raise Skip("the C tape interpreter did not build: " + done.stderr.strip()[:100])
        os.replace(tmp, lib)
    return lib


def compressed_rows(ops):
    """The op list as the C interpreter's arrays: opcode, operand_start, operand, first_out."""
    nin = ops["nin"].astype(np.int32)
    start = np.zeros(len(ops) + 1, np.int32)
    np.cumsum(nin, out=start[1:])
    operand = np.concatenate([o["ins"][:o["nin"]] for o in ops]).astype(np.int32)
    return [np.ascontiguousarray(a, dtype=np.int32)
            for a in (ops["op"], start, operand, ops["out"])]


def c_setup(p):
    lib = ctypes.CDLL(str(build_c_interpreter()))
    c_int, c_void_p = ctypes.c_int, ctypes.c_void_p
    lib.value_and_grad.argtypes = [c_int] + [c_void_p] * 6 + [c_int, c_int]
    lib.value_and_grad.restype = ctypes.c_double
    arrays = compressed_rows(p.extra["ops"])
    v, g = _sweep_buffers(p)
    call = (len(p.extra["ops"]), *(a.ctypes.data for a in arrays), v.ctypes.data, g.ctypes.data,
            p.extra["n_vals"], 1)

    def run():
        return lib.value_and_grad(*call), g[:N_INPUTS]
    run.buffers = (arrays, v, g)        # `call` holds raw pointers: keep what they point to alive
    return run


# XLA's compile time grows faster than linearly with the unrolled graph: here (2 cores,
# jax 0.10.2) 11 s for 100 ops, 31 s for 200 ops, and 1k ops had not compiled after 15 min.
JAX = {
    100: dict(runs_in={"JAX jit": "full"},
              notes={"JAX jit": "first call = trace + compile (about 10 s)"}),
    1000: dict(runs_in={"JAX jit": "slow"},
               notes={"JAX jit": "XLA compile takes over 15 min; see scalar_graph_100"}),
    10000: dict(exclude={"JAX jit": "XLA compile would take hours; see scalar_graph_100"}),
}


# issue 14's targets: the fixed cost of a call weighs most on the small graphs
RATIO_GOAL = {100: 1.5, 1000: 1.3, 10000: 1.25}
FIRST_CALL_GOAL = {100: 1.0, 1000: 1.0, 10000: 0.4}


def graph_workload(name, title, build, n_ops, quick_ops, impls, goals=()):
    """A workload of one graph size against the C and Numba sweeps of its op list, with issue
    14's targets for tapegrad jit CPU (plus `goals`)."""
    return Workload(
        name=name, title=title, build=build, sizes={"full": n_ops, "quick": quick_ops},
        impls=[Impl("C tape interpreter", "hand-written", c_setup,
                    note="benchmarks/tape_interpreter.c, cc -O3 -march=native"),
               Impl("Numba interpreter", "hand-written", numba_setup,
                    note="hand-written sweeps over the op list")] + impls,
        yardsticks=("C tape interpreter", "Numba interpreter"),
        dtype="float64",
        target=f"tapegrad jit CPU <= {RATIO_GOAL[n_ops]}x C; tracing + compile < "
               f"{FIRST_CALL_GOAL[n_ops]} s" + "".join(f"; {g.impl} <= {g.limit}x {g.versus}"
                                                       for g in goals),
        goals=(Goal("tapegrad jit CPU", RATIO_GOAL[n_ops]),
               Goal("tapegrad jit CPU", FIRST_CALL_GOAL[n_ops], measure="first_call_s"), *goals),
        rtol=1e-9,
        atol=1e-12,
    )


def _workload(n_ops, quick_ops):
    label = f"{n_ops // 1000}k" if n_ops >= 1000 else str(n_ops)
    return graph_workload(f"scalar_graph_{label}",
                          f"scalar graph, {n_ops} ops of softplus/sum/prod/softmax, value+grad",
                          build, n_ops, quick_ops, standard(**JAX[n_ops]),
                          goals=(Goal("tapegrad eager", 1.0, versus="PyTorch eager"),))


WORKLOADS = [_workload(100, 100), _workload(1000, 1000), _workload(10000, 2000)]
