"""What a jitted call leaves behind for the collector, and the per-call path's argument kinds
(issue 14)."""
import gc

import numpy as np
import pytest

import tapegrad as tg
from tapegrad.tape import Instr
from tapegrad_jit import cpu


def _long_scalar(x):
    # a chain of scalar ops: a value-and-gradient tape of a few thousand instructions
    acc = x[0]
    for k in range(1, x.size):
        acc = 0.9 * acc + np.tanh(acc * x[k] + 0.5) * np.exp(-x[k] * x[k])
    return acc


def _live_instrs():
    return sum(type(o) is Instr for o in gc.get_objects())


def test_a_compiled_long_tape_leaves_no_instructions_for_the_collector():
    # every object kept after the compile is traversed by the collection that follows it (tens
    # of ms on a 10k-op graph): a long program keeps its lowered code, not its tape
    x = np.linspace(0.1, 0.9, 400)
    f = tg.jit(tg.value_and_grad(_long_scalar))
    before = _live_instrs()
    value, grad = f(x)
    [program] = next(iter(f._signatures.values()))
    assert isinstance(program, cpu.Program)
    assert len(f.tape(x).instrs) > cpu.ROW_KERNEL_INSTRUCTIONS
    assert _live_instrs() - before < 50
    want_value, want_grad = tg.value_and_grad(_long_scalar)(x)
    np.testing.assert_allclose(value, want_value, rtol=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10)
    x2 = x[::-1].copy()
    np.testing.assert_allclose(f(x2)[1], tg.grad(_long_scalar)(x2), rtol=1e-10)
    assert f.traces == 1 and gc.isenabled()


def test_vmapped_long_row_tape_runs_its_rows_on_the_interpreter():
    # a row tape past the row kernel's length keeps no tape: its rows go to the interpreter
    rows = np.random.default_rng(0).uniform(0.1, 0.9, (520, 400))
    f = tg.jit(tg.vmap(tg.grad(_long_scalar)))
    got = f(rows)
    want = np.stack([tg.grad(_long_scalar)(r) for r in rows[:3]])
    np.testing.assert_allclose(got[:3], want, rtol=1e-10)
    np.testing.assert_allclose(got[-1], tg.grad(_long_scalar)(rows[-1]), rtol=1e-10)


def test_short_row_tape_keeps_its_row_kernel():
    f = tg.jit(tg.vmap(tg.grad(lambda x: np.sin(x) * x)))
    rows = np.random.default_rng(1).standard_normal(600)
    got = f(rows)
    np.testing.assert_allclose(got, np.sin(rows) * 1.0 + np.cos(rows) * rows, rtol=1e-10)
    [program] = next(iter(f._signatures.values()))
    assert program.tape is not None and program._rows not in (False, None)


def test_cycles_made_by_the_user_after_a_compile_are_still_collected():
    class Node:
        pass

    f = tg.jit(tg.value_and_grad(_long_scalar))
    f(np.linspace(0.1, 0.9, 300))
    assert gc.isenabled()
    a, b = Node(), Node()
    a.other, b.other = b, a
    count = sum(type(o) is Node for o in gc.get_objects())
    del a, b
    gc.collect()
    assert sum(type(o) is Node for o in gc.get_objects()) == count - 2
