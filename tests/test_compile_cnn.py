"""Convolution and pooling compiled on the CPU jit (tapegrad_jit/lowering_nn.py), and
tapegrad.compile's training step with one forward sweep (issue 11).

The lowered primitives must give the registry's NumPy values exactly (they are gathers,
scatter-adds and max/min/sum reductions of the same numbers), with NaN, ties and infinite
cotangents; a CNN compiles without falling back to the reference interpreter or to eager, and
trains as eager and PyTorch do.
"""
import warnings

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.primitives_nn as PN

cpu = pytest.importorskip("tapegrad_jit.cpu")

GEOMETRIES = [
    dict(kernel=(2, 2), stride=(2, 2), dilation=(1, 1), pads=((0, 0), (0, 0))),
    dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pads=((1, 1), (1, 1))),
    dict(kernel=(3, 2), stride=(2, 1), dilation=(1, 2), pads=((1, 2), (0, 1))),
    dict(kernel=(2, 3), stride=(1, 2), dilation=(2, 1), pads=((1, 0), (0, 1))),
    dict(kernel=(1, 1), stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0))),
]


def _compiled(f, *args):
    """f's tape on the CPU interpreter: an unlowered primitive would warn (reference fallback)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        program = cpu.Program(tg.make_tape(f)(*args))
    ok, out = program(list(args))
    assert ok
    return out


def _ties_and_nan(rng, shape):
    x = np.round(rng.standard_normal(shape), 1)      # many ties inside windows
    x.flat[::7] = 0.0
    x[0, 0, 0, 0] = np.nan
    x[-1, -1, -1, -1] = -np.inf
    return x


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("batch_inner", [False, True])
def test_im2col_and_col2im_lowered_exactly(geometry, batch_inner):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = PN._im2col(x, batch_inner=batch_inner, **geometry)
    np.testing.assert_array_equal(
        _compiled(lambda x: PN.im2col(x, batch_inner=batch_inner, **geometry), x), cols)
    g = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(
        _compiled(lambda g: PN.col2im(g, shape=x.shape, batch_inner=batch_inner, **geometry), g),
        PN._col2im(g, x.shape, batch_inner=batch_inner, **geometry), rtol=1e-14, atol=1e-14)


def test_im2col_with_a_pad_value():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4)
    geometry = dict(kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pads=((1, 1), (2, 0)))
    np.testing.assert_array_equal(
        _compiled(lambda x: PN.im2col(x, pad_value=-5.0, **geometry), x),
        PN._im2col(x, pad_value=-5.0, **geometry))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_max_pool_and_its_rules_lowered_exactly(geometry):
    rng = np.random.default_rng(1)
    x = _ties_and_nan(rng, (2, 2, 6, 7))
    out = PN._max_pool2d(x, **geometry)
    np.testing.assert_array_equal(_compiled(lambda x: PN.max_pool2d(x, **geometry), x), out)
    g = rng.standard_normal(out.shape)
    g[0, 1, 0, 0] = np.inf                          # 0 * inf must not leak NaN to other cells
    np.testing.assert_allclose(       # overlapping windows add in another order
        _compiled(lambda g, x: PN.pool_scatter(g, x, **geometry), g, x),
        PN._pool_scatter(g, x, **geometry), rtol=1e-14, atol=1e-15)
    gx = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(
        _compiled(lambda gx, x: PN.pool_gather(gx, x, **geometry), gx, x),
        PN._pool_gather(gx, x, **geometry))


def test_cnn_value_and_grad_compiles_without_fallback_and_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal((3, 2, 3, 3)) * 0.3, rng.standard_normal(3) * 0.1
    v = rng.standard_normal((5, 3 * 4 * 4)) * 0.1
    x, y = rng.standard_normal((4, 2, 8, 8)), np.array([0, 3, 4, 1])

    def loss(w, b, v, x):
        return _traced_loss(w, b, v, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grads = tg.jit(tg.value_and_grad(loss, (0, 1, 2)))(w, b, v, x)
    tw, tb, tv = (torch.tensor(a, requires_grad=True) for a in (w, b, v))
    tloss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(
        torch.nn.functional.max_pool2d(torch.relu(torch.nn.functional.conv2d(
            torch.tensor(x), tw, tb, padding=1)), 2).flatten(1), tv), torch.tensor(y))
    tloss.backward()
    np.testing.assert_allclose(value, tloss.item(), rtol=1e-12)
    for ours, theirs in zip(grads, (tw, tb, tv)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-13)


def _traced_loss(w, b, v, x, y):
    import tapegrad.nn.functional as F
    h = F.max_pool2d(F.relu(F.conv2d(x, w, b, padding=1)), 2)
    return F.cross_entropy(F.linear(h.reshape(h.shape[0], -1), v), y)


# ---------------------------------------------------------------------------------------------
# tapegrad.compile: a training step with one forward sweep
# ---------------------------------------------------------------------------------------------

def _model(kind):
    nn = tg.nn
    tg.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 4))
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(27, 4))


def _train(model, forward, batches, steps=3):
    opt = tg.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = tg.nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        for x, y in batches:
            opt.zero_grad()
            loss = loss_fn(forward(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


def _batches(rng, n=3):
    return [(tg.from_numpy(rng.standard_normal((5, 1, 6, 6)).astype(np.float32)),
             tg.from_numpy(rng.integers(0, 4, 5))) for _ in range(n)]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_compiled_training_matches_eager_runs_forward_once_without_fallback(kind):
    batches = _batches(np.random.default_rng(3))
    eager = _model(kind)
    expected_losses, expected = _train(eager, eager, batches)
    model = _model(kind)
    compiled = tg.compile(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no eager fallback, no reference interpreter
        losses, params = _train(model, compiled, batches)
    np.testing.assert_allclose(losses, expected_losses, rtol=2e-5)
    for ours, theirs in zip(params, expected):
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-6)
    program, = compiled._compiled._programs.values()
    # the backward took the cut tape's second part: the vjp program that runs the forward again
    # was never made
    assert program._grads == {}
    assert any(program._splits.values())


def test_cut_tape_follows_guard_paths():
    def f(w, x):
        h = x @ w
        return h * 2 if h.sum() > 0 else h.exp()   # a guard on the tape
    compiled = tg.compile(f)
    w = tg.tensor(np.eye(3), requires_grad=True)
    for sign in (1.0, -1.0, 1.0, -1.0):
        x = tg.tensor(sign * np.arange(1.0, 7.0).reshape(2, 3))
        weights = tg.tensor(np.arange(6.0).reshape(2, 3))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (compiled(w, x) * weights).sum().backward()
        got = w.grad.numpy().copy()
        w.grad = None
        (f(w, x) * weights).sum().backward()
        np.testing.assert_allclose(got, w.grad.numpy(), rtol=1e-12)
        w.grad = None


def test_compiled_backward_twice_with_retain_graph_and_two_calls_before_backward():
    model = _model("mlp")
    compiled = tg.compile(model)
    rng = np.random.default_rng(4)
    x1, x2 = (tg.from_numpy(rng.standard_normal((2, 1, 6, 6)).astype(np.float32))
              for _ in range(2))
    compiled(x1).sum().backward()           # warm-up: the first call learns the result's rank
    model.zero_grad()
    out1, out2 = compiled(x1), compiled(x2)  # residuals of the first must survive the second
    loss = (out1 * 2).sum() + out2.sum()
    loss.backward(retain_graph=True)
    loss.backward()
    got = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    loss = (model(x1) * 2).sum() + model(x2).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    for ours, theirs in zip(got, [p.grad.numpy() for p in model.parameters()]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_inner", [False, True])
@pytest.mark.parametrize("case", [
    dict(shape=(3, 2, 9, 8), kernel=(2, 3), stride=(2, 1), dilation=(1, 2), pads=((1, 0), (2, 1))),
    dict(shape=(2, 3, 7, 7), kernel=(3, 3), stride=(1, 1), dilation=(1, 1), pads=((1, 1), (1, 1))),
    dict(shape=(4, 1, 6, 5), kernel=(2, 2), stride=(2, 2), dilation=(1, 1), pads=((0, 0), (0, 0)))])
def test_col2im_sums_each_tap_onto_its_input_position(case, batch_inner):
    """col2im against a loop over every window entry (taps added in the same order: equal
    bits), in both column layouts; the layout of the result does not matter, its values do."""
    from tapegrad.primitives_nn import _col2im, _im2col
    rng = np.random.default_rng(5)
    shape, kernel, stride, dilation, pads = (case[k] for k in ("shape", "kernel", "stride",
                                                               "dilation", "pads"))
    geometry = dict(kernel=kernel, stride=stride, dilation=dilation, pads=pads)
    cols = rng.standard_normal(_im2col(np.zeros(shape), batch_inner=batch_inner,
                                       **geometry).shape)
    ours = _col2im(cols, shape, batch_inner=batch_inner, **geometry)
    natural = cols.transpose(3, 0, 1, 2, 4, 5) if batch_inner else cols   # (N, C, kh, kw, ..)
    n, c, h, w = shape
    (pt, _), (pl, _) = pads
    expected = np.zeros(shape)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            for a, b, y, x in np.ndindex(n, c, *natural.shape[4:]):
                r, s = y * stride[0] + i * dilation[0] - pt, x * stride[1] + j * dilation[1] - pl
                if 0 <= r < h and 0 <= s < w:
                    expected[a, b, r, s] += natural[a, b, i, j, y, x]
    assert ours.shape == shape and np.array_equal(ours, expected)


@pytest.mark.parametrize("value", [0.0, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_padded_copy_is_np_pad(value, dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 2, 5, 4)).astype(dtype).transpose(1, 0, 2, 3)  # any layout
    for pads in [((1, 1), (1, 1)), ((0, 2), (3, 0)), ((0, 0), (0, 0))]:
        ours = PN._padded(x, pads, value)
        expected = np.pad(x, ((0, 0), (0, 0)) + pads, constant_values=value)
        assert ours.dtype == expected.dtype and np.array_equal(ours, expected)
