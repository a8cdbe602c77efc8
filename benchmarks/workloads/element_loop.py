"""Element loops (issue 12): Python loops that read and write array elements one at a time.

- `diff_energy`: s += (x[i + 1] - x[i]) ** 2 over i < n - 1 (element reads).
- `fd_energy`: a 1-D finite-difference energy: y[i] = x[i-1] - 2 x[i] + x[i+1] written element by
  element into a fresh array, then e += y[i] ** 2 + x[i] ** 4 / 2 (element writes and reads).

Traced, every x[i] is one instruction: the tape faces must keep each read and write O(1) (scatter
into one adjoint, writes in place). A hand-written Numba gradient is the yardstick; the source face
is the target's reference (tapegrad jit CPU within 3x of it at n = 1e5). JAX's jit unrolls the
Python loop (n-long graphs), so it runs at --slow only. float64.
"""
import numpy as np

from ..frameworks import standard
from ..harness import Goal, Impl, Problem, Workload


def diff_energy(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += (x[i + 1] - x[i]) ** 2
    return s


def fd_energy(x):
    y = x * 0.0
    for i in range(1, x.shape[0] - 1):
        y[i] = x[i - 1] - 2.0 * x[i] + x[i + 1]
    e = 0.0
    for i in range(x.shape[0]):
        e += y[i] * y[i] + 0.5 * x[i] ** 4
    return e


def diff_energy_grad(x):
    d = np.diff(x)
    g = np.zeros_like(x)
    g[1:] += 2.0 * d
    g[:-1] -= 2.0 * d
    return float(np.sum(d * d)), g


def fd_energy_grad(x):
    y = np.zeros_like(x)
    y[1:-1] = x[:-2] - 2.0 * x[1:-1] + x[2:]
    g = 2.0 * x ** 3
    g[:-2] += 2.0 * y[1:-1]
    g[1:-1] -= 4.0 * y[1:-1]
    g[2:] += 2.0 * y[1:-1]
    return float(np.sum(y * y) + 0.5 * np.sum(x ** 4)), g


_KERNELS = {}


def _numba_kernels():
    """Hand-written reverse loops, compiled on first use (Numba stays out of the import)."""
    if not _KERNELS:
        from numba import njit

        @njit(cache=True)
        def diff_kernel(x, g):
            s = 0.0
            g[:] = 0.0
            for i in range(x.shape[0] - 1):
                d = x[i + 1] - x[i]
                s += d * d
                g[i + 1] += 2.0 * d
                g[i] -= 2.0 * d
            return s

        @njit(cache=True)
        def fd_kernel(x, g):
            n = x.shape[0]
            e = 0.0
            for i in range(n):
                g[i] = 2.0 * x[i] ** 3
                e += 0.5 * x[i] ** 4
            for i in range(1, n - 1):
                y = x[i - 1] - 2.0 * x[i] + x[i + 1]
                e += y * y
                g[i - 1] += 2.0 * y
                g[i] -= 4.0 * y
                g[i + 1] += 2.0 * y
            return e

        _KERNELS.update(diff_energy=diff_kernel, fd_energy=fd_kernel)
    return _KERNELS


def numba_setup(p):
    kernel = _numba_kernels()[p.extra["name"]]
    x = p.args[0]
    g = np.empty_like(x)
    return lambda: (kernel(x, g), g)


def _builder(f, reference):
    def build(n):
        x = np.random.default_rng(0).uniform(-1.0, 1.0, n)
        value, grad = reference(x)
        return Problem(f=f, args=(x,), argnums=(0,), value=value, grad=grad, size=f"n={n}",
                       extra=dict(name=f.__name__))
    return build


_UNROLLED = "unrolls the n-step Python loop into an n-long graph"


def _workload(f, reference, title):
    return Workload(
        name=f"element_loop_{f.__name__}",
        title=title,
        build=_builder(f, reference),
        sizes={"full": 100_000, "quick": 1_000},
        impls=[Impl("Numba hand-written", "hand-written", numba_setup,
                    note="reverse loop written by hand")]
        + standard(runs_in={"JAX jit": "slow", "HIPS autograd": "full", "tangent-ad": "full",
                            "PyTorch eager": "full", "tapegrad eager": "full"},
                   notes={"JAX jit": _UNROLLED + "; first call = trace + compile"}),
        yardsticks=("Numba hand-written",),
        dtype="float64",
        target="tapegrad jit CPU <= 3x tapegrad source jit; first call < 5 s at n = 1e5",
        goals=(Goal("tapegrad jit CPU", 3.0, versus="tapegrad source jit"),
               Goal("tapegrad jit CPU", 5.0, measure="first_call_s")),
        rtol=1e-9,
        atol=1e-12,
    )


WORKLOADS = [
    _workload(diff_energy, diff_energy_grad, "element reads: s += (x[i+1] - x[i])**2"),
    _workload(fd_energy, fd_energy_grad, "element writes and reads: 1-D finite-difference energy"),
]
