"""The CUDA tests run where kernels can run: on Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1 set
before numba is imported, as .ci/test does in its own process) or on a real NVIDIA GPU. Elsewhere,
including the main `pytest tests` run on a machine without a GPU, they are skipped with the reason;
the plan tests (plain Python) run everywhere."""
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # samples.py

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"


def _kernels_can_run():
    if SIMULATOR:
        return True
    if shutil.which("nvidia-smi") is None:
        return False             # no driver: do not import numba.cuda at all
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:            # numba-cuda missing or a broken driver
        return False


READY = _kernels_can_run()
HERE = os.path.dirname(os.path.abspath(__file__))
PLAIN_PYTHON = ("test_cuda_plan.py",)


def pytest_collection_modifyitems(config, items):
    if READY:
        return
    skip = pytest.mark.skip(reason="no CUDA GPU here: set NUMBA_ENABLE_CUDASIM=1 to run these "
                                   "on Numba's CUDA simulator (pip install -e '.[cuda]')")
    for item in items:
        path = os.path.abspath(str(item.fspath))
        if os.path.dirname(path) == HERE and os.path.basename(path) not in PLAIN_PYTHON:
            item.add_marker(skip)
