"""On-disk cache of generated code, shared by the processes of one user.

Entries are Python modules (generated Numba kernels); Numba's own `cache=True` then stores their
machine code beside them, so a new process imports a module and loads compiled code without
compiling. An entry's name and header carry a hash of its content and of the tapegrad, Numba and
Python versions; it is written to a temporary file and renamed into place, so a reader sees a whole
entry or none, and two processes writing the same entry at once write the same bytes. An entry that is
truncated, corrupt, from other versions or owned by another user is a miss and is rebuilt.
"""
import hashlib
import importlib.util
import os
import sys
import tempfile
import threading

_HEADER = "# tapegrad generated code; key "
_lock = threading.Lock()
_loaded = {}


def versions():
    import numba
    import tapegrad
    return (f"tapegrad {getattr(tapegrad, '__version__', '?')}; numba {numba.__version__}; "
            f"python {sys.version.split()[0]}")


def cache_dir():
    """The per-user cache directory, created private (0700); TAPEGRAD_CACHE_DIR overrides it."""
    root = os.environ.get("TAPEGRAD_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "tapegrad")
    os.makedirs(root, mode=0o700, exist_ok=True)
    info = os.stat(root)
    if info.st_uid != os.getuid():
        raise PermissionError(f"tapegrad: cache directory {root} belongs to another user; set "
                              "TAPEGRAD_CACHE_DIR to a directory of your own")
    if info.st_mode & 0o077:
        os.chmod(root, 0o700)     # never load code that other users could have written
    return root


def key_of(source):
    return hashlib.sha256((versions() + "\n" + source).encode()).hexdigest()


def _entry_text(key, source):
    body_hash = hashlib.sha256(source.encode()).hexdigest()
    return f"{_HEADER}{key} body {body_hash}\n{source}"


def _valid(path, key, source):
    """True when the file at path is exactly the entry for key, written by this user."""
    try:
        info = os.stat(path)
        if info.st_uid != os.getuid():
            return False
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return False
    return text == _entry_text(key, source)


def _write_atomically(path, text):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_module(prefix, source):
    """Import generated `source` from the cache (writing it there first on a miss)."""
    key = key_of(source)
    with _lock:
        module = _loaded.get(key)
        if module is not None:
            return module
        name = f"{prefix}_{key[:24]}"
        path = os.path.join(cache_dir(), name + ".py")
        if not _valid(path, key, source):
            _write_atomically(path, _entry_text(key, source))
        module_name = f"tapegrad_jit._cached.{name}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        # Numba's disk cache re-imports a function's module by name when it loads machine code
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _loaded[key] = module
        return module
