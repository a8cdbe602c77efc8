"""Rosenbrock at n = 1e7 as an array tape on the GPU, value+grad, float64.

tapegrad's jit(value_and_grad, device="cuda") (fused elementwise kernels, a block reduction,
gathers and scatter-adds for the shifted slices) against JAX jit on the same GPU; inputs live on
the device for both. Only where an NVIDIA GPU is present.
"""
from ..frameworks import gpu_available, standard
from ..harness import Skip, Workload
from .rosenbrock import build


def build_gpu(n):
    if not gpu_available():
        raise Skip("no CUDA GPU here")
    return build(n)


WORKLOAD = Workload(
    name="gpu_rosenbrock",
    title="Rosenbrock, value+grad, GPU array tape",
    build=build_gpu,
    sizes={"full": 10_000_000, "quick": 100_000},
    # the PyTorch GPU peer of standard(gpu=True) is vmap(grad), for batched workloads only
    impls=[impl for impl in standard(gpu=True) if "vmap" not in impl.name],
    yardsticks=("JAX jit GPU",),
    dtype="float64",
    target="tapegrad jit CUDA against JAX jit on the same GPU",
    rtol=1e-9,
    atol=1e-12,
)
