"""torch.nn modules against PyTorch: outputs and gradients from the same weights, printing,
state_dict round trips, hooks, train/eval, default initialisation by distribution."""
import collections
import copy
import pickle

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import nn

torch = pytest.importorskip("torch")
tnn = torch.nn


def _copy_weights(src, dst):
    """Copy every parameter and buffer of a torch module into the tapegrad twin (same names)."""
    state = {k: tg.tensor(v.detach().numpy().copy()) for k, v in src.state_dict().items()}
    dst.load_state_dict(state)


def _compare(ours, theirs, *inputs, rtol=1e-5, atol=1e-6, dtype=np.float32):
    """Same forward values, and same gradients for every input and parameter."""
    _copy_weights(theirs, ours)
    ins_t = [torch.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    ins_o = [tg.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    out_t, out_o = theirs(*ins_t), ours(*ins_o)
    np.testing.assert_allclose(out_o.detach().numpy(), out_t.detach().numpy(), rtol=rtol,
                               atol=atol)
    cot = np.random.default_rng(7).standard_normal(tuple(out_t.shape)).astype(dtype)
    (out_t * torch.tensor(cot)).sum().backward()
    (out_o * tg.tensor(cot)).sum().backward()
    for a, b in zip(ins_o, ins_t):
        if b.requires_grad:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=rtol, atol=atol)
    named_t = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), named_t[name].grad.numpy(), rtol=rtol,
                                   atol=atol, err_msg=name)
    return out_o, out_t


rng = np.random.default_rng(0)


def _x(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


LAYERS = [
    ("Linear", lambda m: m.Linear(5, 3), [(4, 5)]),
    ("Linear_nobias_3d", lambda m: m.Linear(5, 3, bias=False), [(2, 4, 5)]),
    ("Bilinear", lambda m: m.Bilinear(3, 4, 2), [(5, 3), (5, 4)]),
    ("Conv1d", lambda m: m.Conv1d(4, 6, 3, stride=2, padding=1, groups=2), [(2, 4, 11)]),
    ("Conv2d", lambda m: m.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
     [(2, 3, 9, 8)]),
    ("Conv2d_same", lambda m: m.Conv2d(2, 2, 4, padding="same", bias=False), [(1, 2, 7, 7)]),
    ("MaxPool2d", lambda m: m.MaxPool2d(3, stride=2, padding=1), [(2, 3, 9, 8)]),
    ("AvgPool2d", lambda m: m.AvgPool2d(2), [(2, 3, 9, 8)]),
    ("LayerNorm", lambda m: m.LayerNorm((3, 4)), [(2, 5, 3, 4)]),
    ("BatchNorm1d", lambda m: m.BatchNorm1d(4), [(6, 4)]),
    ("BatchNorm1d_3d", lambda m: m.BatchNorm1d(4, momentum=None), [(6, 4, 3)]),
    ("BatchNorm2d", lambda m: m.BatchNorm2d(3, affine=False), [(4, 3, 5, 5)]),
    ("Flatten", lambda m: m.Flatten(), [(2, 3, 4)]),
    ("Unflatten", lambda m: m.Unflatten(1, (2, 6)), [(3, 12)]),
    ("ReLU", lambda m: m.ReLU(), [(4, 5)]),
    ("Tanh", lambda m: m.Tanh(), [(4, 5)]),
    ("Sigmoid", lambda m: m.Sigmoid(), [(4, 5)]),
    ("GELU", lambda m: m.GELU(), [(4, 5)]),
    ("GELU_tanh", lambda m: m.GELU(approximate="tanh"), [(4, 5)]),
    ("SiLU", lambda m: m.SiLU(), [(4, 5)]),
    ("Softmax", lambda m: m.Softmax(dim=1), [(4, 5)]),
    ("LogSoftmax", lambda m: m.LogSoftmax(dim=-1), [(4, 5)]),
    ("LeakyReLU", lambda m: m.LeakyReLU(0.2), [(4, 5)]),
    ("ELU", lambda m: m.ELU(alpha=0.7), [(4, 5)]),
    ("Softplus", lambda m: m.Softplus(), [(4, 5)]),
    ("Hardtanh", lambda m: m.Hardtanh(-0.5, 0.5), [(4, 5)]),
    ("Identity", lambda m: m.Identity(), [(4, 5)]),
    ("Sequential_mlp", lambda m: m.Sequential(m.Linear(6, 8), m.ReLU(), m.Linear(8, 3)),
     [(5, 6)]),
    ("Sequential_cnn", lambda m: m.Sequential(
        m.Conv2d(1, 4, 3, padding=1), m.ReLU(), m.MaxPool2d(2), m.Conv2d(4, 6, 3), m.Tanh(),
        m.AvgPool2d(2), m.Flatten(), m.Linear(6, 5)), [(3, 1, 10, 10)]),
]


@pytest.mark.parametrize("name,make,shapes", LAYERS, ids=[l[0] for l in LAYERS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_matches_torch(name, make, shapes, dtype):
    theirs, ours = make(tnn), make(nn)
    if dtype == np.float64:
        theirs, ours = theirs.double(), ours.double()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    _compare(ours, theirs, *[_x(*s, dtype=dtype) for s in shapes], dtype=dtype, **tol)
    assert repr(ours) == repr(theirs)


def test_embedding_with_padding_matches_torch():
    theirs, ours = tnn.Embedding(10, 4, padding_idx=2), nn.Embedding(10, 4, padding_idx=2)
    assert not ours.weight.detach().numpy()[2].any()  # the padding row starts at zero
    _copy_weights(theirs, ours)
    idx = np.array([[1, 2, 2], [9, 0, 1]])
    out_t, out_o = theirs(torch.tensor(idx)), ours(tg.tensor(idx))
    np.testing.assert_allclose(out_o.detach().numpy(), out_t.detach().numpy())
    (out_t ** 2).sum().backward()
    (out_o ** 2).sum().backward()
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-6)
    assert repr(ours) == repr(theirs)


def test_batchnorm_running_stats_and_eval_match_torch():
    theirs, ours = tnn.BatchNorm2d(3), nn.BatchNorm2d(3)
    for _ in range(3):
        x = _x(4, 3, 2, 2) * 3 + 1
        theirs(torch.tensor(x))
        ours(tg.tensor(x))
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(ours, key).numpy(), getattr(theirs, key).numpy(),
                                   rtol=1e-6)
    theirs.eval(), ours.eval()
    x = _x(2, 3, 2, 2)
    np.testing.assert_allclose(ours(tg.tensor(x)).detach().numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(tg.ones(1, 3))


def test_dropout_train_eval():
    tg.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = tg.ones(200, 50, requires_grad=True)
    y = drop(x)
    kept = y.detach().numpy() != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), kept / 0.75, rtol=1e-6)
    drop.eval()
    assert drop(x) is x
    assert repr(drop) == repr(tnn.Dropout(0.25))


LOSSES = [
    ("MSELoss", {}, "float"), ("L1Loss", {"reduction": "sum"}, "float"),
    ("SmoothL1Loss", {"beta": 0.5}, "float"), ("HuberLoss", {"delta": 0.7}, "float"),
    ("BCELoss", {}, "prob"), ("BCEWithLogitsLoss", {"reduction": "none"}, "binary"),
    ("CrossEntropyLoss", {}, "class"), ("CrossEntropyLoss", {"label_smoothing": 0.1}, "class"),
    ("CrossEntropyLoss", {"reduction": "sum", "ignore_index": 1}, "class"),
    ("NLLLoss", {}, "class"), ("KLDivLoss", {"reduction": "batchmean"}, "prob"),
]


@pytest.mark.parametrize("name,kwargs,kind", LOSSES)
def test_loss_modules_match_torch(name, kwargs, kind):
    x = _x(6, 4)
    if kind == "prob":
        x = 1 / (1 + np.exp(-x))
        target = rng.uniform(0.05, 0.95, (6, 4)).astype(np.float32)
    elif kind == "binary":
        target = (rng.uniform(size=(6, 4)) > 0.5).astype(np.float32)
    elif kind == "class":
        target = rng.integers(0, 4, 6)
    else:
        target = _x(6, 4)
    if name == "NLLLoss":
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    ours, theirs = getattr(nn, name)(**kwargs), getattr(tnn, name)(**kwargs)
    xo, xt = tg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    lo, lt = ours(xo, tg.tensor(target)), theirs(xt, torch.tensor(target))
    np.testing.assert_allclose(lo.detach().numpy(), lt.detach().numpy(), rtol=1e-5, atol=1e-6)
    lo.sum().backward()
    lt.sum().backward()
    np.testing.assert_allclose(xo.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert repr(ours) == repr(theirs)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.body = nn.Sequential(collections.OrderedDict(
            [("fc", nn.Linear(8, 4)), ("act", nn.ReLU())]))
        self.heads = nn.ModuleList([nn.Linear(4, 2) for _ in range(3)])
        self.extra = nn.ModuleDict({"norm": nn.LayerNorm(4)})
        self.scale = nn.Parameter(tg.ones(1))
        self.register_buffer("steps", tg.zeros(1))
        self.register_buffer("scratch", tg.zeros(2), persistent=False)

    def forward(self, x):
        h = self.conv(x).flatten(1)
        h = self.extra["norm"](self.body(h)) * self.scale
        return sum(head(h) for head in self.heads)


class TorchNet(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(1, 2, 3)
        self.body = tnn.Sequential(collections.OrderedDict(
            [("fc", tnn.Linear(8, 4)), ("act", tnn.ReLU())]))
        self.heads = tnn.ModuleList([tnn.Linear(4, 2) for _ in range(3)])
        self.extra = tnn.ModuleDict({"norm": tnn.LayerNorm(4)})
        self.scale = tnn.Parameter(torch.ones(1))
        self.register_buffer("steps", torch.zeros(1))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)

    def forward(self, x):
        h = self.conv(x).flatten(1)
        h = self.extra["norm"](self.body(h)) * self.scale
        return sum(head(h) for head in self.heads)


def test_custom_module_structure_printing_and_gradients():
    ours, theirs = Net(), TorchNet()
    assert "Torch" + repr(ours) == repr(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [type(m).__name__ for m in ours.children()] == \
        [type(m).__name__ for m in theirs.children()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _compare(ours, theirs, _x(3, 1, 4, 4), rtol=1e-4, atol=1e-5)  # LayerNorm amplifies rounding


def test_state_dict_round_trip_and_errors():
    a, b = Net(), Net()
    x = tg.tensor(_x(2, 1, 4, 4))
    assert not np.allclose(a(x).detach().numpy(), b(x).detach().numpy())
    result = b.load_state_dict(a.state_dict())
    assert repr(result) == "<All keys matched successfully>"
    np.testing.assert_array_equal(a(x).detach().numpy(), b(x).detach().numpy())
    assert b.conv.weight is not a.conv.weight  # values copied into b's own parameters
    state = a.state_dict()
    assert not state["conv.weight"].requires_grad
    # pickling (torch.save's way) keeps the values
    c = Net()
    c.load_state_dict(pickle.loads(pickle.dumps(state)))
    np.testing.assert_array_equal(c(x).detach().numpy(), a(x).detach().numpy())
    bad = dict(state)
    del bad["conv.bias"]
    bad["conv.weight"] = tg.zeros(3, 1, 3, 3)
    bad["surplus"] = tg.zeros(1)
    ours_msg = _error(lambda: b.load_state_dict(bad))
    t_state = {k: torch.tensor(v.numpy()) for k, v in bad.items()}
    theirs_msg = _error(lambda: TorchNet().load_state_dict(t_state))
    assert ours_msg.replace("Net", "TorchNet") == theirs_msg
    missing = b.load_state_dict({k: v for k, v in state.items() if k != "steps"}, strict=False)
    assert missing.missing_keys == ["steps"] and missing.unexpected_keys == []


def _error(fn):
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value)


def test_deepcopy_gives_independent_parameters():
    a = nn.Sequential(nn.Linear(2, 2))
    b = copy.deepcopy(a)
    assert isinstance(b[0].weight, nn.Parameter)
    b[0].weight.detach().zero_()  # shares memory with b.weight only
    assert a[0].weight.detach().numpy().any()


def test_forward_hooks_and_pre_hooks():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    seen = []
    h1 = model[0].register_forward_hook(lambda m, inp, out: seen.append(("post", out.shape)))
    h2 = model[0].register_forward_pre_hook(lambda m, inp: (inp[0] * 0,))
    out = model(tg.ones(2, 3))
    assert seen == [("post", tg.Size([2, 3]))]
    # the pre-hook zeroed the input: only the bias survives
    np.testing.assert_allclose(out.detach().numpy(),
                               np.maximum(model[0].bias.detach().numpy(), 0)[None].repeat(2, 0))
    h1.remove(), h2.remove()
    model[0].register_forward_hook(lambda m, inp, out: out * 2)
    np.testing.assert_allclose(model[0](tg.zeros(1, 3)).detach().numpy(),
                               2 * model[0].bias.detach().numpy()[None])
    model(tg.ones(1, 3))
    assert len(seen) == 1


def test_train_eval_apply_zero_grad_requires_grad():
    model = Net()
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    model(tg.tensor(_x(2, 1, 4, 4))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    names = []
    model.apply(lambda m: names.append(type(m).__name__))
    assert names[-1] == "Net" and names[0] == "Conv2d"
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())


def test_to_dtype_and_device():
    model = nn.Linear(2, 3)
    weight = model.weight
    assert model.to(tg.float64) is model and model.weight is weight
    assert model.weight.dtype == tg.float64
    assert model.to("cpu") is model and model.to(tg.device("cpu")) is model
    with pytest.raises(RuntimeError, match="torch.cuda.is_available"):
        model.to("cuda")
    with pytest.raises(RuntimeError, match="device='cpu'"):
        model.cuda()


def test_assignment_rules_match_torch():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Bad()
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign 'torch.FloatTensor' as parameter 'weight'"):
        m.weight = tg.ones(2, 2)
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'nope'"):
        m.nope
    m.weight = nn.Parameter(tg.ones(2, 2))
    assert list(dict(m.named_parameters())) == ["weight", "bias"]
    del m.bias
    assert list(dict(m.named_parameters())) == ["weight"]


def test_shared_parameters_are_listed_once():
    fc = nn.Linear(2, 2)
    model = nn.Sequential(fc, nn.ReLU(), fc)
    assert len(list(model.parameters())) == 2
    assert len(list(model.modules())) == 3


def test_sequential_and_modulelist_editing_like_torch():
    pairs = []
    for m in (nn, tnn):
        seq = m.Sequential(m.Linear(1, 2), m.ReLU(), m.Linear(2, 1))
        seq.append(m.Tanh())
        del seq[1]
        seq.insert(1, m.Sigmoid())
        lst = m.ModuleList([m.ReLU(), m.ReLU(), m.Tanh()])
        lst.extend([m.Tanh(), m.Tanh()])
        pairs.append((repr(seq), repr(seq[1:3]), len(seq), repr(lst), repr(lst[1:])))
    assert pairs[0] == pairs[1]


def test_default_initialisation_distributions():
    tg.manual_seed(0)
    fc = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    w = fc.weight.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound
    assert np.abs(fc.bias.detach().numpy()).max() <= bound
    conv = nn.Conv2d(8, 16, 5)
    cbound = 1 / np.sqrt(8 * 25)
    cw = conv.weight.detach().numpy()
    assert np.abs(cw).max() <= cbound and abs(cw.std() - cbound / np.sqrt(3)) < 0.05 * cbound
    emb = nn.Embedding(1000, 50).weight.detach().numpy()
    assert abs(emb.mean()) < 0.02 and abs(emb.std() - 1) < 0.02
    norm = nn.LayerNorm(5)
    assert (norm.weight.detach().numpy() == 1).all() and (norm.bias.detach().numpy() == 0).all()
    t = tg.empty(300, 200)
    nn.init.xavier_normal_(t, gain=nn.init.calculate_gain("tanh"))
    assert abs(t.numpy().std() - 5 / 3 * np.sqrt(2 / 500)) < 0.01
    nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")
    assert abs(t.numpy().std() - np.sqrt(2 / 300)) < 0.01
    nn.init.trunc_normal_(t, std=1.0, a=-0.5, b=0.5)
    assert np.abs(t.numpy()).max() <= 0.5
    nn.init.orthogonal_(t)
    np.testing.assert_allclose(t.numpy().T @ t.numpy(), np.eye(200), atol=1e-5)
    assert nn.init.calculate_gain("leaky_relu", 0.2) == tnn.init.calculate_gain("leaky_relu", 0.2)


def test_clip_grad_norm_matches_torch():
    for norm_type in (2.0, 1.0, float("inf")):
        grads = [_x(3, 4) * 5, _x(7)]
        ours = [tg.zeros(g.shape, requires_grad=True) for g in grads]
        theirs = [torch.zeros(g.shape, requires_grad=True) for g in grads]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = tg.tensor(g), torch.tensor(g)
        n1 = nn.utils.clip_grad_norm_(ours, 1.5, norm_type)
        n2 = tnn.utils.clip_grad_norm_(theirs, 1.5, norm_type)
        np.testing.assert_allclose(float(n1), float(n2), rtol=1e-6)
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6, atol=1e-7)
    small = tg.zeros(2, requires_grad=True)
    small.grad = tg.tensor([0.1, 0.1])
    nn.utils.clip_grad_norm_([small], 10.0)
    np.testing.assert_allclose(small.grad.numpy(), [0.1, 0.1])


def test_grad_fn_names_follow_torch():
    cases = [
        lambda m, lib: m.Linear(3, 2)(lib.ones(4, 3)),
        lambda m, lib: m.Linear(3, 2)(lib.ones(4, 2, 3)),
        lambda m, lib: m.Linear(3, 2)(lib.ones(3)),
        lambda m, lib: m.Linear(3, 2, bias=False)(lib.ones(4, 3)),
        lambda m, lib: m.Conv2d(1, 2, 3)(lib.ones(1, 1, 5, 5)),
        lambda m, lib: m.Conv1d(1, 2, 3, bias=False)(lib.ones(1, 1, 5)),
        lambda m, lib: m.MaxPool2d(2)(lib.ones(1, 1, 4, 4, requires_grad=True)),
        lambda m, lib: m.LayerNorm(3)(lib.ones(2, 3)),
        lambda m, lib: m.BatchNorm1d(3)(lib.randn(4, 3)),
    ]
    for make in cases:
        assert make(nn, tg).grad_fn.name() == make(tnn, torch).grad_fn.name()


def test_parameter_behaves_like_torch():
    p = nn.Parameter(tg.ones(2))
    assert str(p) == str(tnn.Parameter(torch.ones(2)))
    assert p.requires_grad and p.is_leaf
    q = p * 2  # results are plain tensors, not parameters
    assert type(q) is tg.Tensor and type(p[0]) is not nn.Parameter
    frozen = nn.Parameter(tg.ones(2), requires_grad=False)
    assert not frozen.requires_grad


# ---------------------------------------------------------------------------------------------
# A training script as PyTorch's tutorials write it, run unchanged under both libraries
# ---------------------------------------------------------------------------------------------

TUTORIAL = '''
import numpy as np
import {lib} as torch
import {lib}.nn as nn
import {lib}.nn.functional as F
from {lib}.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
rng = np.random.default_rng(0)
angles = rng.uniform(0, 3 * np.pi, 600)
labels = rng.integers(0, 3, 600)
points = np.stack([angles * np.cos(angles + 2.1 * labels), angles * np.sin(angles + 2.1 * labels)],
                  1) / 10 + rng.normal(0, 0.03, (600, 2))
dataset = TensorDataset(torch.tensor(points, dtype=torch.float32), torch.tensor(labels))
train_dataloader = DataLoader(dataset, batch_size=32, shuffle=True)


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(2, 64),
            nn.ReLU(),
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 3),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


model = NeuralNetwork().to(device)
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)


def train(dataloader, model, loss_fn, optimizer):
    model.train()
    total = 0.0
    for batch, (X, y) in enumerate(dataloader):
        X, y = X.to(device), y.to(device)
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        total += loss.item() * len(X)
    return total / len(dataloader.dataset)


def evaluate(model):
    model.eval()
    with torch.no_grad():
        X, y = dataset.tensors
        pred = model(X)
        return loss_fn(pred, y).item(), (pred.argmax(1) == y).type(torch.float).mean().item()


first = evaluate(model)[0]
for t in range(25):
    train(train_dataloader, model, loss_fn, optimizer)
    scheduler.step()
final_loss, accuracy = evaluate(model)
'''


def _run_tutorial(lib):
    scope = {}
    exec(compile(TUTORIAL.format(lib=lib), f"<tutorial {lib}>", "exec"), scope)
    return scope["first"], scope["final_loss"], scope["accuracy"]


def test_tutorial_training_script_learns_like_torch():
    first, final, accuracy = _run_tutorial("tapegrad")
    t_first, t_final, t_accuracy = _run_tutorial("torch")
    assert abs(first - t_first) < 0.15  # both start near log(3) from PyTorch's default init
    assert final < 0.7 * first and t_final < 0.7 * t_first
    assert final < 1.3 * t_final + 0.05 and accuracy > t_accuracy - 0.08


CNN_TUTORIAL = '''
import numpy as np
import {lib} as torch
import {lib}.nn as nn
import {lib}.nn.functional as F
import {lib}.optim as optim

torch.manual_seed(0)
rng = np.random.default_rng(1)
labels = rng.integers(0, 2, 256)
images = rng.normal(0, 0.3, (256, 1, 28, 28)).astype(np.float32)
images[labels == 1, :, 8:20, 12:16] += 1.0   # class 1: a vertical bar
images[labels == 0, :, 12:16, 8:20] += 1.0   # class 0: a horizontal bar
inputs, targets = torch.tensor(images), torch.tensor(labels)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 2)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


net = Net()
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(net.parameters(), lr=1e-3)
losses = []
for epoch in range(3):
    for i in range(0, 256, 32):
        optimizer.zero_grad()
        loss = criterion(net(inputs[i:i + 32]), targets[i:i + 32])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
'''


def test_cnn_tutorial_learns_like_torch():
    results = []
    for lib in ("tapegrad", "torch"):
        scope = {}
        exec(compile(CNN_TUTORIAL.format(lib=lib), f"<cnn {lib}>", "exec"), scope)
        results.append(scope["losses"])
    ours, theirs = results
    assert abs(ours[0] - theirs[0]) < 0.1  # both start near log(2)
    assert np.mean(ours[-4:]) < 0.3 and np.mean(theirs[-4:]) < 0.3


def test_save_load_state_dict_and_weights_only(tmp_path):
    model = Net()
    path = tmp_path / "model.pth"
    tg.save(model.state_dict(), path)
    fresh = Net()
    fresh.load_state_dict(tg.load(path, weights_only=True))
    x = tg.tensor(_x(2, 1, 4, 4))
    np.testing.assert_array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())
    tg.save(model, str(path))
    with pytest.raises(pickle.UnpicklingError, match="weights_only=False"):
        tg.load(path)
    whole = tg.load(path, weights_only=False)
    np.testing.assert_array_equal(whole(x).detach().numpy(), model(x).detach().numpy())


def test_devices_and_new_tensor_factories_follow_torch():
    assert repr(tg.device("cpu")) == repr(torch.device("cpu"))
    assert repr(tg.device("cuda:1")) == repr(torch.device("cuda:1"))
    assert str(tg.device("cuda", 0)) == str(torch.device("cuda", 0)) == "cuda:0"
    assert tg.device("cpu") == tg.ones(1).device and tg.ones(1).device.type == "cpu"
    assert not tg.cuda.is_available() and tg.cuda.device_count() == 0
    assert not tg.backends.mps.is_available() and not tg.accelerator.is_available()
    x = tg.ones(2, dtype=tg.float64)
    assert x.to("cpu") is x and x.to(tg.device("cpu")) is x and x.cpu() is x
    assert x.to(device="cpu", dtype=tg.float32).dtype == tg.float32
    for move in (lambda: x.to("cuda"), lambda: x.cuda(), lambda: x.to(device="cuda:0"),
                 lambda: tg.set_default_device("cuda")):
        with pytest.raises(RuntimeError, match="cuda.*live on the CPU"):
            move()
    tg.set_default_device("cpu")
    with pytest.raises(RuntimeError, match="Expected one of cpu, cuda"):
        tg.device("tpu")
    t = torch.ones(2, dtype=torch.float64)
    for ours, theirs in ((x.new_ones(3), t.new_ones(3)), (x.new_zeros((2, 2)), t.new_zeros((2, 2))),
                         (x.new_full((2,), 7), t.new_full((2,), 7)),
                         (x.new_tensor([1, 2]), t.new_tensor([1, 2])),
                         (x.new_ones(2, dtype=tg.int64), t.new_ones(2, dtype=torch.int64))):
        assert str(ours) == str(theirs)


FUNCTIONAL = [
    ("huber_loss", lambda F, a, b: F.huber_loss(a, b, delta=0.8)),
    ("kl_div", lambda F, a, b: F.kl_div(F.log_softmax(a, 1), F.softmax(b, 1),
                                        reduction="batchmean")),
    ("kl_div_log_target", lambda F, a, b: F.kl_div(a, b, reduction="sum", log_target=True)),
    ("hardtanh", lambda F, a, b: F.hardtanh(a, -0.3, 0.4) * b),
    ("relu6", lambda F, a, b: F.relu6(a * 5) * b),
    ("logsigmoid", lambda F, a, b: F.logsigmoid(a * 30) * b),
    ("softsign", lambda F, a, b: F.softsign(a) * b),
    ("mish", lambda F, a, b: F.mish(a) * b),
    ("softmin", lambda F, a, b: F.softmin(a, 1) * b),
    ("pad", lambda F, a, b: F.pad(a, (1, 2, 0, 1), value=0.5) ** 2),
    ("normalize", lambda F, a, b: F.normalize(a, dim=1) * b),
    ("normalize_p1", lambda F, a, b: F.normalize(a, p=1.0, dim=0) * b),
    ("dropout_eval", lambda F, a, b: F.dropout(a, 0.3, training=False) * b),
    ("layer_norm", lambda F, a, b: F.layer_norm(a, (4,), b[0], b[1])),
    ("bilinear", lambda F, a, b: F.bilinear(a, b, a[:2, :, None] * b[:2, None, :], b[0, :2])),
]


@pytest.mark.parametrize("name,fn", FUNCTIONAL, ids=[f[0] for f in FUNCTIONAL])
def test_functional_matches_torch(name, fn):
    a, b = _x(3, 4).astype(np.float64), _x(3, 4).astype(np.float64)
    b[0, 0] = 0.0  # an exact zero where masks and logs care
    results = []
    for lib in (tg, torch):
        ta, tb = lib.tensor(a, requires_grad=True), lib.tensor(b, requires_grad=True)
        F = lib.nn.functional
        out = fn(F, ta, tb)
        out.sum().backward()
        results.append((out.detach().numpy(), ta.grad.numpy(),
                        None if tb.grad is None else tb.grad.numpy()))
    for u, v in zip(*results):
        if v is None:
            assert u is None or not np.any(u)
        else:
            np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_functional_misc_against_torch():
    idx = np.array([[0, 3], [2, 2]])
    assert str(tg.nn.functional.one_hot(tg.tensor(idx), 5)) == \
        str(torch.nn.functional.one_hot(torch.tensor(idx), 5))
    w = _x(5, 3).astype(np.float64)
    for padding_idx in (None, 2, -3):
        tw, ow = torch.tensor(w, requires_grad=True), tg.tensor(w, requires_grad=True)
        out_t = torch.nn.functional.embedding(torch.tensor(idx), tw, padding_idx=padding_idx)
        out_o = tg.nn.functional.embedding(tg.tensor(idx), ow, padding_idx=padding_idx)
        (out_t ** 2).sum().backward()
        (out_o ** 2).sum().backward()
        np.testing.assert_allclose(out_o.detach().numpy(), out_t.detach().numpy())
        np.testing.assert_allclose(ow.grad.numpy(), tw.grad.numpy())
    with pytest.raises(ValueError, match="between 0 and 1"):
        tg.nn.functional.dropout(tg.ones(2), 1.5)
    with pytest.raises(RuntimeError, match="Long, Int"):
        tg.nn.functional.embedding(tg.ones(2), tg.ones(3, 2))
    with pytest.raises(RuntimeError, match="normalized_shape"):
        tg.nn.functional.layer_norm(tg.ones(2, 3), (4,))
    tg.manual_seed(1)
    assert not tg.nn.functional.dropout(tg.ones(50), 1.0).numpy().any()


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_full_backward_hooks_match_torch():
    results = [m.Sequential(m.Linear(3, 4), m.Tanh(), m.Linear(4, 2)) for m in (nn, tnn)]
    _copy_weights(results[1], results[0])
    x_data = _x(5, 3)
    out = []
    for lib, model in ((tg, results[0]), (torch, results[1])):
        seen = []
        model[2].register_full_backward_pre_hook(lambda mod, go: (go[0] * 3,))
        model[1].register_full_backward_hook(
            lambda mod, gi, go: seen.append((gi[0].numpy().copy(), go[0].numpy().copy())))
        handle = model[0].register_full_backward_hook(lambda mod, gi, go: (gi[0] * 0.5,))
        x = lib.tensor(x_data, requires_grad=True)
        model(x).sum().backward()
        handle.remove()
        first_grad = x.grad.numpy().copy()
        x.grad = None
        model(x).sum().backward()
        model[0](lib.ones(2, 3)).sum().backward()  # no input grad: hook sees (None,)
        out.append((seen, first_grad, x.grad.numpy(), model[0].weight.grad.numpy()))
    (seen, *arrays), (tseen, *tarrays) = out
    assert len(seen) == len(tseen) == 2
    for (a, b), (c, d) in zip(seen, tseen):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, d, rtol=1e-5, atol=1e-6)
    for a, b in zip(arrays, tarrays):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(NotImplementedError, match="one tensor input"):
        bil = nn.Bilinear(2, 2, 1)
        bil.register_full_backward_hook(lambda *a: None)
        bil(tg.ones(1, 2, requires_grad=True), tg.ones(1, 2, requires_grad=True))


def test_parameter_list_and_dict_like_torch():
    texts = []
    for lib, m in ((tg, nn), (torch, tnn)):
        plist = m.ParameterList([m.Parameter(lib.ones(2)), lib.zeros(2, 3, dtype=lib.float64)])
        plist.append(lib.ones(1))
        pdict = m.ParameterDict({"a": m.Parameter(lib.ones(2)), "b": lib.ones(3)})
        pdict["c"] = lib.zeros(1)
        del pdict["a"]
        holder = m.Module()
        holder.plist, holder.pdict = plist, pdict
        texts.append((repr(holder), list(holder.state_dict()), len(plist), list(pdict.keys()),
                      [type(p).__name__ for p in plist], type(pdict["b"]).__name__,
                      str(plist[-1].dtype), repr(m.ParameterList([lib.ones(1)]))))
    assert texts[0] == texts[1]
    plist = nn.ParameterList([tg.ones(2)])
    optim_ = tg.optim.SGD(plist.parameters(), lr=1.0)
    (plist[0] * 3).sum().backward()
    optim_.step()
    np.testing.assert_array_equal(plist[0].detach().numpy(), [-2.0, -2.0])
