"""Issue 14: the div rule's shared g / y, and the trace-time paths the first call of a jitted
tape runs (recording, the one scan of a finished trace)."""
import operator

import numpy as np
import pytest

import tapegrad as tg


def _prims(tape):
    return [ins.prim.name for ins in tape.instrs]


def test_div_gradient_divides_once_per_cotangent():
    # d/dx x/y = g/y and d/dy = -(g/y) * ans: one division serves both cotangents
    tape = tg.make_tape(tg.grad(lambda x, y: np.sum(x / y), argnums=(0, 1)))(
        np.arange(1.0, 4.0), np.array([2.0, -3.0, 0.5]))
    assert _prims(tape).count("div") == 2       # the forward's and the shared g / y


@pytest.mark.parametrize("xs, ys", [((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 4)), ((), (2, 2)),
                                    ((2, 2), ())])
def test_div_gradients_match_torch(xs, ys):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(xs) + 3 * len(ys))
    x = rng.standard_normal(xs)
    y = rng.uniform(0.5, 2.0, ys) * np.where(rng.random(ys) < 0.5, -1.0, 1.0)
    w = rng.standard_normal(np.broadcast_shapes(xs, ys))

    def f(a, b):
        return np.sum(np.sin(a / b) * w)

    tx, ty = (torch.tensor(v, requires_grad=True) for v in (x, y))
    (torch.sin(tx / ty) * torch.tensor(w)).sum().backward()
    for grads in (tg.grad(f, argnums=(0, 1))(x, y), tg.jit(tg.grad(f, argnums=(0, 1)))(x, y)):
        np.testing.assert_allclose(grads[0], tx.grad.numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(grads[1], ty.grad.numpy(), rtol=1e-13, atol=1e-15)


def test_div_gradient_at_zero_inf_and_nan_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.array([1.0, 0.0, np.inf, np.nan, -2.0, 1.0])
    y = np.array([0.0, 0.0, 2.0, 1.0, np.inf, -0.0])

    tx, ty = (torch.tensor(v, requires_grad=True) for v in (x, y))
    (tx / ty).sum().backward()
    for grad in (tg.grad(lambda a, b: np.sum(a / b), argnums=(0, 1)),
                 tg.jit(tg.grad(lambda a, b: np.sum(a / b), argnums=(0, 1)))):
        gx, gy = grad(x, y)
        np.testing.assert_array_equal(gx, tx.grad.numpy())
        np.testing.assert_array_equal(gy, ty.grad.numpy())


def test_div_forward_mode_is_linear_in_the_tangent():
    # jvp comes from the VJPs: the divisor's tangent -(t/y) * ans, against finite differences
    x, y = np.array([0.3, -1.2]), np.array([1.5, 0.7])
    tx, ty = np.array([0.2, 1.0]), np.array([-0.4, 0.3])
    _, out = tg.jvp(lambda a, b: a / b, (x, y), (tx, ty))
    eps = 1e-6
    fd = ((x + eps * tx) / (y + eps * ty) - (x - eps * tx) / (y - eps * ty)) / (2 * eps)
    np.testing.assert_allclose(out, fd, rtol=1e-8)


_FLOAT_OPS = {
    "x + c": lambda x, c: x + c, "c + x": lambda x, c: c + x, "x - c": lambda x, c: x - c,
    "c - x": lambda x, c: c - x, "x * c": lambda x, c: x * c, "c * x": lambda x, c: c * x,
    "x / c": lambda x, c: x / c, "c / x": lambda x, c: c / x, "x ** c": lambda x, c: x ** c,
    "c ** x": lambda x, c: c ** x, "-x": lambda x, c: -x, "x * x": lambda x, c: x * x,
    "x / x": lambda x, c: x / x, "x - x": lambda x, c: x - x,
}


@pytest.mark.parametrize("c", [2.5, 1.0, 0.0, -0.0, np.inf, np.nan, 0, 1, 3, -2])
@pytest.mark.parametrize("op", sorted(_FLOAT_OPS))
@pytest.mark.parametrize("x", [np.array(1.5), np.array([0.5, -2.0, 0.0]), np.array([1, 3])])
def test_tracer_operators_with_floats_record_numpys_values(op, c, x):
    # the operators' direct recording (no dispatch) against NumPy, on the recorded tape and
    # the optimised one; a float that is the operation's unit records nothing on floats
    f = _FLOAT_OPS[op]
    with np.errstate(all="ignore"):
        try:
            expected = f(x, c)
        except ValueError:          # integers to negative integer powers: as NumPy
            with pytest.raises(ValueError):
                tg.make_tape(lambda v: f(v, c))(x)
            return
    for optimized in (False, True):
        tape = tg.make_tape(lambda v: f(v, c), optimized=optimized)(x)
        with np.errstate(all="ignore"):
            got = tape.run(x)
        np.testing.assert_array_equal(got, expected)
        assert np.asarray(got).dtype == expected.dtype
    recorded = tg.make_tape(lambda v: f(v, c), optimized=False)(x)
    units = {"x + c": 0, "c + x": 0, "x - c": 0, "x * c": 1, "c * x": 1, "x / c": 1, "x ** c": 1}
    if units.get(op) == c and x.dtype.kind == "f":
        assert recorded.instrs == []


def test_tracer_operators_across_nested_traces():
    # a tracer of the outer trace meets one of an inner trace (grad of grad): recorded on the
    # inner one, as bind decides
    def f(x):
        return tg.grad(lambda y: np.sum(np.sin(y * x) / (y + x * 2.0)))(x * 3.0)
    x = np.array([0.7, 1.3])
    eps = 1e-6
    fd = [(np.sum(f(x + eps * e)) - np.sum(f(x - eps * e))) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(tg.grad(lambda v: np.sum(f(v)))(x), fd, rtol=1e-6)
    np.testing.assert_allclose(tg.jit(tg.grad(lambda v: np.sum(f(v))))(x), fd, rtol=1e-6)


def test_complex_values_still_refused_by_jit():
    with pytest.raises(TypeError, match="complex"):
        tg.jit(lambda x: np.sum(np.real(x * (1.0 + 2.0j))))(np.ones(2))


def test_negated_cotangents_sum_with_subs():
    # y's cotangents -(g_i / y * ans_i) from three quotients: summed as t1 + t2 + t3 under one
    # neg (a neg each, and adds, before)
    def f(x, y):
        return np.exp(x[0] / y) + np.sin(x[1] / y) + x[2] / y

    x, y = np.array([0.3, -1.1, 2.0]), 1.7
    tape = tg.make_tape(tg.grad(f, argnums=1))(x, y)
    assert _prims(tape).count("neg") == 1
    torch = pytest.importorskip("torch")
    tx, ty = torch.tensor(x), torch.tensor(y, dtype=torch.float64, requires_grad=True)
    (torch.exp(tx[0] / ty) + torch.sin(tx[1] / ty) + tx[2] / ty).backward()
    for grad in (tg.grad(f, argnums=1), tg.jit(tg.grad(f, argnums=1))):
        np.testing.assert_allclose(grad(x, y), ty.grad.item(), rtol=1e-14)


# ---- optimize: the four passes fused into one walk forward and one back

def _passes_one_by_one(tape):
    from tapegrad.tape import (eliminate_common_subexpressions, eliminate_dead_code,
                               fold_constants, simplify)
    return eliminate_dead_code(eliminate_common_subexpressions(simplify(fold_constants(tape))))


def _loop_energies():
    """The loops benchmark's element loops (reads; writes then reads) and slices with a branch."""
    from benchmarks.workloads.element_loop import diff_energy, fd_energy

    def slices(x):
        y = x * 1.0
        if np.sum(y) > 0:
            y = y ** 2
        return np.sum(x[1:] * x[:-1]) + np.sum(y[:2] ** 1) + np.sum(x * np.full(x.shape, 3.0))
    return diff_energy, fd_energy, slices


def test_optimize_gives_the_tapes_of_the_passes_one_by_one():
    from samples import SAMPLES
    from tape_faces import weighted
    from tapegrad.tape import format_tape, optimize, tree_flatten
    tapes = []
    for sample in SAMPLES[::3]:
        f, values, _ = weighted(sample)
        grad = tg.value_and_grad(f, argnums=tuple(range(len(values))))
        tapes.append((tg.make_tape(grad, optimized=False)(*values), values))
    x = np.linspace(0.2, 1.7, 7)
    for f in _loop_energies():
        for g in (tg.value_and_grad(f), tg.grad(lambda x, f=f: np.sum(tg.grad(f)(x) ** 2))):
            tapes.append((tg.make_tape(g, optimized=False)(x), (x,)))
    for tape, values in tapes:
        fused = optimize(tape)
        assert format_tape(fused) == format_tape(_passes_one_by_one(tape))
        expected, got = (tree_flatten(out, lambda v: True)[0]
                         for out in (tape.run(*values), fused.run(*values)))
        for r, e in zip(got, expected):
            np.testing.assert_allclose(r, e, rtol=1e-13)


def test_optimize_keeps_a_scatter_add_that_common_subexpressions_share():
    # two equal scatter-adds into zeros, each added to something: CSE makes the second the first,
    # so the first has two readers and must stay (merging it into one add would lose the other)
    from tapegrad import primitives as P
    from tapegrad.tape import Tape, optimize
    tape = Tape()
    a, b, c = (tape.add_input((3,), np.float64) for _ in range(3))
    v = tape.add_input((), np.float64)
    zeros = tape.add_const(np.zeros(3))
    f64 = np.dtype(np.float64)
    first = tape.add_instr(P.index_add, (zeros, v), {"index": (1,)}, (3,), f64)
    second = tape.add_instr(P.index_add, (zeros, v), {"index": (1,)}, (3,), f64)
    s1 = tape.add_instr(P.add, (b, second), {}, (3,), f64)
    s0 = tape.add_instr(P.add, (a, first), {}, (3,), f64)
    s2 = tape.add_instr(P.mul, (c, second), {}, (3,), f64)
    tape.outputs = [s0, s1, s2]
    tape.out_tree = (tuple, ("*", "*", "*"))
    args = (np.arange(3.0), np.ones(3), np.full(3, 2.0), 5.0)
    expected = tape.run(*args)
    for got, e in zip(optimize(tape).run(*args), expected):
        np.testing.assert_array_equal(got, e)
    for got, e in zip(_passes_one_by_one(tape).run(*args), expected):
        np.testing.assert_array_equal(got, e)



@pytest.mark.parametrize("other", [2.5, -0.0, 1, 1.0, -3, "tracer"])
@pytest.mark.parametrize("op", [operator.iadd, operator.isub, operator.imul, operator.itruediv,
                                operator.ipow], ids=lambda op: op.__name__)
def test_inplace_operators_on_0d_tracers_match_numpy(op, other):
    def f(x):
        return op(x[0] * 1.5, x[1] if other == "tracer" else other)
    x = np.array([0.7, 1.3])
    with np.errstate(all="ignore"):
        expected = f(x)
        value, grad = tg.make_tape(tg.value_and_grad(f))(x).run(x)
    np.testing.assert_array_equal(value, expected)
    if np.isfinite(expected):
        eps = 1e-7
        fd = [(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(2)]
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_an_element_loop_records_without_generic_dispatch(monkeypatch):
    # s += (x[i+1] - x[i]) ** 2 is recorded by the tracer's own operators, never through
    # Primitive.__call__'s dispatch (bind), which cost a third of the trace
    from tapegrad.core import Primitive

    def refuse(self, *args, **params):
        raise AssertionError(f"{self.name} went through Primitive.__call__")

    f = _loop_energies()[0]
    x = np.linspace(-1.0, 1.0, 6) ** 3
    monkeypatch.setattr(Primitive, "__call__", refuse)
    tape = tg.make_tape(f)(x)
    monkeypatch.undo()
    assert tape.run(x) == pytest.approx(f(x), rel=1e-15)
    d = np.diff(x)
    value, grad = tg.jit(tg.value_and_grad(f))(x)
    np.testing.assert_allclose(grad, 2 * np.pad(d, (1, 0)) - 2 * np.pad(d, (0, 1)), rtol=1e-14)


_EDGE_FLOATS = [0.0, -0.0, 1.5, -2.75, 1e-310, -5e-324, 1e308, -1.7976931348623157e308, np.inf,
                -np.inf, np.nan, 3.0, 0.1]


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv],
                         ids=lambda op: op.__name__)
def test_float64_scalar_arithmetic_records_numpys_bits(op):
    # 0-d float64 tracers compute + - * / with Python floats while tracing: bit for bit NumPy's
    # values (signed zeros, infinities, subnormals, overflow, x / 0), with numbers of either side
    # (but x + 0 and x - 0, which are x itself, as the tracer's identities decide)
    xs = np.array(_EDGE_FLOATS)
    pairs = [(a, b) for a in xs for b in xs]
    numbers = [2, -7, 2 ** 60, 1.0, 0.5, np.inf] + ([0, -0.0] if op in (operator.mul,
                                                                      operator.truediv) else [])

    def f(v):
        out = [op(v[i], v[j]) for i in range(len(xs)) for j in range(len(xs))]
        out += [op(v[i], c) for i in range(len(xs)) for c in numbers]
        out += [op(c, v[i]) for i in range(len(xs)) for c in numbers]
        return out

    with np.errstate(all="ignore"):
        expected = [op(a, b) for a, b in pairs]
        expected += [op(a, np.float64(c) if type(c) is float else c) for a in xs for c in numbers]
        expected += [op(np.float64(c) if type(c) is float else c, a) for a in xs for c in numbers]
        traced = [t.value for t in _traced_values(f, xs)]
    for got, want in zip(traced, expected):
        assert np.asarray(got).dtype == np.float64
        assert np.asarray(got).tobytes() == np.asarray(want, dtype=np.float64).tobytes() or \
            np.isnan(got) and np.isnan(want)


def _traced_values(f, x):
    from tapegrad.trace import TraceContext
    with TraceContext() as ctx:
        return f(ctx.new_input(x))


def test_negated_cotangents_pass_through_linear_rules_unrecorded():
    # a cotangent -t reaching mul, exp, log, ... (here: e0 only in the softmax's sum, and the
    # 2.0 * x[1] of a difference) gives -(rule of t): subs downstream, no neg recorded
    def f(x):
        e = [np.exp(x[0]), np.exp(x[1]), np.exp(np.tanh(x[2]))]
        s = sum(e)
        d = x[0] - 2.0 * np.sqrt(x[1]) + np.log(x[2])
        return e[1] / s + e[2] / s + d * d
    x = np.array([0.3, 1.2, 0.8])
    tape = tg.make_tape(tg.grad(f))(x)
    assert "neg" not in _prims(tape)
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, requires_grad=True)
    e = [torch.exp(t[0]), torch.exp(t[1]), torch.exp(torch.tanh(t[2]))]
    s = e[0] + e[1] + e[2]
    d = t[0] - 2.0 * torch.sqrt(t[1]) + torch.log(t[2])
    (e[1] / s + e[2] / s + d * d).backward()
    for grad in (tg.grad(f), tg.jit(tg.grad(f))):
        np.testing.assert_allclose(grad(x), t.grad.numpy(), rtol=1e-14)


def test_numpy_scalar_constants_get_one_slot_per_value():
    # fd_energy's e += y * y + 0.5 * x[i] ** 4: the pow rule multiplies by np.float64(0.5) at
    # every element; one constant slot serves them all. A value of another type or sign of
    # zero is another constant.
    f = _loop_energies()[1]
    x = np.random.default_rng(1).uniform(-1.0, 1.0, 40)
    tape = tg.make_tape(tg.value_and_grad(f), optimized=False)(x)
    assert len(tape.consts) < 12
    from benchmarks.workloads.element_loop import fd_energy_grad
    value, grad = tape.run(x)
    np.testing.assert_allclose(grad, fd_energy_grad(x)[1], rtol=1e-13)

    def g(v):
        return [v * np.float64(0.0), v * np.float64(-0.0), v * np.float32(0.5), v * np.float64(0.5),
                v * np.float64(0.5)]
    tape = tg.make_tape(g, optimized=False)(np.float64(3.0))
    assert len(tape.consts) == 4
    got = tape.run(np.float64(-3.0))
    for r, e in zip(got, g(np.float64(-3.0))):
        assert np.asarray(r).tobytes() == np.asarray(e).tobytes()


def _seed_cases():
    # float64 terms of every linear rule, with int, float32 and constant operands beside them
    x32 = np.float32(1.5)
    return [
        lambda x: sum((x[i + 1] - x[i]) ** 2 for i in range(len(x) - 1)),
        lambda x: sum(x[i] * x[i - 1] / (1.5 + x[i]) for i in range(1, len(x))),
        lambda x: sum(x[i] * x[i] + 0.5 * x[i] ** 4 for i in range(len(x))),
        lambda x: sum(np.exp(x[i]) + np.sqrt(np.abs(x[i])) + np.tanh(x[i]) * 3 for i in range(4)),
        lambda x: sum(x[i] ** x[i + 1] for i in range(3)) + x[0] / 0.0,
        lambda x: sum(x[i].astype(np.float32) * x32 for i in range(3)) + x[1] * x32,
        lambda x: np.sum(x * x) / np.array(3.0) + 2 ** x[2],
    ]


@pytest.mark.parametrize("case", range(7))
def test_seed_of_scalar_output_reaches_rules_without_numpy_dispatch(case, monkeypatch):
    # the seed 1 of a float64 scalar output, and NumPy float64 cotangents (the 0.5 of 0.5 * t),
    # reach rules as Python floats (no ndarray * tracer through NumPy's __array_ufunc__); the
    # gradient's bits and dtype are those of the NumPy cotangents
    from tapegrad import trace
    from tapegrad.trace import Tracer
    f = _seed_cases()[case]
    x = np.array([0.7, -1.3, 2.1, 0.4, 1.9])
    with monkeypatch.context() as m:
        m.setattr(trace, "_F64_SCALAR", type("Never", (), {}))
        seeded = tg.make_tape(lambda x: tg.vjp(f, x)[1](np.ones(()))[0], optimized=False)(x)
    expected = seeded.run(x)
    calls = []
    ufunc = Tracer.__array_ufunc__
    monkeypatch.setattr(Tracer, "__array_ufunc__",
                        lambda *a, **k: calls.append(a[1]) or ufunc(*a, **k))
    tape = tg.make_tape(tg.grad(f), optimized=False)(x)
    if case < 3:
        assert calls == []
    got = tape.run(x)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.view(np.int64), expected.view(np.int64))


@pytest.mark.parametrize("shapes", [((), ()), ((3,), (3,)), ((2, 3), (3,)), ((3,), ())])
def test_div_adjoint_records_g_over_y_once(shapes, monkeypatch):
    # both cotangents of x / y from one g / y as recorded, not two that CSE merges later; the
    # rest of the sweep (the divisor's unrecorded negation included) as with the rules one by one
    from tapegrad import primitives as P
    from tapegrad import trace
    from tapegrad.core import defvjp
    rng = np.random.default_rng(len(shapes[0]) + len(shapes[1]))
    x, y = rng.standard_normal(shapes[0]), rng.uniform(0.5, 2.0, shapes[1])

    def f(x, y):
        return np.sum(np.exp(x) / y + x / (y * y))
    g = tg.grad(f, argnums=(0, 1))
    negations = []
    with monkeypatch.context() as m:     # and no neg recorded to be dropped (_unneg)
        neg = trace.Tracer.__neg__
        m.setattr(trace.Tracer, "__neg__", lambda t: negations.append(t) or neg(t))
        joint = tg.make_tape(g, optimized=False)(x, y)
    assert len(negations) == _prims(joint).count("neg")
    with monkeypatch.context() as m:
        m.setattr(trace, "_JOINT_VJPS", {})
        separate = tg.make_tape(g, optimized=False)(x, y)
    # two divisions differentiated: one g / y less each
    assert _prims(joint).count("div") == _prims(separate).count("div") - 2
    assert [n for n in _prims(joint) if n != "div"] == [n for n in _prims(separate) if n != "div"]
    for a, b in zip(joint.run(x, y), separate.run(x, y)):
        np.testing.assert_array_equal(a, b)
    # a rule replaced by defvjp is obeyed (the joint rule was written for the old ones)
    rules = P.div.vjp_rules
    try:
        defvjp(P.div, rules[0], lambda g, ans, x, y: -(g * ans / y))
        replaced = tg.make_tape(g, optimized=False)(x, y)
        assert _prims(replaced).count("div") == _prims(separate).count("div")
    finally:
        P.div.vjp_rules = rules


@pytest.mark.parametrize("ufunc", [np.exp, np.log, np.sin, np.tanh, np.sqrt, np.negative,
                                   np.absolute, np.isnan, np.floor, np.logical_not, np.cbrt])
def test_unary_ufuncs_record_at_once(ufunc, monkeypatch):
    # np.exp(t) is appended by __array_ufunc__ itself (not bind -> record): the same instruction,
    # value bits and dtype as the primitive's; a view (_View) keeps its path
    from tapegrad import trace
    x = np.array([0.25, 2.0, -0.0, 7.5, np.nan, np.inf])

    def f(x):
        return ufunc(x * 1.5), ufunc(x[1] * 0.5), ufunc(x[::2]), ufunc(x, casting="same_kind")
    prim = trace._UNARY_UFUNCS[ufunc][0]
    through_record = []
    record = trace.TraceContext.record
    monkeypatch.setattr(trace.TraceContext, "record", lambda ctx, p, args, params: (
        through_record.append(p is prim), record(ctx, p, args, params))[1])
    tape = tg.make_tape(f, optimized=False)(x)
    monkeypatch.undo()
    assert through_record.count(True) == 1      # the view's (a _View keeps its path)
    assert _prims(tape).count(prim.name) == 4
    with np.errstate(all="ignore"):
        expected = f(x)
    for got, want in zip(tape.run(x), expected):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
