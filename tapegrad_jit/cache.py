"""On-disk cache of generated code and of its machine code, private to one user.

Entries are Python modules (generated Numba kernels) in a per-user directory; Numba's `cache=True`
machine code for their functions goes to its `__pycache__`. Nothing there is trusted as found:

- The directory and its `__pycache__` must belong to this user and be writable by no one else;
  every parent must belong to this user or root and not be world-writable (unless sticky, as /tmp
  is). Otherwise tapegrad warns once and runs uncached: entries go to a fresh private temporary
  directory and no machine code is loaded or kept. tapegrad never changes the mode of a directory.
- Every file read must be a regular file of this user, writable by no one else, with the expected
  content: a source entry must equal the text tapegrad would write (its name and header carry a hash
  of its content and of the tapegrad, Numba and Python versions); machine code is stored in
  tapegrad's own sealed format (a SHA-256 digest over the payload, which names the function and
  signature it holds) instead of Numba's index files, so a planted, truncated or flipped `.nbi`,
  `.nbc` or `.pyc` is never unpickled. Modules are executed from tapegrad's own text, never from
  bytecode found on disk.
- Anything unreadable or invalid is a miss: the entry is rebuilt and rewritten. Files are written
  to a temporary name and renamed into place, and machine code is stored one file per signature, so
  processes compiling at once never leave a half-written or mismatched file.
"""
import atexit
import errno
import hashlib
import inspect
import os
import pickle
import shutil
import stat
import sys
import tempfile
import threading
import types
import warnings

_HEADER = "# tapegrad generated code; key "
_SEAL = b"tapegrad sealed numba code 1\n"
_lock = threading.RLock()
_loaded = {}          # entry key -> module
_stores = {}          # requested cache directory -> _Store serving it
_entries = {}         # path of an entry's source file -> (its _Store, its key)
_warned = set()


def versions():
    import numba
    import tapegrad
    return (f"tapegrad {getattr(tapegrad, '__version__', '?')}; numba {numba.__version__}; "
            f"python {sys.version.split()[0]}")


def key_of(source):
    return hashlib.sha256((versions() + "\n" + source).encode()).hexdigest()


def _entry_text(key, source):
    body_hash = hashlib.sha256(source.encode()).hexdigest()
    return f"{_HEADER}{key} body {body_hash}\n{source}"


def _warn_once(reason, message):
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------------
# Directories
# ---------------------------------------------------------------------------------------------

def requested_dir():
    """The cache directory asked for: TAPEGRAD_CACHE_DIR, else $XDG_CACHE_HOME/tapegrad, else
    ~/.cache/tapegrad."""
    root = os.environ.get("TAPEGRAD_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "tapegrad")
    return os.path.abspath(root)


def _private(info, parent=False):
    """Why a directory with this lstat is unsafe to load from, or None when it is safe. A parent
    may be group-writable (a umask of 002 makes ~/.cache so) or world-writable and sticky (/tmp):
    files are checked one by one, so who can rename entries there cannot make one load."""
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid not in (os.getuid(), 0):
        return f"belongs to another user (uid {info.st_uid})"
    writers = 0o002 if parent else 0o022
    if info.st_mode & writers and not (parent and info.st_mode & stat.S_ISVTX):
        return f"is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _refuse_writes(path):
    """Raise PermissionError unless this user may write in directory path. The owner's write bit
    counts even for root: a directory its owner made read-only is not written into."""
    info = os.stat(path)
    if not os.access(path, os.W_OK) or (info.st_uid == os.getuid()
                                         and not info.st_mode & stat.S_IWUSR):
        raise PermissionError(errno.EACCES, "Permission denied", path)


def _make_private_dir(path):
    """Create path (and missing parents) as 0700 directories; an existing one is left as it is."""
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    if missing:
        _refuse_writes(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:       # made by another process meanwhile: checked below
            pass


def _check_dir(path):
    """None when code may be loaded from directory `path`, else the reason it may not."""
    info = os.lstat(path)
    reason = "is a symbolic link" if stat.S_ISLNK(info.st_mode) else _private(info)
    if reason is None and info.st_uid != os.getuid():
        reason = f"belongs to another user (uid {info.st_uid})"
    if reason is not None:
        return reason
    # every parent: nobody else may rename or replace what is below it
    parent = os.path.dirname(os.path.realpath(path))
    while True:
        reason = _private(os.stat(parent), parent=True)
        if reason is not None:
            return f"has a parent {parent} that {reason}"
        if parent == os.path.dirname(parent):
            return None
        parent = os.path.dirname(parent)


class _Store:
    """Where entries go: a private persistent directory, or a private temporary one (uncached)."""

    def __init__(self, root, persistent):
        self.root = root
        self.persistent = persistent
        self.numba_dir = os.path.join(root, "__pycache__")


def _open_store(root):
    """The store for the requested directory `root`: persistent when root is safe and writable."""
    try:
        _make_private_dir(root)
        root = os.path.realpath(root)      # a link to a private directory is that directory
        reason = _check_dir(root)
        if reason is None:
            _make_private_dir(os.path.join(root, "__pycache__"))
            reason = _check_dir(os.path.join(root, "__pycache__"))
            if reason is not None:
                reason = "__pycache__ " + reason
        if reason is None:
            for directory in (root, os.path.join(root, "__pycache__")):
                _refuse_writes(directory)
                tempfile.TemporaryFile(dir=directory).close()
            return _Store(root, True)
    except OSError as exc:
        reason = f"cannot be used ({exc.strerror or exc})"
    _warn_once(("dir", root), f"tapegrad: the cache directory {root} {reason}; running without "
               "the disk cache (generated code is compiled in every process). Set "
               "TAPEGRAD_CACHE_DIR to a directory that only you can write, or fix this one "
               "(chmod 700, owned by you).")
    return _temporary_store()


_temporary = []


def _temporary_store():
    if not _temporary:
        root = tempfile.mkdtemp(prefix="tapegrad-uncached-")
        atexit.register(shutil.rmtree, root, True)
        _temporary.append(_Store(root, False))
    return _temporary[0]


def store():
    """The _Store for the current environment (decided once per requested directory)."""
    root = requested_dir()
    with _lock:
        found = _stores.get(root)
        if found is None:
            found = _stores[root] = _open_store(root)
        return found


def cache_dir():
    """The directory generated code is stored in now (a private temporary one when uncached)."""
    return store().root


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def _read_own(path):
    """The bytes of path when it is a regular file of this user that nobody else can write."""
    try:
        # no link is followed; a planted FIFO does not block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & 0o022):
            return None
        try:
            return handle.read()
        except OSError:
            return None


def _write_atomically(path, data):
    """Write bytes to path so that readers see the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class _SealedFile:
    """Stands in for Numba's index and data files (IndexDataCacheFile) of one function: one file
    per signature, named by a hash of Numba's key, holding a SHA-256 digest and then the pickled
    (entry key, Numba's key, Numba's payload). A file is unpickled only after its owner, mode and
    digest are checked; any failure is a miss, and the recompiled code replaces the file."""

    def __init__(self, directory, base, stamp, dump):
        self.directory, self.base, self.stamp, self.dump = directory, base, stamp, dump

    def _path(self, key_text):
        digest = hashlib.sha256(key_text.encode()).hexdigest()[:20]
        return os.path.join(self.directory, f"{self.base}.{digest}.nbc")

    def load(self, key):
        key_text = repr(key)
        data = _read_own(self._path(key_text))
        if data is None or not data.startswith(_SEAL):
            return None
        digest, body = data[len(_SEAL):len(_SEAL) + 32], data[len(_SEAL) + 32:]
        if hashlib.sha256(body).digest() != digest:
            return None
        try:
            stamp, stored_key, payload = pickle.loads(body)
            if stamp != self.stamp or stored_key != key_text:
                return None
            return pickle.loads(payload)
        except Exception:       # noqa: BLE001 - whatever fails to unpickle is a miss
            return None

    def save(self, key, data):
        key_text = repr(key)
        body = pickle.dumps((self.stamp, key_text, self.dump(data)), protocol=4)
        _write_atomically(self._path(key_text), _SEAL + hashlib.sha256(body).digest() + body)

    def flush(self):
        pass


def _guarded(method, name, what):
    def call(*args):
        try:
            return method(*args)
        except Exception as exc:     # noqa: BLE001 - a cache fault must never stop a computation
            _warn_once(("io", what), f"tapegrad: could not {what} the disk cache for {name} "
                       f"({type(exc).__name__}: {exc}); compiling instead")
            return None
    return call


def seal(dispatcher):
    """Make a Numba dispatcher of a cached entry read and write only sealed, checked files (or
    nothing, when uncached or when its cache is not the kind this module knows). Returns it."""
    cache = getattr(dispatcher, "_cache", None)
    if cache is None or not hasattr(cache, "_cache_file"):
        return dispatcher                 # cache=False: Numba keeps nothing on disk
    try:
        path = inspect.getfile(dispatcher.py_func)
        entry = _entries.get(path)
        base = cache._impl.filename_base
        dump = cache._cache_file._dump
    except (AttributeError, TypeError):
        entry = None
    if entry is None or not entry[0].persistent:
        cache.disable()
        return dispatcher
    store, key = entry
    cache._cache_file = _SealedFile(store.numba_dir, base, key, dump)
    name = getattr(dispatcher.py_func, "__qualname__", "?")
    cache.load_overload = _guarded(cache.load_overload, name, "read")
    cache.save_overload = _guarded(cache.save_overload, name, "write")
    return dispatcher


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------

def _place_entry(store_, name, text):
    """The path of a valid entry file for text in store_ (written when missing or invalid)."""
    path = os.path.join(store_.root, name + ".py")
    data = text.encode("utf-8")
    if _read_own(path) != data:
        _write_atomically(path, data)
    return path


def load_module(prefix, source):
    """The module of generated `source`, from the cache (written there first on a miss); its
    Numba functions keep their machine code in sealed files (see the module docstring)."""
    key = key_of(source)
    with _lock:
        module = _loaded.get(key)
        if module is not None:
            return module
        name = f"{prefix}_{key[:24]}"
        text = _entry_text(key, source)
        chosen = store()
        try:
            path = _place_entry(chosen, name, text)
        except OSError as exc:
            _warn_once(("entry", chosen.root), f"tapegrad: cannot write to the cache directory "
                       f"{chosen.root} ({exc.strerror or exc}); running without the disk cache")
            chosen = _temporary_store()
            path = _place_entry(chosen, name, text)
        _entries[path] = (chosen, key)
        module_name = f"tapegrad_jit._cached.{name}"
        module = types.ModuleType(module_name)
        module.__file__ = path
        # Numba's cached code refers to its module by name when loaded
        sys.modules[module_name] = module
        # executed from this text, never from a file's bytecode
        exec(compile(text, path, "exec"), module.__dict__)
        for value in list(vars(module).values()):
            if hasattr(value, "py_func") and hasattr(value, "_cache"):
                seal(value)
        _loaded[key] = module
        return module


def _blob_path(kind, key):
    return os.path.join(store().numba_dir, f"{kind}-{key[:40]}.bin")


def read_blob(kind, key):
    """Bytes stored by write_blob under (kind, key), or None: missing, not this user's own file,
    or not sealed with this key (a SHA-256 digest over the key and the bytes leads the file)."""
    found = _read_own(_blob_path(kind, key))
    if found is None or len(found) < 32:
        return None
    digest, data = found[:32], found[32:]
    return data if hashlib.sha256(key.encode() + data).digest() == digest else None


def write_blob(kind, key, data):
    """Keep bytes (machine code that is not Numba's, e.g. straight.py's) under (kind, key);
    a failure to write leaves the cache without it."""
    try:
        _write_atomically(_blob_path(kind, key),
                          hashlib.sha256(key.encode() + data).digest() + data)
    except OSError:
        pass


def loaded_modules():
    """The generated modules this process has loaded (one per distinct source)."""
    with _lock:
        return list(_loaded.values())
