"""The static handler's answer cache: repeated plain GETs skip the lookups, and nothing else changes."""

from __future__ import annotations

import os
from pathlib import Path

from pyginx.config.model import Http, HttpSettings, ListenAddr, Location, MainConfig, OpenFileCache, Server
from pyginx.handlers import filecache, static
from tests.unit.fake_http import Exchange, statuses


def _config(root: Path, valid: float) -> MainConfig:
    s = HttpSettings(
        root=str(root), open_file_cache=OpenFileCache(max=100, inactive=60), open_file_cache_valid=valid
    )
    server = Server((ListenAddr("127.0.0.1", 8080),), ("localhost",), s, (Location("", "/", s),))
    return MainConfig(file="t.yaml", prefix=str(root), http=Http(s, (server,), {}, {}))


GET = b"GET /f.txt HTTP/1.1\r\nHost: a\r\n\r\n"


def test_repeated_get_is_answered_from_memory_until_valid_runs_out(tmp_path: Path) -> None:
    static._answers.clear()
    (tmp_path / "f.txt").write_bytes(b"one")
    ex = Exchange(_config(tmp_path, valid=60))
    try:
        assert ex.feed(GET).endswith(b"one")
        assert len(static._answers) == 1
        (tmp_path / "f.txt").write_bytes(b"two!")  # within open_file_cache_valid: as nginx, the old file
        ex.transport.out.clear()
        out = ex.feed(GET)
        assert out.endswith(b"one") and b"Content-Length: 3\r\n" in out
        # the cached answer expires with its open_file_cache entry
        for answer in static._answers.values():
            answer.until = 0.0
        for cache in list(filecache._caches.values()):
            cache.clear()
        ex.transport.out.clear()
        out = ex.feed(GET)
        assert out.endswith(b"two!") and b"Content-Length: 4\r\n" in out
    finally:
        ex.close()
        static._answers.clear()


def test_conditional_and_range_requests_bypass_the_answers(tmp_path: Path) -> None:
    static._answers.clear()
    (tmp_path / "f.txt").write_bytes(b"0123456789")
    ex = Exchange(_config(tmp_path, valid=60))
    try:
        out = ex.feed(GET)
        etag = out.split(b"ETag: ")[1].split(b"\r\n")[0]
        ex.transport.out.clear()
        out = ex.feed(b"GET /f.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: " + etag + b"\r\n\r\n")
        assert statuses(out) == [304]
        ex.transport.out.clear()
        out = ex.feed(b"GET /f.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=2-4\r\n\r\n")
        assert statuses(out) == [206] and out.endswith(b"234")
        ex.transport.out.clear()
        out = ex.feed(b"HEAD /f.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert statuses(out) == [200] and out.endswith(b"\r\n\r\n") and b"Content-Length: 10" in out
    finally:
        ex.close()
        static._answers.clear()


def test_open_file_cache_off_keeps_no_answers(tmp_path: Path) -> None:
    static._answers.clear()
    (tmp_path / "f.txt").write_bytes(b"x")
    config = _config(tmp_path, valid=60)
    assert config.http is not None
    s = HttpSettings(root=str(tmp_path))
    server = Server((ListenAddr("127.0.0.1", 8080),), ("localhost",), s, (Location("", "/", s),))
    ex = Exchange(MainConfig(file="t.yaml", prefix=str(tmp_path), http=Http(s, (server,), {}, {})))
    try:
        ex.feed(GET, GET)
        assert static._answers == {}
        os.remove(tmp_path / "f.txt")
        ex.transport.out.clear()
        assert statuses(ex.feed(GET)) == [404]
    finally:
        ex.close()


def _uncached_config(root: Path) -> MainConfig:
    s = HttpSettings(root=str(root))  # open_file_cache off: nginx's default
    server = Server((ListenAddr("127.0.0.1", 8080),), ("localhost",), s, (Location("", "/", s),))
    return MainConfig(file="t.yaml", prefix=str(root), http=Http(s, (server,), {}, {}))


def test_uncached_answers_read_the_file_every_time(tmp_path: Path) -> None:
    """open_file_cache off: the remembered headers hold only while fstat shows the same file; the
    body is read per request, a changed file gets new headers and a removed one its 404."""
    static._uncached.clear()
    f = tmp_path / "f.txt"
    f.write_bytes(b"one")
    os.utime(f, (1_000_000, 1_000_000))
    ex = Exchange(_uncached_config(tmp_path))
    try:
        first = ex.feed(GET)
        assert first.endswith(b"one") and len(static._uncached) == 1
        ex.transport.out.clear()
        second = ex.feed(GET)

        def undated(out: bytes) -> list[bytes]:
            return [line for line in out.split(b"\r\n") if not line.startswith(b"Date:")]

        assert undated(second) == undated(first)
        f.write_bytes(b"uno")  # same size, same mtime: the fresh bytes with the same headers
        os.utime(f, (1_000_000, 1_000_000))
        ex.transport.out.clear()
        out = ex.feed(GET)
        assert out.endswith(b"uno") and b"Content-Length: 3\r\n" in out
        f.write_bytes(b"three")  # another size: the full path again, new validators
        os.utime(f, (2_000_000, 2_000_000))
        ex.transport.out.clear()
        out = ex.feed(GET)
        assert out.endswith(b"three") and b"Content-Length: 5\r\n" in out
        assert b"Last-Modified: Sat, 24 Jan 1970" in out
        ex.transport.out.clear()
        head = ex.feed(b"HEAD /f.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        assert statuses(head) == [200] and head.endswith(b"\r\n\r\n") and b"Content-Length: 5\r\n" in head
        f.unlink()
        ex.transport.out.clear()
        assert statuses(ex.feed(GET)) == [404]
        assert not static._uncached
    finally:
        ex.close()
        static._uncached.clear()


def test_uncached_answers_skip_conditionals(tmp_path: Path) -> None:
    static._uncached.clear()
    (tmp_path / "f.txt").write_bytes(b"0123456789")
    ex = Exchange(_uncached_config(tmp_path))
    try:
        out = ex.feed(GET)
        etag = out.split(b"ETag: ")[1].split(b"\r\n")[0]
        ex.transport.out.clear()
        out = ex.feed(b"GET /f.txt HTTP/1.1\r\nHost: a\r\nIf-None-Match: " + etag + b"\r\n\r\n")
        assert statuses(out) == [304]
        ex.transport.out.clear()
        out = ex.feed(b"GET /f.txt HTTP/1.1\r\nHost: a\r\nRange: bytes=2-4\r\n\r\n")
        assert statuses(out) == [206] and out.endswith(b"234")
    finally:
        ex.close()
        static._uncached.clear()
