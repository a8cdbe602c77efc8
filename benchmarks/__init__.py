"""Side-by-side benchmarks of tapegrad against its peers and hand-written gradients.

Run `python -m benchmarks [--quick] [--out DIR] [--only NAME...]` or `tapegrad bench`, which
calls `main(argv)`. Layout: harness.py (workload/implementation types, checking, timing),
frameworks.py (every peer and tapegrad face, derived from a workload's function),
kernels.py (hand-written Numba yardsticks), workloads/ (one module per workload and the
registry), machine.py and report.py (what is printed and saved). Importing this package
imports neither numba nor any peer: each implementation imports what it needs at setup.
"""
from .cli import DESCRIPTION, add_arguments, main, run

__all__ = ["DESCRIPTION", "add_arguments", "main", "run"]
