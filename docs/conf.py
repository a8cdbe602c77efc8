"""Sphinx configuration: the API reference comes from the docstrings (autodoc + napoleon, Google
style); the tables of supported functions are generated from tapegrad's own tables at build time
(_ext/tapegrad_tables.py). CI builds with warnings as errors: sphinx-build -W docs build/docs."""
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))          # document this checkout's tapegrad
sys.path.insert(0, str(DOCS / "_ext"))

import tapegrad  # noqa: E402

project = "tapegrad"
author = "the tapegrad authors"
copyright = "the tapegrad authors, MIT licence"
release = version = tapegrad.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "tapegrad_tables"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
