"""The adjoint sweep's templates (trace._recorder: the registry's VJP rules traced once on 0-d
float64 placeholders, replayed per instruction) against the rules they come from: the same tape,
slot for slot, and the same bits when it runs."""
import numpy as np
import pytest

import tapegrad as tg
from tapegrad import primitives as P
from tapegrad import trace
from tapegrad.core import REGISTRY, bind, defvjp

from samples import SAMPLES


def _scalar_cases():
    """(id, prim, args, differentiated positions) of the table's elementwise samples of float64
    arrays and Python numbers, each array cut to its first element (0-d)."""
    cases, seen = [], set()
    for s in SAMPLES:
        prim = REGISTRY[s.prim]
        if prim.kind != "elementwise" or s.params or not all(
                isinstance(a, np.ndarray) and a.dtype == np.float64 or type(a) in (float, int)
                for a in s.args):
            continue
        args = tuple(np.asarray(a).ravel()[0] if isinstance(a, np.ndarray) else a
                     for a in s.args)
        key = (s.prim, tuple(type(a).__name__ for a in s.args))
        if key not in seen:
            seen.add(key)
            cases.append((f"{s.prim}-{'-'.join(key[1])}", prim, args, s.argnums))
    return cases


_CASES = _scalar_cases()


def _signature(tape):
    return ([(i.prim.name, i.ins, i.out, i.phase, sorted(i.params)) for i in tape.instrs],
            tape.shapes, [d.str for d in tape.dtypes],
            {k: (type(v).__name__, repr(v)) for k, v in tape.consts.items()}, tape.outputs)


def _both(f, *args, monkeypatch):
    """The gradient tape of f recorded with templates and by the rules alone."""
    tapes = []
    for on in (True, False):
        monkeypatch.setattr(trace, "_TEMPLATE_ON", on)
        tapes.append(tg.make_tape(tg.grad(f, argnums=tuple(range(len(args)))),
                                  optimized=False)(*args))
    return tapes


def _assert_same(f, args, monkeypatch):
    templated, ruled = _both(f, *args, monkeypatch=monkeypatch)
    assert _signature(templated) == _signature(ruled)
    for got, want in zip(templated.run(*args), ruled.run(*args)):
        assert np.asarray(got).dtype == np.asarray(want).dtype
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


# how the primitive's cotangent arrives: a tracer, a negated one (the sweep's unrecorded -t),
# and sums of several
_WRAPPERS = {
    "times": lambda y: np.sin(y) * y,
    "negated": lambda y: 2.0 - np.exp(y * 0.5),
    "quotient": lambda y: y / (1.5 + y * y) - np.tanh(y),
}


@pytest.mark.parametrize("wrap", sorted(_WRAPPERS))
@pytest.mark.parametrize("case", _CASES, ids=[c[0] for c in _CASES])
def test_templates_record_the_rules_tape_for_every_scalar_sample(case, wrap, monkeypatch):
    _, prim, args, at = case
    wrapper = _WRAPPERS[wrap]

    def f(*xs):
        full = list(args)
        for k, x in zip(at, xs):
            full[k] = x
        return wrapper(bind(prim, full, {}))
    _assert_same(f, [np.float64(args[k]) for k in at], monkeypatch)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("values", [(0.0, 2.0), (-0.0, 3.0), (2.0, 0.0), (1.0, -0.0),
                                    (np.inf, 2.0), (np.nan, 1.5), (-np.inf, np.inf)])
def test_templates_keep_ieee_specials_and_zero_divisors(values, monkeypatch):
    # a zero divisor divides by NumPy (Python's float division raises), -0.0, inf and NaN keep
    # NumPy's bits
    def f(x, y):
        q = x / y
        return np.log(np.exp(q) + 1.0) * y - np.sqrt(q * q) / (y - 1.0) + x * 0.0
    _assert_same(f, [np.float64(v) for v in values], monkeypatch)


@pytest.mark.parametrize("c", [0.0, 1.0, -0.0, 2.5, 3, np.float64(2.0)])
def test_constant_operands_of_every_kind_keep_the_rules_tape(c, monkeypatch):
    # the unit constants (whose rule products record nothing), ints and NumPy scalars go the
    # rule path; other Python floats the templates of that constant's position
    def f(x):
        return x * c + c / (x * x + 2.0) - np.exp(c - x) + (x + c) * x
    _assert_same(f, [np.float64(0.7)], monkeypatch)


def test_mixed_dtypes_and_arrays_keep_the_rules_tape(monkeypatch):
    def f(x, v):
        y = x.astype(np.float32) * np.float32(1.5)
        return np.sum(v * x) + np.exp(x) * y + (x * 2.0).astype(np.float32)
    _assert_same(f, [np.float64(0.3), np.array([1.0, 2.0, 3.0])], monkeypatch)


def test_a_scalar_graph_records_each_rule_once_not_per_instruction(monkeypatch):
    # the templates trace the registry's rules (a changed rule is traced again) instead of
    # calling them once per instruction
    calls = []
    exp_rule, = P.exp.vjp_rules
    mul_rules = P.mul.vjp_rules

    def counted(g, ans, x):
        calls.append(1)
        return exp_rule(g, ans, x) * 2.0    # a changed rule: twice the gradient

    def f(x):
        for _ in range(40):
            x = np.exp(x * 0.01) * x
        return x
    x = np.float64(0.4)
    expected = tg.grad(f)(x)
    try:
        defvjp(P.exp, counted)
        value = tg.grad(f)(x)
        taped = tg.make_tape(tg.grad(f), optimized=False)(x).run(x)
    finally:
        defvjp(P.exp, exp_rule)
    assert P.mul.vjp_rules is mul_rules
    assert len(calls) < 40          # the template's tracing, not one call per exp
    # the changed rule is the one applied: each exp's cotangent doubled
    monkeypatch.setattr(trace, "_TEMPLATE_ON", False)
    try:
        defvjp(P.exp, counted)
        ruled = tg.grad(f)(x)
    finally:
        defvjp(P.exp, exp_rule)
    assert value.tobytes() == ruled.tobytes() == np.asarray(taped).tobytes()
    assert value != expected
    assert tg.grad(f)(x).tobytes() == expected.tobytes()


def test_value_dependent_rules_keep_the_rule_path(monkeypatch):
    # a rule whose instructions depend on its operands' values gives no template
    prim = P.sin
    rule, = prim.vjp_rules

    def branching(g, ans, x):
        return g * P.cos(x) if x._value > 0 else g * P.cos(x) * 1.0 - g * 0.0

    def f(x):
        return np.sin(np.sin(x) - 0.5) * 3.0
    try:
        defvjp(prim, branching)
        assert trace._recorder(prim, 0, ()) is None
        _assert_same(f, [np.float64(0.3)], monkeypatch)
    finally:
        defvjp(prim, rule)


def test_second_derivatives_differentiate_the_templates_tape(monkeypatch):
    # the inner sweep's templated instructions are tracers an outer sweep differentiates
    def f(x, y):
        return np.exp(x * y) / (1.5 + np.tanh(x)) - np.log1p(y * y) * x

    def second(x, y):
        return tg.grad(lambda u: tg.grad(f)(u, y))(x) + tg.grad(f, argnums=1)(x, y) * y
    _assert_same(second, [np.float64(0.4), np.float64(-1.2)], monkeypatch)
    value = tg.grad(second)(np.float64(0.4), np.float64(-1.2))
    eps = 1e-6
    numeric = (second(np.float64(0.4 + eps), np.float64(-1.2)) -
               second(np.float64(0.4 - eps), np.float64(-1.2))) / (2 * eps)
    np.testing.assert_allclose(value, numeric, rtol=1e-6)


def test_guards_name_the_users_line_from_a_table_kept_per_working_directory(tmp_path,
                                                                             monkeypatch):
    # a guard per comparison (Python's max over tracers) works its user line out once per
    # line, code and working directory: shown relative to the working directory it is under
    import importlib.util
    import os
    source = ("import numpy as np\n\ndef f(x):\n"
              "    return max(x[0], x[1]) * x[2] + max(x[1], x[2])\n")
    (tmp_path / "guarded_graph.py").write_text(source)
    spec = importlib.util.spec_from_file_location("guarded_graph", tmp_path / "guarded_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []
    relpath = os.path.relpath
    monkeypatch.setattr(os.path, "relpath", lambda *a: calls.append(a) or relpath(*a))
    monkeypatch.chdir(tmp_path)
    x = np.array([0.5, -1.0, 2.0])

    def g(x):
        return sum(module.f(x * k) for k in (1.0, -1.0, 2.0, 0.5))
    tape = tg.make_tape(g)(x)
    expected = "guarded_graph.py:4: return max(x[0], x[1]) * x[2] + max(x[1], x[2])"
    assert [guard.where for guard in tape.guards] == [expected] * 8
    assert len(calls) == 1
    monkeypatch.chdir(tmp_path.parent)
    tape = tg.make_tape(g)(x)
    assert {guard.where for guard in tape.guards} == {
        os.path.join(tmp_path.name, "guarded_graph.py") + expected[len("guarded_graph.py"):]}
