"""The tape: tracing the sample table, the reference interpreter, the printer and the passes."""
import numpy as np
import pytest

import tapegrad as tg
from samples import SAMPLES
from tape_faces import assert_close, eager_value_and_grad, weighted
from tapegrad import primitives as P
from tapegrad.tape import (GuardFailure, eliminate_common_subexpressions, eliminate_dead_code,
                           fold_constants, fusion_groups, optimize)


def _tape_of(sample):
    f, values, weights = weighted(sample)
    argnums = tuple(range(len(values)))
    tape = tg.make_tape(tg.value_and_grad(f, argnums=argnums), optimized=False)(*values)
    return tape, values, weights


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_reference_interpreter_matches_eager(sample):
    tape, values, weights = _tape_of(sample)
    value, grads = tape.run(*values)
    eager_value, eager_grads = eager_value_and_grad(sample, weights)
    assert_close(value, eager_value)
    for g, e in zip(grads, eager_grads):
        assert np.shape(g) == np.shape(e)
        assert_close(g, e)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_passes_keep_results(sample):
    tape, values, _ = _tape_of(sample)
    expected = tape.run(*values)
    for tape_pass in (fold_constants, eliminate_common_subexpressions, eliminate_dead_code,
                      optimize):
        value, grads = tape_pass(tape).run(*values)
        assert_close(value, expected[0])
        for g, e in zip(grads, expected[1]):
            assert_close(g, e)


def f_branchy(x, w):
    y = np.tanh(x @ w)
    if y.sum() > 0:
        y = y * 2
    return np.sum(y ** 2)


def test_printer_reads_like_a_jaxpr():
    x, w = np.ones((2, 3)), np.full((3, 2), 0.5)
    text = str(tg.make_tape(tg.value_and_grad(f_branchy))(x, w))
    assert text.startswith("{ lambda a:f64[2,3] b:f64[3,2] . let")
    assert "= matmul a b" in text
    assert "guard" in text and "== True" in text and "test_tape.py" in text
    assert "-- adjoint sweep --" in text
    assert text.rstrip().endswith("}")


def test_guard_failure_in_reference_interpreter():
    x, w = np.ones((2, 3)), np.full((3, 2), 0.5)
    tape = tg.make_tape(f_branchy)(x, w)
    assert_close(tape.run(x, w), f_branchy(x, w))
    with pytest.raises(GuardFailure):
        tape.run(-x, w)


def test_constant_folding_and_identities():
    def f(x):
        c = np.exp(np.ones(3))              # constants only: folded
        return np.sum(x * 1.0 + 0.0 + c)
    tape = tg.make_tape(f, optimized=False)(np.arange(3.0))
    folded = optimize(tape)
    assert [ins.prim.name for ins in folded.instrs] == ["add", "sum"]
    assert_close(folded.run(np.arange(3.0)), tape.run(np.arange(3.0)))


def test_common_subexpressions_are_shared():
    def f(x):
        return np.sin(x) * np.sin(x)
    tape = tg.make_tape(f, optimized=False)(np.arange(3.0))
    assert [ins.prim.name for ins in eliminate_common_subexpressions(tape).instrs] == ["sin", "mul"]


def test_dead_code_is_dropped():
    def f(x):
        np.exp(x)                           # result unused
        return x * 2
    tape = tg.make_tape(f, optimized=False)(np.arange(3.0))
    assert [ins.prim.name for ins in eliminate_dead_code(tape).instrs] == ["mul"]


def test_fusion_groups_cover_elementwise_chains():
    def f(x, w):
        h = np.tanh(x @ w) * 2.0 + 1.0
        return np.sum(h)
    tape = tg.make_tape(f)(np.ones((4, 3)), np.ones((3, 5)))
    groups = fusion_groups(tape)
    assert [[tape.instrs[k].prim.name for k in g] for g in groups] == [["tanh", "mul", "add"]]


def test_scalar_code_traces():
    """Lists of 0-d values, Python sum, iteration and element writes (copy-on-write)."""
    def f(x):
        parts = list(x)
        total = sum(p * p for p in parts)
        x[0] = total
        return x.sum() + len(x)
    x = np.array([1.0, 2.0, 3.0])
    value, grad = tg.value_and_grad(f)(x)
    assert_close(value, 14 + 2 + 3 + 3)
    assert_close(grad, [2.0, 5.0, 7.0])


def test_numpy_functions_trace():
    def f(x, w):
        a = np.dot(x, w) + np.maximum(x, 0.1).sum(axis=1, keepdims=True).T.sum()
        b = np.where(a > 0, np.exp(-a), np.square(a))
        return np.mean(np.clip(b, 0.0, 10.0)) + np.linalg.norm(x) + np.sum(np.concatenate([x, x]))
    x, w = np.linspace(-1, 1, 6).reshape(2, 3), np.linspace(0, 1, 6).reshape(3, 2)
    assert_close(tg.make_tape(f)(x, w).run(x, w), f(x, w))
    for g, h in zip(tg.grad(f, argnums=(0, 1))(x, w), _central_differences(f, (x, w))):
        assert_close(g, h, rtol=1e-6, atol=1e-8)


def _central_differences(f, args, h=1e-6):
    grads = []
    for i, a in enumerate(args):
        g = np.zeros_like(a)
        for j in np.ndindex(a.shape):
            up = [b.copy() for b in args]
            down = [b.copy() for b in args]
            up[i][j] += h
            down[i][j] -= h
            g[j] = (f(*up) - f(*down)) / (2 * h)
        grads.append(g)
    return grads


def test_grad_of_grad_records_second_order():
    f = lambda x: np.sum(np.sin(x) * x)      # noqa: E731
    x = np.array([0.3, -1.2])
    hessian_diagonal = tg.vmap(tg.grad(lambda x: tg.grad(f)(x)[0]))
    assert_close(tg.grad(lambda x: tg.grad(f)(x).sum())(x),
                 2 * np.cos(x) - x * np.sin(x))
    assert hessian_diagonal is not None


def test_has_aux_and_argnums():
    def f(x, y):
        return np.sum(x * y), {"doubled": x * 2}
    (value, aux), (gx, gy) = tg.value_and_grad(f, argnums=(0, 1), has_aux=True)(
        np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert_close(value, 11)
    assert_close(aux["doubled"], [2, 4])
    assert_close(gx, [3, 4])
    assert_close(gy, [1, 2])
    g, aux = tg.grad(f, argnums=1, has_aux=True)(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    assert_close(g, [1, 2])


def test_vmap_in_axes():
    f = lambda x, w: np.sum(x * w)           # noqa: E731
    x = np.arange(6.0).reshape(2, 3)
    assert_close(tg.vmap(f, in_axes=(0, None))(x, np.ones(3)), x.sum(axis=1))
    assert_close(tg.vmap(f, in_axes=(1, None))(x, np.ones(2)), x.sum(axis=0))
    assert_close(tg.vmap(tg.grad(f), in_axes=(0, None))(x, np.full(3, 2.0)), np.full((2, 3), 2.0))


def test_tensors_are_data_and_constants():
    w = tg.tensor(np.array([1.0, 2.0]), dtype=tg.float64)
    f = lambda x: np.sum(x * w)              # noqa: E731  (a Tensor met while tracing: constant)
    assert_close(tg.grad(f)(tg.tensor(np.array([5.0, 6.0]), dtype=tg.float64)), [1.0, 2.0])


def test_primitive_call_on_tracer_goes_through_registry():
    tape = tg.make_tape(lambda x: P.softplus(x))(np.zeros(2))
    assert [ins.prim.name for ins in tape.instrs] == ["softplus"]


def test_adding_zero_records_nothing_and_keeps_handles_apart():
    def f(x):
        y = 0 + x           # sum() starts from 0
        z = y + 0.0
        z[0] = 5.0          # a write moves z's handle only
        return x * 1.0 + z
    x = np.arange(3.0)
    tape = tg.make_tape(f, optimized=False)(x)
    assert [ins.prim.name for ins in tape.instrs].count("add") == 1
    assert_close(tape.run(x), f(x))
    assert_close(tape.run(x), np.array([5.0, 2.0, 4.0]))
    ints = tg.make_tape(lambda k: 0 + k, optimized=False)(np.arange(3))
    assert [ins.prim.name for ins in ints.instrs] == ["add"]     # only floats: int + 0 is kept
