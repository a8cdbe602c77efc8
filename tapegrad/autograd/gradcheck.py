"""gradcheck: compare analytical gradients with central finite differences in float64."""
import numpy as np


def _float64_inputs(inputs):
    from ..tensor import Tensor
    out = []
    for x in inputs:
        if isinstance(x, Tensor) and x.requires_grad:
            out.append(Tensor._wrap(x._data.astype(np.float64), requires_grad=True))
        else:
            out.append(x)
    return tuple(out)


def _outputs(fn, inputs):
    out = fn(*inputs)
    return out if isinstance(out, tuple) else (out,)


def _numerical_jacobian(fn, inputs, i, out_index, eps):
    x = inputs[i]._data
    out = _outputs(fn, inputs)[out_index]
    jac = np.zeros((x.size, out.numel()))
    flat = x.reshape(-1)
    for k in range(x.size):
        saved = flat[k]
        flat[k] = saved + eps
        plus = _outputs(fn, inputs)[out_index]._data.reshape(-1).astype(np.float64)
        flat[k] = saved - eps
        minus = _outputs(fn, inputs)[out_index]._data.reshape(-1).astype(np.float64)
        flat[k] = saved
        jac[k] = (plus - minus) / (2 * eps)
    return jac


def _analytical_jacobian(fn, inputs, i, out_index):
    from . import grad
    from ..tensor import Tensor
    out = _outputs(fn, inputs)[out_index]
    jac = np.zeros((inputs[i].numel(), out.numel()))
    if not (isinstance(out, Tensor) and out.requires_grad):
        return jac  # an output cut from the graph (a constant derivative): its Jacobian is zero
    for j in range(out.numel()):
        seed = np.zeros(out.numel())
        seed[j] = 1
        g, = grad(out, inputs[i], Tensor._wrap(seed.reshape(out.shape)), retain_graph=True,
                  allow_unused=True)
        if g is not None:
            jac[:, j] = g._data.reshape(-1)
    return jac


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, **_):
    """True when every input's gradient matches finite differences; else an error naming where.

    Args:
        func: a function of the inputs returning a Tensor or a tuple of Tensors.
        inputs: a Tensor or a tuple of them; those with requires_grad are checked (in float64).
        eps: the finite-difference step.
        atol: the absolute tolerance.
        rtol: the relative tolerance.
        raise_exception: raise on a mismatch (else return False).

    Returns:
        True when all gradients match.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        >>> torch.autograd.gradcheck(lambda x: (x ** 2).sum(), (x,))
        True
    """
    from ..tensor import Tensor
    inputs = _float64_inputs(inputs if isinstance(inputs, tuple) else (inputs,))
    n_out = len(_outputs(func, inputs))
    for i, x in enumerate(inputs):
        if not (isinstance(x, Tensor) and x.requires_grad):
            continue
        for o in range(n_out):
            numerical = _numerical_jacobian(func, inputs, i, o, eps)
            analytical = _analytical_jacobian(func, inputs, i, o)
            bad = ~np.isclose(analytical, numerical, rtol=rtol, atol=atol)
            if bad.any():
                k, j = map(int, np.argwhere(bad)[0])
                element = tuple(int(n) for n in np.unravel_index(k, x.shape))
                message = (f"Jacobian mismatch for output {o} with respect to input {i}, at input "
                           f"element {element} and output element {j}:\n"
                           f"numerical:{numerical[k, j]}\nanalytical:{analytical[k, j]}\n")
                if raise_exception:
                    raise GradcheckError(message)
                return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, **kwargs):
    """gradcheck of the first derivative (built with create_graph) against finite differences.

    Args:
        func: a function of the inputs returning a Tensor or a tuple of Tensors.
        inputs: a Tensor or a tuple of them; those with requires_grad are checked (in float64).
        grad_outputs: the cotangents of func's outputs (random when None).
        **kwargs: gradcheck's tolerances (eps, atol, rtol, raise_exception).

    Returns:
        True when all second derivatives match.

    Example:
        >>> import tapegrad as torch
        >>> x = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        >>> torch.autograd.gradgradcheck(lambda x: (x ** 3).sum(), (x,))
        True
    """
    from . import grad
    from ..tensor import Tensor
    inputs = _float64_inputs(inputs if isinstance(inputs, tuple) else (inputs,))

    def first_derivative(*xs):
        out = func(*xs)
        # a random cotangent, as PyTorch uses: ones would hide rules that mix up elements
        seed = (Tensor._wrap(np.random.default_rng(0).standard_normal(out.shape))
                if grad_outputs is None else grad_outputs)
        diff = [x for x in xs if isinstance(x, Tensor) and x.requires_grad]
        return grad(out, diff, seed, create_graph=True, allow_unused=True)

    return gradcheck(first_derivative, inputs, **kwargs)


class GradcheckError(RuntimeError):
    pass
