"""Scripts a newcomer runs, one per face: the seed tutorial (PyTorch's autograd tutorial, run
with `import tapegrad as torch`), traced_energy.py (a compiled tape) and source_pendulum.py
(emitted gradient source), and model.py, the functions of the CLI examples.

Installed as the package `tapegrad_examples`, so that `tapegrad demo` finds them in any install;
tests/test_examples.py runs every script here.
"""
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
SEED_TUTORIAL = FOLDER / "seed_tutorial.py"
SEED_EXPECTED = FOLDER / "expected_output_torch.txt"   # what PyTorch 2.x prints, addresses aside
MODEL = FOLDER / "model.py"
