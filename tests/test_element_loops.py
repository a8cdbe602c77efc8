"""Element loops on tapes (issue 12): x[i] reads and x[i] = ... writes cost O(1) each.

Gradients of loops over elements (reads, writes, x[i] += ..., 2-D x[i, j], branches) match finite
differences, the tape's reference interpreter and the source face; the memory of tracing and
compiling grows linearly with the loop length (never a timed assertion)."""
import tracemalloc

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import source
from tapegrad.tape import optimize

pytest.importorskip("numba")
from tapegrad_jit import cpu  # noqa: E402


def diff_energy(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += (x[i + 1] - x[i]) ** 2
    return s


def recurrence(x):
    y = x * 1.0
    for i in range(1, x.shape[0]):
        y[i] = y[i - 1] * 0.5 + np.sin(x[i])
    return np.sum(y * y)


def increments(x):
    y = x * 2.0
    for i in range(x.shape[0]):
        y[i] += x[i] * x[(i + 1) % x.shape[0]]
    for i in range(x.shape[0]):
        y[i] -= 0.25 * y[i - 1]
    return np.sum(y ** 2)


def grid(a):
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j] * a[j % a.shape[0], i % a.shape[1]] + np.exp(0.1 * a[i, j])
    return s


def guarded(x):
    s = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0.0:
            s += x[i] ** 2
        else:
            s -= 3.0 * x[i]
    return s


def laplacian(x):
    # periodic 1-D stencil written into a fresh array (x[i - 1] wraps at i = 0), then read back
    n = x.shape[0]
    y = np.zeros(n) + x[0] * 0.0
    for i in range(n):
        y[i] = x[i - 1] - 2.0 * x[i] + x[(i + 1) % n]
    e = 0.0
    for i in range(n):
        e = e + y[i] * y[i] + np.cos(x[i]) * x[i]
    return e


CASES = [diff_energy, recurrence, increments, guarded, laplacian]


def _finite_differences(f, x, h=1e-6):
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        grad[k] = (f(up) - f(down)) / (2 * h)
    return grad


def _point(shape, seed):
    return np.random.default_rng(seed).normal(size=shape)


@pytest.mark.parametrize("f", CASES + [grid], ids=lambda f: f.__name__)
@pytest.mark.parametrize("n", [1, 2, 10])
def test_element_loops_match_finite_differences_and_tape(f, n):
    x = _point((n, 3) if f is grid else (n,), n)
    value, grad = tg.jit(tg.value_and_grad(f))(x)
    ref_value, ref_grad = tg.value_and_grad(f)(x)
    np.testing.assert_allclose(value, f(x), rtol=1e-12)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, _finite_differences(f, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("f", [diff_energy, recurrence, guarded, laplacian],
                         ids=lambda f: f.__name__)
def test_element_loops_match_source_face(f):
    x = _point(50, 7)
    value, grad = tg.jit(tg.value_and_grad(f))(x)
    source_value, source_grad = source.value_and_grad(f)(x)
    np.testing.assert_allclose(value, source_value, rtol=1e-12)
    np.testing.assert_allclose(grad, source_grad, rtol=1e-12, atol=1e-12)


def test_guarded_loop_takes_the_other_branch_when_a_sign_flips():
    x = np.array([1.0, -2.0, 3.0, 0.5])
    g = tg.jit(tg.grad(guarded))
    np.testing.assert_allclose(g(x), [2.0, -3.0, 6.0, 1.0])
    np.testing.assert_allclose(g(-x), [-3.0, 4.0, -3.0, -3.0])


def test_nonfinite_values_flow_through_element_loops():
    x = np.array([0.0, np.inf, 1.0, np.nan, 2.0])
    value, grad = tg.jit(tg.value_and_grad(diff_energy))(x)
    ref_value, ref_grad = tg.value_and_grad(diff_energy)(x)
    np.testing.assert_array_equal(value, ref_value)
    np.testing.assert_array_equal(grad, ref_grad)


def test_element_loops_in_float32():
    x = _point(20, 3).astype(np.float32)
    value, grad = tg.jit(tg.value_and_grad(laplacian))(x)
    ref_value, ref_grad = tg.value_and_grad(laplacian)(x)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)


def test_element_loop_against_torch():
    torch = pytest.importorskip("torch")
    x = _point(30, 11)
    t = torch.tensor(x, requires_grad=True)
    s = 0.0
    for i in range(29):
        s = s + (t[i + 1] - t[i]) ** 2
    s.backward()
    np.testing.assert_allclose(tg.jit(tg.grad(diff_energy))(x), t.grad.numpy(), rtol=1e-12)


def _copied_per_call(program):
    """Elements the compiled scatters copy per call (an in-place scatter copies none)."""
    code = program.code
    scatters = np.isin(code[:, cpu.OP], [cpu.OPCODE["scatter_add"], cpu.OPCODE["scatter_set"]])
    return int(code[scatters & (code[:, cpu.X2] != 2), cpu.N].sum())


@pytest.mark.parametrize("f", [diff_energy, recurrence, increments, laplacian],
                         ids=lambda f: f.__name__)
def test_compiled_element_loops_do_linear_work(f):
    # every element read scattered into a copy of its n-array (every write copied one too):
    # O(n^2) per call; in place, a loop copies a few arrays of n
    for n in (500, 2000):
        tape = optimize(tg.make_tape(tg.value_and_grad(f))(_point(n, 1)))
        program = cpu.Program(tape)
        assert _copied_per_call(program) <= 4 * n, (n, _copied_per_call(program))
        assert program.v0.size < 40 * n


def _peak_bytes(f, n):
    x = _point(n, 2)
    tracemalloc.start()
    try:
        value, grad = tg.jit(tg.value_and_grad(f))(x)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("f", [diff_energy, laplacian], ids=lambda f: f.__name__)
def test_tracing_and_compiling_memory_is_roughly_linear(f):
    tg.jit(tg.value_and_grad(f))(_point(5, 0))        # the interpreter loaded outside the count
    small, large = _peak_bytes(f, 500), _peak_bytes(f, 2000)
    # quadratic growth gives ~16x; linear 4x (plus fixed costs)
    assert large < 8 * small, (small, large)


def test_tracing_an_element_write_loop_copies_the_array_a_bounded_number_of_times(monkeypatch):
    # each x[i] = ... used to copy the whole array (the registry's setitem forward): O(n) per
    # write; a write into a version nothing else reads now updates it in place
    from tapegrad import primitives as P
    from tapegrad import trace
    copies = []
    forward = P.setitem.impl

    def counting(x, values, index):
        copies.append(np.shape(x))
        return forward(x, values, index)

    monkeypatch.setitem(trace._TRACE_IMPLS, P.setitem, counting)
    x = _point(1000, 5)
    value, grad = tg.value_and_grad(recurrence)(x)
    assert len(copies) <= 2, len(copies)
    np.testing.assert_allclose(value, recurrence(x), rtol=1e-12)
    np.testing.assert_allclose(grad, tg.jit(tg.grad(recurrence))(x), rtol=1e-12)


def test_in_place_writes_keep_every_handle_on_its_version():
    def f(x):
        y = x * 1.0
        y[0] = 2.0 * x[1]
        y[1] = 3.0 * x[0]           # in place: the version before it is read by nothing else
        before = +y                 # another handle: the next write must copy
        y[2] = y[0] * y[1]
        y[0] = 5.0
        return np.sum(y * before) + np.sum(before ** 2)

    x = _point(4, 9)
    value, grad = tg.jit(tg.value_and_grad(f))(x)
    np.testing.assert_allclose(value, f(x), rtol=1e-12)
    np.testing.assert_allclose(grad, _finite_differences(f, x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tg.value_and_grad(f)(x)[1], grad, rtol=1e-12)


def test_repeated_element_reads_record_one_instruction_per_element():
    # x[i + 1] in one step and x[i] in the next are one element of one version: one getitem;
    # x * 1 (the seed times a rule's factor) and x ** 1 record nothing
    tape = tg.make_tape(tg.value_and_grad(diff_energy), optimized=False)(_point(50, 0))
    names = [ins.prim.name for ins in tape.instrs]
    assert names.count("getitem") == 50
    # a step: getitem, sub, pow, add; adjoint mul (2 * d), sub (the next step's cotangent minus
    # this one's: sub's -g is never a neg of its own but once), index_add
    assert names.count("pow") == 49 and names.count("neg") == 1, names
    assert len(names) <= 7 * 49 + 2, len(names)
    written = tg.make_tape(tg.value_and_grad(recurrence), optimized=False)(_point(50, 0))
    # y[i - 1] is read from the version written one step earlier: a read per step, none shared
    assert [ins.prim.name for ins in written.instrs].count("getitem") >= 2 * 49


def test_constants_and_element_reads_are_shared_but_handles_stay_apart():
    def f(x):
        a = x[0]
        b = x[0]
        a = a * 3.0                 # rebinding a leaves b alone
        x[0] = 2.0                  # a new version: its x[0] is a new read
        c = x[0]
        return a + b * 2.0 + c * 2.0 + x[1] * -0.0 + x[2] * 0.0

    x = _point(3, 1)
    tape = tg.make_tape(tg.value_and_grad(f), optimized=False)(x)
    numbers = [repr(v) for v in tape.consts.values() if type(v) is float]
    assert numbers.count("2.0") == 1 and numbers.count("-0.0") == 1, numbers   # 0.0 apart
    value, grad = tg.jit(tg.value_and_grad(f))(x)
    np.testing.assert_allclose(value, f(x.copy()), rtol=1e-12)
    np.testing.assert_allclose(grad, _finite_differences(lambda v: f(v.copy()), x), atol=1e-6)


# added by the first call at n = 1e5 (700k instructions): the bound; 0.46 GB measured
# (0.55 GB before the lowering held its ops as int32 and freed its caches before planning)
_PEAK_BYTES_AT_1E5 = 500e6
_LARGE = """
import resource, sys
sys.path[:0] = [{tests!r}, {root!r}]
import numpy as np, tapegrad as tg
from test_element_loops import {name} as f
tg.jit(tg.value_and_grad(f))(np.ones(8))            # the interpreter loaded before the count
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = np.random.default_rng(0).normal(size={n})
value, grad = tg.jit(tg.value_and_grad(f))(x)
added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
np.save(sys.argv[1], np.concatenate([[value, added * 1024.0], grad]))
"""


def _run_large(f, n, tmp_path):
    """f's jitted value and gradient at x ~ N(0, 1) of size n in a fresh process (its peak
    memory is then the trace's and compile's, not earlier tests'); (x, value, grad, bytes)."""
    import os
    import subprocess
    import sys
    out = tmp_path / "result.npy"
    tests = os.path.dirname(os.path.abspath(__file__))
    script = _LARGE.format(tests=tests, root=os.path.dirname(tests), name=f.__name__, n=n)
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, timeout=600)
    result = np.load(out)
    return np.random.default_rng(0).normal(size=n), result[0], result[2:], result[1]


def test_element_loop_at_n_100000_is_right_and_memory_stays_linear(tmp_path):
    # every x[i] used to build an n-array: O(n^2) memory (killed after 24 GB); then 1.25 GB of
    # Python objects per tape of 1.1M instructions; now a bounded number of bytes each
    n = 100_000
    x, value, grad, peak = _run_large(diff_energy, n, tmp_path)
    d = np.diff(x)
    expected = np.zeros(n)
    expected[1:] += 2.0 * d
    expected[:-1] -= 2.0 * d
    np.testing.assert_allclose(value, np.sum(d * d), rtol=1e-10)
    np.testing.assert_allclose(grad, expected, rtol=1e-12, atol=1e-12)
    # a directional finite difference through the Python loop itself (f is quadratic: the
    # central difference is exact but for rounding at any step; a large one keeps that small)
    v = np.random.default_rng(1).normal(size=n)
    h = 0.1
    directional = (diff_energy(x + h * v) - diff_energy(x - h * v)) / (2 * h)
    np.testing.assert_allclose(grad @ v, directional, rtol=1e-6)
    assert peak < _PEAK_BYTES_AT_1E5, f"{peak / 1e6:.0f} MB"


def negations(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s = s - x[i] * y[i]         # the product's cotangent starts as sub's -g
        s = (s - y[i]) - y[i]       # two -g on one element add up
    a = x - y                       # y's cotangent is -g alone (returned as it is)
    t = np.sin(y) - x * 2.0         # a -g that mul's rule receives
    return s * 0.5 + np.sum(a * t) - np.sum(x - (y - x))


def test_cotangents_of_subtractions_match_finite_differences():
    # sub's -g is recorded only where it is used (or folded into the next sub)
    x, y = _point(4, 12), _point(4, 13)
    for grad in (tg.grad(negations, argnums=(0, 1)), tg.jit(tg.grad(negations, argnums=(0, 1)))):
        gx, gy = grad(x, y)
        np.testing.assert_allclose(gx, _finite_differences(lambda v: negations(v, y), x),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gy, _finite_differences(lambda v: negations(x, v), y),
                                   rtol=1e-6, atol=1e-6)
    hx = tg.jit(tg.hessian(lambda v: negations(v, y)))(x)      # the sweep differentiated again
    np.testing.assert_allclose(hx, hx.T, atol=1e-12)
    np.testing.assert_allclose(hx[0], _finite_differences(
        lambda v: tg.grad(negations)(v, y)[0], x), rtol=1e-5, atol=1e-5)
