"""Element writes and in-place operators on the tape faces keep every version an instruction read.

A traced array written after it was read (`y = x ** 2; x[0] = 5`) gets a new slot (copy-on-write),
and the adjoint of each earlier read must use the value that read saw. Every pattern below is plain
NumPy code, run three ways: by NumPy itself (the value, and central finite differences in float64:
the ground truth, aliasing included), through every tape face (tg.grad, tg.value_and_grad, the
reference interpreter of tg.make_tape, tg.vmap, tg.jit on the CPU, first and compiled calls), and
through PyTorch's autograd, where each write is a clone followed by index_put (the same versions,
without PyTorch's refusal to backpropagate through a saved tensor modified in place).
"""
import os
import runpy

import numpy as np
import pytest

import tapegrad as tg
from tapegrad.trace import TraceError

RNG = np.random.default_rng(7)
MASK = np.array([True, False, True, True, False])
MASK2 = np.array([[True, False, True], [False, False, True]])


# ---------------------------------------------------------------------------------------------
# Patterns: f(x, xp) -> scalar, NumPy code with xp = np (or the PyTorch shim below)
# ---------------------------------------------------------------------------------------------

def read_then_write_input(x, xp):            # the issue's repro
    y = x ** 2.0
    x[0] = 5.0
    return xp.sum(y)


def read_then_write_both_used(x, xp):
    y = x ** 2.0
    x[0] = 5.0
    return xp.sum(y * x) + xp.sum(xp.sin(x))


def write_reads_other_element(x, xp):        # t[1] = t[2] * 2
    t = x * 1.5
    u = xp.sin(t)
    t[1] = t[2] * 2
    return xp.sum(u * t) + xp.sum(t * t * t)


def write_same_element_from_itself(x, xp):
    t = xp.exp(x)
    t[2] = t[2] * t[0]
    t[0] = t[2] + t[1]
    return xp.sum(t * xp.tanh(x))


def augmented_element(x, xp):
    y = xp.tanh(x)
    x[1] += y[3] * 2.0
    x[2] *= x[1]
    x[3] -= y[0]
    x[4] /= 3.0
    return xp.sum(x * y) + xp.sum(x * x)


def slice_writes(x, xp):
    t = x * 1.0
    s = t[1:4] * 2.0
    t[1:4] = t[0:3] * t[2:5]
    t[::2] = s[0] + t[::2]
    return xp.sum(t * s[1]) + xp.sum(xp.sin(t))


def fancy_index_writes(x, xp):
    t = xp.exp(x)
    r = t[xp.asarray([4, 0])]
    t[xp.asarray([0, 3, 1])] = t[xp.asarray([2, 2, 4])] * 3.0
    return xp.sum(t * t) + xp.sum(r * t[xp.asarray([1, 2])])


def constant_mask_writes(x, xp):
    t = x * 2.0
    u = t * t
    t[xp.asarray(MASK)] = t[xp.asarray(MASK)] * x[xp.asarray([1, 0, 2])]
    return xp.sum(t * u)


def traced_mask_write(x, xp):
    t = xp.sin(x) * 3.0
    u = t * x
    t[t > 0.5] = 0.25
    return xp.sum(t * u) + xp.sum(t * t)


def traced_mask_write_traced_value(x, xp):
    t = x * 1.0
    t[x < 0.0] = x[0] * x[1]
    return xp.sum(t * t * x)


def write_in_loop(x, xp):
    t = x * 1.0
    for i in range(1, 5):
        t[i] = t[i - 1] * t[i] + xp.sin(t[i])
    return xp.sum(t) + t[4] * t[0]


def running_recurrence(x, xp):
    t = x * 1.0
    for i in range(4):
        old = t * 1.0
        t[i + 1] = old[i] * 0.5 + t[i + 1]
        t[i] = old[i + 1] * old[i]
    return xp.sum(t * t)


def inplace_whole_array(x, xp):
    y = x * 1.0
    z = y                      # an alias: NumPy's in-place ops update what both names see
    y += x * x
    y *= 2.0
    y -= xp.sin(x)
    y /= 1.5
    y **= 2.0
    return xp.sum(z * x)


def inplace_broadcast_row(x, xp):
    t = x * 1.0
    t += xp.sin(x[0])         # a 0-d operand broadcast over the array
    t[2:] -= t[:3]
    return xp.sum(t * t)


def scalar_accumulator(x, xp):
    acc = x[0]                 # a NumPy scalar: += rebinds, x[0] keeps its value
    first = acc
    for i in range(1, 5):
        acc += x[i] * acc
    return acc + first * x[0]


# 2-D patterns (x has shape (2, 3))

def rows_and_columns(x, xp):
    t = x * 1.0
    c = t[:, 1] * 1.0
    t[0] = t[1] * t[0]
    t[:, 2] = c * 3.0
    t[1, 0] += t[0, 2]
    return xp.sum(t * t) + xp.sum(c * x[:, 0])


def matmul_then_write(x, xp):
    w = x.T * 1.0              # (3, 2)
    p = x @ w                  # reads w before the writes below
    w[0, 0] = 2.0
    w[1:] *= p[0, 1]
    return xp.sum(p) + xp.sum((x @ w) ** 2.0)


def inplace_matmul(x, xp):
    s = x[:, :2] * 1.0         # (2, 2)
    k = s
    s @= s.T
    return xp.sum(k * x[:, 1:])


def mask_2d(x, xp):
    t = x * 1.0
    t[xp.asarray(MASK2)] = t[xp.asarray(MASK2)] ** 2.0
    t[t > 0.3] = t[0, 0]
    return xp.sum(t * x)


# Views (NumPy's basic indexing, transposes, reshapes, squeeze, expand_dims, broadcast_to):
# a write through a view changes its base, a write into the base is seen by its views

def row_view_write(x, xp):
    row = x[0]
    row[1] = x[1, 2] * 3.0
    return xp.sum(x * x)


def chained_index_write(x, xp):
    x[1][0] = x[0][2] ** 2.0
    return xp.sum(xp.sin(x))


def base_write_seen_by_view(x, xp):
    col = x[:, 1]
    x[0, 1] = 7.0 * x[1, 1]
    return xp.sum(col * col)


def transpose_view_write(x, xp):
    t = x.T
    t[0] += 1.0 * t[1]
    return xp.sum(x ** 3.0)


def reshape_view_write(x, xp):
    flat = x.reshape(-1)
    flat[::2] *= 2.0
    return xp.sum(x * xp.cos(x))


def reshape_copy_write(x, xp):
    c = x.T.reshape(-1)        # NumPy copies here: the write stays in c
    c[0] = 100.0
    fancy = x[[0, 1]]          # a fancy index copies too
    fancy[0, 0] = 5.0
    return xp.sum(x * x) + xp.sum(c) + xp.sum(fancy * fancy)


def view_of_view(x, xp):
    v = x[:, 1:]
    w = v[1]
    w[0] = v[0, 1] * 2.0
    x[0, 2] = 3.0 * x[1, 0]
    return xp.sum(w * v[0]) + xp.sum(x)


def iterate_rows_inplace(x, xp):
    for row in x:
        row *= 2.0
    return xp.sum(x * x * x)


def stale_view_returned(x, xp):
    v = x[0]
    x[0, 0] = 9.0 * x[1, 1]
    return xp.sum(v * x[1])


def expand_squeeze_views(x, xp):
    e = xp.expand_dims(x, 0)
    e[0, 1, 1] = x[0, 0] * 4.0
    s = xp.squeeze(e, 0)
    s[0, 2] = 1.0
    return xp.sum(x * x)


def broadcast_view_reads_base(x, xp):
    b = xp.broadcast_to(x[0], (2, 3))
    x[0, 0] = 5.0 * x[1, 2]
    return xp.sum(b * x)


def zero_d_view(x, xp):
    e = x[0, 1, ...]           # a 0-d view: += writes into x
    e += 2.0 * x[1, 2]
    s = x[1, 1]                # an element: a NumPy scalar, += rebinds
    s += 10.0
    return xp.sum(x * x) + s


def fortran_order_reshapes(x, xp):
    v = x.reshape(3, 2, order="F")     # a copy of a C-ordered array
    v[0, 0] = 100.0
    t = x.T.reshape(-1, order="F")     # a view: x.T is laid out in Fortran order
    t[1] = -5.0 * x[1, 1]
    return xp.sum(x * x) + xp.sum(v)


def layout_decides_view(x, xp):
    c = x.T * 1.5              # Fortran order, as NumPy keeps its operand's order
    f = c.reshape(-1)          # so this reshape is a copy: the write stays in f
    f[0] = 9.0 * x[0, 0]
    g = (x * 2.0).reshape(-1)  # C order: a view of its base (no name left: nothing to see)
    g[1] = 3.0
    r = c.T.reshape(-1)        # c.T is C-ordered again: a view of c
    r[2] = -x[1, 1]
    return xp.sum(c * c) + xp.sum(f) + xp.sum(g * r)


def positive_is_a_copy(x, xp):
    y = +x                     # a new array: writes to y leave x alone
    y[0, 0] = 4.0 * x[1, 1]
    z = y
    z += x                     # ... and z is y itself
    return xp.sum(x * y) + xp.sum(xp.sin(z))


PATTERNS_1D = [read_then_write_input, read_then_write_both_used, write_reads_other_element,
               write_same_element_from_itself, augmented_element, slice_writes,
               fancy_index_writes, constant_mask_writes, traced_mask_write,
               traced_mask_write_traced_value, write_in_loop, running_recurrence,
               inplace_whole_array, inplace_broadcast_row, scalar_accumulator]
PATTERNS_2D = [rows_and_columns, matmul_then_write, inplace_matmul, mask_2d]
PATTERNS = [(f, (5,)) for f in PATTERNS_1D] + [(f, (2, 3)) for f in PATTERNS_2D]
IDS = [f.__name__ for f, _ in PATTERNS]
VIEW_PATTERNS = [row_view_write, chained_index_write, base_write_seen_by_view,
                 transpose_view_write, reshape_view_write, reshape_copy_write, view_of_view,
                 iterate_rows_inplace, stale_view_returned, expand_squeeze_views,
                 broadcast_view_reads_base, zero_d_view, fortran_order_reshapes,
                 layout_decides_view, positive_is_a_copy]
# every pattern against NumPy; the views only there (the PyTorch box has no views)
ALL = PATTERNS + [(f, (2, 3)) for f in VIEW_PATTERNS]
ALL_IDS = [f.__name__ for f, _ in ALL]


def point(shape, seed=0):
    # away from the kinks of the traced masks (|sin(x)*3 - 0.5| and |x| > 0.05 at these seeds)
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.2, 1.2, size=shape)


def numpy_f(f):
    return lambda x: f(np.array(x, dtype=np.float64, copy=True), np)


def traced_f(f):
    return lambda x: f(x, np)


def finite_differences(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        g[i] = (f(up) - f(down)) / (2 * eps)
    return g


def check(actual, expected, rtol=1e-6, atol=1e-7):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------
# Every tape face against NumPy's value and finite differences
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("f, shape", ALL, ids=ALL_IDS)
def test_grad_faces_match_finite_differences(f, shape):
    x = point(shape)
    keep = x.copy()
    value, expected = numpy_f(f)(x), finite_differences(numpy_f(f), x)
    g = traced_f(f)
    check(tg.grad(g)(x), expected)
    v, gv = tg.value_and_grad(g)(x)
    check(v, value, rtol=1e-12, atol=1e-12)
    check(gv, expected)
    for optimized in (False, True):
        tape = tg.make_tape(tg.value_and_grad(g), optimized=optimized)(x)
        v, gv = tape.run(x)
        check(v, value, rtol=1e-12, atol=1e-12)
        check(gv, expected)
    jitted = tg.jit(tg.value_and_grad(g))
    for _ in range(2):                       # traced first call, compiled second call
        v, gv = jitted(x)
        check(v, value, rtol=1e-12, atol=1e-12)
        check(gv, expected)
    jg = tg.jit(tg.grad(g))
    jg(x)
    check(jg(x), expected)
    # a compiled tape fed another point: the versions are in the tape, not in the traced values
    other = point(shape, seed=1)
    check(jg(other), finite_differences(numpy_f(f), other))
    np.testing.assert_array_equal(x, keep)  # the caller's array is never written


@pytest.mark.parametrize("f, shape", ALL, ids=ALL_IDS)
def test_vmap_grad_matches_finite_differences(f, shape):
    xs = np.stack([point(shape, seed) for seed in (0, 1, 2)])
    expected = np.stack([finite_differences(numpy_f(f), row) for row in xs])
    check(tg.vmap(tg.grad(traced_f(f)))(xs), expected)
    batched = tg.jit(tg.vmap(tg.grad(traced_f(f))))
    batched(xs)
    check(batched(xs), expected)


@pytest.mark.parametrize("f, shape", ALL, ids=ALL_IDS)
def test_jvp_and_jacobians_match_finite_differences(f, shape):
    # forward mode and the Jacobian transforms differentiate the version of the input the
    # function received, not the one its writes left behind
    g = traced_f(f)
    x = point(shape)
    t = np.random.default_rng(1).standard_normal(shape)
    expected = finite_differences(numpy_f(f), x)
    out, tangent = tg.jvp(g, (x,), (t,))
    check(out, numpy_f(f)(x), rtol=1e-12, atol=1e-12)
    check(tangent, np.sum(expected * t), rtol=1e-6, atol=1e-6)
    check(tg.jacrev(g)(x), expected)
    check(tg.jacfwd(g)(x), expected)
    out, pullback = tg.vjp(g, x)
    check(pullback(np.ones(()))[0], expected)


@pytest.mark.parametrize("f, shape", ALL, ids=ALL_IDS)
def test_checkpoint_of_a_writing_function(f, shape):
    # the recomputation in the adjoint starts from the inputs as the function received them
    x = point(shape)
    expected = finite_differences(numpy_f(f), x)
    inner = tg.checkpoint(traced_f(f))
    check(tg.grad(lambda x: inner(x) * 1.0)(x), expected)
    check(tg.grad(lambda x: inner(x * 1.0))(x), expected)
    jitted = tg.jit(tg.grad(lambda x: inner(x) * 1.0))
    jitted(x)
    check(jitted(x), expected)


def test_custom_rules_see_their_inputs_before_writes():
    def fun(x):
        return np.sum(x ** 2.0)

    def fwd(x):
        out = np.sum(x ** 2.0)
        residual = x * 2.0
        x[0] = 7.0                 # fwd writes into its input after reading it
        return out, residual

    square_sum = tg.custom_vjp(fun)
    square_sum.defvjp(fwd, lambda residual, g: (g * residual,))
    x = np.array([0.5, -1.5, 2.0])
    check(tg.grad(square_sum)(x), 2.0 * x)

    doubled = tg.custom_jvp(lambda x: (x.__setitem__(0, 3.0), np.sum(x * x))[1])

    @doubled.defjvp
    def doubled_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        y = x * 1.0
        y[0] = 3.0
        t = t * 1.0
        t[0] = 0.0
        return np.sum(y * y), np.sum(2.0 * y * t)
    check(tg.grad(doubled)(x), [0.0, 2.0 * x[1], 2.0 * x[2]])


def test_issue_repro_values():
    f = traced_f(read_then_write_input)
    x = np.array([1.0, 2.0, 3.0])
    check(tg.grad(f)(x), [2.0, 4.0, 6.0])
    jg = tg.jit(tg.grad(f))
    jg(x)
    check(jg(x), [2.0, 4.0, 6.0])


def test_second_order_through_a_write():
    def f(x):
        y = x ** 3.0
        x[0] = 2.0
        return np.sum(y * x)
    # d/dx_i of grad_i: f = 2 x0^3 + x1^4 + x2^4; diag hessian (12 x0, 12 x1^2, 12 x2^2)
    x = np.array([0.5, -1.0, 1.5])
    check(tg.grad(lambda x: np.sum(tg.grad(f)(x)))(x), [12 * 0.5, 12.0, 12 * 1.5 ** 2])


# ---------------------------------------------------------------------------------------------
# Against PyTorch: each write is clone + index_put, in-place ops rebind (aliases see them)
# ---------------------------------------------------------------------------------------------

class _TorchArray:
    """A PyTorch tensor with NumPy's in-place semantics, written functionally: a write replaces
    the tensor this box holds by a clone with the elements put, so every name bound to the box
    sees it, and autograd sees ordinary out-of-place operations."""

    def __init__(self, t):
        self.t = t

    @staticmethod
    def unwrap(v):
        return v.t if isinstance(v, _TorchArray) else v

    def __getitem__(self, index):
        return _TorchArray(self.t[_torch_index(index)])

    def __setitem__(self, index, value):
        t = self.t.clone()
        t[_torch_index(index)] = self.unwrap(value)
        self.t = t

    def _inplace(self, result):
        if self.t.ndim == 0:
            return _TorchArray(result)
        self.t = result
        return self

    @property
    def T(self):
        return _TorchArray(self.t.T)

    @property
    def ndim(self):
        return self.t.ndim


def _torch_index(index):
    torch = pytest.importorskip("torch")
    items = index if isinstance(index, tuple) else (index,)
    items = tuple(torch.as_tensor(i) if isinstance(i, np.ndarray) else
                  i.t if isinstance(i, _TorchArray) else i for i in items)
    return items if isinstance(index, tuple) else items[0]


def _box_ops():
    import operator
    for name in ("add", "sub", "mul", "truediv", "pow", "matmul", "gt", "lt"):
        op = getattr(operator, name)
        setattr(_TorchArray, f"__{name}__",
                lambda self, other, op=op: _TorchArray(op(self.t, _TorchArray.unwrap(other))))
        setattr(_TorchArray, f"__r{name}__",
                lambda self, other, op=op: _TorchArray(op(_TorchArray.unwrap(other), self.t)))
        if name not in ("gt", "lt"):
            setattr(_TorchArray, f"__i{name}__",
                    lambda self, other, op=op: self._inplace(op(self.t, _TorchArray.unwrap(other))))
    _TorchArray.__neg__ = lambda self: _TorchArray(-self.t)


_box_ops()


class _TorchNumpy:
    """The few np.* functions the patterns call, on boxes."""

    def __init__(self, torch):
        self.torch = torch

    def asarray(self, value):
        return value

    def __getattr__(self, name):
        fn = getattr(self.torch, name)
        return lambda *args: _TorchArray(fn(*[_TorchArray.unwrap(a) for a in args]))


@pytest.mark.parametrize("f, shape", PATTERNS, ids=IDS)
def test_grad_matches_pytorch(f, shape):
    torch = pytest.importorskip("torch")
    x = point(shape, seed=3)
    leaf = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    out = f(_TorchArray(leaf.clone()), _TorchNumpy(torch))
    out.t.backward()
    v, g = tg.value_and_grad(traced_f(f))(x)
    check(v, out.t.item(), rtol=1e-12, atol=1e-12)
    check(g, leaf.grad.numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Cost, semantics and errors of writes
# ---------------------------------------------------------------------------------------------

def test_writes_copy_nothing_while_tracing():
    # a write is one setitem instruction on a new slot: the handle moves, no copy of the array
    # is recorded and no instruction is added for the versions kept
    def f(x):
        for i in range(x.shape[0]):
            x[i] = x[i] * 2.0
        return np.sum(x)
    tape = tg.make_tape(f, optimized=False)(np.ones(50))
    names = [ins.prim.name for ins in tape.instrs]
    assert names.count("setitem") == 50 and len(names) == 50 * 3 + 1


def test_inplace_keeps_dtype_and_shape_as_numpy():
    def f(x):
        y = x.astype(np.float32)
        y += x                                 # float64 operand: y stays float32
        return y
    for face in (tg.jit(f), tg.jit(f)):
        assert face(np.ones(3)).dtype == np.float32
        assert face(np.ones(3)).dtype == np.float32

    def grow(x):
        y = x[0] * 1.0
        y += x                                 # (3,) += (2, 3): NumPy refuses
        return y
    with pytest.raises(ValueError, match="non-broadcastable output operand"):
        tg.grad(lambda x: np.sum(grow(x)))(np.ones((2, 3)))

    def bad(x):
        k = (x > 0) * 1                        # an int64 traced array
        k /= 2                                 # NumPy: UFuncTypeError (a TypeError)
        return np.sum(k * x)
    with pytest.raises(TypeError, match="same_kind"):
        tg.grad(bad)(np.ones(3))


def test_element_write_loop_keeps_one_version_in_memory():
    # versions made by writes and read only by element reads/writes are released when the next
    # write replaces them: tracing n writes into an n-array holds O(n) values, not O(n^2)
    import tracemalloc

    def loop(x):
        y = x * 1.0
        for i in range(1, x.shape[0]):
            y[i] = y[i - 1] * 0.5 + x[i]
        return np.sum(y)
    n = 3000                                   # all versions kept: n * n * 8 bytes = 72 MB
    tracemalloc.start()
    try:
        g = tg.grad(loop)(np.ones(n))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30e6, f"tracing kept {peak / 1e6:.0f} MB"
    # d sum(y) / d x_i = sum over j >= i of 0.5^(j - i)
    check(g, 2.0 * (1.0 - 0.5 ** (n - np.arange(n))), rtol=1e-12, atol=1e-12)


def released_versions_still_read(x, xp):
    y = x * 1.0
    y[0] = 2.0 * x[1]
    keep = +y                  # another handle on this version: it must keep its values
    s = 0 + y                  # Python's sum() starts so: a handle on the same version too
    y[1] = 3.0
    y[2] = y[1] * y[0]         # this version is read by a multiply before the next write
    y[3] = 1.0
    return xp.sum(keep * x) + xp.sum(s * s) + xp.sum(y * x)


def test_versions_other_handles_read_keep_their_values():
    x = point((5,))
    expected = finite_differences(numpy_f(released_versions_still_read), x)
    check(tg.grad(traced_f(released_versions_still_read))(x), expected)
    jitted = tg.jit(tg.grad(traced_f(released_versions_still_read)))
    jitted(x)
    check(jitted(x), expected)
    hessian = tg.hessian(traced_f(released_versions_still_read))(x)
    step = 1e-5
    columns = [(finite_differences(numpy_f(released_versions_still_read), x + step * e)
                - finite_differences(numpy_f(released_versions_still_read), x - step * e))
               / (2 * step) for e in np.eye(5)]
    check(hessian, np.array(columns).T, rtol=1e-4, atol=1e-4)


def test_traced_mask_write_of_many_values_is_refused():
    def f(x):
        x[x > 0] = x[:2]
        return np.sum(x)
    with pytest.raises(TraceError, match="data-dependent"):
        tg.grad(f)(np.array([1.0, -1.0, 2.0]))


def test_traced_mask_read_is_refused():
    with pytest.raises(TraceError, match="boolean-mask"):
        tg.grad(lambda x: np.sum(x[x > 0]))(np.array([1.0, -1.0]))


def test_duplicate_fancy_write_last_wins():
    # NumPy: x[[0, 0]] = [a, b] stores b; only b reaches the output
    def f(x):
        t = x * 1.0
        t[np.array([0, 0, 2])] = x[np.array([1, 2, 0])] * 3.0
        return np.sum(t * t)
    x = np.array([0.3, -0.7, 1.1])
    check(tg.grad(f)(x), finite_differences(numpy_f(lambda x, xp: f(x)), x))


def test_duplicate_fancy_write_of_broadcast_values():
    def f(x):
        t = x * 1.0
        t[[0, 0, 1]] = 7.0
        t[np.array([[1, 1], [2, 2]])] = x[:2]     # rows of repeated positions: the last column wins
        return np.sum(t * t * x)
    x = np.array([0.3, -0.7, 1.1])
    expected = finite_differences(numpy_f(lambda x, xp: f(x)), x)
    check(tg.grad(f)(x), expected)
    jg = tg.jit(tg.grad(f))
    jg(x)
    check(jg(x), expected)


def test_write_into_broadcast_view_is_refused():
    def f(x):
        b = np.broadcast_to(x[0], (2, 3))
        b[0, 0] = 1.0
        return np.sum(b)
    with pytest.raises(ValueError, match="read-only"):
        tg.grad(f)(np.ones((2, 3)))


def test_views_cost_nothing_until_read_after_a_write():
    # a view of an array nobody writes records only its own gather; a write into the base
    # records one setitem, and the stale view one gather when (and only when) it is read again
    def f(x):
        rows = [x[i] for i in range(4)]
        for i in range(4):
            x[i, 0] = 1.0
        return np.sum(rows[3])
    tape = tg.make_tape(f, optimized=False)(np.ones((4, 3)))
    names = [ins.prim.name for ins in tape.instrs]
    assert names.count("getitem") == 4 + 1 and names.count("setitem") == 4


# ---------------------------------------------------------------------------------------------
# Random programs of reads, writes, in-place ops and views, run by NumPy and by the tape faces
# ---------------------------------------------------------------------------------------------

def _random_index(rng, shape):
    """A random valid index of an array of this shape: ints, slices, elements, fancy, masks."""
    kind = rng.integers(7) if len(shape) else 6
    n = shape[0] if shape else 0
    if kind == 0:
        return int(rng.integers(-n, n))
    if kind == 1:
        start, step = int(rng.integers(0, n)), int(rng.choice([1, 2, -1]))
        return slice(start, None, step) if step > 0 else slice(None, start, step)
    if kind == 2:
        return tuple(int(rng.integers(0, m)) for m in shape)
    if kind == 3 and len(shape) > 1:
        return (slice(None), int(rng.integers(0, shape[1])))
    if kind == 4:
        return np.array(rng.integers(0, n, size=2))      # may repeat a row
    if kind == 5:
        return rng.random(shape) < 0.5
    return Ellipsis


def _random_program(seed, steps=10):
    rng = np.random.default_rng(seed)
    program, shapes = [], [(3, 4)]
    for _ in range(steps):
        k = int(rng.integers(len(shapes)))
        shape = shapes[k]
        op = rng.choice(["read", "write", "inplace", "view", "copy"], p=[.25, .3, .2, .15, .1])
        if op == "view":
            kind = rng.integers(3) if len(shape) == 2 else 0
            if kind == 0 and shape[0] > 1:
                index = (slice(int(rng.integers(0, shape[0] - 1)), None),)
                program.append(("view", k, index))
                shapes.append((shape[0] - index[0].start,) + shape[1:])
            elif kind == 1:
                program.append(("view", k, "T"))
                shapes.append(shape[::-1])
            else:
                program.append(("view", k, "flat"))
                shapes.append((int(np.prod(shape)),))
            continue
        if op == "copy":
            program.append(("copy", k, None))
            shapes.append(shape)
            continue
        source = int(rng.integers(len(shapes)))
        element = tuple(int(rng.integers(0, m)) for m in shapes[source])
        program.append((op, k, _random_index(rng, shape), source, element,
                        int(rng.integers(3))))
    return program


def _run_program(program, x):
    arrays, loss = [x], 0.0
    funcs = [np.sin, np.cos, lambda v: v * v]
    for step in program:
        op, k = step[0], step[1]
        a = arrays[k]
        if op == "view":
            arrays.append(a.T if step[2] == "T" else a.reshape(-1) if step[2] == "flat"
                          else a[step[2]])
            continue
        if op == "copy":
            arrays.append(a * 1.5)
            continue
        index, source, element, f = step[2:]
        value = funcs[f](arrays[source][element]) * 0.7       # a 0-d value read now
        if op == "read":
            loss = loss + np.sum(funcs[f](a[index]) * value)
        elif op == "write":
            a[index] = value
        else:
            a[index] += value
    for k, a in enumerate(arrays):
        loss = loss + np.sum(np.sin(a * (k + 1)))
    return loss


@pytest.mark.parametrize("seed", range(60))
def test_random_programs_match_numpy(seed):
    program = _random_program(seed, steps=12)
    f = lambda x: _run_program(program, x)
    x = point((3, 4), seed)
    numpy_f = lambda x: _run_program(program, np.array(x, copy=True))
    expected = finite_differences(numpy_f, x)
    v, g = tg.value_and_grad(f)(x)
    check(v, numpy_f(x), rtol=1e-12, atol=1e-12)
    check(g, expected, rtol=1e-5, atol=1e-6)
    jg = tg.jit(tg.value_and_grad(f))
    jg(x)
    v, g = jg(x)
    check(v, numpy_f(x), rtol=1e-12, atol=1e-12)
    check(g, expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The CUDA backend (a GPU, or Numba's simulator with NUMBA_ENABLE_CUDASIM=1)
# ---------------------------------------------------------------------------------------------

CUDA_PATTERNS = ["read_then_write_input", "write_reads_other_element", "fancy_index_writes",
                 "traced_mask_write", "inplace_whole_array", "row_view_write",
                 "iterate_rows_inplace", "layout_decides_view"]


@pytest.mark.parametrize("f, shape", [p for p in ALL if p[0].__name__ in CUDA_PATTERNS],
                         ids=[f.__name__ for f, _ in ALL if f.__name__ in CUDA_PATTERNS])
def test_cuda_vmap_grad_matches_finite_differences(f, shape):
    cuda = runpy.run_path(os.path.join(os.path.dirname(__file__), "cuda", "cuda_ready.py"))
    if not cuda["READY"]:
        pytest.skip(cuda["SKIP_REASON"])
    xs = np.stack([point(shape, seed) for seed in (0, 1, 2)])
    expected = np.stack([finite_differences(numpy_f(f), row) for row in xs])
    batched = tg.jit(tg.vmap(tg.grad(traced_f(f))), device="cuda")
    for _ in range(2):
        got = batched(xs)
        check(got.copy_to_host() if hasattr(got, "copy_to_host") else got, expected)
