"""tg.custom_vjp and tg.custom_jvp on the traced face (JAX's conventions), every transform and jit."""
import functools

import numpy as np
import pytest

import tapegrad as tg


@tg.custom_vjp
def clip_gradient(x, lo, hi):
    return x                          # identity forward, clipped cotangent (JAX's docs example)


def _clip_fwd(x, lo, hi):
    return x, (lo, hi)


def _clip_bwd(res, g):
    lo, hi = res
    return (np.clip(g, lo, hi), None, None)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


def test_custom_vjp_bwd_is_used_by_grad_and_jit():
    x = np.array([1.0, -2.0, 3.0])

    def f(x):
        return np.sum(clip_gradient(np.sin(x) * 5.0, -0.75, 0.75))
    want = 0.75 * 5.0 * np.cos(x)      # the cotangent 1 of the sum, clipped, times d(5 sin)
    np.testing.assert_allclose(tg.grad(f)(x), want)
    np.testing.assert_allclose(tg.jit(tg.grad(f))(x), want)
    np.testing.assert_allclose(tg.jit(tg.value_and_grad(f))(x)[0], np.sum(np.sin(x) * 5.0))
    np.testing.assert_allclose(clip_gradient(x, 0.0, 1.0), x)   # plain call runs fun


@tg.custom_vjp
def scaled_sin(x):
    return np.sin(x)


scaled_sin.defvjp(lambda x: (np.sin(x), np.cos(x)), lambda c, g: (2.0 * c * g,))


def test_custom_vjp_under_forward_mode_hessian_vmap():
    x = np.array([0.0, 1.0, -0.5])
    _, t = tg.jvp(scaled_sin, (x,), (np.ones(3),))
    np.testing.assert_allclose(t, 2 * np.cos(x))
    np.testing.assert_allclose(tg.jacfwd(scaled_sin)(x), np.diag(2 * np.cos(x)))
    np.testing.assert_allclose(tg.jacrev(scaled_sin)(x), np.diag(2 * np.cos(x)))
    # the residual c = cos(x) is differentiated in turn: d/dx 2 cos(x) = -2 sin(x)
    h = tg.hessian(lambda x: np.sum(scaled_sin(x)))(x)
    np.testing.assert_allclose(h, np.diag(-2 * np.sin(x)), atol=1e-15)
    np.testing.assert_allclose(tg.jit(tg.hessian(lambda x: np.sum(scaled_sin(x))))(x), h)
    xs = np.stack([x, x + 1])
    np.testing.assert_allclose(tg.vmap(tg.grad(lambda x: np.sum(scaled_sin(x))))(xs),
                               2 * np.cos(xs))


def test_custom_vjp_pytrees_and_several_outputs():
    @tg.custom_vjp
    def f(p, x):
        return {"a": p["w"] * x, "b": np.sum(x)}

    def fwd(p, x):
        return f.fun(p, x), (p, x)

    def bwd(res, ct):
        p, x = res
        # deliberately 10x the true cotangent of w, so that the test sees bwd in use
        return {"w": 10.0 * np.sum(ct["a"] * x)}, ct["a"] * p["w"] + ct["b"]
    f.defvjp(fwd, bwd)
    p, x = {"w": np.array(2.0)}, np.array([1.0, 3.0])
    gp, gx = tg.grad(lambda p, x: np.sum(f(p, x)["a"]) + 3.0 * f(p, x)["b"],
                     argnums=(0, 1))(p, x)
    np.testing.assert_allclose(gp["w"], 10.0 * np.sum(x))
    np.testing.assert_allclose(gx, p["w"] + 3.0)
    out, f_vjp = tg.vjp(f, p, x)
    np.testing.assert_allclose(out["a"], 2.0 * x)
    ct = {"a": np.array([1.0, -1.0]), "b": np.array(2.0)}
    np.testing.assert_allclose(f_vjp(ct)[1], ct["a"] * 2.0 + 2.0)


def test_custom_vjp_nondiff_argnums():
    @functools.partial(tg.custom_vjp, nondiff_argnums=(0,))
    def power(n, x):
        return x ** n
    power.defvjp(lambda n, x: (x ** n, x), lambda n, x, g: (n * x ** (n - 1) * g,))
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(power(3, x)))(x), 3 * x ** 2)
    np.testing.assert_allclose(tg.jit(tg.grad(lambda x: np.sum(power(3, x))))(x), 3 * x ** 2)


def test_custom_vjp_errors():
    @tg.custom_vjp
    def f(x):
        return x * 2.0
    with pytest.raises(TypeError, match=r"f.defvjp\(fwd, bwd\)"):
        f(np.ones(2))
    f.defvjp(lambda x: (x * 2.0, None), lambda r, g: g * 2.0)
    with pytest.raises(TypeError, match=r"bwd must return a tuple .*\(ct_x,\)"):
        tg.grad(lambda x: np.sum(f(x)))(np.ones(2))
    f.defvjp(lambda x: x * 2.0, lambda r, g: (g,))
    with pytest.raises(TypeError, match=r"fwd must return a pair(.|\n)*at .*test_custom_rules"):
        tg.grad(lambda x: np.sum(f(x)))(np.ones(2))


@tg.custom_jvp
def log1pexp(x):
    return np.log(1.0 + np.exp(x))


@log1pexp.defjvp
def _log1pexp_jvp(primals, tangents):
    x, = primals
    t, = tangents
    return log1pexp(x), t * (1.0 - 1.0 / (1.0 + np.exp(x)))


def test_custom_jvp_stable_derivative_everywhere():
    # JAX's example: the naive derivative is inf / inf = nan at x = 1000
    x = np.array([0.0, 3.0, 1000.0])
    naive = tg.grad(lambda x: np.sum(np.log(1.0 + np.exp(x))))(x)
    assert np.isnan(naive[2])
    want = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(tg.grad(lambda x: np.sum(log1pexp(x)))(x), want)
    np.testing.assert_allclose(tg.jit(tg.grad(lambda x: np.sum(log1pexp(x))))(x), want)
    np.testing.assert_allclose(tg.jvp(log1pexp, (x,), (np.ones(3),))[1], want)
    np.testing.assert_allclose(tg.jacrev(log1pexp)(x), np.diag(want))
    second = tg.jit(tg.hessian(lambda x: np.sum(log1pexp(x))))(x[:2])
    np.testing.assert_allclose(np.diag(second), want[:2] * (1 - want[:2]))


def test_custom_jvp_rule_is_what_every_mode_uses():
    @tg.custom_jvp
    def f(x, y):
        return x * y

    @f.defjvp
    def f_jvp(primals, tangents):
        (x, y), (tx, ty) = primals, tangents
        return x * y, 3.0 * tx * y + x * ty        # not f's derivative: seen only if used
    x, y = np.array([1.0, 2.0]), np.array([5.0, 7.0])
    gx, gy = tg.grad(lambda x, y: np.sum(f(x, y)), argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, 3.0 * y)
    np.testing.assert_allclose(gy, x)
    _, t = tg.jvp(f, (x, y), (np.ones(2), np.zeros(2)))
    np.testing.assert_allclose(t, 3.0 * y)
    assert f(1.0, 2.0) == 2.0


def test_custom_jvp_missing_rule():
    @tg.custom_jvp
    def f(x):
        return x
    with pytest.raises(TypeError, match=r"@f.defjvp"):
        tg.grad(lambda x: np.sum(f(x)))(np.ones(2))


class TripleExp(tg.autograd.Function):
    """exp with a backward that is deliberately 3x the derivative: only seen if used."""

    @staticmethod
    def forward(ctx, x):
        y = x.exp()
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        y, = ctx.saved_tensors
        return g * y * 3


class ScaledMul(tg.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return g * b * 2, None


def test_autograd_function_inside_traced_code_uses_its_backward():
    x = np.array([0.0, 1.0])
    f = lambda x: np.sum(TripleExp.apply(x))  # noqa: E731
    np.testing.assert_allclose(tg.grad(f)(x), 3 * np.exp(x))
    np.testing.assert_allclose(tg.jit(tg.grad(f))(x), 3 * np.exp(x))
    np.testing.assert_allclose(tg.hessian(f)(x), np.diag(3 * np.exp(x)))
    t = tg.tensor(x, requires_grad=True)        # and the eager face as before
    TripleExp.apply(t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 3 * np.exp(x))
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    ga, gb = tg.grad(lambda a, b: np.sum(ScaledMul.apply(a, b)), argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, 2 * b)
    np.testing.assert_array_equal(gb, np.zeros(2))


def test_autograd_function_wrong_number_of_gradients_on_the_tape():
    class Bad(tg.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, g):
            return g
    with pytest.raises(RuntimeError, match=r"BadBackward returned an incorrect number of "
                                           r"gradients \(expected 2, got 1\)"):
        tg.grad(lambda a: np.sum(Bad.apply(a, a)))(np.ones(2))


def test_custom_rules_on_eager_tensors_use_the_rule():
    x = np.array([0.5, 2.0])
    t = tg.tensor(x, requires_grad=True)
    scaled_sin(t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 2 * np.cos(x))
    t = tg.tensor(x, requires_grad=True)
    log1pexp(t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 1 / (1 + np.exp(-x)))

    @functools.partial(tg.custom_vjp, nondiff_argnums=(0,))
    def power(n, x):
        return x ** n
    power.defvjp(lambda n, x: (x ** n, x), lambda n, x, g: (10.0 * n * x ** (n - 1) * g,))
    t = tg.tensor(x, requires_grad=True)
    power(3, t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 30.0 * x ** 2)
    with tg.no_grad():                 # nothing to differentiate: runs fun as written
        np.testing.assert_allclose(scaled_sin(tg.tensor(x)).numpy(), np.sin(x))
