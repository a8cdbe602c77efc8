"""The CUDA backend's plans in plain Python (no numba): lowering composite primitives must leave
every tape computing what the reference interpreter computes, and the generated kernel sources
must read inputs slot-element-major, row-minor."""
import numpy as np
import pytest

import tapegrad as tg
from samples import SAMPLES
from tape_faces import assert_close, weighted
from tapegrad_jit.cuda_plan import (UnsupportedOnCuda, broadcast_index, lower,
                                    row_kernel_source)

COMPOSITES = ("mean", "logsumexp", "log_softmax", "softmax", "norm", "mse_loss", "clamp", "clone",
              "binary_cross_entropy")


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.prim in COMPOSITES],
                         ids=lambda s: s.id)
def test_lowering_matches_reference(sample):
    f, values, _ = weighted(sample)
    tape = tg.make_tape(tg.value_and_grad(f, argnums=tuple(range(len(values)))))(*values)
    lowered = lower(tape)
    assert not {ins.prim.name for ins in lowered.instrs} & set(COMPOSITES)
    expected, actual = tape.run(*values), lowered.run(*values)
    assert_close(actual[0], expected[0], rtol=1e-12, atol=1e-12)
    for a, e in zip(actual[1], expected[1]):
        assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_lowering_keeps_guards_in_place():
    def f(x):
        y = np.mean(x)
        if y > 0:
            return np.sum(x * y)
        return np.sum(x)

    x = np.array([1.0, 2.0, 3.0])
    tape = tg.make_tape(tg.grad(f))(x)
    lowered = lower(tape)
    assert len(lowered.guards) == len(tape.guards) == 1
    guard = lowered.guards[0]
    producer = lowered.producer[guard.slot]
    assert guard.position == producer + 1       # checked right after its flag is computed
    assert_close(lowered.run(x), tape.run(x))


def test_row_kernel_reads_rows_minor():
    def f(x, w):
        return np.sum(np.sin(x) * w)

    tape = lower(tg.make_tape(tg.grad(f))(np.ones(3), np.ones(3)))
    source, big = row_kernel_source(tape, (True, False), limit=10_000, inline_limit=16)
    assert "x0[2, r]" in source         # element 2 of a mapped input, row r: neighbours coalesce
    assert "x1[2, 0]" in source         # unmapped: every row reads the same column
    assert "out0[2, t]" in source
    assert big == []


def test_row_kernel_limit_names_the_way_out():
    tape = lower(tg.make_tape(tg.grad(lambda x: np.sum(np.sin(x))))(np.ones(50)))
    with pytest.raises(UnsupportedOnCuda, match="scalar operations"):
        row_kernel_source(tape, (True,), limit=20, inline_limit=16)


@pytest.mark.parametrize("in_shape,out_shape", [((3,), (2, 3)), ((2, 1), (2, 3)),
                                                ((3, 1), (2, 3, 4)), ((), (5,)),
                                                ((2, 3), (2, 3)), ((1, 3, 1), (2, 3, 4))])
def test_broadcast_index_matches_numpy(in_shape, out_shape):
    source = np.arange(int(np.prod(in_shape))).reshape(in_shape)
    expected = np.broadcast_to(source, out_shape).ravel()
    expr = broadcast_index(in_shape, out_shape)
    actual = [eval(expr, {"i": i}) for i in range(int(np.prod(out_shape)))]
    assert actual == expected.tolist()
