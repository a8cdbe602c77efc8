"""Eager scalar (0-d) graphs: the grad-mode and anomaly switches read on every op, in any thread,
and the scalar graph's gradients against PyTorch."""
import threading
import warnings

import numpy as np
import pytest

import tapegrad as tg
from tapegrad.autograd import anomaly, grad_mode, graph


def _in_fresh_thread(fn):
    out = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


def test_switch_defaults_are_class_attributes():
    # a thread that never switched a mode reads the class default: no AttributeError raised and
    # swallowed by getattr(local, name, default) on every eager op and backward
    assert type(grad_mode._state).__dict__["enabled"] is True
    assert type(anomaly._state).__dict__["enabled"] is False


def test_fresh_thread_records_and_reads_defaults():
    def work():
        x = tg.tensor(0.5, dtype=tg.float64, requires_grad=True)
        y = tg.exp(x) * x
        y.backward()
        return (tg.is_grad_enabled(), anomaly.anomaly_enabled(), type(y.grad_fn).__name__,
                float(x.grad))
    enabled, anomalous, name, grad = _in_fresh_thread(work)
    assert enabled and not anomalous and name == "MulBackward0"
    assert grad == pytest.approx(np.exp(0.5) * 1.5, rel=1e-15)


def test_modes_stay_per_thread():
    with tg.no_grad(), tg.autograd.detect_anomaly():
        seen = _in_fresh_thread(lambda: (tg.is_grad_enabled(), anomaly.anomaly_enabled()))
        assert not tg.is_grad_enabled() and anomaly.anomaly_enabled()
    assert seen == (True, False)
    with tg.no_grad():
        y = tg.tensor(1.0, requires_grad=True) * 2
    assert y.grad_fn is None and tg.is_grad_enabled()
    tg.set_grad_enabled(False)
    try:
        assert _in_fresh_thread(tg.is_grad_enabled) and not tg.is_grad_enabled()
    finally:
        tg.set_grad_enabled(True)


def _scalar_graph(mod, x, n_ops):
    """The benchmark's op mix on 0-d tensors: softplus, sum, product, softmax."""
    v = [x[i] for i in range(x.shape[0])]
    for k in range(n_ops):
        n = len(v)
        op = k % 4
        if op == 0:
            v.append(mod.log(1.0 + mod.exp(v[n - 10])))
        elif op == 1:
            v.append(sum([v[i] for i in range(n - 30, n - 10, 5)]))
        elif op == 2:
            v.append(v[n - 20] * v[n - 10])
        else:
            e = [mod.exp(v[i]) for i in range(n - 4, n)]
            s = sum(e)
            v.extend([ei / s for ei in e])
    return v[-1]


@pytest.mark.parametrize("n_ops", [1, 7, 40, 100])
def test_scalar_graph_matches_torch(n_ops):
    torch = pytest.importorskip("torch")
    x0 = np.random.default_rng(n_ops).standard_normal(40)
    x0[3] = np.nan if n_ops == 7 else x0[3]
    out = {}
    for mod in (tg, torch):
        x = mod.tensor(x0, requires_grad=True)
        y = _scalar_graph(mod, x, n_ops)
        y.backward()
        out[mod.__name__] = (y.detach().numpy(), x.grad.numpy(), type(y.grad_fn).__name__)
    (ty, tgr, tname), (py, pgr, pname) = out["tapegrad"], out["torch"]
    assert tname == pname
    np.testing.assert_allclose(ty, py, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(tgr, pgr, rtol=1e-10, atol=1e-300, equal_nan=True)


# ---------------------------------------------------------------- views as operands, quiet ops

def test_view_operands_follow_their_roots_history_like_torch():
    # an op reading a view reads its history once per op (caught up with the root's): after an
    # in-place write to the root the view's grad_fn and gradients are PyTorch's
    torch = pytest.importorskip("torch")
    grads, names = [], []
    for mod in (tg, torch):
        x = mod.tensor([0.5, -1.5, 2.0], dtype=mod.float64, requires_grad=True)
        y = x * 1.0
        v, w = y[0], y[2]
        y.mul_(3.0)
        z = v * w + v.exp()
        names.append([type(t.grad_fn).__name__ for t in (v, w, z)])
        z.backward()
        grads.append(x.grad.detach().numpy() if mod is tg else x.grad.numpy())
    assert names[0] == names[1]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-15)


def test_view_of_a_leaf_made_under_no_grad_keeps_no_history():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    with tg.no_grad():
        v = x[1]
    assert not v.requires_grad and (v * 2).grad_fn is None
    u = x[1]
    assert type((u * 2).grad_fn.next_functions[0][0]).__name__ == "SelectBackward0"


def test_quiet_ops_switch_numpy_errors_off_only_inside_and_restore_them():
    before = np.geterr()
    x = tg.tensor([1000.0, 0.0], dtype=tg.float64, requires_grad=True)
    with np.errstate(all="raise"):
        e, lg, d = tg.exp(x), tg.log(x), x / 0.0  # overflow, log(0), division by zero: IEEE
        assert np.geterr()["over"] == "raise"  # the state switched back after each op
        with pytest.raises(RuntimeError, match="must match the size"):
            tg.tensor([1.0, 2.0]) / tg.tensor([1.0, 2.0, 3.0])  # a failing quiet op
        assert np.geterr()["divide"] == "raise"
    assert np.geterr() == before
    assert e.tolist()[0] == float("inf") and lg.tolist()[1] == float("-inf")
    assert d.tolist()[0] == float("inf") and np.isnan(d.tolist()[1])


# ---------------------------------------------------------------- objects the collector walks

def _tracked_per_op(op, n=300):
    import gc
    x = tg.tensor(1.0, dtype=tg.float64, requires_grad=True)
    y = x * 1.0
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(n):
        y = op(y, x)
    gc.collect()  # (tuples of numbers, such as input versions, leave the collector's lists here)
    per_op = (len(gc.get_objects()) - before) / n
    y.backward()
    return per_op, float(x.grad)


@pytest.mark.parametrize("op, grad", [(lambda y, x: y + x, 301.0),
                                      (lambda y, x: y * x, 1.0 * 301)])
def test_graph_nodes_leave_four_objects_to_the_collector(op, grad):
    # the Tensor, its node, the operand tuple and the next nodes; the version counter is a dict
    # of ints (never walked), input versions a tuple of ints (dropped at the first collection)
    per_op, x_grad = _tracked_per_op(op)
    assert per_op <= 4.05
    assert x_grad == grad


def test_version_counters_shared_by_views_and_bumped_by_writes_as_torch():
    torch = pytest.importorskip("torch")
    seen = []
    for mod in (tg, torch):
        x = mod.tensor([1.0, 2.0, 3.0], dtype=mod.float64, requires_grad=True)
        y = x * 2.0
        v = y[1]
        trail = [y._version, v._version]
        y.add_(1.0)
        trail += [y._version, v._version]
        v.mul_(3.0)
        y[0] = 5.0
        trail += [y._version, v._version, type(y._version).__name__]
        seen.append(trail)
        z = y * y  # reads y: a write to y now fails in backward
        y.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            z.sum().backward()
    assert seen[0] == seen[1]


# ---------------------------------------------------------------- torch.exp(t) and friends

_UNARY = ["exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu"]


@pytest.mark.parametrize("name", _UNARY)
def test_unary_functions_match_methods_and_torch(name):
    torch = pytest.importorskip("torch")
    data = np.array([0.3, 1.7, 0.05])
    results = []
    for mod, how in ((tg, "function"), (tg, "method"), (torch, "function")):
        x = mod.tensor(data, requires_grad=True)
        v = x[1]  # a view operand too
        fn = getattr(mod, name) if how == "function" else (lambda t: getattr(t, name)())
        y, yv = fn(x * 1.0), fn(v)
        (y.sum() + yv).backward()
        results.append((y.detach().numpy(), float(yv.detach()), type(y.grad_fn).__name__,
                        type(yv.grad_fn).__name__, x.grad.numpy() if mod is torch
                        else x.grad.detach().numpy()))
    for other in results[1:]:
        np.testing.assert_allclose(results[0][0], other[0], rtol=1e-14)
        assert results[0][1] == pytest.approx(other[1], rel=1e-14)
        assert results[0][2:4] == other[2:4]
        np.testing.assert_allclose(results[0][4], other[4], rtol=1e-14)


def test_unary_functions_other_inputs_take_the_general_path():
    p = tg.nn.Parameter(tg.tensor([0.5, 2.0]))
    assert type(tg.exp(p).grad_fn).__name__ == "ExpBackward0"
    assert float(tg.log(tg.tensor(np.e, dtype=tg.float64))) == pytest.approx(1.0)
    assert tg.exp(0.0).item() == 1.0  # a Python number becomes a tensor first
    out = tg.empty(2)
    assert tg.sqrt(tg.tensor([4.0, 9.0]), out=out) is out and out.tolist() == [2.0, 3.0]
    with pytest.raises(TypeError):
        tg.exp(tg.tensor([1.0]), 2)
    with tg.no_grad():
        assert tg.tanh(tg.tensor([1.0], requires_grad=True)).grad_fn is None


def test_views_of_views_replay_their_steps_after_a_write_like_torch():
    torch = pytest.importorskip("torch")
    seen = []
    for mod in (tg, torch):
        x = mod.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
        y = x * 1.0
        row = y[1]
        cell = row[2]
        y.mul_(2.0)  # the root changes: both views' histories catch up when read
        cell.add_(10.0)  # a write through a view of a view reaches the root
        z = cell * row[0]
        w = (y * 1.0).sum() + z
        w.backward()
        seen.append((type(cell.grad_fn).__name__, type(row.grad_fn).__name__,
                     float(z.detach()), y.detach().numpy().tolist(),
                     (x.grad.numpy() if mod is torch else x.grad.detach().numpy()).tolist()))
    assert seen[0] == seen[1]


# ---------------------------------------------------------------- 0-d backward as NumPy scalars

_SCALAR_OPS = {
    "mul": lambda m, a, b: a * b, "div": lambda m, a, b: a / b, "sub": lambda m, a, b: a - b,
    "pow": lambda m, a, b: a ** b, "rpow": lambda m, a, b: 2.0 ** a,
    "exp_log": lambda m, a, b: m.log(m.exp(a) + b * b), "tanh": lambda m, a, b: m.tanh(a * b),
    "sigmoid": lambda m, a, b: m.sigmoid(a) * m.sqrt(b), "where": lambda m, a, b: m.where(
        a > b, a * b, a - b), "max": lambda m, a, b: m.maximum(a, b) * m.minimum(a, b * 0.5),
    "abs_neg": lambda m, a, b: -(a - b).abs(), "clamp": lambda m, a, b: (a * b).clamp(0.0, 1.0),
    "softmax": lambda m, a, b: m.stack([a, b]).softmax(0)[1] * a,
}


@pytest.mark.parametrize("name", sorted(_SCALAR_OPS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_scalar_backward_matches_the_rules_on_tensors_and_torch(name, dtype):
    torch = pytest.importorskip("torch")
    op = _SCALAR_OPS[name]
    rtol = 1e-6 if dtype == "float32" else 1e-14
    values = [(0.7, 1.3), (1.9, 0.4), (0.0, 2.0)]
    for va, vb in values:
        ours = []
        for graph in ("numeric", "rules"):  # backward() vs create_graph (rules on Tensors)
            a = tg.tensor(va, dtype=getattr(tg, dtype), requires_grad=True)
            b = tg.tensor(vb, dtype=getattr(tg, dtype), requires_grad=True)
            y = op(tg, a, b)
            if graph == "numeric":
                y.backward()
                grads = [a.grad, b.grad]
            else:
                grads = tg.autograd.grad(y, [a, b], create_graph=True, allow_unused=True)
            ours.append([None if g is None else g.detach().numpy() for g in grads])
            assert all(g is None or g.dtype == np.dtype(dtype) and g.shape == ()
                       for g in ours[-1])
        ta = torch.tensor(va, dtype=getattr(torch, dtype), requires_grad=True)
        tb = torch.tensor(vb, dtype=getattr(torch, dtype), requires_grad=True)
        op(torch, ta, tb).backward()
        theirs = [None if t.grad is None else t.grad.numpy() for t in (ta, tb)]
        for got in ours:
            for g, t in zip(got, theirs):
                if t is None or g is None:  # torch leaves an unused input's grad None
                    assert g is None or float(g) == 0.0 or t is None
                else:
                    np.testing.assert_allclose(g, t, rtol=rtol, atol=1e-300)


def test_scalar_backward_hooks_see_tensors_and_leave_leaves_arrays():
    x = tg.tensor(2.0, dtype=tg.float64, requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append((type(g).__name__, g.shape, g.dtype)) or g * 3)
    y = (x + 1.0) * x
    y.retain_grad()
    y.backward()
    assert seen == [("Tensor", (), tg.float64)]
    assert float(x.grad) == 3 * (2 * 2.0 + 1.0)
    assert type(x.grad._data) is np.ndarray and type(y.grad._data) is np.ndarray


def test_grad_fn_names_read_per_call_where_they_depend_on_arguments_as_torch():
    # _bind caches what it reads of a primitive; names chosen by the arguments are still chosen
    # per call (pow by exponent, reductions by dim), and non-differentiable ops record nothing
    torch = pytest.importorskip("torch")
    names = []
    for mod in (tg, torch):
        x = mod.tensor([1.5, 2.0], requires_grad=True)
        e = mod.tensor([2.0, 3.0], requires_grad=True)
        outs = [x ** 2, x ** e, 2.0 ** x, x.mean(), x.mean(0), x.sum(), x.sum(0), x ** 2,
                x.mean()]
        names.append([type(o.grad_fn).__name__ for o in outs])
        assert (x > 1.0).grad_fn is None and (x == x).requires_grad is False
        assert x.argmax().grad_fn is None
    assert names[0] == names[1]


# ---------------------------------------------------------------------------------------------
# Python numbers in eager add/sub/mul/div pass to NumPy as cached 0-d arrays of the tensor's dtype
# (graph.weak_scalar): values, dtypes, warnings and gradients stay those of NumPy's own weak cast
# (NEP 50) and of PyTorch, bit for bit.

NUMBERS = [2, 3, -7, 0, 1, 0.1, -2.5, 1 / 3, 0.0, -0.0, 1e-30, 65504, 70000, 2 ** 24 + 1,
           2 ** 53, 2 ** 53 + 1, 2 ** 60, 1e300, -1e300, float("inf"), float("nan"), True, False]
DTYPES = ["float16", "float32", "float64"]
OPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide}
SYMBOL = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "div": lambda a, b: a / b}


def _values(dtype, shape=(3, 4)):
    rng = np.random.default_rng(0)
    x = np.asarray((rng.standard_normal(shape) * 3).astype(dtype))
    x.flat[:4] = [0.0, -0.0, 1.5, -2.0]
    return x


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.signbit(a), np.signbit(b))  # -0.0 stays -0.0


def _numpy_result(op, x, number, reflected):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = OPS[op](number, x) if reflected else OPS[op](x, number)
    return out, [str(w.message) for w in caught]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("reflected", [False, True])
def test_values_dtypes_and_warnings_are_numpys(op, dtype, reflected):
    for shape in [(3, 4), ()]:
        x = _values(dtype, shape)
        for number in NUMBERS:
            if isinstance(number, bool):
                continue  # a bool operand follows PyTorch's rules (tested below)
            expected, expected_warnings = _numpy_result(op, x, number, reflected)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                t = tg.tensor(x)
                out = SYMBOL[op](number, t) if reflected else SYMBOL[op](t, number)
            if op == "div":  # eager division runs with NumPy's warnings off (PyTorch's IEEE)
                expected_warnings = []
            _same(out._data, np.asarray(expected))
            assert sorted(str(w.message) for w in caught) == sorted(expected_warnings), number


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_negative_zero_after_zero_was_cached():
    x = tg.tensor([1.0, -2.0, 0.0], dtype=tg.float32)
    for number in [0, 0.0, -0.0, 0, -0.0]:
        for op in OPS:
            _same(SYMBOL[op](x, number)._data, np.asarray(OPS[op](x._data, number)))
            _same(SYMBOL[op](number, x)._data, np.asarray(OPS[op](number, x._data)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grads_match_torch(dtype):
    real_torch = pytest.importorskip("torch")
    x0 = _values(dtype)
    for number in [3, -0.5, 0.1, 2 ** 53 + 1, 1e300, -0.0]:
        for op in OPS:
            for reflected in (False, True):
                if reflected and op == "div":
                    x0 = np.where(x0 == 0, np.asarray(1, dtype), x0)
                x = tg.tensor(x0, requires_grad=True)
                r = real_torch.tensor(x0, requires_grad=True)
                out = SYMBOL[op](number, x) if reflected else SYMBOL[op](x, number)
                ref = SYMBOL[op](number, r) if reflected else SYMBOL[op](r, number)
                gout = np.linspace(-1, 1, x0.size).reshape(x0.shape).astype(dtype)
                out.backward(tg.tensor(gout))
                ref.backward(real_torch.tensor(gout))
                assert repr(out.dtype) == repr(ref.dtype)
                np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(),
                                           rtol=1e-6 if dtype == "float32" else 1e-14)
                np.testing.assert_allclose(x.grad.numpy(), r.grad.numpy(),
                                           rtol=1e-6 if dtype == "float32" else 1e-14)
                assert x.grad.dtype == x.dtype
                if not (reflected and op == "div"):  # torch: 2 / x is reciprocal then mul
                    assert out.grad_fn.name() == ref.grad_fn.name()


def test_backward_of_number_operand_is_numpys_weak_cast():
    # g * 3 and g / 3 in the rules: with the cached 0-d array, bit for bit NumPy's g * 3
    x0 = _values("float32")
    g = np.linspace(-1, 1, x0.size).reshape(x0.shape).astype(np.float32) / np.float32(7)
    for number in [3, 0.1, 1 / 3, -2.5]:
        for op, rule in [("mul", lambda: g * number), ("div", lambda: g / number)]:
            x = tg.tensor(x0, requires_grad=True)
            SYMBOL[op](x, number).backward(tg.tensor(g))
            _same(x.grad._data, rule())
    x = tg.tensor(x0, requires_grad=True)
    (x * 3).backward(tg.tensor(g), create_graph=True)  # create_graph: Tensors, same values
    _same(x.grad._data, g * 3)


def test_weak_scalar_contract():
    f32 = np.dtype(np.float32)
    two = graph.weak_scalar(f32, 2)
    assert two.dtype == f32 and two.shape == () and two == 2 and not two.flags.writeable
    assert graph.weak_scalar(f32, 2.0) is two  # one cached array per number
    assert graph.weak_scalar(f32, 0.1) == np.float32(0.1)
    for refused in [-0.0, float("nan"), float("inf"), 1e300, 2 ** 53 + 1, True, 1j]:
        assert graph.weak_scalar(f32, refused) is None, refused
    for other in [np.dtype(np.int64), np.dtype(bool), np.dtype(">f4"), np.dtype(np.complex64)]:
        assert graph.weak_scalar(other, 2) is None
    assert graph.weak_scalar(np.dtype(np.float16), 70000) is None  # beyond float16's range
    table = graph._weak_cache[np.dtype(np.float64)]
    for k in range(2 * graph._WEAK_CACHE_SIZE):  # the cache stays bounded
        graph.weak_scalar(np.dtype(np.float64), 1000.5 + k)
    assert len(table) <= graph._WEAK_CACHE_SIZE


def test_integer_and_bool_tensors_keep_their_promotions():
    real_torch = pytest.importorskip("torch")
    for data, number in [([1, 2, 3], 2), ([1, 2, 3], 2.5), ([True, False], 1), ([True, False], 0.5)]:
        for op in OPS:
            if op == "sub" and isinstance(data[0], bool):
                continue  # refused by both, with PyTorch's message (tested elsewhere)
            t, r = tg.tensor(data), real_torch.tensor(data)
            for a, b in [(t, number), (number, t)]:
                ra, rb = (r, number) if a is t else (number, r)
                out, ref = SYMBOL[op](a, b), SYMBOL[op](ra, rb)
                assert repr(out.dtype) == repr(ref.dtype)
                np.testing.assert_allclose(out.numpy().astype(float), ref.numpy().astype(float))


# add/sub/mul/div have numeric backward rules of their own (graph._NUMERIC_VJPS): the registry
# rules' values, dtypes and types (NumPy scalars on 0-d nodes), broadcasting and numbers included
_BINARY_CASES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (3,)), ((2, 3), ()),
                 ((), ()), ((3, 4), "n"), ("n", (3, 4)), ((), "n"), ("n", ())]


def _binary_backward(op, case, dtype, numeric):
    rng = np.random.default_rng(1)
    saved = dict(graph._NUMERIC_VJPS)
    if not numeric:
        graph._NUMERIC_VJPS.pop(op)
    try:
        leaves, operands = [], []
        for shape in case:
            if shape == "n":
                operands.append(-1.75)
            else:
                t = tg.tensor(np.asarray(rng.uniform(0.5, 2, shape).astype(dtype)),
                              requires_grad=True)
                leaves.append(t)
                operands.append(t)
        out = SYMBOL[op](*operands)
        w = tg.tensor(np.asarray(rng.standard_normal(out.shape).astype(dtype)))
        g = w._data if out.ndim else w._data[()]
        seen = [ct for ct in out.grad_fn.input_grads(g, False) if ct is not None]
        # a second consumer makes the engine sum cotangents arriving at the leaves
        (out * w).sum().backward() if out.ndim else (out * w + out).backward()
        return [x.grad._data for x in leaves], seen
    finally:
        graph._NUMERIC_VJPS.clear()
        graph._NUMERIC_VJPS.update(saved)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_numeric_binary_backward_is_the_registry_rules(op, dtype):
    for case in _BINARY_CASES:
        fast, fast_seen = _binary_backward(op, case, dtype, True)
        rule, rule_seen = _binary_backward(op, case, dtype, False)
        assert len(fast) == len(rule) and fast_seen and rule_seen
        for a, b in zip(fast + fast_seen, rule + rule_seen):
            assert type(a) is type(b)
            _same(a, b)


def test_numeric_binary_backward_cotangent_types_on_0d_nodes():
    # a 0-d node hands NumPy scalars on (as the generic rule path does), an n-d node arrays
    x = tg.tensor(1.5, dtype=tg.float64, requires_grad=True)
    y = tg.tensor([1.5, 2.0], dtype=tg.float32, requires_grad=True)
    for out, g in [(x * 3, np.array(2.0)), (y * 3, np.ones(2, np.float32))]:
        for name in ("mul", "add", "sub", "div"):
            node = SYMBOL[name](out, 3).grad_fn
            cts = graph._NUMERIC_VJPS[name](node, g if out.ndim else g[()])
            assert cts[1] is None
            assert type(cts[0]) is (np.ndarray if out.ndim else np.float64)


def test_engine_order_on_chains_and_diamonds_matches_torch():
    # the engine runs a chain's next link without its heap: every node must still run after all
    # the nodes that send it gradient (random DAGs of chains, fan-outs and joins)
    real_torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for trial in range(30):
        plan = [(int(rng.integers(0, 3)), int(rng.integers(0, 10 ** 6)), int(rng.integers(0, 10 ** 6)))
                for _ in range(12)]
        grads = []
        for mod in (tg, real_torch):
            x = mod.tensor([0.3, -0.7], dtype=mod.float64, requires_grad=True)
            values, order = [x], []
            for kind, i, j in plan:
                a, b = values[i % len(values)], values[j % len(values)]
                values.append(a * 1.1 + 0.5 if kind == 0 else a * b if kind == 1 else a.tanh() - b)
            for k, v in enumerate(values[1:]):
                v.register_hook(lambda g, k=k: order.append(k))
            values[-1].sum().backward() if trial % 2 else (values[-1] + values[-3]).sum().backward()
            grads.append((x.grad.detach().numpy().copy(), order))
        np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-13, atol=1e-300)
        order = grads[0][1]
        assert sorted(order) == sorted(grads[1][1])
        for k, (kind, i, j) in enumerate(plan):  # value k + 1 sends gradient to its operands
            for used in {i % (k + 1), j % (k + 1)} if kind else {i % (k + 1)}:
                if used and k in order:
                    assert order.index(k) < order.index(used - 1), (plan, order)
