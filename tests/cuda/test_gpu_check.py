""".ci/gpu, the one-command GPU check, and what a real GPU asks of launches that the simulator
does not: the check runs whole under the simulator (in the CUDA process of .ci/test), its
stage machinery records failures and time-outs and goes on, launch sizes fit the hardware's
limits at 1e7 rows, the traced face runs without astor (the GPU machines have none), and
inputs exposing __cuda_array_interface__ (CuPy) are read in place."""
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cuda_ready import READY, SIMULATOR, SKIP_REASON

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, ".ci", "gpu")
needs_kernels = pytest.mark.skipif(not READY, reason=SKIP_REASON)


def load_script():
    loader = importlib.machinery.SourceFileLoader("tapegrad_gpu_check", SCRIPT)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def environment(simulate):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulate:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


# ---------------------------------------------------------------------------------------------
# The check itself, under the simulator
# ---------------------------------------------------------------------------------------------

@pytest.mark.skipif(not SIMULATOR, reason="runs in the simulator process of .ci/test "
                                          "(NUMBA_ENABLE_CUDASIM=1); on a GPU, run .ci/gpu")
def test_simulated_check_runs_every_stage(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, SCRIPT, str(out), "--simulate"], cwd=str(tmp_path),
                          env=environment(False), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "simulate" and results["ok"]
    assert [(s["name"], s["status"]) for s in results["stages"]] == [
        ("env", "ok"), ("tests", "ok"), ("bench", "ok"), ("bench-cached", "ok")]
    assert results["environment"]["gpu"] == "Numba CUDA simulator"
    assert results["environment"]["tapegrad_is_this_checkout"]
    tests = results["tests"]
    assert tests["passed"] == tests["collected"] >= 6 and tests["not_run"] == 0
    assert not tests["failed"] and tests["workers"] == 2
    for report in (results["bench"], results["bench_cached"]):
        assert [w["name"] for w in report["workloads"]] == ["batched_grad", "rosenbrock"]
        for workload in report["workloads"]:
            by = {r["impl"]: r for r in workload["results"]}
            for impl in ("tapegrad jit CUDA", "tapegrad jit CUDA, CuPy inputs"):
                assert by[impl]["status"] == "ok" and by[impl]["results_on_device"]
        rows = {r["impl"]: r for r in report["workloads"][0]["results"]}
        assert rows["tapegrad jit CUDA"]["rows_ran_on"] == "straight-line code"
        assert rows["tapegrad jit CUDA, row interpreter"]["rows_ran_on"] == "row interpreter"
        assert rows["tapegrad jit CUDA, row interpreter"]["status"] == "ok"
    markdown = (out / "results.md").read_text()
    assert "| Numba CUDA simulator | batched grad, 64 points (`jit(vmap(grad))`) |" in markdown
    assert "| Numba CUDA simulator | Rosenbrock value+grad, n = 64 |" in markdown
    log = (out / "log").read_text()
    assert "PASSED" in log and "rosenbrock: tapegrad jit CUDA: run" in log


def test_usage_line_names_the_command():
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "python3 .ci/gpu OUTDIR" in done.stderr and "--simulate" in done.stderr


def test_a_failing_or_hanging_stage_is_recorded_and_the_next_runs(tmp_path):
    gpu = load_script()
    check = gpu.Check(str(tmp_path), simulate=True)

    def broken(limit):
        raise RuntimeError("driver fell over")

    # a stage whose process (and the process it started) outlives the limit and ignores the
    # SIGINT that comes first: the group is killed
    deaf = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    hang = ("import subprocess, sys, time\n"
            f"child = subprocess.Popen([sys.executable, '-c', '{deaf}time.sleep(120)'])\n"
            "print(child.pid, flush=True)\n"
            f"{deaf}time.sleep(120)\n")

    def hanging(limit):
        in_time, _ = check.run_logged("hang", [sys.executable, "-c", hang], 2.0, check.env())
        return ("ok" if in_time else "timeout"), "", None

    start = time.monotonic()
    check.stage("env", broken)
    check.stage("tests", hanging)
    check.stage("bench", lambda limit: ("ok", "ran", None))
    assert time.monotonic() - start < 30
    assert [(s["name"], s["status"]) for s in check.results["stages"]] == [
        ("env", "failed"), ("tests", "timeout"), ("bench", "ok")]
    assert "driver fell over" in check.results["stages"][0]["note"]
    grandchild = int((tmp_path / "hang.out").read_text().split()[0])
    assert process_gone(grandchild)


def process_gone(pid, wait_s=5.0):
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "\nState:\tZ" in f.read():
                    return True             # killed, waiting to be reaped by init
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_tally_reads_outcomes_and_counts_tests_cut_off():
    gpu = load_script()
    ids = ["tests/cuda/t.py::a", "tests/cuda/t.py::b[x y]", "tests/cuda/t.py::c",
           "tests/cuda/t.py::d", "tests/cuda/t.py::e"]
    shard0 = ("tests/cuda/t.py::a PASSED                [ 50%]\n"
              "tests/cuda/t.py::b[x y] FAILED           [100%]\n"
              "FAILED tests/cuda/t.py::b[x y] - AssertionError: 1 != 2\n")
    shard1 = ("tests/cuda/t.py::c PASSED                [ 33%]\n"
              "tests/cuda/t.py::c ERROR                 [ 33%]\n"
              "tests/cuda/t.py::d SKIPPED (no CuPy)     [ 66%]\n")
    summary = gpu.tally(ids, [shard0, shard1])
    assert (summary["collected"], summary["passed"], summary["skipped"],
            summary["not_run"]) == (5, 1, 1, 1)
    assert [(f["test"], f["outcome"], f["reason"]) for f in summary["failed"]] == [
        ("tests/cuda/t.py::b[x y]", "FAILED", "AssertionError: 1 != 2"),
        ("tests/cuda/t.py::c", "ERROR", "see the log")]


# ---------------------------------------------------------------------------------------------
# The GPU machines have no astor: the traced face must not need it
# ---------------------------------------------------------------------------------------------

NO_ASTOR = """
import importlib.abc, sys

class NoAstor(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] == 'astor':
            raise ModuleNotFoundError("No module named 'astor' (hidden)", name=name)

sys.meta_path.insert(0, NoAstor())
import numpy as np
import tapegrad as tg

def f(x):
    return np.sum(np.sin(x) * x)

x = np.linspace(-1.0, 1.0, 5)
value, grad = tg.jit(tg.value_and_grad(f))(x)
assert np.allclose(grad, np.sin(x) + x * np.cos(x))
rows = tg.jit(tg.vmap(tg.grad(lambda t: np.sin(t) * t)), device='cuda')(x)
assert np.allclose(rows, np.sin(x) + x * np.cos(x))
assert 'astor' not in sys.modules
print('traced face without astor: ok')
"""


def test_traced_face_needs_no_astor():
    pytest.importorskip("numba.cuda")
    done = subprocess.run([sys.executable, "-c", NO_ASTOR], env=environment(True), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "traced face without astor: ok" in done.stdout


# ---------------------------------------------------------------------------------------------
# Launch sizes a real GPU accepts (the simulator accepts any): the GPU's configuration, read in
# a process without the simulator, at the sizes of the GPU workloads and beyond
# ---------------------------------------------------------------------------------------------

LAUNCHES = """
import json
from tapegrad_jit import cuda_config as config, cuda_kernels as K
sizes = [(10**7, 16, 1), (16, 10**7, 1), (64, 64, 10**6), (10**5, 10**5, 10**5), (1, 1, 1)]
print(json.dumps(dict(
    simulator=config.SIMULATOR, threads=config.THREADS, reduce_threads=config.REDUCE_THREADS,
    tile=config.TILE, max_blocks=config.MAX_BLOCKS, reduce_parts=config.REDUCE_PARTS,
    serial_outputs=config.REDUCE_SERIAL_OUTPUTS, blocks_1e10=config.blocks_for(10**10),
    limits=[K.MAX_THREADS_PER_BLOCK, K.MAX_GRID_X, K.MAX_GRID_YZ],
    matmul=[K.matmul_launch(*s) for s in sizes])))
"""


def test_real_gpu_launch_sizes_fit_the_hardware():
    pytest.importorskip("numba.cuda")
    done = subprocess.run([sys.executable, "-c", LAUNCHES], env=environment(False), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    gpu = json.loads(done.stdout)
    assert not gpu["simulator"]
    threads, grid_x, grid_yz = gpu["limits"]
    assert (threads, grid_x, grid_yz) == (1024, 2**31 - 1, 65535)   # CUDA's, since sm_30
    # 1-D kernels (grid-stride loops), the row kernel at 1e7 rows, reductions split over blocks
    assert gpu["threads"] <= threads and gpu["max_blocks"] <= grid_x
    assert 1 <= gpu["blocks_1e10"] <= gpu["max_blocks"]
    assert -(-10**7 // gpu["threads"]) <= grid_x
    assert gpu["reduce_threads"] <= threads and gpu["reduce_threads"] & (gpu["reduce_threads"] - 1) == 0
    assert gpu["serial_outputs"] * gpu["reduce_parts"] <= grid_x
    # shared memory: 48 KiB per block without opting in
    assert gpu["reduce_threads"] * 8 <= 48 * 1024 and 2 * gpu["tile"] ** 2 * 8 <= 48 * 1024
    for grid, block in gpu["matmul"]:
        assert block[0] * block[1] <= threads
        assert grid[0] <= grid_x and grid[1] <= grid_yz and grid[2] <= grid_yz
        assert min(grid) >= 1


# ---------------------------------------------------------------------------------------------
# Kernels: matmul steps over row tiles and batch entries past the grid's limits
# ---------------------------------------------------------------------------------------------

@needs_kernels
def test_matmul_grid_limits_are_looped_over(monkeypatch):
    import tapegrad as tg
    from tapegrad_jit import cuda_kernels as K
    monkeypatch.setattr(K, "MAX_GRID_YZ", 1)     # one block along y and z covers everything
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 2 * K.config.TILE + 1, 5)), rng.standard_normal((5, 3))
    vg = tg.value_and_grad(lambda a, b: np.sum(np.tanh(a @ b)), argnums=(0, 1))
    jitted = tg.jit(vg, device="cuda")
    jitted(a, b)                                # the first call returns what tracing computed
    value, (ga, gb) = jitted(a, b)
    expected = vg(a, b)
    assert np.allclose(value, expected[0], rtol=1e-10, atol=1e-10)
    assert np.allclose(ga, expected[1][0], rtol=1e-10, atol=1e-10)
    assert np.allclose(gb, expected[1][1], rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# Inputs through __cuda_array_interface__ (CuPy; its stand-in on the simulator) stay on the GPU
# ---------------------------------------------------------------------------------------------

def interface_arrays():
    """What makes a CuPy-like array: CuPy on a GPU, the benchmarks' stand-in on the simulator."""
    if SIMULATOR:
        from benchmarks.gpu_check import InterfaceArray
        return InterfaceArray
    return pytest.importorskip("cupy").asarray


@needs_kernels
def test_interface_inputs_are_read_in_place_and_results_stay_on_device():
    import tapegrad as tg
    from tapegrad_jit import cuda as C

    def bumpy(x):
        y = x
        for _ in range(2):
            y = 0.9 * np.sin(y) + 0.1 * y * np.tanh(0.3 * x)
        return y

    make = interface_arrays()
    x = np.linspace(-2.0, 2.0, 19)
    rows = tg.jit(tg.vmap(tg.grad(bumpy)), device="cuda")(make(x))
    assert C.is_device_array(rows)
    assert np.allclose(rows.copy_to_host(), tg.vmap(tg.grad(bumpy))(x), rtol=1e-10, atol=1e-12)

    def rosenbrock(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    jitted = tg.jit(tg.value_and_grad(rosenbrock), device="cuda")
    for _ in range(2):                  # the first call traces; later ones take the fast path
        value, grad = jitted(make(x))
        assert C.is_device_array(value) and C.is_device_array(grad)
        expected = tg.value_and_grad(rosenbrock)(x)
        assert np.allclose(value.copy_to_host(), expected[0], rtol=1e-12)
        assert np.allclose(grad.copy_to_host(), expected[1], rtol=1e-12, atol=1e-12)
    source = make(x)
    view = C._as_device(source)
    view[3:5] = np.array([7.0, 8.0])        # a view, not a copy: the write reaches the source
    assert np.array_equal(np.asarray(source.get())[3:5], [7.0, 8.0])


# ---------------------------------------------------------------------------------------------
# Every launch the backend makes, checked against the hardware's limits (the simulator runs
# launches a GPU refuses, such as a grid of zero blocks)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def launch_audit(monkeypatch):
    """Launches seen, as (grid, block); a launch outside CUDA's limits (grid, block, parameter
    space) fails the test. None on a GPU, which refuses such launches itself."""
    if not SIMULATOR:
        return None
    from numba.cuda.simulator.kernel import FakeCUDAKernel
    from tapegrad_jit import cuda_kernels as K
    seen, launch, call = [], FakeCUDAKernel.__getitem__, FakeCUDAKernel.__call__

    def audited_call(kernel, *args):
        if not kernel._device:
            used = K.param_bytes([getattr(a, "ndim", 0) for a in args])
            assert used <= K.MAX_PARAM_BYTES, f"{kernel.__name__}: {used} bytes of arguments"
        return call(kernel, *args)

    monkeypatch.setattr(FakeCUDAKernel, "__call__", audited_call)

    def audited(kernel, configuration):
        grid, block = (tuple(d) if isinstance(d, tuple) else (d,) for d in configuration[:2])
        grid, block = grid + (1,) * (3 - len(grid)), block + (1,) * (3 - len(block))
        assert min(grid) >= 1 and min(block) >= 1, f"{kernel.__name__}: empty launch {grid}"
        assert block[0] * block[1] * block[2] <= K.MAX_THREADS_PER_BLOCK
        assert grid[0] <= K.MAX_GRID_X and max(grid[1:]) <= K.MAX_GRID_YZ
        seen.append((grid, block))
        return launch(kernel, configuration)

    monkeypatch.setattr(FakeCUDAKernel, "__getitem__", audited)
    return seen


@needs_kernels
@pytest.mark.parametrize("shape", [(0, 40), (3, 0), (0,)])
def test_launches_on_empty_arrays_fit_the_hardware(shape, launch_audit):
    import tapegrad as tg

    def f(x, w):
        if x.ndim == 1:
            return np.sum(np.exp(x) * w)
        return np.sum(np.tanh(x @ w) ** 2) + np.sum(np.sum(x * x, axis=-1) ** 2)

    x = np.ones(shape)
    w = np.ones((shape[-1], 2)) if len(shape) == 2 else np.ones(shape)
    vg = tg.value_and_grad(f, argnums=(0, 1))
    jitted = tg.jit(vg, device="cuda")
    jitted(x, w)                        # the first call returns what tracing computed
    value, grads = jitted(x, w)
    expected = vg(x, w)
    assert np.allclose(value, expected[0])
    assert all(np.shape(g) == np.shape(e) for g, e in zip(grads, expected[1]))
    assert launch_audit is None or launch_audit


def many_inputs(*xs):
    total = 0.0
    for k, x in enumerate(xs):
        total = total + (k + 1.0) * np.sin(x) * x
    return np.sum(total)


@needs_kernels
def test_a_fused_kernel_of_many_arrays_is_split_to_fit_the_parameter_space(launch_audit):
    import tapegrad as tg
    xs = [np.linspace(0.0, 1.0, 5) + k for k in range(80)]   # 80 inputs, 80 gradients
    vg = tg.value_and_grad(many_inputs, argnums=tuple(range(80)))
    jitted = tg.jit(vg, device="cuda")
    jitted(*xs)                         # the first call returns what tracing computed
    value, grads = jitted(*xs)
    expected = vg(*xs)
    assert np.allclose(value, expected[0], rtol=1e-12)
    for g, e in zip(grads, expected[1]):
        assert np.allclose(g, e, rtol=1e-12, atol=1e-12)
    assert launch_audit is None or len(launch_audit) > 3      # more kernels than the 3 groups


@needs_kernels
def test_rows_with_more_arrays_than_a_kernel_takes_run_on_the_interpreter(launch_audit,
                                                                         monkeypatch):
    import tapegrad as tg
    from tapegrad_jit import cuda_config
    monkeypatch.setattr(cuda_config, "MAX_ROW_OPS", 10**6)   # short enough for straight lines
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(3) for _ in range(30)]    # 30 inputs and 30 outputs per row
    vg = tg.vmap(tg.grad(many_inputs, argnums=tuple(range(30))))
    jitted = tg.jit(vg, device="cuda")
    for g, e in zip(jitted(*xs), tg.jit(vg)(*xs)):
        assert np.allclose(g, e, rtol=1e-12, atol=1e-12)
    kernels = [k for paths in jitted._signatures.values() for p in paths
               for k in p._row_kernels.values()]
    assert kernels == [None]
