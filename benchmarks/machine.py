"""A description of the machine and the software versions, for the report."""
import os
import platform
import shutil
import subprocess
from importlib import metadata

PACKAGES = ("numpy", "numba", "numba-cuda", "torch", "jax", "jaxlib", "autograd", "tangent-ad",
            "tapegrad")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_model():
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def version(package):
    # Read from the installed metadata, so describing the machine imports nothing heavy.
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe():
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        # Load when the run started: other work on the machine widens the spread.
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "gpu": gpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in PACKAGES},
    }


def summary(machine):
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    gpu = machine["gpu"] or "no GPU"
    load = machine["load_avg_1min"]
    load = "" if load is None else f", load {load:.1f} at start"
    return (f"{machine['cpu']}, {machine['usable_cores']} of {machine['cores']} cores, {gpu}"
            f"{load}; Python {machine['python']}; {versions}")
