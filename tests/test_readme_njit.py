"""The README's section on gradients inside @numba.njit code (issue 12): its code blocks run as
written, show gradient descent and a leapfrog step on both faces with the same numbers as plain
Python loops, and a guard that fails inside nopython code names the guard's line."""
import re
import runpy
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

README = Path(__file__).resolve().parents[1] / "README.md"


def section_blocks():
    text = README.read_text()
    match = re.search(r"^## Gradients inside `@numba\.njit` code\n(.*?)^## ", text, re.S | re.M)
    assert match, "README.md lost its section on gradients inside @numba.njit code"
    return re.findall(r"^```python\n(.*?)^```", match.group(1), re.S | re.M)


def run_block(code, tmp_path, name):
    path = tmp_path / name
    path.write_text(code)
    return runpy.run_path(str(path)), path


def python_leapfrog(grad, q, p, eps, steps):
    p = p + 0.5 * eps * grad(q)
    for k in range(steps):
        q = q + eps * p
        if k != steps - 1:
            p = p + eps * grad(q)
    return q, p + 0.5 * eps * grad(q)


def test_the_section_shows_both_faces_in_njit_code():
    blocks = section_blocks()
    assert len(blocks) >= 2
    steps = blocks[0]
    assert "tg.jit(tg.grad(" in steps and "source.grad(" in steps and "jit=True" in steps
    assert steps.count("@numba.njit") >= 2
    assert "def leapfrog(" in steps and "def descend(" in steps


def test_descent_and_leapfrog_match_python_loops_on_both_faces(tmp_path):
    ns, _ = run_block(section_blocks()[0], tmp_path, "readme_steps.py")
    log_density = ns["log_density"]

    def grad(q):  # d/dq of -0.5 q.q - 0.1 sum(q^4), by hand
        return -q - 0.4 * q ** 3

    np.testing.assert_allclose(ns["traced"](ns["q0"]), grad(ns["q0"]), rtol=1e-13)
    q0, p0 = np.array([0.3, -1.2]), np.array([0.5, 0.25])   # not the README's: no stale numbers
    want_q, want_p = python_leapfrog(grad, q0, p0, 0.05, 7)
    expected_x = q0.copy()
    for _ in range(30):
        expected_x = expected_x + 0.1 * grad(expected_x)
    for face in "ts":
        q, p = ns[f"leapfrog_{face}"](q0, p0, 0.05, 7)
        np.testing.assert_allclose(q, want_q, rtol=1e-12)
        np.testing.assert_allclose(p, want_p, rtol=1e-12)
        np.testing.assert_allclose(ns[f"descend_{face}"](q0, 0.1, 30), expected_x, rtol=1e-12)
        # the Hamiltonian is nearly conserved by a leapfrog step (a sign error would not be)
        h0 = -log_density(q0) + 0.5 * p0 @ p0
        assert abs(-log_density(q) + 0.5 * p @ p - h0) < 1e-3
    # the functions ran in nopython mode (a fallback to object mode would have no signatures)
    assert ns["leapfrog_s"].nopython_signatures and ns["descend_t"].nopython_signatures


def test_the_guard_failing_inside_nopython_code_names_the_readme_line(tmp_path):
    code = section_blocks()[1]
    ns, path = run_block(code, tmp_path, "readme_guard.py")
    line = next(n for n, text in enumerate(code.splitlines(), 1) if text.strip().startswith("if "))
    with pytest.raises(RuntimeError, match=rf"{path.name}:{line}: if x > 0\.0.*"
                                           r"call the function from Python to retrace"):
        ns["slope"](-3.0)
    assert ns["slope"](3.0) == 6.0
