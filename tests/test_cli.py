"""The installed `tapegrad` command: every subcommand, --help, options after subcommands, the
README's command lines, and errors a user can cause (one message naming the fix, no traceback).
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["demo", "grad-source", "tape", "bench"]

MODEL = '''\
import numpy as np

def energy(x):
    if np.sum(x) > 0:
        return np.sum(np.tanh(x) ** 2)
    return np.sum(x * x)

def scaled(x, a):
    return a * np.sum(x * x)

def cubic(x, a):
    return a * x * x * x

def takes_a_list(x):
    return sum({k: x * k for k in range(3)}.values())

def of_a_matrix(x):
    return np.sum(x[0, 1] * x)
'''


def tapegrad_command():
    """The console script installed beside this interpreter (pip install -e .), else on PATH."""
    beside = Path(sys.executable).with_name("tapegrad")
    found = str(beside) if beside.exists() else shutil.which("tapegrad")
    if found is None:
        pytest.skip("the `tapegrad` command is not installed: pip install -e .")
    return found


def tapegrad(*args, cwd=None, timeout=300):
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([tapegrad_command(), *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def model(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def assert_user_error(done, *fragments):
    """Exit status 2, one message on stderr naming what to do, no traceback."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


@pytest.mark.parametrize("subcommand", [""] + SUBCOMMANDS)
def test_every_subcommand_has_help(subcommand):
    done = tapegrad(*([subcommand] if subcommand else []), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: tapegrad {subcommand}".rstrip())


def test_bench_help_lists_the_benchmark_options():
    out = tapegrad("bench", "--help").stdout
    for option in ("--quick", "--only", "--out", "--list", "--strict"):
        assert option in out


def test_bench_quick_takes_options_after_the_subcommand(tmp_path):
    done = tapegrad("bench", "--quick", "--only", "seed", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["mode"] == "quick"
    assert report["argv"] == ["--quick", "--only", "seed", "--out", str(tmp_path)]
    assert [w["name"] for w in report["workloads"]] == ["seed"]


def test_bench_list_and_unknown_option():
    listed = tapegrad("bench", "--list")
    assert listed.returncode == 0 and "scalar_graph_10k" in listed.stdout
    wrong = tapegrad("bench", "--quik")
    assert wrong.returncode == 2 and "unrecognized arguments: --quik" in wrong.stderr


def test_tape_of_a_missing_file_names_the_fix(tmp_path):
    done = tapegrad("tape", "nofile.py:f", cwd=tmp_path)
    assert_user_error(done, "no file 'nofile.py'", str(tmp_path))


def test_missing_function_lists_what_the_file_defines(model):
    done = tapegrad("tape", "model.py:energi", cwd=model)
    assert_user_error(done, "defines no function 'energi'", "cubic, energy, of_a_matrix, scaled, takes_a_list")


def test_target_without_function_and_non_python_file(model):
    assert_user_error(tapegrad("tape", "model.py", cwd=model), "expected FILE.py:FUNC")
    (model / "notes.txt").write_text("x = 1\n")
    assert_user_error(tapegrad("grad-source", "notes.txt:f", cwd=model), "not a Python file")


def test_errors_in_the_users_file_name_its_line(model):
    (model / "broken.py").write_text("import numpy as np\n\ndef f(x:\n    return x\n")
    assert_user_error(tapegrad("tape", "broken.py:f", cwd=model), "broken.py:3")
    (model / "raises.py").write_text("import numpy as np\nscale = 1 / 0\n\n"
                                     "def f(x):\n    return x\n")
    assert_user_error(tapegrad("grad-source", "raises.py:f", cwd=model),
                      "raises.py:2: scale = 1 / 0: ZeroDivisionError")


def test_bad_arg_expression(model):
    done = tapegrad("tape", "model.py:energy", "--arg", "np.ones(", cwd=model)
    assert_user_error(done, "--arg 'np.ones('", "SyntaxError")
    done = tapegrad("tape", "model.py:energy", "--arg", "1.0", "--arg", "2.0", cwd=model)
    assert_user_error(done, "energy takes 1 arguments, got 2 --arg")


def test_tape_prints_the_gradient_tape(model):
    done = tapegrad("tape", "model.py:energy", "--grad", "--arg", "np.ones(3)", cwd=model)
    assert done.returncode == 0, done.stderr
    assert "-- adjoint sweep --" in done.stdout and "a:f64[3]" in done.stdout
    done = tapegrad("tape", "model.py:scaled", "--grad", "--argnums", "1",
                    "--arg", "np.ones(2)", "--arg", "3.0", cwd=model)
    assert done.returncode == 0, done.stderr
    # d/da of a * sum(x * x) is sum(x * x): the gradient tape's output is the forward sum
    assert "b:f64[]" in done.stdout and "e:f64[] = sum" in done.stdout and "in (e)" in done.stdout


def test_tape_of_a_failing_function_names_the_line_and_the_error(model):
    done = tapegrad("tape", "model.py:cubic", "--grad", "--arg", "np.ones(2)", cwd=model)
    assert_user_error(done, "model.py:", "one scalar output")


def test_grad_source_takes_kinds_from_arg_values(model):
    done = tapegrad("grad-source", "model.py:energy", "--arg", "np.ones(3)", cwd=model)
    assert done.returncode == 0, done.stderr
    assert "x_bar = np.zeros_like(x)" in done.stdout and done.stderr == ""
    scalar = tapegrad("grad-source", "model.py:cubic", "--arg", "2.0", "--arg", "3.0", cwd=model)
    assert scalar.returncode == 0 and "def grad_cubic(x, a)" in scalar.stdout
    # an array --arg makes x a 1-d array, and cubic(x) is then no scalar
    array = tapegrad("grad-source", "model.py:cubic", "--arg", "np.ones(3)", "--arg", "3.0",
                     cwd=model)
    assert array.returncode == 1 and "not float1d" in array.stderr


def test_grad_source_help_example_runs_on_an_array_function(model):
    """The help's own example: energy reduces its argument, so float scalars cannot work."""
    done = tapegrad("grad-source", "model.py:energy", "--argnums", "0", cwd=model)
    assert done.returncode == 0, done.stderr
    assert "np.zeros_like(x)" in done.stdout
    assert "1-d float array" in done.stderr and "--kinds" in done.stderr


def test_grad_source_explicit_kinds(model):
    done = tapegrad("grad-source", "model.py:energy", "--kinds", "float", cwd=model)
    assert done.returncode == 1 and "reductions take arrays" in done.stderr
    assert "Traceback" not in done.stderr
    assert_user_error(tapegrad("grad-source", "model.py:energy", "--kinds", "vector", cwd=model),
                      "unknown kind 'vector'")
    assert_user_error(tapegrad("grad-source", "model.py:scaled", "--kinds", "array", cwd=model),
                      "1 kinds for 2 arguments")


def test_grad_source_failure_says_to_pass_kinds(model):
    """Neither float scalars nor 1-d arrays fit a function of a matrix: the error says how to
    give the kinds; the explicit kind works."""
    done = tapegrad("grad-source", "model.py:of_a_matrix", cwd=model)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "model.py:18" in done.stderr and "pass --kinds" in done.stderr
    right = tapegrad("grad-source", "model.py:of_a_matrix", "--kinds", "float2d", cwd=model)
    assert right.returncode == 0 and "x_bar[0, 1] +=" in right.stdout


def test_grad_source_refusal_for_any_kinds_names_the_line_only(model):
    done = tapegrad("grad-source", "model.py:takes_a_list", cwd=model)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "model.py:15" in done.stderr and "not supported" in done.stderr
    assert "--kinds" not in done.stderr     # the kinds are not what is wrong


def test_demo_runs_everything_from_any_directory(tmp_path):
    done = tapegrad("demo", "--out", str(tmp_path / "bench"), cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped" not in done.stdout.lower()
    expected = (ROOT / "examples" / "expected_output_torch.txt").read_text().splitlines()
    assert expected[0] in done.stdout and expected[-1] in done.stdout   # the seed tutorial ran
    assert "-- adjoint sweep --" in done.stdout and "def grad_pendulum_energy" in done.stdout
    assert "np.float64" not in done.stdout
    assert (tmp_path / "bench" / "results.json").exists()


def readme_commands():
    """`tapegrad ...` command lines quoted in README.md (in backticks or bash blocks)."""
    text = (ROOT / "README.md").read_text()
    found = re.findall(r"`(tapegrad (?:grad-source|tape) [^`]+)`", text)
    assert found, "the README shows no tapegrad grad-source/tape command"
    return found


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_lines_run(command):
    done = tapegrad(*shlex.split(command)[1:])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def _setup_kwargs():
    import setuptools
    captured = {}
    real = setuptools.setup
    setuptools.setup = lambda **kwargs: captured.update(kwargs)
    try:
        cwd = os.getcwd()
        os.chdir(ROOT)
        exec(compile((ROOT / "setup.py").read_text(), "setup.py", "exec"), {"__name__": "setup"})
    finally:
        setuptools.setup = real
        os.chdir(cwd)
    return captured


def test_install_holds_no_top_level_benchmarks_and_every_subpackage():
    kwargs = _setup_kwargs()
    packages, package_dir = set(kwargs["packages"]), kwargs["package_dir"]
    assert not {p for p in packages if p.split(".")[0] in ("benchmarks", "examples")}
    assert package_dir["tapegrad_benchmarks"] == "benchmarks"
    assert package_dir["tapegrad_benchmarks.workloads"] == "benchmarks/workloads"
    assert package_dir["tapegrad_examples"] == "examples"
    for top in ("tapegrad", "tapegrad_jit"):
        for init in (ROOT / top).rglob("__init__.py"):
            assert ".".join(init.parent.relative_to(ROOT).parts) in packages


def help_examples():
    """The command lines the top-level --help shows under `examples:`."""
    from tapegrad.cli import EXAMPLES_HELP
    return [line.strip() for line in EXAMPLES_HELP.splitlines()
            if line.strip().startswith(("tapegrad tape", "tapegrad grad-source"))]


@pytest.mark.parametrize("command", help_examples())
def test_help_examples_run(command, tmp_path):
    """Every example of `tapegrad --help`, on the model file of examples/ (energy, pendulum)."""
    shutil.copy(ROOT / "examples" / "model.py", tmp_path / "model.py")
    done = tapegrad(*shlex.split(command)[1:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "def grad_" in done.stdout or "-- adjoint sweep --" in done.stdout


def test_a_wheel_installs_benchmarks_and_examples_under_their_own_names(tmp_path):
    """A regular (not editable) install: tapegrad bench and demo find their companions there,
    with the C source and the expected output, and no top-level benchmarks/examples."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("tapegrad", "tapegrad_jit", "benchmarks", "examples"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w",
                                  str(tmp_path / "wheel"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "wheel").glob("tapegrad-*.whl"))
    site = tmp_path / "site"
    done = subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (site / "benchmarks").exists() and not (site / "examples").exists()
    code = ("import tapegrad.cli as c;"
            "b, e = c.benchmarks_package(), c.examples_package();"
            f"print(b.__name__, e.__name__, b.__file__.startswith({str(site)!r}),"
            " e.SEED_TUTORIAL.is_file(), e.SEED_EXPECTED.is_file(),"
            " (c.Path(b.__file__).parent / 'tape_interpreter.c').is_file())")
    env = dict(os.environ, PYTHONPATH=str(site))
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.stdout.split() == ["tapegrad_benchmarks", "tapegrad_examples", "True", "True",
                                    "True", "True"], shown.stderr


def test_the_users_file_imports_its_siblings(model):
    """As `python model.py` would: the file's folder is on the import path."""
    (model / "helpers.py").write_text("def square(x):\n    return x * x\n")
    (model / "uses.py").write_text("from helpers import square\n\ndef f(x):\n"
                                   "    return square(x) * 3.0\n")
    done = tapegrad("tape", str(model / "uses.py") + ":f", "--grad", cwd=model.parent)
    assert done.returncode == 0, done.stderr
    assert "-- adjoint sweep --" in done.stdout


def test_bench_and_python_m_benchmarks_share_numba_cached_kernels(tmp_path):
    """In a checkout both run the benchmarks as `benchmarks`: Numba's disk cache of a kernel
    records its module's name, and a second name for the same file failed to load it."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env.pop("PYTHONPATH", None)
    statuses = []
    # python -m benchmarks in the checkout, the installed command elsewhere (where the name
    # `benchmarks` cannot be imported unless the command itself uses it), then the first again
    for command, cwd in (([sys.executable, "-m", "benchmarks"], ROOT),
                         ([tapegrad_command(), "bench"], tmp_path),
                         ([sys.executable, "-m", "benchmarks"], ROOT)):
        out = tmp_path / str(len(statuses))
        done = subprocess.run(command + ["--quick", "--only", "rosenbrock", "--out", str(out)],
                              cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        results = json.loads((out / "results.json").read_text())["workloads"][0]["results"]
        statuses.append({r["impl"]: (r["status"], r["note"]) for r in results
                         if r["impl"].startswith("Numba")})
    for status in statuses:
        assert all(s == "ok" for s, _ in status.values()), status
