"""The CUDA tests run where kernels can run (see cuda_ready.py); elsewhere, including the main
`pytest tests` run on a machine without a GPU, test_cuda.py skips as a whole with the reason, and
the plan tests (plain Python) run everywhere."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # samples.py
