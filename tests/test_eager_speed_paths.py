"""The eager face's fast paths give what the general paths give, and what PyTorch gives.

Fast paths (issue 11): float64 operands skip the weak-type dtype fix; x[i] with an int skips index
normalising; the backward sweep orders nodes by creation number (a heap) instead of a topological
sort; sum/mean over all axes have a numeric backward; quiet NumPy forwards set the error state
directly. Each is checked against the slow path it bypasses and against torch.
"""
import warnings

import numpy as np
import pytest

import tapegrad as tg
from tapegrad.autograd import graph

torch = pytest.importorskip("torch")

DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64),
          "int64": (np.int64, torch.int64)}


def _pair(value, dtype, requires_grad=False):
    np_dtype, torch_dtype = DTYPES[dtype]
    data = np.asarray(value, dtype=np_dtype)
    return (tg.tensor(data, requires_grad=requires_grad),
            torch.tensor(data, dtype=torch_dtype, requires_grad=requires_grad))


# ---------------------------------------------------------------------------------------------
# dtype promotion: the float64 fast path and the weak-type rules it must not bypass
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("a_dtype,a_shape,b_dtype,b_shape", [
    ("float64", (3,), "float64", (3,)), ("float64", (), "float64", (2, 3)),
    ("float32", (3,), "float64", ()), ("float64", (), "float32", (3,)),
    ("float32", (), "float64", ()), ("int64", (3,), "float64", ()),
    ("float64", (2, 1), "int64", (3,)), ("int64", (), "float64", (2,)),
])
@pytest.mark.parametrize("op", ["add", "mul", "truediv", "sub"])
def test_binary_dtype_matches_torch(a_dtype, a_shape, b_dtype, b_shape, op):
    rng = np.random.default_rng(0)
    a, ta = _pair(rng.uniform(1, 2, a_shape), a_dtype)
    b, tb = _pair(rng.uniform(1, 2, b_shape), b_dtype)
    out, expected = getattr(a, f"__{op}__")(b), getattr(ta, f"__{op}__")(tb)
    assert str(out.dtype) == str(expected.dtype)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("scalar", [2, 2.5, True])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_python_scalar_operands_keep_torch_dtype(scalar, dtype):
    a, ta = _pair([1, 2, 3], dtype)
    for out, expected in [(a * scalar, ta * scalar), (scalar + a, scalar + ta),
                          (a / scalar, ta / scalar), (a ** 2, ta ** 2)]:
        assert str(out.dtype) == str(expected.dtype)
        np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)


def test_float64_with_numpy_array_operand_follows_the_slow_path():
    # a NumPy array operand is not a Tensor: the general rule decides (float32 tensor wins)
    a = tg.tensor(np.ones(3, np.float32))
    out = tg.where(a > 0, a, np.zeros(3, np.float64))
    expected = torch.where(torch.ones(3) > 0, torch.ones(3), torch.zeros(3, dtype=torch.float64))
    assert str(out.dtype) == str(expected.dtype)


# ---------------------------------------------------------------------------------------------
# x[i]: the select fast path against the general index path x[(i,)]
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5,), (4, 3), (2, 3, 4)])
@pytest.mark.parametrize("i", [0, 1, -1])
def test_int_index_matches_tuple_index_and_torch(shape, i):
    data = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    x, tx = tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    fast, slow, expected = x[i], x[(i,)], tx[i]
    assert type(fast.grad_fn).__name__ == type(slow.grad_fn).__name__ == "SelectBackward0"
    assert type(fast) is type(slow)  # both views of x
    np.testing.assert_array_equal(fast.detach().numpy(), expected.detach().numpy())
    (fast * 2 + slow * 3).sum().backward()
    (tx[i] * 2 + tx[(i,)] * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_int_index_is_a_view_sharing_writes_and_versions():
    x, tx = tg.arange(6.0).reshape(2, 3), torch.arange(6.0).reshape(2, 3)
    row, trow = x[1], tx[1]
    row.mul_(10)
    trow.mul_(10)
    np.testing.assert_array_equal(x.numpy(), tx.numpy())
    assert x._version == row._version == tx._version == 1
    x[0] += 1
    tx[0] += 1
    np.testing.assert_array_equal(row.numpy(), trow.numpy())


def test_write_through_int_index_view_rebases_history():
    w = tg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    tw = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for lib, leaf in ((tg, w), (torch, tw)):
        y = leaf * 1
        v = y[1]
        v.mul_(5)       # through the view: y's history now has the write (CopySlices)
        (y * y).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), tw.grad.numpy())


@pytest.mark.parametrize("shape,i", [((3,), 3), ((3,), -4), ((2, 2), 5), ((), 0)])
def test_int_index_errors_match_torch(shape, i):
    x, tx = tg.zeros(shape), torch.zeros(shape)
    with pytest.raises(IndexError) as ours:
        x[i]
    with pytest.raises(IndexError) as theirs:
        tx[i]
    assert str(ours.value) == str(theirs.value)


def test_int_index_of_empty_rows():
    x, tx = tg.zeros(3, 0, requires_grad=True), torch.zeros(3, 0, requires_grad=True)
    assert x[1].shape == tx[1].shape
    assert type(x[1].grad_fn).__name__ == type(x[(1,)].grad_fn).__name__


# ---------------------------------------------------------------------------------------------
# the backward sweep by creation number
# ---------------------------------------------------------------------------------------------

def _both(build, *values):
    """build(lib, leaves) -> output; backward in both; the leaves' grads."""
    grads = []
    for lib in (tg, torch):
        leaves = [lib.tensor(np.asarray(v, np.float64), requires_grad=True) for v in values]
        build(lib, leaves).backward()
        grads.append([leaf.grad.numpy() if leaf.grad is not None else None for leaf in leaves])
    return grads


def test_diamonds_and_reuse_match_torch():
    def build(lib, leaves):
        x, y = leaves
        a = x * y
        b = a.exp() + a * x      # a used twice, x three times
        c = b * a - y.sin()
        d = (c + b * 2) * a
        return d.sum() + (x * x).sum()
    ours, theirs = _both(build, [0.1, -0.5, 0.3], [0.7, 0.2, -0.4])
    for g, tg_ in zip(ours, theirs):
        np.testing.assert_allclose(g, tg_, rtol=1e-12)


def test_leaf_accumulator_made_late_runs_after_its_consumers():
    # x's accumulator is created by the second op only; the node sweep must still reach it last
    x = tg.tensor([1.0, 2.0])
    y = x * 3                     # no grad: no node
    x.requires_grad_()
    z = (y * x).sum() + (x * x).sum()
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0 + 2.0, 6.0 + 4.0])


def test_long_chain_and_wide_fan_in():
    x = tg.tensor(0.5, dtype=tg.float64, requires_grad=True)
    tx = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    for lib, leaf in ((tg, x), (torch, tx)):
        v = leaf
        parts = []
        for k in range(300):
            v = (v * 0.99).sin() + leaf * 0.001
            parts.append(v * (k % 3))
        total = v
        for p in parts:
            total = total + p
        total.backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


def test_hooks_and_retain_grad_run_once_with_the_full_gradient():
    seen, tseen = [], []
    for lib, log in ((tg, seen), (torch, tseen)):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        y = x * 2
        y.retain_grad()
        y.register_hook(lambda g, log=log: log.append(g.numpy().copy()))
        z = (y * y).sum() + (y * 3).sum()
        z.backward()
        log.append(y.grad.numpy().copy())
        log.append(x.grad.numpy().copy())
    assert len(seen) == len(tseen) == 3
    for a, b in zip(seen, tseen):
        np.testing.assert_array_equal(a, b)


def test_create_graph_second_derivative_matches_torch():
    def second(lib):
        x = lib.tensor([0.3, -1.2, 2.0], dtype=lib.float64, requires_grad=True)
        y = (x.exp() * x.sin()).sum() + (x * x * x).mean()
        g, = lib.autograd.grad(y, x, create_graph=True)
        (g * g).sum().backward()
        return g.detach().numpy(), x.grad.numpy()
    for ours, theirs in zip(second(tg), second(torch)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_autograd_grad_of_intermediate_and_retain_graph():
    for lib in (tg, torch):
        x = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        h = x.exp()
        y = (h * h).sum()
        gh, gx = lib.autograd.grad(y, (h, x), retain_graph=True)
        again, = lib.autograd.grad(y, x)
        if lib is tg:
            ours = (gh.numpy(), gx.numpy(), again.numpy())
        else:
            theirs = (gh.numpy(), gx.numpy(), again.numpy())
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_second_backward_without_retain_graph_still_fails():
    x = tg.tensor([1.0], requires_grad=True)
    y = (x.exp() * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_custom_function_nodes_take_part_in_the_order():
    class Cube(tg.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * 3 * x * x
    x = tg.tensor([0.5, -2.0], requires_grad=True)
    y = Cube.apply(x * 2) + x          # x reaches the sum twice, once through the custom node
    (y * y).sum().backward()
    tx = torch.tensor([0.5, -2.0], requires_grad=True)
    ty = (tx * 2) ** 3 + tx
    (ty * ty).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


def test_nodes_are_numbered_after_their_inputs():
    x = tg.tensor([1.0], requires_grad=True)
    y = x * 2
    z = y + x
    nodes = [z.grad_fn, y.grad_fn, x._grad_accumulator()]
    assert nodes[0]._seq > nodes[1]._seq > nodes[2]._seq


# ---------------------------------------------------------------------------------------------
# numeric backward of sum/mean over all axes against the registry rule (create_graph path)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("shape", [(), (1,), (2, 3), (2, 0, 3), (4, 1, 2)])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_total_reduction_backward_matches_registry_rule_and_torch(reduce, shape, keepdim, dtype):
    data = np.random.default_rng(1).standard_normal(shape)
    x, tx = _pair(data, dtype, requires_grad=True)
    kwargs = {"dim": tuple(range(len(shape))), "keepdim": True} if keepdim else {}
    out = getattr(x, reduce)(**kwargs)
    weight = np.arange(1, out.numel() + 1, dtype=DTYPES[dtype][0]).reshape(out.shape)
    g_fast, = tg.autograd.grad(out, x, tg.tensor(weight), retain_graph=True)
    g_rule, = tg.autograd.grad(out, x, tg.tensor(weight), create_graph=True)  # registry rule
    tout = getattr(tx, reduce)(**kwargs)
    g_torch, = torch.autograd.grad(tout, tx, torch.tensor(weight))
    assert g_fast.dtype == g_rule.dtype == x.dtype
    np.testing.assert_array_equal(g_fast.numpy(), g_rule.detach().numpy())
    np.testing.assert_allclose(g_fast.numpy(), g_torch.numpy(), rtol=1e-6)


def test_total_reduction_gradient_is_writable_by_hooks():
    x = tg.ones(2, 2, requires_grad=True)
    y = x * 1
    y.register_hook(lambda g: g.mul_(2))
    y.mean().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 2), 0.5, np.float32))


def test_reduction_with_axis_takes_the_registry_rule():
    x, tx = _pair(np.arange(6.0).reshape(2, 3), "float64", requires_grad=True)
    (x.mean(1) * tg.tensor([1.0, 2.0])).sum().backward()
    (tx.mean(1) * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


# ---------------------------------------------------------------------------------------------
# quiet NumPy forwards: silent, IEEE results, the caller's error state untouched
# ---------------------------------------------------------------------------------------------

def test_quiet_forwards_are_silent_and_restore_error_state():
    before = np.geterr()
    with np.errstate(all="raise"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            x = tg.tensor([1000.0, 0.0, -1.0])
            out = [x.exp(), x.log(), tg.tensor([1.0]) / tg.tensor([0.0])]
        assert np.geterr()["over"] == "raise"  # restored inside the caller's errstate
        with pytest.raises(FloatingPointError):
            np.exp(np.array(1000.0))
    assert np.geterr() == before
    assert np.isinf(out[0].numpy()[0]) and np.isneginf(out[1].numpy()[1])
    assert np.isnan(out[1].numpy()[2]) and np.isinf(out[2].numpy()[0])


def test_quiet_forward_restores_error_state_after_an_exception():
    from tapegrad.core import quiet

    def boom(x):
        raise ValueError("inside")
    before = np.geterr()
    with pytest.raises(ValueError):
        quiet(boom)(1.0)
    assert np.geterr() == before


def test_engine_node_sweep_is_not_recursive():
    # 20k-node chain: no recursion limit, no topological-sort recursion
    x = tg.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0
    y.backward()
    assert float(x.grad) == 1.0
    assert graph.AccumulateGrad is type(x._grad_accumulator())


# ---------------------------------------------------------------------------------------------
# graph nodes: PyTorch's next_functions from a flat tuple, few objects for the cyclic collector
# ---------------------------------------------------------------------------------------------

def test_next_functions_pairs_as_torch():
    x = tg.tensor([1.0], requires_grad=True)
    c = tg.tensor([2.0])
    y = x * c + x
    tx = torch.tensor([1.0], requires_grad=True)
    ty = tx * torch.tensor([2.0]) + tx
    ours = [(type(n).__name__ if n is not None else None, i) for n, i in y.grad_fn.next_functions]
    theirs = [(type(n).__name__ if n is not None else None, i)
              for n, i in ty.grad_fn.next_functions]
    assert ours == theirs
    mul = y.grad_fn.next_functions[0][0]
    assert [n is None for n, _ in mul.next_functions] == [n is None for n, _ in
                                                           ty.grad_fn.next_functions[0][0]
                                                           .next_functions]
    mul.next_functions = ((None, 0), (None, 0))   # nodes made outside _bind set pairs
    assert mul._next == (None, None)


def test_graph_keeps_few_objects_for_the_cyclic_collector():
    # a long eager graph is live until backward: every object it holds is walked by each full
    # collection (it was 8 per addition: pairs and a version list per node)
    import gc
    x = tg.tensor(1.0, dtype=tg.float64, requires_grad=True)
    y = x * 1.0
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        for _ in range(500):
            y = y + x
        per_op = (len(gc.get_objects()) - before) / 500
    finally:
        gc.enable()
    assert per_op <= 5.1   # the Tensor, its node, the operand tuple, the next nodes, a version
    y.backward()
    assert float(x.grad) == 501.0


def test_backward_is_silent_and_restores_error_state():
    x = tg.tensor([800.0, 1.0], dtype=tg.float64, requires_grad=True)
    before = np.geterr()
    with np.errstate(all="raise"):
        y = (x.exp() * x.exp()).sum()       # the rule's products overflow to inf
        y.backward()
        assert np.geterr()["over"] == "raise"
    assert np.geterr() == before
    assert np.isinf(x.grad.numpy()[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_leaf_gradients_accumulate_in_place_over_backwards(dtype):
    x, tx = _pair([0.5, -1.5, 2.0], dtype, requires_grad=True)
    for lib, leaf in ((tg, x), (torch, tx)):
        for k in range(3):
            ((leaf * (k + 1)).exp() * 0.1).sum().backward()
        held = leaf.grad
        (leaf * leaf).sum().backward()
        assert leaf.grad is held          # accumulated into the same tensor, as PyTorch does
    assert str(x.grad.dtype) == str(tx.grad.dtype)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)
