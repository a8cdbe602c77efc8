"""Contracts of the traced face's transforms (issue 9): repeated argnums, complex values refused
rather than truncated, tapes selected by the scalars a function reads from globals and closures,
the errors of vmap and argnums, pytree arguments, and traces freed without the cyclic collector."""
import functools
import gc
import os
import re
import subprocess
import sys
import threading
import tracemalloc
import types

import numpy as np
import pytest

import tapegrad as tg
from tapegrad.captures import captured
from tape_faces import assert_close

pytest.importorskip("numba")

RNG = np.random.default_rng(9)


def torch_grads(f_torch, args, argnums):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=i in argnums)
          for i, a in enumerate(args)]
    out = f_torch(*ts)
    grads = torch.autograd.grad(out, [ts[i] for i in dict.fromkeys(argnums)])
    by_arg = dict(zip(dict.fromkeys(argnums), grads))
    return out.item(), [by_arg[i].numpy() for i in argnums]


def finite_difference(f, args, i, eps=1e-6):
    x = np.array(args[i], dtype=float)
    g = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        g[index] = (f(*args[:i], up, *args[i + 1:]) - f(*args[:i], down, *args[i + 1:])) / (2 * eps)
    return g


# ---------------------------------------------------------------------------------------------
# Case 5: an argument named twice in argnums gets its gradient each time
# ---------------------------------------------------------------------------------------------

def loss_np(x, w):
    return np.sum(np.tanh(x * w) ** 2) + np.sum(x ** 3)


def loss_torch(x, w):
    return (x * w).tanh().pow(2).sum() + x.pow(3).sum()


@pytest.mark.parametrize("argnums", [(0, 0), (1, 0, 1), (0, 1, 0, 0), (-1, 1), (0, -2)])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 1, 3)])
@pytest.mark.parametrize("face", ["grad", "jit"])
def test_repeated_argnums_give_the_gradient_each_time(argnums, shape, face):
    x, w = RNG.standard_normal(shape), RNG.standard_normal(shape)
    vg = tg.value_and_grad(loss_np, argnums=argnums)
    if face == "jit":
        vg = tg.jit(vg)
        vg(x, w)                                  # the second call runs compiled code
    value, grads = vg(x, w)
    assert_close(value, loss_np(x, w))
    assert len(grads) == len(argnums)
    for g, a in zip(grads, argnums):
        assert np.shape(g) == shape
        assert_close(g, finite_difference(loss_np, (x, w), a % 2), rtol=1e-5, atol=1e-6)
    _, expected = torch_grads(loss_torch, (x, w), [a % 2 for a in argnums])
    for g, e in zip(grads, expected):
        assert_close(g, e, rtol=1e-9)


def test_repeated_argnums_under_vmap_and_grad():
    x, w = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    per_row = tg.vmap(tg.grad(loss_np, argnums=(0, 0)))(x, w)
    jitted = tg.jit(tg.vmap(tg.grad(loss_np, argnums=(0, 0))))(x, w)
    for r in range(4):
        _, (e, _) = torch_grads(loss_torch, (x[r], w[r]), [0, 0])
        for got in (per_row, jitted):
            assert_close(got[0][r], e)
            assert_close(got[1][r], e)


# ---------------------------------------------------------------------------------------------
# argnums and dtype errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argnums,need", [(2, 3), (-3, 3), ((0, 5), 6), ((1,), 2)])
@pytest.mark.parametrize("jit", [False, True])
def test_argnums_out_of_range_names_argnums_and_the_count(argnums, need, jit):
    f = tg.grad(lambda x: np.sum(x ** 2), argnums=argnums)
    f = tg.jit(f) if jit else f
    with pytest.raises(TypeError, match=rf"argnums={re.escape(repr(argnums))}.*at least {need} "
                                        r"positional.*called with 1"):
        f(np.ones(3))


@pytest.mark.parametrize("argnums", [1.0, "0", (0, None), True, None])
def test_argnums_must_be_ints(argnums):
    with pytest.raises(TypeError, match="argnums must be an int or a tuple of ints"):
        tg.grad(lambda x: x, argnums=argnums)


@pytest.mark.parametrize("value", [np.arange(3), np.arange(6, dtype=np.int32).reshape(2, 3),
                                   np.array([True, False]), np.array(3, np.uint8)])
@pytest.mark.parametrize("jit", [False, True])
def test_grad_of_integer_arrays_names_the_dtype(value, jit):
    f = tg.grad(lambda x: np.sum(x * 2.0))
    f = tg.jit(f) if jit else f
    with pytest.raises(TypeError) as info:
        f(value)
    message = str(info.value)
    assert "requires floating-point inputs" in message
    assert f"dtype {np.asarray(value).dtype}" in message and "argument 0" in message
    assert "Tracer" not in message and "astype" in message


def test_grad_of_python_int_says_it_is_static():
    with pytest.raises(TypeError, match=r"argument 0 .* Python int \(3\).*static.*float\(3\)"):
        tg.grad(lambda x: x * 2.0)(3)
    with pytest.raises(TypeError, match=r"argument 1 .* NumPy uint8 scalar .*static"):
        tg.grad(lambda x, y: x * y, argnums=1)(1.0, np.uint8(3))


def test_int_arguments_outside_argnums_stay_allowed():
    f = tg.grad(lambda x, n: np.sum(x ** n))
    assert_close(f(np.array([1.0, 2.0]), 3), [3.0, 12.0])
    assert_close(tg.jit(f)(np.array([1.0, 2.0]), 3), [3.0, 12.0])


# ---------------------------------------------------------------------------------------------
# pytrees: dict, list and tuple arguments
# ---------------------------------------------------------------------------------------------

def tree_loss(p, y):
    hidden = np.tanh(p["w"] * y + p["b"])
    return np.sum(hidden * p["layers"][0]) + np.sum(p["layers"][1][0] ** 2) * p["layers"][1][1]


def tree_loss_torch(w, b, l0, l10, l11, y):
    return ((w * y + b).tanh() * l0).sum() + (l10 ** 2).sum() * l11


def tree_params():
    return {"w": RNG.standard_normal((2, 3)), "b": RNG.standard_normal(3),
            "layers": [RNG.standard_normal((2, 3)), (RNG.standard_normal(4), np.array(0.7))]}


@pytest.mark.parametrize("face", ["grad", "jit", "jit-twice"])
def test_dict_arguments_are_pytrees(face):
    p, y = tree_params(), RNG.standard_normal(3)
    f = tg.value_and_grad(tree_loss, argnums=(0, 1))
    if face != "grad":
        f = tg.jit(f)
        if face == "jit-twice":
            f(p, y)
    value, (g, gy) = f(p, y)
    flat = [p["w"], p["b"], p["layers"][0], p["layers"][1][0], p["layers"][1][1], y]
    expected_value, e = torch_grads(tree_loss_torch, flat, list(range(6)))
    assert_close(value, expected_value)
    assert set(g) == {"w", "b", "layers"} and isinstance(g["layers"], list)
    assert isinstance(g["layers"][1], tuple)
    for got, want in zip([g["w"], g["b"], g["layers"][0], g["layers"][1][0], g["layers"][1][1],
                          gy], e):
        assert np.shape(got) == np.shape(want)
        assert_close(got, want, rtol=1e-9)


def test_pytree_structure_selects_the_tape():
    f = tg.jit(lambda d: sum(np.sum(v) for v in d.values()))
    assert_close(f({"a": np.ones(2)}), 2.0)
    assert_close(f({"a": np.ones(2), "b": np.ones(3)}), 5.0)
    assert_close(f({"b": np.ones(3)}), 3.0)
    assert f.traces == 3


def test_static_leaves_in_a_differentiated_pytree_are_named():
    with pytest.raises(TypeError, match=r"argument 0\['n'\] .* Python int"):
        tg.grad(lambda d: np.sum(d["x"]) * d["n"])({"x": np.ones(2), "n": 2})


def test_vmap_over_dict_arguments():
    d = {"a": RNG.standard_normal((4, 3)), "b": RNG.standard_normal((4, 3))}
    f = tg.vmap(lambda d: np.sum(d["a"] * np.sin(d["b"])))
    expected = np.sum(d["a"] * np.sin(d["b"]), axis=1)
    assert_close(f(d), expected)
    jf = tg.jit(f)
    jf(d)
    assert_close(jf(d), expected)


def test_vmap_negative_axis_on_leaves_of_different_ranks():
    d = {"a": RNG.standard_normal(3), "b": RNG.standard_normal((4, 3))}
    w = RNG.standard_normal(4)
    fun = lambda d, w: np.sum(d["a"] * d["b"] * w[:, None])        # noqa: E731
    expected = [fun({"a": d["a"][i], "b": d["b"][:, i]}, w) for i in range(3)]
    f = tg.vmap(fun, in_axes=(-1, None))
    for g in (f, tg.jit(f), tg.jit(f)):
        assert_close(g(d, w), expected)


# ---------------------------------------------------------------------------------------------
# Case 6: complex values are refused on the traced face, never truncated
# ---------------------------------------------------------------------------------------------

Z = np.array([1 + 2j, 3 - 1j])
COMPLEX_K = 1j


def complex_global(x):
    return x * COMPLEX_K


COMPLEX_CASES = {
    "jit": (lambda: tg.jit(lambda z: z * 2.0), (Z,), "argument 0"),
    "jit-second-arg": (lambda: tg.jit(lambda x, z: x * z), (np.ones(2), Z), "argument 1"),
    "jit-dict": (lambda: tg.jit(lambda d: d["z"] * 2.0), ({"z": Z},), "argument 0"),
    "jit-constant": (lambda: tg.jit(lambda x: x * (1 + 1j)), (np.ones(2),), "computed inside"),
    "jit-global": (lambda: tg.jit(complex_global), (np.ones(2),), "computed inside"),
    "jit-vmap": (lambda: tg.jit(tg.vmap(lambda z: z * 2.0)), (Z,), "argument 0"),
    "grad": (lambda: tg.grad(lambda z: np.sum(z * z)), (Z,), "argument 0"),
    "value_and_grad": (lambda: tg.value_and_grad(lambda z: np.sum(z * z)), (Z,), "argument 0"),
    "grad-intermediate": (lambda: tg.grad(lambda x: np.sum(np.abs(x * 1j))), (np.ones(2),),
                          "computed inside"),
    "jit-grad": (lambda: tg.jit(tg.grad(lambda z: np.sum(z * z))), (Z,), "argument 0"),
    "vmap-grad": (lambda: tg.vmap(tg.grad(lambda z: z * z)), (Z,), "argument 0"),
    "jit-vmap-grad": (lambda: tg.jit(tg.vmap(tg.grad(lambda z: z * z))), (Z,), "argument 0"),
}


@pytest.mark.parametrize("case", sorted(COMPLEX_CASES))
def test_complex_is_refused_with_the_fix(case):
    make, args, what = COMPLEX_CASES[case]
    f = make()
    for _ in range(2):                      # the first call and a call after it alike
        with pytest.raises(TypeError) as info:
            f(*args)
        message = str(info.value)
        assert what in message and "complex" in message
        assert "real and imaginary parts" in message


def test_cuda_simulator_complex_refused_and_captured_scalars(tmp_path):
    pytest.importorskip("numba.cuda")
    script = tmp_path / "complex_cuda.py"
    script.write_text(
        "import numpy as np, tapegrad as tg\n"
        "z = np.array([1 + 2j, 3 - 1j])\n"
        "cases = [(lambda: tg.jit(lambda z: z * 2.0, device='cuda'), lambda a: a * 2.0),\n"
        "         (lambda: tg.jit(tg.vmap(tg.grad(lambda z: z * z)), device='cuda'),\n"
        "          lambda a: 2.0 * a),\n"
        "         (lambda: tg.jit(lambda x: x * 1j, device='cuda'), lambda a: a * 1j)]\n"
        "refused = 0\n"
        "for make, expected in cases:\n"
        "    f = make()\n"
        "    for arg in (z, np.ones(2)):\n"
        "        for call in range(2):\n"
        "            try:\n"
        "                out = np.asarray(f(arg))\n"
        "            except TypeError as e:\n"
        "                assert 'real and imaginary parts' in str(e), e\n"
        "                refused += 1\n"
        "                continue\n"
        "            assert np.allclose(out, expected(arg)), (call, out, expected(arg))\n"
        "assert refused == 8, refused\n"
        "x = np.linspace(-1, 1, 6)\n"
        "assert np.allclose(tg.jit(tg.vmap(tg.grad(lambda t: t * t)), device='cuda')(x), 2 * x)\n"
        "k = 1.0\n"
        "def g(t):\n"
        "    return t * t * k if t > k - 1.5 else -t\n"
        "f = tg.jit(tg.vmap(tg.grad(g)), device='cuda')\n"
        "for k in (1.0, 2.0, 0.0, 2.0):\n"
        "    for _ in range(2):\n"
        "        want = np.where(x > k - 1.5, 2 * x * k, -1.0)\n"
        "        assert np.allclose(f(x), want), (k, f(x), want)\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_complex_without_transforms_still_works_in_vmap():
    # plain vmap runs the function row by row: NumPy's complex arithmetic is not involved with tapes
    assert_close(tg.vmap(lambda z: z * 2.0)(Z).imag, 2 * Z.imag)


# ---------------------------------------------------------------------------------------------
# Case 8: scalars read from globals and closures select the tape
# ---------------------------------------------------------------------------------------------

K = 1.0
K_INT = 2
FLAG = True
SIGN_ZERO = 0.0
CFG = types.SimpleNamespace(k=1.0, sub=types.SimpleNamespace(k=2.0))
PARAMS = {"k": 1.0, "pair": (1.0, 2.0)}
CFG_MODULE = types.ModuleType("tapegrad_test_cfg")
CFG_MODULE.k = 1.0


def branch_on_global(x):
    if x[0] > K:
        return x * 2.0
    return x * K


def helper_reads_global(x):
    return x * K + K_INT


def calls_helper(x):
    return np.sum(helper_reads_global(x))


def through_attributes(x):
    return x * CFG.k + x * CFG.sub.k + x * CFG_MODULE.k


def through_subscripts(x):
    return x * PARAMS["k"] + PARAMS["pair"][1]


def in_generator(x):
    return sum(K * t for t in (x, 2.0 * x))


def in_lambda(x):
    scale = lambda t: t * K            # noqa: E731
    return scale(x)


def reciprocal_of_global(x):
    return x / SIGN_ZERO


def branch_on_flag(x):
    return x * 2.0 if FLAG else x


def set_globals(**values):
    globals().update(values)


def reference(fun, x):
    with np.errstate(all="ignore"):
        return fun(x)


GLOBAL_CASES = {
    "branch": (branch_on_global, [dict(K=k) for k in (0.5, 5.0, 0.5, 5.0, -1.0)]),
    "helper": (calls_helper, [dict(K=1.0), dict(K=3.0), dict(K_INT=7), dict(K=1.0, K_INT=2)]),
    "attributes": (through_attributes, [{}, "CFG.k", "CFG.sub.k", "CFG_MODULE.k"]),
    "subscripts": (through_subscripts, [{}, "PARAMS.k", "PARAMS.pair"]),
    "generator": (in_generator, [dict(K=2.0), dict(K=-1.0)]),
    "lambda": (in_lambda, [dict(K=2.0), dict(K=-1.0)]),
    "signed zero": (reciprocal_of_global, [dict(SIGN_ZERO=0.0), dict(SIGN_ZERO=-0.0),
                                           dict(SIGN_ZERO=0.0)]),
    "bool": (branch_on_flag, [dict(FLAG=True), dict(FLAG=False), dict(FLAG=True)]),
    "numpy scalars": (branch_on_global, [dict(K=np.float64(0.5)), dict(K=np.float32(5.0)),
                                         dict(K=np.int64(-1)), dict(K=np.float64(0.5))]),
}


def apply_change(change, step):
    if change == "CFG.k":
        CFG.k = 1.0 + step
    elif change == "CFG.sub.k":
        CFG.sub.k = -3.0 * step
    elif change == "CFG_MODULE.k":
        CFG_MODULE.k = 0.25 * step
    elif change == "PARAMS.k":
        PARAMS["k"] = 4.0 + step
    elif change == "PARAMS.pair":
        PARAMS["pair"] = (1.0, -float(step))
    else:
        set_globals(**change)


@pytest.fixture
def restore_globals():
    saved = dict(K=K, K_INT=K_INT, FLAG=FLAG, SIGN_ZERO=SIGN_ZERO)
    cfg = (CFG.k, CFG.sub.k, CFG_MODULE.k, dict(PARAMS))
    yield
    set_globals(**saved)
    CFG.k, CFG.sub.k, CFG_MODULE.k = cfg[:3]
    PARAMS.clear()
    PARAMS.update(cfg[3])


@pytest.mark.parametrize("case", sorted(GLOBAL_CASES))
@pytest.mark.parametrize("transform", ["jit", "jit-value_and_grad", "jit-vmap"])
def test_global_scalars_select_the_tape(case, transform, restore_globals):
    fun, changes = GLOBAL_CASES[case]
    x = np.array([1.0, -2.0, 3.0])
    if transform == "jit":
        jitted, expected = tg.jit(fun), lambda: reference(fun, x)
    elif transform == "jit-vmap":
        xs = np.stack([x, -x, 2 * x])
        jitted = tg.jit(tg.vmap(fun))
        expected = lambda: np.stack([reference(fun, row) for row in xs])   # noqa: E731
    else:
        total = lambda t: np.sum(fun(t) * t)                                # noqa: E731
        jitted = tg.jit(tg.value_and_grad(total))
        expected = lambda: (reference(total, x), tg.grad(total)(x))        # noqa: E731
    args = (xs,) if transform == "jit-vmap" else (x,)
    for step, change in enumerate(changes):
        apply_change(change, step)
        for _ in range(2):                   # traced, then compiled
            got, want = jitted(*args), expected()
            if transform == "jit-value_and_grad":
                assert_close(got[0], want[0])
                assert_close(got[1], want[1])
            else:
                assert_close(got, want)


def test_branch_on_changing_global_over_2000_calls(restore_globals):
    jitted = tg.jit(branch_on_global)
    x = np.array([1.0, 2.0])
    wrong = 0
    for i in range(2000):
        set_globals(K=0.5 if i % 2 else 1.5)
        wrong += not np.array_equal(jitted(x), branch_on_global(x))
    assert wrong == 0
    assert jitted.traces == 2                # one tape per value of K, reused


def test_closures_and_closures_of_closures():
    def outer(k):
        def middle():
            def inner(x):
                return x * k + scale(x)
            return inner

        def scale(x):
            return x * k if k > 0 else -x
        return middle(), (lambda v: _set(v))

    def _set(v):
        nonlocal_cells[0].cell_contents = v

    inner, _ = outer(2.0)
    cell = inner.__closure__[inner.__code__.co_freevars.index("k")]
    nonlocal_cells = [cell]
    jitted = tg.jit(tg.grad(lambda x: np.sum(inner(x) ** 2)))
    x = np.array([0.5, -1.5])
    for k in (2.0, 3.0, -1.0, 2.0):
        _set(k)
        for _ in range(2):
            expected = 2 * (x * k + (x * k if k > 0 else -x)) * (k + (k if k > 0 else -1))
            assert_close(jitted(x), expected)


def test_closure_counter_changes_between_calls():
    def make():
        state = {"scale": 1.0}
        threshold = [0.0]

        def f(x):
            if np.sum(x) > threshold[0]:
                return x * state["scale"]
            return -x
        return f, state, threshold

    f, state, threshold = make()
    jitted = tg.jit(f)
    x = np.array([1.0, 2.0])
    for scale, limit in [(1.0, 0.0), (2.0, 0.0), (2.0, 10.0), (3.0, -1.0)]:
        state["scale"], threshold[0] = scale, limit
        for _ in range(2):
            assert_close(jitted(x), f(x))


class Model:
    def __init__(self):
        self.k = 2.0

    def loss(self, x):
        return np.sum(x * self.k)

    def __call__(self, x):
        return np.sum(x ** 2) * self.k


@pytest.mark.parametrize("kind", ["bound method", "callable object", "partial"])
def test_bound_methods_callables_and_partials(kind):
    model = Model()
    fun = {"bound method": model.loss, "callable object": model,
           "partial": functools.partial(Model.loss, model)}[kind]
    jitted = tg.jit(tg.value_and_grad(fun))
    x = np.array([1.0, -2.0])
    for k in (2.0, 5.0, 2.0):
        model.k = k
        for _ in range(2):
            value, g = jitted(x)
            assert_close(value, fun(x))
            assert_close(g, tg.grad(fun)(x))


def rebound_helper(x):
    return x * 2.0


def calls_rebound(x):
    return rebound_helper(x) + 1.0


def test_rebinding_a_helper_function_retraces(restore_globals):
    jitted = tg.jit(calls_rebound)
    x = np.array([1.0, 2.0])
    assert_close(jitted(x), x * 2.0 + 1.0)
    saved = rebound_helper
    try:
        set_globals(rebound_helper=lambda t: t * K)       # now reads another global, K
        set_globals(K=3.0)
        assert_close(jitted(x), x * 3.0 + 1.0)
        set_globals(K=4.0)
        assert_close(jitted(x), x * 4.0 + 1.0)
    finally:
        set_globals(rebound_helper=saved)
    assert_close(jitted(x), x * 2.0 + 1.0)


NAN_K = float("nan")


def times_nan(x):
    return x * NAN_K


def test_nan_scalar_does_not_retrace_every_call(restore_globals):
    jitted = tg.jit(times_nan)
    try:
        for _ in range(5):
            assert np.all(np.isnan(jitted(np.ones(2))))
        assert jitted.traces == 1
        set_globals(NAN_K=2.0)
        assert_close(jitted(np.ones(2)), [2.0, 2.0])
        set_globals(NAN_K=float("nan"))            # another NaN object: the same tape
        assert np.all(np.isnan(jitted(np.ones(2))))
        assert jitted.traces == 2
    finally:
        set_globals(NAN_K=float("nan"))


def test_static_int_and_bool_select_different_tapes():
    def f(x, n):
        return x * 3.0 if n is True else x * float(n)
    jitted = tg.jit(f)
    x = np.array([1.0, 2.0])
    assert_close(jitted(x, 1), x)
    assert_close(jitted(x, True), 3.0 * x)
    assert_close(jitted(x, 1), x)


CAPTURED_ARRAY = np.array([1.0, 2.0])


def times_captured_array(x):
    return x * CAPTURED_ARRAY


def test_captured_arrays_are_constants_of_the_tape(restore_globals):
    # the documented contract (README, jit docstring): arrays read from globals are baked in
    global CAPTURED_ARRAY
    saved = CAPTURED_ARRAY
    jitted = tg.jit(times_captured_array)
    x = np.ones(2)
    jitted(x)
    try:
        CAPTURED_ARRAY = np.array([5.0, 6.0])
        assert_close(jitted(x), [1.0, 2.0])          # a new array: not seen
        CAPTURED_ARRAY = 3.0
        assert_close(jitted(x), [3.0, 3.0])          # a scalar: selects a new tape
    finally:
        CAPTURED_ARRAY = saved


def test_captured_locations_are_described():
    names = set(captured(tg.jit(tg.value_and_grad(calls_helper))).describe())
    assert {"K", "K_INT", "helper_reads_global"} <= names
    assert "np" not in names                        # modules and library functions are not state
    assert set(captured(through_attributes).describe()) >= {"CFG.k", "CFG.sub.k",
                                                             "CFG_MODULE.k"}
    assert set(captured(through_subscripts).describe()) >= {"PARAMS['k']", "PARAMS['pair']"}


def test_threads_with_captured_scalars(restore_globals):
    jitted = tg.jit(tg.grad(lambda x: np.sum(helper_reads_global(x) ** 2)))
    x = np.array([1.0, 2.0])
    set_globals(K=1.0)
    jitted(x)
    set_globals(K=2.0)
    errors = []

    def worker():
        for _ in range(50):
            if not np.allclose(jitted(x), 2 * (x * K + K_INT) * K):
                errors.append(1)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and jitted.traces == 2


# ---------------------------------------------------------------------------------------------
# vmap: empty batches and axis errors
# ---------------------------------------------------------------------------------------------

EMPTY_CASES = [
    (lambda a: a * 2.0, (np.zeros((0, 3)),), 0, [(0, 3)]),
    (lambda a: np.sum(a), (np.zeros((0, 2, 3)),), 0, [(0,)]),
    (lambda a: (a, np.sum(a ** 2)), (np.zeros((0, 3)),), 0, [(0, 3), (0,)]),
    (lambda a, b: a @ b, (np.zeros((3, 0)), np.ones((3, 2))), (1, None), [(0, 2)]),
    (tg.grad(lambda a: np.sum(a ** 3)), (np.zeros((0, 4)),), 0, [(0, 4)]),
]


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("n", range(len(EMPTY_CASES)))
def test_vmap_over_an_empty_batch_gives_empty_results(n, jit):
    fun, args, in_axes, shapes = EMPTY_CASES[n]
    f = tg.vmap(fun, in_axes=in_axes)
    f = tg.jit(f) if jit else f
    out = f(*args)
    leaves = list(out) if isinstance(out, tuple) else [out]
    assert [np.shape(leaf) for leaf in leaves] == shapes
    assert all(np.asarray(leaf).dtype == np.float64 for leaf in leaves)
    if n == 0:        # PyTorch's vmap agrees on the shape
        torch = pytest.importorskip("torch")
        t = torch.func.vmap(lambda a: a * 2.0)(torch.zeros((0, 3), dtype=torch.float64))
        assert tuple(t.shape) == shapes[0]


@pytest.mark.parametrize("in_axes,shape,need", [(1, (3,), 2), (-3, (2, 3), 3), (2, (2, 3), 3),
                                                (-2, (4,), 2)])
@pytest.mark.parametrize("jit", [False, True])
def test_vmap_axis_out_of_range_is_an_error(in_axes, shape, need, jit):
    f = tg.vmap(lambda a: a * 2.0, in_axes=in_axes)
    f = tg.jit(f) if jit else f
    with pytest.raises(ValueError, match=rf"in_axes={in_axes} for argument 0 .* at least "
                                         rf"{need} dimensions, but it has {len(shape)}"):
        f(np.ones(shape))


@pytest.mark.parametrize("value", [np.array(3.0), np.float64(3.0), 3.0, 3])
@pytest.mark.parametrize("jit", [False, True])
def test_vmap_of_a_0d_argument_is_an_error(value, jit):
    f = tg.vmap(lambda a: a * 2.0)
    f = tg.jit(f) if jit else f
    with pytest.raises(ValueError, match=r"argument 0 is 0-d .* in_axes=None"):
        f(value)


def test_vmap_other_errors():
    with pytest.raises(ValueError, match="maps no argument"):
        tg.vmap(lambda a: a, in_axes=None)(np.ones(3))
    with pytest.raises(ValueError, match="argument 0 has 3, argument 1 has 4"):
        tg.vmap(lambda a, b: a + b)(np.ones(3), np.ones(4))
    with pytest.raises(TypeError, match="in_axes entries must be ints or None"):
        tg.vmap(lambda a: a, in_axes=0.5)(np.ones(3))


@pytest.mark.parametrize("in_axes", [0, 1, -1, -2, (1, None)])
def test_vmap_valid_axes_match_a_loop(in_axes):
    x, w = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
    fun = lambda a, b: np.sum(np.sin(a) * b[: a.shape[0]])     # noqa: E731
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes, None)
    expected = np.stack([fun(np.take(x, r, axis=axes[0]), w)
                         for r in range(x.shape[axes[0]])])
    for f in (tg.vmap(fun, in_axes=axes), tg.jit(tg.vmap(fun, in_axes=axes))):
        assert_close(f(x, w), expected)


# ---------------------------------------------------------------------------------------------
# Memory: a trace without jit is freed by reference counting
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transform", ["value_and_grad", "grad", "grad-raises"])
def test_traces_without_jit_are_freed_without_the_collector(transform):
    x = RNG.standard_normal(2 ** 17)          # 1 MB; each trace holds several of these

    def f(x):
        y = np.sum(np.sin(x) * x + np.exp(-x * x))
        if transform == "grad-raises":
            raise KeyError("boom")
        return y
    g = tg.value_and_grad(f) if transform == "value_and_grad" else tg.grad(f)

    def call():
        try:
            g(x)
        except KeyError:
            pass
    call()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()                               # only reference counting frees now
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(10):
            call()
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
        if was_enabled:
            gc.enable()
    assert growth < 2 * x.nbytes, f"{growth / 2 ** 20:.1f} MB kept by 10 traces"


def test_functions_defined_by_exec_and_reached_by_subscript():
    namespace = {"np": np, "k": 1.0}
    exec("def f(x):\n    return x * k\n", namespace)
    jitted = tg.jit(tg.grad(lambda x: np.sum(namespace["f"](x) ** 2)))
    x = np.array([1.0, 2.0])
    for k in (1.0, 3.0, -0.5):
        namespace["k"] = k
        for _ in range(2):
            assert_close(jitted(x), 2 * x * k * k)
