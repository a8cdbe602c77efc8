"""PyTorch's autograd semantics and error messages, on the eager face.

Error tests hold PyTorch's message as a literal: tapegrad's message must contain it (it may add a
hint), and where torch is installed the same code must raise the same type with that message too,
so the literal cannot drift from what PyTorch says.
"""
import threading
import warnings

import numpy as np
import pytest

import tapegrad
from tapegrad.autograd.gradcheck import GradcheckError

try:
    import torch
except ImportError:  # the comparisons with PyTorch skip; the literals still check tapegrad
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
LIBS = [tapegrad] + ([torch] if torch is not None else [])


def same_error(build, exc, message):
    """build(lib) raises exc containing PyTorch's `message`, for tapegrad and for torch."""
    for lib in LIBS:
        with pytest.raises(exc) as info:
            build(lib)
        assert message in str(info.value), f"{lib.__name__}: {info.value}"


def both(build):
    """build(lib) for each installed lib, as NumPy values (nested tuples/lists of tensors too)."""
    return [_values(build(lib)) for lib in LIBS]


def _values(x):
    if isinstance(x, (tuple, list)):
        return [_values(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return np.array(x.detach().tolist())


def assert_same(results, rtol=1e-6, atol=1e-7):
    ours = results[0]
    for theirs in results[1:]:
        _compare(ours, theirs, rtol, atol)


def _compare(a, b, rtol, atol):
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            _compare(x, y, rtol, atol)
    elif a is None or isinstance(a, (bool, str)):
        assert a == b
    else:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# Leaves, requires_grad, accumulation
# ---------------------------------------------------------------------------------------------

def test_leaves_and_requires_grad_propagation():
    x = tapegrad.ones(2, requires_grad=True)
    c = tapegrad.ones(2)
    y = x * c
    assert x.is_leaf and c.is_leaf and not y.is_leaf
    assert y.requires_grad and not c.requires_grad and (c * 2).is_leaf
    assert x.grad_fn is None and y.grad_fn.name() == "MulBackward0"
    assert not (x > 0).requires_grad  # comparisons are not differentiable
    assert x.detach().is_leaf and not x.detach().requires_grad
    assert not x.argmax().requires_grad
    with tapegrad.no_grad():
        z = x * 2
    assert z.is_leaf and not z.requires_grad


def test_requires_grad_only_on_leaves():
    same_error(lambda t: setattr(t.ones(2, requires_grad=True) * 2, "requires_grad", False),
               RuntimeError, "you can only change requires_grad flags of leaf variables.")


def test_requires_grad_on_integer_tensors_is_an_error():
    same_error(lambda t: t.tensor([1, 2]).requires_grad_(), RuntimeError,
               "only Tensors of floating point dtype can require gradients")
    same_error(lambda t: t.tensor([1, 2], requires_grad=True), RuntimeError,
               "Only Tensors of floating point and complex dtype can require gradients")


def test_gradients_accumulate_across_backward_calls():
    def run(t):
        x = t.tensor([1.0, 2.0], requires_grad=True)
        (x * x).sum().backward()
        first = x.grad.clone()
        (x * 3).sum().backward()
        second = x.grad.clone()
        x.grad.zero_()
        (x ** 3).sum().backward()
        third = x.grad.clone()
        x.grad = None
        x.sum().backward()
        return first, second, third, x.grad
    results = both(run)
    assert_same(results)
    np.testing.assert_allclose(results[0][1], [5.0, 7.0])


def test_backward_of_non_scalar_needs_a_gradient():
    same_error(lambda t: (t.ones(3, requires_grad=True) * 2).backward(), RuntimeError,
               "grad can be implicitly created only for scalar outputs")

    def run(t):
        x = t.tensor([1.0, 2.0, 3.0], requires_grad=True)
        (x * x).backward(t.tensor([0.1, 1.0, 10.0]))
        return x.grad
    assert_same(both(run))
    np.testing.assert_allclose(both(run)[0], [0.2, 4.0, 60.0], rtol=1e-6)


def test_backward_gradient_shape_mismatch():
    same_error(lambda t: (t.ones(3, requires_grad=True) * 2).backward(t.ones(2)), RuntimeError,
               "Mismatch in shape: grad_output[0] has a shape of torch.Size([2]) and output[0] "
               "has a shape of torch.Size([3]).")


def test_backward_of_tensor_without_grad():
    same_error(lambda t: t.ones(3).sum().backward(), RuntimeError,
               "element 0 of tensors does not require grad and does not have a grad_fn")


def test_backward_of_a_leaf():
    def run(t):
        x = t.tensor(3.0, requires_grad=True)
        x.backward()
        return x.grad
    assert both(run)[0] == 1.0


# ---------------------------------------------------------------------------------------------
# retain_graph, create_graph, retain_grad, hooks
# ---------------------------------------------------------------------------------------------

FREED = ("Trying to backward through the graph a second time (or directly access saved tensors "
         "after they have already been freed).")


def test_second_backward_through_freed_graph():
    def run(t):
        x = t.ones(3, requires_grad=True)
        y = (x * x).sum()
        y.backward()
        y.backward()
    same_error(run, RuntimeError, FREED)


def test_retain_graph_allows_a_second_backward():
    def run(t):
        x = t.tensor([1.0, 2.0], requires_grad=True)
        y = (x * x.exp()).sum()
        y.backward(retain_graph=True)
        y.backward()
        return x.grad
    assert_same(both(run))


def test_autograd_grad_frees_the_graph_too():
    def run(t):
        x = t.ones(2, requires_grad=True)
        y = (x.sin() * x).sum()
        t.autograd.grad(y, x)
        t.autograd.grad(y, x)
    same_error(run, RuntimeError, FREED)


def test_create_graph_gives_higher_derivatives():
    def run(t):
        x = t.tensor([0.5, -1.0, 2.0], requires_grad=True)
        y = (x ** 3 * x.sin()).sum()
        g, = t.autograd.grad(y, x, create_graph=True)
        h, = t.autograd.grad(g.sum(), x, create_graph=True)
        third, = t.autograd.grad(h.sum(), x)
        return g, h, third
    results = both(run)
    assert_same(results, rtol=1e-5)
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(results[0][0], 3 * x ** 2 * np.sin(x) + x ** 3 * np.cos(x),
                               rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_backward_create_graph_grad_requires_grad():
    def run(t):
        x = t.tensor([1.0, 2.0], requires_grad=True)
        (x ** 3).sum().backward(create_graph=True)
        g = x.grad
        assert g.requires_grad
        x.grad = None
        g.sum().backward()
        return x.grad
    assert_same(both(run))
    np.testing.assert_allclose(both(run)[0], [6.0, 12.0])


def test_retain_grad_and_the_non_leaf_grad_warning():
    for lib in LIBS:
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        z = y * y
        y.retain_grad()
        z.sum().backward()
        np.testing.assert_allclose(y.grad.tolist(), [6.0, 12.0])
        assert y.retains_grad and not z.retains_grad
        with pytest.warns(UserWarning, match="is not a leaf Tensor is being accessed"):
            assert z.grad is None
    same_error(lambda t: t.ones(2).retain_grad(), RuntimeError,
               "can't retain_grad on Tensor that has requires_grad=False")


def test_register_hook_changes_the_gradient_and_can_be_removed():
    def run(t):
        x = t.tensor([1.0, 2.0], requires_grad=True)
        seen = []
        y = x * 2
        handle = y.register_hook(lambda g: g * 10)
        x.register_hook(lambda g: seen.append(g.clone()))
        (y * y).sum().backward()
        first = x.grad.clone()
        handle.remove()
        x.grad = None
        y = x * 2
        (y * y).sum().backward()
        return first, x.grad, seen[0]
    results = both(run)
    assert_same(results)
    np.testing.assert_allclose(results[0][0], [80.0, 160.0])
    same_error(lambda t: t.ones(2).register_hook(lambda g: g), RuntimeError,
               "cannot register a hook on a tensor that doesn't require gradient")


# ---------------------------------------------------------------------------------------------
# detach, .data, in-place operations and the version counter
# ---------------------------------------------------------------------------------------------

def test_detach_and_data_share_memory():
    for lib in LIBS:
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        d = x.detach()
        d.add_(1)
        assert x.tolist() == [2.0, 3.0] and x._version == 1
        x.data.mul_(2)  # .data shares memory but not the version counter
        assert x.tolist() == [4.0, 6.0] and x._version == 1
        x.data = lib.tensor([7.0, 8.0])
        assert x.tolist() == [7.0, 8.0] and x.requires_grad


def test_numpy_of_a_tensor_that_requires_grad():
    same_error(lambda t: t.ones(2, requires_grad=True).numpy(), RuntimeError,
               "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
               "instead.")
    x = tapegrad.tensor([1.0, 2.0])
    x.numpy()[0] = 5.0  # shares memory, as torch's does
    assert x.tolist() == [5.0, 2.0]


def test_version_counter_counts_in_place_ops():
    for lib in LIBS:
        x = lib.ones(3)
        assert x._version == 0
        x.add_(1)
        x.mul_(2)
        x[0] = 5.0
        x.zero_()
        assert x._version == 4


def test_in_place_on_a_leaf_that_requires_grad():
    same_error(lambda t: t.ones(3, requires_grad=True).add_(1), RuntimeError,
               "a leaf Variable that requires grad is being used in an in-place operation.")

    def sgd_step(t):
        w = t.ones(3, requires_grad=True)
        (w * w).sum().backward()
        with t.no_grad():
            w.sub_(w.grad * 0.1)
        return w, w.is_leaf, w.requires_grad
    results = both(sgd_step)
    assert_same(results)
    assert results[0][1:] == [True, True]


def test_in_place_change_of_a_saved_input_is_detected():
    def run(t):
        w = t.ones(3, requires_grad=True)
        x = t.ones(3)
        y = w * x
        x.add_(1)
        y.sum().backward()
    same_error(run, RuntimeError,
               "one of the variables needed for gradient computation has been modified by an "
               "inplace operation: [torch.FloatTensor [3]] is at version 1; expected version 0 "
               "instead.")

    def run_non_leaf(t):
        w = t.ones(3, requires_grad=True)
        x = w * 1
        y = x * x
        x.add_(1)
        y.sum().backward()
    same_error(run_non_leaf, RuntimeError,
               "[torch.FloatTensor [3]], which is output 0 of Add, is at version 1; expected "
               "version 0 instead.")


def test_in_place_change_of_a_saved_output_is_detected():
    def run(t):
        x = t.ones(3, requires_grad=True)
        z = x.exp()
        z.mul_(2)
        z.sum().backward()
    same_error(run, RuntimeError,
               "[torch.FloatTensor [3]], which is output 0 of Exp, is at version 1; expected "
               "version 0 instead.")


def test_in_place_changes_that_nothing_saved_are_fine():
    def run(t):
        w = t.tensor([1.0, 2.0, 3.0], requires_grad=True)
        x = w * 1
        y = x + x  # add saves nothing
        s = x.sigmoid()  # sigmoid saves its output only
        x.add_(1)
        (y.sum() + s.sum()).backward()
        return w.grad
    assert_same(both(run))


def test_in_place_ops_extend_the_graph():
    def run(t):
        w = t.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        v = t.tensor([0.5, -1.0], requires_grad=True)
        x = w * 2
        x.mul_(3)
        x.add_(v)
        x[0, 0] = 0.0
        x[1] = v * 4
        names = type(x.grad_fn).__name__
        (x * x).sum().backward()
        y = w.clone()
        y.zero_()
        z = w.clone()
        z.copy_(v.expand(2, 2))
        return w.grad, v.grad, names, type(y.grad_fn).__name__, type(z.grad_fn).__name__
    assert_same(both(run))


def test_in_place_result_dtype_must_fit():
    same_error(lambda t: t.tensor([1, 2]).mul_(1.5), RuntimeError,
               "result type Float can't be cast to the desired output type Long")


# ---------------------------------------------------------------------------------------------
# Grad mode
# ---------------------------------------------------------------------------------------------

def test_grad_modes_as_context_managers_and_decorators():
    for lib in LIBS:
        x = lib.ones(2, requires_grad=True)
        with lib.no_grad():
            assert not (x * 2).requires_grad
            with lib.enable_grad():
                assert (x * 2).requires_grad
            assert not lib.is_grad_enabled()
        with lib.set_grad_enabled(False):
            assert not (x * 2).requires_grad
        assert lib.is_grad_enabled()
        lib.set_grad_enabled(False)
        assert not (x * 2).requires_grad
        lib.set_grad_enabled(True)
        assert (x * 2).requires_grad

        @lib.no_grad()
        def f(a):
            return a * 2

        @lib.enable_grad()
        def g(a):
            return a * 2

        @lib.set_grad_enabled(False)
        def h(a):
            return a * 2

        assert not f(x).requires_grad and not h(x).requires_grad and lib.is_grad_enabled()
        with lib.no_grad():
            assert g(x).requires_grad


def test_no_grad_restores_the_mode_after_an_exception():
    with pytest.raises(ValueError):
        with tapegrad.no_grad():
            raise ValueError
    assert tapegrad.is_grad_enabled()


def test_grad_mode_is_thread_local():
    seen = {}

    def worker():
        seen["enabled"] = tapegrad.is_grad_enabled()
        seen["requires_grad"] = (tapegrad.ones(2, requires_grad=True) * 2).requires_grad

    with tapegrad.no_grad():
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert seen == {"enabled": True, "requires_grad": True}


# ---------------------------------------------------------------------------------------------
# autograd.grad, autograd.backward
# ---------------------------------------------------------------------------------------------

def test_autograd_grad_with_grad_outputs_and_several_inputs():
    def run(t):
        x = t.tensor([1.0, 2.0], requires_grad=True)
        w = t.tensor([[0.5, -1.0], [2.0, 3.0]], requires_grad=True)
        y = w @ x
        gx, gw = t.autograd.grad(y, (x, w), grad_outputs=t.tensor([1.0, -2.0]))
        assert x.grad is None and w.grad is None  # grad returns, it does not accumulate
        return gx, gw
    assert_same(both(run))


def test_autograd_grad_allow_unused():
    def run(t):
        x = t.ones(2, requires_grad=True)
        u = t.ones(3, requires_grad=True)
        return t.autograd.grad((x * 2).sum(), [x, u], allow_unused=True)
    results = both(run)
    assert_same(results)
    assert results[0][1] is None

    def unused(t):
        x = t.ones(2, requires_grad=True)
        u = t.ones(3, requires_grad=True)
        t.autograd.grad((x * 2).sum(), [x, u])
    same_error(unused, RuntimeError, "appears to not have been used in the graph. Set "
                                     "allow_unused=True if this is the desired behavior.")


def test_autograd_grad_of_an_input_without_grad():
    same_error(lambda t: t.autograd.grad((t.ones(2, requires_grad=True) * 2).sum(), t.ones(2)),
               RuntimeError, "One of the differentiated Tensors does not require grad")


def test_autograd_backward_with_several_roots():
    def run(t):
        x = t.tensor([1.0, 2.0], requires_grad=True)
        a, b = x * x, x.sum() * 3
        t.autograd.backward([a, b], [t.tensor([1.0, 0.5]), None])
        first = x.grad.clone()
        x.grad = None
        y = t.tensor([3.0, 4.0], requires_grad=True)
        t.autograd.backward((x * y).sum(), inputs=[x])
        return first, x.grad, y.grad
    results = both(run)
    assert_same(results)
    assert results[0][2] is None


# ---------------------------------------------------------------------------------------------
# autograd.Function and gradcheck
# ---------------------------------------------------------------------------------------------

def _cube_function(lib, wrong=False):
    class Cube(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x)
            ctx.k = k
            return x ** 3 * k

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            grad = g * 3 * x ** 2 * ctx.k
            if wrong:
                grad = grad * (1 + (x > 1.5))  # wrong where x > 1.5
            return grad, None
    return Cube


def test_custom_function_with_save_for_backward():
    def run(t):
        x = t.tensor([1.0, 2.0, -0.5], requires_grad=True)
        y = _cube_function(t).apply(x, 2.0)
        y.sum().backward()
        return y, x.grad, y.grad_fn.name(), y.requires_grad
    results = both(run)
    assert_same(results)
    assert results[0][2] == "CubeBackward"


def test_custom_function_needs_input_grad_and_no_grad_inputs():
    x = tapegrad.ones(2)
    y = _cube_function(tapegrad).apply(x, 1.0)
    assert not y.requires_grad and y.grad_fn is None


def test_custom_function_returning_a_wrong_shape():
    class Bad(tapegrad.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g.sum()

    with pytest.raises(RuntimeError, match="returned an invalid gradient at index 0"):
        Bad.apply(tapegrad.ones(3, requires_grad=True)).sum().backward()


def test_gradcheck_passes_on_a_right_rule():
    x = tapegrad.tensor([1.0, 2.0, -0.5], dtype=tapegrad.float64, requires_grad=True)
    assert tapegrad.autograd.gradcheck(lambda a: _cube_function(tapegrad).apply(a, 2.0), (x,))


def test_gradcheck_names_the_failing_input_and_element():
    f = _cube_function(tapegrad, wrong=True)
    x = tapegrad.tensor([1.0, 2.0, -0.5], dtype=tapegrad.float64, requires_grad=True)
    c = tapegrad.tensor([1.0, 1.0, 1.0], dtype=tapegrad.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match=r"input 1, at input element \(1,\)") as info:
        tapegrad.autograd.gradcheck(lambda a, b: a * 1 + f.apply(b, 1.0), (c, tapegrad.tensor(
            [1.0, 2.0, -0.5], dtype=tapegrad.float64, requires_grad=True)))
    assert "numerical:12" in str(info.value).replace(" ", "")
    assert not tapegrad.autograd.gradcheck(lambda a: f.apply(a, 1.0), (x,),
                                           raise_exception=False)


def test_gradcheck_promotes_float32_inputs():
    x = tapegrad.tensor([0.3, 0.7], requires_grad=True)
    assert x.dtype == tapegrad.float32
    assert tapegrad.autograd.gradcheck(lambda a: (a.exp() * a.sin()).sum(), (x,))


# ---------------------------------------------------------------------------------------------
# autograd.functional against torch.autograd.functional
# ---------------------------------------------------------------------------------------------

def _f_vector(x, y):
    return (x.sin() * y[:1]).exp() + x * x


def _f_scalar(x, y):
    return (x.exp() * y.sum()).sum() + (x ** 3).sum() * y[0]


_X = [0.3, -0.5, 1.2]
_Y = [0.7, 2.0]


@needs_torch
@pytest.mark.parametrize("name", ["jacobian", "hessian", "vjp", "jvp", "hvp", "vhp"])
@pytest.mark.parametrize("tuple_inputs", [False, True])
def test_functional_against_torch(name, tuple_inputs):
    def run(t):
        fn = getattr(t.autograd.functional, name, None)
        if fn is None:
            pytest.skip(f"tapegrad has no autograd.functional.{name}")
        x = t.tensor(_X, dtype=t.float64)
        y = t.tensor(_Y, dtype=t.float64)
        v = t.tensor([1.0, -2.0, 0.5], dtype=t.float64)
        vy = t.tensor([0.25, 3.0], dtype=t.float64)
        inputs = (x, y) if tuple_inputs else x
        vec = (v, vy) if tuple_inputs else v
        f = _f_vector if name in ("jacobian", "vjp", "jvp") else _f_scalar
        func = f if tuple_inputs else (lambda a: f(a, t.tensor(_Y, dtype=t.float64)))
        if name in ("jacobian", "hessian"):
            return fn(func, inputs)
        if name == "vjp":
            return fn(func, inputs, v)
        return fn(func, inputs, vec)
    assert_same(both(run), rtol=1e-10, atol=1e-12)


def test_functional_results_do_not_require_grad():
    x = tapegrad.tensor(_X, dtype=tapegrad.float64)
    jac = tapegrad.autograd.functional.jacobian(lambda a: a * a, x)
    assert not jac.requires_grad and tuple(jac.shape) == (3, 3)
    hess = tapegrad.autograd.functional.hessian(lambda a: (a ** 3).sum(), x, create_graph=True)
    assert tuple(hess.shape) == (3, 3)


# ---------------------------------------------------------------------------------------------
# Anomaly detection
# ---------------------------------------------------------------------------------------------

def test_detect_anomaly_names_the_op_that_produced_nan():
    def run(t):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with t.autograd.detect_anomaly():
                x = t.zeros(1, requires_grad=True)
                (x.sqrt() * 0).sum().backward()
    same_error(run, RuntimeError, "Function 'SqrtBackward0' returned nan values in its 0th "
                                  "output.")


def test_without_anomaly_mode_nan_flows_silently():
    x = tapegrad.zeros(1, requires_grad=True)
    (x.sqrt() * 0).sum().backward()
    assert np.isnan(x.grad.tolist()[0])


# ---------------------------------------------------------------------------------------------
# Shapes, matmul, indexing, iteration
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, exc, message", [
    (lambda t: t.ones(3) + t.ones(4), RuntimeError,
     "The size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 0"),
    (lambda t: t.ones(2, 3) * t.ones(4, 1, 2), RuntimeError,
     "The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 2"),
    (lambda t: t.ones(2, 3).view(4), RuntimeError, "shape '[4]' is invalid for input of size 6"),
    (lambda t: t.ones(2, 3).sum(2), IndexError,
     "Dimension out of range (expected to be in range of [-2, 1], but got 2)"),
    (lambda t: t.ones(3).item(), RuntimeError, "a Tensor with 3 elements cannot be converted to "
                                               "Scalar"),
    (lambda t: t.ones(3, dtype=t.long).mean(), RuntimeError,
     "mean(): could not infer output dtype. Input dtype must be either a floating point or "
     "complex dtype. Got: Long"),
    (lambda t: t.stack([t.ones(2, 3), t.ones(2, 4)]), RuntimeError,
     "stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [2, 4] at "
     "entry 1"),
    (lambda t: t.cat([t.ones(2, 3), t.ones(2, 4)]), RuntimeError,
     "Sizes of tensors must match except in dimension 0. Expected size 3 but got size 4 for "
     "tensor number 1 in the list."),
    (lambda t: t.ones(3)[5], IndexError, "index 5 is out of bounds for dimension 0 with size 3"),
    (lambda t: bool(t.ones(2)), RuntimeError,
     "Boolean value of Tensor with more than one value is ambiguous"),
    (lambda t: t.where(t.ones(3) > 0, t.ones(2), t.ones(3)), RuntimeError,
     "The size of tensor a (3) must match the size of tensor b (2) at non-singleton dimension 0"),
    (lambda t: t.cat([t.ones(2, 3), t.ones(3)]), RuntimeError,
     "Tensors must have same number of dimensions: got 2 and 1"),
    (lambda t: t.ones(2, 3).sum((0, 0)), RuntimeError,
     "dim 0 appears multiple times in the list of dims"),
    (lambda t: t.ones(2, 3)[:, 7], IndexError,
     "index 7 is out of bounds for dimension 1 with size 3"),
    (lambda t: t.ones(2, 3)[t.tensor([0, 4])], IndexError,
     "index 4 is out of bounds for dimension 0 with size 2"),
    (lambda t: t.ones(2, 3)[0, 0, 0], IndexError, "too many indices for tensor of dimension 2"),
    (lambda t: t.ones(2, 3).expand(3, 3), RuntimeError,
     "The expanded size of the tensor (3) must match the existing size (2) at non-singleton "
     "dimension 0.  Target sizes: [3, 3].  Tensor sizes: [2, 3]"),
    (lambda t: t.ones(2, 3).permute(0, 0), RuntimeError,
     "permute(): duplicate dims are not allowed."),
])
def test_shape_errors(build, exc, message):
    same_error(build, exc, message)


@pytest.mark.parametrize("build, message", [
    (lambda t: t.ones(2, 3) @ t.ones(4, 5), "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
    (lambda t: t.ones(3) @ t.ones(4, 2), "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)"),
    (lambda t: t.ones(3).matmul(t.tensor(2.0)),
     "both arguments to matmul need to be at least 1D, but they are 1D and 0D"),
    (lambda t: t.ones(3) @ t.ones(4), "inconsistent tensor size, expected tensor [3] and src [4] "
                                      "to have the same number of elements, but got 3 and 4 "
                                      "elements respectively"),
    (lambda t: t.ones(2, 3) @ t.ones(4), "size mismatch, got input (2), mat (2x3), vec (4)"),
    (lambda t: t.ones(5, 2, 3) @ t.ones(5, 4, 3),
     "Expected size for first two dimensions of batch2 tensor to be: [5, 3] but got: [5, 4]."),
    (lambda t: t.ones(5, 2, 3) @ t.ones(4, 5), "mat1 and mat2 shapes cannot be multiplied (10x3 "
                                               "and 4x5)"),
    (lambda t: t.ones(2, 4, 3) @ t.ones(4), "size mismatch, got input (8), mat (8x3), vec (4)"),
    (lambda t: t.ones(4) @ t.ones(2, 3, 5),
     "Expected size for first two dimensions of batch2 tensor to be: [2, 4] but got: [2, 3]."),
    (lambda t: t.ones(2, 1, 2, 3) @ t.ones(4, 4, 2),
     "Expected size for first two dimensions of batch2 tensor to be: [8, 3] but got: [8, 4]."),
    (lambda t: t.ones(2, 2, 3) @ t.ones(3, 3, 4), "The size of tensor a (2) must match the size "
                                                  "of tensor b (3) at non-singleton dimension 0"),
])
def test_matmul_errors(build, message):
    same_error(build, RuntimeError, message)


def test_indexing_values_and_gradients():
    idx = [0, 2, 0, 0]

    def run(t):
        x = t.arange(24.0).reshape(2, 3, 4).requires_grad_()
        parts = [x[1], x[:, 1], x[..., -1], x[1:, ::2, 1], x[None, 0], x[:, t.tensor(idx)],
                 x[t.tensor([1, 0]), :, t.tensor([3, 3])], x[1, :, t.tensor([2, 2, 0])],
                 x[x > 20], x[0, 1, 2]]
        total = sum((p * (k + 1)).sum() for k, p in enumerate(parts))
        total.backward()
        return parts + [x.grad] + [p.grad_fn.name() for p in parts]
    assert_same(both(run))


def test_repeated_indices_scatter_add():
    x = tapegrad.zeros(3, requires_grad=True)
    x[tapegrad.tensor([0, 0, 2, 0])].sum().backward()
    assert x.grad.tolist() == [3.0, 0.0, 1.0]


def test_setitem_gradients():
    def run(t):
        v = t.tensor([1.0, 2.0], requires_grad=True)
        x = t.zeros(3, 2)
        x[t.tensor([0, 2])] = v * 3
        x[1, 0] = v[1]
        (x * t.arange(6.0).reshape(3, 2)).sum().backward()
        return x, v.grad
    assert_same(both(run))


def test_unbind_and_iteration():
    def run(t):
        x = t.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
        rows = list(x)
        cols = x.unbind(1)
        parts = x.split(2) + x.chunk(2, dim=1) + x.split([1, 2])
        loss = sum((r * (k + 1)).sum() for k, r in enumerate(rows)) + cols[1].prod()
        loss = loss + sum(p.sum() * (k + 1) for k, p in enumerate(parts))
        loss.backward()
        return (x.grad, [r.grad_fn.name() for r in rows + list(cols)],
                [p.grad_fn.name() for p in parts])
    assert_same(both(run))
    with pytest.raises(TypeError, match="0-d tensor"):
        iter(tapegrad.tensor(1.0))


# ---------------------------------------------------------------------------------------------
# dtype promotion
# ---------------------------------------------------------------------------------------------

DTYPE_CASES = [
    (lambda t: t.ones(2) + t.ones(2, dtype=t.float64), "float64"),
    (lambda t: t.ones(2) * 2.5, "float32"),
    (lambda t: t.ones(2, dtype=t.long) * 2.5, "float32"),
    (lambda t: t.ones(2, dtype=t.long) + 2, "int64"),
    (lambda t: t.ones(2, dtype=t.long) / 2, "float32"),
    (lambda t: t.ones(2) + t.tensor(1.0, dtype=t.float64), "float32"),
    (lambda t: t.ones(2, dtype=t.float64) * t.tensor(2.0), "float64"),
    (lambda t: t.ones(2, dtype=t.bool) + t.ones(2, dtype=t.bool), "bool"),
    (lambda t: t.ones(2, dtype=t.bool) + 1, "int64"),
    (lambda t: t.ones(2, dtype=t.bool) * 1.5, "float32"),
    (lambda t: t.tensor([1, 2]) + t.ones(2), "float32"),
    (lambda t: t.tensor(2.0) * t.ones(2, dtype=t.long), "float32"),
    (lambda t: t.ones(2, dtype=t.int32) + t.ones(2, dtype=t.long), "int64"),
    (lambda t: t.tensor([1.5]), "float32"),
    (lambda t: t.tensor([1, 2]), "int64"),
    (lambda t: t.tensor([True]), "bool"),
    (lambda t: t.arange(3), "int64"),
    (lambda t: t.arange(3.0), "float32"),
    (lambda t: t.zeros(2, dtype=t.double), "float64"),
    (lambda t: t.tensor([1, 2]) ** 2, "int64"),
    (lambda t: t.tensor([1, 2]) ** 0.5, "float32"),
    (lambda t: 2 ** t.tensor([1, 2]), "int64"),
    (lambda t: t.tensor([True, False]).sum(), "int64"),
    (lambda t: t.ones(2) > 0, "bool"),
    (lambda t: t.tensor([1, 2]).exp(), "float32"),
    (lambda t: t.tensor([1, 2]).sqrt(), "float32"),
    (lambda t: t.where(t.tensor([True, False]), t.ones(2), t.zeros(2, dtype=t.float64)),
     "float64"),
    (lambda t: t.where(t.tensor([True, False]), t.ones(2), 0.0), "float32"),
    (lambda t: t.cat([t.ones(2), t.ones(2, dtype=t.float64)]), "float64"),
    (lambda t: t.full((2,), 1), "int64"),
    (lambda t: t.full((2,), 1.0), "float32"),
    (lambda t: t.linspace(0, 1, 3), "float32"),
    (lambda t: t.tensor(np.arange(3.0)), "float64"),
    (lambda t: t.ones(2, dtype=t.float64).float(), "float32"),
]


@pytest.mark.parametrize("build, expected", DTYPE_CASES)
def test_dtype_promotion(build, expected):
    for lib in LIBS:
        assert str(build(lib).dtype) == f"torch.{expected}", lib.__name__


def test_gradients_keep_the_leaf_dtype():
    x = tapegrad.ones(2, requires_grad=True)
    y = tapegrad.ones(2, dtype=tapegrad.float64, requires_grad=True)
    (x * y).sum().backward()
    assert x.grad.dtype == tapegrad.float32 and y.grad.dtype == tapegrad.float64


# ---------------------------------------------------------------------------------------------
# nn.functional against torch.nn.functional
# ---------------------------------------------------------------------------------------------

_rng = np.random.default_rng(7)
_LOGITS = _rng.standard_normal((4, 3))
_LOGITS_3D = _rng.standard_normal((2, 3, 4))
_PROBS = 1 / (1 + np.exp(-_rng.standard_normal((4, 3))))
_BINARY = (_rng.random((4, 3)) > 0.5).astype(np.float64)
_TARGET = _rng.standard_normal((4, 3))
_CLASSES = np.array([0, 2, 1, 2])
_WEIGHT = np.array([1.0, 2.0, 0.5])
_POS_WEIGHT = np.array([1.0, 3.0, 0.5])
_CLASSES_3D = np.array([[0, 1, 2, 1], [2, 2, 0, 1]])


def _loss_case(name, make):
    return pytest.param(make, id=name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("make", [
    _loss_case("mse_loss", lambda F, t, x: F.mse_loss(x, t.tensor(_TARGET), reduction=REDUCTION)),
    _loss_case("l1_loss", lambda F, t, x: F.l1_loss(x, t.tensor(_TARGET), reduction=REDUCTION)),
    _loss_case("smooth_l1_loss",
               lambda F, t, x: F.smooth_l1_loss(x, t.tensor(_TARGET), reduction=REDUCTION)),
    _loss_case("smooth_l1_loss_beta", lambda F, t, x: F.smooth_l1_loss(
        x, t.tensor(_TARGET), reduction=REDUCTION, beta=0.5)),
    _loss_case("binary_cross_entropy", lambda F, t, x: F.binary_cross_entropy(
        x.sigmoid(), t.tensor(_BINARY), reduction=REDUCTION)),
    _loss_case("binary_cross_entropy_weight", lambda F, t, x: F.binary_cross_entropy(
        x.sigmoid(), t.tensor(_PROBS), weight=t.tensor(_WEIGHT), reduction=REDUCTION)),
    _loss_case("bce_with_logits", lambda F, t, x: F.binary_cross_entropy_with_logits(
        x * 10, t.tensor(_BINARY), reduction=REDUCTION)),
    _loss_case("bce_with_logits_pos_weight", lambda F, t, x: F.binary_cross_entropy_with_logits(
        x, t.tensor(_PROBS), pos_weight=t.tensor(_POS_WEIGHT), reduction=REDUCTION)),
    _loss_case("cross_entropy", lambda F, t, x: F.cross_entropy(
        x, t.tensor(_CLASSES), reduction=REDUCTION)),
    _loss_case("cross_entropy_weight_ignore", lambda F, t, x: F.cross_entropy(
        x, t.tensor(_CLASSES), weight=t.tensor(_WEIGHT), ignore_index=1,
        reduction=REDUCTION)),
    _loss_case("cross_entropy_probs", lambda F, t, x: F.cross_entropy(
        x, t.tensor(_PROBS / _PROBS.sum(1, keepdims=True)), reduction=REDUCTION)),
    _loss_case("cross_entropy_smoothing", lambda F, t, x: F.cross_entropy(
        x, t.tensor(_CLASSES), label_smoothing=0.1, reduction=REDUCTION)),
    _loss_case("cross_entropy_3d", lambda F, t, x: F.cross_entropy(
        t.tensor(_LOGITS_3D) * x.sum(), t.tensor(_CLASSES_3D), reduction=REDUCTION)),
    _loss_case("nll_loss", lambda F, t, x: F.nll_loss(
        F.log_softmax(x, dim=1), t.tensor(_CLASSES), reduction=REDUCTION)),
    _loss_case("nll_loss_weight", lambda F, t, x: F.nll_loss(
        x, t.tensor(_CLASSES), weight=t.tensor(_WEIGHT), reduction=REDUCTION)),
])
@needs_torch
def test_losses_against_torch(make, reduction):
    global REDUCTION
    REDUCTION = reduction

    def run(t):
        x = t.tensor(_LOGITS, requires_grad=True)
        loss = make(t.nn.functional, t, x)
        w = t.tensor(np.linspace(-1, 1, loss.numel()).reshape(tuple(loss.shape)))
        (loss * w).sum().backward()
        return loss, x.grad, loss.dtype == t.float32
    assert_same(both(run), rtol=1e-5, atol=1e-6)


REDUCTION = "mean"


@needs_torch
@pytest.mark.parametrize("make", [
    lambda F, x: F.relu(x), lambda F, x: F.sigmoid(x), lambda F, x: F.tanh(x),
    lambda F, x: F.softplus(x), lambda F, x: F.softplus(x, beta=2.0),
    lambda F, x: F.gelu(x), lambda F, x: F.gelu(x, approximate="tanh"),
    lambda F, x: F.softmax(x, dim=1), lambda F, x: F.softmax(x, dim=0),
    lambda F, x: F.log_softmax(x, dim=-1), lambda F, x: F.silu(x),
    lambda F, x: F.leaky_relu(x, 0.1), lambda F, x: F.elu(x),
], ids=["relu", "sigmoid", "tanh", "softplus", "softplus_beta", "gelu", "gelu_tanh",
        "softmax1", "softmax0", "log_softmax", "silu", "leaky_relu", "elu"])
def test_activations_against_torch(make):
    def run(t):
        x = t.tensor(_LOGITS * 3, requires_grad=True)
        y = make(t.nn.functional, x)
        (y * t.tensor(_TARGET)).sum().backward()
        return y, x.grad
    assert_same(both(run), rtol=1e-5, atol=1e-6)


@needs_torch
def test_linear_against_torch():
    def run(t):
        x = t.tensor(_LOGITS, requires_grad=True)
        w = t.tensor(_TARGET[:2], requires_grad=True)
        b = t.tensor(np.array([0.5, -1.0]), requires_grad=True)
        y = t.nn.functional.linear(x, w, b)
        z = t.nn.functional.linear(x, w)
        (y * y).sum().backward()
        return y, z, x.grad, w.grad, b.grad
    assert_same(both(run), rtol=1e-5, atol=1e-6)


def test_loss_errors():
    same_error(lambda t: t.nn.functional.mse_loss(t.ones(3), t.ones(3), reduction="avg"),
               ValueError, "avg is not a valid value for reduction")
    same_error(lambda t: t.nn.functional.cross_entropy(t.ones(2, 3), t.tensor([0, 3])),
               IndexError, "Target 3 is out of bounds.")


def test_loss_grad_fn_names():
    x = tapegrad.ones(3, requires_grad=True)
    F = tapegrad.nn.functional
    assert F.mse_loss(x, tapegrad.zeros(3)).grad_fn.name() == "MseLossBackward0"
    if torch is not None:
        xt = torch.ones(3, requires_grad=True)
        assert torch.nn.functional.mse_loss(xt, torch.zeros(3)).grad_fn.name() == \
            "MseLossBackward0"
