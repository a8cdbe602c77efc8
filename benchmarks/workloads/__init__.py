"""The registry: every workload, in the order the report shows them.

To add a workload, write a module here that defines a `Workload` (see harness.py and any module
below for the pattern) and list it in WORKLOADS.
"""
from . import (batched, call_overhead, dask_cluster, element_loop, gpu_rosenbrock, mlp, ode,
               rosenbrock, scalar_graph, scalar_graph_variants, seed, training)

WORKLOADS = [
    seed.WORKLOAD,
    call_overhead.WORKLOAD,
    *scalar_graph.WORKLOADS,
    *scalar_graph_variants.WORKLOADS,
    rosenbrock.WORKLOAD,
    mlp.WORKLOAD,
    ode.WORKLOAD,
    *element_loop.WORKLOADS,
    *batched.WORKLOADS,
    gpu_rosenbrock.WORKLOAD,
    *dask_cluster.WORKLOADS,
    *training.WORKLOADS,
]
