"""The disk cache under attack and under faults: planted, truncated and flipped files, directories
other users can write, unwritable and missing directories, processes compiling at once.

Every run is a fresh subprocess with its own cache directory (TAPEGRAD_CACHE_DIR or
XDG_CACHE_HOME); it reports what it computed, how many compiled functions Numba loaded from the
cache (hits) and the warnings tapegrad gave. A planted file that is loaded runs code that creates
a marker file.
"""
import importlib.util
import json
import os
import pickle
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap

import pytest

pytest.importorskip("numba")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KERNEL = textwrap.dedent('''
    from numba import njit

    @njit(cache=True)
    def poly(x):
        return x * x + 3 * x
''')

# one load of the kernel, called with several signatures; a JSON line of what happened
RUN = textwrap.dedent('''
    import json, os, sys, time, warnings
    import numpy as np
    warnings.simplefilter("always")
    go = os.environ.get("GO_FILE")
    while go and not os.path.exists(go):
        time.sleep(0.002)
    with warnings.catch_warnings(record=True) as caught:
        from tapegrad_jit import cache
        module = cache.load_module("safety_kernel", KERNEL)
        args = [("f64", 2.0), ("int", 7), ("f32[]", np.arange(3, dtype=np.float32))]
        if os.environ.get("REVERSED"):
            args = args[::-1]
        results = {label: np.asarray(module.poly(a)).tolist() for label, a in args}
        hits = sum(module.poly.stats.cache_hits.values())
    print(json.dumps({"results": results, "hits": hits, "root": cache.cache_dir(),
                      "warnings": [str(w.message) for w in caught
                                   if "tapegrad" in str(w.message)]}))
''').replace("KERNEL", repr(KERNEL))

EXPECTED = {"f64": 10.0, "int": 70, "f32[]": [0.0, 4.0, 10.0]}


def _env(**overrides):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TAPEGRAD_CACHE_DIR", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def run(cache_dir=None, script=RUN, **env):
    """Run script in a fresh process with cache_dir as TAPEGRAD_CACHE_DIR; its JSON report."""
    if cache_dir is not None:
        env["TAPEGRAD_CACHE_DIR"] = cache_dir
    done = subprocess.run([sys.executable, "-c", script], env=_env(**env), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if "results" in report:
        assert report["results"] == EXPECTED
    return report


def spawn(cache_dir, **env):
    env = _env(TAPEGRAD_CACHE_DIR=cache_dir, **env)
    return subprocess.Popen([sys.executable, "-c", RUN], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


N_SIGNATURES = 3


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


def _populated(cache_dir):
    report = run(cache_dir)
    assert report["hits"] == 0 and not report["warnings"]
    assert run(cache_dir)["hits"] == N_SIGNATURES     # the cache works before it is damaged
    return report


def _entry(cache_dir):
    [name] = [n for n in os.listdir(cache_dir) if n.startswith("safety_kernel_")]
    return os.path.join(cache_dir, name)


def _machine_code(cache_dir, sealed_only=False):
    """Numba's cached machine code (and index) files of the cache, or tapegrad's sealed ones."""
    pattern = r"\.[0-9a-f]{20}\.nbc$" if sealed_only else r"\.nb[ci]$"
    pycache = os.path.join(cache_dir, "__pycache__")
    names = os.listdir(pycache) if os.path.isdir(pycache) else []
    return sorted(os.path.join(pycache, n) for n in names if re.search(pattern, n))


class _Evil:
    """Unpickling this creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('planted code ran')",)


def _plant_all(cache_dir, marker, directory=None):
    """Plant, as Numba and Python would name them, an index, data files, and bytecode for the
    entry, each running code when loaded. Written into `directory` first when given (for copying
    in as another user). Returns (planted file, destination) pairs."""
    evil = pickle.dumps(_Evil(marker))
    pycache = os.path.join(cache_dir, "__pycache__")
    staging = directory or pycache
    # Numba names a function's files <module>.<function>-<first line>.py<version>
    entry = _entry(cache_dir)
    with open(entry) as handle:
        first_line = 1 + handle.read().splitlines().index("@njit(cache=True)")
    base = (f"{os.path.basename(entry)[:-3]}.poly-{first_line}"
            f".py{sys.version_info[0]}{sys.version_info[1]}")
    names = [base + ".nbi", base + ".1.nbc"] + [os.path.basename(p) for p in _machine_code(
        cache_dir) if not p.endswith((".nbi", ".1.nbc"))]
    planted = []
    for name in names:
        source = os.path.join(staging, name)
        with open(source, "wb") as handle:
            handle.write(evil + evil if name.endswith(".nbi") else evil)
        planted.append((source, os.path.join(pycache, name)))
    # bytecode Python would run without looking at the source (unchecked hash-based .pyc)
    evil_source = os.path.join(staging, "evil_source.py")
    with open(evil_source, "w") as handle:
        handle.write(f"open({marker!r}, 'w').write('planted bytecode ran')\n"
                     "from numba import njit\n\n@njit\ndef poly(x):\n    return -1.0\n")
    pyc = importlib.util.cache_from_source(_entry(cache_dir))
    staged_pyc = os.path.join(staging, os.path.basename(pyc))
    py_compile.compile(evil_source, cfile=staged_pyc, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    planted.append((staged_pyc, pyc))
    return planted


# ---------------------------------------------------------------------------------------------
# Planted files
# ---------------------------------------------------------------------------------------------

def test_planted_index_data_and_bytecode_never_run(cache_dir, tmp_path):
    _populated(cache_dir)
    marker = str(tmp_path / "marker")
    _plant_all(cache_dir, marker)
    report = run(cache_dir)
    assert not os.path.exists(marker)
    assert report["hits"] == 0 and not report["warnings"]     # rebuilt, quietly
    assert run(cache_dir)["hits"] == N_SIGNATURES              # and stored again
    assert not os.path.exists(marker)


def test_planted_files_in_numba_cache_dir_never_run(cache_dir, tmp_path):
    # with NUMBA_CACHE_DIR set, Numba itself would look for the entry's files there
    from numba.core.caching import _CacheLocator
    numba_dir = str(tmp_path / "numba_cache")
    assert run(cache_dir, NUMBA_CACHE_DIR=numba_dir)["hits"] == 0
    marker = str(tmp_path / "marker")
    where = os.path.join(numba_dir, _CacheLocator.get_suitable_cache_subpath(_entry(cache_dir)))
    os.makedirs(where, exist_ok=True)
    planted = _plant_all(cache_dir, marker, directory=where)
    for source, _ in planted:                  # leave them in NUMBA_CACHE_DIR only
        assert os.path.dirname(source) == where
    report = run(cache_dir, NUMBA_CACHE_DIR=numba_dir)
    assert not os.path.exists(marker) and report["hits"] == N_SIGNATURES


def test_planted_source_is_replaced_not_run(cache_dir, tmp_path):
    _populated(cache_dir)
    marker = str(tmp_path / "marker")
    entry = _entry(cache_dir)
    with open(entry) as handle:
        text = handle.read()
    header = text.splitlines(True)[0]
    with open(entry, "w") as handle:
        handle.write(header + f"open({marker!r}, 'w').write('planted source ran')\n"
                     + text[len(header):].replace("3 * x", "4 * x"))
    run(cache_dir)
    assert not os.path.exists(marker)
    with open(entry) as handle:
        assert handle.read() == text


@pytest.mark.parametrize("damage", ["foreign_owner", "group_writable", "symlink", "fifo"])
def test_machine_code_of_another_owner_or_mode_is_a_miss(cache_dir, tmp_path, damage):
    if damage == "foreign_owner" and os.getuid() != 0:
        pytest.skip("needs root to give a file to another user")
    _populated(cache_dir)
    files = _machine_code(cache_dir)
    for path in files:
        if damage == "foreign_owner":
            os.chown(path, 65534, 65534)
        elif damage == "group_writable":
            os.chmod(path, 0o666)
        elif damage == "symlink":
            target = str(tmp_path / os.path.basename(path))
            shutil.copy(path, target)
            os.unlink(path)
            os.symlink(target, path)
        else:
            os.unlink(path)
            os.mkfifo(path)
    assert run(cache_dir)["hits"] == 0
    for path in files:
        info = os.lstat(path)
        assert stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid()
        assert not info.st_mode & 0o077                      # rebuilt, private
    assert run(cache_dir)["hits"] == N_SIGNATURES


def _su_available():
    return os.getuid() == 0 and shutil.which("su") and subprocess.run(
        ["su", "nobody", "-s", "/bin/sh", "-c", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _su_available(), reason="needs root and `su nobody` to act as another user")
def test_files_another_user_planted_while_the_directory_was_open_are_never_loaded():
    # outside pytest's private tmp directory, so that `nobody` can reach the cache
    base = tempfile.mkdtemp(prefix="tapegrad-attack-")
    try:
        os.chmod(base, 0o755)
        cache_dir = os.path.join(base, "cache")
        staging = os.path.join(base, "staging")
        os.mkdir(staging)
        os.chmod(staging, 0o755)
        marker = os.path.join(base, "marker")
        _populated(cache_dir)
        planted = _plant_all(cache_dir, marker, directory=staging)
        for path in [p for p, _ in planted]:
            os.chmod(path, 0o644)
        pycache = os.path.join(cache_dir, "__pycache__")
        for directory in (cache_dir, pycache):
            os.chmod(directory, 0o777)                # the directories were once open to all
        commands = " && ".join(f"cp {src} {dst}.new && mv -f {dst}.new {dst}"
                               for src, dst in planted)
        done = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", commands],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert all(os.stat(dst).st_uid == 65534 for _, dst in planted)

        # still open: nothing is loaded from it, one warning, the mode is left as it is
        report = run(cache_dir)
        assert not os.path.exists(marker)
        assert report["hits"] == 0 and report["root"] != cache_dir
        [warning] = report["warnings"]
        assert cache_dir in warning and "writable by other users" in warning
        assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o777

        # the user closes it: what `nobody` left there is still never loaded, and is replaced
        for directory in (cache_dir, pycache):
            os.chmod(directory, 0o700)
        report = run(cache_dir)
        assert not os.path.exists(marker)
        assert report["hits"] == 0 and not report["warnings"] and report["root"] == cache_dir
        assert all(os.stat(path).st_uid == 0 for path in _machine_code(cache_dir, True))
        assert run(cache_dir)["hits"] == N_SIGNATURES
        assert not os.path.exists(marker)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Directories others can write, or that are not ours: warn once, run uncached, never chmod
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where, mode", [("root", 0o777), ("root", 0o770), ("root", 0o702),
                                         ("pycache", 0o777), ("parent", 0o777)])
def test_directory_others_can_write_is_not_used_nor_chmodded(tmp_path, where, mode):
    parent = tmp_path / "parent"
    cache_dir = str(parent / "cache")
    _populated(cache_dir)
    target = {"root": cache_dir, "pycache": os.path.join(cache_dir, "__pycache__"),
              "parent": str(parent)}[where]
    os.chmod(target, mode)
    report = run(cache_dir)
    assert report["hits"] == 0 and report["root"] != cache_dir
    [warning] = report["warnings"]
    assert "writable by other users" in warning and "TAPEGRAD_CACHE_DIR" in warning
    assert stat.S_IMODE(os.stat(target).st_mode) == mode
    assert len(_machine_code(cache_dir, True)) == N_SIGNATURES    # nor written there


@pytest.mark.parametrize("mode", [0o1777, 0o775])
def test_sticky_or_group_writable_parent_is_fine(tmp_path, mode):
    # like /tmp, or ~/.cache under a umask of 002: files are checked one by one
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, mode)
    cache_dir = str(parent / "cache")
    _populated(cache_dir)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another user")
def test_directory_of_another_user_is_not_used_nor_taken(tmp_path):
    cache_dir = str(tmp_path / "cache")
    _populated(cache_dir)
    os.chown(cache_dir, 65534, 65534)
    report = run(cache_dir)
    assert report["hits"] == 0 and report["root"] != cache_dir
    [warning] = report["warnings"]
    assert "another user" in warning
    assert os.stat(cache_dir).st_uid == 65534


def test_directory_the_user_made_keeps_its_mode(tmp_path):
    cache_dir = tmp_path / "mine"
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o755)           # readable by others, writable only by the user: fine
    _populated(str(cache_dir))
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o755


def test_missing_directories_are_made_private(tmp_path):
    xdg = tmp_path / "a" / "b"
    report = run(XDG_CACHE_HOME=xdg)
    assert report["root"] == str(xdg / "tapegrad") and not report["warnings"]
    for path in (tmp_path / "a", xdg, xdg / "tapegrad", xdg / "tapegrad" / "__pycache__"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert run(XDG_CACHE_HOME=xdg)["hits"] == N_SIGNATURES


# ---------------------------------------------------------------------------------------------
# Faults: damaged files are misses that are rebuilt; unusable directories run uncached
# ---------------------------------------------------------------------------------------------

def _damage(path, how):
    with open(path, "rb") as handle:
        data = handle.read()
    if how == "truncate":
        data = data[:len(data) // 2]
    elif how == "empty":
        data = b""
    elif how == "flip_middle":
        data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x10]) + data[
            len(data) // 2 + 1:]
    elif how == "flip_last":
        data = data[:-1] + bytes([data[-1] ^ 0x01])
    else:
        data = b"\x80\x04garbage" * 10
    with open(path, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize("how", ["truncate", "flip_middle", "flip_last", "garbage"])
def test_damaged_machine_code_is_rebuilt(cache_dir, how):
    _populated(cache_dir)
    files = _machine_code(cache_dir)
    for path in files:
        _damage(path, how)
    report = run(cache_dir)
    assert report["hits"] == 0 and not report["warnings"]
    assert run(cache_dir)["hits"] == N_SIGNATURES          # rewritten whole


def test_one_damaged_signature_rebuilds_only_itself(cache_dir):
    _populated(cache_dir)
    _damage(_machine_code(cache_dir, True)[0], "flip_middle")
    assert run(cache_dir)["hits"] == N_SIGNATURES - 1
    assert run(cache_dir)["hits"] == N_SIGNATURES


@pytest.mark.parametrize("how", ["truncate", "flip_middle"])
def test_damaged_source_is_rewritten(cache_dir, how):
    _populated(cache_dir)
    entry = _entry(cache_dir)
    with open(entry, "rb") as handle:
        good = handle.read()
    _damage(entry, how)
    report = run(cache_dir)
    assert not report["warnings"]
    with open(entry, "rb") as handle:
        assert handle.read() == good


def test_entry_name_taken_by_a_directory_runs_uncached(cache_dir):
    _populated(cache_dir)
    entry = _entry(cache_dir)
    os.unlink(entry)
    os.mkdir(entry)
    report = run(cache_dir)
    assert report["hits"] == 0 and len(report["warnings"]) == 1


@pytest.mark.parametrize("kind", ["file_as_dir", "under_a_file", "proc", "pycache_is_file",
                                  "read_only_xdg", "read_only_dir"])
def test_unusable_directory_runs_uncached_with_one_warning(tmp_path, kind):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    if kind.startswith("read_only"):
        # read-only by its mode (root could write there anyway: the owner's choice is honoured)
        xdg = tmp_path / "xdg"
        xdg.mkdir()
        if kind == "read_only_dir":
            (xdg / "tapegrad").mkdir(mode=0o700)
        os.chmod(xdg / "tapegrad" if kind == "read_only_dir" else xdg, 0o500)
        env = {"XDG_CACHE_HOME": xdg}
    elif kind == "pycache_is_file":
        cache_dir = tmp_path / "cache"
        cache_dir.mkdir(mode=0o700)
        (cache_dir / "__pycache__").write_text("not a directory")
        env = {"TAPEGRAD_CACHE_DIR": cache_dir}
    elif kind == "file_as_dir":
        env = {"TAPEGRAD_CACHE_DIR": blocker}
    elif kind == "under_a_file":
        env = {"XDG_CACHE_HOME": blocker / "sub"}
    else:
        env = {"XDG_CACHE_HOME": "/proc/tapegrad-cache-test"}   # no directory can be made there
    report = run(**env)
    assert report["hits"] == 0
    [warning] = report["warnings"]
    assert "running without the disk cache" in warning
    assert blocker.read_text() == "not a directory"


def test_uncached_process_warns_once_for_all_its_code(tmp_path):
    cache_dir = tmp_path / "open"
    cache_dir.mkdir()
    os.chmod(cache_dir, 0o777)
    script = textwrap.dedent('''
        import json, warnings
        import numpy as np
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            import tapegrad as tg
            from tapegrad_jit import cache
            x = np.linspace(-1.0, 1.0, 6000)
            f = tg.jit(tg.value_and_grad(lambda x: np.sum(np.sin(x) * x)))
            g = tg.jit(tg.grad(lambda a: a * np.exp(a)))
            for _ in range(2):
                value, grad = f(x)
                slope = g(0.5)
        assert abs(value - np.sum(np.sin(x) * x)) < 1e-9
        assert np.allclose(grad, np.sin(x) + x * np.cos(x), rtol=1e-12)
        assert abs(slope - 1.5 * np.exp(0.5)) < 1e-12
        print(json.dumps({"modules": len(cache.loaded_modules()),
                          "warnings": [str(w.message) for w in caught
                                       if "cache" in str(w.message)]}))
    ''')
    report = run(str(cache_dir), script=script)
    assert report["modules"] >= 2 and len(report["warnings"]) == 1
    assert os.listdir(cache_dir) == []


# ---------------------------------------------------------------------------------------------
# Processes compiling at once
# ---------------------------------------------------------------------------------------------

def test_two_processes_compiling_at_once_leave_a_sound_cache(cache_dir, tmp_path):
    go = tmp_path / "go"
    # the two compile the signatures in opposite orders, released together
    workers = [spawn(cache_dir, GO_FILE=go), spawn(cache_dir, GO_FILE=go, REVERSED=1)]
    go.write_text("")
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        assert report["results"] == EXPECTED and not report["warnings"]
    assert run(cache_dir)["hits"] == N_SIGNATURES     # run() checks every signature's result
    assert not [n for d in (cache_dir, os.path.join(cache_dir, "__pycache__"))
                for n in os.listdir(d) if n.startswith(".tmp")]
