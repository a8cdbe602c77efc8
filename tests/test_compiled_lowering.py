"""Issue 14: the compiled lowering of scalar instructions (tapegrad_jit/scalar_lowering.py) makes
exactly the program the Python path (cpu.Program._lower) makes: the same code, index pool and
initial buffer, for scalar graphs with guards, constants, float32, ints and bools, and for tapes
with array instructions between the scalar ones; and the small-array lowering's shortcuts
(broadcast maps made once per pair of shapes, gather's alias test) against what they replace."""
import numpy as np
import pytest

import tapegrad as tg
from tapegrad.tape import tree_flatten

pytest.importorskip("numba")
from tapegrad_jit import cpu, scalar_lowering  # noqa: E402


def _programs(tape, monkeypatch):
    """(Python path's program, compiled path's program); the compiled path is taken even where
    its cost model would leave the tape to Python."""
    with monkeypatch.context() as m:
        m.setattr(scalar_lowering, "lower", lambda *args: False)
        reference = cpu.Program(tape)
    taken = []
    lower = scalar_lowering.lower
    with monkeypatch.context() as m:
        m.setattr(scalar_lowering, "MIN_FAST_PER_OTHER", 0)
        m.setattr(scalar_lowering, "lower", lambda *args: taken.append(lower(*args)) or taken[-1])
        fast = cpu.Program(tape)
    assert taken == [True]
    return reference, fast


def _assert_same(tape, monkeypatch, *inputs, rtol=1e-12):
    reference, fast = _programs(tape, monkeypatch)
    for name in ("code", "ipool", "v0"):
        a, b = getattr(reference, name), getattr(fast, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert reference.inputs == fast.inputs
    assert reference.outputs == fast.outputs
    if inputs:
        ok, out = fast(inputs)
        assert ok                       # the tape's own inputs take the recorded branches
        for got, want in zip(_leaves(out), _leaves(tape.run(*inputs))):
            np.testing.assert_allclose(got, want, rtol=rtol)
    return fast


def _leaves(tree):
    return [np.asarray(leaf) for leaf in tree_flatten(tree, lambda x: False)[0]]


def _tape(f, *args):
    return tg.make_tape(f)(*args)


def _softmax_graph(x, n_ops):
    # the scalar graph's four ops, with a guard per softmax (Python max of traced values)
    nodes = [x[i] for i in range(x.size)]
    for op in range(n_ops):
        k = op % 4
        if k == 0:
            nodes.append(np.log1p(np.exp(nodes[-10])))
        elif k == 1:
            nodes.append(sum(nodes[-30:-10:5]))
        elif k == 2:
            nodes.append(nodes[-20] * nodes[-10])
        else:
            m = max(nodes[-4:])
            e = [np.exp(t - m) for t in nodes[-4:]]
            s = sum(e)
            nodes.extend(t / s for t in e)
    return nodes[-1]


def _array_graph(x, n_ops):
    # small arrays between the scalars: stack, max, sum, element reads
    nodes = [x[i] for i in range(x.size)]
    for op in range(n_ops):
        k = op % 4
        if k == 0:
            nodes.append(np.logaddexp(0.0, nodes[-10]))
        elif k == 1:
            nodes.append(sum(nodes[-30:-10:5]))
        elif k == 2:
            nodes.append(nodes[-20] * nodes[-10])
        else:
            s = np.stack(nodes[-4:])
            e = np.exp(s - s.max())
            sm = e / e.sum()
            nodes.extend(sm[i] for i in range(4))
    return nodes[-1]


@pytest.mark.parametrize("graph", [_softmax_graph, _array_graph])
def test_graph_variants_lower_identically(graph, monkeypatch):
    x = np.random.default_rng(0).standard_normal(40)
    f = tg.value_and_grad(lambda x: graph(x, 120))
    tape = _tape(f, x)
    assert tape.guards or graph is _array_graph
    _assert_same(tape, monkeypatch, x)


def test_benchmark_graphs_lower_identically(monkeypatch):
    from benchmarks.workloads.first_call import random_mix
    from benchmarks.workloads.scalar_graph import build
    problem = build(300)
    _assert_same(_tape(tg.value_and_grad(problem.f), problem.args[0]), monkeypatch,
                 problem.args[0])
    f, x = random_mix(300)
    _assert_same(_tape(tg.value_and_grad(f), x), monkeypatch, x)


def _random_scalar_function(seed, n_ops):
    """Random scalar code over earlier values: unary and binary ops, constants, comparisons
    (bools), where, int casts and branches on traced values (guards)."""
    rng = np.random.default_rng(seed)
    program = [(int(rng.integers(0, 14)), [int(i) for i in rng.integers(1, 12, size=3)],
                float(rng.choice([1.0, 0.5, -2.0, 3.0]))) for _ in range(n_ops)]

    def f(x):
        v = [x[i] for i in range(x.size)]
        for op, (i, j, k), c in program:
            a, b = v[-i], v[-j]
            if op == 0:
                r = a * b + c
            elif op == 1:
                r = np.exp(-a * a) * c
            elif op == 2:
                r = a / (1.0 + b * b)
            elif op == 3:
                r = np.tanh(a - b)
            elif op == 4:
                r = np.sin(a) * b + np.cos(v[-k])
            elif op == 5:
                r = max(a, b)                       # a guard
            elif op == 6:
                r = a if a > c else -b              # a guard on a comparison with a constant
            elif op == 7:
                r = np.where(a > b, a, b * c)       # a bool operand
            elif op == 8:
                r = np.sqrt(a * a + c * c)
            elif op == 9:
                r = np.abs(a) + np.log1p(np.exp(b))
            elif op == 10:
                r = a - c * b
            elif op == 11:
                r = (a * b) * (a + v[-k])
            elif op == 12:
                r = -(a * b)
            else:
                r = np.exp(a + b) / (c + np.exp(a))
            v.append(r)
        return v[-1] + v[-2] * v[-3]
    return f


@pytest.mark.parametrize("seed", range(6))
def test_random_scalar_code_lowers_identically(seed, monkeypatch):
    f = _random_scalar_function(seed, 60)
    x = np.random.default_rng(seed).standard_normal(12)
    _assert_same(_tape(tg.value_and_grad(f), x), monkeypatch, x)
    _assert_same(_tape(f, x), monkeypatch, x)


def test_float32_ints_and_bools_lower_identically(monkeypatch):
    def f(x, y, n):
        a = x[0] * x[1] + np.float32(0.5)
        b = np.exp(a) - x[2]
        flag = (a > b) & (y[0] > 0)
        k = n[0] * 3 + n[1]            # ints
        z = np.where(flag, a, b) * k + y[1] * y[0]
        return z + np.tanh(b) * a, k, flag
    x = np.array([0.3, -1.2, 0.7], dtype=np.float32)
    y = np.array([2.0, -0.5])
    n = np.array([4, 7])
    # the interpreter computes in float64: float32 values to float32 rounding
    _assert_same(_tape(f, x, y, n), monkeypatch, x, y, n, rtol=1e-5)


def test_guards_first_and_last_lower_identically(monkeypatch):
    def f(x):
        if x[0] > 0:                    # a guard before any scalar instruction is done
            y = x[1] * x[2]
        else:
            y = x[1] + x[2]
        z = np.exp(y) * y + x[0]
        if z > 1.0:                     # a guard on the last instruction's value
            return z
        return z
    for x in (np.array([0.5, 1.0, 2.0]), np.array([-0.5, 1.0, -2.0])):
        tape = _tape(f, x)
        assert len(tape.guards) == 2
        _assert_same(tape, monkeypatch, x)


def test_element_loop_tapes_lower_identically(monkeypatch):
    def f(x):
        out = np.zeros_like(x)
        for i in range(1, x.size):
            out[i] = out[i - 1] * 0.5 + np.sin(x[i]) * x[i - 1]
        return np.sum(out * out)
    x = np.linspace(-1.0, 1.0, 30)
    _assert_same(_tape(tg.value_and_grad(f), x), monkeypatch, x)


def test_cost_model_leaves_alternating_tapes_to_python():
    # one array instruction per scalar one: each would re-enter compiled code (element loops)
    def f(x):
        out = np.zeros_like(x)
        for i in range(x.size):
            out[i] = x[i] * 2.0
        return out
    tape = _tape(f, np.arange(20.0))
    assert scalar_lowering._instruction_table(tape) is None
    # and a scalar tape takes the compiled path
    assert scalar_lowering._instruction_table(_tape(lambda a, b: np.exp(a * b) + a, 1.0, 2.0))


@pytest.mark.parametrize("shape, out_shape", [((), (3,)), ((1,), (4,)), ((3,), (2, 3)),
                                              ((2, 1), (2, 5)), ((1, 3, 1), (4, 3, 2)),
                                              ((2, 3), (2, 3)), ((4,), (1, 4))])
def test_spread_positions_are_broadcast_to_of_the_grid(shape, out_shape):
    want = np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), out_shape)
    got = cpu._spread_positions(shape, out_shape)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("indices, contiguous", [([5], True), ([2, 3, 4], True), ([0, 0], False),
                                                 ([3, 1, 2, 4], False), ([1, 3, 2, 4], False),
                                                 ([4, 3, 2], False), ([0, 2, 1, 3], False)])
def test_gather_aliases_ascending_runs_only(indices, contiguous):
    lowering = cpu._Lowering(tg.make_tape(lambda y: y * 2.0)(np.zeros(8)))
    src = lowering.buffer(8)
    out = lowering.gather(None, src, np.array(indices))
    assert (out.buf == src.buf and out.delta == indices[0]) == contiguous
    assert len(lowering.ops) == (0 if contiguous else cpu.ROW)


def test_small_chunks_lower_identically(monkeypatch):
    # rows handed to Python a few at a time: every full-buffer return and re-entry (inside a
    # run, inside a flush before a Python instruction, at the end with late guards) resumes
    monkeypatch.setattr(scalar_lowering, "CHUNK", 1)

    def f(x):
        z = _softmax_graph(x, 40) * x[0] + np.exp(x[1])
        positive = z > -100.0
        for _ in range(30):                 # guards after the last instruction
            if positive:
                pass
        return z
    x = np.random.default_rng(3).standard_normal(40)
    tape = _tape(f, x)
    assert sum(guard.position >= len(tape.instrs) for guard in tape.guards) >= 30
    _assert_same(tape, monkeypatch, x)


@pytest.mark.parametrize("shape, out_shape", [((), (3,)), ((1,), (4,)), ((3,), (2, 3)),
                                              ((2, 1), (2, 5)), ((4,), (1, 4)), ((2,), (0, 2))])
def test_broadcast_copy_is_the_gather_of_spread_positions(shape, out_shape):
    made = []
    for way in ("gather", "cached"):
        lowering = cpu._Lowering(tg.make_tape(lambda y: y * 2.0)(np.zeros(8)))
        src = lowering.buffer(int(np.prod(shape)))
        for _ in range(2):              # the second through the cached map
            if way == "gather":
                out = lowering.gather(None, src, cpu._spread_positions(shape, out_shape))
            else:
                out = lowering.broadcast_copy(src, shape, out_shape)
        made.append((out.buf, out.delta, lowering.sizes, bytes(lowering.ops),
                     [m.tolist() for m in lowering.maps]))
    assert made[0] == made[1]
