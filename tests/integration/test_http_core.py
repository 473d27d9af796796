"""The HTTP/1.1 core against the real daemon (issue 2): every bad input gets exactly its status,
keep-alive, pipelining, limits and timeouts, routing, return and error_page, the access log."""

from __future__ import annotations

import socket
import time

import pytest

from tests.integration.harness import Pyginx, basic_config, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.rawhttp import exchange, read_response, read_until_close, statuses

BAD_INPUTS = [
    (
        "cl+te",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("dup cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("bad cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
    ("te gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("te in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("no host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("dup host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    ("bad method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("lower method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("http/0.9", b"GET /\r\n", 400),
    ("http/1.01", b"GET / HTTP/1.01\r\nHost: a\r\n\r\n", 400),
    ("bare lf", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("ws before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    ("nul", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    ("bel", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x07c\r\n\r\n", 400),
    ("del", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n", 400),
    ("bare cr", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", 400),
    ("trace", b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    ("space in uri", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("ctl in uri", b"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("%00", b"GET /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad escape", b"GET /a%g1 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("climb", b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("encoded climb", b"GET /%2e%2e/etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("uri too long", b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("header too long", b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"x" * 9000 + b"\r\n\r\n", 400),
    (
        "too many headers",
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 4000) for i in range(10))
        + b"\r\n",
        400,
    ),
]


@pytest.fixture
def server(pyginx: Pyginx) -> Pyginx:
    pyginx.write_config(
        f"""
worker_processes: 1
error_log: logs/error.log info
http:
  access_log: logs/access.log
  client_max_body_size: 100
  keepalive_timeout: 2s
  client_header_timeout: 1s
  servers:
    - listen: 127.0.0.1:{pyginx.port}
      locations:
        - location: /
          return: 200 ok
"""
    )
    pyginx.start()
    return pyginx


def test_bad_inputs_get_exact_status_and_close(server: Pyginx) -> None:
    for name, data, status in BAD_INPUTS:
        out = exchange(server.port, data)
        assert statuses(out) == [status], (name, out[:200])
        assert b"Connection: close" in out, name
    # one bad request never harms another connection: the server still answers
    assert server.get("/").status == 200


def test_unknown_method_token_reaches_the_handler(server: Pyginx) -> None:
    out = exchange(server.port, b"PURGE-IT / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert statuses(out) == [200]


def test_keepalive_and_pipelining_in_order(server: Pyginx) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        s.settimeout(5)
        # the three responses may arrive in one segment: read until the third is complete
        out = b""
        deadline = time.monotonic() + 5
        while (out.count(b"HTTP/1.1 200 OK") < 3 or not out.endswith(b"ok")) and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        first, second, third = out.split(b"HTTP/1.1 200 OK")[1:]
        assert first.endswith(b"\r\n\r\nok") and b"Connection: keep-alive" in first
        # HEAD: the same headers, no body; the third response follows directly
        assert second.endswith(b"Content-Length: 2\r\nConnection: keep-alive\r\n\r\n")
        assert third.endswith(b"\r\n\r\nok")


def read_until_close_or(s: socket.socket, suffix: bytes) -> bytes:
    out = b""
    deadline = time.monotonic() + 5
    while not out.endswith(suffix) and time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_http10_with_and_without_keepalive(server: Pyginx) -> None:
    out = exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert statuses(out) == [200] and b"Connection: close" in out
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        st, h, _ = read_response(s)
        assert st == 200 and h["connection"] == "keep-alive"
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert read_response(s)[0] == 200


def test_expect_100_continue_and_body(server: Pyginx) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        assert read_response(s)[0] == 200
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: y\r\n\r\n"
        )
        assert read_response(s)[0] == 200


def test_body_over_limit_is_413_before_reading(server: Pyginx) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        out = read_until_close(s)
        assert statuses(out) == [413]
        assert b"100 Continue" not in out


def test_header_timeout_is_one_deadline(server: Pyginx) -> None:
    # client_header_timeout 1s: a client dribbling header bytes is cut off after ~1s in total
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        start = time.monotonic()
        closed = False
        for _ in range(80):
            try:
                s.sendall(b"X")
            except OSError:
                closed = True
                break
            s.settimeout(0.1)
            try:
                if s.recv(100) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed
        assert time.monotonic() - start < 6.0  # 1s deadline for the whole head, not per byte


def test_keepalive_timeout_closes_idle(server: Pyginx) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(s)[0] == 200
        start = time.monotonic()
        assert read_until_close(s, timeout=10) == b""
        assert 1.5 < time.monotonic() - start < 8.0


def test_access_log_combined(server: Pyginx) -> None:
    server.get("/logged?x=1", headers={"User-Agent": 'agent "q"', "Referer": "http://r/"})
    log = server.prefix / "logs" / "access.log"
    line = wait_for(lambda: next((ln for ln in _lines(log) if "/logged" in ln), None), 5, "access log line")
    assert '"GET /logged?x=1 HTTP/1.1" 200 2 "http://r/" "agent \\x22q\\x22"' in line
    assert line.startswith("127.0.0.1 - - [")


def _lines(path: object) -> list[str]:
    try:
        return open(str(path)).read().splitlines()
    except FileNotFoundError:
        return []


def test_routing_return_and_error_page(pyginx: Pyginx) -> None:
    port = pyginx.port
    (pyginx.prefix / "html" / "oops.html").write_text("custom not found\n")
    pyginx.write_config(
        f"""
worker_processes: 1
error_log: logs/error.log info
http:
  servers:
    - listen: 127.0.0.1:{port}
      server_name: default.test
      root: html
      error_page: {{404: /oops.html}}
      locations:
        - location: /
          return: 200 root
        - location: = /exact
          return: 200 exact
        - location: ^~ /static/
          return: 200 static
        - location: ~ \\.php$
          return: 200 php
        - location: /static/deeper/x.php
          return: 200 longest-prefix
        - location: = /missing
          return: 404
        - location: = /oops.html
        - location: = /moved
          return: 301 /new/place
    - listen: 127.0.0.1:{port}
      server_name: "*.example.com"
      locations:
        - location: /
          return: 200 wildcard
    - listen: 127.0.0.1:{port}
      server_name: "~^api[0-9]+\\\\.test$"
      locations:
        - location: /
          return: 200 regex
"""
    )
    pyginx.start()
    cases = {
        "/": "root",
        "/exact": "exact",
        "/exact/no": "root",
        "/static/a.php": "static",
        "/a.php": "php",
        "/static/deeper/x.php": "php",  # the longest prefix is not ^~, so regexes are checked
    }
    for path, body in cases.items():
        r = pyginx.get(path)
        assert (r.status, r.body.decode()) == (200, body), path
    assert pyginx.get("/", headers={"Host": "www.example.com"}).body == b"wildcard"
    assert pyginx.get("/", headers={"Host": "api12.test"}).body == b"regex"
    assert pyginx.get("/", headers={"Host": "unknown"}).body == b"root"
    r = pyginx.get("/missing")
    assert r.status == 404 and r.body == b"custom not found\n"
    r = pyginx.get("/moved", headers={"Host": "default.test"})
    assert r.status == 301 and r.headers["location"] == f"http://default.test:{port}/new/place"


def test_single_process_mode(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, main="master_process: false", body="single"))
    pid = pyginx.start()
    assert pyginx.get("/").body == b"single"
    assert pyginx.workers(pid) == []
