"""open_file_cache: validity window, revalidation, inactive expiry, LRU bound, errors, min_uses, and the
guarantee that a body and its length always come from one consistent read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyginx.handlers import filecache
from pyginx.handlers.filecache import SMALL_FILE_MAX, OpenFileCache, probe, read_consistent
from pyginx.handlers.paths import PathError, Policy

P = Policy()


def _write(path: Path, data: bytes, mtime: int | None = None) -> None:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_probe_small_large_dir(tmp_path: Path) -> None:
    _write(tmp_path / "small", b"hello", 1000)
    _write(tmp_path / "large", b"x" * (SMALL_FILE_MAX + 1), 1000)
    base = str(tmp_path)
    info, ok = probe(base + "/small", base, P)
    assert ok and info.kind == "file" and info.body == b"hello" and info.size == 5
    assert info.etag == '"3e8-5"' and info.last_modified == "Thu, 01 Jan 1970 00:16:40 GMT"
    info, ok = probe(base + "/large", base, P)
    assert ok and info.body is None and info.size == SMALL_FILE_MAX + 1
    info, ok = probe(base + "/small", base, P, test_only=True)
    assert info.body is None
    info, _ = probe(base, base, P)
    assert info.kind == "dir"


def test_header_block(tmp_path: Path) -> None:
    _write(tmp_path / "f", b"abc", 1000)
    info, _ = probe(str(tmp_path / "f"), str(tmp_path), P)
    block = info.header_block("text/plain", True, "gzip", True, True)
    assert block == (
        b"Content-Type: text/plain\r\nLast-Modified: Thu, 01 Jan 1970 00:16:40 GMT\r\n"
        b'ETag: "3e8-3"\r\nContent-Encoding: gzip\r\nVary: Accept-Encoding\r\nAccept-Ranges: bytes\r\n'
    )
    assert info.header_block("text/plain", True, "gzip", True, True) is block  # built once
    assert b"ETag" not in info.header_block("text/plain", False, ranges=False)


def test_valid_window_and_revalidation(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _write(f, b"one", 1000)
    cache = OpenFileCache(10, inactive=100)
    base = str(tmp_path)
    get = lambda now: cache.get(str(f), base, P, valid=5, now=now)  # noqa: E731
    assert get(0).body == b"one"
    _write(f, b"two!", 2000)
    assert get(4).body == b"one"  # still trusted: nginx serves the cached state for `valid` seconds
    assert get(5.5).body == b"two!"  # re-checked, changed, reloaded
    assert get(6).body == b"two!"


def test_revalidation_keeps_unchanged_entry(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _write(f, b"same", 1000)
    cache = OpenFileCache(10, inactive=100)
    first = cache.get(str(f), str(tmp_path), P, valid=1, now=0)
    again = cache.get(str(f), str(tmp_path), P, valid=1, now=10)
    assert again is first


def test_replaced_file_same_size_and_mtime_is_noticed(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _write(f, b"aaaa", 1000)
    cache = OpenFileCache(10, inactive=100)
    assert cache.get(str(f), str(tmp_path), P, valid=1, now=0).body == b"aaaa"
    tmp = tmp_path / "new"
    _write(tmp, b"bbbb", 1000)
    os.replace(tmp, f)  # new inode
    assert cache.get(str(f), str(tmp_path), P, valid=1, now=2).body == b"bbbb"


def test_deleted_file(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _write(f, b"x")
    cache = OpenFileCache(10, inactive=100)
    cache.get(str(f), str(tmp_path), P, valid=1, now=0)
    f.unlink()
    with pytest.raises(PathError) as e:
        cache.get(str(f), str(tmp_path), P, valid=1, now=2)
    assert e.value.status == 404
    assert len(cache) == 0


def test_errors_cached_only_when_asked(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    cache = OpenFileCache(10, inactive=100)
    with pytest.raises(PathError):
        cache.get(missing, str(tmp_path), P, valid=10, errors=False, now=0)
    assert len(cache) == 0
    with pytest.raises(PathError):
        cache.get(missing, str(tmp_path), P, valid=10, errors=True, now=0)
    assert len(cache) == 1
    _write(tmp_path / "missing", b"now here")
    with pytest.raises(PathError):  # the cached error stands for `valid` seconds
        cache.get(missing, str(tmp_path), P, valid=10, errors=True, now=5)
    assert cache.get(missing, str(tmp_path), P, valid=10, errors=True, now=11).body == b"now here"


def test_inactive_expiry_and_lru_bound(tmp_path: Path) -> None:
    base = str(tmp_path)
    for i in range(5):
        _write(tmp_path / str(i), b"%d" % i)
    cache = OpenFileCache(3, inactive=10)
    for i in range(5):
        cache.get(f"{base}/{i}", base, P, now=float(i))
    assert len(cache) == 3  # the two least recently used went
    cache.get(f"{base}/2", base, P, now=20.0)  # 3 and 4 are now inactive for > 10 s
    assert len(cache) == 1


def test_body_budget(tmp_path: Path) -> None:
    base = str(tmp_path)
    for i in range(4):
        _write(tmp_path / str(i), b"x" * 1000)
    cache = OpenFileCache(100, inactive=100, body_budget=2500)
    for i in range(4):
        cache.get(f"{base}/{i}", base, P, now=0)
    assert cache.body_bytes <= 2500 and len(cache) == 2


def test_min_uses(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _write(f, b"body")
    cache = OpenFileCache(10, inactive=100)
    kw = {"valid": 100.0, "min_uses": 2}
    assert cache.get(str(f), str(tmp_path), P, now=0, **kw).body == b"body"  # served, not kept
    assert cache.body_bytes == 0
    assert cache.get(str(f), str(tmp_path), P, now=1, **kw).body == b"body"
    assert cache.body_bytes == 4


def test_test_only_then_body(tmp_path: Path) -> None:
    f = tmp_path / "f"
    _write(f, b"body")
    cache = OpenFileCache(10, inactive=100)
    assert cache.get(str(f), str(tmp_path), P, test_only=True, now=0).body is None
    assert cache.get(str(f), str(tmp_path), P, now=0.5).body == b"body"


def test_read_consistent_detects_a_changing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f"
    _write(f, b"abcdef")
    fd = os.open(f, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        real_fstat = os.fstat
        calls = {"n": 0}

        def growing_fstat(fd_: int) -> os.stat_result:
            # every read is followed by a write that changes the file: never stable
            calls["n"] += 1
            with open(f, "ab") as out:
                out.write(b"+")
            return real_fstat(fd_)

        monkeypatch.setattr(filecache.os, "fstat", growing_fstat)
        body, after, stable = read_consistent(fd, st)
        assert not stable and calls["n"] == 3
        assert body.startswith(b"abcdef")  # one read's bytes, whatever they were
    finally:
        os.close(fd)


def test_unstable_file_is_served_but_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f"
    _write(f, b"abc")
    real_fstat = os.fstat

    def growing_fstat(fd_: int) -> os.stat_result:
        # the file grows between every read and the fstat after it: never stable
        with open(f, "ab") as out:
            out.write(b"d")
        return real_fstat(fd_)

    monkeypatch.setattr(filecache.os, "fstat", growing_fstat)
    cache = OpenFileCache(10, inactive=100)
    info = cache.get(str(f), str(tmp_path), P, now=0)
    assert info.body is not None and info.body.startswith(b"abcd")
    assert info.size == len(info.body)  # the length follows the bytes actually read
    assert len(cache) == 0


def test_cache_for() -> None:
    assert filecache.cache_for(0, 20) is None
    a = filecache.cache_for(100, 20)
    assert a is not None and filecache.cache_for(100, 20) is a
    assert filecache.cache_for(100, 30) is not a
