"""proxy_cache with the real daemon and a counting origin: MISS then HIT, the lock across workers, STALE
on a dead origin, eviction by the cache manager process, HIT after a restart (the cache loader), and the
faults (a damaged file, an unwritable cache)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from pyginx.cache.index import META_SIZE, NODE_SIZE
from pyginx.zone import capacity
from tests.integration.harness import Pyginx, children, cmdline, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_origin import (
    Origin,
    big_body,
    origin_fixture,  # noqa: F401  (the `origin` fixture)
    proxy_config,
)


def request(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def cache_config(
    pyginx: Pyginx,
    origin: Origin,
    cache_args: str = "",
    location: str = "",
    workers: int = 1,
    valid: str = "10m",
) -> str:
    return proxy_config(
        pyginx.port,
        workers=workers,
        http=f'proxy_cache_path: "cache levels=1:2 keys_zone=c:1m {cache_args}"',
        upstreams=f"app:\n  servers:\n    - {origin.addr}\n",
        locations=(
            "- location: /\n"
            "  proxy_pass: http://app\n"
            "  proxy_cache: c\n"
            f"  proxy_cache_valid: 200 {valid}\n"
            "  add_header: {X-Cache: $upstream_cache_status}\n" + location
        ),
    )


def cache_file(pyginx: Pyginx, uri: str) -> Path:
    name = hashlib.md5(f"httpapp{uri}".encode()).hexdigest()
    return pyginx.prefix / "cache" / name[-1] / name[-3:-1] / name


def cache_files(pyginx: Pyginx) -> list[Path]:
    return [p for p in (pyginx.prefix / "cache").rglob("*") if p.is_file() and not p.name.startswith(".")]


def cache_processes(master: int) -> dict[int, str]:
    return {p: cmdline(p) for p in children(master) if "cache" in cmdline(p)}


def test_miss_then_hit_with_one_origin_request(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin))
    pyginx.start()
    status, h1, body1 = request(pyginx.port, "/page?x=1")
    assert status == 200 and h1["x-cache"] == "MISS"
    status, h2, body2 = request(pyginx.port, "/page?x=1")
    assert status == 200 and h2["x-cache"] == "HIT" and body2 == body1
    status, h3, body3 = request(pyginx.port, "/page?x=1")  # from the worker's copy: the same answer
    assert status == 200 and body3 == body1
    assert {k: v for k, v in h3.items() if k != "date"} == {k: v for k, v in h2.items() if k != "date"}
    assert len(origin.seen("/page")) == 1
    assert cache_file(pyginx, "/page?x=1").is_file()  # nginx's layout: levels from the key's md5
    # HEAD, a range and a conditional request are answered from the cached full response
    status, h, body = request(pyginx.port, "/page?x=1", method="HEAD")
    assert status == 200 and h["x-cache"] == "HIT" and body == b"" and h["content-length"] == str(len(body1))
    # an upstream response without Accept-Ranges is served whole from the cache, as nginx does
    # (ngx_http_upstream_copy_allow_ranges); with it, ranges come from the cached body
    assert "accept-ranges" not in h3
    status, h, body = request(pyginx.port, "/page?x=1", headers={"Range": "bytes=0-4"})
    assert status == 200 and body == body1 and "content-range" not in h
    assert len(origin.seen("/page")) == 1
    request(pyginx.port, "/page?x=2&ranges=1")
    status, h, body2 = request(pyginx.port, "/page?x=2&ranges=1")
    assert status == 200 and h["x-cache"] == "HIT" and h["accept-ranges"] == "bytes"
    status, h, body = request(pyginx.port, "/page?x=2&ranges=1", headers={"Range": "bytes=0-4"})
    assert status == 206 and body == body2[:5] and h["content-range"] == f"bytes 0-4/{len(body2)}"
    # a chunked answer is stored de-chunked and served with a length
    for expect in ("MISS", "HIT"):
        status, h, body = request(pyginx.port, "/big?size=70000&chunked=1")
        assert status == 200 and h["x-cache"] == expect and body == big_body(70000)
    assert h["content-length"] == "70000"
    # a large entry goes out from its file (sendfile), whole or a range of it
    for expect in ("MISS", "HIT"):
        status, h, body = request(pyginx.port, "/big?size=600000&ranges=1")
        assert status == 200 and h["x-cache"] == expect and body == big_body(600000)
    status, h, body = request(pyginx.port, "/big?size=600000&ranges=1", headers={"Range": "bytes=500000-500009"})
    assert status == 206 and body == big_body(600000)[500000:500010]
    # another key is another entry; a client's conditional headers are not passed upstream
    status, h, _ = request(pyginx.port, "/other", headers={"If-None-Match": '"x"', "Range": "bytes=0-1"})
    assert status == 200 and h["x-cache"] == "MISS"
    seen = origin.seen("/other")[0]
    assert seen.header("if-none-match") is None and seen.header("range") is None


def test_a_lock_holds_50_concurrent_misses_to_one_origin_request(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin, location="  proxy_cache_lock: true\n", workers=2))
    master = pyginx.start(workers=2)
    results: list[tuple[int, str, bytes]] = []
    lock = threading.Lock()

    def one() -> None:
        status, h, body = request(pyginx.port, "/slow-head?delay=0.5")
        with lock:
            results.append((status, h.get("x-cache", ""), body))

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(results) == 50 and all(s == 200 and b == b"slow" for s, _, b in results)
    assert len(origin.seen("/slow-head")) == 1
    kinds = sorted(c for _, c, _ in results)
    assert kinds.count("MISS") == 1 and kinds.count("HIT") == 49
    assert len(pyginx.workers(master)) == 2


def test_stale_on_a_dead_origin(pyginx: Pyginx) -> None:
    origin = Origin("dying").start()
    try:
        _stale_on_a_dead_origin(pyginx, origin)
    finally:
        if origin._thread.is_alive():
            origin.stop()


def _stale_on_a_dead_origin(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(
        cache_config(
            pyginx,
            origin,
            valid="1s",
            location=(
                "  proxy_cache_use_stale: error timeout http_502\n"
                "  proxy_connect_timeout: 1s\n"
                "- location: /strict/\n"
                "  proxy_pass: http://app\n"
                "  proxy_cache: c\n"
                "  proxy_cache_valid: 200 1s\n"
                "  add_header: {X-Cache: $upstream_cache_status}\n"
            ),
        )
    )
    pyginx.start()
    status, h, body = request(pyginx.port, "/s")
    assert status == 200 and h["x-cache"] == "MISS"
    assert request(pyginx.port, "/strict/s")[0] == 200
    origin.stop()
    wait_for(lambda: request(pyginx.port, "/s")[1]["x-cache"] != "HIT" or None, 5, "the entry to expire")
    status, h, stale = request(pyginx.port, "/s")
    assert status == 200 and h["x-cache"] == "STALE" and stale == body
    status, h, _ = request(pyginx.port, "/strict/s")  # no proxy_cache_use_stale: nginx's 502
    assert status == 502
    pyginx.allow = ("connect() failed",)


def test_eviction_by_max_size_with_the_manager_process(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin, "max_size=100k manager_sleep=50ms"))
    master = pyginx.start()
    titles = wait_for(lambda: cache_processes(master) or None, 10, "the cache processes")
    assert "pyginx: cache manager process" in titles.values()
    size = 30000
    for i in range(8):
        status, h, body = request(pyginx.port, f"/big?size={size}&n={i}")
        assert status == 200 and body == big_body(size) and h["x-cache"] == "MISS"

    def small_enough() -> int | None:
        try:
            total = sum(p.stat().st_blocks * 512 for p in cache_files(pyginx))
        except FileNotFoundError:
            return None  # the manager deleted one while we looked: look again
        return total if total < 100 * 1024 else None

    wait_for(small_enough, 20, "the manager to bring the cache under max_size")
    assert 1 <= len(cache_files(pyginx)) <= 3
    assert request(pyginx.port, f"/big?size={size}&n=7")[1]["x-cache"] == "HIT"  # the newest stays
    assert request(pyginx.port, f"/big?size={size}&n=0")[1]["x-cache"] == "MISS"  # the oldest went first
    # the manager is respawned if it dies, and never serves
    manager = next(p for p, t in cache_processes(master).items() if "manager" in t)
    os.kill(manager, signal.SIGKILL)
    wait_for(
        lambda: [p for p, t in cache_processes(master).items() if "manager" in t and p != manager] or None,
        10,
        "a new cache manager",
    )
    pyginx.allow = ("exited on signal 9",)


def test_hit_after_restart_and_reload(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin))
    master = pyginx.start()
    assert request(pyginx.port, "/keep")[1]["x-cache"] == "MISS"
    old_manager = wait_for(
        lambda: [p for p, t in cache_processes(master).items() if "manager" in t] or None, 10
    )
    pyginx.signal(signal.SIGHUP, master)  # reload: the zone is kept, the manager replaced
    wait_for(
        lambda: (
            [p for p, t in cache_processes(master).items() if "manager" in t and p not in old_manager] or None
        ),
        10,
        "the manager to be replaced",
    )
    assert request(pyginx.port, "/keep")[1]["x-cache"] == "HIT"
    pyginx.signal(signal.SIGQUIT, master)
    pyginx.wait_exit(master)
    assert not cache_processes(master)
    master = pyginx.start()
    wait_for(lambda: "loaded 1 entries" in pyginx.error_log() or None, 10, "the cache loader")
    status, h, _ = request(pyginx.port, "/keep")
    assert status == 200 and h["x-cache"] == "HIT"
    assert len(origin.seen("/keep")) == 1
    assert not [t for t in cache_processes(master).values() if "loader" in t]  # one-shot: it exited


def test_a_damaged_file_is_discarded_and_refetched(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.allow = ("is truncated",)  # nginx logs a damaged cache file at crit, as here
    pyginx.write_config(cache_config(pyginx, origin))
    pyginx.start()
    _, _, body = request(pyginx.port, "/d")
    path = cache_file(pyginx, "/d")
    data = path.read_bytes()
    path.write_bytes(data[:-3])  # truncated
    status, h, again = request(pyginx.port, "/d")
    # the refetch is the origin's answer again (its "conn" counter may differ: without `keepalive`
    # each upstream request has its own connection)
    assert status == 200 and h["x-cache"] == "MISS"
    assert _without_conn(again) == _without_conn(body)
    assert len(origin.seen("/d")) == 2
    assert "is truncated" in pyginx.error_log()
    assert request(pyginx.port, "/d")[1]["x-cache"] == "HIT"


def _without_conn(body: bytes) -> dict[str, object]:
    answer = json.loads(body)
    assert isinstance(answer, dict)
    answer.pop("conn", None)
    return answer


def test_an_unwritable_cache_serves_uncached_and_logs_once(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin))
    pyginx.start()
    root = pyginx.prefix / "cache"
    shutil.rmtree(root)
    root.write_text("not a directory")  # every write fails (ENOTDIR), even for root
    for _ in range(3):
        status, h, body = request(pyginx.port, "/u")
        assert status == 200 and h["x-cache"] == "MISS" and body
    assert len(origin.seen("/u")) == 3
    assert pyginx.error_log().count("the response is not cached") == 1
    pyginx.allow = ("the response is not cached",)


# ------------------------------------------------------------------------------------------------------
# header semantics, against an origin whose answers the query string shapes


class ShapingOrigin:
    """GET /any/path?cc=..&etag=..&cookie=1&vary=NAME&accel=..: answers `path #N` (N counts the
    requests for that path), with those headers; a matching If-None-Match gets a 304."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.force_status: int | None = None  # answer everything with this status (a failing origin)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.seen.append((self.path, headers))
                    n = outer.counts[url.path] = outer.counts.get(url.path, 0) + 1
                if outer.force_status is not None:
                    self.send_response(outer.force_status)
                    self.send_header("Content-Length", "4")
                    self.end_headers()
                    self.wfile.write(b"fail")
                    return
                etag = q.get("etag")
                if etag and headers.get("if-none-match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                vary = q.get("vary")
                body = f"{url.path} #{n}" + (f" {headers.get(vary.lower(), '')}" if vary else "")
                data = body.encode()
                self.send_response(int(q.get("status", "200")))
                for name, param in (("Cache-Control", "cc"), ("X-Accel-Expires", "accel"), ("Vary", "vary")):
                    if param in q:
                        self.send_header(name, q[param])
                if etag:
                    self.send_header("ETag", etag)
                if "cookie" in q:
                    self.send_header("Set-Cookie", "s=1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts.get(path, 0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def shaping_config(pyginx: Pyginx, origin: ShapingOrigin) -> str:
    def loc(match: str, extra: str = "", valid: str = "10m") -> str:
        return (
            f"- location: {match}\n  proxy_pass: http://app\n  proxy_cache: c\n  proxy_cache_valid: 200 {valid}\n"
            "  add_header: {X-Cache: $upstream_cache_status}\n" + extra
        )

    return proxy_config(
        pyginx.port,
        http='proxy_cache_path: "cache levels=1:2 keys_zone=c:1m"',
        upstreams=f"app:\n  servers:\n    - {origin.addr}\n",
        locations=loc("/")
        + loc("/ign/", "  proxy_ignore_headers: Set-Cookie\n")
        + loc("/min/", "  proxy_cache_min_uses: 2\n")
        + loc("/by/", "  proxy_cache_bypass: $http_x_bypass\n  proxy_no_cache: $http_x_nocache\n")
        + loc("/rv/", "  proxy_cache_revalidate: true\n", valid="1s")
        + loc(
            "/bg/", "  proxy_cache_use_stale: updating\n  proxy_cache_background_update: true\n", valid="1s"
        )
        + loc("/st/", "  proxy_cache_use_stale: http_503\n", valid="1s"),
    )


def xc(pyginx: Pyginx, path: str, headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    status, h, body = request(pyginx.port, path, headers=headers)
    assert status in (200, 304), (status, body)
    return h.get("x-cache", ""), body


def test_header_semantics(pyginx: Pyginx) -> None:
    origin = ShapingOrigin()
    try:
        pyginx.write_config(shaping_config(pyginx, origin))
        pyginx.start()
        # Cache-Control, Set-Cookie and X-Accel-Expires decide, proxy_ignore_headers overrides
        for path in ("/a?cc=no-cache", "/b?cc=max-age=0", "/c?cc=private", "/d?cookie=1", "/e?accel=0"):
            assert [xc(pyginx, path)[0] for _ in range(2)] == ["MISS", "MISS"], path
        assert [xc(pyginx, "/ign/x?cookie=1")[0] for _ in range(2)] == ["MISS", "HIT"]
        assert [xc(pyginx, "/f?cc=max-age=60")[0] for _ in range(2)] == ["MISS", "HIT"]
        # Vary: one entry per variant of the named request header
        lang = [("en", "MISS"), ("en", "HIT"), ("fr", "MISS"), ("fr", "HIT"), ("en", "HIT")]
        for value, expect in lang:
            cache, body = xc(pyginx, "/v?vary=Accept-Language", {"Accept-Language": value})
            assert cache == expect and body.endswith(value.encode()), (value, cache, body)
        # min_uses, bypass and no_cache
        assert [xc(pyginx, "/min/m")[0] for _ in range(3)] == ["MISS", "MISS", "HIT"]
        assert xc(pyginx, "/by/b")[0] == "MISS" and xc(pyginx, "/by/b")[0] == "HIT"
        cache, body = xc(pyginx, "/by/b", {"X-Bypass": "1"})
        assert cache == "BYPASS" and body == b"/by/b #2"
        assert xc(pyginx, "/by/b") == ("HIT", b"/by/b #2")  # the bypassing response was stored
        assert xc(pyginx, "/by/n", {"X-Nocache": "1"})[0] == "MISS" and xc(pyginx, "/by/n")[0] == "MISS"
        # a conditional request answered from the cached response
        assert xc(pyginx, '/g?etag="v1"')[0] == "MISS"
        status, h, body = request(pyginx.port, '/g?etag="v1"', headers={"If-None-Match": '"v1"'})
        assert status == 304 and h["x-cache"] == "HIT" and body == b""
        assert origin.count("/g") == 1
        # POST is not among proxy_cache_methods
        c = http.client.HTTPConnection("127.0.0.1", pyginx.port, timeout=5)
        c.request("POST", "/f?cc=max-age=60", body=b"x")
        r = c.getresponse()
        r.read()
        c.close()
        assert r.getheader("X-Cache") is None
    finally:
        origin.close()


def test_revalidation_and_background_update(pyginx: Pyginx) -> None:
    origin = ShapingOrigin()
    try:
        pyginx.write_config(shaping_config(pyginx, origin))
        pyginx.start()
        assert xc(pyginx, '/rv/r?etag="e1"') == ("MISS", b"/rv/r #1")
        assert xc(pyginx, "/bg/b") == ("MISS", b"/bg/b #1")
        assert xc(pyginx, "/st/s") == ("MISS", b"/st/s #1")
        start = time.time()
        wait_for(
            lambda: time.time() > start + 2.05 or None, 5, "the entries to expire (valid 1s, whole seconds)"
        )
        # expired + proxy_cache_revalidate: a conditional request upstream, its 304 -> REVALIDATED
        assert xc(pyginx, '/rv/r?etag="e1"') == ("REVALIDATED", b"/rv/r #1")
        assert origin.seen[-1][1].get("if-none-match") == '"e1"'
        assert xc(pyginx, '/rv/r?etag="e1"')[0] == "HIT"
        # expired + background update: the stale entry at once, the refresh behind it
        assert xc(pyginx, "/bg/b") == ("STALE", b"/bg/b #1")
        wait_for(lambda: origin.count("/bg/b") == 2 or None, 5, "the background refresh")
        wait_for(lambda: xc(pyginx, "/bg/b") == ("HIT", b"/bg/b #2") or None, 5, "the refreshed entry")
        # expired + an upstream 503 that proxy_cache_use_stale covers: the stale entry instead
        origin.force_status = 503
        assert xc(pyginx, "/st/s") == ("STALE", b"/st/s #1")
    finally:
        origin.close()


def test_a_worker_killed_mid_write_leaves_nothing_half_written(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin))
    master = pyginx.start(workers=1)
    root = pyginx.prefix / "cache"

    def temps() -> list[Path]:
        return [p for p in root.iterdir() if p.name.startswith(".tmp.")]

    def fetch() -> None:
        try:
            request(pyginx.port, "/slow-body?delay=5")
        except (OSError, http.client.HTTPException):
            pass  # the worker dies under it

    t = threading.Thread(target=fetch)
    t.start()
    wait_for(lambda: temps() or None, 10, "the entry's temp file")
    (worker,) = pyginx.workers(master)
    os.kill(worker, signal.SIGKILL)
    t.join(10)
    assert not cache_file(pyginx, "/slow-body?delay=5").exists()  # never visible half-written
    assert temps()
    pyginx.wait_workers(master, 1)
    assert request(pyginx.port, "/slow-body?delay=0")[0] == 200
    pyginx.signal(signal.SIGQUIT, master)
    pyginx.wait_exit(master)
    pyginx.start()
    wait_for(lambda: not temps() or None, 10, "the loader to remove the dead worker's temp file")
    assert request(pyginx.port, "/slow-body?delay=0")[1]["x-cache"] == "HIT"
    pyginx.allow = ("exited on signal 9",)


def test_a_reload_that_resizes_the_zone_starts_afresh_and_reloads_from_disk(
    pyginx: Pyginx, origin: Origin
) -> None:
    pyginx.write_config(cache_config(pyginx, origin))
    master = pyginx.start()
    assert request(pyginx.port, "/z")[1]["x-cache"] == "MISS"
    wait_for(lambda: "loaded 0 entries" in pyginx.error_log() or None, 10, "the first loader")
    pyginx.write_config(cache_config(pyginx, origin).replace("keys_zone=c:1m", "keys_zone=c:2m"))
    pyginx.signal(signal.SIGHUP, master)
    # a new zone (nginx: a changed size is new memory): its loader finds the file on disk again
    wait_for(lambda: "loaded 1 entries" in pyginx.error_log() or None, 10, "a loader for the new zone")
    assert request(pyginx.port, "/z")[1]["x-cache"] == "HIT"
    assert len(origin.seen("/z")) == 1


def test_a_client_gone_during_a_miss_still_fills_the_cache(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin))
    pyginx.start()
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.sendall(b"GET /slow-body?delay=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")  # the head and part of the body, then we leave
    wait_for(lambda: cache_file(pyginx, "/slow-body?delay=0.5").exists() or None, 10, "the entry")
    status, h, body = request(pyginx.port, "/slow-body?delay=0.5")
    assert status == 200 and h["x-cache"] == "HIT" and body == b"x" * 1000
    assert len(origin.seen("/slow-body")) == 1  # nginx reads a cacheable response to its end


def test_lock_timeout_sends_the_waiters_upstream_uncached(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(
        cache_config(pyginx, origin, location="  proxy_cache_lock: true\n  proxy_cache_lock_timeout: 200ms\n")
    )
    pyginx.start()
    results: list[str] = []

    def one() -> None:
        status, h, _ = request(pyginx.port, "/slow-head?delay=1")
        results.append(f"{status} {h.get('x-cache')}")

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == ["200 MISS"] * 3
    assert len(origin.seen("/slow-head")) == 3  # the waiters gave up after 200 ms and fetched
    assert "cache lock timeout" in pyginx.error_log()
    assert request(pyginx.port, "/slow-head?delay=1")[1]["x-cache"] == "HIT"  # the holder stored it


def test_a_full_keys_zone_evicts_the_least_recently_used(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(cache_config(pyginx, origin).replace("keys_zone=c:1m", "keys_zone=c:32k"))
    pyginx.start()
    slots = capacity(32 * 1024, NODE_SIZE, META_SIZE)  # nginx's minimum zone: a few hundred keys
    c = http.client.HTTPConnection("127.0.0.1", pyginx.port, timeout=10)
    try:
        for i in range(slots + 40):
            c.request("GET", f"/k{i}")
            r = c.getresponse()
            r.read()
            assert r.status == 200 and r.getheader("X-Cache") == "MISS"
    finally:
        c.close()
    assert len(cache_files(pyginx)) <= slots  # evicted nodes take their files with them
    assert request(pyginx.port, f"/k{slots + 39}")[1]["x-cache"] == "HIT"  # the newest stay
    assert request(pyginx.port, "/k1")[1]["x-cache"] == "MISS"  # the least recently used went first
