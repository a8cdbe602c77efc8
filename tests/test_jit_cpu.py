"""tapegrad_jit.cpu: compiled sweeps against the reference interpreter and hand-written gradients."""
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import tapegrad as tg
from samples import SAMPLES
from tape_faces import assert_close, weighted

pytest.importorskip("numba")


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_sample_table_jit_matches_reference(sample):
    f, values, _ = weighted(sample)
    vg = tg.value_and_grad(f, argnums=tuple(range(len(values))))
    jitted = tg.jit(vg)
    expected = jitted.tape(*values).run(*values)
    jitted(*values)                          # first call traces
    value, grads = jitted(*values)           # second call runs compiled code
    assert jitted.traces == 1
    # the compiled sweeps compute in float64 and round float32 results once, at the end
    tol = 1e-12 if np.asarray(expected[0]).dtype == np.float64 else 1e-6
    assert_close(value, expected[0], rtol=tol, atol=tol)
    for g, e in zip(grads, expected[1]):
        assert np.shape(g) == np.shape(e) and np.asarray(g).dtype == np.asarray(e).dtype
        assert_close(g, e, rtol=tol, atol=tol)


def test_import_tapegrad_does_not_import_numba():
    code = "import sys, tapegrad; tapegrad.jit(lambda x: x); print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def rosenbrock(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_grad(x):
    a = x[1:] - x[:-1] ** 2
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * x[:-1] - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * a
    return g


def test_rosenbrock():
    x = np.random.default_rng(0).uniform(-2, 2, 1000)
    f = tg.jit(tg.value_and_grad(rosenbrock))
    for _ in range(2):
        value, grad = f(x)
        assert_close(value, rosenbrock(x))
        assert_close(grad, rosenbrock_grad(x), rtol=1e-10)


def mlp_loss(w1, b1, w2, b2, x, t):
    h = np.tanh(x @ w1 + b1)
    return np.mean((h @ w2 + b2 - t) ** 2)


def test_mlp_float32():
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(s).astype(np.float32) * 0.3
            for s in [(20, 16), (16,), (16, 3), (3,), (8, 20), (8, 3)]]
    f = tg.jit(tg.value_and_grad(mlp_loss, argnums=(0, 1, 2, 3)))
    expected = tg.value_and_grad(mlp_loss, argnums=(0, 1, 2, 3))(*args)
    f(*args)
    value, grads = f(*args)
    assert np.asarray(value).dtype == np.float32
    assert_close(value, expected[0], rtol=1e-5)
    for g, e in zip(grads, expected[1]):
        assert g.dtype == np.float32
        assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_scalar_graph_with_lists():
    def f(x):
        v = [x[i] for i in range(4)]
        for k in range(20):
            v.append(np.log(1.0 + np.exp(v[-3])) * v[-2] / (1.0 + v[-1] * v[-1]))
        return v[-1]
    x = np.array([0.1, -0.2, 0.3, 0.4])
    jf = tg.jit(tg.value_and_grad(f))
    jf(x)
    value, grad = jf(x * 1.5)
    expected = tg.value_and_grad(f)(x * 1.5)
    assert_close(value, expected[0], rtol=1e-12)
    assert_close(grad, expected[1], rtol=1e-12)


def test_decorator_forms_and_tape_attribute():
    @tg.jit
    def f(x):
        return np.sin(x) * 2

    @tg.jit(device="cpu")
    def g(x):
        return np.cos(x)

    x = np.linspace(0, 1, 5)
    assert_close(f(x), np.sin(x) * 2)
    assert_close(f(x), np.sin(x) * 2)
    assert_close(g(x), np.cos(x))
    assert "sin" in str(f.tape(x))


def test_static_int_arguments_and_signatures():
    f = tg.jit(lambda x, n: np.sum(x ** n))
    x = np.array([1.0, 2.0])
    assert_close(f(x, 2), 5.0)
    assert_close(f(x, 3), 9.0)
    assert_close(f(x, 2), 5.0)
    assert_close(f(np.array([1.0, 2.0, 3.0]), 2), 14.0)
    assert f.traces == 3


def test_vmap_grad_runs_rows_in_parallel():
    def f(x, w):
        return np.sum(np.tanh(x * w) ** 2)
    xs = np.random.default_rng(2).standard_normal((64, 3))
    w = np.array([0.5, -1.0, 2.0])
    jf = tg.jit(tg.vmap(tg.grad(f), in_axes=(0, None)))
    expected = np.stack([tg.grad(f)(x, w) for x in xs])
    jf(xs, w)
    assert_close(jf(xs, w), expected)
    assert jf.traces == 1


def test_vmap_rows_on_their_own_paths():
    def f(x):
        y = x
        while np.sum(y * y) < 100.0:         # a different number of doublings per row
            y = y * 2.0
        if y[0] > 0:
            return np.sum(y ** 2)
        return np.sum(np.sin(y))
    xs = np.random.default_rng(3).uniform(-3, 3, size=(40, 2))
    jf = tg.jit(tg.vmap(tg.value_and_grad(f)))
    values, grads = jf(xs)
    for _ in range(2):
        values, grads = jf(xs)
    for x, v, g in zip(xs, values, grads):
        ev, eg = tg.value_and_grad(f)(x)
        assert_close(v, ev)
        assert_close(g, eg)


def test_threads_share_a_jitted_function():
    f = tg.jit(tg.value_and_grad(lambda x: np.sum(np.sin(x) * x)))
    errors = []

    def worker(seed):
        x = np.random.default_rng(seed).standard_normal(7)
        for _ in range(50):
            value, grad = f(x)
            if not np.allclose(grad, np.cos(x) * x + np.sin(x)):
                errors.append(seed)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert f.traces == 1


def test_retrace_on_every_call_warns():
    def f(x, limit):
        y = x
        while y < limit:                     # the number of steps grows with the limit
            y = y + 1.0
        return y
    jf = tg.jit(f)
    with pytest.warns(RuntimeWarning, match="retraced"):
        for limit in range(30):
            assert_close(jf(np.array(0.0), np.array(float(limit))), max(limit, 0))


def test_no_warning_for_two_alternating_paths():
    jf = tg.jit(lambda x: x * 2 if x > 0 else -x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k in range(40):
            x = np.array(k % 2 - 0.5)
            assert_close(jf(x), x * 2 if x > 0 else -x)
    assert jf.traces == 2


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device"):
        tg.jit(lambda x: x, device="tpu")(np.ones(2))


# ---------------------------------------------------------------------------------------------
# Generated code for array tapes (tapegrad_jit.fused): one sample per primitive, and workloads
# ---------------------------------------------------------------------------------------------

def _one_per_primitive():
    seen, chosen = set(), []
    for sample in SAMPLES:
        shaped = any(np.ndim(a) >= 1 for a in sample.args)
        if sample.prim not in seen and shaped:
            seen.add(sample.prim)
            chosen.append(sample)
    return chosen


@pytest.fixture
def generate_always(monkeypatch):
    from tapegrad_jit import fused
    monkeypatch.setattr(fused, "ARRAY_MIN_SIZE", 1)     # (every array comes from the pool)


@pytest.mark.parametrize("sample", _one_per_primitive(), ids=lambda s: s.id)
def test_generated_code_matches_reference(sample, generate_always):
    f, values, _ = weighted(sample)
    jitted = tg.jit(tg.value_and_grad(f, argnums=tuple(range(len(values)))))
    expected = jitted.tape(*values).run(*values)
    jitted(*values)
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # no silent fallback to the interpreter
        value, grads = jitted(*values)
    tol = 1e-12 if np.asarray(expected[0]).dtype == np.float64 else 1e-6
    assert_close(value, expected[0], rtol=tol, atol=tol)
    for g, e in zip(grads, expected[1]):
        assert np.shape(g) == np.shape(e)
        assert_close(g, e, rtol=tol, atol=tol)


def test_generated_rosenbrock_is_one_loop():
    from tapegrad_jit import fused
    x = np.random.default_rng(4).uniform(-2, 2, 2 * fused.ARRAY_MIN_SIZE)
    f = tg.jit(tg.value_and_grad(rosenbrock))
    f(x)
    value, grad = f(x)
    assert_close(value, rosenbrock(x))
    assert_close(grad, rosenbrock_grad(x), rtol=1e-10)
    [program] = next(iter(f._signatures.values()))
    assert isinstance(program, fused.FusedProgram)
    assert program.source.count("for i in range") == 1


def test_generated_stencil_accumulates_into_fresh_array(generate_always):
    # three shifted slices: the adjoint chain into zeros stores first, zeroes only the edges
    def f(x):
        return np.sum(x[2:] * x[1:-1] - np.sin(x[:-2]) * x[1:-1])
    x = np.random.default_rng(5).uniform(-1, 1, 40)
    jf = tg.jit(tg.value_and_grad(f))
    expected = jf.tape(x).run(x)
    jf(x)
    value, grad = jf(x)
    assert_close(value, expected[0], rtol=1e-12)
    assert_close(grad, expected[1], rtol=1e-12, atol=1e-12)


def test_pooled_results_are_never_overwritten(generate_always):
    from tapegrad_jit import fused
    f = tg.jit(tg.value_and_grad(rosenbrock))
    x = np.random.default_rng(6).uniform(-2, 2, 64)
    f(x)
    _, held = f(x)
    kept = held.copy()
    _, other = f(x * 0.5)
    view = other[3:]
    del other
    _, third = f(x * 0.25)
    assert np.array_equal(held, kept) and not np.shares_memory(view, third)
    assert_close(third, rosenbrock_grad(x * 0.25), rtol=1e-10)
    del held, view, third
    [program] = next(iter(f._signatures.values()))
    assert isinstance(program, fused.FusedProgram)
    buffers = {f(x)[1].ctypes.data for _ in range(4)}
    assert len(buffers) == 1          # dropped results are reused, not allocated again


def test_generated_float32_tanh_is_close_to_numpy():
    from tapegrad_jit import fused
    edges = [0.0, -0.0, 1e-30, -3e-4, 5e-4, 9.0, -9.0, np.inf, -np.inf, np.nan]
    x = np.concatenate([np.linspace(-12, 12, 200001), edges]).astype(np.float32)
    f = tg.jit(lambda v: np.tanh(v) * 2.0)
    f(x)                                 # the first call returns the traced result
    got = f(x) / 2
    [program] = next(iter(f._signatures.values()))
    assert isinstance(program, fused.FusedProgram) and "tanh_f32(" in program.source
    assert got.dtype == np.float32
    exact = np.tanh(x.astype(np.float64))
    finite = np.isfinite(exact)
    error = np.abs(got[finite] - exact[finite]) / np.maximum(np.abs(exact[finite]), 1e-38)
    assert error.max() < 3e-7            # NumPy's float32 tanh: about 1.1e-7
    assert np.isnan(got[-1]) and got[-3] == 1.0 and got[-2] == -1.0
    assert np.signbit(got[200002]) and got[200003] == np.float32(1e-30)


def test_generated_code_checks_guards(generate_always):
    def f(x):
        if np.sum(x) > 0:
            return np.sum(np.tanh(x) * x)
        return np.sum(x * x * x)
    jf = tg.jit(tg.value_and_grad(f))
    for sign in (1, -1, 1, -1):
        x = sign * np.linspace(0.1, 1.0, 50)
        value, grad = jf(x)
        expected = tg.value_and_grad(f)(x)
        assert_close(value, expected[0])
        assert_close(grad, expected[1])
    assert jf.traces == 2


def test_generated_bias_broadcast_runs_nested_loops(generate_always):
    # a row broadcast over leading axes is indexed by the inner loop variable (no `i % n`)
    def f(x, b, c):
        return np.sum(np.tanh(x + b) * c)
    rng = np.random.default_rng(7)
    x, b, c = rng.standard_normal((6, 5)), rng.standard_normal(5), rng.standard_normal((6, 1))
    jf = tg.jit(tg.value_and_grad(f, argnums=(0, 1, 2)))
    expected = jf.tape(x, b, c).run(x, b, c)
    jf(x, b, c)
    value, grads = jf(x, b, c)
    [program] = next(iter(jf._signatures.values()))
    from tapegrad_jit import fused
    assert isinstance(program, fused.FusedProgram)
    assert "[i % " not in program.source and "for j in range(" in program.source
    assert_close(value, expected[0], rtol=1e-12)
    for g, e in zip(grads, expected[1]):
        assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_tracing_leaves_the_garbage_collector_as_it_was():
    import gc
    f = tg.jit(tg.value_and_grad(lambda x: np.sum(np.sin(x) * x)))
    assert gc.isenabled()
    f(np.arange(3.0))
    assert gc.isenabled()
    bad = tg.jit(lambda x: float(x) + 1)
    with pytest.raises(TypeError):
        bad(np.float64(1.0))
    assert gc.isenabled()
    gc.disable()
    try:
        f(np.arange(4.0))
        assert not gc.isenabled()       # a collector the user paused stays paused
    finally:
        gc.enable()


# ---- vmap of a scalar row tape: generated straight-line code per row (tapegrad_jit/rows.py)

@pytest.fixture
def row_kernels_always(monkeypatch):
    from tapegrad_jit import rows
    monkeypatch.setattr(rows, "MIN_ROWS", 0)
    return rows


def _interpreted(program, inputs, axes, rows):
    """The same rows on the interpreter (the reference for the generated row kernel)."""
    saved = program._rows
    program._rows = None
    try:
        return program.run_batched(inputs, axes, rows)
    finally:
        program._rows = saved


def test_row_kernel_matches_interpreter(row_kernels_always):
    def f(x, w):
        y = x
        for _ in range(3):
            y = 0.9 * np.sin(y) + 0.1 * y * np.tanh(w * x) + 0.05 * np.exp(-y * y)
        return y / (1.0 + np.abs(w)) + np.maximum(x, 0.0) ** 2
    xs = np.concatenate([np.random.default_rng(4).uniform(-3, 3, 61), [0.0, np.inf, np.nan]])
    jf = tg.jit(tg.vmap(tg.value_and_grad(f, argnums=(0, 1)), in_axes=(0, None)))
    jf(xs, 0.3)
    values, (gx, gw) = jf(xs, 0.3)
    [program] = next(iter(jf._signatures.values()))
    assert isinstance(program._rows, row_kernels_always.RowKernel)
    assert "prange" in program._rows.source and "sin(" in program._rows.source
    inputs, axes, rows = [xs, np.float64(0.3)], [0, None], np.arange(xs.size)
    ok, leaves = program.run_batched(inputs, axes, rows)
    ok_ref, ref = _interpreted(program, inputs, axes, rows)
    assert ok.all() and ok_ref.all()
    for got, want in zip(leaves, ref):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)      # same forms, same order: same bits
    # a subset of rows (the front door's retry after a guard) reads the rows it is given
    some = np.array([3, 7, 60], dtype=np.int64)
    ok, part = program.run_batched(inputs, axes, some)
    np.testing.assert_array_equal(part[0], leaves[0][some])
    for x, v, g in zip(xs[:8], values, gx):
        ev, (egx, _) = tg.value_and_grad(f, argnums=(0, 1))(x, 0.3)
        assert_close(v, ev, rtol=1e-12)
        assert_close(g, egx, rtol=1e-12)


def test_row_kernel_reports_guarded_rows(row_kernels_always):
    def f(x):
        if x > 0.5:
            return np.sin(x) * x
        return x * x * x
    xs = np.random.default_rng(5).uniform(-2, 2, 50)
    jf = tg.jit(tg.vmap(tg.grad(f)))
    for _ in range(2):
        got = jf(xs)
        np.testing.assert_allclose(got, [tg.grad(f)(x) for x in xs], rtol=1e-13)
    assert jf.traces == 2                        # one tape per branch, each row on its own
    programs = next(iter(jf._signatures.values()))
    assert all(isinstance(p._rows, row_kernels_always.RowKernel) for p in programs)
    rows = np.arange(xs.size)
    for program in programs:
        ok, leaves = program.run_batched([xs], [0], rows)
        ok_ref, ref = _interpreted(program, [xs], [0], rows)
        np.testing.assert_array_equal(ok, ok_ref)
        assert 0 < ok.sum() < xs.size
        np.testing.assert_array_equal(leaves[0][ok], ref[0][ok])


def test_row_kernel_only_for_scalar_rows(row_kernels_always):
    jf = tg.jit(tg.vmap(tg.grad(lambda x: np.sum(np.tanh(x) ** 2))))
    xs = np.random.default_rng(6).standard_normal((20, 3))
    jf(xs)
    assert_close(jf(xs), 2 * np.tanh(xs) * (1 - np.tanh(xs) ** 2))
    [program] = next(iter(jf._signatures.values()))
    assert program._rows is None                 # arrays per row: the interpreter runs them
