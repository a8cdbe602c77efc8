"""The on-disk cache of generated code: private, atomic, versioned, shared across processes."""
import os
import stat
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba")

from tapegrad_jit import cache  # noqa: E402

KERNEL = textwrap.dedent('''
    from numba import njit

    @njit(cache=True)
    def triple(x):
        return 3.0 * x
''')


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("TAPEGRAD_CACHE_DIR", str(root))
    monkeypatch.setattr(cache, "_loaded", {})
    return root


def _entries(root):
    return sorted(p.name for p in root.iterdir() if p.suffix == ".py")


def test_directory_is_private(cache_root):
    cache.load_module("test_kernel", KERNEL)
    assert stat.S_IMODE(os.stat(cache_root).st_mode) == 0o700


def test_entry_is_written_whole_and_reused(cache_root):
    module = cache.load_module("test_kernel", KERNEL)
    assert module.triple(2.0) == 6.0
    [name] = _entries(cache_root)
    assert not [p for p in cache_root.iterdir() if p.name.startswith(".tmp-")]
    mtime = os.stat(cache_root / name).st_mtime_ns
    cache._loaded.clear()
    cache.load_module("test_kernel", KERNEL)
    assert os.stat(cache_root / name).st_mtime_ns == mtime     # a valid entry is not rewritten


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_damaged_entries_are_misses(cache_root, damage):
    cache.load_module("test_kernel", KERNEL)
    [name] = _entries(cache_root)
    path = cache_root / name
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\xff\xfe not python")
    else:                       # another version's entry under this name
        path.write_text(text.replace("key ", "key 0", 1))
    cache._loaded.clear()
    module = cache.load_module("test_kernel", KERNEL)
    assert module.triple(1.5) == 4.5
    assert path.read_text() == text


def test_key_depends_on_versions(monkeypatch):
    key = cache.key_of(KERNEL)
    monkeypatch.setattr(cache, "versions", lambda: "tapegrad 9; numba 9; python 9")
    assert cache.key_of(KERNEL) != key


def test_second_process_loads_compiled_code(cache_root):
    script = textwrap.dedent(f'''
        from tapegrad_jit import cache
        module = cache.load_module("test_kernel", {KERNEL!r})
        assert module.triple(2.0) == 6.0
        print(module.triple.stats.cache_hits and "hit" or "miss")
    ''')
    env = dict(os.environ, TAPEGRAD_CACHE_DIR=str(cache_root))

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, check=True)
        return out.stdout.strip()
    assert run() == "miss"
    assert run() == "hit"
