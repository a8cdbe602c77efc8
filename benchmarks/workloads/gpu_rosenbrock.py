"""Rosenbrock at n = 1e7 as an array tape on the GPU, value+grad, float64.

tapegrad's jit(value_and_grad, device="cuda") (fused elementwise kernels, a block reduction, device
views for the shifted slices and one-pass adds for their adjoints) against the GPU peers; inputs
live on the device. Only where an NVIDIA GPU is present.
"""
from ..frameworks import gpu_only, standard
from ..harness import Workload
from .rosenbrock import build


WORKLOAD = Workload(
    name="gpu_rosenbrock",
    title="Rosenbrock, value+grad, GPU array tape",
    build=gpu_only(build),
    sizes={"full": 10_000_000, "quick": 100_000},
    impls=standard(gpu=True),
    yardsticks=("JAX jit GPU",),
    dtype="float64",
    target="tapegrad jit CUDA against JAX jit on the same GPU",
    rtol=1e-9,
    atol=1e-12,
)
