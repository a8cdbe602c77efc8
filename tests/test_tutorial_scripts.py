"""PyTorch-tutorial-style scripts (examples/tutorials/) run unchanged but for their imports, with
tapegrad in PyTorch's place, and print what PyTorch prints: the same text, the same numbers to
float32 rounding (their weights start from fixed NumPy draws), and losses that fall."""
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "examples" / "tutorials"
RUN = TUTORIALS / "run.py"
SCRIPTS = ["tensors", "autograd_basics", "fit_polynomial", "classify_images", "word_ngram"]
TRAINING = {"fit_polynomial", "classify_images", "word_ngram"}
NUMBER = re.compile(r"-?\d+\.\d*(?:e[-+]?\d+)?|-?\d+(?:e[-+]?\d+)?")


def _run(script, *flags, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, str(RUN), str(script), *flags], capture_output=True,
                          text=True, env=env, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@functools.lru_cache(maxsize=None)
def _printout(name, use_torch=False):
    """A script's stdout, run once per session under each library."""
    return _run(TUTORIALS / f"{name}.py", *(["--torch"] if use_torch else []))


def _outputs(name):
    ours = _printout(name)
    pytest.importorskip("torch")
    return ours, _printout(name, use_torch=True)


def _skeleton(line):
    line = re.sub(r"0x[0-9a-f]+", "ADDR", line)
    return NUMBER.sub("#", line), [float(n) for n in NUMBER.findall(line)]


def _assert_same_printout(ours, theirs, rtol=2e-3, atol=1e-5):
    ours_lines, their_lines = ours.splitlines(), theirs.splitlines()
    assert len(ours_lines) == len(their_lines), (ours, theirs)
    for i, (a, b) in enumerate(zip(ours_lines, their_lines)):
        (text_a, nums_a), (text_b, nums_b) = _skeleton(a), _skeleton(b)
        assert text_a == text_b, f"line {i + 1}:\n  tapegrad: {a}\n  pytorch:  {b}"
        for x, y in zip(nums_a, nums_b):
            assert abs(x - y) <= atol + rtol * abs(y), f"line {i + 1}:\n  {a}\n  {b}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_prints_what_pytorch_prints(name):
    ours, theirs = _outputs(name)
    _assert_same_printout(ours, theirs)


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_training_scripts_lower_their_loss(name):
    # each run of consecutive "loss" lines is one training phase; its value is the first
    # decimal number on the line ("loss 299 38.75", "loss: 1.0936  [ 80/192]")
    phases, current = [], []
    for line in _printout(name).splitlines() + [""]:
        if line.startswith("loss"):
            current.append(float(re.search(r"-?\d+\.\d+(?:e[-+]?\d+)?", line).group()))
        elif current:
            phases.append(current)
            current = []
    phases = [p for p in phases if len(p) >= 3]
    assert phases, "no training printed"
    for losses in phases:
        assert losses[-1] < losses[0], losses


def test_the_runner_rewrites_imports_and_blocks_pytorch(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
        "from torch import optim\nfrom torch.utils.data import DataLoader, TensorDataset\n"
        "import torch.autograd as autograd\nfrom torch.autograd import Variable\n"
        "import torch.optim\n"
        "print(torch.__name__, nn.__name__, F.__name__, optim.__name__, autograd.__name__)\n"
        "import importlib\n"
        "try:\n    importlib.import_module('torch')\nexcept ImportError:\n"
        "    print('real torch blocked')\n")
    out = _run(script, cwd=tmp_path)
    assert out.splitlines() == [
        "tapegrad tapegrad.nn tapegrad.nn.functional tapegrad.optim tapegrad.autograd",
        "real torch blocked"]


def test_rewrite_touches_only_import_lines():
    sys.path.insert(0, str(TUTORIALS))
    try:
        from run import rewrite_imports
    finally:
        sys.path.remove(str(TUTORIALS))
    source = ("import torch\n    import torch.nn as nn  # indented\nx = 'import torch'\n"
              "from torch.utils.data import DataLoader\nimport torchvision\n"
              "import numpy as np, torch, torch.nn.functional as F\nimport torch.optim\n")
    assert rewrite_imports(source) == (
        "import tapegrad as torch\n    import tapegrad.nn as nn\nx = 'import torch'\n"
        "from tapegrad.utils.data import DataLoader\nimport torchvision\n"
        "import numpy as np, tapegrad as torch, tapegrad.nn.functional as F\n"
        "import tapegrad.optim, tapegrad as torch\n")
