"""Re-rolled bodies of small-array rows (tapegrad_jit/rolled.py): elementwise rows over a few
elements, reductions, gathers, places and scatters of any mode repeat in scalar graphs written
with small arrays (softmax of a stack, sums and maxima over stacks, dot products, slices).

As in test_rolled_loops: every rolled program against the same code run whole by the interpreter
(bitwise), the tape's reference interpreter and NumPy or finite differences, with rolling forced
on short graphs by lowering rolled.MIN_ROWS."""
import numpy as np
import pytest

pytest.importorskip("numba")
from benchmarks.workloads.scalar_graph import graph_ops  # noqa: E402
from benchmarks.workloads.scalar_graph_variants import array_graph_function  # noqa: E402
from tapegrad_jit import cpu, rolled  # noqa: E402
from tests.tape_faces import central_differences  # noqa: E402
from tests.test_rolled_loops import check_rolled, rolled_steps, small_runs  # noqa: E402,F401

pytestmark = pytest.mark.filterwarnings("error:tapegrad_jit. rolled:RuntimeWarning")


# ---------------------------------------------------------------------------------------------
# Graphs of small arrays
# ---------------------------------------------------------------------------------------------

def softmax_graph(n_ops):
    """The scalar graph with softmax over np.stack and softplus as np.logaddexp (the
    benchmark's variant; 100 inputs)."""
    return array_graph_function(graph_ops(n_ops)[0])


def stack_reductions(x, trips=30):
    """np.sum, np.max, np.min, np.prod and np.mean over stacks of the last few nodes."""
    nodes = [x[i] for i in range(x.shape[0])]
    for _ in range(trips):
        s = np.stack(nodes[-3:])
        nodes.append(0.3 * np.sum(s) + np.max(s) - 0.2 * np.min(s) + 0.1 * np.prod(s)
                     - np.mean(s * s))
    return nodes[-1]


def small_dots(x, w, trips=25):
    """np.dot of small vectors and a small matrix-vector product."""
    nodes = [x[i] for i in range(x.shape[0])]
    for _ in range(trips):
        v = np.stack(nodes[-3:])
        m = np.tanh(np.dot(w, v))
        nodes.append(np.dot(v, m) * 0.5 + np.sin(m[1]))
    return nodes[-1]


def slices_and_writes(x, trips=20):
    """Slices, element writes into a fresh array (copying scatters), fancy indexing."""
    y = x * 1.0
    total = 0.0
    for i in range(trips):
        z = y[:4] * 0.0
        z[1] = y[i % 5] * 2.0
        z[2:] = np.cos(y[i % 5 + 1:i % 5 + 3])
        y = y + 0.1 * np.concatenate([z, z[::-1]])[:y.shape[0]]
        total = total + np.sum(z[[0, 2, 3]] ** 2) + y[(i + 3) % 8]
    return total


def test_softmax_graph_rolls_bitwise_and_matches_finite_differences(small_runs):
    x = np.random.default_rng(3).standard_normal(100)
    fun = softmax_graph(100)
    value, grad = check_rolled(fun, x)
    assert value == pytest.approx(fun(x), rel=1e-12)
    np.testing.assert_allclose(grad, central_differences(fun, x), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("trips", [8, 30])
def test_reductions_over_stacks(small_runs, trips):
    x = np.random.default_rng(4).uniform(-1.0, 1.0, 5)
    fun = lambda v: stack_reductions(v, trips)  # noqa: E731
    value, grad = check_rolled(fun, x, expect_rolled=True if trips == 30 else None)
    assert value == pytest.approx(fun(x), rel=1e-12)
    np.testing.assert_allclose(grad, central_differences(fun, x), rtol=1e-6, atol=1e-9)


def test_small_dot_products(small_runs):
    rng = np.random.default_rng(5)
    x, w = rng.uniform(-1.0, 1.0, 4), rng.uniform(-0.5, 0.5, (3, 3))
    value, (gx, gw) = check_rolled(small_dots, x, w, argnums=(0, 1))
    assert value == pytest.approx(small_dots(x, w), rel=1e-12)
    np.testing.assert_allclose(gx, central_differences(lambda a: small_dots(a, w), x),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gw, central_differences(lambda b: small_dots(x, b), w),
                               rtol=1e-6, atol=1e-9)


def test_slices_element_writes_and_fancy_indexing(small_runs):
    x = np.random.default_rng(6).uniform(-1.0, 1.0, 8)
    value, grad = check_rolled(slices_and_writes, x, expect_rolled=None)
    assert value == pytest.approx(slices_and_writes(x), rel=1e-12)
    np.testing.assert_allclose(grad, central_differences(slices_and_writes, x), rtol=1e-6,
                               atol=1e-9)


def test_maxima_with_nan_and_ties(small_runs):
    """Reductions' NaN and tie rules (max's VJP splits ties) hold inside rolled bodies."""
    x = np.random.default_rng(7).uniform(-1.0, 1.0, 5)
    x[1] = x[3]
    check_rolled(stack_reductions, x)
    x[2] = np.nan
    check_rolled(stack_reductions, x)


@pytest.mark.parametrize("n_ops", [600, 1000])
def test_softmax_graph_rolls_with_default_thresholds(n_ops):
    """The defaults: the forward and adjoint bodies roll and cover most rows, bitwise."""
    import tapegrad as tg
    x = np.random.default_rng(0).standard_normal(100)
    fun = softmax_graph(n_ops)
    value, _ = check_rolled(fun, x)
    assert value == pytest.approx(fun(x), rel=1e-12)
    program = cpu.Program(tg.make_tape(tg.value_and_grad(fun))(x))
    covered = sum(len(rows) * trips for _, trips, rows, _, _ in rolled_steps(program))
    assert covered > 0.85 * program.code.shape[0]


# ---------------------------------------------------------------------------------------------
# Which locals a write makes stale
# ---------------------------------------------------------------------------------------------

def run_both(code, ipool, v):
    """(status, buffer) of the code run rolled (every run of 24+ rows) and whole."""
    interpreter = cpu.kernels().run
    run = rolled.runner(code, ipool, interpreter)
    assert run is not interpreter
    whole, rolled_v = v.copy(), v.copy()
    status = interpreter(code, ipool, whole)
    assert run(code, ipool, rolled_v) == status
    np.testing.assert_array_equal(rolled_v, whole)
    return rolled_v


def row(name, out, n=1, a=0, b=0, c=0, sa=1, sb=1, sc=1, x0=0, x1=0, x2=0):
    return [cpu.OPCODE[name], out, n, a, b, c, sa, sb, sc, x0, x1, x2]


def test_array_writes_over_a_slot_held_in_a_local(small_runs):
    """A scalar row reads slot s into a local; a later 3-element row writes a range holding s
    (same stride, and another stride crossing it at some trips); the next read of s must see
    memory, not the stale local."""
    from tests.test_rolled_loops import synthetic
    body = [row("sin", 500, a=100),                           # reads v[100 + t]
            row("exp", 99, n=3, a=300, sa=1),                 # writes v[99 + t .. 101 + t]
            row("mul", 501, a=100, b=500),                    # reads v[100 + t] again
            row("neg", 503, a=230),                           # reads v[230 + t]
            row("cos", 200, n=2, a=301, sa=0),                # writes v[200 + 3t ..]: t = 15
            row("add", 502, a=230, b=501)]                    # reads v[230 + t] again
    unit = [0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    strides = [unit, unit, unit, unit, [0, 3, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], unit]
    code = synthetic(30, body, strides)
    assert rolled.find_runs(code, 24) == [(0, 6, 30)]
    v = np.random.default_rng(1).uniform(-1.0, 1.0, 700)
    run_both(code, np.zeros(1, dtype=np.int32), v)


def test_reductions_scatters_and_gathers_of_every_mode(small_runs):
    """Synthetic bodies: reductions with and without index maps (sum, prod, max, min),
    scatters zeroed, copied and in place (add and set), gathers and places, on random data."""
    from tests.test_rolled_loops import synthetic
    ipool = np.array([0, 1, 0, 1, 2, 2, 0, 3, 1, 2], dtype=np.int32)
    body = [row("reduce_sum", 400, n=2, a=100, x0=0, x1=4),
            row("reduce_max", 402, n=1, a=101, x0=-1, x1=4),
            row("reduce_prod", 403, n=3, a=102, x0=2, x1=4),
            row("reduce_min", 406, n=1, a=100, x0=-1, x1=3),
            row("scatter_add", 410, n=4, a=400, b=402, sb=0, x0=6, x1=4, x2=0),
            row("scatter_set", 414, n=4, a=410, b=403, sb=1, x0=4, x1=3, x2=1),
            row("scatter_add", 414, n=4, a=414, b=406, sb=0, x0=7, x1=1, x2=2),
            row("gather", 420, n=5, a=410, x0=5),
            row("place", 430, n=4, a=420, x0=6, x1=4),
            row("mul", 440, n=4, a=430, b=414, sa=1, sb=1)]
    step = [0, 40, 0, 3, 3, 3, 0, 0, 0, 0, 0, 0]
    code = synthetic(40, body, [step] * len(body))
    assert rolled.find_runs(code, 24) == [(0, len(body), 40)]
    rng = np.random.default_rng(2)
    v = rng.uniform(-2.0, 2.0, 2200)
    v[rng.integers(0, 2200, 30)] = np.nan
    run_both(code, ipool, v)


def test_rows_left_to_the_interpreters_helpers(small_runs):
    """Rows too long to write out, with a count growing by trip, or index maps that change from
    trip to trip run as the interpreter's loop form and helpers, matrix products included."""
    from tests.test_rolled_loops import synthetic
    ipool = np.random.default_rng(3).integers(0, 5, 64).astype(np.int32)
    body = [row("sin", 600, n=20, a=100, sa=1),
            row("mul", 640, n=3, a=101, b=130, sa=1, sb=0),
            row("gather", 690, n=4, a=600, x0=0),
            row("place", 700, n=5, a=690, x0=1, x1=4),
            row("reduce_sum", 705, n=5, a=601, x0=2, x1=4),
            row("reduce_max", 710, n=5, a=602, x0=3, x1=6),
            row("scatter_add", 715, n=5, a=705, b=640, sb=1, x0=4, x1=3, x2=1),
            row("scatter_set", 720, n=5, a=720, b=710, sb=1, x0=5, x1=2, x2=2),
            row("matmul", 725, n=4, a=700, b=715, sa=0, sb=0, sc=1, x0=2, x1=2, x2=2)]
    step = [0, 50, 0, 3, 3, 3, 0, 0, 0, 1, 0, 0]
    strides = [step] * len(body)
    strides[1] = [0, 50, 1, 3, 3, 3, 0, 0, 0, 1, 0, 0]        # a count growing by trip
    code = synthetic(40, body, strides)
    assert rolled.find_runs(code, 24) == [(0, len(body), 40)]
    v = np.random.default_rng(4).uniform(-2.0, 2.0, 2900)
    run_both(code, ipool, v)


def test_bodies_of_too_many_element_operations_do_not_roll(monkeypatch):
    """A body of 20 rows of 8 elements (160 element operations, past MAX_WORK) would take
    seconds to compile: it stays with the interpreter; at 4 elements a row it rolls."""
    from tests.test_rolled_loops import synthetic
    monkeypatch.setattr(rolled, "MIN_ROWS", 200)
    names = ["sin", "mul", "add", "exp", "tanh", "sub", "cos", "neg", "abs", "div"]
    order = np.random.default_rng(6).permutation(20)
    for n, rolls in ((8, False), (4, True)):
        body = [row(names[j % 10], 1000 + 20 * order[j], n=n, a=1000 + 20 * order[j - 1],
                    b=1000 + 20 * order[j - 2], sa=1, sb=1) for j in range(20)]
        code = synthetic(30, body, [[0, 400, 0, 400, 400, 400, 0, 0, 0, 0, 0, 0]] * 20)
        ipool = np.zeros(1, dtype=np.int32)
        assert rolled.find_runs(code, 200) == [(0, 20, 30)]
        assert bool(rolled._select(code, [(0, 20, 30)], ipool)) == rolls
        if rolls:
            run_both(code, ipool, np.random.default_rng(5).uniform(0.5, 1.0, 13_500))
