"""MLP 784-256-10, tanh hidden layer, batch 256, mean squared error; value and gradient with
respect to the four parameter arrays. float32 throughout, checked against float64 backprop.
"""
import numpy as np

from ..frameworks import standard
from ..harness import Goal, Impl, Problem, Workload


def mlp_loss(w1, b1, w2, b2, x, t):
    h = np.tanh(x @ w1 + b1)
    y = h @ w2 + b2
    return np.mean((y - t) ** 2)


def numpy_value_and_grad(w1, b1, w2, b2, x, t):
    """Backpropagation by hand, in the inputs' dtype."""
    h = np.tanh(x @ w1 + b1)
    r = h @ w2 + b2 - t
    dy = r * (2 / r.size)
    dh = (dy @ w2.T) * (1 - h * h)
    grads = (x.T @ dh, dh.sum(axis=0), h.T @ dy, dy.sum(axis=0))
    return np.mean(r * r), grads


def build(size):
    batch, n_in, hidden, n_out = size
    rng = np.random.default_rng(0)
    args = (rng.standard_normal((n_in, hidden)) / np.sqrt(n_in), np.zeros(hidden),
            rng.standard_normal((hidden, n_out)) / np.sqrt(hidden), np.zeros(n_out),
            rng.standard_normal((batch, n_in)), rng.standard_normal((batch, n_out)))
    value, grads = numpy_value_and_grad(*args)     # float64 reference
    return Problem(f=mlp_loss, args=tuple(a.astype(np.float32) for a in args),
                   argnums=(0, 1, 2, 3), value=float(value),
                   grad=np.concatenate([g.ravel() for g in grads]),
                   size=f"{n_in}-{hidden}-{n_out}, batch {batch}")


WORKLOAD = Workload(
    name="mlp",
    title="MLP, tanh, MSE, value+grad",
    build=build,
    sizes={"full": (256, 784, 256, 10), "quick": (32, 784, 64, 10)},
    impls=[Impl("NumPy hand-written", "hand-written",
                lambda p: lambda: numpy_value_and_grad(*p.args))] + standard(),
    yardsticks=("JAX jit", "PyTorch eager", "NumPy hand-written"),
    dtype="float32",
    target="tapegrad jit CPU <= 1.0x JAX jit and PyTorch eager; "
           "tapegrad source jit <= 1.5x tapegrad jit CPU, first call <= 1 s",
    goals=(Goal("tapegrad jit CPU", 1.0, versus="JAX jit"),
           Goal("tapegrad jit CPU", 1.0, versus="PyTorch eager"),
           Goal("tapegrad source jit", 1.5, versus="tapegrad jit CPU"),
           Goal("tapegrad source jit", 1.0, measure="first_call_s")),
    rtol=1e-3,
    atol=1e-4,
)
