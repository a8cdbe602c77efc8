"""Whether CUDA kernels can run in this process: on Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1
set before numba is imported, as .ci/test does in its own process) or on a real NVIDIA GPU."""
import os
import shutil

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"
SKIP_REASON = ("no CUDA GPU here: set NUMBA_ENABLE_CUDASIM=1 to run these on Numba's CUDA "
               "simulator (pip install -e '.[cuda]')")


def kernels_can_run():
    if SIMULATOR:
        return True
    if shutil.which("nvidia-smi") is None:
        return False             # no driver: do not import numba.cuda at all
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:            # numba-cuda missing or a broken driver
        return False


READY = kernels_can_run()
