"""tapegrad.source: emitted derivative code, checked against central finite differences (float64),
jit=True against jit=False, refusals, and one golden listing."""
import inspect
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tapegrad import source
from tapegrad.source import TransformError

# ---------------------------------------------------------------------------------------------
# The corpus: one function per construct
# ---------------------------------------------------------------------------------------------

GRAVITY = 9.81
WEIGHTS = np.array([0.5, -1.0, 2.0])


def arithmetic(x, y):
    z = (x * y - 3.0 / x) ** 2 + -y / (1.0 + x * x)
    return z + x ** 0.5 - 2 ** y


def math_and_numpy_calls(x, y):
    a = math.sin(x) * np.cos(y) + math.exp(-x) * np.log(y)
    b = np.sqrt(x + y) + math.tanh(x * y) + np.log1p(x) + np.expm1(0.5 * y)
    return a * b + abs(x - y) + max(x, y) - min(x * 2.0, y) + math.erf(x)


def augmented_and_tuples(x, y):
    a, b = x, y
    for _ in range(4):
        a, b = b, a + b * x
    a += y
    a *= x
    a -= 1.0
    a /= y
    return a * b


def branches(x, y):
    if x > 1.0:
        z = x * y
    elif x > 0.0:
        z = math.sin(x) + y
    else:
        z = -x
    w = z if y > 0.5 else z * z
    return w * 2.0


def nested_loops(x, n):
    total = 0.0
    for i in range(n):
        for j in range(1, i + 2):
            total = total + math.sin(x * j) / (i + 1)
    return total


def loop_over_array(x, scale):
    total = 0.0
    for value in x:
        total += np.tanh(scale * value) * value
    return total


def while_break_continue(x):
    k = 0
    s = x
    while s < 50.0:
        k += 1
        if k % 2 == 0:
            continue
        s = s * 1.5 + x
        if k > 20:
            break
    return s


def early_returns(x, flag):
    if flag:
        return x * x
    for i in range(10):
        x = x * 1.1 + 0.1
        if x > 2.0:
            return x * 3.0
    return -x


def _helper(u, v):
    w = u * v
    if w > 1.0:
        return math.log(w)
    return w - 1.0


def _helper_pair(u):
    return u * u, math.sin(u)


def calls_helpers(x, y):
    a = _helper(x, y) + _helper(y, 0.5)
    p, q = _helper_pair(a)
    return p + q * x


def element_reads_and_writes(x, n):
    out = np.zeros(n)
    for i in range(n):
        out[i] = x[i % x.shape[0]] ** 2 + out[i - 1] * 0.5
    y = x.copy()
    y[0] = y[0] * 3.0
    y[1] += y[2]
    return np.sum(out) + np.sum(y * y)


def recurrence_in_array(rate, n):
    values = np.zeros(n + 1)
    values[0] = 1.0
    for i in range(n):
        values[i + 1] = values[i] + 0.1 * (-rate * values[i] + math.sin(values[i]))
    return values[n]


def closures_over_constants(x):
    return GRAVITY * np.sum(WEIGHTS * x * x) + np.dot(WEIGHTS, np.sin(x))


def array_functions(x, w):
    h = np.tanh(np.dot(w, x))
    z = np.maximum(h, 0.1) * h
    leaky = np.where(x > 0.0, x, 0.5 * x)
    return np.mean(z * z) + np.max(x) - np.min(h) + np.sum(np.abs(x) + leaky) + x.sum()


def scalar_meets_array(a, x):
    return np.sum(a * x + a) / x.size


def pendulum(damping, length):
    theta = 1.0
    omega = 0.0
    dt = 0.01
    for step in range(1000):
        alpha = -(GRAVITY / length) * math.sin(theta) - damping * omega
        theta = theta + dt * omega
        omega = omega + dt * alpha
    return theta


def int_arguments(x, n, flag):
    s = x
    for i in range(n):
        s = s * x if flag else s + x
    return s * float(n)


def loop_over_rows(X, w):
    total = 0.0
    for row in X:
        h = np.tanh(row * w)
        total += np.sum(h * h)
    return total


def while_on_arrays(x):
    y = x * 1.0
    k = 0
    while np.sum(y * y) < 100.0:
        y = y * 1.5 + np.sin(y)
        k += 1
    return np.sum(y) + k


def reductions_for_numba(X, w):
    # what Numba compiles: sums over one axis, clip, reshape, transpose, matmul
    rows = np.sum(np.clip(X, -0.4, 0.6) * w, axis=1)
    cols = np.sum(X.reshape(3, 2).T, axis=0)
    return np.sum(rows * rows) + np.sum(X @ cols)


def reductions_with_axis(X, w):
    a = np.sum(X * w, axis=1)
    b = np.mean(X, axis=-1, keepdims=True)
    c = np.max(X, axis=0)
    d = X.min(axis=1)
    e = np.amax(X * X, axis=(0, 1))
    f = np.sum(np.tanh(X), axis=(0,), keepdims=True)
    return np.sum(a * a) + np.sum(b * X) + np.dot(c, w) + np.sum(d) + e + np.sum(f * f) \
        + np.sum(np.amin(X, 1)) + X.mean(0).sum()


def products_and_norms(x, X):
    p = np.prod(x) + np.prod(X, axis=0).sum() + x.prod()
    n = np.linalg.norm(x) + np.linalg.norm(X, axis=1).sum() + np.linalg.norm(x, 1) \
        + np.linalg.norm(x, ord=np.inf) + np.linalg.norm(X)
    return p * n


def log_sum_exp(x):
    return np.log(np.sum(np.exp(x)))


def softmax_cross_entropy(X, targets):
    m = np.max(X, axis=1, keepdims=True)
    e = np.exp(X - m)
    p = e / np.sum(e, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(X - m), axis=-1)) + m[:, 0]
    return -np.sum(targets * np.log(p)) + np.mean(lse)


def shapes_and_clipping(x, X):
    y = np.clip(x, -0.5, 0.5) + np.clip(x * 2.0, 0.0, None)
    Z = np.reshape(X, (3, 2)).T + X.reshape(2, 3) * 0.5
    v = X.ravel() @ X.T.reshape(-1)
    W = np.transpose(Z, (0, 1)) + Z.transpose()[:, 0]
    return np.sum(y * y) + np.sum(Z * W) + v + np.sum(np.maximum(Z, 0.1) * np.minimum(Z, 0.2))


def batched_matmul(A, B, W):
    C = A @ B
    D = np.matmul(C, W)
    return np.sum(np.tanh(D))


def elementwise_functions(x, y):
    a = np.where(x > y, np.tanh(x), np.log1p(y)) + np.abs(np.expm1(x - y))
    b = np.maximum(x, y) * np.minimum(x, 2.0 * y) + np.multiply(x, np.negative(y)) \
        + np.divide(x, y) + np.subtract(x, np.add(y, 1.0))
    return a * b


def short_circuit(x, n):
    total = 0.0
    i = 0
    while i < n and x[i] > -1.0:
        total += x[i] * x[i]
        i += 1
    if 0.0 < total < 10.0 or total > 100.0:
        total = total * 2.0
    return total


def math_style(x, y):
    return math.sin(x) * math.exp(y) + math.sqrt(x * y) + math.log1p(x) * math.tanh(y)


def numba_spellings(X, x):
    # what Numba has no spelling for: max/min/mean/prod over an axis, keepdims, tuple axes,
    # vector norms over an axis, np.clip with a bound left out, transposes that are reshaped
    m = np.max(X, axis=1, keepdims=True)
    a = np.mean(X - m, axis=0) + np.min(X, axis=0) + np.prod(X, axis=0)
    b = np.sum(X * X, axis=(0, 1), keepdims=True) + np.linalg.norm(X, axis=1, keepdims=True)
    c = np.linalg.norm(X, ord=np.inf, axis=0) + np.clip(x, 0.0, None) + np.clip(x, None, 0.5)
    return np.sum(a * c) + np.sum(b * X) + np.sum(X.T.reshape(-1) * X.ravel())


def stacks_and_mixed_floats(A, B, W):
    # stacks of matrices with `@`, a 2-D operand shared by the stack; float32 meets float64
    C = np.tanh(A @ B)
    return np.mean(np.matmul(C, W) ** 2)


ROW = np.array([0.3, -0.7, 1.1])
VEC = np.array([0.4, 0.9, -0.2])
MAT = np.array([[0.5, -0.2, 0.1], [0.3, 0.8, -0.6]])
WITH_ZERO = np.array([0.4, 0.0, -0.2])
ONE_HOT = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
STACK_A = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
STACK_B = np.linspace(0.5, -0.5, 16).reshape(2, 4, 2)

CORPUS = [
    (arithmetic, (1.3, 0.7), (0, 1)),
    (math_and_numpy_calls, (0.8, 1.7), (0, 1)),
    (augmented_and_tuples, (0.9, 1.2), (0, 1)),
    (branches, (1.5, 0.7), (0, 1)),
    (branches, (0.5, 0.2), (0, 1)),
    (branches, (-0.5, 0.9), (0, 1)),
    (nested_loops, (0.7, 4), 0),
    (loop_over_array, (ROW, 0.8), (0, 1)),
    (while_break_continue, (1.3,), 0),
    (early_returns, (0.7, True), 0),
    (early_returns, (0.7, False), 0),
    (early_returns, (-0.9, False), 0),
    (calls_helpers, (1.4, 0.9), (0, 1)),
    (calls_helpers, (0.4, 0.9), (0, 1)),
    (element_reads_and_writes, (VEC, 5), 0),
    (recurrence_in_array, (0.7, 20), 0),
    (closures_over_constants, (VEC,), 0),
    (array_functions, (VEC, MAT), (0, 1)),
    (scalar_meets_array, (1.7, ROW), (0, 1)),
    (pendulum, (0.3, 1.2), (0, 1)),
    (int_arguments, (1.1, 3, True), 0),
    (int_arguments, (1.1, 3, False), 0),
    (loop_over_rows, (MAT, ROW), (0, 1)),
    (while_on_arrays, (np.array([0.5, 1.0]),), 0),
    (reductions_for_numba, (MAT, ROW), (0, 1)),
    (reductions_with_axis, (MAT, ROW), (0, 1)),
    (products_and_norms, (VEC, MAT), (0, 1)),
    (products_and_norms, (WITH_ZERO, MAT), (0, 1)),
    (log_sum_exp, (VEC,), 0),
    (softmax_cross_entropy, (MAT, ONE_HOT), 0),
    (shapes_and_clipping, (VEC, MAT), (0, 1)),
    (batched_matmul, (STACK_A, STACK_B, MAT[:, :2]), (0, 1, 2)),
    (elementwise_functions, (0.8, 0.5), (0, 1)),
    (elementwise_functions, (0.3, 0.5), (0, 1)),
    (short_circuit, (VEC, 3), 0),
    (short_circuit, (np.array([0.5, -2.0, 3.0]), 3), 0),
    (math_style, (0.8, 0.5), (0, 1)),
    (numba_spellings, (MAT, VEC), (0, 1)),
    (stacks_and_mixed_floats, (STACK_A, STACK_B.astype(np.float32), MAT[:, :2].T.copy()),
     (0, 1, 2)),
]
NUMBA_CASES = CORPUS[-2:]


def finite_differences(fun, args, argnum, h=1e-6):
    x = args[argnum]
    if np.ndim(x) == 0:
        up, down = list(args), list(args)
        up[argnum], down[argnum] = x + h, x - h
        return (fun(*up) - fun(*down)) / (2 * h)
    grad = np.zeros_like(x, dtype=float)
    for index in np.ndindex(x.shape):
        up, down = list(args), list(args)
        up[argnum], down[argnum] = x.astype(float).copy(), x.astype(float).copy()
        up[argnum][index] += h
        down[argnum][index] -= h
        grad[index] = (fun(*up) - fun(*down)) / (2 * h)
    return grad


def _ids(case):
    return case[0].__name__


@pytest.mark.parametrize("fun, args, argnums", CORPUS, ids=[_ids(c) for c in CORPUS])
def test_gradient_matches_finite_differences(fun, args, argnums):
    value, grads = source.value_and_grad(fun, argnums=argnums)(*args)
    assert value == pytest.approx(fun(*args), rel=1e-12, abs=1e-12)
    nums = (argnums,) if isinstance(argnums, int) else argnums
    grads = (grads,) if isinstance(argnums, int) else grads
    for num, grad in zip(nums, grads):
        expected = finite_differences(fun, args, num)
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)


def test_arguments_are_left_as_they_were():
    x = VEC.copy()
    source.grad(element_reads_and_writes)(x, 5)
    np.testing.assert_array_equal(x, VEC)



# nested, while, writes, arrays, ODE, rows, short-circuit `and`; the reductions, clips, reshapes
# and stacks Numba spells differently (each cold compile costs seconds: few cases, many constructs)
JIT_CASES = [CORPUS[i] for i in (6, 8, 14, 17, 19, 22, 35)] + NUMBA_CASES


@pytest.mark.parametrize("fun, args, argnums", JIT_CASES, ids=[_ids(c) for c in JIT_CASES])
def test_jit_equals_python(fun, args, argnums):
    plain = source.value_and_grad(fun, argnums=argnums)(*args)
    compiled = source.value_and_grad(fun, argnums=argnums, jit=True)(*args)
    assert compiled[0] == pytest.approx(plain[0], rel=1e-12)
    plain_grads = plain[1] if not isinstance(argnums, int) else (plain[1],)
    compiled_grads = compiled[1] if not isinstance(argnums, int) else (compiled[1],)
    for a, b in zip(plain_grads, compiled_grads):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


TAPE_CASES = [c for c in CORPUS if c[0] in (
    arithmetic, closures_over_constants, array_functions, scalar_meets_array, reductions_for_numba,
    reductions_with_axis, products_and_norms, log_sum_exp, softmax_cross_entropy,
    shapes_and_clipping, batched_matmul, elementwise_functions)]


@pytest.mark.parametrize("fun, args, argnums", TAPE_CASES, ids=[_ids(c) for c in TAPE_CASES])
def test_agrees_with_the_tape_face(fun, args, argnums):
    import tapegrad
    traced = tapegrad.grad(fun, argnums=argnums)(*args)
    emitted = source.grad(fun, argnums=argnums)(*args)
    for a, b in zip(traced, emitted):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def reduce_sum(x):
    return np.sum(x)


def reduce_mean(x):
    return np.mean(x)


def reduce_max(x):
    return np.max(x)


def sum_of_matvec(w, v):
    return np.sum(np.dot(w, v))


COTANGENT_ROWS = np.array([0.7, -1.3])
COTANGENT_COLS = np.array([[0.2, -0.5, 1.1]])


def sum_rows(x):
    return np.sum(COTANGENT_ROWS * np.sum(x, axis=1))


def mean_cols_kept(x):
    return np.sum(COTANGENT_COLS * np.mean(x, axis=0, keepdims=True))


def max_rows(x):
    return np.sum(COTANGENT_ROWS * np.max(x, axis=-1))


def min_cols(x):
    return np.sum(COTANGENT_COLS[0] * np.amin(x, axis=0))


def prod_cols(x):
    return np.sum(COTANGENT_COLS[0] * np.prod(x, axis=0))


def prod_all(x):
    return np.prod(x)


def norm_rows(x):
    return np.sum(COTANGENT_ROWS * np.linalg.norm(x, axis=1))


def norm_all(x):
    return np.linalg.norm(x)


def test_shape_aware_rules_agree_with_the_registry():
    """Reductions and matmul are emitted by adjoint.py (their registry rules need static
    shapes); on the same inputs they give what the registry's rules give."""
    from tapegrad import primitives as P
    x = np.array([[0.5, 2.0, -1.0], [2.0, 0.3, 0.1]])  # a tie at the maximum
    one = np.float64(1.0)
    reductions = [(reduce_sum, P.sum_), (reduce_mean, P.mean), (reduce_max, P.amax)]
    for fun, prim in reductions:
        params = {"axis": None, "keepdims": False}
        expected = prim.vjp(0, one, prim.impl(x, **params), (x,), params)
        np.testing.assert_allclose(source.grad(fun)(x), expected, rtol=1e-14)
    x = np.array([[2.0, 2.0, 0.0], [0.0, 0.3, 0.0]])  # ties, a lone zero, two zeros
    rows, cols = COTANGENT_ROWS, COTANGENT_COLS
    with_axis = [(sum_rows, P.sum_, (1,), False, rows), (mean_cols_kept, P.mean, (0,), True, cols),
                 (max_rows, P.amax, (1,), False, rows), (min_cols, P.amin, (0,), False, cols[0]),
                 (prod_cols, P.prod, (0,), False, cols[0]), (prod_all, P.prod, None, False, one),
                 (norm_rows, P.norm, (1,), False, rows), (norm_all, P.norm, None, False, one)]
    for fun, prim, axis, keepdims, g in with_axis:
        params = {"axis": axis, "keepdims": keepdims}
        expected = prim.vjp(0, g, prim.impl(x, **params), (x,), params)
        np.testing.assert_allclose(source.grad(fun)(x), expected, rtol=1e-14, err_msg=fun.__name__)
    g = np.ones(2)
    ans = P.matmul.impl(MAT, VEC)
    expected = (P.matmul.vjp(0, g, ans, (MAT, VEC), {}), P.matmul.vjp(1, g, ans, (MAT, VEC), {}))
    for a, b in zip(source.grad(sum_of_matvec, argnums=(0, 1))(MAT, VEC), expected):
        np.testing.assert_allclose(a, b, rtol=1e-14)


def test_grad_returns_only_the_gradient_and_specialises_on_kinds():
    dfun = source.grad(scalar_meets_array, argnums=1)
    np.testing.assert_allclose(dfun(2.0, ROW), np.full(3, 2.0 / 3))
    assert "np.sum" not in dfun.source.split("# adjoint sweep")[0]
    dfun(2.0, MAT)  # a 2-D argument: a new specialisation
    assert dfun(2.0, MAT).shape == MAT.shape


# ---------------------------------------------------------------------------------------------
# Readable output
# ---------------------------------------------------------------------------------------------

def golden(x, y):
    z = x * y + math.sin(x)
    return z * z


def test_golden_source():
    line = golden.__code__.co_firstlineno
    expected = f'''import math

import numpy as np


def grad_golden(x, y):
    """Gradient of golden with respect to x, y (emitted by tapegrad.source)."""
    z = x * y + math.sin(x)
    # adjoint sweep
    result_bar = 1.0
    # line {line + 2}: return z * z
    z_bar = result_bar * z + result_bar * z
    # line {line + 1}: z = x * y + math.sin(x)
    z_1_bar = z_bar
    x_bar = z_bar * math.cos(x)
    x_bar += z_1_bar * y
    y_bar = z_1_bar * x
    return x_bar, y_bar
'''
    assert source.grad(golden, argnums=(0, 1)).source == expected


def test_scalar_math_adjoints_read_like_the_user_wrote_them():
    adjoint = source.grad(math_style, argnums=(0, 1)).source.split("# adjoint sweep")[1]
    assert "math.cos(x)" in adjoint and "np." not in adjoint


def test_temporaries_read_only_for_their_shape_are_not_logged():
    text = source.grad(loop_over_rows, argnums=(0, 1)).source_for(MAT, ROW)
    assert "total_1_stack" not in text and "np.full_like(h, total_bar)" in text


def test_conditions_short_circuit():
    # `i < n and x[i] > -1.0` reads x[i] only while i < n: x[3] would raise
    text = source.grad(short_circuit).source_for(VEC, 3)
    assert "if cond_1:" in text
    assert source.grad(short_circuit)(VEC, 3) == pytest.approx(2 * VEC * 2)


def test_loops_use_preallocated_stacks_and_names_from_the_user():
    text = source.grad(pendulum, argnums=(0, 1)).source
    assert "theta_stack = np.empty(1000)" in text
    assert "for step in range(999, -1, -1):" in text
    assert "damping_bar" in text and "length_bar" in text
    assert "tapegrad" not in text.replace("(emitted by tapegrad.source)", "")


# ---------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------

def uses_try(x):
    try:
        y = x * 2.0
    except ValueError:
        y = x
    return y


def uses_print(x):
    print(x)
    return x


def uses_dtype(x):
    return np.sum(x, dtype=np.float32)


def uses_variable_axis(x, k):
    return np.sum(np.sum(x, axis=k))


def clips_to_a_differentiated_bound(x, y):
    return np.clip(x, y, 2.0)


def uses_matrix_norm(X):
    return np.linalg.norm(X, 2)


def uses_dot_on_stacks(A, B):
    return np.sum(np.dot(A, B))


def uses_unknown_function(x):
    return np.spacing(x)


def recursive(x):
    if x > 1.0:
        return recursive(x / 2.0)
    return x


def uses_comprehension(x):
    values = [x * i for i in range(3) if i > 0]  # a filter: its length is unknown
    return values[1]


REFUSALS = [
    (uses_try, (1.0,), "Try"),
    (uses_print, (1.0,), "Expr"),
    (uses_dtype, (VEC,), "keyword"),
    (uses_variable_axis, (MAT, 1), "axis"),
    (clips_to_a_differentiated_bound, (0.5, 0.2), "Call"),
    (uses_matrix_norm, (MAT,), "ord"),
    (uses_dot_on_stacks, (STACK_A, STACK_A), "Call"),
    (uses_unknown_function, (1.0,), "Call"),
    (recursive, (3.0,), "Call"),
    (uses_comprehension, (1.0,), "ListComp"),
]


@pytest.mark.parametrize("fun, args, construct", REFUSALS, ids=[r[0].__name__ for r in REFUSALS])
def test_refusals_name_file_line_and_construct(fun, args, construct):
    with pytest.raises(TransformError) as info:
        source.grad(fun, argnums=(0, 1) if fun is clips_to_a_differentiated_bound else 0)(*args)
    error = info.value
    assert error.construct == construct
    assert error.filename == inspect.getsourcefile(fun)
    first = fun.__code__.co_firstlineno
    assert first <= error.lineno <= first + 6
    assert f"test_source.py:{error.lineno}" in str(error)


COUNTS = np.array([[1, 2, 3], [0, 1, 0]])


def integer_matrix_times_floats(x):
    y = np.sin(x)
    return np.sum(COUNTS @ y)


def test_what_numba_cannot_compile_is_a_transform_error_naming_the_line():
    # Numba's @ wants equal dtypes (NumPy promotes int64 to float64): jit=False works
    line = integer_matrix_times_floats.__code__.co_firstlineno + 2
    expected = source.grad(integer_matrix_times_floats)(VEC)
    with pytest.raises(TransformError) as info:
        source.grad(integer_matrix_times_floats, jit=True)(VEC)
    error = info.value
    assert isinstance(error, source.JitError)
    assert error.lineno == line and error.filename == __file__
    message = str(error)
    assert "integer_matrix_times_floats" in message and "jit=False" in message
    assert "np.sum(COUNTS @ y)" in message and "same dtype" in message
    assert error.__cause__ is None and error.__suppress_context__
    np.testing.assert_allclose(expected, COUNTS.sum(axis=0) * np.cos(VEC))


def test_numba_spellings_read_plainly():
    text = source.grad(numba_spellings, argnums=(0, 1)).source_for(MAT, VEC)
    forward = text.split("# adjoint sweep")[0]
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    assert "keepdims" not in code and "axis=(" not in code
    assert "np.maximum(x, 0.0)" in forward and "np.minimum(x, 0.5)" in forward
    assert "for i in range(X.shape[0]):" in forward and "np.max(X[i])" in forward
    assert "np.ascontiguousarray(" in forward
    stacks = source.grad(stacks_and_mixed_floats, argnums=(0, 1, 2)).source_for(
        STACK_A, STACK_B, MAT[:, :2].T)
    assert "for k in range(A.shape[0]):" in stacks and "A[k] @ B[k]" in stacks


def test_lambdas_are_transformed():
    assert source.grad(lambda x: x * x)(1.5) == 3.0  # more cases: test_source_edge_cases.py


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------

def test_grad_source_cli(capsys):
    from tapegrad.cli import main
    assert main(["grad-source", f"{__file__}:scalar_meets_array", "--argnums", "0", "1",
                 "--kinds", "float,array"]) == 0
    out = capsys.readouterr().out
    assert "def grad_scalar_meets_array(a, x):" in out
    assert "a_bar = np.sum(" in out


def test_import_tapegrad_does_not_import_numba():
    code = "import sys, tapegrad, tapegrad.source; print('numba' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False", out.stderr
