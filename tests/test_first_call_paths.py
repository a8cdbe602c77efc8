"""Issue 14: the div rule's shared g / y, and the trace-time paths the first call of a jitted
tape runs (recording, the one scan of a finished trace)."""
import numpy as np
import pytest

import tapegrad as tg


def _prims(tape):
    return [ins.prim.name for ins in tape.instrs]


def test_div_gradient_divides_once_per_cotangent():
    # d/dx x/y = g/y and d/dy = -(g/y) * ans: one division serves both cotangents
    tape = tg.make_tape(tg.grad(lambda x, y: np.sum(x / y), argnums=(0, 1)))(
        np.arange(1.0, 4.0), np.array([2.0, -3.0, 0.5]))
    assert _prims(tape).count("div") == 2       # the forward's and the shared g / y


@pytest.mark.parametrize("xs, ys", [((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 4)), ((), (2, 2)),
                                    ((2, 2), ())])
def test_div_gradients_match_torch(xs, ys):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(xs) + 3 * len(ys))
    x = rng.standard_normal(xs)
    y = rng.uniform(0.5, 2.0, ys) * np.where(rng.random(ys) < 0.5, -1.0, 1.0)
    w = rng.standard_normal(np.broadcast_shapes(xs, ys))

    def f(a, b):
        return np.sum(np.sin(a / b) * w)

    tx, ty = (torch.tensor(v, requires_grad=True) for v in (x, y))
    (torch.sin(tx / ty) * torch.tensor(w)).sum().backward()
    for grads in (tg.grad(f, argnums=(0, 1))(x, y), tg.jit(tg.grad(f, argnums=(0, 1)))(x, y)):
        np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(grads[1], ty.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_div_gradient_at_zero_inf_and_nan_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.array([1.0, 0.0, np.inf, np.nan, -2.0, 1.0])
    y = np.array([0.0, 0.0, 2.0, 1.0, np.inf, -0.0])

    tx, ty = (torch.tensor(v, requires_grad=True) for v in (x, y))
    (tx / ty).sum().backward()
    for grad in (tg.grad(lambda a, b: np.sum(a / b), argnums=(0, 1)),
                 tg.jit(tg.grad(lambda a, b: np.sum(a / b), argnums=(0, 1)))):
        gx, gy = grad(x, y)
        np.testing.assert_array_equal(gx, tx.grad.numpy())
        np.testing.assert_array_equal(gy, ty.grad.numpy())


def test_div_forward_mode_is_linear_in_the_tangent():
    # jvp comes from the VJPs: the divisor's tangent -(t/y) * ans, against finite differences
    x, y = np.array([0.3, -1.2]), np.array([1.5, 0.7])
    tx, ty = np.array([0.2, 1.0]), np.array([-0.4, 0.3])
    _, out = tg.jvp(lambda a, b: a / b, (x, y), (tx, ty))
    eps = 1e-6
    fd = ((x + eps * tx) / (y + eps * ty) - (x - eps * tx) / (y - eps * ty)) / (2 * eps)
    np.testing.assert_allclose(out, fd, rtol=1e-8)
