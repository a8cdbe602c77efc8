"""README truths and examples/: the README's Python examples print what their comments say, the
output blocks under them are what they print, every script in examples/ runs, and the README's
test command is the one CI runs.

A README line `print(expr)   # expected` (continued by comment-only lines below it) must print
`expected`; `...` in it matches any text (digits beyond those shown).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = "@@readme-check@@"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_PRINT = re.compile(r"^(\s*print\(.*\))\s+# (.*)$")
_CONTINUED = re.compile(r"^\s*# ?(.*)$")


def readme_examples(text):
    """[(python source, output block after it or None)] for runnable python blocks."""
    blocks = [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]
    found = []
    for i, (lang, body) in enumerate(blocks):
        if lang == "python" and body.startswith(("import ", "from ")):
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            found.append((body, after[1] if after and after[0] == "" else None))
    return found


def instrument(source):
    """The source with each commented print bracketed by markers; the expected texts."""
    lines, expected, out = source.splitlines(), [], []
    i = 0
    while i < len(lines):
        match = _PRINT.match(lines[i])
        if not match:
            out.append(lines[i])
            i += 1
            continue
        want = [match.group(2)]
        # one line for one line, so that line numbers (in printed tapes) stay the README's
        out.append(f"{match.group(1)[:-len(match.group(1).lstrip())]}print({MARK!r}); "
                   f"{match.group(1).strip()}; print({MARK!r})")
        i += 1
        while i < len(lines) and _CONTINUED.match(lines[i]):
            want.append(_CONTINUED.match(lines[i]).group(1))
            out.append(lines[i])
            i += 1
        expected.append("\n".join(want))
    return "\n".join(out) + "\n", expected


def matches(expected, actual):
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, actual, re.S) is not None


def run_example(source, tmp_path):
    (tmp_path / "readme.py").write_text(source)
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "readme.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


EXAMPLES = readme_examples(README.read_text())


def test_the_readme_has_checked_examples():
    assert len(EXAMPLES) >= 3
    assert sum(len(instrument(src)[1]) for src, _ in EXAMPLES) >= 5
    assert any(block for _, block in EXAMPLES)          # the printed tape


@pytest.mark.parametrize("source,block", EXAMPLES, ids=lambda x: (x or "")[:30])
def test_readme_example_prints_what_the_readme_says(source, block, tmp_path):
    instrumented, expected = instrument(source)
    stdout = run_example(instrumented, tmp_path)
    printed = stdout.split(MARK + "\n")[1::2]
    assert len(printed) == len(expected)
    for want, got in zip(expected, printed):
        assert matches(want, got.rstrip("\n")), f"README says {want!r}, it printed {got!r}"
    if block is not None:
        assert block in stdout.replace(MARK + "\n", ""), stdout


def test_the_check_catches_a_wrong_comment():
    source, expected = instrument("x = 2\nprint(x + 1)   # 4\nprint([x])   # [1,\n#  2]\nx = 1\n")
    assert expected == ["4", "[1,\n 2]"]
    assert source.count(MARK) == 4 and "x = 1" in source
    assert len(source.splitlines()) == 5           # line numbers kept
    assert not matches("4", "3") and matches("(-1.42..., 2)", "(-1.4257, 2)")
    assert not matches("(array(0.8325...), 1)", "(0.8325, 1)")


def test_example_scripts_run():
    scripts = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "__init__.py")
    assert {p.name for p in scripts} >= {"seed_tutorial.py", "model.py", "traced_energy.py",
                                         "source_pendulum.py"}
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for script in scripts:
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (script, done.stderr)
        assert done.stdout


def test_readme_test_command_is_what_ci_runs():
    command = re.search(r"^Run all the tests.*?```bash\n(.*?)\n```", README.read_text(),
                        re.S | re.M).group(1)
    assert "test" in command and "bash .ci/test" in command
    ci = (ROOT / ".ci" / "run").read_text()
    assert command in ci.splitlines()
    # the test extra brings PyTorch, so the comparisons with it run instead of skipping
    setup = (ROOT / "setup.cfg").read_text()
    test_extra = re.search(r"^test =\n((?:    .*\n)+)", setup, re.M).group(1).split()
    assert "torch" in test_extra


def test_examples_package_names_its_files():
    sys.path.insert(0, str(ROOT))
    try:
        import examples
    finally:
        sys.path.remove(str(ROOT))
    for path in (examples.SEED_TUTORIAL, examples.SEED_EXPECTED, examples.MODEL):
        assert path.is_file()


# The six "no lowering for primitive 'binary_cross_entropy'" warnings of the test run: the loss
# now compiles on the CPU backend instead of falling back to the NumPy reference interpreter.
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_compiles_on_the_cpu(reduction):
    import warnings

    import numpy as np

    import tapegrad as tg
    from tapegrad import primitives as P

    p = np.array([[0.0, 1.0, 0.5], [0.2, 0.9, 1e-9]])
    y = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.5]])
    w = np.array([0.5, 1.0, 2.0])

    def loss(p, y):
        return np.sum(P.binary_cross_entropy(p, y, w, reduction=reduction) * 1.5)

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        value, grads = tg.jit(tg.value_and_grad(loss, argnums=(0, 1)))(p, y)
    ref_value, ref_grads = tg.value_and_grad(loss, argnums=(0, 1))(p, y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for ours, theirs in zip(grads, ref_grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    torch = pytest.importorskip("torch")
    tp = torch.tensor(p, requires_grad=True)
    expected = torch.nn.functional.binary_cross_entropy(
        tp, torch.tensor(y), weight=torch.tensor(w), reduction=reduction).sum() * 1.5
    expected.backward()
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grads[0], tp.grad.numpy(), rtol=1e-9)


def test_retrace_warning_points_at_the_users_line():
    """docs/sharp_edges.rst: a function traced on most calls warns, at the user's call."""
    import numpy as np

    import tapegrad as tg
    from tapegrad.transforms import MAX_SIGNATURES

    @tg.jit
    def scaled(x, n):               # n is a Python int: static, so each value is a new tape
        return x * n

    with pytest.warns(RuntimeWarning, match="retraced on most calls") as record:
        for n in range(MAX_SIGNATURES + 2):
            scaled(np.ones(2), n)   # the line the warning names
    warning = [w for w in record if "retraced" in str(w.message)][0]
    assert warning.filename == __file__
    assert "scaled(np.ones(2), n)" in open(__file__).read().splitlines()[warning.lineno - 1]


# Docstrings of the public functions: arguments, returns and an example that runs (doctest).
# The contract's (ARCHITECTURE.md) names at the top level, then every public function and class
# of the modules below, found from their __all__ (or, without one, their own functions), so a
# public name added later is checked without editing this list.
PUBLIC_TOP = ("grad", "value_and_grad", "vmap", "make_tape", "jit", "jvp", "linearize", "vjp",
              "jacfwd", "jacrev", "jacobian", "hessian", "hvp", "checkpoint", "custom_vjp",
              "custom_jvp", "compile", "tensor", "ones", "zeros", "full", "randn", "rand",
              "arange", "linspace", "eye", "zeros_like", "ones_like", "full_like", "randn_like",
              "rand_like", "manual_seed", "cat", "stack", "where", "matmul", "no_grad",
              "enable_grad", "set_grad_enabled")
TENSOR_METHODS = ("backward", "item", "numpy", "requires_grad_", "retain_grad", "register_hook",
                  "detach", "size", "dim", "norm")
PUBLIC_MODULES = ("tapegrad.source", "tapegrad.autograd", "tapegrad.autograd.functional",
                  "tapegrad.func", "tapegrad.dask", "tapegrad.nn.functional", "tapegrad.optim")


def _public_names():
    import importlib
    import inspect
    names = [f"tapegrad.{n}" for n in PUBLIC_TOP] + ["tapegrad.cli.main"]
    names += [f"tapegrad.Tensor.{m}" for m in TENSOR_METHODS]
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        listed = getattr(module, "__all__", None) or [
            n for n, o in vars(module).items()
            if not n.startswith("_") and getattr(o, "__module__", None) == module_name]
        for n in listed:
            obj = getattr(module, n)
            exception = inspect.isclass(obj) and issubclass(obj, BaseException)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not exception:
                names.append(f"{module_name}.{n}")
    return sorted(set(names))


PUBLIC = _public_names()


def _resolve(name):
    """The object a user reaches as `name` (attributes first: tapegrad.tensor is a function)."""
    import importlib
    parts = name.split(".")
    obj = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], start=2):
        obj = getattr(obj, attr, None) or importlib.import_module(".".join(parts[:i]))
    return obj


@pytest.mark.parametrize("name", PUBLIC)
def test_public_function_docstrings_have_args_returns_and_a_running_example(name):
    import doctest
    import inspect
    if name.startswith("tapegrad.dask."):
        pytest.importorskip("dask.array")  # the optional extra runs its examples
    obj = _resolve(name)
    doc = inspect.getdoc(obj) or ""
    takes = [p for p in inspect.signature(obj).parameters if p != "self"]
    for section in ("Args:",) * bool(takes) + ("Returns:", "Example:"):
        assert f"\n{section}\n" in doc, f"{name}: no {section} section"
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
    assert tests and tests[0].examples, f"{name}: no >>> example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{name}: its example printed something else (see stdout)"
