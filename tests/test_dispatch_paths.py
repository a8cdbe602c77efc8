"""Every superinstruction and fast path of the compiled CPU tapes against the reference interpreter.

The interpreter folds a scalar instruction read by one other into its reader (tapegrad_jit.cpu's
SUPERINSTRUCTIONS), and a jitted function remembers its last signature so that a call builds no
key and slices nothing (tapegrad.transforms._fast_call, cpu.Program.call_arrays). Each is checked
here: the op really is in the lowered code, its results equal the unfused ops' bit for bit (same
operations in the same order) and the reference interpreter's (Tape.run, NumPy's functions: to
rounding, as libm's exp and NumPy's differ in the last bit), on ordinary values, signed zeros,
infinities and NaN.
"""
import numpy as np
import pytest

import tapegrad as tg
from tapegrad.core import REGISTRY

pytest.importorskip("numba")
from tapegrad_jit import cpu  # noqa: E402

SPECIAL = [0.0, -0.0, 1.0, -2.5, 0.3, 1e-300, 7e300, np.inf, -np.inf, np.nan]


def _grid(n_args, seed=0):
    """Argument tuples: every special value in every position, and random ones."""
    rng = np.random.default_rng(seed)
    rows = [tuple(rng.standard_normal(n_args) * 3) for _ in range(20)]
    for k in range(n_args):
        for value in SPECIAL:
            row = list(rng.standard_normal(n_args))
            row[k] = value
            rows.append(tuple(row))
    return rows


def _assert_same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    # bit for bit, NaNs in the same places (payloads aside)
    assert np.array_equal(got, want, equal_nan=True), (got, want)


def _assert_reference(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, equal_nan=True)


@pytest.fixture
def unfused(monkeypatch):
    """Programs lowered without superinstructions (each instruction its own op)."""
    def lower(tape):
        with monkeypatch.context() as patch:
            patch.setattr(cpu, "_PAIRS", {})
            return cpu.Program(tape)
    return lower


def _compiled(f, args):
    tape = tg.make_tape(f)(*args)
    return tape, cpu.Program(tape)


def _ops(program):
    names = {code: name for name, code in cpu.OPCODE.items()}
    return [names[int(op)] for op in program.code[:, cpu.OP]]


def _pair_function(outer, position, inner):
    """f(a, b, c) computing outer with inner's result at `position`, operands in form order."""
    n_inner = cpu._arity(REGISTRY[inner].scalar)
    n_outer = cpu._arity(REGISTRY[outer].scalar)

    def f(a, b, c):
        inputs = iter((a, b, c))
        produced = REGISTRY[inner](*[next(inputs) for _ in range(n_inner)])
        args = [produced if k == position else next(inputs) for k in range(n_outer)]
        return REGISTRY[outer](*args)
    return f


def _pairs():
    for outer, position, inner in cpu.SUPERINSTRUCTIONS:
        name = f"{outer}{position}_{inner}"
        if name not in cpu.SUPERINSTRUCTION_FORMS:
            continue
        for at in ((0, 1) if outer in cpu.COMMUTATIVE else (position,)):
            yield pytest.param(outer, at, inner, name, id=f"{outer}{at}_{inner}")


def test_every_superinstruction_has_a_form_and_a_test():
    assert set(cpu.SUPERINSTRUCTION_FORMS) == {f"{o}{p}_{i}" for o, p, i in cpu.SUPERINSTRUCTIONS}
    assert all(cpu.OPCODE[name] >= cpu.FIRST_SUPERINSTRUCTION for name in cpu.SUPERINSTRUCTION_FORMS)


@pytest.mark.parametrize("outer, position, inner, name", _pairs())
def test_superinstruction_matches_reference(outer, position, inner, name, unfused):
    f = _pair_function(outer, position, inner)
    tape, program = _compiled(f, (0.5, 0.25, 2.0))
    assert _ops(program) == [name], tape            # the pair became the one op
    plain = unfused(tape)
    assert _ops(plain) == [inner, outer]
    with np.errstate(all="ignore"):
        for args in _grid(3):
            inputs = [np.float64(a) for a in args]
            ok, got = program(inputs)
            assert ok
            _assert_same(got, plain(inputs)[1])
            _assert_reference(got, tape.run(*args))


@pytest.mark.parametrize("outer, position, inner, name", _pairs())
def test_superinstruction_under_jit_of_grad(outer, position, inner, name, unfused):
    """The pair inside a gradient tape (where most pairs come from), against the reference."""
    f = _pair_function(outer, position, inner)
    g = tg.value_and_grad(lambda a, b, c: f(a, b, c) * f(c, a, b), argnums=(0, 1, 2))
    jitted = tg.jit(g)
    with np.errstate(all="ignore"):
        for args in _grid(3, seed=1)[:25]:
            tape = jitted.tape(*args)
            want, plain = tape.run(*args), unfused(tape)([np.float64(a) for a in args])[1]
            jitted(*args)
            value, grads = jitted(*args)
            _assert_same(value, plain[0])
            _assert_reference(value, want[0])
            for got, unfolded, expected in zip(grads, plain[1], want[1]):
                _assert_same(got, unfolded)
                _assert_reference(got, expected)


def test_a_fused_op_is_never_folded_again():
    # mul(neg(a), b) is one op; the add reading it must not take it in too (it would read the
    # negation, which is never stored)
    def f(a, b, c):
        return -a * b + c
    tape, program = _compiled(f, (1.5, 2.0, 0.25))
    assert _ops(program) == ["mul0_neg", "add"]
    ok, got = program([np.float64(1.5), np.float64(2.0), np.float64(0.25)])
    assert got == -2.75


def test_chains_fold_one_producer_per_op():
    def f(a, b, c):
        return ((a + b) + c) + (a * c)          # add0_add, then add0_mul of the mul
    tape, program = _compiled(f, (1.0, 2.0, 3.0))
    assert sorted(_ops(program)) == ["add0_add", "add0_mul"]
    for args in _grid(3, seed=2)[:20]:
        _assert_reference(program([np.float64(a) for a in args])[1], tape.run(*args))


@pytest.mark.parametrize("dtype, fused", [(np.float64, True), (np.float32, True),
                                          (np.int64, False), (np.bool_, False)])
def test_a_producer_reading_a_non_float_is_stored(dtype, fused):
    """Only float producers of float operands are folded (their values all live as float64)."""
    def f(a, b, k):
        return a * k + b                        # mul of k's dtype, then add
    args = (np.float64(1.5), np.float64(2.0), np.array(3, dtype=dtype))
    tape, program = _compiled(f, args)
    assert ("add0_mul" in _ops(program)) == fused
    for k in (0, 1, 3):
        k = np.array(k, dtype=dtype)
        _assert_reference(program([args[0], args[1], k])[1], tape.run(args[0], args[1], k))


@pytest.mark.parametrize("kind", ["two readers", "output", "guard"])
def test_a_producer_with_another_use_is_stored(kind):
    def f(a, b, c):
        t = a * b
        if kind == "two readers":
            return t + c, t
        if kind == "output":
            return (t + c, t)
        return t + c if t > 0 else t - c        # the guard reads t
    tape, program = _compiled(f, (1.0, 2.0, 3.0))
    assert "mul" in _ops(program)
    for args in [(1.0, 2.0, 3.0), (2.0, 0.5, -1.0)]:
        ok, got = program([np.float64(a) for a in args])
        assert ok
        for g, w in zip(got, tape.run(*args)) if kind != "guard" else [(got, tape.run(*args))]:
            _assert_reference(g, w)
    if kind == "guard":
        assert program([np.float64(-1.0), np.float64(2.0), np.float64(3.0)]) == (False, None)


def _random_program(seed, n_ops=300, width=12):
    """A scalar function of a random mix of ops, wide sums and long chains."""
    rng = np.random.default_rng(seed)
    kinds = ["exp", "softplus", "tanh", "sin", "cos", "mul", "add", "sub", "div", "sum", "square",
             "sqrt", "softmax", "neg", "abs"]
    program = [(rng.choice(kinds), rng.integers(1, width, size=5)) for _ in range(n_ops)]

    def f(x):
        v = [x[i] for i in range(width)]
        for op, back in program:
            a, b = v[-back[0]], v[-back[1]]
            r = {"exp": lambda: np.exp(0.1 * a), "softplus": lambda: np.log(1.0 + np.exp(a)),
                 "tanh": lambda: np.tanh(a), "sin": lambda: np.sin(a) * b,
                 "cos": lambda: np.cos(a) * b, "mul": lambda: a * b, "add": lambda: a + b,
                 "sub": lambda: a - b * 0.5, "div": lambda: a / (1.0 + b * b),
                 "sum": lambda: sum(v[-i] for i in back), "square": lambda: a * a,
                 "sqrt": lambda: np.sqrt(a * a + 1.0), "neg": lambda: -a * b + 0.5,
                 "abs": lambda: np.abs(a) + b,
                 "softmax": lambda: np.exp(a) / (np.exp(a) + np.exp(b) + 1.0)}[op]()
            v.append(np.tanh(r))          # keeps values bounded along long chains
        return v[-1] + 0.5 * v[-2]
    return f, rng.standard_normal(width)


@pytest.mark.parametrize("seed", range(6))
def test_random_op_mixes_match_reference(seed, unfused):
    f, x = _random_program(seed)
    jitted = tg.jit(tg.value_and_grad(f))
    tape = jitted.tape(x)
    program, plain = cpu.Program(tape), unfused(tape)
    assert any(op in cpu.SUPERINSTRUCTION_FORMS for op in _ops(program))
    assert len(program.code) < len(plain.code)       # pairs became single ops
    for k in range(3):
        x_k = x * (1 + 0.3 * k)
        want, unfolded = tape.run(x_k), plain([x_k])[1]
        jitted(x_k)
        value, grad = jitted(x_k)
        _assert_same(value, unfolded[0])
        _assert_same(grad, unfolded[1])
        _assert_reference(value, want[0])
        np.testing.assert_allclose(grad, want[1], rtol=1e-11, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# The per-call fast path of jit
# ---------------------------------------------------------------------------------------------

def test_fast_path_reads_new_values_and_returns_fresh_arrays():
    f = tg.jit(tg.value_and_grad(lambda x: np.sum(np.sin(x) * x)))
    x = np.linspace(-1, 1, 5)
    first = f(x)
    second = f(x)
    assert f._fast is not None
    assert second[1] is not first[1] and not np.shares_memory(second[1], first[1])
    second[1][:] = 99.0                              # the caller owns its results
    x[2] = 3.0                                      # an in-place change is read by the next call
    value, grad = f(x)
    _assert_same(grad, np.cos(x) * x + np.sin(x))
    assert np.isclose(value, np.sum(np.sin(x) * x))
    assert f.traces == 1


def test_fast_path_falls_back_on_another_signature_or_layout():
    f = tg.jit(lambda x: x * 2.0 + 1.0)
    x = np.arange(6.0)
    f(x)
    f(x)
    cases = [np.arange(7.0), np.arange(6, dtype=np.float32), np.arange(12.0)[::2],
             np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.arange(6.0).reshape(2, 3).T,
             2.5, np.float64(1.5), np.array(4.0)]
    for value in cases:
        for _ in range(2):
            got = f(value)
            want = np.asarray(value) * 2.0 + 1.0
            assert np.shape(got) == np.shape(want)
            np.testing.assert_array_equal(got, want.astype(np.asarray(got).dtype))
    assert np.asarray(f(np.arange(6, dtype=np.float32))).dtype == np.float32
    np.testing.assert_array_equal(f(x), x * 2.0 + 1.0)


def test_fast_path_with_float_arguments_and_static_ones():
    f = tg.jit(lambda x, a, n: x * a + n)
    x = np.ones(3)
    for a, n in [(2.0, 1), (2.0, 1), (3.0, 1), (3.0, 2), (3.0, 2)]:
        np.testing.assert_array_equal(f(x, a, n), x * a + n)
    assert f.traces == 2                           # n is static: one tape per value


SCALE = 2.0


def test_fast_path_sees_a_captured_scalar_change():
    global SCALE
    f = tg.jit(lambda x: x * SCALE)
    x = np.ones(2)
    try:
        for scale in (2.0, 2.0, 5.0, 5.0, 2.0):
            SCALE = scale
            np.testing.assert_array_equal(f(x), x * scale)
    finally:
        SCALE = 2.0


class _Config:
    k = 2


CONFIG = _Config()
TABLE = {"gain": 1.0}
FLAG = True
OFFSET = 0.0


def _sine(x):
    return np.sin(x)


def _cosine(x):
    return np.cos(x)


HELPER = _sine


def test_fast_path_checks_every_kind_of_captured_scalar():
    global FLAG, OFFSET, HELPER

    def f(x):
        y = x * CONFIG.k * TABLE["gain"] + OFFSET + HELPER(x)
        return y if FLAG else -y
    jitted = tg.jit(f)
    x = np.array([0.5, 1.5])
    try:
        changes = [lambda: None, lambda: setattr(CONFIG, "k", 3), lambda: TABLE.update(gain=0.5),
                   lambda: globals().update(FLAG=False), lambda: globals().update(OFFSET=-0.0),
                   lambda: globals().update(OFFSET=1.25), lambda: globals().update(HELPER=_cosine),
                   lambda: setattr(CONFIG, "k", True)]
        for change in changes:
            change()
            for _ in range(2):                      # the second call takes the fast path
                np.testing.assert_array_equal(jitted(x), f(x))
    finally:
        CONFIG.k, TABLE["gain"], FLAG, OFFSET, HELPER = 2, 1.0, True, 0.0, _sine


def test_fast_path_guard_failure_takes_the_other_path():
    def f(x):
        return x * 2.0 if x[0] > 0 else x - 1.0
    jitted = tg.jit(f)
    for sign in [1, 1, -1, -1, 1, -1, 1]:
        x = np.array([sign * 1.5, 2.0])
        np.testing.assert_array_equal(jitted(x), f(x))
    assert jitted.traces == 2


def test_fast_path_is_not_taken_inside_a_trace():
    inner = tg.jit(lambda x: np.sum(x * x))
    x = np.array([1.0, 2.0])
    inner(x)
    inner(x)                                        # the fast path is set
    grad = tg.grad(lambda y: inner(y) * 3.0)(x)
    np.testing.assert_array_equal(grad, 6.0 * x)
    grad = tg.jit(tg.grad(lambda y: inner(y) * 3.0))
    grad(x)
    np.testing.assert_array_equal(grad(x), 6.0 * x)


def test_empty_tape_returns_copies_of_its_inputs():
    f = tg.jit(lambda x, y, z: (x, (y, z)))
    x, y, z = np.ones(3), np.zeros((2, 2), np.float32), np.array(True)
    f(x, y, z)
    a, (b, c) = f(x, y, z)
    assert b.dtype == np.float32 and c.dtype == np.bool_ and c.shape == ()
    assert not np.shares_memory(a, x)
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, y)


@pytest.mark.parametrize("make", [
    lambda x: {"s": np.sum(x), "v": [x * 2.0, None, (x[0],)]},
    lambda x: [np.sum(x)],
    lambda x: (),
    lambda x: x[0] > 0.5,
    lambda x: (x * 2.0).astype(np.float32),
], ids=["dict", "list", "empty", "bool", "float32"])
def test_result_trees_of_the_fast_path(make):
    jitted = tg.jit(make)
    x = np.array([0.75, -2.0, 3.0])
    jitted(x)
    got, want = jitted(x), make(x)
    got_leaves, got_tree = tg.tape.tree_flatten(got, lambda v: True)
    want_leaves, want_tree = tg.tape.tree_flatten(want, lambda v: True)
    assert got_tree == want_tree
    for g, w in zip(got_leaves, want_leaves):
        _assert_same(g, np.asarray(w))


def test_threads_each_get_their_own_results():
    # each thread has its own buffer and views: results computed at once on 4 threads, a new
    # input on every call, equal those computed one after another
    from concurrent.futures import ThreadPoolExecutor
    f = tg.jit(tg.value_and_grad(lambda x: np.sum(np.exp(x) * x)))
    inputs = list(np.random.default_rng(0).standard_normal((400, 4)))
    f(inputs[0])                                    # traced: NumPy's values, not the compiled
    serial = [f(x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(f, inputs))
    for (value, grad), (want_value, want_grad) in zip(parallel, serial):
        _assert_same(value, want_value)
        _assert_same(grad, want_grad)


def test_fast_path_of_generated_array_code():
    # large arrays: the tape runs as generated code (fused.FusedProgram), through the same path
    def rosenbrock(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    f = tg.jit(tg.value_and_grad(rosenbrock))
    x = np.random.default_rng(0).uniform(-2, 2, 5000)
    f(x)
    held = f(x)[1]
    assert f._fast is not None and not isinstance(next(iter(f._fast_calls)), cpu.Program)
    for k in range(3):
        x[k] += 0.5                                  # read again on every call
        value, grad = f(x)
        a, b = x[1:] - x[:-1] ** 2, 1.0 - x[:-1]
        want = np.zeros_like(x)
        want[:-1] = -400.0 * a * x[:-1] - 2.0 * b
        want[1:] += 200.0 * a
        np.testing.assert_allclose(grad, want, rtol=1e-12, atol=1e-9)
        assert np.isclose(value, np.sum(100.0 * a ** 2 + b ** 2), rtol=1e-13)
        assert not np.shares_memory(grad, held)


# ---------------------------------------------------------------------------------------------
# Memory planning (cpu._plan): the vectorised free list against a plain one
# ---------------------------------------------------------------------------------------------

def _free_list_events(rng, n_bufs):
    """Events (buffer, freed?) in order: each buffer allocated once, most freed later."""
    events = []
    for buf in rng.permutation(n_bufs):
        at = rng.integers(0, len(events) + 1)
        events.insert(at, (buf, False))
        if rng.random() < 0.9:
            events.insert(rng.integers(at + 1, len(events) + 1), (buf, True))
    return events


def _plain_free_lists(events, sizes):
    """(reused, fresh) by a last-in-first-out list of freed buffers per size."""
    stacks, reused, fresh = {}, list(range(len(sizes))), []
    for buf, freed in events:
        stack = stacks.setdefault(sizes[buf], [])
        if freed:
            stack.append(buf)
        elif stack:
            reused[buf] = stack.pop()
        fresh.append(not freed and reused[buf] == buf)
    return reused, fresh


@pytest.mark.parametrize("seed", range(40))
def test_last_freed_reuse_matches_a_free_list(seed):
    rng = np.random.default_rng(seed)
    n_bufs = int(rng.integers(1, 60))
    events = _free_list_events(rng, n_bufs)
    bufs = np.array([b for b, _ in events])
    frees = np.array([f for _, f in events])
    reused = np.arange(n_bufs)
    fresh = cpu._reuse_last_freed(bufs, frees, reused)
    assert (reused.tolist(), fresh.tolist()) == _plain_free_lists(events, [1] * n_bufs)
    sizes = rng.integers(1, 4, size=n_bufs).tolist()
    reused = np.arange(n_bufs)
    fresh = cpu._reuse_by_size(bufs.tolist(), frees.tolist(), sizes, reused)
    assert (reused.tolist(), fresh) == _plain_free_lists(events, sizes)


def _energy(x):
    e = 0.0
    for i in range(1, x.shape[0] - 1):
        e = e + (x[i + 1] - 2 * x[i] + x[i - 1]) ** 2 + np.sin(x[i]) * x[:3].sum()
    return e + (x[::2] * x[1::2]).sum() + np.exp(x[:4]).prod()


@pytest.mark.parametrize("case", ["scalar", "arrays"])
def test_plan_by_one_key_equals_plan_by_lexsort(case, monkeypatch):
    f, x = (_random_program(3) if case == "scalar" else (_energy, np.linspace(0.1, 1.0, 12)))
    tape = tg.jit(tg.value_and_grad(f)).tape(x)
    program = cpu.Program(tape)
    monkeypatch.setattr(cpu, "_KEY_LIMIT", 0)
    by_lexsort = cpu.Program(tape)
    assert np.array_equal(program.code, by_lexsort.code)
    assert np.array_equal(program.v0, by_lexsort.v0)
    assert program.outputs == by_lexsort.outputs
    _assert_same(program([x])[1][1], by_lexsort([x])[1][1])
    np.testing.assert_allclose(program([x])[1][1], tape.run(x)[1], rtol=1e-12, atol=1e-14)


def test_a_value_past_int32_is_unsupported_not_wrapped(monkeypatch):
    f = lambda x: (x[np.array([2, 0, 1])] * x).sum()    # noqa: E731 (a gather: an index map)
    x = np.array([0.5, 1.5, -2.0])
    tape = tg.make_tape(f)(x)
    monkeypatch.setattr(cpu._Lowering, "index_map", lambda self, indices: 2 ** 31)
    with pytest.raises(cpu.UnsupportedPrimitive, match="int32"):
        cpu.Program(tape)
    with pytest.warns(RuntimeWarning, match="int32"):
        program = cpu.compile(tape)
    assert isinstance(program, cpu.ReferenceProgram)
    np.testing.assert_allclose(program([x])[1], f(x))
