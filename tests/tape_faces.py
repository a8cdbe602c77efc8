"""Helpers that turn one sample of tests/samples.py into a scalar function every face can run.

The sample's output is weighted by fixed random numbers and summed, so one value-and-gradient
checks every output element; the same function is run eagerly (Tensors), traced onto a tape
(reference interpreter) and compiled (tapegrad_jit), and the results must agree.
"""
import numpy as np

import tapegrad as tg


def weighted(sample):
    """f(*diff_values) -> scalar, and the diff values."""
    values = sample.diff_values()
    out = np.asarray(sample.call(*values))
    weights = np.random.default_rng(len(sample.id)).standard_normal(out.shape).astype(out.dtype)

    def f(*diff):
        return (sample.call(*diff) * weights).sum()
    return f, values, weights


def eager_value_and_grad(sample, weights):
    """The eager Tensor face: backward() through the graph of Tensors."""
    leaves = [tg.tensor(v, dtype=tg.float64, requires_grad=True) for v in sample.diff_values()]
    out = (sample.call(*leaves) * tg.tensor(weights)).sum()
    out.backward()
    return out.detach().numpy(), [leaf.grad.numpy() for leaf in leaves]


def assert_close(actual, expected, rtol=1e-9, atol=1e-12):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=rtol, atol=atol)


def central_differences(f, x, eps=1e-6):
    """d f / d x of a scalar function of one float64 array, one coordinate at a time."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[i] = eps
        g[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return g
