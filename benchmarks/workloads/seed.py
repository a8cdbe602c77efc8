"""The seed tutorial's graph at its own scale (2x2 float32): the per-operation overhead of eager
autograd.

x = ones(2, 2, requires_grad=True); out = mean((x + 2) * (x + 2) * 3); out.backward(); x.grad
"""
import numpy as np

from ..frameworks import standard
from ..harness import Goal, Impl, Problem, Workload


def seed_graph(x):
    y = x + 2
    z = y * y * 3
    return np.mean(z)


def build(shape):
    x = np.ones(shape, dtype=np.float32)
    y = x.astype(np.float64) + 2
    return Problem(f=seed_graph, args=(x,), argnums=(0,), value=float(np.mean(3 * y * y)),
                   grad=(6 * y / y.size).ravel(), size="x".join(map(str, shape)))


def numpy_setup(p):
    x = p.args[0]

    def run():
        y = x + 2
        return np.mean(y * y * 3), y * np.float32(6 / y.size)
    return run


WORKLOAD = Workload(
    name="seed",
    title="seed tutorial graph: x+2, y*y*3, mean, backward",
    build=build,
    sizes={"full": (2, 2), "quick": (2, 2)},
    impls=[Impl("NumPy hand-written", "hand-written", numpy_setup)]
    + standard(fd=True),
    yardsticks=("PyTorch eager", "NumPy hand-written"),
    dtype="float32",
    target="tapegrad eager <= 0.6x PyTorch eager",
    goals=(Goal("tapegrad eager", 0.6),),
    rtol=1e-5,
    atol=1e-6,
)
