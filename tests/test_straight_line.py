"""Straight-line machine code (tapegrad_jit/straight.py) against the interpreter, bit for bit."""
import math

import numpy as np
import pytest

pytest.importorskip("numba")
pytest.importorskip("llvmlite")

from tapegrad_jit import cpu, straight  # noqa: E402

# operand values: signed zeros, infinities, NaN, tiny, huge, near-1, the usual range
SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 3.0, -3.0, 1e-300, -1e-310, 1e300, math.inf,
           -math.inf, math.nan, 0.1, 0.7, 1.0000001, 30.0, -30.0, 700.0, 1e-8, math.pi]


def _rows_over(opcodes, values):
    """Code computing every translated opcode on every pair of values (and a third operand):
    v holds the values first, results after them."""
    k = len(values)
    rng = np.random.default_rng(0)
    rows = []
    for op in opcodes:
        for i in range(k):
            for j in range(k):
                rows.append([op, 0, 1, i, j, int(rng.integers(k))] + [1, 1, 1, 0, 0, 0])
    code = np.array(rows, dtype=np.int32)
    code[:, cpu.OUT] = k + np.arange(len(code))
    v = np.zeros(k + len(code))
    v[:k] = values
    return code, v


def _both(code, v, parts, ipool=None):
    ipool = np.zeros(1, np.int32) if ipool is None else ipool
    interpreted, machine_v = v.copy(), v.copy()
    status = cpu.kernels().run(code, ipool, interpreted)
    machine = straight.Machine(straight.object_code(code, ipool, parts), len(parts))
    statuses = [f(machine_v.ctypes.data) for f in machine.functions]
    return status, interpreted, statuses, machine_v


def test_every_translated_form_gives_the_interpreters_bits():
    opcodes = sorted(straight.form_trees())
    assert len(opcodes) > 60         # the arithmetic, comparisons, libm functions, fusions
    code, v = _rows_over(opcodes, SPECIAL)
    status, interpreted, statuses, machine_v = _both(code, v, [(0, len(code))])
    assert status == 0 and statuses == [0]
    same = (interpreted.view(np.int64) == machine_v.view(np.int64)) | (
        np.isnan(interpreted) & np.isnan(machine_v))
    bad = np.flatnonzero(~same)
    names = sorted({cpu.ELEMENTWISE_FORMS[code[i - len(SPECIAL), 0]][0] for i in bad})
    assert not names, f"forms differing from the interpreter: {names}"


def test_random_values_every_form():
    values = np.random.default_rng(1).standard_normal(40) * 3
    code, v = _rows_over(sorted(straight.form_trees()), values)
    _, interpreted, _, machine_v = _both(code, v, [(0, len(code))])
    np.testing.assert_array_equal(interpreted, machine_v)


def test_guards_return_the_interpreters_number_and_stop_there():
    add, guard = cpu.OPCODE["add"], straight.GUARD
    # v: [1, 2, 0, out...]; row 2 is a guard expecting v[2] != 0 (fails, number 7)
    code = np.array([[add, 3, 1, 0, 1, 0] + [1, 1, 1, 0, 0, 0],
                     [guard, 0, 1, 0, 0, 0] + [1, 1, 1, 1, 5, 0],    # v[0] != 0: holds
                     [guard, 0, 1, 2, 0, 0] + [1, 1, 1, 1, 7, 0],    # v[2] == 0: fails
                     [add, 4, 1, 3, 3, 0] + [1, 1, 1, 0, 0, 0]], dtype=np.int32)
    v = np.array([1.0, 2.0, 0.0, 0.0, 0.0])
    status, interpreted, statuses, machine_v = _both(code, v, [(0, 4)])
    assert status == 7 and statuses == [7]
    np.testing.assert_array_equal(interpreted, machine_v)
    assert machine_v[4] == 0.0 and machine_v[3] == 3.0       # stopped at the guard


def test_untranslated_forms_are_left_to_the_interpreter():
    floor = cpu.OPCODE["floor_divide"]
    add = cpu.OPCODE["add"]
    code = np.array([[add, 5, 1, 0, 1, 0] + [1, 1, 1, 0, 0, 0]] * 3
                    + [[floor, 6, 1, 0, 1, 0] + [1, 1, 1, 0, 0, 0]]
                    + [[add, 7, straight.MAX_ELEMENTS + 1, 0, 1, 0] + [1, 1, 1, 0, 0, 0]],
                    dtype=np.int32)
    usable = straight.usable_rows(code)
    # nor a row of more than MAX_ELEMENTS element operations
    assert usable.tolist() == [True, True, True, False, False]
    assert straight.stretches(usable, min_rows=2) == [(0, 3)]
    assert straight.stretches(usable, min_rows=4) == []


def test_stretches_keep_the_longest_within_the_bound():
    usable = np.array([True] * 5 + [False] + [True] * 3 + [False] + [True] * 8)
    assert straight.stretches(usable, min_rows=3, max_rows=13) == [(0, 5), (10, 18)]
    assert straight.stretches(usable, min_rows=3, max_rows=10) == [(10, 18)]


def _random_graph(n_ops, seed, branch=False):
    """A scalar function of random ops over earlier values (no repeating order, so nothing
    rolls); with `branch`, a Python `if` on a traced value (a guard) in the middle."""
    rng = np.random.default_rng(seed)
    program = [(int(rng.integers(6)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
               for _ in range(n_ops)]

    def f(x):
        v = [x[i] for i in range(len(x))]
        for k, (op, i, j) in enumerate(program):
            a, b = v[-i], v[-j]
            if branch and k == n_ops // 2:
                a = a * 2.0 if a > 0.1 else a - 1.0
            v.append([np.tanh(a + b), a * b * 0.5, a / (1.0 + b * b), np.exp(-a * a),
                      np.sin(a) - b, np.sqrt(a * a + 1.0)][op])
        return v[-1]
    return f


def _wait_for_straight_code(jitted, x):
    from tapegrad_jit import straight as module
    for _ in range(module.HOT_CALLS + 1):
        jitted(x)
    module.wait_all(120)
    jitted(x)                           # takes the plan up
    machines = [program for paths in jitted._signatures.values() for program in paths
                if getattr(getattr(program, "_run", None), "state", None) is not None
                and program._run.state.plan is not None]
    assert machines, "no program runs straight-line code"
    assert any(kind == module._MACHINE for kind, _, _ in machines[0]._run.state.plan)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_hot_tape_runs_straight_line_code_with_the_interpreters_results(monkeypatch, seed):
    import tapegrad as tg
    monkeypatch.setattr(straight, "MIN_ROWS", 256)
    f = _random_graph(600, seed)
    x = np.random.default_rng(seed).standard_normal(12)
    jitted = tg.jit(tg.value_and_grad(f))
    first = jitted(x)
    _wait_for_straight_code(jitted, x)
    value, grad = jitted(x)
    reference_value, reference_grad = tg.value_and_grad(f)(x)
    np.testing.assert_allclose(value, reference_value, rtol=1e-13)
    np.testing.assert_allclose(grad, reference_grad, rtol=1e-11, atol=1e-300)
    np.testing.assert_allclose(grad, first[1], rtol=1e-13, atol=1e-300)


def test_straight_line_code_keeps_the_guards(monkeypatch):
    import tapegrad as tg
    monkeypatch.setattr(straight, "MIN_ROWS", 256)
    f = _random_graph(600, 3, branch=True)
    rng = np.random.default_rng(3)
    jitted = tg.jit(tg.value_and_grad(f))
    x = rng.standard_normal(12)
    _wait_for_straight_code(jitted, x)
    for _ in range(12):                 # inputs on both sides of the branch
        x = rng.standard_normal(12) * 2
        value, grad = jitted(x)
        reference_value, reference_grad = tg.value_and_grad(f)(x)
        np.testing.assert_allclose(value, reference_value, rtol=1e-13)
        np.testing.assert_allclose(grad, reference_grad, rtol=1e-11, atol=1e-300)


def _small_array_functions():
    def softmax_of_stack(x):
        s = np.stack([x[0] * x[1], x[2], x[3] + 1.0, x[4]])
        e = np.exp(s - s.max())
        soft = e / e.sum()
        return soft[1] * x[5] + soft[2]

    def reductions(x):
        m = x.reshape(3, 4)
        return np.sum(np.max(m, axis=0) * np.min(m, axis=1).sum()) + np.prod(m[1]) + m.mean()

    def writes(x):
        y = x[:6] * 2.0
        y[2] = x[7] * x[8]
        y[1:3] += x[9:11]
        return np.dot(y, x[:6]) + np.logaddexp(0.0, y).sum()
    return [softmax_of_stack, reductions, writes]


def _buffers_both_ways(program, x):
    """The program's buffer after a sweep on the interpreter, and after one where every usable
    stretch (from one row) runs as straight-line code."""
    code, ipool = program.code, program.ipool
    v = program.v0.copy()
    offset, size, _ = program.inputs[0]
    v[offset:offset + size] = x
    interpreted, mixed = v.copy(), v.copy()
    assert cpu.kernels().run(code, ipool, interpreted) == 0
    parts = straight.stretches(straight.usable_rows(code), min_rows=1)
    machine = straight.Machine(straight.object_code(code, ipool, parts), len(parts))
    at = 0
    for (start, stop), function in zip(parts, machine.functions):
        assert cpu.kernels().run(code[at:start], ipool, mixed) == 0
        assert function(mixed.ctypes.data) == 0
        at = stop
    assert cpu.kernels().run(code[at:], ipool, mixed) == 0
    return interpreted, mixed, parts


@pytest.mark.parametrize("f", _small_array_functions(), ids=lambda f: f.__name__)
def test_small_array_rows_give_the_interpreters_bits(f):
    import tapegrad as tg
    rng = np.random.default_rng(5)
    x = rng.standard_normal(12)
    tape = tg.make_tape(tg.value_and_grad(f))(x)
    program = cpu.Program(tape)
    kinds = {int(op) for op in program.code[straight.usable_rows(program.code), cpu.OP]}
    assert kinds - set(straight.form_trees()), "no array row among the straight-line rows"
    for values in (x, rng.standard_normal(12) * 5, np.where(np.arange(12) % 5 == 1, np.nan, x)):
        interpreted, mixed, _ = _buffers_both_ways(program, values)
        np.testing.assert_array_equal(mixed, interpreted)


def test_every_array_row_kind_is_written_and_checked():
    """The array row kinds straight-line code takes all appear in the functions above."""
    import tapegrad as tg
    seen = set()
    for f in _small_array_functions():
        program = cpu.Program(tg.make_tape(tg.value_and_grad(f))(np.linspace(0.1, 1.2, 12)))
        seen |= {int(op) for op in program.code[straight.usable_rows(program.code), cpu.OP]}
    names = {code: name for name, code in cpu.OPCODE.items()}
    assert {"gather", "place", "scatter_add", "reduce_sum", "reduce_max", "reduce_min",
            "reduce_prod"} <= {names[op] for op in seen}
