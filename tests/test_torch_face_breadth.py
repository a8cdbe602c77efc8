"""The torch namespace and Tensor methods PyTorch's tutorials call, against PyTorch itself:
values, gradients, grad_fn names, printing and error messages."""
import math
import pickle

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(5)


def _pair(shape, low=-2.0, high=2.0, dtype=np.float64):
    data = RNG.uniform(low, high, shape).astype(dtype)
    return (tg.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True))


def _np(x):
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


# (name, call, input shapes): call(lib, *tensors) must give the same value and gradients
METHOD_CASES = [
    ("mm", lambda m, a, b: a.mm(b), [(3, 4), (4, 2)]),
    ("bmm", lambda m, a, b: m.bmm(a, b), [(2, 3, 4), (2, 4, 5)]),
    ("mv", lambda m, a, b: a.mv(b), [(3, 4), (4,)]),
    ("dot", lambda m, a, b: m.dot(a, b), [(5,), (5,)]),
    ("outer", lambda m, a, b: m.outer(a, b), [(3,), (4,)]),
    ("addmm", lambda m, c, a, b: m.addmm(c, a, b, beta=0.5, alpha=2.0), [(3, 2), (3, 4), (4, 2)]),
    ("cross", lambda m, a, b: m.cross(a, b, dim=1), [(4, 3), (4, 3)]),
    ("trace", lambda m, a: a.trace(), [(4, 4)]),
    ("diagonal", lambda m, a: a.diagonal(1), [(3, 4)]),
    ("diagonal 3-d", lambda m, a: m.diagonal(a, 0, 0, 2), [(3, 2, 3)]),
    ("diag of vector", lambda m, a: m.diag(a, -1), [(3,)]),
    ("diag of matrix", lambda m, a: m.diag(a), [(3, 3)]),
    ("select", lambda m, a: a.select(1, -1), [(2, 3, 4)]),
    ("narrow", lambda m, a: a.narrow(2, 1, 2), [(2, 3, 4)]),
    ("movedim", lambda m, a: m.movedim(a, 0, -1), [(2, 3, 4)]),
    ("flip", lambda m, a: m.flip(a, [0, 2]), [(2, 3, 4)]),
    ("roll", lambda m, a: m.roll(a, (1, -2), (0, 2)), [(2, 3, 4)]),
    ("roll flat", lambda m, a: m.roll(a, 3), [(2, 3)]),
    ("repeat", lambda m, a: a.repeat(2, 1, 3), [(3, 2)]),
    ("tile", lambda m, a: m.tile(a, (2,)), [(2, 3)]),
    ("repeat_interleave", lambda m, a: m.repeat_interleave(a, 2, dim=1), [(2, 3)]),
    ("unflatten", lambda m, a: a.unflatten(1, (2, 3)), [(4, 6)]),
    ("floor", lambda m, a: m.floor(a) * a, [(3, 4)]),
    ("floor alone", lambda m, a: m.floor(a), [(3, 4)]),
    ("ceil and trunc", lambda m, a: m.ceil(a) + a.trunc(), [(3, 4)]),
    ("round", lambda m, a: m.round(a * 3) + a, [(3, 4)]),
    ("round decimals", lambda m, a: m.round(a, decimals=1) + a, [(3, 4)]),
    ("frac", lambda m, a: m.frac(a), [(3, 4)]),
    ("clamp_min", lambda m, a: a.clamp_min(0.5), [(3, 4)]),
    ("lerp", lambda m, a, b: m.lerp(a, b, 0.3), [(3,), (3,)]),
    ("masked_fill", lambda m, a: a.masked_fill(a > 0, 0.5), [(3, 4)]),
    ("gather", lambda m, a: m.gather(a, 1, m.tensor([[0, 2], [1, 1], [2, 0]])), [(3, 3)]),
    ("index_select", lambda m, a: a.index_select(1, m.tensor([2, 0, 2])), [(2, 3)]),
    ("scatter", lambda m, a, b: a.scatter(1, m.tensor([[1, 0], [2, 1]]), b), [(2, 3), (2, 2)]),
    ("scatter_add", lambda m, a, b: a.scatter_add(0, m.tensor([[1, 0, 1]]), b), [(2, 3), (1, 3)]),
    ("index_add", lambda m, a, b: a.index_add(0, m.tensor([1, 1]), b), [(3, 2), (2, 2)]),
    ("sort values", lambda m, a: m.sort(a, dim=0, descending=True).values, [(4, 3)]),
    ("topk", lambda m, a: m.topk(a, 2, dim=1).values, [(3, 5)]),
    ("kthvalue", lambda m, a: a.kthvalue(2, 1).values, [(3, 5)]),
    ("median dim", lambda m, a: a.median(1).values, [(3, 5)]),
    ("median", lambda m, a: a.median(), [(3, 5)]),
    ("cumsum", lambda m, a: m.cumsum(a, dim=1), [(3, 5)]),
    ("cumsum dim 0", lambda m, a: a.cumsum(0), [(4, 2, 3)]),
    ("cumprod", lambda m, a: m.cumprod(a, 1), [(3, 4)]),
    ("cummax", lambda m, a: m.cummax(a, 1).values, [(3, 5)]),
    ("logcumsumexp", lambda m, a: m.logcumsumexp(a, 0), [(4, 3)]),
    ("diff", lambda m, a: m.diff(a, n=2, dim=1), [(3, 5)]),
    ("tril", lambda m, a: m.tril(a, -1), [(4, 4)]),
    ("triu", lambda m, a: a.triu(1), [(2, 3, 4)]),
    ("nansum", lambda m, a: m.nansum(a, 1), [(3, 4)]),
    ("einsum matmul", lambda m, a, b: m.einsum("ij,jk->ik", a, b), [(2, 3), (3, 4)]),
    ("einsum batch", lambda m, a, b: m.einsum("bij,bkj->bik", a, b), [(2, 3, 4), (2, 5, 4)]),
    ("einsum trace", lambda m, a: m.einsum("ii", a), [(3, 3)]),
    ("einsum implicit", lambda m, a, b: m.einsum("ij,jk", a, b), [(2, 3), (3, 2)]),
    ("einsum outer", lambda m, a, b: m.einsum("i,j->ji", a, b), [(2,), (3,)]),
    ("tensordot", lambda m, a, b: m.tensordot(a, b, dims=([1, 0], [0, 2])), [(3, 2, 4), (2, 5, 3)]),
    ("cdist", lambda m, a, b: m.cdist(a, b), [(3, 2), (4, 2)]),
    ("std", lambda m, a: m.std(a), [(3, 4)]),
    ("svd S", lambda m, a: m.svd(a).S, [(4, 3)]),
    ("det", lambda m, a: m.det(a), [(3, 3)]),
    ("addcdiv", lambda m, a, b: m.addcdiv(a, a, b * b + 1, value=0.5), [(3, 4), (3, 4)]),
    ("addcmul", lambda m, a, b: a.addcmul(a, b, value=2), [(3, 4), (3, 4)]),
    ("baddbmm", lambda m, c, a, b: m.baddbmm(c, a, b, beta=0.5), [(2, 3, 2), (2, 3, 4), (2, 4, 2)]),
    ("kron", lambda m, a, b: m.kron(a, b), [(2, 3), (3, 2)]),
    ("inner", lambda m, a, b: m.inner(a, b), [(2, 3), (4, 3)]),
    ("unfold", lambda m, a: a.unfold(1, 3, 2), [(2, 7)]),
    ("rot90", lambda m, a: m.rot90(a, 3, (0, 1)), [(2, 3)]),
    ("quantile", lambda m, a: m.quantile(a, 0.3, dim=1, keepdim=True), [(3, 5)]),
    ("quantiles", lambda m, a: a.quantile(m.tensor([0.1, 0.75], dtype=m.float64)), [(3, 5)]),
    ("tensor_split", lambda m, a: m.tensor_split(a, 3, dim=1)[1], [(2, 7)]),
    ("matrix_power", lambda m, a: m.matrix_power(a, 3), [(3, 3)]),
    ("diag_embed", lambda m, a: m.diag_embed(a), [(2, 3)]),
    ("xlogy", lambda m, a, b: m.xlogy(a, b * b + 0.1), [(3,), (3,)]),
    ("sinc", lambda m, a: m.sinc(a), [(5,)]),
    ("logit", lambda m, a: m.logit(m.sigmoid(a)), [(5,)]),
    ("dist", lambda m, a, b: m.dist(a, b, 3), [(4,), (4,)]),
    ("sum_to_size", lambda m, a: a.sum_to_size(1, 4), [(3, 4)]),
    ("take", lambda m, a: m.take(a, m.tensor([0, 5, 11, 5])), [(3, 4)]),
    ("trapezoid", lambda m, a: m.trapezoid(a, dx=0.5), [(3, 4)]),
    ("hstack", lambda m, a, b: m.hstack([a, b]), [(2, 3), (2, 1)]),
    ("vstack", lambda m, a, b: m.vstack([a, b]), [(3,), (3,)]),
    ("column_stack", lambda m, a, b: m.column_stack([a, b]), [(3,), (3, 2)]),
    ("inverse", lambda m, a: m.inverse(a), [(3, 3)]),
    ("slogdet", lambda m, a: m.slogdet(a).logabsdet, [(3, 3)]),
    ("std_mean", lambda m, a: m.stack(m.std_mean(a, 1)), [(3, 4)]),
    ("var_mean", lambda m, a: m.stack(m.var_mean(a, dim=0, keepdim=True)), [(3, 4)]),
]


@pytest.mark.parametrize("name, call, shapes", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_methods_match_pytorch_values_and_gradients(name, call, shapes):
    pairs = [_pair(s) for s in shapes]
    ours = call(tg, *[p[0] for p in pairs])
    theirs = call(torch, *[p[1] for p in pairs])
    np.testing.assert_allclose(_np(ours), _np(theirs), rtol=1e-10, atol=1e-12)
    weights = RNG.standard_normal(tuple(theirs.shape))
    (ours * tg.tensor(weights)).sum().backward()
    (theirs * torch.tensor(weights)).sum().backward()
    for (a, b) in pairs:
        expected = np.zeros(b.shape) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=name)


NO_GRAD_CASES = [
    ("sort indices", lambda m, a: m.sort(a, 1).indices),
    ("argsort descending", lambda m, a: m.argsort(a, dim=0, descending=True)),
    ("topk indices", lambda m, a: a.topk(2).indices),
    ("cummin indices", lambda m, a: m.cummin(a, 1).indices),
    ("unique", lambda m, a: m.unique(m.round(a))),
    ("unique counts", lambda m, a: m.unique(m.round(a), return_inverse=True, return_counts=True)[2]),
    ("nonzero", lambda m, a: m.nonzero(a > 0)),
    ("count_nonzero", lambda m, a: m.count_nonzero(a > 0, dim=1)),
    ("isnan/isinf", lambda m, a: m.isnan(a / 0 * 0) | m.isinf(a / 0)),
    ("logical_xor", lambda m, a: m.logical_xor(a > 0, a > 1)),
    ("eq", lambda m, a: m.eq(a, a.flip(0))),
    ("bitwise_xor", lambda m, a: m.bitwise_xor(m.round(a).long(), m.tensor([1, 5, 11, 2]))),
    ("bitwise_and", lambda m, a: m.round(a).long().bitwise_and(m.tensor(3))),
    ("aminmax", lambda m, a: m.stack(tuple(m.aminmax(a, dim=0)))),
    ("meshgrid", lambda m, a: m.stack(m.meshgrid(a[0], a[1], indexing="xy"))),
    ("nan_to_num", lambda m, a: m.nan_to_num(a / 0, posinf=9.0)),
    ("all/any over a dim", lambda m, a: m.stack([m.all(a > -2, dim=1), (a > 2).any(1)])),
    ("isin", lambda m, a: m.isin(m.round(a), m.tensor([0.0, 1.0], dtype=m.float64))),
    ("searchsorted", lambda m, a: m.searchsorted(m.sort(a, 1).values, a[:, :2])),
    ("bincount", lambda m, a: m.bincount((a + 3).long().flatten())),
    ("histc", lambda m, a: m.histc(a, bins=4, min=-3, max=3)),
    ("unique_consecutive", lambda m, a: m.unique_consecutive(m.tensor([1, 1, 2, 1]),
                                                             return_counts=True)[1]),
    ("isclose", lambda m, a: m.isclose(a, a + 1e-9)),
]


@pytest.mark.parametrize("name, call", NO_GRAD_CASES, ids=[c[0] for c in NO_GRAD_CASES])
def test_index_and_integer_results_match_pytorch(name, call):
    data = RNG.uniform(-3, 3, (3, 4))
    data[0, 0] = 0.0
    ours, theirs = call(tg, tg.tensor(data)), call(torch, torch.tensor(data))
    assert ours.dtype.name == str(theirs.dtype).replace("torch.", "")
    np.testing.assert_array_equal(_np(ours), _np(theirs))


def test_in_place_methods_write_and_record_as_pytorch():
    for name in ["exp_", "log_", "sin_", "cos_", "tanh_", "sqrt_", "floor_", "ceil_", "trunc_",
                 "round_"]:
        data = RNG.uniform(0.5, 2.0, (3,))
        leaf_ours, leaf_theirs = tg.tensor(data, requires_grad=True), torch.tensor(
            data, requires_grad=True)
        a, b = leaf_ours * 1.5, leaf_theirs * 1.5
        assert getattr(a, name)() is a
        getattr(b, name)()
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)
        a.sum().backward()
        b.sum().backward()
        np.testing.assert_allclose(leaf_ours.grad.numpy(), leaf_theirs.grad.numpy(), rtol=1e-12)
    assert tg.sin_(tg.tensor([0.0])).tolist() == [0.0]


def test_in_place_shape_methods():
    a = tg.arange(6.0)
    view = a.view(2, 3)
    assert view.unsqueeze_(0).shape == (1, 2, 3) and view.squeeze_().shape == (2, 3)
    assert view.t_().shape == (3, 2)
    view[0, 0] = 10.0
    assert a[0].item() == 10.0   # still the same memory
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        tg.ones(2, requires_grad=True).unsqueeze_(0)


def test_out_arguments_write_into_and_return_the_given_tensor():
    a, b = tg.ones(2, 2), tg.full((2, 2), 2.0)
    c = tg.zeros(2, 2)
    for f in (tg.add, tg.mul, tg.matmul, tg.sub, tg.maximum):
        assert f(a, b, out=c) is c
        np.testing.assert_array_equal(c.numpy(), f(a, b).numpy())
    assert tg.rand(2, 2, out=c) is c and tg.zeros(3, out=c) is c and c.shape == (3,)
    assert tg.matmul(input=a, other=b).tolist() == [[4.0, 4.0], [4.0, 4.0]]
    with pytest.raises(RuntimeError, match="out=... arguments don't support automatic"):
        tg.add(tg.ones(2, requires_grad=True), 1, out=tg.zeros(2))
    with pytest.raises(RuntimeError, match="cuda"):
        tg.zeros(2, device="cuda")


def test_legacy_constructors_and_variable():
    assert tg.Tensor([1, 2]).dtype == tg.float32 and tg.Tensor(2, 3).shape == (2, 3)
    assert tg.Tensor().shape == (0,)
    assert tg.LongTensor([1, 2]).dtype == tg.int64 and tg.FloatTensor(4).shape == (4,)
    assert tg.DoubleTensor([[1]]).dtype == tg.float64 and tg.ByteTensor([1]).dtype == tg.uint8
    assert isinstance(tg.ones(1), tg.FloatTensor) and not isinstance(tg.ones(1), tg.LongTensor)
    assert repr(tg.FloatTensor) == repr(torch.FloatTensor) == "<class 'torch.FloatTensor'>"
    assert repr(tg.Tensor) == "<class 'torch.Tensor'>" and repr(type(tg.ones(1))) == repr(
        type(torch.ones(1)))
    from tapegrad.autograd import Variable
    x = tg.ones(2)
    v = Variable(x, requires_grad=True)
    assert v is not x and v.requires_grad and not x.requires_grad and isinstance(x, Variable)
    v.data[0] = 5.0
    assert x[0].item() == 5.0   # shares memory, as torch's Variable(t)
    with pytest.raises(TypeError, match="Variable data has to be a tensor"):
        Variable([1.0])


@pytest.mark.parametrize("value, error", [
    (0.0, TypeError), (np.zeros(2), TypeError), ("ones3", RuntimeError), ("double", RuntimeError)])
def test_grad_assignment_is_checked_as_pytorch(value, error):
    def make(m):
        return {"ones3": m.ones(3), "double": m.ones(2, dtype=m.float64)}.get(value, value) \
            if isinstance(value, str) else value
    with pytest.raises(error) as ours:
        tg.ones(2, requires_grad=True).grad = make(tg)
    with pytest.raises(error) as theirs:
        torch.ones(2, requires_grad=True).grad = make(torch)
    # the first sentence is PyTorch's
    assert str(ours.value).split(".")[0].split(",")[0] == str(theirs.value).split(".")[0].split(
        ",")[0]


def test_format_of_tensors_as_pytorch():
    for spec in [">7f", ".3f", "", "e", ">10.2e"]:
        assert format(tg.tensor(2.5), spec) == format(torch.tensor(2.5), spec)
    for spec in ["", ">5d", "d", "x"]:
        assert format(tg.tensor(3), spec) == format(torch.tensor(3), spec)
    assert f"{tg.tensor([1.0, 2.0])}" == f"{torch.tensor([1.0, 2.0])}"
    with pytest.raises(TypeError, match="unsupported format string passed to Tensor.__format__"):
        format(tg.tensor([1.0, 2.0]), ".2f")


def test_return_types_print_and_pickle_as_pytorch():
    data = np.array([[1.0, 3.0], [2.0, 0.0]], np.float32)
    for call in (lambda m, x: x.max(1), lambda m, x: m.min(x, dim=0), lambda m, x: m.sort(x),
                 lambda m, x: x.topk(1), lambda m, x: m.median(x, 1)):
        ours, theirs = call(tg, tg.tensor(data)), call(torch, torch.tensor(data))
        assert repr(ours) == repr(theirs)
        assert repr(pickle.loads(pickle.dumps(ours))) == repr(ours)
    values, indices = tg.tensor(data).max(dim=1)
    assert values.tolist() == [3.0, 2.0] and indices.tolist() == [1, 0]


def test_reflected_products_record_the_tensor_first():
    for m in (tg, torch):
        x = m.ones(2, requires_grad=True)
        for y in (2 * x, 1 + x, x * 2):
            node = y.grad_fn.next_functions[0][0]
            assert type(node).__name__ == "AccumulateGrad", (m, y)
    a = tg.linspace(0.0, 1.0, 3, requires_grad=True)
    d = 2 * tg.sin(a) + 1
    chain = d.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0]
    assert type(chain).__name__ == "AccumulateGrad" and chain.next_functions == ()


LOSSES = ["l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy_with_logits",
          "mse_loss"]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_grad_fn_names_of_composite_functions(reduction):
    x, t = RNG.standard_normal(4).astype(np.float32), RNG.random(4).astype(np.float32)
    for name in LOSSES:
        ours = getattr(F, name)(tg.tensor(x, requires_grad=True), tg.tensor(t), reduction=reduction)
        theirs = getattr(torch.nn.functional, name)(torch.tensor(x, requires_grad=True),
                                                    torch.tensor(t), reduction=reduction)
        assert ours.grad_fn.name() == type(theirs.grad_fn).__name__, name
        np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-5)
    logits, target = RNG.standard_normal((3, 4)).astype(np.float32), np.array([0, 3, 1])
    for name in ["cross_entropy", "nll_loss"]:
        ours = getattr(F, name)(tg.tensor(logits, requires_grad=True), tg.tensor(target),
                                reduction=reduction)
        theirs = getattr(torch.nn.functional, name)(torch.tensor(logits, requires_grad=True),
                                                    torch.tensor(target), reduction=reduction)
        assert ours.grad_fn.name() == type(theirs.grad_fn).__name__, name


def test_grad_fn_names_of_layers_and_activations():
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    cases = [("avg_pool2d", (2,)), ("layer_norm", ((4,),)), ("gelu", ()), ("silu", ()),
             ("leaky_relu", ()), ("elu", ()), ("hardtanh", ()), ("relu6", ()), ("logsigmoid", ())]
    for name, args in cases:
        ours = getattr(F, name)(tg.tensor(x, requires_grad=True), *args)
        theirs = getattr(torch.nn.functional, name)(torch.tensor(x, requires_grad=True), *args)
        assert ours.grad_fn.name() == type(theirs.grad_fn).__name__, name
    table = tg.tensor(RNG.standard_normal((5, 3)), requires_grad=True)
    assert type(tg.nn.functional.embedding(tg.tensor([1, 4]), table).grad_fn).__name__ == \
        "EmbeddingBackward0"
    plain = tg.tensor(x)  # no graph: nothing to rename, and the input is never renamed
    assert F.dropout(plain, 0.0) is plain


@pytest.mark.parametrize("size", [(7, 7), (5, 3), (3, None), (1, 1), (16, 13)])
def test_adaptive_avg_pool2d_for_any_output_size(size):
    x = RNG.standard_normal((2, 3, 16, 13))
    ours = F.adaptive_avg_pool2d(tg.tensor(x, requires_grad=True), size)
    a = torch.tensor(x, requires_grad=True)
    theirs = torch.nn.functional.adaptive_avg_pool2d(a, size)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-12)
    w = RNG.standard_normal(tuple(theirs.shape))
    xt = tg.tensor(x, requires_grad=True)
    (F.adaptive_avg_pool2d(xt, size) * tg.tensor(w)).sum().backward()
    (theirs * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), a.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_convolution_output_can_be_viewed_as_pytorch_allows():
    x = tg.randn(2, 1, 12, 12)
    conv = tg.nn.Conv2d(1, 4, 3)
    y = tg.nn.functional.max_pool2d(tg.nn.functional.relu(conv(x)), 2)
    flat = y.view(-1, 4 * 5 * 5)     # raised "view size is not compatible" before
    flat.sum().backward()
    assert flat.shape == (2, 100) and conv.weight.grad.shape == (4, 1, 3, 3)
    assert conv(x).is_contiguous()


def test_profiler_table_lists_operations_as_pytorch():
    x = tg.ones(2, 3, requires_grad=True)
    y = tg.full((2, 3), 2.0, requires_grad=True)
    with tg.autograd.profiler.profile() as prof:
        for _ in range(4):
            x = (x / y) * y
        with tg.profiler.record_function("block"):
            x.exp()
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)
    lines = table.splitlines()
    assert lines[1].split() == ["Name", "Self", "CPU", "%", "Self", "CPU", "CPU", "total", "%",
                                "CPU", "total", "CPU", "time", "avg", "#", "of", "Calls"]
    counts = {line.split()[0]: int(line.split()[-1]) for line in lines[3:-2]}
    assert counts == {"aten::div": 4, "aten::mul": 4, "aten::exp": 1, "block": 1}
    assert lines[-1].startswith("Self CPU time total:")
    assert tg.Tensor._bind.__func__.__name__ == "_bind" and "profiler" not in \
        tg.Tensor._bind.__func__.__module__   # the timing hook is removed on exit
    with pytest.raises(RuntimeError, match="cuda"):
        tg.autograd.profiler.profile(use_cuda=True)


def test_summary_writer_files_read_back_by_tensorboard(tmp_path):
    from tapegrad.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(tmp_path / "run")) as writer:
        for step in range(3):
            writer.add_scalar("Loss/train", tg.tensor(1.0 / (step + 1)), step)
        writer.add_scalars("Loss", {"train": 0.5, "valid": tg.tensor(0.25)}, 7)
        with pytest.raises(NotImplementedError, match="add_graph"):
            writer.add_graph(tg.nn.Linear(2, 2), tg.ones(1, 2))
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    scalars = events.Scalars("Loss/train")
    assert [e.step for e in scalars] == [0, 1, 2]
    assert [e.value for e in scalars] == pytest.approx([1.0, 0.5, 1 / 3])
    valid = accumulator.EventAccumulator(str(tmp_path / "run" / "Loss_valid"))
    valid.Reload()
    assert [(e.step, e.value) for e in valid.Scalars("Loss")] == [(7, 0.25)]


def test_event_file_framing_checksums():
    from tapegrad.utils import tensorboard as tb
    # CRC-32C check value of "123456789" (RFC 3720), and TensorBoard's masking of it
    assert tb._crc32c(b"123456789") == 0xE3069283
    assert tb._masked_crc(b"123456789") == (((0xE3069283 >> 15) | (0xE3069283 << 17))
                                             + 0xA282EAD8) & 0xFFFFFFFF


def test_dtype_information_and_random_state():
    assert repr(tg.finfo(tg.float32)) == repr(torch.finfo(torch.float32))
    assert repr(tg.iinfo(tg.int64)) == repr(torch.iinfo(torch.int64))
    assert tg.finfo(tg.float64).eps == torch.finfo(torch.float64).eps
    for a, b in [("int64", "float32"), ("int32", "int64"), ("bool", "float64"),
                 ("float32", "float64"), ("uint8", "int8")]:
        ours = tg.promote_types(getattr(tg, a), getattr(tg, b))
        assert ours.name == str(torch.promote_types(getattr(torch, a), getattr(torch, b)))[6:]
    state = tg.get_rng_state()
    first = tg.rand(3)
    tg.set_rng_state(state)
    assert tg.equal(tg.rand(3), first)
    with tg.inference_mode():
        assert not (tg.ones(1, requires_grad=True) * 2).requires_grad
    assert tg.range(1, 4).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert sorted(tg.randperm(6).tolist()) == list(range(6))
    assert tg.logspace(0, 2, 3).tolist() == [1.0, 10.0, 100.0]


def test_torch_functional_module_and_constants():
    import tapegrad.functional as TF
    assert TF.einsum is tg.einsum and TF.tensordot is tg.tensordot
    shapes = [t.shape for t in TF.broadcast_tensors(tg.ones(3, 1), tg.ones(4))]
    assert shapes == [(3, 4), (3, 4)] and TF.broadcast_shapes((2, 1), (3,)) == (2, 3)
    assert tg.pi == math.pi


class _Pair(tg.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = tg.nn.Linear(3, 2)
        self.register_buffer("steps", tg.arange(4.0)[1:3])   # a view of a bigger tensor


def test_save_and_load_as_the_tutorials_do(tmp_path):
    model = _Pair()
    path = tmp_path / "weights.pth"
    tg.save(model.state_dict(), path)
    again = _Pair()
    again.load_state_dict(tg.load(path))                  # weights_only=True by default
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and tg.equal(a, b)
    assert tg.load(path)["steps"].tolist() == [1.0, 2.0]

    whole = tmp_path / "model.pth"
    tg.save(model, whole)
    with pytest.raises(pickle.UnpicklingError) as refused:
        tg.load(whole)
    message = str(refused.value)
    assert message.startswith("Weights only load failed. This file can still be loaded")
    assert f"Unsupported global: GLOBAL {__name__}._Pair was not an allowed global" in message
    assert isinstance(tg.load(whole, weights_only=False), _Pair)
    with tg.serialization.safe_globals([_Pair, tg.nn.Linear]):
        assert isinstance(tg.load(whole), _Pair)
    with pytest.raises(pickle.UnpicklingError):   # the allowance ended with the block
        tg.load(whole)


def test_tensors_pickle_as_data_and_requires_grad():
    base = tg.arange(6.0).reshape(2, 3)
    for t in (base, base[1], base.t(), base[:, ::2], tg.ones(2, requires_grad=True) * 2):
        back = pickle.loads(pickle.dumps(t))
        assert back.tolist() == t.tolist() and back.dtype == t.dtype
        assert back.requires_grad == t.requires_grad and back.grad_fn is None


def _copy_parameters(src, dst):
    names = [n for n, _ in src.named_parameters()]
    assert names == [n for n, _ in dst.named_parameters()]
    with tg.no_grad():
        for a, b in zip(src.parameters(), dst.parameters()):
            b.copy_(tg.tensor(a.detach().numpy()))


RNN_CASES = [("LSTM", {}), ("GRU", {}), ("RNN", {}),
             ("LSTM", {"num_layers": 2, "bidirectional": True}),
             ("GRU", {"batch_first": True, "num_layers": 2}),
             ("RNN", {"nonlinearity": "relu", "bias": False})]


@pytest.mark.parametrize("name, options", RNN_CASES, ids=[f"{n}-{o}" for n, o in RNN_CASES])
def test_recurrent_layers_match_pytorch(name, options):
    theirs = getattr(torch.nn, name)(3, 4, **options).double()
    ours = getattr(tg.nn, name)(3, 4, **options).double()
    assert repr(ours) == repr(theirs)
    _copy_parameters(theirs, ours)
    x = RNG.standard_normal((5, 2, 3))
    xa, xb = torch.tensor(x, requires_grad=True), tg.tensor(x, requires_grad=True)
    out_a, h_a = theirs(xa)
    out_b, h_b = ours(xb)
    np.testing.assert_allclose(out_b.detach().numpy(), out_a.detach().numpy(), rtol=1e-10)
    if name == "LSTM":
        np.testing.assert_allclose(h_b[1].detach().numpy(), h_a[1].detach().numpy(), rtol=1e-10)
        h_a, h_b = h_a[0], h_b[0]
    (out_a.sum() + (h_a ** 2).sum()).backward()
    (out_b.sum() + (h_b ** 2).sum()).backward()
    np.testing.assert_allclose(xb.grad.numpy(), xa.grad.numpy(), rtol=1e-9)
    for a, b in zip(theirs.parameters(), ours.parameters()):
        np.testing.assert_allclose(b.grad.numpy(), a.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_lstm_steps_with_a_given_state_and_cells_match_pytorch():
    theirs, ours = torch.nn.LSTM(3, 3).double(), tg.nn.LSTM(3, 3).double()
    _copy_parameters(theirs, ours)
    x, h, c = (RNG.standard_normal((1, 1, 3)) for _ in range(3))
    _, (ha, ca) = theirs(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
    _, (hb, cb) = ours(tg.tensor(x), (tg.tensor(h), tg.tensor(c)))
    np.testing.assert_allclose(cb.detach().numpy(), ca.detach().numpy(), rtol=1e-10)
    for cell in ["LSTMCell", "GRUCell", "RNNCell"]:
        theirs, ours = getattr(torch.nn, cell)(3, 4).double(), getattr(tg.nn, cell)(3, 4).double()
        assert repr(ours) == repr(theirs)
        _copy_parameters(theirs, ours)
        x = RNG.standard_normal((2, 3))
        a, b = theirs(torch.tensor(x)), ours(tg.tensor(x))
        a, b = (a[0], b[0]) if cell == "LSTMCell" else (a, b)
        np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=1e-10)
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        tg.nn.GRU(3, 4)(tg.ones(2, 1, 5))


def test_cat_of_zero_dimensional_tensors_is_refused_as_pytorch():
    for m in (tg, torch):
        with pytest.raises(RuntimeError, match=r"zero-dimensional tensor \(at position 1\) cannot "
                                               "be concatenated"):
            m.cat([m.ones(1), m.tensor(2.0)])


def test_more_of_torch_utils_data():
    from tapegrad.utils import data
    tg.manual_seed(0)
    assert sorted(data.SubsetRandomSampler([5, 6, 7])) == [5, 6, 7]
    assert list(data.WeightedRandomSampler([0.0, 0.0, 1.0], 4)) == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        data.WeightedRandomSampler([1.0], 0)
    assert data.get_worker_info() is None
    pair = data.StackDataset(tg.arange(3), tg.arange(3) * 2)
    assert len(pair) == 3 and [int(v) for v in pair[1]] == [1, 2]
    assert list(data.ChainDataset([[1, 2], [3]])) == [1, 2, 3]
    loader = data.DataLoader(data.TensorDataset(tg.arange(10.0)), batch_size=4,
                             sampler=data.SubsetRandomSampler(list(range(8))), num_workers=2)
    batches = [b[0] for b in loader]
    assert [len(b) for b in batches] == [4, 4]
    assert sorted(tg.cat(batches).tolist()) == [float(i) for i in range(8)]


def test_set_default_dtype_as_pytorch():
    try:
        for m in (tg, torch):
            m.set_default_dtype(m.float64)
        for make in (lambda m: m.tensor([1.5]), lambda m: m.ones(2), lambda m: m.arange(3.0),
                     lambda m: m.randn(2), lambda m: m.Tensor([1]), lambda m: m.arange(3) * 1.5,
                     lambda m: m.nn.Linear(2, 2).weight, lambda m: m.tensor([1.5], dtype=m.float32),
                     lambda m: m.linspace(0, 1, 3)):
            ours, theirs = make(tg), make(torch)
            assert ours.dtype.name == str(theirs.dtype)[6:]
        assert repr(tg.tensor([1.5])) == repr(torch.tensor([1.5]))
        assert repr(tg.tensor([1.5], dtype=tg.float32)) == repr(torch.tensor([1.5],
                                                                             dtype=torch.float32))
        assert tg.get_default_dtype() == tg.float64
        with pytest.raises(TypeError, match="only floating-point types"):
            tg.set_default_dtype(tg.int64)
    finally:
        tg.set_default_dtype(tg.float32)
        torch.set_default_dtype(torch.float32)
    assert repr(tg.tensor([1.5])) == "tensor([1.5000])"


F_CASES = [
    ("selu", lambda F, a: F.selu(a), [(3, 4)]),
    ("celu", lambda F, a: F.celu(a, 0.7), [(3, 4)]),
    ("hardsigmoid", lambda F, a: F.hardsigmoid(a * 3), [(3, 4)]),
    ("hardswish", lambda F, a: F.hardswish(a * 3), [(3, 4)]),
    ("softshrink", lambda F, a: F.softshrink(a), [(3, 4)]),
    ("tanhshrink", lambda F, a: F.tanhshrink(a), [(3, 4)]),
    ("threshold", lambda F, a: F.threshold(a, 0.1, 20.0), [(3, 4)]),
    ("prelu", lambda F, a, w: F.prelu(a, w), [(2, 3, 4), (3,)]),
    ("glu", lambda F, a: F.glu(a, 1), [(3, 4)]),
    ("max_pool1d", lambda F, a: F.max_pool1d(a, 3, 2, 1), [(2, 3, 9)]),
    ("avg_pool1d", lambda F, a: F.avg_pool1d(a, 2), [(2, 3, 8)]),
    ("adaptive_avg_pool1d", lambda F, a: F.adaptive_avg_pool1d(a, 3), [(2, 3, 8)]),
    ("group_norm", lambda F, a, w, b: F.group_norm(a, 2, w, b), [(2, 4, 3, 3), (4,), (4,)]),
    ("instance_norm", lambda F, a: F.instance_norm(a), [(2, 3, 4, 4)]),
    ("cosine_similarity", lambda F, a, b: F.cosine_similarity(a, b), [(3, 4), (3, 4)]),
    ("pairwise_distance", lambda F, a, b: F.pairwise_distance(a, b), [(3, 4), (3, 4)]),
    ("pixel_shuffle", lambda F, a: F.pixel_shuffle(a, 2), [(1, 8, 2, 3)]),
    ("interpolate nearest", lambda F, a: F.interpolate(a, scale_factor=2), [(1, 2, 3, 3)]),
    ("interpolate size", lambda F, a: F.interpolate(a, size=(5, 2)), [(1, 2, 3, 4)]),
    ("attention", lambda F, q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     [(2, 3, 4), (2, 3, 4), (2, 3, 4)]),
    ("margin_ranking", lambda F, a, b: F.margin_ranking_loss(a, b, (a * b).sign(), 0.1),
     [(5,), (5,)]),
    ("soft_margin", lambda F, a, b: F.soft_margin_loss(a, b.detach().sign()), [(5,), (5,)]),
    ("cosine_embedding", lambda F, a, b: F.cosine_embedding_loss(a, b, a[:, 0].sign(), 0.2),
     [(3, 4), (3, 4)]),
    ("triplet_margin", lambda F, a, b, c: F.triplet_margin_loss(a, b, c), [(3, 4)] * 3),
    ("poisson_nll", lambda F, a, b: F.poisson_nll_loss(a, b.abs()), [(5,), (5,)]),
    ("gaussian_nll", lambda F, a, b, v: F.gaussian_nll_loss(a, b, v * v + 0.1), [(5,)] * 3),
]


@pytest.mark.parametrize("name, call, shapes", F_CASES, ids=[c[0] for c in F_CASES])
def test_more_functional_matches_pytorch(name, call, shapes):
    pairs = [_pair(s) for s in shapes]
    ours = call(F, *[p[0] for p in pairs])
    theirs = call(torch.nn.functional, *[p[1] for p in pairs])
    # float64 throughout; a few of PyTorch's kernels round a constant to float32 (1e-8 off)
    np.testing.assert_allclose(_np(ours), _np(theirs), rtol=1e-7, atol=1e-12)
    weights = RNG.standard_normal(tuple(theirs.shape))
    (ours * tg.tensor(weights)).sum().backward()
    (theirs * torch.tensor(weights)).sum().backward()
    for a, b in pairs:
        if b.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-7, atol=1e-11)


def test_more_layers_print_and_compute_as_pytorch():
    layers = [("SELU", ()), ("Hardswish", ()), ("Softshrink", (0.3,)), ("Threshold", (0.1, 2.0)),
              ("PReLU", (6,)), ("GroupNorm", (3, 6)), ("InstanceNorm2d", (6,)),
              ("Dropout2d", (0.3,)), ("MaxPool1d", (2,)), ("Upsample", ()), ("ZeroPad2d", (1,)),
              ("GLU", ()), ("Softmax2d", ())]
    for name, args in layers:
        kwargs = {"scale_factor": 2} if name == "Upsample" else {}
        ours, theirs = getattr(tg.nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args,
                                                                                     **kwargs)
        assert repr(ours) == repr(theirs), name
        if name in ("Dropout2d",):
            continue
        x = RNG.standard_normal((2, 6, 4, 4) if name != "MaxPool1d" else (2, 6, 8))
        a = ours.double()(tg.tensor(x)) if list(ours.parameters()) else ours(tg.tensor(x))
        b = theirs.double()(torch.tensor(x))
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-9, atol=1e-12, err_msg=name)
    model = tg.nn.DataParallel(tg.nn.Linear(3, 2))
    assert model(tg.ones(4, 3)).shape == (4, 2) and isinstance(model.module, tg.nn.Linear)


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_and_transformer_layer_match_pytorch(batch_first):
    theirs = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first)
    ours = tg.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first)
    theirs, ours = theirs.double(), ours.double()
    _copy_parameters(theirs, ours)
    x = RNG.standard_normal((3, 2, 8))
    seq = 2 if batch_first else 3
    mask = np.triu(np.ones((seq, seq), bool), 1)
    xa, xb = torch.tensor(x, requires_grad=True), tg.tensor(x, requires_grad=True)
    a = theirs(xa, src_mask=torch.tensor(mask))
    b = ours(xb, src_mask=tg.tensor(mask))
    np.testing.assert_allclose(_np(b), _np(a), rtol=1e-9, atol=1e-12)
    a.sum().backward()
    b.sum().backward()
    np.testing.assert_allclose(xb.grad.numpy(), xa.grad.numpy(), rtol=1e-8, atol=1e-11)
    mha_a = torch.nn.MultiheadAttention(8, 4, batch_first=batch_first).double()
    mha_b = tg.nn.MultiheadAttention(8, 4, batch_first=batch_first).double()
    _copy_parameters(mha_a, mha_b)
    pad = np.zeros((3, 2) if batch_first else (2, 3), bool)
    pad[0, -1] = True
    out_a, w_a = mha_a(*(torch.tensor(x),) * 3, key_padding_mask=torch.tensor(pad))
    out_b, w_b = mha_b(*(tg.tensor(x),) * 3, key_padding_mask=tg.tensor(pad))
    np.testing.assert_allclose(_np(out_b), _np(out_a), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(_np(w_b), _np(w_a), rtol=1e-9, atol=1e-12)


def test_summary_writer_histograms_and_images(tmp_path):
    import struct
    import zlib
    from tapegrad.utils.tensorboard import SummaryWriter
    data = RNG.standard_normal(500)
    image = np.zeros((3, 4, 5), np.float32)
    image[0] = 1.0                        # red, as floats in [0, 1]
    with SummaryWriter(str(tmp_path)) as writer:
        writer.add_histogram("weights", tg.tensor(data), 3)
        writer.add_image("red", tg.tensor(image), 1)
        writer.add_image("gray", np.full((4, 5), 128, np.uint8), 2, dataformats="HW")
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(tmp_path), size_guidance={"images": 0,
                                                                       "histograms": 0})
    events.Reload()
    histogram = events.Histograms("weights")[0]
    assert histogram.step == 3 and histogram.histogram_value.num == 500
    assert histogram.histogram_value.sum == pytest.approx(data.sum())
    assert sum(histogram.histogram_value.bucket) == 500
    for tag, channels, first_pixel in [("red", 3, [255, 0, 0]), ("gray", 1, [128])]:
        picture = events.Images(tag)[0]
        assert (picture.width, picture.height) == (5, 4)
        png = picture.encoded_image_string
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        idat = png.index(b"IDAT")
        length = struct.unpack(">I", png[idat - 4:idat])[0]
        rows = zlib.decompress(png[idat + 4:idat + 4 + length])
        assert (width, height) == (5, 4) and len(rows) == height * (1 + width * channels)
        assert list(rows[1:1 + channels]) == first_pixel


def test_randint_forms_and_global_settings_as_pytorch():
    for args, kwargs in [((10, (3,)), {}), ((0, 10, (2, 2)), {"dtype": "int32"}),
                         ((3, 5), {"size": (4,)}), ((5,), {"size": (4,)})]:
        if "dtype" in kwargs:
            ours = tg.randint(*args, dtype=tg.int32)
            theirs = torch.randint(*args, dtype=torch.int32)
        else:
            ours, theirs = tg.randint(*args, **kwargs), torch.randint(*args, **kwargs)
        assert ours.shape == tuple(theirs.shape) and ours.dtype.name == str(theirs.dtype)[6:]
    values = tg.randint(3, 5, (200,))
    assert set(values.tolist()) == {3, 4}
    tg.use_deterministic_algorithms(True)
    assert tg.are_deterministic_algorithms_enabled()
    tg.use_deterministic_algorithms(False)
    tg.set_float32_matmul_precision("high")
    assert tg.get_float32_matmul_precision() == "high"
    tg.set_float32_matmul_precision("highest")
    assert tg.get_num_threads() >= 1


@pytest.mark.parametrize("name, options", [
    ("Adadelta", {}), ("Adadelta", {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1}),
    ("Adadelta", {"maximize": True}), ("Adamax", {}),
    ("Adamax", {"lr": 0.05, "betas": (0.8, 0.99), "weight_decay": 0.01})])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_adadelta_and_adamax_follow_pytorch_for_50_steps(name, options, dtype):
    start = RNG.uniform(-1, 1, (2, 3)).astype(dtype)
    ours, theirs = tg.tensor(start, requires_grad=True), torch.tensor(start, requires_grad=True)
    opt_ours = getattr(tg.optim, name)([ours], **options)
    opt_theirs = getattr(torch.optim, name)([theirs], **options)
    assert repr(opt_ours) == repr(opt_theirs)
    for _ in range(50):
        for w, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            ((w ** 2).sum() + (w ** 3).sum()).backward()
            opt.step()
    rtol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=rtol,
                               atol=rtol)


def test_files_move_between_tapegrad_and_pytorch(tmp_path):
    import zipfile
    ours = tg.nn.Sequential(tg.nn.Linear(3, 2), tg.nn.ReLU(), tg.nn.Linear(2, 1))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    path = tmp_path / "ours.pth"
    tg.save(ours.state_dict(), path)
    assert zipfile.is_zipfile(path)                        # PyTorch's format
    theirs.load_state_dict(torch.load(path))               # weights_only=True in PyTorch too
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(tg.tensor(x)).detach().numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-6, atol=1e-7)
    torch.save({"model": theirs.state_dict(), "view": torch.arange(6.0).reshape(2, 3)[:, 1:],
                "ints": torch.tensor([1, 2]), "flag": torch.tensor([True]),
                "param": torch.nn.Parameter(torch.ones(2, dtype=torch.float64)),
                "size": torch.Size([2, 3]), "epoch": 3}, tmp_path / "theirs.pth")
    loaded = tg.load(tmp_path / "theirs.pth")
    fresh = tg.nn.Sequential(tg.nn.Linear(3, 2), tg.nn.ReLU(), tg.nn.Linear(2, 1))
    fresh.load_state_dict(loaded["model"])
    np.testing.assert_allclose(fresh(tg.tensor(x)).detach().numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-6, atol=1e-7)
    assert loaded["view"].tolist() == [[1.0, 2.0], [4.0, 5.0]]
    assert loaded["ints"].dtype == tg.int64 and loaded["flag"].dtype == tg.bool
    assert isinstance(loaded["param"], tg.nn.Parameter) and loaded["param"].dtype == tg.float64
    assert loaded["size"] == (2, 3) and loaded["epoch"] == 3
    # tensors of every dtype and layout PyTorch reads back the same
    mixed = {"t": tg.arange(12.0).reshape(3, 4).t(), "d": tg.ones(2, dtype=tg.float64),
             "scalar": tg.tensor(3), 
             "b": tg.tensor([True, False]), "u": tg.tensor([1, 2], dtype=tg.uint8),
             "p": tg.nn.Parameter(tg.zeros(2))}
    tg.save(mixed, tmp_path / "mixed.pth")
    back = torch.load(tmp_path / "mixed.pth")
    for key, value in mixed.items():
        assert back[key].tolist() == value.tolist() and str(back[key].dtype)[6:] == \
            value.dtype.name
    assert isinstance(back["p"], torch.nn.Parameter)


def test_files_of_the_earlier_pickle_format_still_load(tmp_path):
    path = tmp_path / "old.pth"
    tg.save({"w": tg.tensor([1.0, 2.0])}, path, _use_new_zipfile_serialization=False)
    assert tg.load(path)["w"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("data", [
    np.float16(1.5), np.int16(3), np.float32(2.0), np.float64(2.0), np.int32(4), np.bool_(True),
    np.uint8(3), 3, 2.5, True, [np.float16(1.5), np.float16(2.0)], [np.float64(1.0), 2.0],
    [np.int16(1), 2], [[np.int8(1)], [np.int8(2)]], (np.float32(1.0), 2), [np.bool_(True), True]],
    ids=repr)
def test_tensor_of_numpy_scalars_infers_torchs_dtype(data):
    torch = pytest.importorskip("torch")
    ours, theirs = tg.tensor(data), torch.tensor(data)
    assert str(ours.dtype) == str(theirs.dtype)
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
