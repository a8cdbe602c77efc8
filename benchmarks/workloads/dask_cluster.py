"""tapegrad.dask: one process against a LocalCluster of 1 and 2 worker processes, float64.

Two workloads: the batched gradient of batched.py (per-point gradients, a lazy dask array
computed; 8 row chunks) and logistic regression (value and gradient of a sum over rows, 20
features; 8 row chunks, tree-reduced). Each worker runs one thread (NUMBA_NUM_THREADS=1), and
so does the "1 process, 1 thread" row, so that the 2-worker row's ratio to it gives the
scaling efficiency: efficiency = 1 / (2 x ratio). The data are persisted on the workers
before timing (as data that live on a cluster are); the cluster rows run in full mode only.

`python -m benchmarks.workloads.dask_cluster` measures Dask's overhead per task and per call
with tapegrad.dask on a 2-worker LocalCluster, and the chunk sizes at which N machines pay off
(benchmarks/README.md quotes its output).
"""
import atexit
import os
import time

import numpy as np

from ..harness import Impl, Problem, Skip, Workload
from . import batched

CHUNKS = 8
FEATURES = 20
_cluster = {}   # the one LocalCluster alive: {"workers": n, "cluster": ..., "client": ...}


def logistic(w, X, y):
    return np.sum(np.log(1.0 + np.exp(-y * (X @ w))))


def build_logistic(n):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, FEATURES))
    y = np.sign(rng.normal(size=n))
    w = rng.normal(size=FEATURES) * 0.3
    m = -y * (X @ w)
    value = np.sum(np.logaddexp(0.0, m))
    grad = X.T @ (-y / (1.0 + np.exp(-m)))
    return Problem(f=logistic, args=(w, X, y), argnums=(0,), value=float(value), grad=grad,
                   size=f"{n} rows x {FEATURES}")


def client_with(workers):
    """A Client of a LocalCluster with this many single-threaded worker processes (the one
    alive; another size closes it first)."""
    try:
        import distributed
    except ImportError as exc:
        raise Skip("dask/distributed not installed (pip install tapegrad[dask])") from exc
    if _cluster.get("workers") != workers:
        close()
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            worker_dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"})
        _cluster.update(workers=workers, cluster=cluster, client=distributed.Client(cluster))
    return _cluster["client"]


@atexit.register
def close():
    if _cluster:
        _cluster.pop("client").close()
        _cluster.pop("cluster").close()
        _cluster.clear()


def _rows(a, client):
    import dask.array as da
    rows = -(-a.shape[0] // CHUNKS)
    return client.persist(da.from_array(a, chunks=(rows,) + (-1,) * (a.ndim - 1)))


def one_thread(p):
    import numba
    import tapegrad as tg
    fn = tg.jit(tg.vmap(tg.grad(p.f))) if p.batched else tg.jit(tg.value_and_grad(p.f))

    def run():
        before = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            out = fn(*p.args)
        finally:
            numba.set_num_threads(before)
        return (None, out) if p.batched else out
    return run


def on_cluster(workers):
    def setup(p):
        import tapegrad as tg
        import tapegrad.dask as tgd
        from distributed import wait
        client = client_with(workers)
        if p.batched:
            x = _rows(p.args[0], client)
            fn = tgd.vmap(tg.jit(tg.vmap(tg.grad(p.f))))
            wait(x)
            return lambda: (None, fn(x).compute())
        w, X, y = p.args
        X, y = _rows(X, client), _rows(y, client)
        wait([X, y])
        fn = tgd.value_and_grad(p.f, jit=True)
        return lambda: fn(w, X, y)
    return setup


def _impls():
    one = "tapegrad jit, 1 process, 1 thread"
    impls = [Impl(one, "tapegrad", one_thread, note="numba.set_num_threads(1) during the call"),
             Impl("tapegrad.dask, LocalCluster 1 worker", "tapegrad", on_cluster(1),
                  runs_in="full", note=f"{CHUNKS} row chunks, 1 thread per worker"),
             Impl("tapegrad.dask, LocalCluster 2 workers", "tapegrad", on_cluster(2),
                  runs_in="full", note=f"{CHUNKS} row chunks, 1 thread per worker")]
    return impls, (one,)


def _workload(name, title, build, sizes):
    impls, yardsticks = _impls()
    return Workload(name=name, title=title, build=build, sizes=sizes, impls=impls,
                    yardsticks=yardsticks, dtype="float64", rtol=1e-8, atol=1e-10,
                    target="scaling: 1 process vs 2 workers; efficiency = 1 / (2 x ratio)",
                    ratios=(("2 workers / 1 worker", "tapegrad.dask, LocalCluster 2 workers",
                             "tapegrad.dask, LocalCluster 1 worker"),))


WORKLOADS = [
    _workload("dask_batched", "batched grad (batched.py's function) on a Dask LocalCluster",
              batched.build, {"full": 2_000_000, "quick": 20_000}),
    _workload("dask_logistic", "logistic regression value+grad on a Dask LocalCluster",
              build_logistic, {"full": 1_000_000, "quick": 20_000}),
]


# ---------------------------------------------------------------------------------------------
# python -m benchmarks.workloads.dask_cluster: overhead per task, and where clusters pay off
# ---------------------------------------------------------------------------------------------

def _best(run, repeats=5):
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def overhead(workers=2, rows=8192, counts=(2, 8, 32, 128)):
    """(seconds per call, seconds per task): a line fitted to a call's time against its
    number of row chunks, for a small logistic regression whose compute is negligible. (Beyond
    a few hundred tasks per call the scheduler itself saturates and the cost grows faster.)"""
    import dask.array as da
    import tapegrad.dask as tgd
    from distributed import wait
    client = client_with(workers)
    p = build_logistic(rows)
    w, X, y = p.args
    fn = tgd.value_and_grad(logistic, jit=True)
    times = []
    for k in counts:
        Xk = client.persist(da.from_array(X, chunks=(rows // k, -1)))
        yk = client.persist(da.from_array(y, chunks=rows // k))
        wait([Xk, yk])
        times.append(_best(lambda: fn(w, Xk, yk)))
    per_task, per_call = np.polyfit(counts, times, 1)
    return per_call, per_task, dict(zip(counts, times))


def per_row(problem):
    run = one_thread(problem)
    return _best(run, 3) / problem.args[-1].shape[0]


def main():
    from ..machine import describe, summary
    print(summary(describe()))
    per_call, per_task, times = overhead()
    print("calls of tapegrad.dask.value_and_grad, 2-worker LocalCluster, by number of chunks:")
    for k, t in times.items():
        print(f"  {k:4d} chunks: {t * 1e3:8.1f} ms")
    print(f"fit: {per_call * 1e3:.1f} ms per call + {per_task * 1e3:.2f} ms per task")
    for name, problem in [("batched grad", batched.build(200_000)),
                          ("logistic regression", build_logistic(200_000))]:
        c = per_row(problem)
        print(f"{name}: {c * 1e9:.0f} ns per row on one thread")
        for n in (2, 4, 16):
            # N machines beat one when (o + c r) / N < c r per chunk: r > o / (c (N - 1));
            # 90% efficiency when o < 0.1 c r: r > 10 o / c (whatever N)
            print(f"  N={n:2d}: chunks of more than {per_task / (c * (n - 1)):9,.0f} rows pay "
                  f"off; 90% efficiency from {10 * per_task / c:11,.0f} rows; "
                  f"and a call needs > {per_call * n / (c * (n - 1)):12,.0f} rows in all")
    close()


if __name__ == "__main__":
    main()
