"""Batched gradient of a scalar function of about 100 instructions at many points, float64.

f(x) runs 8 steps of y = 0.9 sin(y) + 0.1 y tanh(0.3 x) + 0.05 exp(-y^2) (12 instructions each);
the gradient is f'(x) at every point: vmap(grad(f)). On the CPU against a parallel hand-written
Numba kernel; on a GPU (own workload, only where one is present) against JAX on the same GPU.
"""
import numpy as np

from ..frameworks import gpu_only, standard
from ..harness import CS_STEP, Goal, Impl, Problem, Workload, complex_step

STEPS = 8


def bumpy(x):
    y = x
    for _ in range(STEPS):
        y = 0.9 * np.sin(y) + 0.1 * y * np.tanh(0.3 * x) + 0.05 * np.exp(-y * y)
    return y


def build(n):
    x = np.random.default_rng(0).uniform(-3.0, 3.0, n)
    _, grad = complex_step(bumpy, x + 1j * CS_STEP)
    return Problem(f=bumpy, args=(x,), argnums=(0,), value=None, grad=grad, size=f"{n} points",
                   batched=True)


def numba_setup(p):
    from ..kernels import bumpy_grad
    x = p.args[0]
    out = np.empty_like(x)
    return lambda: (None, bumpy_grad(x, STEPS, out))


def _workload(name, where, build, sizes, impls, yardsticks, target, goals=()):
    title = f"batched grad of a ~100-instruction scalar function, {where}"
    return Workload(name=name, title=title,
                    build=build, sizes=sizes, impls=impls, yardsticks=yardsticks,
                    dtype="float64", target=target, goals=goals, rtol=1e-8, atol=1e-10)


WORKLOADS = [
    _workload("batched_cpu", "CPU", build, {"full": 1_000_000, "quick": 10_000},
              [Impl("Numba prange forward-mode", "hand-written", numba_setup,
                    note="hand-written dual numbers, rows in parallel")]
              + standard(batched=True, fd=True),
              ("Numba prange forward-mode", "JAX jit"),
              "tapegrad jit CPU (vmap rows in parallel) against hand-written Numba"),
    _workload("batched_gpu", "GPU", gpu_only(build), {"full": 10_000_000, "quick": 100_000},
              standard(batched=True, gpu=True),
              ("JAX jit GPU", "PyTorch func.vmap(grad) GPU"),
              "tapegrad jit CUDA >= 1.0x JAX jit throughput on the same GPU",
              (Goal("tapegrad jit CUDA", 1.0, versus="JAX jit GPU"),)),
]
