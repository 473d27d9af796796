"""Issue 12 (hardening), the proxy path: upstream connections reused out of step, chunked bodies over
client_max_body_size, reason phrases, and the upstream fault matrix. Expected answers were checked
against nginx 1.22 with the same origin."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.faultorigin import FAULTS, FaultOrigin, fault_origin_fixture  # noqa: F401
from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.rawhttp import exchange, read_response, statuses
from tests.integration.test_proxy_origin import proxy_config

H = b"Host: localhost\r\n"


def _config(pyginx: Pyginx, origin: FaultOrigin, upstream_extra: str = "", location_extra: str = "") -> str:
    ups = f"app:\n  servers:\n    - {origin.addr}\n{upstream_extra}"
    loc = "- location: /py/\n  proxy_pass: http://app\n  proxy_read_timeout: 1s\n  client_max_body_size: 1k\n"
    return proxy_config(pyginx.port, upstreams=ups, locations=loc + location_extra)


def _one(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    return exchange(port, data, timeout)


def test_upstream_without_keepalive_closes_after_each_response(
    pyginx: Pyginx, fault_origin: FaultOrigin
) -> None:
    """Issue 12 item 3: an origin answering before it read the body; the body left on a reused
    connection became the next request (404, 404 where nginx gives 404, 200)."""
    pyginx.write_config(_config(pyginx, fault_origin))
    pyginx.start()
    post = b"POST /py/x HTTP/1.1\r\n" + H + b"Content-Length: 11\r\nConnection: close\r\n\r\nhello world"
    assert statuses(_one(pyginx.port, post)) == [404]
    out = _one(pyginx.port, b"GET /py/ok HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert statuses(out) == [200], out
    assert out.endswith(b"ok\n")
    assert fault_origin.connections == 2
    assert all(b"\r\nConnection: close" in h for h in fault_origin.heads), fault_origin.heads


def test_upstream_with_keepalive_still_reuses(pyginx: Pyginx, fault_origin: FaultOrigin) -> None:
    pyginx.write_config(_config(pyginx, fault_origin, upstream_extra="  keepalive: 4\n"))
    pyginx.start()
    for _ in range(3):
        out = _one(pyginx.port, b"GET /py/ok HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
        assert statuses(out) == [200]
    assert fault_origin.connections == 1


def _chunked_post(size_lines: list[bytes], port: int, pause: float = 0.05) -> tuple[bytes, float]:
    """A chunked POST sent piece by piece (each piece its own segment); the answer and its delay."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /py/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
        t0 = time.monotonic()
        out = b""
        for piece in size_lines:
            time.sleep(pause)
            try:
                s.sendall(piece)
            except OSError:
                break
        s.settimeout(5)
        try:
            while b"\r\n\r\n" not in out:
                data = s.recv(65536)
                if not data:
                    break
                out += data
        except (TimeoutError, ConnectionResetError):
            pass
        return out, time.monotonic() - t0


def test_chunked_body_over_limit_is_413_not_forwarded(pyginx: Pyginx, fault_origin: FaultOrigin) -> None:
    """Issue 12 item 4: 2,100 bytes in three chunks, client_max_body_size 1k: 413 (it was forwarded)."""
    pyginx.write_config(_config(pyginx, fault_origin))
    pyginx.start()
    pieces = [b"2bc\r\n" + b"x" * 700 + b"\r\n"] * 3 + [b"0\r\n\r\n"]
    out, _ = _chunked_post(pieces, pyginx.port)
    assert statuses(out) == [413], out
    # the whole body in the head's segment, judged by the location's limit (it was forwarded: 200)
    out = _one(
        pyginx.port, b"POST /py/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(pieces)
    )
    assert statuses(out) == [413], out
    assert not any(b"POST" in h for h in fault_origin.heads)
    assert "client intended to send too large chunked body" in pyginx.error_log()


@pytest.mark.parametrize(
    "line,status",
    [
        (b"800\r\nabc", 413),
        (b"401\r\na", 413),
        (b"8000000000000000\r\n", 400),
        (b"fffffffffffffffff\r\n", 400),
    ],
    ids=["2k chunk", "1025 chunk", "2^63 chunk", "17 hex digits"],
)
def test_chunk_size_line_over_limit_refused_at_once(
    pyginx: Pyginx, fault_origin: FaultOrigin, line: bytes, status: int
) -> None:
    """Issue 12 item 4: a chunk size over the limit (or 2^63) is refused as it arrives, not after the
    body timeout (nginx: 413 or 400 at once)."""
    pyginx.write_config(_config(pyginx, fault_origin))
    pyginx.start()
    out, took = _chunked_post([line], pyginx.port)
    assert statuses(out) == [status], out
    assert took < 2.0
    assert not any(b"POST" in h for h in fault_origin.heads)


def test_upstream_reason_phrase_is_kept(pyginx: Pyginx, fault_origin: FaultOrigin) -> None:
    """Issue 12 item 6: nginx passes the upstream's status line, known code or not."""
    pyginx.write_config(_config(pyginx, fault_origin))
    pyginx.start()
    for code in (299, 599, 200):
        with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
            s.sendall(b"GET /py/status/%d HTTP/1.1\r\n" % code + H + b"\r\n")
            s.settimeout(5)
            first = s.recv(65536).split(b"\r\n", 1)[0]
        assert first == b"HTTP/1.1 %d Weird Reason" % code


@pytest.mark.parametrize("path", sorted(FAULTS))
def test_upstream_fault_matrix(pyginx: Pyginx, fault_origin: FaultOrigin, path: str) -> None:
    """Each upstream fault: nginx's status and error-log line, the worker alive, the next request fine."""
    pyginx.allow = (*pyginx.allow, "upstream")
    pyginx.write_config(_config(pyginx, fault_origin))
    master = pyginx.start()
    workers = pyginx.workers(master)
    status, message = FAULTS[path]
    out = _one(pyginx.port, b"GET /py" + path.encode() + b" HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert statuses(out) == [status], out
    wait_for(lambda: message in pyginx.error_log() or None, 5, message)
    assert "Traceback" not in pyginx.error_log()
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.sendall(b"GET /py/ok HTTP/1.1\r\n" + H + b"\r\n")
        assert read_response(s)[0] == 200
    assert pyginx.workers(master) == workers


@pytest.mark.parametrize("path", ["/fault/short-body", "/fault/bad-chunk"])
def test_upstream_body_fault_truncates(pyginx: Pyginx, fault_origin: FaultOrigin, path: str) -> None:
    """A body that breaks after the head went out: the client sees a truncated response, then a close."""
    pyginx.allow = (*pyginx.allow, "upstream")
    pyginx.write_config(_config(pyginx, fault_origin))
    pyginx.start()
    out = _one(pyginx.port, b"GET /py" + path.encode() + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert statuses(out) == [200]
    if path.endswith("short-body"):
        assert out.endswith(b"0123456789")
    else:
        assert not out.endswith(b"0\r\n\r\n")


def test_retiring_worker_closes_its_idle_upstream_connections(pyginx: Pyginx) -> None:
    """Issue 12 item 6: a server proxying to itself with keepalive; after a reload the old worker
    kept its idle upstream connection (to itself) open and lingered until worker_shutdown_timeout."""
    import signal

    from tests.integration.harness import alive, free_port

    inner = free_port()
    text = proxy_config(
        pyginx.port,
        upstreams=f"self:\n  servers:\n    - 127.0.0.1:{inner}\n  keepalive: 4\n",
        locations="- location: /up/\n  proxy_pass: http://self\n",
    ).replace("worker_shutdown_timeout: 3s", "worker_shutdown_timeout: 20s")
    text += f"    - listen: 127.0.0.1:{inner}\n      locations:\n        - location: /\n          return: 200 inner\n"
    text = text.replace("keepalive_timeout: 10s", "keepalive_timeout: 30s")
    pyginx.write_config(text)
    master = pyginx.start(workers=1)
    out = _one(pyginx.port, b"GET /up/x HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert out.endswith(b"inner")
    old = pyginx.workers(master)
    t0 = time.monotonic()
    pyginx.signal(signal.SIGHUP)
    for pid in old:
        wait_for(lambda p=pid: not alive(p) or None, 15, f"old worker {pid} to exit")
    assert time.monotonic() - t0 < 5.0  # not keepalive_timeout (30 s) nor worker_shutdown_timeout (20 s)


def test_proxied_prefix_without_its_slash_redirects(pyginx: Pyginx, fault_origin: FaultOrigin) -> None:
    """Issue 12 item 6: `GET /py` for a proxied `location /py/` is nginx's auto_redirect (301 to
    /py/, args kept), even when `location /` would match it; it was a 404 from `/`."""
    loc = "- location: /\n  return: 200 root\n"
    pyginx.write_config(_config(pyginx, fault_origin, location_extra=loc))
    pyginx.start()
    for method in (b"GET", b"POST"):
        s = socket.create_connection(("127.0.0.1", pyginx.port), timeout=5)
        with s:
            s.sendall(method + b" /py?a=1 HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n")
            status, headers, _ = read_response(s)
        assert status == 301
        assert headers["location"] == f"http://localhost:{pyginx.port}/py/?a=1"
    assert statuses(_one(pyginx.port, b"GET /pyx HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")) == [200]
    assert not fault_origin.heads
