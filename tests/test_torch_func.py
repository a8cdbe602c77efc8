"""tapegrad.func against torch.func: same functions, same inputs, float64 unless said."""
import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def both(*arrays):
    return [tg.tensor(a) for a in arrays], [torch.tensor(a) for a in arrays]


def close(ours, theirs, tol=1e-10):
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        for k in theirs:
            close(ours[k], theirs[k], tol)
        return
    if isinstance(theirs, (tuple, list)):
        assert isinstance(ours, (tuple, list)) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            close(o, t, tol)
        return
    assert isinstance(ours, tg.Tensor), type(ours)
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=tol, atol=tol)


rng = np.random.default_rng(0)

# the same source runs on both: x.sin() etc. are Tensor methods in torch and tracer methods here
FUNCTIONS = {
    "sin_sum": lambda x: (x.sin() * x).sum(),
    "broadcast": lambda x: ((x - x.mean(0)) ** 2).sum() / x.size(0),
    "softmax": lambda x: (x.softmax(1) * x).sum(),
    "norm": lambda x: x.norm() + x.abs().sum(),
    "matmul": lambda x: (x @ x.t()).tanh().sum(),
    "reshape": lambda x: x.reshape(-1).pow(3).mean(),
    "permute_unsqueeze": lambda x: (x.permute(1, 0).unsqueeze(0) * x.t()).sum(),
    "clamp": lambda x: x.clamp(min=-0.5, max=0.5).square().sum(),
}
SHAPES = [(3, 4), (1, 5), (6, 1)]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("shape", SHAPES)
def test_grad_matches_torch_func(name, shape):
    f = FUNCTIONS[name]
    (x,), (tx,) = both(rng.standard_normal(shape))
    close(tg.func.grad(f)(x), torch.func.grad(f)(tx))
    g, v = tg.func.grad_and_value(f)(x)
    tgd, tv = torch.func.grad_and_value(f)(tx)
    close((g, v), (tgd, tv))


def test_grad_nan_and_inf_inputs_as_torch():
    data = np.array([[1.0, np.nan, -2.0], [np.inf, 0.5, -np.inf]])
    f = FUNCTIONS["sin_sum"]
    g = tg.func.grad(f)(tg.tensor(data)).numpy()
    tgd = torch.func.grad(f)(torch.tensor(data)).numpy()
    np.testing.assert_array_equal(np.isnan(g), np.isnan(tgd))
    np.testing.assert_allclose(g[~np.isnan(g)], tgd[~np.isnan(tgd)])


def test_argnums_tuple_and_has_aux_layouts():
    def f(x, w):
        y = (x * w).sum()
        return y, {"twice": y * 2}
    (x, w), (tx, tw) = both(rng.standard_normal(4), rng.standard_normal(4))
    ours = tg.func.grad(f, argnums=(0, 1), has_aux=True)(x, w)
    theirs = torch.func.grad(f, argnums=(0, 1), has_aux=True)(tx, tw)
    close(ours, theirs)
    close(tg.func.grad_and_value(f, argnums=1, has_aux=True)(x, w),
          torch.func.grad_and_value(f, argnums=1, has_aux=True)(tx, tw))


def test_keyword_arguments_pass_through_undifferentiated():
    f = lambda x, scale=1.0: (x * scale).sum()   # noqa: E731
    (x,), (tx,) = both(rng.standard_normal(3))
    close(tg.func.grad(f)(x, scale=3.0), torch.func.grad(f)(tx, scale=3.0))


@pytest.mark.parametrize("in_dims,out_dims", [(0, 0), ((1, None), 0), ((0, None), 1)])
def test_vmap_dims_match_torch(in_dims, out_dims):
    f = lambda x, w: (x * w).tanh() + w.sum()   # noqa: E731
    a = rng.standard_normal((4, 3)) if in_dims != (1, None) else rng.standard_normal((3, 4))
    w = rng.standard_normal(3) if in_dims != 0 else rng.standard_normal((4, 3))
    (x, tw_), (tx, ttw) = both(a, w)
    close(tg.func.vmap(f, in_dims, out_dims)(x, tw_), torch.func.vmap(f, in_dims, out_dims)(tx, ttw))


def test_vmap_of_dict_argument_and_tuple_outputs():
    f = lambda p, x: ((p["a"] * x).sum(), p["b"] * x)   # noqa: E731
    p = {"a": rng.standard_normal(3), "b": rng.standard_normal(3)}
    xs = rng.standard_normal((5, 3))
    ours = tg.func.vmap(f, in_dims=(None, 0), out_dims=(0, 1))(
        {k: tg.tensor(v) for k, v in p.items()}, tg.tensor(xs))
    theirs = torch.func.vmap(f, in_dims=(None, 0), out_dims=(0, 1))(
        {k: torch.tensor(v) for k, v in p.items()}, torch.tensor(xs))
    close(ours, theirs)


def test_vmap_argument_checks():
    with pytest.raises(RuntimeError, match="randomness"):
        tg.func.vmap(lambda x: x, randomness="sometimes")
    with pytest.raises(ValueError, match="in_dims"):
        tg.func.vmap(lambda x: x, in_dims=({"a": 0},))


@pytest.mark.parametrize("jac", ["jacrev", "jacfwd"])
def test_jacobians_match_torch(jac):
    f = lambda x, y: (x[:, None] * y[None, :]).sin()   # noqa: E731
    (x, y), (tx, ty) = both(rng.standard_normal(3), rng.standard_normal(2))
    for argnums in (0, 1, (0, 1)):
        close(getattr(tg.func, jac)(f, argnums)(x, y), getattr(torch.func, jac)(f, argnums)(tx, ty))


def test_jacrev_has_aux_and_hessian():
    f = lambda x: ((x ** 3).sum(), x.sum())   # noqa: E731
    (x,), (tx,) = both(rng.standard_normal(4))
    close(tg.func.jacrev(f, has_aux=True)(x), torch.func.jacrev(f, has_aux=True)(tx))
    g = lambda x, y: (x.exp() * y).sum() * y.sum()   # noqa: E731
    (x, y), (tx, ty) = both(rng.standard_normal(3), rng.standard_normal(3))
    for argnums in (0, 1):
        close(tg.func.hessian(g, argnums)(x, y), torch.func.hessian(g, argnums)(tx, ty))


def test_grad_of_grad_nests():
    f = lambda x: (x.sin() * x.exp()).sum()   # noqa: E731
    (x,), (tx,) = both(rng.standard_normal(3))
    inner = lambda g: lambda x: g(x).sum()   # noqa: E731
    close(tg.func.grad(inner(tg.func.grad(f)))(x), torch.func.grad(inner(torch.func.grad(f)))(tx))


# ---------------------------------------------------------------------------------------------
# functional_call and modules
# ---------------------------------------------------------------------------------------------

def twin_models(seed=0):
    """An MLP and a small CNN in both libraries with the same weights (float64)."""
    tg.manual_seed(seed)
    ours = {
        "mlp": tg.nn.Sequential(tg.nn.Linear(6, 5), tg.nn.Tanh(), tg.nn.Linear(5, 3)),
        "cnn": tg.nn.Sequential(tg.nn.Conv2d(1, 2, 3, padding=1), tg.nn.ReLU(), tg.nn.MaxPool2d(2),
                                tg.nn.Flatten(), tg.nn.Linear(2 * 3 * 3, 3)),
    }
    theirs = {
        "mlp": torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)),
        "cnn": torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
                                   torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                   torch.nn.Linear(2 * 3 * 3, 3)),
    }
    for k in ours:
        ours[k].double()
        theirs[k].double().load_state_dict(
            {n: torch.tensor(v.detach().numpy()) for n, v in ours[k].state_dict().items()})
    return ours, theirs


INPUT_SHAPES = {"mlp": (4, 6), "cnn": (4, 1, 6, 6)}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_per_sample_grads_of_a_module_match_torch(kind):
    ours, theirs = twin_models()
    m, tm = ours[kind], theirs[kind]
    (x, y), (tx, ty) = both(rng.standard_normal(INPUT_SHAPES[kind]), np.array([0, 2, 1, 2]))

    def make(func, fn, loss, model):
        def sample_loss(p, x, y):
            return loss(func.functional_call(model, p, (x.unsqueeze(0),)), y.unsqueeze(0))
        return func.vmap(func.grad(sample_loss), in_dims=(None, 0, 0))
    p = {k: v.detach() for k, v in m.named_parameters()}
    tp = {k: v.detach() for k, v in tm.named_parameters()}
    close(make(tg.func, None, F.cross_entropy, m)(p, x, y),
          make(torch.func, None, TF.cross_entropy, tm)(tp, tx, ty))
    # the module is left with its own parameters
    close(m(x), tm(tx))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_traced_targets(weighted, reduction):
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, -100, 1, 3])           # one ignored target
    weight = np.array([0.5, 1.0, 2.0, 3.0]) if weighted else None

    def loss(lib, fn):
        w = None if weight is None else lib.tensor(weight)
        return lambda z, t: fn(z, t, weight=w, reduction=reduction).sum()
    (z, t), (tz, tt) = both(logits, target)
    close(tg.func.grad_and_value(loss(tg, F.cross_entropy))(z, t),
          torch.func.grad_and_value(loss(torch, TF.cross_entropy))(tz, tt))


def test_functional_call_ties_weights_and_checks_names():
    class Tied(tg.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = tg.nn.Linear(3, 3, bias=False)
            self.b = tg.nn.Linear(3, 3, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))
    m = Tied().double()
    w = tg.tensor(rng.standard_normal((3, 3)))
    x = tg.tensor(rng.standard_normal((2, 3)))
    out = tg.func.functional_call(m, {"a.weight": w}, (x,))
    np.testing.assert_allclose(out.numpy(), x.numpy() @ w.numpy().T @ w.numpy().T)
    with pytest.raises(AttributeError, match="no parameter or buffer named 'c.weight'"):
        tg.func.functional_call(m, {"c.weight": w}, (x,))
    with pytest.raises(RuntimeError, match="unexpected key"):
        tg.func.functional_call(m, {"a.weight": w, "z": w}, (x,), strict=True)
    with pytest.raises(ValueError, match="multiple"):
        tg.func.functional_call(m, ({"a.weight": w}, {"a.weight": w}), (x,))
    assert m.a.weight is m.b.weight and isinstance(m.a.weight, tg.nn.Parameter)


def test_tensor_methods_a_forward_uses_work_on_traced_values():
    """size(dim), view, flatten(start_dim), permute, unsqueeze, expand, contiguous, float, mm:
    PyTorch spellings the traced value takes, so module code runs under func/compile."""
    def f(x, w):
        n = x.size(0)
        h = x.permute(0, 2, 1).contiguous().view(n, -1).float().double()
        h = h.mm(w) + w.sum(0).unsqueeze(0).expand(n, -1)
        return x.flatten(1).sum() + h.square().sum() + x.size()[1] * x.flatten(0, 1).mean()
    (x, w), (tx, tw) = both(rng.standard_normal((2, 3, 4)), rng.standard_normal((12, 5)))
    close(tg.func.grad(f, argnums=(0, 1))(x, w), torch.func.grad(f, argnums=(0, 1))(tx, tw),
          1e-6)                                   # float() rounds through float32


def test_functional_call_with_buffers_matches_torch():
    tg.manual_seed(0)
    m = tg.nn.Sequential(tg.nn.Linear(3, 4), tg.nn.BatchNorm1d(4)).double().eval()
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).double().eval()
    t.load_state_dict({n: torch.tensor(v.detach().numpy()) for n, v in m.state_dict().items()})
    stats = {"1.running_mean": rng.standard_normal(4), "1.running_var": rng.random(4) + 0.5}
    (x,), (tx,) = both(rng.standard_normal((5, 3)))

    def loss(func, model, params, buffers):
        return lambda p, x: func.functional_call(model, (p, buffers), (x,)).tanh().sum()
    p = {k: v.detach() for k, v in m.named_parameters()}
    tp = {k: v.detach() for k, v in t.named_parameters()}
    ours = tg.func.grad_and_value(loss(tg.func, m, p, {k: tg.tensor(v) for k, v in stats.items()}))
    theirs = torch.func.grad_and_value(
        loss(torch.func, t, tp, {k: torch.tensor(v) for k, v in stats.items()}))
    close(ours(p, x), theirs(tp, tx))
    assert not np.allclose(m[1].running_mean.numpy(), stats["1.running_mean"])   # restored


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_with_dim_give_values_and_indices_as_torch(op, keepdim):
    data = np.array([[1.0, 3.0, 3.0], [np.nan, 2.0, np.nan], [-np.inf, -np.inf, 0.5],
                     [2.0, 2.0, 2.0]])
    for d in (0, 1, -1):
        def f(x):
            values, indices = getattr(x, op)(dim=d, keepdim=keepdim)
            return (values * values).sum(), indices
        (x,), (tx,) = both(data)
        g, (v, i) = tg.func.grad_and_value(f, has_aux=True)(x)
        tgd, (tv, ti) = torch.func.grad_and_value(f, has_aux=True)(tx)
        np.testing.assert_array_equal(i.numpy(), ti.numpy())
        np.testing.assert_array_equal(g.numpy(), tgd.numpy())
        np.testing.assert_array_equal(v.numpy(), tv.numpy())


def test_vmap_randomness_modes():
    f = lambda x: x + tg.rand(())   # noqa: E731
    x = tg.zeros(4)
    with pytest.raises(RuntimeError, match="randomness error mode"):
        tg.func.vmap(f)(x)
    with pytest.raises(RuntimeError, match="'same' is not supported"):
        tg.func.vmap(f, randomness="same")(x)
    rows = tg.func.vmap(f, randomness="different")(x).numpy()
    assert len(set(rows.tolist())) == 4
    close(tg.func.vmap(lambda x: x * 2, randomness="same")(x), torch.zeros(4))
