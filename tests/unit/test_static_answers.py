"""The static handler's answer cache: repeated plain GETs skip the lookups, and nothing else changes."""

from __future__ import annotations

import os
from pathlib import Path

from pyginx.config.model import Http, HttpSettings, ListenAddr, Location, MainConfig, OpenFileCache, Server
from pyginx.handlers import static
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
        for cache in list(static.cache_for.__globals__["_caches"].values()):
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
