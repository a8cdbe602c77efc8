"""tg.checkpoint: the adjoint sweep recomputes the function's forward instead of keeping it."""
import numpy as np
import pytest

import tapegrad as tg
from tapegrad.tape import ADJOINT, optimize

RNG = np.random.default_rng(7)


def step(y, p):
    return y + 0.01 * (np.sin(p * y) - y ** 3)


def block(y, p, n=10):
    for _ in range(n):
        y = step(y, p)
    return y


def ode_loss(blk, steps):
    def loss(p, y0):
        y = y0
        for _ in range(steps):
            y = blk(y, p)
        return np.sum(y ** 2)
    return loss


def test_gradient_unchanged_on_every_face():
    p, y0 = RNG.uniform(0.5, 1.5, 8), RNG.uniform(-1, 1, 8)
    cblock = tg.checkpoint(block)
    plain = tg.grad(ode_loss(block, 5), argnums=(0, 1))(p, y0)
    for g in (tg.grad(ode_loss(cblock, 5), argnums=(0, 1))(p, y0),
              tg.jit(tg.grad(ode_loss(cblock, 5), argnums=(0, 1)))(p, y0)):
        np.testing.assert_allclose(g[0], plain[0], rtol=1e-13)
        np.testing.assert_allclose(g[1], plain[1], rtol=1e-13)
    ps = np.stack([p, p * 1.1])
    batched = tg.vmap(tg.grad(ode_loss(cblock, 3)), in_axes=(0, None))(ps, y0)
    np.testing.assert_allclose(batched[1], tg.grad(ode_loss(block, 3))(ps[1], y0), rtol=1e-13)


def test_adjoint_recomputes_instead_of_reading_the_forward():
    p, y0 = RNG.uniform(0.5, 1.5, 4), RNG.uniform(-1, 1, 4)
    cblock = tg.checkpoint(block)
    for blk, recomputed in ((block, 0), (cblock, 1)):
        tape = optimize(tg.make_tape(tg.grad(ode_loss(blk, 3)))(p, y0))
        forward_sins = [k for k, ins in enumerate(tape.instrs)
                        if ins.prim.name == "sin" and ins.phase != ADJOINT]
        adjoint_sins = [k for k, ins in enumerate(tape.instrs)
                        if ins.prim.name == "sin" and ins.phase == ADJOINT]
        assert len(forward_sins) == 30
        # each block's last sin is read by no derivative: dead code once recomputed
        assert len(adjoint_sins) == 27 * recomputed
        # sin's VJP reads its argument p * y: the forward's value, or its recomputation
        inside = {tape.instrs[k].ins[0] for k in forward_sins}
        reads = {s for ins in tape.instrs if ins.phase == ADJOINT for s in ins.ins}
        assert bool(inside & reads) == (not recomputed)


def test_compiled_tape_holds_less_memory():
    cpu = pytest.importorskip("tapegrad_jit.cpu")
    p, y0 = RNG.uniform(0.5, 1.5, 64), RNG.uniform(-1, 1, 64)
    sizes = {}
    for name, blk in (("plain", block), ("checkpoint", tg.checkpoint(block))):
        tape = optimize(tg.make_tape(tg.grad(ode_loss(blk, 20)))(p, y0))
        program = cpu.Program(tape)
        sizes[name] = program.v0.size
        np.testing.assert_allclose(program([p, y0])[1], tg.grad(ode_loss(block, 20))(p, y0),
                                   rtol=1e-12)
    # 200 steps: the plain adjoint keeps every step's values, the checkpointed one a block's
    assert sizes["checkpoint"] * 4 < sizes["plain"], sizes


def test_pytrees_several_outputs_static_args_and_decorator():
    @tg.checkpoint(static_argnums=(2,))
    def f(params, x, n):
        h = x
        for _ in range(n):
            h = np.tanh(params["w"] @ h + params["b"])
        return {"h": h, "norm": np.sum(h ** 2)}

    def loss(fn):
        def scalar(params, x):
            out = fn(params, x, 3)
            return np.sum(out["h"]) + out["norm"]
        return scalar
    params = {"w": RNG.standard_normal((3, 3)), "b": RNG.standard_normal(3)}
    x = RNG.standard_normal(3)
    want = tg.grad(loss(f.__wrapped__), argnums=(0, 1))(params, x)
    got = tg.grad(loss(f), argnums=(0, 1))(params, x)
    np.testing.assert_allclose(got[0]["w"], want[0]["w"], rtol=1e-13)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-13)
    out = f(params, x, 2)                # plain values: runs as written
    np.testing.assert_allclose(out["norm"], np.sum(out["h"] ** 2))


def test_higher_order_and_forward_mode_through_checkpoint():
    f = tg.checkpoint(lambda x: np.sin(x) * np.exp(x))
    x = np.array([0.3, -0.7])
    h = tg.hessian(lambda x: np.sum(f(x)))(x)
    want = np.diag(2 * np.cos(x) * np.exp(x))
    np.testing.assert_allclose(h, want, rtol=1e-12)
    np.testing.assert_allclose(tg.jit(tg.hessian(lambda x: np.sum(f(x))))(x), want, rtol=1e-12)
    _, t = tg.jvp(f, (x,), (np.ones(2),))
    np.testing.assert_allclose(t, (np.cos(x) + np.sin(x)) * np.exp(x), rtol=1e-12)
    nested = tg.checkpoint(lambda x: f(f(x)))
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(nested(x)))(x),
                               tg.grad(lambda x: np.sum(f.__wrapped__(f.__wrapped__(x))))(x),
                               rtol=1e-13)


def test_benchmark_script_runs_small(capsys):
    pytest.importorskip("numba")
    from benchmarks import checkpoint_memory
    rows = checkpoint_memory.main(["--steps", "200", "--block", "20", "--n", "8"])
    plain, checkpointed = rows
    assert checkpointed["buffer_MB"] < plain["buffer_MB"]
    assert "gradients agree" in capsys.readouterr().out
