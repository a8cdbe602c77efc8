"""Run a PyTorch script with tapegrad in PyTorch's place, unchanged but for its imports.

    python examples/tutorials/run.py SCRIPT.py            # `import torch` becomes tapegrad
    python examples/tutorials/run.py SCRIPT.py --torch    # the real PyTorch, for comparison

Only import lines are rewritten (`import torch` -> `import tapegrad as torch`, `from torch.X
import Y` -> `from tapegrad.X import Y`, ...); the real torch package is blocked, so nothing in
the script can reach it by accident.
"""
import os
import re
import runpy
import sys
import types


def _rewrite_import_list(items):
    """`torch, torch.nn as nn` -> `tapegrad as torch, tapegrad.nn as nn` (None: no torch)."""
    out, binds_torch, touched = [], False, False
    for item in items.split(","):
        m = re.match(r"\s*torch(\.[\w.]+)?(?:\s+as\s+(\w+))?\s*$", item)
        if not m:
            out.append(item.strip())
            continue
        touched = True
        sub, alias = m.group(1) or "", m.group(2)
        if alias:
            out.append(f"tapegrad{sub} as {alias}")
        elif sub:   # `import torch.nn` binds `torch`, as Python does
            out.append(f"tapegrad{sub}")
            binds_torch = True
        else:
            out.append("tapegrad as torch")
    if not touched:
        return None
    if binds_torch and "tapegrad as torch" not in out:
        out.append("tapegrad as torch")
    return ", ".join(out)


def rewrite_imports(source):
    """The script with every torch import line pointed at tapegrad (the rest is untouched)."""
    lines = []
    for line in source.splitlines():
        code = line.lstrip()
        indent = line[:len(line) - len(code)]
        plain = re.match(r"import\s+([\w.]+(?:\s+as\s+\w+)?(?:\s*,\s*[\w.]+(?:\s+as\s+\w+)?)*)"
                         r"\s*(#.*)?$", code)
        if plain:
            items = _rewrite_import_list(plain.group(1))
            if items is not None:
                line = f"{indent}import {items}"
        elif re.match(r"from torch(\.[\w.]+)?\s+import\s", code):
            line = indent + "from tapegrad" + code[len("from torch"):]
        lines.append(line)
    return "\n".join(lines) + "\n"


def run(path, use_torch=False):
    if use_torch:
        runpy.run_path(path, run_name="__main__")
        return
    with open(path) as f:
        code = compile(rewrite_imports(f.read()), path, "exec")
    sys.modules["torch"] = None   # `import torch` anywhere now fails loudly
    # the script is __main__, as under `python SCRIPT`: its classes pickle (torch.save(model))
    main = types.ModuleType("__main__")
    main.__file__ = path
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    try:
        import tapegrad  # noqa: F401
    except ImportError:   # run from a checkout that is not installed
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
    use_torch = "--torch" in sys.argv[2:]
    script = os.path.abspath(sys.argv[1])
    sys.argv = [script] + [a for a in sys.argv[2:] if a != "--torch"]
    run(script, use_torch)
