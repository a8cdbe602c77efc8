"""The eager training fast paths (issue 11): F.linear as one AddmmBackward0 node, nll_loss /
cross_entropy as one NllLossBackward0 node, plain SGD's step, zero_grad, and the leaf-gradient
layout. Each is compared with the unfused composition (the slow path) and with PyTorch: values,
gradients, double backward, grad_fn names and graph structure."""
import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad.autograd import graph

torch = pytest.importorskip("torch")


def _pair(shape, rng, dtype=np.float64, requires_grad=True):
    data = rng.standard_normal(shape).astype(dtype)
    return (tg.tensor(data, requires_grad=requires_grad),
            torch.tensor(data, requires_grad=requires_grad))


def _names(node, depth=4):
    """grad_fn names down the graph, breadth first, as nested tuples (None for no input)."""
    if node is None:
        return None
    if depth == 0:
        return type(node).__name__
    return (type(node).__name__,
            tuple(_names(n, depth - 1) for n, _ in node.next_functions))


class _Sub(tg.Tensor):
    """A Tensor subclass: linear takes the unfused path for it."""
    __slots__ = ()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_grad", [True, False])
@pytest.mark.parametrize("shape", [(5, 3, 4), (1, 1, 1), (7, 6, 1), (0, 3, 2)])
def test_linear_fused_matches_unfused_and_torch(shape, x_grad, dtype):
    n, d_in, d_out = shape
    rng = np.random.default_rng(sum(shape))
    x, tx = _pair((n, d_in), rng, dtype, x_grad)
    w, tw = _pair((d_out, d_in), rng, dtype)
    b, tb = _pair((d_out,), rng, dtype)
    out = F.linear(x, w, b)
    slow = x @ w.t() + b
    t_out = torch.nn.functional.linear(tx, tw, tb)
    np.testing.assert_array_equal(out.detach().numpy(), slow.detach().numpy())
    np.testing.assert_allclose(out.detach().numpy(), t_out.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert _names(out.grad_fn) == _names(t_out.grad_fn)
    g = rng.standard_normal((n, d_out)).astype(dtype)
    out.backward(tg.tensor(g))
    t_out.backward(torch.tensor(g))
    fast = [v.grad.numpy() for v in ([x] if x_grad else []) + [w, b]]
    for v in [x, w, b]:
        v.grad = None
    slow.backward(tg.tensor(g))
    for v, got, t_v in zip(([x] if x_grad else []) + [w, b], fast,
                           ([tx] if x_grad else []) + [tw, tb]):
        np.testing.assert_allclose(got, v.grad.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got, t_v.grad.numpy(), rtol=1e-5, atol=1e-5)
        assert v.grad.stride() == t_v.grad.stride()


def test_linear_graph_is_torchs():
    rng = np.random.default_rng(0)
    x, tx = _pair((3, 4), rng, np.float32)
    model = tg.nn.Sequential(tg.nn.Linear(4, 5), tg.nn.ReLU(), tg.nn.Linear(5, 2))
    t_model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    for names in [(x, tx), (x.detach(), tx.detach())]:
        out = F.cross_entropy(model(names[0]), tg.tensor([0, 1, 1]))
        t_out = torch.nn.functional.cross_entropy(t_model(names[1]), torch.tensor([0, 1, 1]))
        assert _names(out.grad_fn, 8) == _names(t_out.grad_fn, 8)


def test_linear_unfused_for_subclasses_and_other_ranks():
    rng = np.random.default_rng(1)
    w, tw = _pair((2, 3), rng)
    b, tb = _pair((2,), rng)
    x3, tx3 = _pair((4, 5, 3), rng)
    out, t_out = F.linear(x3, w, b), torch.nn.functional.linear(tx3, tw, tb)
    np.testing.assert_allclose(out.detach().numpy(), t_out.detach().numpy(), rtol=1e-12)
    assert type(out.grad_fn).__name__ == type(t_out.grad_fn).__name__ == "ViewBackward0"
    sub = tg.Tensor._wrap(rng.standard_normal((4, 3)), requires_grad=True)
    sub.__class__ = _Sub
    out = F.linear(sub, w, b)
    np.testing.assert_allclose(out.detach().numpy(), sub.detach().numpy() @ w.detach().numpy().T
                               + b.detach().numpy(), rtol=1e-12)
    out.sum().backward()
    np.testing.assert_allclose(sub.grad.numpy(), np.tile(w.detach().numpy().sum(0), (4, 1)))


def test_linear_shape_errors_unchanged():
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        F.linear(tg.ones(2, 3), tg.ones(4, 5, requires_grad=True), tg.ones(4))


def test_linear_in_place_write_after_forward_fails_in_backward():
    rng = np.random.default_rng(2)
    x, tx = _pair((3, 4), rng)
    w, tw = _pair((2, 4), rng)
    b, tb = _pair((2,), rng)
    h = x * 1.0
    out = F.linear(h, w, b)
    t_h = tx * 1.0
    t_out = torch.nn.functional.linear(t_h, tw, tb)
    with tg.no_grad():
        h.add_(1.0)
    with torch.no_grad():
        t_h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        t_out.sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_linear_double_backward_matches_torch():
    rng = np.random.default_rng(3)
    x, tx = _pair((3, 4), rng)
    w, tw = _pair((2, 4), rng)
    b, tb = _pair((2,), rng)
    outs = []
    for lib, mod, args in [(tg, F, (x, w, b)), (torch, torch.nn.functional, (tx, tw, tb))]:
        loss = (mod.linear(*args) ** 3).sum()
        gx, gw = lib.autograd.grad(loss, args[:2], create_graph=True)
        outs.append([v.detach().numpy() for v in lib.autograd.grad((gx * gw.sum()).sum(), args)])
    for got, want in zip(*outs):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_leaf_grad_follows_the_leaf_layout():
    # a transposed cotangent (x @ w.t(): w's gradient arrives as (x.T @ g).T) lands in w's layout
    rng = np.random.default_rng(4)
    x, tx = _pair((6, 4), rng)
    w, tw = _pair((3, 4), rng)
    (x @ w.t()).sum().backward()
    (tx @ tw.t()).sum().backward()
    assert w.grad.stride() == tw.grad.stride() == (4, 1)
    wf, twf = _pair((4, 3), rng)
    (x @ wf.t().t()).sum().backward()     # wf.t() is F-ordered: a leaf of its own here
    leaf = tg.tensor(wf.detach().numpy().T.copy().T, requires_grad=True)   # an F-ordered leaf
    (x @ leaf).sum().backward()
    t_leaf = twf.detach().t().contiguous().t().requires_grad_()
    (tx @ t_leaf).sum().backward()
    assert leaf.grad.stride() == t_leaf.grad.stride() == (1, 4)
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-12)


LOSS_CASES = [
    dict(reduction="mean"),
    dict(reduction="sum"),
    dict(reduction="mean", ignore_index=1),
    dict(reduction="sum", ignore_index=0),
    dict(reduction="mean", weight=True),
    dict(reduction="sum", weight=True, ignore_index=2),
    dict(reduction="none"),
]


@pytest.mark.parametrize("kind", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("case", range(len(LOSS_CASES)))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_classification_loss_fused_matches_torch(kind, case, dtype):
    opts = dict(LOSS_CASES[case])
    rng = np.random.default_rng(case)
    n, c = 9, 4
    x, tx = _pair((n, c), rng, dtype)
    if kind == "nll_loss":   # log-probabilities of a leaf, so the leaf's grad is the loss's
        x_in, tx_in = x.log_softmax(1), tx.log_softmax(1)
    else:
        x_in, tx_in = x, tx
    target = rng.integers(0, c, n)
    target[0] = opts.get("ignore_index", 0)   # at least one ignored target where one is set
    t_opts = dict(opts)
    if opts.pop("weight", None):
        wd = rng.uniform(0.5, 2, c).astype(dtype)
        opts["weight"], t_opts["weight"] = tg.tensor(wd), torch.tensor(wd)
    out = getattr(F, kind)(x_in, tg.tensor(target), **opts)
    t_out = getattr(torch.nn.functional, kind)(tx_in, torch.tensor(target), **t_opts)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.detach().numpy(), t_out.detach().numpy(), **tol)
    assert _names(out.grad_fn, 2) == _names(t_out.grad_fn, 2)
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(tg.tensor(g))
    t_out.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), **tol)


def test_nll_fused_equals_unfused_exactly():
    # the unfused composition (-(logp[i, t] * w).sum() / total) is what the 'none' path builds on
    rng = np.random.default_rng(5)
    x = tg.tensor(rng.standard_normal((7, 5)).astype(np.float32), requires_grad=True)
    target = tg.tensor(rng.integers(0, 5, 7))
    fused = F.nll_loss(x.log_softmax(1), target)
    fused.backward()
    fused_grad = x.grad.numpy().copy()
    x.grad = None
    slow = F.nll_loss(x.log_softmax(1), target, reduction="none").sum() / 7
    slow.backward()
    np.testing.assert_array_equal(fused.detach().numpy(), slow.detach().numpy())
    np.testing.assert_array_equal(fused_grad, x.grad.numpy())


def test_nll_all_targets_ignored_is_nan_with_zero_grad():
    x, tx = _pair((3, 4), np.random.default_rng(6))
    out = F.cross_entropy(x, tg.tensor([1, 1, 1]), ignore_index=1)
    t_out = torch.nn.functional.cross_entropy(tx, torch.tensor([1, 1, 1]), ignore_index=1)
    assert np.isnan(out.item()) and np.isnan(t_out.item())
    out.backward()
    t_out.backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_cross_entropy_double_backward_matches_torch():
    rng = np.random.default_rng(7)
    x, tx = _pair((5, 3), rng)
    target = rng.integers(0, 3, 5)
    outs = []
    for lib, mod, v in [(tg, F, x), (torch, torch.nn.functional, tx)]:
        loss = mod.cross_entropy(v * v, lib.tensor(target), reduction="sum")
        gx, = lib.autograd.grad(loss, v, create_graph=True)
        outs.append(lib.autograd.grad((gx ** 2).sum(), v)[0].detach().numpy())
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-10, atol=1e-12)


def test_cross_entropy_errors_unchanged():
    x = tg.zeros(2, 3, requires_grad=True)
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        F.cross_entropy(x, tg.tensor([0, 5]))


def test_plain_sgd_keeps_no_state_and_matches_torch():
    rng = np.random.default_rng(8)
    w, tw = _pair((3, 2), rng, np.float32)
    opt, t_opt = tg.optim.SGD([w], lr=0.3), torch.optim.SGD([tw], lr=0.3)
    for step in range(3):
        for lib, v, o in [(tg, w, opt), (torch, tw, t_opt)]:
            o.zero_grad()
            (v ** 2).sum().backward()
            o.step()
        np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), rtol=1e-6)
    assert opt.state_dict()["state"] == t_opt.state_dict()["state"] == {}
    assert w._version == 3   # one in-place write per step, as torch counts (tw._version differs:
    # torch also counts the zeroing of its grad)


def test_sgd_skips_params_without_grad_and_mixes_groups():
    rng = np.random.default_rng(9)
    a, ta = _pair((2,), rng)
    b, tb = _pair((2,), rng)
    c, tc = _pair((2,), rng)
    opt = tg.optim.SGD([{"params": [a, b]}, {"params": [c], "momentum": 0.9}], lr=0.1)
    t_opt = torch.optim.SGD([{"params": [ta, tb]}, {"params": [tc], "momentum": 0.9}], lr=0.1)
    for _ in range(3):
        for v, o in [((a, c), opt), ((ta, tc), t_opt)]:
            o.zero_grad()
            (v[0] ** 2 + v[1] ** 3).sum().backward()
            o.step()
    for got, want in [(a, ta), (b, tb), (c, tc)]:
        np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-12)
    assert b.grad is None and tb.grad is None
    assert list(opt.state_dict()["state"]) == list(t_opt.state_dict()["state"]) == [2]


@pytest.mark.parametrize("set_to_none", [True, False])
def test_optimizer_zero_grad(set_to_none):
    w = tg.ones(3, requires_grad=True)
    u = tg.ones(2, requires_grad=True)
    opt = tg.optim.SGD([w, u], lr=0.1)
    (w * 2).sum().backward()
    grad = w.grad
    opt.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert w.grad is None
        np.testing.assert_array_equal(grad.numpy(), [2, 2, 2])   # the old grad is not written
    else:
        np.testing.assert_array_equal(w.grad.numpy(), [0, 0, 0])
    assert u.grad is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_relu_numeric_backward_matches_rule_and_torch(dtype):
    # the bit-mask backward keeps g's bits (NaN, inf, -0) where the rule keeps g, +0 elsewhere
    x = np.array([[-1.0, 0.0, -0.0, 2.0, np.nan, np.inf, -np.inf, 3.0]] * 3, dtype)
    g = np.array([[np.inf, np.nan, 1.0, -0.0, 5.0, np.nan, -np.inf, -np.inf]] * 3, dtype)
    v = tg.tensor(x, requires_grad=True)
    out = tg.relu(v)
    fast, = graph._NUMERIC_VJPS["relu"](out.grad_fn, g)   # the path backward takes
    out.backward(tg.tensor(g))
    got = v.grad.numpy()
    np.testing.assert_array_equal(got.view(np.uint8), fast.view(np.uint8))
    # the registry rule itself (create_graph takes the rule's path)
    v2 = tg.tensor(x, requires_grad=True)
    rule, = tg.autograd.grad(tg.relu(v2), v2, tg.tensor(g), create_graph=True)
    np.testing.assert_array_equal(got, rule.detach().numpy())
    np.testing.assert_array_equal(np.signbit(got), np.signbit(rule.detach().numpy()))
    tv = torch.tensor(x, requires_grad=True)
    torch.relu(tv).backward(torch.tensor(g))
    np.testing.assert_array_equal(got, tv.grad.numpy())
    np.testing.assert_array_equal(np.signbit(got), np.signbit(tv.grad.numpy()))


def test_relu_numeric_backward_non_contiguous_grad():
    rng = np.random.default_rng(10)
    x, tx = _pair((4, 6), rng)
    g = rng.standard_normal(6)
    out, t_out = tg.relu(x.t()), torch.relu(tx.t())        # a non-contiguous input and output
    (out * tg.tensor(g)[:, None]).sum().backward()          # a broadcast (strided) cotangent
    (t_out * torch.tensor(g)[:, None]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


POOL_CASES = [((3, 2, 7, 9), 2, None), ((2, 1, 4, 4), 2, None), ((1, 1, 5, 5), 1, None),
              ((2, 2, 6, 6), 3, None), ((2, 3, 8, 8), 2, "nan"), ((2, 2, 6, 6), 2, "inf_grad"),
              ((2, 2, 6, 6), (2, 3), None)]


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_max_pool_tiled_backward_matches_rule_and_torch(case):
    shape, kernel, special = POOL_CASES[case]
    rng = np.random.default_rng(case)
    data = rng.integers(-2, 3, shape).astype(np.float64)   # many ties: the first maximum wins
    if special == "nan":
        data[0, 0, 1, 1] = data[1, 2, 4, 5] = np.nan
    x, tx = tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    out = F.max_pool2d(x, kernel)
    t_out = torch.nn.functional.max_pool2d(tx, kernel)
    g = rng.standard_normal(out.shape)
    if special == "inf_grad":
        g[0, 0, 0, 0], g[1, 1, 1, 1] = np.inf, np.nan
    fast, = graph._NUMERIC_VJPS["max_pool2d"](out.grad_fn, g)    # the path backward takes
    rule, = tg.autograd.grad(out, x, tg.tensor(g), create_graph=True)   # the registry rule
    out.backward(tg.tensor(g))
    t_out.backward(torch.tensor(g))
    np.testing.assert_array_equal(fast, rule.detach().numpy())
    np.testing.assert_array_equal(x.grad.numpy(), fast)
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


def test_max_pool_overlapping_windows_take_the_rule():
    rng = np.random.default_rng(11)
    x, tx = _pair((2, 2, 7, 7), rng)
    out = F.max_pool2d(x, 3, stride=2, padding=1)
    t_out = torch.nn.functional.max_pool2d(tx, 3, stride=2, padding=1)
    assert graph._NUMERIC_VJPS["max_pool2d"](out.grad_fn, np.ones(out.shape)) is None
    out.sum().backward()
    t_out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), tx.grad.numpy())


@pytest.mark.parametrize("ignore_index", [-100, 0, 2, 7])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_unweighted_targets_all_counted(ignore_index, reduction):
    # no target equals ignore_index (in range or not): the unweighted node, no masks
    rng = np.random.default_rng(12)
    x, tx = _pair((8, 5), rng, np.float32)
    target = np.where(rng.integers(0, 5, 8) == ignore_index, 4, rng.integers(0, 5, 8))
    target[target == ignore_index] = 4 if ignore_index != 4 else 3
    out = F.cross_entropy(x, tg.tensor(target), ignore_index=ignore_index, reduction=reduction)
    t_out = torch.nn.functional.cross_entropy(tx, torch.tensor(target), ignore_index=ignore_index,
                                              reduction=reduction)
    np.testing.assert_allclose(out.detach().numpy(), t_out.detach().numpy(), rtol=1e-6)
    (out * 3.0).sum().backward()
    (t_out * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert out.grad_fn.next_functions[0][0] is not None


@pytest.mark.parametrize("bad", [-1, 5])
def test_nll_target_out_of_range_raises_as_torch(bad):
    x = tg.zeros(3, 5, requires_grad=True)
    with pytest.raises(IndexError, match=f"Target {bad} is out of bounds"):
        F.cross_entropy(x, tg.tensor([0, bad, 1]))


def _frames_in(module_file, fn):
    import sys
    calls = []

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename == module_file:
            calls.append(frame.f_code.co_name)
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def test_torch_functions_take_out_in_one_frame():
    import tapegrad.functions as functions
    x = tg.tensor([0.5, -1.0, 2.0])
    assert _frames_in(functions.__file__, lambda: tg.exp(x)) == ["function"]
    out = tg.empty(1)                                   # resized, as PyTorch resizes out
    t_out = torch.empty(1)
    assert tg.exp(x, out=out) is out
    with pytest.warns(UserWarning):
        torch.exp(torch.tensor([0.5, -1.0, 2.0]), out=t_out)
    np.testing.assert_allclose(out.numpy(), t_out.numpy(), rtol=1e-6)
    assert out._version == 1
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        tg.sum(tg.ones(2, requires_grad=True), out=tg.empty(()))
    np.testing.assert_array_equal(tg.cumsum(tg.tensor([1.0, 2.0]), 0, out=tg.empty(2)).numpy(),
                                  [1.0, 3.0])


def test_module_call_runs_hooks_added_and_removed_between_calls():
    """Module.__call__ skips the hook machinery only while a module has no hooks: hooks
    registered after hook-free calls run, and stop once removed, as in PyTorch."""
    rng = np.random.default_rng(7)
    for lib in (tg, torch):
        lin = lib.nn.Linear(3, 2)
        x = lib.tensor(rng.standard_normal((4, 3)), dtype=lib.float32, requires_grad=True)
        plain = lin(x)
        seen = []
        pre = lin.register_forward_pre_hook(lambda m, args: (args[0] * 2,))
        post = lin.register_forward_hook(lambda m, args, out: out + 1)
        back = lin.register_full_backward_hook(lambda m, gin, gout: seen.append(gout[0].shape))
        hooked = lin(x)
        expected = lib.nn.functional.linear(x * 2, lin.weight, lin.bias) + 1
        assert np.allclose(hooked.detach().numpy(), expected.detach().numpy())
        hooked.sum().backward()
        assert seen == [(4, 2)]
        for handle in (pre, post, back):
            handle.remove()
        again = lin(x)
        assert np.array_equal(again.detach().numpy(), plain.detach().numpy())
        again.sum().backward()
        assert seen == [(4, 2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_values_and_grads_in_both_tails_match_torch(dtype):
    x = np.concatenate([np.random.default_rng(3).standard_normal(50) * 8,
                        [-np.inf, -800.0, -100.0, -20.0, -0.0, 0.0, 20.0, 100.0, 800.0, np.inf,
                         np.nan]]).astype(dtype)
    ours, theirs = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, expected = tg.sigmoid(ours), torch.sigmoid(theirs)
    assert out.dtype == ours.dtype
    tol = 1e-6 if dtype == np.float32 else 1e-14
    tiny = np.finfo(dtype).tiny          # torch flushes some subnormal tails to 0
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=tol,
                               atol=tiny)
    out.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=10 * tol, atol=tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", ["finite", "non-finite"])
def test_cross_entropy_log_softmax_node_equals_the_registry_op(dtype, rows):
    """Eager cross_entropy's log_softmax node (primitives_nn) gives the registry log_softmax's
    bits, forward and backward, non-finite rows included; the graph is PyTorch's."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 5)).astype(dtype) * 4
    if rows == "non-finite":
        x[0] = -np.inf
        x[1, 2] = np.inf
        x[2, 0] = -np.inf
        x[3, 1] = np.nan
    y = rng.integers(0, 5, 6)
    a, b = tg.tensor(x, requires_grad=True), tg.tensor(x, requires_grad=True)
    with np.errstate(all="ignore"):
        fused = F.cross_entropy(a, tg.tensor(y))
        plain = F.nll_loss(b.log_softmax(1), tg.tensor(y))
        fused.backward()
        plain.backward()
    assert np.array_equal(fused.detach().numpy(), plain.detach().numpy(), equal_nan=True)
    assert np.array_equal(a.grad.numpy(), b.grad.numpy(), equal_nan=True)
    assert _names(fused.grad_fn, 2) == _names(plain.grad_fn, 2)
    assert type(fused.grad_fn.next_functions[0][0]).__name__ == "LogSoftmaxBackward0"


@pytest.mark.parametrize("dim", [0, 1, -1, -2])
def test_functional_log_softmax_node_equals_the_registry_op(dim):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    a, b = tg.tensor(x, requires_grad=True), tg.tensor(x, requires_grad=True)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    fused, plain = F.log_softmax(a, dim=dim), b.log_softmax(dim)
    fused.backward(tg.tensor(g))
    plain.backward(tg.tensor(g))
    assert np.array_equal(fused.detach().numpy(), plain.detach().numpy())
    assert np.array_equal(a.grad.numpy(), b.grad.numpy())
    assert type(fused.grad_fn).__name__ == "LogSoftmaxBackward0"
    t = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.log_softmax(t, dim=dim)
    np.testing.assert_allclose(fused.detach().numpy(), expected.detach().numpy(), rtol=1e-6)
    with pytest.raises(IndexError):
        F.log_softmax(a, dim=2)
