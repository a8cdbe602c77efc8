"""A corpus of ~100 ordinary Python functions (scalars, loops, branches, helpers, arrays) as users
write them, differentiated on the traced face (tg.grad, tg.jit(tg.grad)) and the source face
(source.grad with jit=False and jit=True), each checked against central finite differences in
float64 (issue 10).

Every function is smooth at its sample points (away from the branch boundaries), so the finite
differences are a true reference. What a face refuses (math.* and NumPy buffers on the traced
face, recursion on the source face) is checked for its message instead (REFUSED). jit=True
compiles one Numba function per entry: every fifth entry by default (all categories, within the
CI budget), all of them with TAPEGRAD_CORPUS_ALL_JIT=1.
"""
import math
import os

import numpy as np
import pytest

import tapegrad as tg
from tapegrad import source

try:
    import numba  # noqa: F401
    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False

SCALE = 3.0
COEFFS = (1.0, -0.5, 0.25)
WEIGHTS = [2.0, 3.0]
OFFSET = np.array([0.5, -1.0, 2.0])
W3 = np.array([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]])


# ---- scalar arithmetic -------------------------------------------------------------------------

def c_identity(a):
    return a


def c_negate(a):
    return -a


def c_affine(a, b, c):
    return a * b + c


def c_quotients(a, b):
    return a / b - b / a + 3.0 / a


def c_int_power(a):
    return a ** 3 - 2 * a ** 2


def c_float_power(a):
    return a ** 2.5


def c_power_of_variable(a, b):
    return a ** b


def c_constant_base_power(a):
    return 2.0 ** a + 10 ** (a / 4)


def c_reciprocal_sum(a):
    return 1 / (1 + a * a)


def c_global_constant(a):
    return SCALE * a * a


def c_self_cancel(a):
    return a - a + a / a


def c_chain(a):
    b = a * a
    c = b * a
    d = c + b
    return d * 0.5


# ---- math and builtins --------------------------------------------------------------------------

def c_math_funcs(a):
    return math.sin(a) * math.exp(a) + math.sqrt(a * a + 1) + math.tanh(a)


def c_math_log_base(a):
    return math.log(a, 2) + math.log(a * a + 1, 10) + math.log(a)


def c_math_pow_hypot(a, b):
    return math.pow(a, 2) + math.hypot(a, b) + math.atan2(a, b)


def c_abs(a):
    return abs(a) * 2 + abs(a - 3)


def c_min_max(a, b):
    return max(a, b) * 2 + min(a, b, 0.25) - max(a * a, 1.0)


def c_builtin_pow(a):
    return pow(a, 3) + pow(2.0, a)


def c_np_scalar_funcs(a):
    return np.exp(a) + np.log(a * a + 1) + np.sin(a) * np.cos(a) + np.tanh(a)


def c_np_multiply(a):
    return np.multiply(a, 3.0) + np.add(a, a) - np.subtract(1.0, a)


def c_np_sqrt_abs(a):
    return np.sqrt(np.abs(a) + 1.0)


# ---- branches -----------------------------------------------------------------------------------

def c_if_else(a):
    if a > 0:
        a = a * 3.0
    else:
        a = a * 2.0
    return a


def c_if_elif(a):
    if a > 1:
        y = a * a
    elif a < -1:
        y = -a * 3
    else:
        y = a * 0.5
    return y


def c_nested_if(a):
    if a > 0:
        if a < 10:
            a = a * a
        else:
            a = a * 2.0
    else:
        a = 3.0 * a
    return a


def c_branch_on_two(a, b):
    if a > b:
        r = a * a
    else:
        r = a * b
    return r


def c_if_without_else(a):
    y = a
    if a < 0.5:
        y = y * y
    return y + 1


def c_ternary(a):
    return a * a if a > 0 else -a


def c_ternary_assigned(a, b):
    s = a if a > b else b
    return s * a


def c_bool_ops(a, b):
    if a > 0 and b > 0:
        return a * b
    if a < 0 or b < 0:
        return a - b
    return a + b


def c_not_and_chained(a):
    if not a > 2 and -2 < a < 2:
        return a * a
    return a


def c_early_return(a):
    if a > 1:
        return a * a
    a = a * 3
    return a + 1


def c_branch_then_loop(a, n):
    if a > 0:
        a = a * a
    a = 2.0 * a
    for i in range(n):
        a = a * 1.5
    return a


def c_multi_branch_mess(a):
    if a * a / 3.0 > 0:
        b = 3.0
    else:
        b = 4.0
    a = a * b
    if a < b - a * b:
        a = a * a
    elif a > b + 3.0 * a:
        a = a / b
    else:
        a = -a
    return a


# ---- loops --------------------------------------------------------------------------------------

def c_for_range(a):
    for i in range(3):
        a = a * 1.2 + 0.1
    return a


def c_for_range_n(a, n):
    for i in range(n):
        a = a * a
    return a


def c_for_start_stop_step(a):
    s = 0.0
    for i in range(1, 8, 2):
        s = s + a * i
    return s


def c_loop_counter_used(a):
    s = a
    for i in range(4):
        s = s + a ** i
    return s


def c_nested_loops(a):
    for i in range(2):
        for j in range(3):
            a = a * 1.1 + i * j * 0.01
    return a


def c_break(a):
    s = 0.0
    for i in range(10):
        s = s + a * i
        if i >= 3:
            break
    return s


def c_break_on_value(a):
    s = a
    for i in range(20):
        s = s * 1.5
        if s > 100:
            break
    return s


def c_continue(a):
    s = 0.0
    for i in range(6):
        if i % 2 == 0:
            continue
        s = s + a * i
    return s


def c_while(a):
    while abs(a) > 0.1:
        a = a * 0.5
    return a


def c_while_counter(a):
    i = 0
    s = 0.0
    while i < 5:
        s = s + a * a
        i += 1
    return s


def c_while_break(a):
    k = 0
    while True:
        a = a * 0.9
        k = k + 1
        if k >= 4:
            break
    return a


def c_loop_accumulate_product(a):
    out = 1
    for i in range(3):
        out = out * a
    return out


def c_loop_with_branch(a):
    for i in range(3):
        if a < 20:
            a = a * a
    return a


def c_euler_ode(k, y0):
    y = y0
    dt = 0.1
    for step in range(10):
        y = y + dt * (-k * y)
    return y


def c_newton_sqrt(a):
    x = a
    for i in range(6):
        x = 0.5 * (x + a / x)
    return x


def c_loop_over_array(x):
    s = 0.0
    for v in x:
        s = s + v * v
    return s


def c_int_counter_float_mix(a):
    count = 0
    total = 0.0
    for i in range(5):
        if i * a > 0.5:
            count += 1
            total += a * i
    return total + count


# ---- helpers, nested functions, lambdas, defaults, keywords -------------------------------------

def _mul(a, b):
    return a * b


def _add(a, b):
    return a + b


def _scaled(x, factor=2.0):
    return x * factor


def _pair(a):
    return a * a, a + 1


def _poly(x, c0=1.0, c1=0.0, c2=0.0):
    return c0 + c1 * x + c2 * x * x


def c_helper(a, b, c):
    return _add(_mul(a, b), c)


def c_helper_same_names(a):
    b = _mul(a, a)
    c = _mul(b, b)
    return c


def c_helper_in_loop(a, n):
    for i in range(n):
        a = _mul(a, a)
    return a


def c_helper_in_branch(a, b):
    if a > b:
        o = _mul(a, b)
    else:
        o = _mul(b, a)
    return o


def c_helper_chain(a, b):
    return c_helper(a, b, 1.0)


def c_helper_default(a):
    return _scaled(a) + _scaled(a, 3.0)


def c_helper_keyword(a):
    return _scaled(a, factor=0.5) + _poly(a, c2=3.0) + _poly(x=a, c1=2.0)


def c_helper_tuple_result(a):
    p, q = _pair(a)
    return p * q


def c_nested_def(a, n):
    def step(a, n):
        return a * n

    for i in range(n):
        a = step(a, a)
    return a


def c_nested_def_closure(a):
    k = 2.0

    def f(t):
        return k * t * t

    return f(a) + f(a + 1)


def c_lambda_local(a):
    sq = lambda t: t * t  # noqa: E731
    return sq(a) + sq(a - 1)


def c_default_arg(a, scale=2.0):
    return a * scale


def c_keyword_only_default(a, *, power=3):
    return a ** power


# ---- assignments --------------------------------------------------------------------------------

def c_overwrite(a):
    b = a
    b = b * 3.0
    return b


def c_tuple_unpack(a, b):
    p, q = a * b, a + b
    return p * q


def c_swap(a, b):
    a, b = b, a * 2
    return a * b + a


def c_augassign(a):
    x = a * a
    x *= x
    x += a
    x -= 0.5
    x /= 2.0
    x **= 2
    return x


def c_tuple_pack_index(a, b, c):
    t = (a, b, c)
    return t[0] * t[2] + t[1]


def c_tuple_argument(abc):
    a, b, c = abc
    return a * b + c


def c_dict_argument(p):
    return p['a'] * p['b'] + p['c']


def c_nested_dict_argument(p):
    return p['i']['j'] * p['i']['k']


def c_dict_built(a):
    d = dict(x=a, y=a * a)
    e = {'z': 3.0}
    return d['x'] * d['y'] + e['z']


def c_multiple_targets_chain(a):
    t1 = a * 2
    t2 = t1 + a
    t3 = t2 * t1
    return t3


# ---- arrays -------------------------------------------------------------------------------------

def c_sum(x):
    return np.sum(x)


def c_sum_of_squares(x):
    return np.sum(x * x)


def c_mean_tanh(x):
    return np.mean(np.tanh(x))


def c_exp_sum(x):
    return np.sum(np.exp(x / 3))


def c_overwrite_with_reduction(x):
    x = np.sum(x)
    x = x * x
    return x


def c_dot(x):
    return np.dot(x, x)


def c_dot_global(x):
    return np.dot(x, OFFSET) + np.sum(x * OFFSET)


def c_matvec(m, v):
    return np.sum(np.tanh(np.dot(m, v)))


def c_matmul_operator(m):
    return np.sum((m @ m.T) ** 2)


def c_subscript_read(x):
    return x[0] * x[1] + x[-1]


def c_subscript_write(x):
    a = x[0]
    b = x[1]
    x[0] = a * b
    return np.sum(x)


def c_subscript_write_after_power(x):
    y = x ** 2.0
    x[0] = y[1] * y[2]
    return np.sum(x * y)


def c_slicing(x):
    return np.sum(x[1:] * x[:-1])


def c_extended_slice(x):
    return np.sum(x[::2, np.newaxis])


def c_loop_index_sum(x):
    s = 0.0
    for i in range(len(x)):
        s = s + x[i] * (i + 1)
    return s


def c_loop_neighbours(x):
    s = 0.0
    for i in range(x.shape[0] - 1):
        s += (x[i + 1] - x[i]) ** 2
    return s


def c_zeros_like_buffer(x):
    y = np.zeros_like(x)
    for i in range(len(x)):
        y[i] = x[i] * x[i]
    return np.sum(y)


def c_zeros_buffer(x):
    h = np.zeros((len(x), 3))
    for t in range(len(h)):
        h[t] = x[t]
    return np.sum(h * h)


def c_rnn(inputs, w):
    h = np.zeros((4, 2))
    for t in range(3):
        h[t + 1] = np.tanh(np.dot(inputs[t], w) + h[t])
    return np.sum(h[1:])


def c_list_literal_sum(a):
    b = [1.0, a * a, 2.0]
    return np.sum(b)


def c_list_of_elements(x):
    b = [1.0, x[0] * x[1] * x[2], 3.0]
    return np.sum(b)


def c_list_index(a):
    xs = [1.0, a, 3.0]
    return xs[0] * xs[1] + xs[2]


def c_np_array_of_scalars(a, b):
    v = np.array([a, b, a * b])
    return np.sum(v * v)


def c_listcomp(x):
    return np.sum([v * 3 for v in x])


def c_listcomp_range(x):
    return sum([x[i] * x[i] for i in range(len(x))])


def c_builtin_sum_generator(x):
    return sum(x[i] * i for i in range(len(x)))


def c_maximum_where(x):
    return np.sum(np.maximum(x, 0.0) + np.where(x > 0, x, 0.1 * x))


def c_reshape_transpose(m):
    return np.sum(np.reshape(m, (-1,)) * np.reshape(m.T, (-1,)))


def c_axis_reduction(m):
    return np.sum(np.mean(m, axis=0) * np.sum(m, axis=1))


def c_norm_sqrt(x):
    return np.sqrt(np.sum(x ** 2))


def c_logistic_regression(w, b, inputs, labels):
    h = np.dot(inputs, w) + b
    p = 0.5 * (np.tanh(h) + 1)
    q = p * labels + (1 - p) * (1 - labels)
    return -np.sum(np.log(q))


def c_bilinear(x, h, u, w, b):
    y = np.dot(x, w)
    y = y + np.dot(h, u)
    y = y + b
    y = np.tanh(y)
    return np.sum(y)


def c_softplus_loss(w, x):
    z = np.dot(x, w)
    return np.mean(np.log(1 + np.exp(z)))


def c_array_augassign(x):
    y = x * 1.0
    y += 2.0
    y *= x
    return np.sum(y)


def c_array_branch_on_sum(x):
    if np.sum(x) > 0:
        return np.sum(x * x)
    return np.sum(-x)


def c_array_while(x):
    while np.sum(x * x) > 1.0:
        x = x * 0.5
    return np.sum(x)


def c_scalar_from_array_loop(x, n):
    s = x[0]
    for i in range(n):
        s = s * x[1] + x[2]
    return s


def c_len_and_shape(m):
    r = m.shape[0]
    c = len(m[0])
    return np.sum(m) / (r * c)


def c_rnn_traced_buffer(inputs, w):
    h = np.zeros_like(inputs, shape=(4, 2))
    for t in range(3):
        h[t + 1] = np.tanh(np.dot(inputs[t], w) + h[t])
    return np.sum(h[1:])


def c_tuple_index_by_int(a, b, c, i):
    t = a, b, c
    return t[i] * a


def c_square_and_pow_builtin(x):
    return np.sum(np.square(x)) + pow(x[0], 2)


def c_recursive(a, n):
    if n == 0:
        return 1.0
    return a * c_recursive(a, n - 1)


def c_keepdims_flag(m, flag):
    return np.sum(np.sum(m, axis=0, keepdims=flag) * 2.0) + np.sum(np.mean(m, 1, keepdims=flag))


def c_expand_squeeze_matmul(x, m):
    col = np.expand_dims(x, 1)
    return np.sum(np.squeeze(np.matmul(m, col), 1) * np.expand_dims(x, 0))


def c_for_else(a):
    for i in range(3):
        a = a * 1.1
    else:
        a = a + 1.0
    return a


def c_for_else_break(a):
    total = 0.0
    for i in range(1, 6):
        total = total + a * i
        if total > 3.0:
            break
    else:
        total = total * total
    return total


def c_while_else(a):
    k = 0
    while k < 3:
        a = a * a * 0.5 + 0.2
        k += 1
    else:
        a = a * 2.0
    return a


def c_enumerate(x):
    s = 0.0
    for i, v in enumerate(x):
        s = s + i * v * v
    return s


def c_zip(x):
    s = 0.0
    for u, v in zip(x[:-1], x[1:]):
        s = s + u * v
    return s


def _sum_all(*values):
    total = 0.0
    for v in values:
        total = total + v * v
    return total + len(values) * values[0]


def c_varargs_helper(a, b):
    return _sum_all(a, b, a * b)


def c_loop_over_tuple(a, b):
    s = 0.0
    for v in (a, b * 2.0, a * b):
        s = s + np.sin(v)
    return s


def c_branch_assign_then_break(a):
    # the branch's adjoint restores `scale`; replaying its condition needs s as it was then
    s, scale, k = a, 1.0, 0
    while k < 6:
        s = s * 1.5
        k += 1
        if s > 4.0:
            scale = 2.0
            break
    return s * scale


def c_global_coefficients(a, i):
    s = 0.0
    for k, c in enumerate(COEFFS):
        s = s + c * a ** k
    for c in COEFFS:
        s = s * a + c
    return s + WEIGHTS[0] * a * COEFFS[i] + sum(WEIGHTS) * len(COEFFS)


def c_list_appended_in_a_loop(x, n):
    steps = []
    for i in range(n):
        d = x[i + 1] - x[i]
        steps.append(d * d)
    steps = np.array(steps)
    return np.sum(steps) + steps[0] * len(steps)


def c_trace(m):
    return np.trace(m) * np.trace(np.dot(m, m.T))


def c_var_std(x):
    return np.var(x) + np.std(x * 2.0) + np.float64(round(2.4)) * x[0]


def c_outer_eye_diag(x, m):
    p = np.outer(x, x) + np.eye(3) * 2.0
    return np.sum(p * m) + np.sum(np.diag(m) * x) + np.sum(np.diag(x) * m)


def c_tril_triu_cumsum(m):
    return np.sum(np.tril(m) * np.triu(m * m)) + np.sum(np.cumsum(m) ** 2)


def c_diag_of_a_wide_matrix(m):
    return np.sum(np.diag(m) ** 3)


def c_stack(x):
    rows = np.stack([x, x * x, np.sin(x)])
    return np.sum(rows[1] * rows[2]) + np.sum(np.stack((x, x), axis=0) ** 2)


def c_concatenate(x, m):
    joined = np.concatenate([x, x * x, np.sin(x)])
    rows = np.concatenate((m, m * 2.0), axis=0)
    return np.sum(joined * joined[::-1]) + np.sum(rows[1:] * rows[:-1])


def c_reshape_like(m, x):
    flat = np.reshape(m, (-1,))
    back = np.reshape(flat * 2.0, np.shape(m)) + flat.reshape(m.shape)
    return np.sum(back * m) + np.sum(np.reshape(x * x, x.shape))


def c_swapaxes(t, flag):
    a = np.swapaxes(t, -1, -2) if flag else t
    return np.sum(np.matmul(a[0], t[1]) * np.swapaxes(t, 0, 2)[1])


def c_round_floor_divmod(a):
    q, r = divmod(a, 0.75)
    return round(a) * a + math.floor(a) * a * a + math.ceil(a) + r * a + q + round(a, 1) * 2.0


def c_clip_like_minmax(x):
    s = 0.0
    for i in range(len(x)):
        s = s + min(max(x[i], -1.0), 1.0) * x[i]
    return s


# ---- the corpus: (function, argument sets, argnums) ---------------------------------------------

RNG = np.random.RandomState(7)
VEC = RNG.randn(5)
VEC3 = np.array([0.7, -1.2, 0.4])
MAT = RNG.randn(3, 3)
S = [-1.7, -0.6, 0.35, 1.4]       # scalar points away from every branch boundary used above
POS = [0.4, 1.3, 2.6]


def _sets(*pools):
    sets = [()]
    for pool in pools:
        sets = [s + (v,) for s in sets for v in pool]
    return sets


CORPUS = [
    (c_identity, _sets(S), 0), (c_negate, _sets(S), 0),
    (c_affine, _sets(S, [0.7], [-1.1]), (0, 1, 2)),
    (c_quotients, _sets(S, [0.9, -2.2]), (0, 1)), (c_int_power, _sets(S), 0),
    (c_float_power, _sets(POS), 0), (c_power_of_variable, _sets(POS, [0.5, 2.0, -1.3]), (0, 1)),
    (c_constant_base_power, _sets(S), 0), (c_reciprocal_sum, _sets(S), 0),
    (c_global_constant, _sets(S), 0), (c_self_cancel, _sets(S), 0), (c_chain, _sets(S), 0),
    (c_math_funcs, _sets(S), 0), (c_math_log_base, _sets(POS), 0),
    (c_math_pow_hypot, _sets(S, [0.8]), (0, 1)), (c_abs, _sets(S), 0),
    (c_min_max, _sets(S, [0.1, -0.3]), (0, 1)), (c_builtin_pow, _sets(S), 0),
    (c_np_scalar_funcs, _sets(S), 0), (c_np_multiply, _sets(S), 0), (c_np_sqrt_abs, _sets(S), 0),
    (c_if_else, _sets(S), 0), (c_if_elif, _sets([-2.5, -0.3, 0.6, 1.8]), 0),
    (c_nested_if, _sets(S + [12.0]), 0), (c_branch_on_two, _sets(S, [0.1, -1.0]), (0, 1)),
    (c_if_without_else, _sets(S), 0), (c_ternary, _sets(S), 0),
    (c_ternary_assigned, _sets(S, [0.2]), (0, 1)), (c_bool_ops, _sets(S, [0.7, -0.4]), (0, 1)),
    (c_not_and_chained, _sets(S + [2.5]), 0), (c_early_return, _sets(S), 0),
    (c_branch_then_loop, _sets(S, [1, 3]), 0), (c_multi_branch_mess, _sets(S), 0),
    (c_for_range, _sets(S), 0), (c_for_range_n, _sets(S, [1, 2, 3]), 0),
    (c_for_start_stop_step, _sets(S), 0), (c_loop_counter_used, _sets(S), 0),
    (c_nested_loops, _sets(S), 0), (c_break, _sets(S), 0), (c_break_on_value, _sets(POS), 0),
    (c_continue, _sets(S), 0), (c_while, _sets(S), 0), (c_while_counter, _sets(S), 0),
    (c_while_break, _sets(S), 0), (c_loop_accumulate_product, _sets(S), 0),
    (c_loop_with_branch, _sets(S + [25.0]), 0), (c_euler_ode, _sets([0.3, 1.2], [2.0]), (0, 1)),
    (c_newton_sqrt, _sets(POS), 0), (c_loop_over_array, [(VEC,)], 0),
    (c_int_counter_float_mix, _sets(S), 0),
    (c_helper, _sets(S, [0.7], [2.0]), (0, 1, 2)), (c_helper_same_names, _sets(S), 0),
    (c_helper_in_loop, _sets(S, [1, 2]), 0), (c_helper_in_branch, _sets(S, [0.3]), (0, 1)),
    (c_helper_chain, _sets(S, [0.3]), (0, 1)), (c_helper_default, _sets(S), 0),
    (c_helper_keyword, _sets(S), 0), (c_helper_tuple_result, _sets(S), 0),
    (c_nested_def, _sets(S, [1, 2]), 0), (c_nested_def_closure, _sets(S), 0),
    (c_lambda_local, _sets(S), 0), (c_default_arg, _sets(S), 0),
    (c_keyword_only_default, _sets(S), 0),
    (c_overwrite, _sets(S), 0), (c_tuple_unpack, _sets(S, [0.4]), (0, 1)),
    (c_swap, _sets(S, [0.4]), (0, 1)), (c_augassign, _sets(S), 0),
    (c_tuple_pack_index, _sets(S, [0.4], [1.5]), (0, 1, 2)),
    (c_tuple_argument, [((a, 0.4, 1.5),) for a in S], 0),
    (c_dict_argument, [(dict(a=a, b=0.4, c=1.5),) for a in S], 0),
    (c_nested_dict_argument, [(dict(i=dict(j=3.0, k=4.0)),)], 0),
    (c_dict_built, _sets(S), 0), (c_multiple_targets_chain, _sets(S), 0),
    (c_sum, [(VEC,)], 0), (c_sum_of_squares, [(VEC,)], 0), (c_mean_tanh, [(VEC,)], 0),
    (c_exp_sum, [(VEC,)], 0), (c_overwrite_with_reduction, [(VEC,)], 0), (c_dot, [(VEC,)], 0),
    (c_dot_global, [(VEC3,)], 0), (c_matvec, [(MAT, VEC3)], (0, 1)),
    (c_matmul_operator, [(MAT,)], 0), (c_subscript_read, [(VEC,)], 0),
    (c_subscript_write, [(VEC,)], 0), (c_subscript_write_after_power, [(VEC,)], 0),
    (c_slicing, [(VEC,)], 0), (c_extended_slice, [(VEC,)], 0), (c_loop_index_sum, [(VEC,)], 0),
    (c_loop_neighbours, [(VEC,)], 0), (c_zeros_like_buffer, [(VEC,)], 0),
    (c_zeros_buffer, [(VEC,)], 0), (c_rnn, [(RNG.randn(3, 2), RNG.randn(2, 2))], (0, 1)),
    (c_list_literal_sum, _sets(S), 0), (c_list_of_elements, [(VEC3,)], 0),
    (c_list_index, _sets(S), 0), (c_np_array_of_scalars, _sets(S, [0.4]), (0, 1)),
    (c_listcomp, [(VEC,)], 0), (c_listcomp_range, [(VEC,)], 0),
    (c_builtin_sum_generator, [(VEC,)], 0), (c_maximum_where, [(VEC,)], 0),
    (c_reshape_transpose, [(MAT,)], 0), (c_axis_reduction, [(MAT,)], 0),
    (c_norm_sqrt, [(VEC,)], 0),
    (c_logistic_regression, [(RNG.randn(3, 4), RNG.randn(4), RNG.rand(5, 3),
                              (RNG.rand(5, 4) > 0.5) * 1.0)], (0, 1)),
    (c_bilinear, [tuple(RNG.randn(*s) for s in ((1, 3), (1, 3), (3, 3), (3, 3), (1, 3)))],
     (0, 1, 2, 3, 4)),
    (c_softplus_loss, [(RNG.randn(3), RNG.randn(6, 3))], 0),
    (c_array_augassign, [(VEC,)], 0), (c_array_branch_on_sum, [(VEC,), (-VEC,)], 0),
    (c_array_while, [(VEC * 3,)], 0), (c_scalar_from_array_loop, [(VEC3, 3)], 0),
    (c_len_and_shape, [(MAT,)], 0), (c_clip_like_minmax, [(VEC * 2,)], 0),
    (c_rnn_traced_buffer, [(RNG.randn(3, 2), RNG.randn(2, 2))], (0, 1)),
    (c_tuple_index_by_int, _sets(S, [0.4], [1.5], [0, 1, 2, -1]), (0, 1, 2)),
    (c_square_and_pow_builtin, [(VEC,)], 0), (c_recursive, _sets(S, [0, 1, 3]), 0),
    (c_keepdims_flag, [(MAT, True), (MAT, False)], 0),
    (c_expand_squeeze_matmul, [(VEC3, MAT)], (0, 1)),
    (c_for_else, _sets(S), 0), (c_for_else_break, _sets([0.4, 1.3, -0.8, -0.05]), 0),
    (c_while_else, _sets(S), 0), (c_enumerate, [(VEC,)], 0), (c_zip, [(VEC,)], 0),
    (c_varargs_helper, _sets(S, [0.6]), (0, 1)), (c_loop_over_tuple, _sets(S, [0.6]), (0, 1)),
    (c_branch_assign_then_break, _sets([0.4, 1.1, -0.7, 5.0]), 0),
    (c_global_coefficients, _sets(S, [0, 2, -1]), 0),
    (c_list_appended_in_a_loop, [(VEC, 4), (VEC, 2)], 0), (c_trace, [(MAT,), (RNG.randn(2, 3),)], 0),
    (c_var_std, [(VEC,)], 0), (c_outer_eye_diag, [(VEC3, MAT)], (0, 1)),
    (c_tril_triu_cumsum, [(MAT,)], 0),
    (c_diag_of_a_wide_matrix, [(RNG.randn(1, 4),), (RNG.randn(4, 2),)], 0),
    (c_stack, [(VEC,)], 0), (c_concatenate, [(VEC3, MAT)], (0, 1)),
    (c_reshape_like, [(MAT, VEC3)], (0, 1)),
    (c_swapaxes, [(RNG.randn(3, 3, 3), True), (RNG.randn(3, 3, 3), False)], 0),
    (c_round_floor_divmod, _sets([-1.72, -0.61, 0.33, 1.41, 2.22]), 0),
]

# What a face refuses, with the message it must give (it names the user's line too): math.*
# turns a traced value into a float, a NumPy array cannot hold one, and the source face inlines
# calls, so recursion has no end there.
_TRACED = ("grad", "jit")
_SOURCE = ("source", "source_jit")
_MATH = "instead of math"
_BUFFER = "written into a NumPy array"
REFUSED = {
    (c_math_funcs, _TRACED): _MATH, (c_math_log_base, _TRACED): _MATH,
    (c_math_pow_hypot, _TRACED): _MATH, (c_zeros_buffer, _TRACED): _BUFFER,
    (c_rnn, _TRACED): _BUFFER, (c_recursive, _SOURCE): "recursive call to `c_recursive`",
}


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_copy(v) for v in value)
    return np.array(value, dtype=np.float64) if isinstance(value, np.ndarray) else value


def _leaves(value):
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _leaves(value[k])]
    if isinstance(value, (tuple, list)):
        return [x for v in value for x in _leaves(v)]
    return [np.asarray(value, dtype=np.float64)]


def _with_leaves(like, leaves):
    if isinstance(like, dict):
        return {k: _with_leaves(like[k], leaves) for k in sorted(like)}
    if isinstance(like, (tuple, list)):
        return type(like)(_with_leaves(v, leaves) for v in like)
    leaf = leaves.pop(0)
    return leaf if isinstance(like, np.ndarray) else float(leaf)


def finite_differences(f, args, argnum, eps=1e-6):
    """Central differences of f's (scalar) value along every float leaf of args[argnum]."""
    leaves = _leaves(args[argnum])
    grads = []
    for k, leaf in enumerate(leaves):
        g = np.zeros_like(leaf)
        for i in np.ndindex(leaf.shape):
            values = []
            for step in (eps, -eps):
                moved = [x.copy() for x in leaves]
                moved[k][i] += step
                call = list(_copy(args))
                call[argnum] = _with_leaves(args[argnum], moved)
                values.append(float(f(*call)))
            g[i] = (values[0] - values[1]) / (2 * eps)
        grads.append(g)
    return grads


FACES = ["grad", "jit", "source", "source_jit"]


def _derivative(face, f, argnums):
    if face == "grad":
        return tg.grad(f, argnums=argnums)
    if face == "jit":
        return tg.jit(tg.grad(f, argnums=argnums))
    return source.grad(f, argnums=argnums, jit=face == "source_jit")


def _selected(face):
    if face != "source_jit" or os.environ.get("TAPEGRAD_CORPUS_ALL_JIT"):
        return CORPUS
    return CORPUS[::5]  # Numba compiles each; a fifth keeps every category, and the CI budget


def _cases():
    for face in FACES:
        for f, sets, argnums in _selected(face):
            marks = [pytest.mark.skipif(not HAVE_NUMBA, reason="needs numba")] \
                if face == "source_jit" else []
            yield pytest.param(face, f, sets, argnums, id=f"{face}-{f.__name__}", marks=marks)


@pytest.mark.parametrize("face, f, sets, argnums", list(_cases()))
def test_corpus_gradient_matches_finite_differences(face, f, sets, argnums):
    df = _derivative(face, f, argnums)
    refusal = next((m for (g, faces), m in REFUSED.items() if g is f and face in faces), None)
    if refusal is not None:
        with pytest.raises(Exception, match=refusal) as info:
            df(*_copy(sets[0]))
        assert "test_function_corpus.py:" in str(info.value)
        return
    for args in sets:
        got = df(*_copy(args))
        nums = (argnums,) if isinstance(argnums, int) else argnums
        got = (got,) if isinstance(argnums, int) else got
        for num, g in zip(nums, got):
            want = finite_differences(f, args, num)
            have = _leaves(g)
            assert len(have) == len(want), (f.__name__, args)
            for h, w in zip(have, want):
                np.testing.assert_allclose(h, w, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{f.__name__}{args} argnum {num}")


def test_corpus_size_and_faces():
    assert len(CORPUS) >= 100
    assert len({f.__name__ for f, _, _ in CORPUS}) == len(CORPUS)


def _negated_product_summed(a):
    # the adjoint holds `-sin(a) * sin(a) + (1 - tanh(a) ** 2)`: a negmul feeding an add
    return np.sin(a) * np.cos(a) + np.tanh(a)


def test_jit_negated_product_in_a_sum_after_the_first_call():
    # the compiled CPU program fused `add(mul(neg(s), s), q)` into a muladd that read the
    # negation, itself folded away (never stored): calls after the first gave wrong gradients
    df = tg.jit(tg.grad(_negated_product_summed))
    for a in (-0.6, -0.6, 0.35, -1.7, 2.0):
        want = np.cos(2 * a) + 1 - np.tanh(a) ** 2
        np.testing.assert_allclose(df(a), want, rtol=1e-12)


def test_an_inlined_helpers_error_names_the_helpers_file(tmp_path, monkeypatch):
    # errors found after inlining (kinds) name the helper's own file and line, not the caller's
    # file (nor the generated wrapper of tuple and bool arguments) with the helper's line number
    (tmp_path / "corpus_helper_mod.py").write_text(
        "import numpy as np\n\n\ndef norm_of(a):\n    return np.linalg.norm(a)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import corpus_helper_mod

    def caller(a, flag):
        return corpus_helper_mod.norm_of(a * 2.0) if flag else a

    with pytest.raises(source.TransformError) as info:
        source.grad(caller)(1.5, True)
    assert info.value.filename == str(tmp_path / "corpus_helper_mod.py")
    assert info.value.lineno == 5


def _weighted(a):
    return WEIGHTS[1] * a * a


def test_a_global_list_of_numbers_changed_in_place_is_read_again(monkeypatch):
    # its values are constants of the emitted code: a list changed in place makes it stale
    monkeypatch.setitem(globals(), "WEIGHTS", [2.0, 3.0])
    df = source.grad(_weighted)
    assert df(2.0) == pytest.approx(12.0)
    WEIGHTS[1] = 5.0
    assert df(2.0) == pytest.approx(20.0)


def _appends_under_a_branch(a):
    xs = []
    for i in range(4):
        if i % 2:
            xs.append(a * i)
    return np.sum(np.array(xs))


def test_an_append_the_source_face_cannot_size_is_refused_with_the_fix():
    with pytest.raises(source.TransformError, match="fill an array") as info:
        source.grad(_appends_under_a_branch)(1.5)
    assert info.value.lineno == _appends_under_a_branch.__code__.co_firstlineno + 4
    assert tg.grad(_appends_under_a_branch)(1.5) == pytest.approx(4.0)  # the traced face runs it
