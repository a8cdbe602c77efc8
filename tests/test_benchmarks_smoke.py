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
        # every stated target is reported as met, MISSED or not measured, quick mode too
        assert workload["goals"] and all(g["met"] in (True, False, None)
                                         for g in workload["goals"])
    assert "\ntargets: " in done.stdout
    assert "\n- target " in (tmp_path / "results.md").read_text()


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


def test_goals_flag_a_missed_target():
    from benchmarks.harness import Goal, check_goals
    from benchmarks.report import goal_line, goals_summary
    results = [dict(impl="C", status="ok", median_s=1.0, first_call_s=0.0),
               dict(impl="jit", status="ok", median_s=1.47, first_call_s=1.2),
               dict(impl="jit value", status="ok", median_s=0.7, first_call_s=0.1),
               dict(impl="absent", status="skipped")]
    goals = check_goals([Goal("jit", 1.3), Goal("jit", 1.0, measure="first_call_s"),
                         Goal("jit", 3.0, versus="jit value"), Goal("absent", 2.0)],
                        results, ("C",))
    assert [g["met"] for g in goals] == [False, False, True, None]
    assert goals[0]["value"] == 1.47 and goals[2]["value"] == 2.1
    assert goal_line(goals[0]) == "target MISSED: jit time / C 1.47x (<= 1.3x)"
    assert goal_line(goals[1]) == "target MISSED: jit first call 1.2s (<= 1s)"
    assert goal_line(goals[3]) == "target not measured: absent time / C (<= 2x)"
    report = dict(mode="quick", workloads=[dict(name="w", goals=goals)])
    summary = goals_summary(report)
    assert summary.startswith("targets: 1 met, 2 MISSED (quick mode")
    assert "w: target MISSED: jit time / C 1.47x" in summary
    report["workloads"][0]["goals"] = goals[2:]
    assert goals_summary(report).startswith("targets: 1 met, none missed")


def test_every_stated_target_is_a_checked_goal():
    from benchmarks.workloads import WORKLOADS
    for workload in WORKLOADS:
        names = {impl.name for impl in workload.impls}
        if "<=" in workload.target or ">=" in workload.target:
            assert workload.goals, workload.name
        for goal in workload.goals:
            assert goal.impl in names and (goal.versus or workload.yardsticks[0]) in names


def test_c_tape_interpreter_matches_the_reference_gradient():
    from benchmarks.harness import Skip, check
    from benchmarks.workloads import scalar_graph
    problem = scalar_graph.build(300)
    try:
        run = scalar_graph.c_setup(problem)
    except Skip as exc:
        import pytest
        pytest.skip(str(exc))
    for _ in range(2):                  # a second sweep starts from fresh adjoints
        value, grad = run()
        assert check((value, grad), problem, rtol=1e-9, atol=1e-12) is None
    assert np.count_nonzero(grad) > 10          # the last node depends on some inputs only
    numba_value, numba_grad = scalar_graph.numba_setup(problem)()
    np.testing.assert_allclose(grad, numba_grad, rtol=1e-12, atol=1e-300)


def test_nothing_reads_outside_the_repository():
    """Code and tests use files of this repository only (a fresh clone has nothing beside it):
    no path to the folder beside the checkout (../shared, parents[N] / "shared")."""
    import re
    beside = re.compile(r"\.\./shared|parents\[\d+\]\s*/\s*[\"']shared[\"']|/work/shared")
    this = Path(__file__).resolve()
    for folder in ("tapegrad", "tapegrad_jit", "benchmarks", "examples", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.resolve() != this:
                assert not beside.search(path.read_text()), path
    assert beside.search('SEED = Path(__file__).resolve().parents[2] / "shared" / "seed"')
    assert not beside.search('parent = tmp_path / "shared"')


def test_brief_table_names_what_did_not_run_instead_of_listing_it():
    from benchmarks.report import table
    entry = dict(name="w", title="t", size="2", dtype="float64", status="ok", yardstick="C",
                 target="", ratios={}, goals=[],
                 results=[dict(impl="C", group="hand-written", status="ok", median_s=1e-3,
                               q1_s=1e-3, q3_s=1e-3, min_s=1e-3, first_call_s=1e-3, ratio=1.0),
                          dict(impl="JAX jit", group="peer", status="skipped",
                               note="jax not installed")])
    full, brief = table(entry), table(entry, brief=True)
    assert "jax not installed" in full and "skipped" in full
    assert "skipped" not in brief
    assert "not run here (not installed or not in this mode): JAX jit" in brief
    skipped = dict(entry, status="skipped", note="no CUDA GPU here")
    assert table(skipped, brief=True).endswith("not run: no CUDA GPU here")
