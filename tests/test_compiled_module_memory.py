"""Generated code depends on ranks and dtypes, not sizes: a jitted function called on many input
sizes compiles one module, and memory stays flat (a module per size was never freed)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("numba")

import tapegrad as tg  # noqa: E402
from tapegrad_jit import fused  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bias_slices_mean(x, b, w):
    h = np.tanh(x * 1.5 + b)                          # a bias row over leading axes
    d = h[1:] - h[:-1]                                # slices: offsets follow the size
    return (np.mean(d * d) + np.sum(np.sum(h, axis=1) ** 2) / x.shape[0]
            + np.sum((h @ w) ** 2) * 0.01)


def column_and_axis0(x, c):
    y = np.exp(-x * x) * c                            # a column over trailing axes
    return np.sum(np.sum(y, axis=0) ** 2) + np.mean(np.abs(x))


def stencil(x):
    return np.sum(x[2:] * x[1:-1] - np.sin(x[:-2]) * x[1:-1]) + np.max(x) * 0.5


CASES = {
    "bias_slices_mean": (bias_slices_mean, lambda n, rng: (
        rng.standard_normal((n, 8)), rng.standard_normal(8), rng.standard_normal((8, 8)))),
    "column_and_axis0": (column_and_axis0, lambda n, rng: (
        rng.standard_normal((n, 16)), rng.standard_normal((n, 1)))),
    "stencil": (stencil, lambda n, rng: (rng.uniform(-1, 1, 8 * n),)),
}


def _program(jitted):
    [program] = next(iter(jitted._signatures.values()))
    return program


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_source_serves_every_size(name):
    f, make = CASES[name]
    rng = np.random.default_rng(3)
    sources = set()
    for n in (600, 601, 777, 1024, 2000):
        args = make(n, rng)
        jitted = tg.jit(tg.value_and_grad(f, argnums=tuple(range(len(args)))))
        tape = jitted.tape(*args)
        expected = tape.run(*args)
        jitted(*args)
        value, grads = jitted(*args)                 # the compiled program
        program = _program(jitted)
        assert isinstance(program, fused.FusedProgram)
        sources.add(program.source)
        np.testing.assert_allclose(value, expected[0], rtol=1e-12)
        for got, want in zip(grads, expected[1]):
            assert np.shape(got) == np.shape(want)
            np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    assert len(sources) == 1


def test_sizes_are_not_literals_in_generated_code():
    x = np.linspace(-1, 1, 12345)
    tape = tg.jit(tg.value_and_grad(lambda x: np.mean(np.sin(x[3:]) * 3.7)
                                    + np.sum(x ** 2.0))).tape(x)
    source = fused._Generator(tape).generate()
    for literal in ("12345", "12342", repr(1 / 12342), repr(3.7 / 12342), "3.7"):
        assert literal not in source
    assert "(2.0 * " in source           # a round constant (here from x ** 2) stays a literal


MANY_SIZES = textwrap.dedent('''
    import json, os
    import numpy as np
    import tapegrad as tg
    from tapegrad_jit import cache

    def rss_mb():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def counts():
        modules = cache.loaded_modules()
        functions = sum(len(value.overloads) for module in modules
                        for value in vars(module).values() if hasattr(value, "overloads"))
        return len(modules), functions

    def f(x, w):
        y = np.tanh(x * w + 0.5)
        return np.sum(y * y) + np.mean(x)

    g = tg.jit(tg.value_and_grad(f, argnums=(0, 1)))
    rng = np.random.default_rng(0)
    seen, rss = [], []
    for k in range(SIZES):
        n = 5000 + 7 * k
        x, w = rng.standard_normal(n), rng.standard_normal(n)
        g(x, w)
        value, (gx, gw) = g(x, w)           # the second call runs the compiled program
        y = np.tanh(x * w + 0.5)
        assert abs(value - (np.sum(y * y) + np.mean(x))) < 1e-9 * abs(value)
        assert np.allclose(gx, 2 * y * (1 - y * y) * w + 1 / n, rtol=1e-12)
        assert np.allclose(gw, 2 * y * (1 - y * y) * x, rtol=1e-12)
        seen.append(counts())
        rss.append(rss_mb())
    print(json.dumps({"counts": seen, "rss": rss}))
''')


def test_many_sizes_compile_once_and_memory_stays_flat(tmp_path):
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("reads the resident set size from /proc")
    env = dict(os.environ, TAPEGRAD_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", MANY_SIZES.replace("SIZES", "60")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    counts, rss = report["counts"], report["rss"]
    assert counts[0][0] >= 1 and counts[0][1] >= 1
    assert all(c == counts[0] for c in counts)          # one module, one compiled function
    # a module per size cost about 1.8 MB each (60 sizes: +108 MB)
    assert rss[-1] - rss[0] < 25, rss


if __name__ == "__main__":
    # python tests/test_compiled_module_memory.py [sizes]: the figures for many sizes
    import tempfile
    sizes = sys.argv[1] if len(sys.argv) > 1 else "200"
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, TAPEGRAD_CACHE_DIR=cache_dir)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
        out = subprocess.run([sys.executable, "-W", "ignore", "-c",
                              MANY_SIZES.replace("SIZES", sizes)], env=env, check=True,
                             capture_output=True, text=True).stdout
    report = json.loads(out.strip().splitlines()[-1])
    (modules, functions), rss = report["counts"][-1], report["rss"]
    print(f"{sizes} sizes: RSS after the first {rss[0]:.0f} MB, after the last {rss[-1]:.0f} MB "
          f"(+{rss[-1] - rss[0]:.0f} MB); {modules} generated modules, {functions} compiled "
          "functions")
