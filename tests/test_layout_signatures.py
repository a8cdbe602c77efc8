"""A trace records NumPy's view-or-copy choices, which depend on the input's memory layout
(a reshape of a Fortran-ordered, reversed or gapped array is a copy): the layout must select
the tape, and the trace must see the input's exact strides (issue 9, silently wrong answers)."""
import numpy as np
import pytest

import tapegrad as tg


def write_through_reshape(x):
    r = x.reshape(-1)
    r[0] = 100.0            # reaches x only where NumPy's reshape is a view
    return np.sum(x * np.arange(1.0, x.size + 1).reshape(x.shape) ** 2)


def base():
    return np.arange(1.0, 7.0).reshape(2, 3)


LAYOUTS = {
    "C": base,
    "F": lambda: np.asfortranarray(base()),
    "transposed": lambda: base().T,
    "gapped columns (copy)": lambda: base()[:, ::2],
    "gapped, still one step (view)": lambda: np.arange(1.0, 13.0).reshape(2, 6)[:, ::2],
    "reversed rows": lambda: base()[::-1],
    "reversed columns": lambda: base()[:, ::-1],
    "3-D permuted": lambda: np.arange(1.0, 25.0).reshape(2, 3, 4).transpose(1, 0, 2),
}


def finite_difference(f, make, eps=1e-6):
    x0 = make()
    grad = np.zeros(x0.shape)
    for idx in np.ndindex(x0.shape):
        up, down = make(), make()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("name", LAYOUTS)
def test_value_and_gradient_follow_each_layout(name):
    make = LAYOUTS[name]
    expected = write_through_reshape(make())
    fd = finite_difference(write_through_reshape, make)
    assert tg.grad(write_through_reshape)(make()) == pytest.approx(fd, rel=1e-5, abs=1e-4)
    value, grad = tg.value_and_grad(write_through_reshape)(make())
    assert value == pytest.approx(expected)


def test_jitted_tape_is_selected_by_layout():
    """One jitted function called with every layout in turn, twice: never a stale tape."""
    jitted = tg.jit(write_through_reshape)
    jitted_grad = tg.jit(tg.grad(write_through_reshape))
    for _ in range(2):
        for name, make in LAYOUTS.items():
            assert jitted(make()) == pytest.approx(write_through_reshape(make())), name
            fd = finite_difference(write_through_reshape, make)
            assert jitted_grad(make()) == pytest.approx(fd, rel=1e-5, abs=1e-4), name


def test_c_contiguous_calls_share_one_tape():
    jitted = tg.jit(write_through_reshape)
    for _ in range(3):
        jitted(base())
        jitted(np.ascontiguousarray(base()[:, :]))
    assert jitted.traces == 1
