"""F.conv1d/conv2d (stride, padding, dilation, groups), max/avg pooling: values and gradients
against PyTorch and central differences, NaN/inf, double backward, error messages, no Python work per pixel."""
import sys

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F
from tapegrad import autograd, primitives_nn as PN

torch = pytest.importorskip("torch")
TF = torch.nn.functional

rng = np.random.default_rng(1)

CONVS = [  # input shape, weight shape, keyword arguments
    ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    ((1, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((2, 6, 5, 5), (6, 1, 3, 3), dict(padding=1, groups=6)),  # depthwise
    ((3, 2, 6, 6), (3, 2, 1, 1), dict(stride=2)),
    ((2, 2, 8, 7), (2, 2, 4, 4), dict(padding="same")),  # even kernel: asymmetric padding
    ((2, 2, 8, 7), (2, 2, 3, 2), dict(padding="same", dilation=2)),
    ((2, 2, 5, 5), (3, 2, 5, 5), dict(padding="valid")),
    ((3, 5, 5), (2, 3, 3, 3), dict(padding=2)),  # unbatched
    ((2, 3, 10), (4, 3, 3), dict(stride=3, padding=1, dilation=2)),  # conv1d
    ((2, 4, 10), (4, 2, 4), dict(groups=2, padding="same")),
    ((3, 7), (2, 3, 2), {}),  # unbatched conv1d
]


def _run(fn, lib, arrays, kwargs, dtype):
    ts = [lib.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out = fn(*ts, **kwargs)
    cot = np.random.default_rng(3).standard_normal(tuple(out.shape)).astype(dtype)
    (out * lib.tensor(cot)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("xs,ws,kwargs", CONVS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_matches_torch(xs, ws, kwargs, bias, dtype):
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)]
    if bias:
        arrays.append(rng.standard_normal(ws[0]))
    name = "conv1d" if len(ws) == 3 else "conv2d"
    ours = _run(getattr(F, name), tg, arrays, kwargs, dtype)
    theirs = _run(getattr(TF, name), torch, arrays, kwargs, dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours[0], theirs[0], **tol)
    for a, b in zip(ours[1], theirs[1]):
        np.testing.assert_allclose(a, b, **tol)


POOLS = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=2, stride=1),
]


@pytest.mark.parametrize("kwargs", POOLS)
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (3, 6, 5)])
def test_max_pool_matches_torch_with_ties(kwargs, shape):
    # small integers make many ties: the gradient goes to the first maximum, as in PyTorch
    x = rng.integers(0, 3, shape).astype(np.float64)
    ours = _run(F.max_pool2d, tg, [x], kwargs, np.float64)
    theirs = _run(TF.max_pool2d, torch, [x], kwargs, np.float64)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1][0], theirs[1][0], rtol=1e-12, atol=1e-12)


def test_max_pool_dilation_matches_torch():
    x = rng.standard_normal((2, 2, 9, 9))
    kwargs = dict(kernel_size=3, stride=2, padding=1, dilation=2)
    ours, theirs = (_run(f, lib, [x], kwargs, np.float64)
                    for f, lib in ((F.max_pool2d, tg), (TF.max_pool2d, torch)))
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_allclose(ours[1][0], theirs[1][0], rtol=1e-12)


@pytest.mark.parametrize("kwargs", POOLS)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_torch(kwargs, count_include_pad):
    x = rng.standard_normal((2, 3, 7, 8))
    kw = dict(kwargs, count_include_pad=count_include_pad)
    ours = _run(F.avg_pool2d, tg, [x], kw, np.float64)
    theirs = _run(TF.avg_pool2d, torch, [x], kw, np.float64)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
    np.testing.assert_allclose(ours[1][0], theirs[1][0], rtol=1e-12, atol=1e-14)


def test_avg_pool_divisor_override_and_adaptive():
    x = rng.standard_normal((2, 3, 8, 6))
    for fn, tfn, kw in ((F.avg_pool2d, TF.avg_pool2d, dict(kernel_size=3, divisor_override=2)),
                        (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, dict(output_size=(4, 3))),
                        (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d, dict(output_size=1))):
        ours, theirs = _run(fn, tg, [x], kw, np.float64), _run(tfn, torch, [x], kw, np.float64)
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
        np.testing.assert_allclose(ours[1][0], theirs[1][0], rtol=1e-12)


def test_nan_and_inf_propagate_like_torch():
    x = rng.standard_normal((1, 2, 6, 6))
    x[0, 0, 1, 1], x[0, 1, 4, 4], x[0, 1, 0, 0] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((3, 2, 3, 3))
    for fn, tfn, args in ((F.conv2d, TF.conv2d, [x, w]), (F.max_pool2d, TF.max_pool2d, [x]),
                          (F.avg_pool2d, TF.avg_pool2d, [x])):
        kw = {} if fn is F.conv2d else dict(kernel_size=2)
        ours = _run(fn, tg, args, kw, np.float64)
        theirs = _run(tfn, torch, args, kw, np.float64)
        np.testing.assert_array_equal(np.isnan(ours[0]), np.isnan(theirs[0]))
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12)
        for a, b in zip(ours[1], theirs[1]):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_gradcheck_and_double_backward():
    x = tg.tensor(rng.standard_normal((1, 2, 5, 4)), requires_grad=True)
    w = tg.tensor(rng.standard_normal((2, 1, 2, 3)), requires_grad=True)
    assert autograd.gradcheck(lambda a, b: F.conv2d(a, b, stride=(2, 1), padding=1, groups=2),
                              (x, w))
    assert autograd.gradcheck(lambda a: F.max_pool2d(a, 2, 1), (x,))
    assert autograd.gradcheck(lambda a: F.avg_pool2d(a, 3, 2, 1, ceil_mode=True), (x,))
    # second derivatives: d/dw of |d conv / dx|^2, against torch
    def second(lib, fn):
        a = lib.tensor(x.detach().numpy(), requires_grad=True)
        b = lib.tensor(w.detach().numpy(), requires_grad=True)
        out = fn.conv2d(fn.max_pool2d(a, 2, 1), b, padding=1, groups=2)
        (ga,) = lib.autograd.grad((out ** 2).sum(), a, create_graph=True)
        (ga ** 2).sum().backward()
        return b.grad.numpy()
    np.testing.assert_allclose(second(tg, F), second(torch, TF), rtol=1e-10)


def test_im2col_col2im_are_adjoint():
    x = rng.standard_normal((2, 3, 7, 6))
    geometry = dict(kernel=(3, 2), stride=(2, 1), dilation=(1, 2), pads=((1, 2), (0, 1)))
    cols = PN.im2col(x, **geometry)
    y = rng.standard_normal(cols.shape)
    back = PN.col2im(y, shape=x.shape, **geometry)
    np.testing.assert_allclose((cols * y).sum(), (x * back).sum(), rtol=1e-12)


def test_errors_name_the_problem():
    x, w = tg.ones(1, 4, 5, 5), tg.ones(2, 3, 3, 3)
    with pytest.raises(RuntimeError) as ours:
        F.conv2d(x, w)
    with pytest.raises(RuntimeError) as theirs:
        TF.conv2d(torch.ones(1, 4, 5, 5), torch.ones(2, 3, 3, 3))
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.max_pool2d(tg.ones(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(ValueError, match="strided convolutions"):
        F.conv2d(tg.ones(1, 3, 5, 5), w, stride=2, padding="same")
    with pytest.raises(RuntimeError, match="smaller than the kernel"):
        F.conv2d(tg.ones(1, 3, 2, 2), w)
    with pytest.raises(RuntimeError, match="Expected 3D .*or 4D"):
        F.conv2d(tg.ones(5, 5), w)


def _python_lines_of_a_training_step(size):
    from tapegrad import nn
    tg.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3, stride=2, dilation=2, padding=2, groups=2),
                          nn.AvgPool2d(2, ceil_mode=True), nn.Flatten())
    x, calls = tg.randn(8, 1, size, size), [0]
    model(x).sum().backward()  # warm every cache first

    def count(frame, event, arg):  # every Python line run, in every frame
        calls[0] += event == "line"
        return count

    sys.settrace(count)
    try:
        model(x).sum().backward()
    finally:
        sys.settrace(None)
    return calls[0]


def test_conv_and_pool_cost_no_python_work_per_pixel():
    # vectorised im2col / taps + matmul: the Python lines run by a CNN training step do not grow
    # with the image (a loop over pixels would make 28x28 run ~5x the lines of 12x12); both
    # sizes take the same paths (padding, an odd size for ceil_mode). A few lines of slack for
    # a finaliser that may land in either run; a loop over rows alone would add 16.
    small, large = _python_lines_of_a_training_step(12), _python_lines_of_a_training_step(28)
    assert large - small <= 8, (small, large)


def test_max_pool_routes_infinite_cotangents_only_to_the_maximum():
    x = rng.standard_normal((1, 2, 4, 6))
    cot = rng.standard_normal((1, 2, 2, 3))
    cot[0, 0, 1, 2], cot[0, 1, 0, 0] = np.inf, -np.inf
    grads = []
    for lib, fn in ((tg, F.max_pool2d), (torch, TF.max_pool2d)):
        t = lib.tensor(x, requires_grad=True)
        fn(t, 2).backward(lib.tensor(cot))
        grads.append(t.grad.numpy())
    assert not np.isnan(grads[0]).any()
    np.testing.assert_array_equal(grads[0], grads[1])
