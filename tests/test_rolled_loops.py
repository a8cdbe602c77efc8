"""Loop re-rolling (tapegrad_jit/rolled.py, issue 12): repeated loop bodies of a lowered tape run
as compiled loops.

Every rolled program is checked against the same code array run whole by the interpreter
(bitwise: same buffer, same status), against the tape's NumPy reference interpreter and against
NumPy or finite differences. The runs are forced on small loops by lowering rolled.MIN_ROWS, so
that the shapes stay fast; one loop at n = 1e5 rolls with the defaults."""
import numpy as np
import pytest

import tapegrad as tg

pytest.importorskip("numba")
# element reads (diff_energy); element writes, then reads (fd_energy)
from benchmarks.workloads.element_loop import diff_energy, fd_energy  # noqa: E402
from tapegrad.tape import tree_flatten  # noqa: E402
from tapegrad_jit import cpu, rolled  # noqa: E402
from tests.tape_faces import central_differences  # noqa: E402

# a body Numba cannot compile falls back to the interpreter with this warning: here an error
pytestmark = pytest.mark.filterwarnings("error:tapegrad_jit. rolled:RuntimeWarning")


@pytest.fixture
def small_runs(monkeypatch):
    monkeypatch.setattr(rolled, "MIN_ROWS", 24)


def rolled_runner(program):
    """rolled.runner's run of a program (straight.py's runner may hold it), or None."""
    run = program._run
    run = getattr(getattr(run, "state", None), "inner", run)
    return run if hasattr(run, "runs") else None


def rolled_steps(program):
    """The program's rolled runs (start, trips, rows, stride, structure) that have kernels."""
    run = rolled_runner(program)
    if run is None:
        return []
    kernels = {start for kernel, _, start in run.steps() if kernel is not None}
    return [r for r in run.runs if r[0] in kernels]


def buffer_with(program, args):
    v = program.v0.copy()
    for (offset, size, _), value in zip(program.inputs, args):
        v[offset:offset + size] = np.ravel(value)
    return v


def check_rolled(fun, *args, argnums=0, expect_rolled=True):
    """Lower value_and_grad(fun) at args, run it rolled and whole; return (value, grad).
    expect_rolled: whether some run must roll (None: either)."""
    tape = tg.make_tape(tg.value_and_grad(fun, argnums=argnums))(*args)
    program = cpu.Program(tape)
    if expect_rolled is not None:
        assert bool(rolled_steps(program)) == expect_rolled
    whole, rolled_v = buffer_with(program, args), buffer_with(program, args)
    status = cpu.kernels().run(program.code, program.ipool, whole)
    assert program._run(program.code, program.ipool, rolled_v) == status == 0
    np.testing.assert_array_equal(rolled_v, whole)          # bitwise the interpreter's
    ok, result = program(list(args))
    assert ok
    rtol = 1e-5 if np.asarray(args[0]).dtype == np.float32 else 1e-12
    for got, ref in zip(tree_flatten(result, lambda x: False)[0],
                        tree_flatten(tape.run(*args), lambda x: False)[0]):
        assert np.asarray(got).dtype == np.asarray(ref).dtype
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * 1e-2)
    return result


# ---------------------------------------------------------------------------------------------
# Loop shapes
# ---------------------------------------------------------------------------------------------

def offsets(x):
    s = 0.0
    for i in range(x.shape[0] - 3):
        s += x[i + 3] * x[i] - np.sin(x[i + 1]) * x[i + 2]
    return s


def recurrence(x):
    y = x * 1.0
    for i in range(1, x.shape[0]):
        y[i] = y[i - 1] * 0.5 + np.tanh(x[i])
    return np.sum(y * y)


def nested(x, w):
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(w.shape[0]):
            s += np.exp(-(x[i] - w[j]) ** 2) * w[j]
    return s


def branches(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0:
            s += x[i] * x[i]
        else:
            s -= np.sin(x[i])
    return s


def changes_halfway(x):
    s = 0.0
    half = x.shape[0] // 2
    for i in range(x.shape[0]):
        if i < half:
            s += x[i] * x[i]
        else:
            s += np.cos(x[i]) * x[i]
    return s


def shapes_rng():
    return np.random.default_rng(12)


@pytest.mark.parametrize("fun", [diff_energy, offsets, fd_energy, recurrence, changes_halfway])
@pytest.mark.parametrize("n", [10, 60])
def test_loops_roll_bitwise_and_match_finite_differences(small_runs, fun, n):
    x = shapes_rng().uniform(-1.0, 1.0, n)
    value, grad = check_rolled(fun, x, expect_rolled=True if n == 60 else None)
    assert value == pytest.approx(fun(x), rel=1e-12)
    np.testing.assert_allclose(grad, central_differences(fun, x), rtol=1e-6, atol=1e-7)


def test_nested_loops(small_runs):
    rng = shapes_rng()
    x, w = rng.normal(size=7), rng.normal(size=9)
    value, (gx, gw) = check_rolled(nested, x, w, argnums=(0, 1))
    assert value == pytest.approx(nested(x, w), rel=1e-12)
    np.testing.assert_allclose(gx, central_differences(lambda a: nested(a, w), x), rtol=1e-6)
    np.testing.assert_allclose(gw, central_differences(lambda b: nested(x, b), w), rtol=1e-6)


@pytest.mark.parametrize("signs", ["positive", "alternating", "random"])
def test_loops_with_guards(small_runs, signs):
    rng = shapes_rng()
    x = rng.uniform(0.1, 1.0, 80)
    if signs == "alternating":
        x[::2] *= -1
    elif signs == "random":
        x *= rng.choice([-1.0, 1.0], x.size)
    value, grad = check_rolled(branches, x, expect_rolled=None if signs == "random" else True)
    assert value == pytest.approx(branches(x), rel=1e-12)
    np.testing.assert_allclose(grad, central_differences(branches, x), rtol=1e-6, atol=1e-8)


def test_guard_failing_inside_a_rolled_body(small_runs):
    """A guard inside a rolled run fails with the interpreter's number; tg.jit retraces."""
    x = np.linspace(0.5, 1.5, 80)
    tape = tg.make_tape(tg.value_and_grad(branches))(x)
    program = cpu.Program(tape)
    body_guards = [rows for _, _, rows, _, _ in rolled_steps(program)
                   if cpu.OPCODE["guard"] in rows[:, cpu.OP]]
    assert body_guards
    for position in (3, 41, 77):
        bad = x.copy()
        bad[position] = -0.25
        whole, rolled_v = buffer_with(program, [bad]), buffer_with(program, [bad])
        status = cpu.kernels().run(program.code, program.ipool, whole)
        assert status != 0
        assert program._run(program.code, program.ipool, rolled_v) == status
        assert program([bad]) == (False, None)
    f = tg.jit(tg.value_and_grad(branches))
    f(x)
    bad = x.copy()
    bad[41] = -0.25
    value, grad = f(bad)
    assert value == pytest.approx(branches(bad), rel=1e-12)
    np.testing.assert_allclose(grad, central_differences(branches, bad), rtol=1e-6, atol=1e-8)


def test_short_loops_do_not_roll():
    x = np.linspace(-1.0, 1.0, 10)
    program = cpu.Program(tg.make_tape(tg.value_and_grad(diff_energy))(x))
    assert program._run is cpu.kernels().run


def test_kernel_unavailable_falls_back_to_the_interpreter(small_runs, monkeypatch):
    def refuse(structure):
        raise RuntimeError("no kernel here")
    monkeypatch.setattr(rolled, "kernel_for", refuse)
    x = np.linspace(-1.0, 1.0, 60)
    tape = tg.make_tape(tg.value_and_grad(diff_energy))(x)
    program = cpu.Program(tape)
    with pytest.warns(RuntimeWarning, match="rolled loop kernel unavailable"):
        ok, (value, grad) = program([x])
    assert ok and not rolled_steps(program)
    ref_value, ref_grad = tape.run(x)
    np.testing.assert_allclose(value, ref_value, rtol=1e-14)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-14)


def test_float32_loops(small_runs):
    x = shapes_rng().uniform(-1.0, 1.0, 50).astype(np.float32)
    value, grad = check_rolled(fd_energy, x)
    assert grad.dtype == np.float32
    ref = central_differences(fd_energy, x.astype(np.float64))
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-4)


def test_large_loop_rolls_with_defaults():
    """n = 1e5 with the default thresholds: the forward and adjoint sweeps roll."""
    n = 100_000
    x = shapes_rng().uniform(-1.0, 1.0, n)
    f = tg.jit(tg.value_and_grad(diff_energy))
    value, grad = f(x)
    d = np.diff(x)
    assert value == pytest.approx(np.sum(d * d), rel=1e-10)
    expected = np.zeros(n)
    expected[1:] += 2.0 * d
    expected[:-1] -= 2.0 * d
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-15)
    program = next(reversed(f._signatures.values()))[0]
    covered = sum(len(rows) * trips for _, trips, rows, _, _ in rolled_steps(program))
    assert covered > 0.95 * program.code.shape[0]


def test_called_from_nopython_code(small_runs):
    """The nopython path runs the code array whole on the interpreter: same numbers. (Its
    generated function runs here as Python: compiling the interpreter into it takes ~20 s.)"""
    from tapegrad_jit import nopython
    x = np.linspace(-1.0, 1.0, 60)
    f = tg.jit(tg.grad(diff_energy))
    expected = f(x)
    assert rolled_steps(next(reversed(f._signatures.values()))[0])
    np.testing.assert_array_equal(nopython.dispatcher_for(f).py_func(x), expected)
    np.testing.assert_array_equal(nopython.dispatcher_for(f).py_func(-x), f(-x))


# ---------------------------------------------------------------------------------------------
# Finding runs
# ---------------------------------------------------------------------------------------------

def synthetic(n_trips, body, strides):
    """A code array of n_trips copies of body rows (opcode, then 11 columns) advancing."""
    body = np.array(body, dtype=np.int32)
    strides = np.array(strides, dtype=np.int32)
    return np.concatenate([body + t * strides for t in range(n_trips)])


def test_find_runs_on_affine_and_broken_repetition():
    sub, mul = cpu.OPCODE["sub"], cpu.OPCODE["mul"]
    body = [[sub, 100, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0],
            [mul, 101, 1, 100, 100, 100, 1, 1, 1, 0, 0, 0]]
    strides = [[0, 2, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 2, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0]]
    code = synthetic(100, body, strides)
    assert rolled.find_runs(code, 64) == [(0, 2, 100)]
    broken = code.copy()
    broken[101, cpu.A] += 7                 # one operand off its stride: the run splits there
    runs = rolled.find_runs(broken, 64)
    assert all(not (start <= 101 < start + k * trips) for start, k, trips in runs)
    assert sum(k * trips for _, k, trips in runs) >= 150
    assert rolled.find_runs(code, 10_000) == []          # too short to pay
    rng = np.random.default_rng(0)
    noise = code.copy()
    noise[:, cpu.OUT] = rng.permutation(noise.shape[0])   # no affine outputs anywhere
    assert rolled.find_runs(noise, 64) == []


def test_kernel_count_is_bounded(monkeypatch):
    """Many distinct bodies: only MAX_BODIES of them get kernels."""
    names = ["sin", "cos", "exp", "tanh", "sqrt", "log1p", "arctan", "sinh", "abs", "neg"]
    parts = []
    for k, name in enumerate(names):
        body = [[cpu.OPCODE[name], 10_000 + 1000 * k, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]]
        parts.append(synthetic(100, body, [[0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]]))
    code = np.concatenate(parts)
    runs = rolled._select(code, rolled.find_runs(code, 64), np.zeros(1, dtype=np.int32))
    assert len({structure for *_, structure in runs}) == rolled.MAX_BODIES


def test_periods_repeating_opcodes_but_not_operands_do_not_use_up_the_checks():
    """Rows of one opcode with outputs in a row but operands at random repeat at every small
    period on opcode and output alone; the screen also reads operands, so MAX_CHECKS full checks
    are not spent on them before the real body's period (here 12) is reached."""
    rng = np.random.default_rng(1)
    noise = np.zeros((4000, 12), dtype=np.int32)
    noise[:, cpu.OP], noise[:, cpu.N] = cpu.OPCODE["sin"], 1
    noise[:, cpu.OUT] = 50_000 + np.arange(4000)
    noise[:, cpu.A] = noise[:, cpu.B] = noise[:, cpu.C] = rng.integers(0, 1000, 4000)
    names = ["sin", "cos", "exp", "tanh", "mul", "add", "sub", "neg", "abs", "sqrt", "log1p",
             "div"]
    body = [[cpu.OPCODE[name], 100 + j, 1, j, j + 1, j, 1, 1, 1, 0, 0, 0]
            for j, name in enumerate(names)]
    step = [[0, 12, 0, 12, 12, 12, 0, 0, 0, 0, 0, 0]] * len(body)
    code = np.concatenate([noise, synthetic(300, body, step) + np.array(
        [0, 60_000, 0, 60_000, 60_000, 60_000, 0, 0, 0, 0, 0, 0], dtype=np.int32)])
    assert (4000, 12, 300) in rolled.find_runs(code, 2048)
