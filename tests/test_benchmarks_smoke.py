"""Smoke test of the benchmark harness: quick mode on two tiny workloads, into a temp dir.

Runs in a subprocess so the peers it may import (torch, JAX with x64 switched on) stay out of
the test process. Checks the shape of results.json only, never timings, so it passes with or
without any peer installed and whatever state tapegrad's faces are in.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STATUSES = {"ok", "skipped", "FAILED", "error"}


def run_python(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_quick_run_writes_results(tmp_path):
    done = run_python("-m", "benchmarks", "--quick", "--only", "seed", "rosenbrock",
                      "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== seed" in done.stdout
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["mode"] == "quick"
    assert {"cpu", "cores", "python", "versions"} <= set(report["machine"])
    assert [w["name"] for w in report["workloads"]] == ["seed", "rosenbrock"]
    for workload in report["workloads"]:
        assert workload["status"] == "ok"
        assert workload["results"]
        for r in workload["results"]:
            assert r["status"] in STATUSES
            assert {"impl", "group", "note"} <= set(r)
            if r["status"] == "ok":
                assert r["median_s"] > 0 and r["q1_s"] <= r["median_s"] <= r["q3_s"]
                assert r["first_call_s"] >= 0 and r["samples"] >= 3
        # Hand-written NumPy needs nothing but NumPy, so every workload has a yardstick.
        assert workload["yardstick"] is not None
        assert any(r.get("ratio") == 1.0 for r in workload["results"])


def test_import_stays_light():
    code = ("import sys, benchmarks; heavy = {'numba', 'torch', 'jax', 'autograd', 'matplotlib'};"
            "print(sorted(heavy & set(sys.modules)))")
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _not_installed(problem):
    raise ImportError("No module named 'peer'")


def test_wrong_gradient_is_failed_not_timed():
    from benchmarks.harness import QUICK, Impl, Problem, Workload, measure_impl
    problem = Problem(f=None, args=(), argnums=(0,), value=1.0, grad=np.array([2.0, 3.0]),
                      size="2")
    workload = Workload(name="t", title="t", build=None, sizes={}, impls=[], yardsticks=(),
                        dtype="float64")
    wrong = Impl("wrong", "peer", lambda p: lambda: (1.0, np.array([2.0, 3.5])))
    right = Impl("right", "peer", lambda p: lambda: (1.0, (np.array([2.0]), np.array([3.0]))))
    result = measure_impl(wrong, problem, workload, QUICK)
    assert result["status"] == "FAILED" and "median_s" not in result
    assert measure_impl(right, problem, workload, QUICK)["status"] == "ok"
    absent = Impl("absent", "peer", _not_installed)
    assert measure_impl(absent, problem, workload, QUICK)["status"] == "skipped"
