"""tapegrad.dask on a LocalCluster of 2 worker processes: sums over row chunks equal the
single-process gradients; jit objects and source derivatives travel by cloudpickle."""
import os
import pickle
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

import tapegrad as tg  # noqa: E402
import tapegrad.dask as tgd  # noqa: E402
from tapegrad import source  # noqa: E402

# as for functions a user defines in a script or notebook: sent by value, code and all
cloudpickle.register_pickle_by_value(sys.modules[__name__])

RNG = np.random.default_rng(16)
N, D = 203, 4
X = RNG.normal(size=(N, D))
Y = np.sign(RNG.normal(size=N))
W = RNG.normal(size=D)


def logistic(w, X, y):
    z = X @ w
    return np.sum(np.log(1.0 + np.exp(-y * z)))


def model(p, X, y):
    r = np.tanh(X @ p["w"] + p["b"]) - y
    return np.sum(r * r)


def scaled(w, s, X, y):
    return np.sum((X @ w * s - y) ** 2)


def bump(x):
    return np.sum(np.sin(x) ** 2) + x[0] * x[1]


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, worker_dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


CHUNKINGS = {"chunked": ((29, D), 50), "unchunked": ((N, D), N), "misaligned": ((64, 2), 100)}


def _data(chunking, x=X, y=Y):
    xc, yc = CHUNKINGS[chunking]
    return da.from_array(x, chunks=xc), da.from_array(y, chunks=yc)


# ---------------------------------------------------------------------------------------------
# pickling: what travels is Python, compiled again where it lands
# ---------------------------------------------------------------------------------------------

def test_jit_pickles_as_its_function_not_its_compiled_code():
    f = tg.jit(tg.value_and_grad(logistic))
    before = len(cloudpickle.dumps(f))
    value, grad = f(W, X, Y)
    blob = cloudpickle.dumps(f)
    assert len(blob) == before  # nothing the call compiled or traced went with it
    g = pickle.loads(blob)
    assert g.traces == 0
    v2, g2 = g(W, X, Y)
    assert g.traces == 1
    np.testing.assert_allclose(v2, value, rtol=1e-14)
    np.testing.assert_allclose(g2, grad, rtol=1e-14)


@pytest.mark.parametrize("jit", [False, True])
def test_source_derivative_pickles_with_its_source_lines(jit):
    d = source.value_and_grad(logistic, jit=jit)
    value, grad = d(W, X, Y)
    g = pickle.loads(cloudpickle.dumps(d))
    # cloudpickle names by-value code "<dynamic-code>": the lines travel and name the file
    assert g.fun.__code__.co_filename == logistic.__code__.co_filename
    assert g._compiled == {}
    v2, g2 = g(W, X, Y)
    np.testing.assert_allclose(v2, value, rtol=1e-14)
    np.testing.assert_allclose(g2, grad, rtol=1e-14)
    assert "def " in g.source


# ---------------------------------------------------------------------------------------------
# value_and_grad: equal to the single-process value and gradient
# ---------------------------------------------------------------------------------------------

FACES = {"trace": {}, "trace-jit": {"jit": True}, "source": {"face": "source"},
         "source-jit": {"face": "source", "jit": True}}


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("face", list(FACES))
def test_value_and_grad_equals_single_process(client, face, chunking):
    value, grad = tgd.value_and_grad(logistic, **FACES[face])(W, *_data(chunking))
    ref_value, ref_grad = tg.value_and_grad(logistic)(W, X, Y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12)
    assert isinstance(grad, np.ndarray) and grad.shape == W.shape


def test_value_and_grad_against_torch(client):
    torch = pytest.importorskip("torch")
    w = torch.tensor(W, requires_grad=True)
    loss = torch.nn.functional.softplus(-torch.tensor(Y) * (torch.tensor(X) @ w)).sum()
    loss.backward()
    value, grad = tgd.value_and_grad(logistic, jit=True)(W, *_data("chunked"))
    np.testing.assert_allclose(value, loss.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, w.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_value_and_grad_of_a_pytree_and_tuple_argnums(client):
    params = {"w": W, "b": 0.25}
    value, grads = tgd.value_and_grad(model, jit=True)(params, *_data("chunked"))
    ref_value, ref_grads = tg.value_and_grad(model)(params, X, Y)
    assert set(grads) == {"w", "b"} and np.shape(grads["b"]) == ()
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for k in params:
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-12, atol=1e-12)
    s = np.float32(1.5)  # a float32 parameter: its gradient comes back float32
    value, (gw, gs) = tgd.value_and_grad(scaled, argnums=(0, 1))(W, s, *_data("misaligned"))
    ref_value, (rw, rs) = tg.value_and_grad(scaled, argnums=(0, 1))(W, s, X, Y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    np.testing.assert_allclose(gw, rw, rtol=1e-6)
    assert gs.dtype == np.float32
    np.testing.assert_allclose(gs, rs, rtol=1e-5)


def test_nan_and_inf_in_one_chunk_as_in_one_process(client):
    x = X.copy()
    x[7, 1], x[150, 2] = np.nan, np.inf
    value, grad = tgd.value_and_grad(logistic)(W, *_data("chunked", x=x))
    ref_value, ref_grad = tg.value_and_grad(logistic)(W, x, Y)
    np.testing.assert_array_equal(np.isnan(value), np.isnan(ref_value))
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, equal_nan=True)


def test_minimize_on_the_cluster_matches_one_process(client):
    optimize = pytest.importorskip("scipy.optimize")
    on_cluster = optimize.minimize(tgd.value_and_grad(logistic, jit=True), np.zeros(D),
                                   args=_data("chunked"), jac=True, method="L-BFGS-B")
    here = optimize.minimize(tg.value_and_grad(logistic), np.zeros(D), args=(X, Y), jac=True,
                             method="L-BFGS-B")
    assert on_cluster.success and on_cluster.nit == here.nit
    np.testing.assert_allclose(on_cluster.x, here.x, rtol=1e-8, atol=1e-10)


def test_a_worker_traces_a_jit_once_for_every_task_and_call(client):
    vg = tgd.value_and_grad(logistic, jit=True)
    x, y = da.from_array(X[:200], chunks=(25, D)), da.from_array(Y[:200], chunks=25)
    first = vg(W, x, y)
    second = vg(W + 1.0, x, y)
    ref = tg.value_and_grad(logistic)(W + 1.0, X[:200], Y[:200])
    np.testing.assert_allclose(second[1], ref[1], rtol=1e-12)
    assert first[0] != second[0]

    token = vg._shipped.token

    def traces():
        import tapegrad.dask
        shipped = tapegrad.dask._RECEIVED.get(token)
        return None if shipped is None else shipped.fun.traces
    per_worker = client.run(traces)
    assert list(per_worker.values()) == [1, 1]  # 8 tasks x 2 calls, one trace per worker


def test_client_by_address(client):
    with distributed.Client(client.scheduler.address) as other:
        assert distributed.default_client() is other
        value, grad = tgd.value_and_grad(logistic, face="source")(W, *_data("chunked"))
    ref_value, ref_grad = tg.value_and_grad(logistic)(W, X, Y)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# vmap: lazy, one task per row chunk
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vmap_of_jit_vmap_grad_is_a_lazy_dask_array(client, dtype):
    x = da.from_array(X.astype(dtype), chunks=(50, 2))
    per_row = tgd.vmap(tg.jit(tg.vmap(tg.grad(bump))))(x)
    assert isinstance(per_row, da.Array)
    assert per_row.chunks == ((50, 50, 50, 50, 3), (D,)) and per_row.dtype == dtype
    out = per_row.compute()
    ref = tg.vmap(tg.grad(bump))(X.astype(dtype))
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=1e-6 if dtype == np.float32 else 1e-14,
                               atol=1e-6 if dtype == np.float32 else 0)  # float32 rounding
    expected = 2 * np.sin(X) * np.cos(X)  # by hand, in float64
    expected[:, 0] += X[:, 1]
    expected[:, 1] += X[:, 0]
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-14)


def test_vmap_of_a_per_row_scalar_and_a_broadcast_argument(client):
    def energy(w, x):
        return np.sum(w * x ** 2)
    values = tgd.vmap(tg.jit(tg.vmap(energy, in_axes=(None, 0))))(W, da.from_array(X, chunks=60))
    assert values.shape == (N,) and values.chunks == ((60, 60, 60, 23),)
    np.testing.assert_allclose(values.compute(), (X ** 2) @ W, rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------

def mean_loss(w, X, y):
    return np.mean((X @ w - y) ** 2)


def per_row_loss(w, X, y):
    return (X @ w - y) ** 2


def penalised_loss(w, X, y):
    return np.sum((X @ w - y) ** 2) + np.sum(w * w)


@pytest.mark.parametrize("loss, says", [(mean_loss, "nan over 0 rows"),
                                        (per_row_loss, "shape (0,) for 0 rows"),
                                        (penalised_loss, "not 0: it has a part")])
def test_a_loss_that_is_not_a_row_sum_is_refused(loss, says):
    with pytest.raises(ValueError, match=re.escape(says)) as info:
        tgd.value_and_grad(loss)(W, *_data("chunked"))
    assert f"test_dask.py:{loss.__code__.co_firstlineno}" in str(info.value)  # the user's def


def test_a_penalty_that_is_0_at_the_first_call_is_refused_at_the_next():
    vg = tgd.value_and_grad(penalised_loss)
    x, y = _data("chunked")
    vg(np.zeros(D), x, y)  # the penalty is 0 here: nothing shows
    with pytest.raises(ValueError, match="not 0: it has a part"):
        vg(W, x, y)


def test_argument_errors():
    x, y = _data("chunked")
    with pytest.raises(TypeError, match="argument 1 .argnums. is a dask array"):
        tgd.value_and_grad(logistic, argnums=1)(W, x, y)
    with pytest.raises(ValueError, match="different numbers of rows"):
        tgd.value_and_grad(logistic)(W, x, y[:-1])
    with pytest.raises(TypeError, match="no dask array"):
        tgd.value_and_grad(logistic)(W, X, Y)
    kept = x[x[:, 0] > 0]  # a filter: rows per chunk unknown until computed
    with pytest.raises(ValueError, match="unknown chunk sizes.*compute_chunk_sizes"):
        tgd.value_and_grad(logistic)(W, kept, y)
    with pytest.raises(ValueError, match="one array with a row per input row"):
        tgd.vmap(tg.vmap(tg.value_and_grad(bump)))(x)


def column_sums(x):
    return np.sum(x, axis=0, keepdims=True)  # one row for 1 row, but not for 29


def test_vmap_of_a_function_that_does_not_map_rows_fails_in_its_task(client):
    lazy = tgd.vmap(column_sums)(_data("chunked")[0])
    with pytest.raises(ValueError, match=r"returned shape \(1, 4\) for a chunk of 29 rows"):
        lazy.compute()


def test_the_readme_example_runs(tmp_path):
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    block = re.search(r"## Beyond one machine: Dask.*?```python\n(.*?)```", text, re.S).group(1)
    for big, small in [("10_000_000", "40_000"), ("500_000", "10_000"),
                       ("n_workers=4", "n_workers=2")]:  # a small run of the same code
        assert big in block
        block = block.replace(big, small)
    block += ("    assert fit.success and per_row.shape == X.shape\n"
              "    np.testing.assert_allclose(per_row[:5].compute(), np.sin(2 * X[:5]).compute())\n"
              "    client.close()\n")
    (tmp_path / "readme_dask.py").write_text(block)
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "readme_dask.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "http" in done.stdout  # the dashboard link


# ---------------------------------------------------------------------------------------------
# a worker killed mid-computation: Dask runs its tasks again elsewhere (last: it restarts)
# ---------------------------------------------------------------------------------------------

def _slow(block):
    time.sleep(0.4)
    return block


def test_a_killed_worker_still_gives_the_right_result(client):
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    x, y = _data("chunked")
    x = x.map_blocks(_slow, dtype=x.dtype)

    def kill_when_busy():
        for _ in range(200):
            if client.processing().get(victim):
                os.kill(pids[victim], signal.SIGKILL)
                return
            time.sleep(0.02)
    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    value, grad = tgd.value_and_grad(logistic, jit=True)(W, x, y)
    killer.join()
    assert victim not in client.scheduler_info()["workers"] or \
        client.run(os.getpid).get(victim) != pids[victim]  # it was killed (and maybe restarted)
    ref_value, ref_grad = tg.value_and_grad(logistic)(W, X, Y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12)
