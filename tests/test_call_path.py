"""What a jitted call leaves behind for the collector, and the per-call path's argument kinds
(issue 14)."""
import enum
import gc
import weakref

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import transforms
from tapegrad.tape import Instr, tree_flatten
from tapegrad_jit import cpu
from tests.test_fast_call_inline import _python_calls


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


# ---- the fast path's argument kinds: each served in one frame, each change of signature missed

def _same(got, want):
    got_leaves, got_tree = tree_flatten(got, lambda leaf: True)
    want_leaves, want_tree = tree_flatten(want, lambda leaf: True)
    assert got_tree == want_tree
    for g, w in zip(got_leaves, want_leaves):
        assert type(g) is np.ndarray and g.dtype == np.asarray(w).dtype
        np.testing.assert_allclose(g, w, rtol=1e-13)


def _scaled(x, n):
    return x * n


def _affine(p, x):
    return p[0] * x + p[1]


def _layer(p, x):
    return {"y": np.tanh(p["w"] * x + p["b"]), "n": p["n"] * x}


class Mode(enum.Enum):
    DOUBLE = 2
    TRIPLE = 3


def _moded(x, mode, flag):
    return x * mode.value if flag else x - mode.value


def _flat(x):
    flat = x.reshape(-1)                # a view or a copy, by the layout
    return flat * 2.0 + flat[::-1]


X = np.linspace(-1.0, 1.0, 4).reshape(2, 2)
Y = np.arange(4.0).reshape(2, 2) + 0.5
B = np.arange(12.0).reshape(3, 4)

KINDS = {
    "static int": (_scaled, (X, 3), [(X + 1, 3), (X, 4), (X, True), (X, 3.0), (X[:1], 3)]),
    "NumPy float": (_scaled, (X, np.float64(2.5)),
                    [(Y, np.float64(-1.0)), (X, np.float32(2.5)), (X, 2.5), (X, np.array(2.5))]),
    "NumPy bool": (_scaled, (X, np.bool_(True)), [(X, np.bool_(False)), (X, True)]),
    "tuple": (_affine, ((X, Y), X), [((Y, X), Y), ([X, Y], X), ((X, Y, X), X),
                                      ((X[:1], Y[:1]), X[:1]), ((X.T, Y), X), ((X, 2.0), X)]),
    "list": (_affine, ([X, 1.5], Y), [([Y, -0.5], X), ([Y, 2], X), ((Y, 1.5), X)]),
    "dict": (_layer, ({"w": X, "b": Y, "n": 2}, X),
             [({"w": Y, "b": X, "n": 2}, Y), ({"b": Y, "w": X, "n": 2}, X),
              ({"w": X, "b": Y, "n": 3}, X), ({"w": X, "b": Y, "n": 2, "m": None}, X),
              ({"w": X, "b": Y, "n": 2.0}, X)]),
    "strided array": (_flat, (B[:, ::2],), [(B[:, 1::2],), (B[:, ::2].copy(),), (B.T[:3, :2],),
                                           (B[::-1, ::2],), (B[:, ::2].astype(np.float32),)]),
    "enum and bool": (_moded, (X, Mode.DOUBLE, True),
                      [(Y, Mode.DOUBLE, True), (X, Mode.TRIPLE, True), (X, Mode.DOUBLE, False),
                       (X, Mode.DOUBLE, 1)]),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_fast_path_serves_argument_kind_and_misses_every_other_signature(kind):
    fun, args, others = KINDS[kind]
    f = tg.jit(fun)
    _same(f(*args), fun(*args))
    _same(f(*args), fun(*args))
    frames = _python_calls(f, *args)
    assert frames == ["__call__"], frames      # served by the generated check-and-run alone
    for other in others:
        for _ in range(2):
            _same(f(*other), fun(*other))
        _same(f(*args), fun(*args))            # and back: the first signature's program


def test_fast_path_misses_a_list_changed_in_place_and_list_subclasses():
    class Flip(list):
        pass

    f = tg.jit(_affine)
    p = [X, Y]
    for _ in range(3):
        _same(f(p, X), _affine(p, X))
    assert f.traces == 1
    p[1] = Y[:1]                                # the list changed in place: another signature
    _same(f(p, X), _affine(p, X))
    _same(f(Flip([X, Y]), X), _affine([X, Y], X))


def test_size_one_arrays_of_any_strides_take_the_fast_path():
    def f(x, s):
        return x.reshape(-1) * s
    base = np.arange(6.0).reshape(2, 3)
    g = tg.jit(f)
    for x in (base[:1, :1], base[1:, 2:], base[::-1, ::-1][:1, :1], np.ones((1, 1))):
        g(x, 2.0)
        g(x, 2.0)
        assert _python_calls(g, x, 2.0) == ["__call__"]
        np.testing.assert_array_equal(g(x, 2.0), x.reshape(-1) * 2.0)
    assert g.traces == 1


def test_fast_path_results_are_fresh_for_every_argument_kind():
    def f(p, s, n):
        return p["a"], (p["b"][0], s), n * p["b"][1]
    p = {"a": X.copy(), "b": (Y.copy(), X.copy())}
    g = tg.jit(f)
    first = [g(p, np.float64(2.0), 3) for _ in range(3)]
    later = g(p, np.float64(2.0), 3)
    leaves = [leaf for out in first + [later] for leaf in tree_flatten(out, lambda v: True)[0]]
    for i, a in enumerate(leaves):
        for b in leaves[i + 1:] + [p["a"], p["b"][0], p["b"][1]]:
            assert not np.shares_memory(a, b)
    later[0][...] = -7.0
    np.testing.assert_array_equal(g(p, np.float64(2.0), 3)[0], X)
    np.testing.assert_array_equal(first[0][0], X)


def test_guards_of_container_leaves_on_the_fast_path():
    def f(p, x):
        return x * 2.0 if p[0].sum() > 0 else x - p[1]
    g = tg.jit(f)
    for k in range(6):
        p = (X + (1.0 if k % 2 else -5.0), Y + k)
        _same(g(p, Y), f(p, Y))
    assert g.traces == 2


def test_a_pytree_past_the_written_check_limit_keeps_the_slow_path():
    f = tg.jit(lambda xs: sum(xs[:3]) * 2.0)
    small, large = [1.0, 2.0, 3.0, 4.0], [float(k) for k in range(transforms._MAX_TESTS + 1)]
    for xs in (small, small, small):
        assert f(xs) == 12.0
    assert f._fast is not None
    g = tg.jit(lambda xs: sum(xs[:3]) * 2.0)
    for _ in range(3):
        assert g(large) == 6.0
    assert g._fast is None and g.traces == 1


SCALE = 2.0


def _scaled_by_global(x):
    return x * SCALE


def test_signatures_used_in_turn_are_served_by_their_written_checks():
    global SCALE
    f = tg.jit(_scaled_by_global)
    a, b, c = X, np.arange(9.0).reshape(3, 3), np.arange(3.0)
    for _ in range(3):
        for x in (a, b, c):
            np.testing.assert_array_equal(f(x), x * SCALE)
    assert "_split" not in _python_calls(f, a)          # no signature key built
    assert "_split" not in _python_calls(f, b)
    traces = f.traces
    try:
        SCALE = 3.0                                     # captured: every written check misses
        for x in (a, b, c, a):
            np.testing.assert_array_equal(f(x), x * 3.0)
    finally:
        SCALE = 2.0
    for x in (c, b, a):
        np.testing.assert_array_equal(f(x), x * 2.0)
    assert f.traces == traces + 3


def test_guard_paths_used_in_turn():
    def f(x):
        return x * 2.0 if x.sum() > 0 else x - 1.0
    g = tg.jit(f)
    for k in range(8):
        x = X + 5.0 if k % 2 else X - 5.0
        np.testing.assert_array_equal(g(x), f(x))
    assert g.traces == 2
    assert "_split" not in _python_calls(g, X - 5.0)


def test_recent_signatures_inline_inside_a_trace():
    f = tg.jit(lambda x: np.sin(x) * 2.0)
    a, b = X, np.arange(9.0).reshape(3, 3)
    for _ in range(3):
        f(a)
        f(b)
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(f(x)))(a), 2.0 * np.cos(a), rtol=1e-13)
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(f(a) * x))(b[:2, :2]), 2.0 * np.sin(a),
                               rtol=1e-13)


@pytest.mark.parametrize("shape", [(2, 2), (400,)])
def test_a_dropped_jitted_function_frees_its_programs_without_the_collector(shape):
    f = tg.jit(tg.value_and_grad(lambda x: np.sum(np.sin(x) * 2.0)))
    x = np.linspace(0.0, 1.0, int(np.prod(shape))).reshape(shape)
    for _ in range(3):
        f(x)
    assert f._fast is not None                  # its own class holds the fast call
    program = weakref.ref(next(iter(f._signatures.values()))[0])
    gc.disable()
    try:
        del f
        assert program() is None
    finally:
        gc.enable()
