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


def rewrite_imports(source):
    """The script with every torch import line pointed at tapegrad (the rest is untouched)."""
    lines = []
    for line in source.splitlines():
        code = line.lstrip()
        indent = line[:len(line) - len(code)]
        plain = re.match(r"import torch(\.[\w.]+)?(\s+as\s+(\w+))?\s*(#.*)?$", code)
        if plain:
            sub, alias = plain.group(1) or "", plain.group(3)
            if alias:
                line = f"{indent}import tapegrad{sub} as {alias}"
            elif sub:   # `import torch.nn` binds `torch`, as Python does
                line = f"{indent}import tapegrad{sub}; import tapegrad as torch"
            else:
                line = f"{indent}import tapegrad as torch"
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
