"""Packages: tapegrad and tapegrad_jit as found; benchmarks/ and examples/ of this repository are
installed as tapegrad_benchmarks and tapegrad_examples so that no top-level `benchmarks` package
lands in site-packages (everything else is in setup.cfg)."""
from setuptools import find_packages, setup

RENAMED = {"tapegrad_benchmarks": "benchmarks", "tapegrad_examples": "examples"}

packages = find_packages(include=["tapegrad", "tapegrad.*", "tapegrad_jit", "tapegrad_jit.*"])
package_dir = {}
for name, folder in RENAMED.items():
    for sub in [""] + find_packages(where=folder):
        packages.append(name + ("." + sub if sub else ""))
        package_dir[packages[-1]] = folder + ("/" + sub.replace(".", "/") if sub else "")

setup(packages=packages, package_dir=package_dir)
