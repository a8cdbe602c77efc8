"""tapegrad_jit.cuda: every kernel path against the reference interpreter and the CPU backend.

Sizes are tiny because the simulator runs each GPU thread as a Python thread; the same tests run
unchanged on a real GPU (where the launch sizes of cuda_config differ, not the results).
"""
import subprocess
import sys

import numpy as np
import pytest

import tapegrad as tg
from cuda_ready import READY, SKIP_REASON
from samples import SAMPLES
from tape_faces import assert_close, weighted

if not READY:
    pytest.skip(SKIP_REASON, allow_module_level=True)
C = pytest.importorskip("tapegrad_jit.cuda")
from numba import cuda  # noqa: E402  (after the skip: numba-cuda is there)


def tol_for(value):
    # a GPU's math library (libdevice) may differ from the CPU's by an ulp or two, and sums run in
    # another order: tight, with headroom for that
    return 1e-10 if np.asarray(value).dtype == np.float64 else 1e-5


def or_skip(call):
    """A sample whose tape holds a primitive without a CUDA kernel (linalg, im2col) is refused
    with an error naming it, which is what the backend promises: skip the rest."""
    from tapegrad_jit.cpu import UnsupportedPrimitive  # row tapes lower as the CPU's do
    from tapegrad_jit.cuda_plan import UnsupportedOnCuda
    try:
        return call()
    except (UnsupportedOnCuda, UnsupportedPrimitive) as exc:
        assert "primitive '" in str(exc)
        pytest.skip(str(exc))


def host(x):
    return x.copy_to_host() if hasattr(x, "copy_to_host") else np.asarray(x)


def assert_tree_close(actual, expected, on_device=False):
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_tree_close(a, e, on_device)
        return
    assert C.is_device_array(actual) == on_device
    actual = host(actual)
    assert np.shape(actual) == np.shape(expected)
    assert actual.dtype == np.asarray(expected).dtype
    assert_close(actual, expected, rtol=tol_for(expected), atol=tol_for(expected))


# ---------------------------------------------------------------------------------------------
# Array tapes: the sample table through jit(value_and_grad(f), device="cuda")
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_sample_table_array_tape(sample):
    f, values, _ = weighted(sample)
    jitted = tg.jit(tg.value_and_grad(f, argnums=tuple(range(len(values)))), device="cuda")
    expected = jitted.tape(*values).run(*values)

    def twice():
        jitted(*values)                      # first call traces (and runs the kernels)
        return jitted(*values)
    assert_tree_close(or_skip(twice), expected)
    assert jitted.traces == 1


# ---------------------------------------------------------------------------------------------
# Batched row tapes: jit(vmap(value_and_grad(f)), device="cuda"), one thread per row
# ---------------------------------------------------------------------------------------------

ROWS = 3


@pytest.fixture(params=["straight-line", "interpreter"])
def row_mode(request, monkeypatch):
    """Row tapes run as generated straight-line code, or (past config.MAX_ROW_OPS scalar
    operations) on the row interpreter over the CPU backend's instruction arrays: test both."""
    monkeypatch.setattr(C.config, "MAX_ROW_OPS", 0 if request.param == "interpreter" else 10**6)
    return request.param


def programs_of(jitted):
    return [p for paths in jitted._signatures.values() for p in paths]


def assert_ran_in(mode, jitted):
    for program in programs_of(jitted):
        kernels = list(program._row_kernels.values())
        assert kernels and all((k is None) == (mode == "interpreter") for k in kernels)


def batch_of(values):
    rng = np.random.default_rng(1)
    return [np.stack([v + 0.01 * k * rng.standard_normal(np.shape(v)) for k in range(ROWS)])
            for v in values]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.id)
def test_sample_table_batched(sample, row_mode):
    f, values, _ = weighted(sample)
    vg = tg.value_and_grad(f, argnums=tuple(range(len(values))))
    batch = batch_of(values)
    rows = [vg(*[b[k] for b in batch]) for k in range(ROWS)]
    expected = (np.stack([r[0] for r in rows]),
                tuple(np.stack([r[1][i] for r in rows]) for i in range(len(values))))
    jitted = tg.jit(tg.vmap(vg), device="cuda")
    assert_tree_close(or_skip(lambda: jitted(*batch)), expected)
    assert_ran_in(row_mode, jitted)


def bumpy(x):
    y = x
    for _ in range(3):
        y = 0.9 * np.sin(y) + 0.1 * y * np.tanh(0.3 * x) + 0.05 * np.exp(-y * y)
    return y


def test_batched_grad_matches_cpu_for_numpy_and_device_inputs(row_mode):
    x = np.linspace(-3.0, 3.0, 11)
    expected = tg.jit(tg.vmap(tg.grad(bumpy)))(x)
    g = tg.jit(tg.vmap(tg.grad(bumpy)), device="cuda")
    assert_tree_close(g(x), expected)
    assert_tree_close(g(cuda.to_device(x)), expected, on_device=True)
    assert g.traces == 1
    assert_ran_in(row_mode, g)


def branchy(x):
    if x > 0.5:
        return np.sin(x) * x
    if x < -0.5:
        return np.exp(x) * 2.0
    return x * x * x


@pytest.mark.parametrize("on_device", [False, True])
def test_rows_on_other_paths_run_on_their_own_path(on_device, row_mode):
    x = np.array([-1.0, 0.7, 0.1, 2.0, -0.3, -2.0, 0.2])
    expected = tg.jit(tg.vmap(tg.value_and_grad(branchy)))(x)
    vg = tg.jit(tg.vmap(tg.value_and_grad(branchy)), device="cuda")
    arg = cuda.to_device(x) if on_device else x
    assert_tree_close(vg(arg), expected, on_device)
    assert vg.traces == 3                    # one tape per path, each traced once
    assert_tree_close(vg(arg), expected, on_device)
    assert vg.traces == 3
    assert_ran_in(row_mode, vg)


def test_whole_batch_fast_path_reports_rows_on_other_paths():
    x = np.array([1.0, 2.0, -1.0])
    program = C.compile(tg.jit(tg.vmap(tg.grad(branchy))).tape(x))    # the path of row 0
    assert program.run_all([x], [0], 3) is None
    ok_rows, leaves = program.run_batched([x], [0], np.arange(3))
    assert ok_rows.tolist() == [True, True, False]
    assert_close(leaves[0][:2], tg.vmap(tg.grad(branchy))(x[:2]))
    tree, leaves = program.run_all([x[:2]], [0], 2)
    assert_close(leaves[0], tg.vmap(tg.grad(branchy))(x[:2]))


def test_while_loops_take_a_path_per_trip_count(row_mode):
    def grow(x):
        y = x
        while y < 10.0:
            y = y * 2.0 + x
        return y

    x = np.array([1.0, 3.0, 9.0, 0.5, 11.0])
    expected = tg.jit(tg.vmap(tg.grad(grow)))(x)
    assert_tree_close(tg.jit(tg.vmap(tg.grad(grow)), device="cuda")(x), expected)


def test_vector_rows_and_unmapped_inputs(row_mode):
    def energy(x, w):
        return np.sum(w * np.tanh(x) ** 2) + np.sum(x[:2] * x[1:])

    x = np.random.default_rng(2).standard_normal((5, 3))
    w = np.array([0.5, -1.0, 2.0])
    vg = tg.vmap(tg.value_and_grad(energy, argnums=(0, 1)), in_axes=(0, None))
    expected = tg.jit(vg)(x, w)
    gpu = tg.jit(vg, device="cuda")
    assert_tree_close(gpu(x, w), expected)
    assert_tree_close(gpu(cuda.to_device(x), cuda.to_device(w)), expected, on_device=True)
    assert_ran_in(row_mode, gpu)


def test_batch_axis_other_than_the_first(row_mode):
    def f(x):
        return np.sum(np.sin(x) * np.arange(1.0, 5.0))

    x = np.random.default_rng(3).standard_normal((2, 6, 2))      # rows along axis 1
    vg = tg.vmap(tg.grad(lambda r: f(r.reshape(4))), in_axes=1)
    expected = tg.jit(vg)(x)
    gpu = tg.jit(vg, device="cuda")
    assert_tree_close(gpu(x), expected)
    assert_tree_close(gpu(cuda.to_device(np.ascontiguousarray(x))), expected, on_device=True)


def test_batched_matmul_and_reductions_per_row(row_mode):
    def loss(x, w):
        h = np.tanh(x @ w)
        return np.sum(h * h) + np.max(h) - np.mean(np.exp(h))

    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    vg = tg.vmap(tg.value_and_grad(loss, argnums=(0, 1)), in_axes=(0, None))
    assert_tree_close(tg.jit(vg, device="cuda")(x, w), tg.jit(vg)(x, w))


def test_batched_float32(row_mode):
    x = np.linspace(-2, 2, 6).astype(np.float32)
    expected = tg.jit(tg.vmap(tg.value_and_grad(bumpy)))(x)
    assert_tree_close(tg.jit(tg.vmap(tg.value_and_grad(bumpy)), device="cuda")(x), expected)


# ---------------------------------------------------------------------------------------------
# Array kernels one by one: fusion, reductions in both modes, matmul, gathers, guards
# ---------------------------------------------------------------------------------------------

def program_for(fun, *args):
    tape = tg.jit(fun).tape(*args)
    return C.compile(tape), tape


def test_elementwise_chain_is_one_kernel():
    def chain(x, y):
        return np.exp(np.sin(x) * y + 1.0) / (1.0 + x * x)

    x, y = np.linspace(0, 1, 12).reshape(3, 4), np.linspace(1, 2, 4)
    program, tape = program_for(chain, x, y)
    ok, result = program([x, y])
    assert ok
    assert_tree_close(result, tape.run(x, y))
    assert len(program._plan.steps) == 1     # one fused kernel, broadcasting y inside it


@pytest.mark.parametrize("shape,axis,keepdims", [
    ((40,), None, False),                    # few outputs, long: blocks of partial results
    ((3, 37), (1,), True), ((37, 3), (0,), False),
    ((2, 3, 4), (0, 2), False),              # non-adjacent axes: one gather, then a reduction
    ((5, 2, 3), (1,), False), ((4, 4), None, True)])
@pytest.mark.parametrize("op", [np.sum, np.prod, np.max, np.min])
def test_reductions(shape, axis, keepdims, op):
    x = np.random.default_rng(5).uniform(0.5, 1.5, shape)
    fun = lambda x: op(x, axis=axis, keepdims=keepdims)  # noqa: E731
    program, tape = program_for(fun, x)
    ok, result = program([x])
    assert ok
    assert_tree_close(result, tape.run(x))


def test_max_propagates_nan():
    x = np.ones(40)
    x[17] = np.nan
    program, _ = program_for(np.max, x)
    ok, result = program([x])
    assert ok and np.isnan(result)


@pytest.mark.parametrize("a_shape,b_shape", [((3, 5), (5, 6)), ((5,), (5, 2)), ((3, 5), (5,)),
                                             ((5,), (5,)), ((2, 3, 5), (5, 4)),
                                             ((2, 1, 3, 5), (4, 5, 2))])
def test_matmul_shapes_and_gradients(a_shape, b_shape):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    vg = tg.value_and_grad(lambda a, b: np.sum(np.tanh(a @ b)), argnums=(0, 1))
    jitted = tg.jit(vg, device="cuda")
    assert_tree_close(jitted(a, b), jitted.tape(a, b).run(a, b))


def test_gathers_and_scatters():
    def shuffle(x, y):
        z = np.concatenate([x[::2], y.T.reshape(-1)]) * 2.0
        s = np.stack([x[1:4], y[0]])
        z[3] = 7.0
        return np.sum(z * z) + np.sum(s[:, ::-1] * np.broadcast_to(x[:3], (2, 3)))

    x, y = np.linspace(1, 2, 6), np.linspace(-1, 1, 6).reshape(2, 3)
    vg = tg.value_and_grad(shuffle, argnums=(0, 1))
    jitted = tg.jit(vg, device="cuda")
    assert_tree_close(jitted(x, y), jitted.tape(x, y).run(x, y))


def test_advanced_index_gradients_accumulate():
    index = np.array([0, 2, 2, 1, 2])

    def pick(x):
        return np.sum(x[index] ** 2)

    x = np.array([1.0, 2.0, 3.0])
    jitted = tg.jit(tg.value_and_grad(pick), device="cuda")
    assert_tree_close(jitted(x), (np.asarray(32.0),
                                  np.array([2.0, 4.0, 18.0])))


def test_mlp_value_and_grad_on_device():
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    w1, w2 = rng.standard_normal((4, 5)) * 0.5, rng.standard_normal((5, 2)) * 0.5

    def mse(w1, w2, x, t):
        h = np.tanh(x @ w1)
        return np.mean((h @ w2 - t) ** 2)

    vg = tg.value_and_grad(mse, argnums=(0, 1))
    expected = tg.jit(vg)(w1, w2, x, t)
    gpu = tg.jit(vg, device="cuda")
    assert_tree_close(gpu(w1, w2, x, t), expected)
    device_args = [cuda.to_device(a) for a in (w1, w2, x, t)]
    assert_tree_close(gpu(*device_args), expected, on_device=True)
    assert_tree_close(gpu(*device_args), expected, on_device=True)   # later calls too


def test_array_guards_retrace_and_never_use_a_stale_path():
    def f(x):
        if np.sum(x) > 0:
            return np.sum(np.sin(x))
        return np.sum(x * x)

    jitted = tg.jit(tg.value_and_grad(f), device="cuda")
    for x in (np.array([1.0, 2.0]), np.array([-1.0, -2.0]), np.array([3.0, 1.0]),
              np.array([-3.0, 0.5])):
        assert_tree_close(jitted(x), tg.value_and_grad(f)(x))
    assert jitted.traces == 2


@pytest.mark.parametrize("on_device", [False, True])
def test_results_of_one_call_survive_the_next(on_device):
    def f(x):
        y = np.sin(x) * 2.0
        z = np.exp(y[::2]) + 1.0
        return y[1:], np.sum(z * z), z

    jitted = tg.jit(f, device="cuda")
    x1, x2 = np.linspace(0, 1, 7), np.linspace(-2, 3, 7)
    put = cuda.to_device if on_device else (lambda a: a)
    first = jitted(put(x1))
    jitted(put(x1))
    jitted(put(x2))                          # reuses the kept buffers of intermediates
    assert_tree_close(first, jitted.tape(x1).run(x1), on_device)


def test_float32_array_tape():
    x = np.linspace(-1, 1, 9).astype(np.float32)
    vg = tg.value_and_grad(lambda x: np.sum(np.tanh(x) * x + np.exp(-x * x)))
    jitted = tg.jit(vg, device="cuda")
    assert_tree_close(jitted(x), jitted.tape(x).run(x))


def test_constants_are_uploaded_once():
    weights = np.linspace(0, 1, 20)
    jitted = tg.jit(tg.grad(lambda x: np.sum(weights * np.sin(x))), device="cuda")
    x = np.ones(20)
    jitted(x)
    program = jitted._signatures[next(iter(jitted._signatures))][0]
    before = program._device_consts()
    assert_tree_close(jitted(x), weights * np.cos(x))
    assert program._device_consts() is before


def test_generated_kernels_go_to_the_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPEGRAD_CACHE_DIR", str(tmp_path))
    source = "def twice(x, out):\n    i = cuda.grid(1)\n    if i < x.shape[0]:\n" \
             "        out[i] = math.exp(x[i]) * 0.0 + 2.0 * x[i]\n"
    kernel = C.K.compile_source(source, "twice", disk=True)
    x = np.arange(5.0)
    out = cuda.device_array(5)
    kernel[1, 8](cuda.to_device(x), out)
    assert_close(out.copy_to_host(), 2.0 * x)
    (entry,) = [p for p in tmp_path.iterdir() if p.name.startswith("cuda_twice_")]
    assert "@cuda.jit(cache=True)\ndef twice" in entry.read_text()


def test_kernels_compile_for_a_real_gpu():
    """The simulator runs kernels as Python; Numba's CUDA typing and NVVM see them only here."""
    import os
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ptx_check.py")
    root = os.path.dirname(os.path.dirname(os.path.dirname(script)))
    # no empty entry: it would put the working directory of any grandchild on the path
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env,
                          timeout=900)
    if done.returncode == 77:
        pytest.skip("no CUDA compiler libraries (pip install nvidia-nvvm nvidia-cuda-nvrtc)")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


# ---------------------------------------------------------------------------------------------
# Errors: a clear message where kernels cannot run
# ---------------------------------------------------------------------------------------------

def test_no_gpu_error_names_the_fix(monkeypatch):
    monkeypatch.setattr(C.cuda, "is_available", lambda: False)
    jitted = tg.jit(tg.grad(lambda x: np.sum(x * x)), device="cuda")
    with pytest.raises(C.CudaUnavailableError) as info:
        jitted(np.ones(3))
    message = str(info.value)
    assert "pip install -e '.[cuda]'" in message and "NUMBA_ENABLE_CUDASIM=1" in message


def test_strided_device_arrays_are_refused_with_the_fix():
    jitted = tg.jit(tg.grad(lambda x: np.sum(x * x)), device="cuda")
    strided = cuda.to_device(np.arange(8.0))[::2]
    jitted(cuda.to_device(np.arange(4.0)))
    with pytest.raises(ValueError, match="C-contiguous"):
        jitted(strided)


def test_missing_numba_cuda_error_names_the_fix():
    code = ("import sys; sys.modules['numba.cuda'] = None\n"
            "import numpy as np, tapegrad as tg\n"
            "try:\n"
            "    tg.jit(lambda x: x * 2, device='cuda')(np.ones(2))\n"
            "except RuntimeError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[cuda]" in out.stdout and "NUMBA_ENABLE_CUDASIM=1" in out.stdout
