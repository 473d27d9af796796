"""HTTP/2 over TLS: static files and proxying over streams, bodies with flow control, concurrency, large
headers, trailers, GOAWAY on quit, access log lines, ALPN fallback, curl; and the attack defences."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import h2.errors
import hpack
import hyperframe.frame as hf
import pytest

from tests.integration.h2tools import H2Client
from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_tls_server import pki_fixture, tls_config  # noqa: F401
from tests.integration.tlstools import Pki, https_get


class EchoOrigin:
    """A plain HTTP/1.1 origin: answers with what it got (method, path, body length), `?slow` waits."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding") == "chunked":
                    got = b""
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        got += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    got = self.rfile.read(length)
                if "slow" in self.path:
                    time.sleep(0.8)
                body = json.dumps({"method": self.command, "path": self.path, "body": len(got)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="origin")
def origin_fixture() -> Iterator[EchoOrigin]:
    o = EchoOrigin()
    yield o
    o.close()


def h2_config(pyginx: Pyginx, origin_port: int = 1, extra: str = "", http: str = "") -> None:
    pyginx.write_config(
        tls_config(
            pyginx.port,
            f"""
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              http2: true
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              root: html
              send_timeout: 2s
              client_body_timeout: 2s
              {extra}
              locations:
                - location: /
                - location: /api/
                  proxy_pass: http://127.0.0.1:{origin_port}
                  proxy_request_buffering: false
                - location: = /v
                  return: 200 "$server_protocol $scheme $https $ssl_alpn_protocol"
            """,
            workers=1,
            http=http,
        )
    )


@pytest.fixture(name="site")
def site_fixture(pyginx: Pyginx, pki: Pki, origin: EchoOrigin) -> Pyginx:
    pki.issue("site", "localhost")
    (pyginx.prefix / "html" / "big.bin").write_bytes(bytes(range(256)) * 2048)  # 512 KiB
    h2_config(pyginx, origin.port)
    pyginx.start()
    return pyginx


def client(pyginx: Pyginx, pki: Pki, **kw: object) -> H2Client:
    c = H2Client(pyginx.port, pki.client_context(), **kw)  # type: ignore[arg-type]
    assert c.alpn == "h2"
    return c


def test_static_proxy_and_variables_over_streams(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki)
    v = c.get("/v")
    assert (v.status, v.data) == (200, b"HTTP/2.0 https on h2")
    assert "connection" not in v.headers and "keep-alive" not in v.headers
    index = c.get("/")
    assert index.status == 200 and index.data == b"<h1>pyginx test</h1>\n"
    big = c.get("/big.bin")  # past the initial 64 KiB window: sent as the client opens it
    assert big.status == 200 and big.data == bytes(range(256)) * 2048
    missing = c.get("/missing")
    assert missing.status == 404 and b"404 Not Found" in missing.data
    api = c.get("/api/x?y=1")
    assert api.status == 200 and json.loads(api.data) == {"method": "GET", "path": "/api/x?y=1", "body": 0}
    head = c.get("/", method="HEAD")
    assert head.status == 200 and head.data == b""
    c.close()
    access = (site.prefix / "logs" / "access.log").read_text()
    assert '"GET /big.bin HTTP/2.0" 200 524288 ' in access
    assert '"GET /missing HTTP/2.0" 404 ' in access


def test_request_bodies_with_flow_control_and_trailers(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki)
    body = b"x" * 300_000  # more than the 64 KiB window: the server must give window back
    sid = c.start("/api/upload", method="POST", headers=[("content-length", str(len(body)))], end=False)
    c.send_body(sid, body)
    r = c.wait(sid)[0]
    assert r.status == 200 and json.loads(r.data)["body"] == len(body)
    # a body of unknown length, then trailers
    sid = c.start("/api/chunked", method="POST", end=False)
    c.send_body(sid, b"y" * 70_000, end=False)
    c.h2.send_headers(sid, [("x-checksum", "abc")], end_stream=True)
    c.flush()
    r = c.wait(sid)[0]
    assert r.status == 200 and json.loads(r.data) == {
        "method": "POST",
        "path": "/api/chunked",
        "body": 70_000,
    }
    c.close()


def test_concurrent_streams_and_large_headers(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki)
    sids = [c.start(f"/api/s{i}") for i in range(20)] + [c.start("/big.bin") for _ in range(3)]
    replies = c.wait(*sids)
    assert all(r.status == 200 for r in replies)
    assert [json.loads(r.data)["path"] for r in replies[:20]] == [f"/api/s{i}" for i in range(20)]
    large = c.get("/v", headers=[("x-large", "a" * 7000), ("x-large-2", "b" * 7000)])
    assert large.status == 200
    c.close()


def test_many_large_responses_at_once_all_complete(site: Pyginx, pki: Pki) -> None:
    """Large windows and several big files in flight: when the last stream ends, megabytes may still
    wait in the transport for a client that does read; that is no control-frame flood."""
    expected = bytes(range(256)) * 4096 * 3  # 3 MiB
    (site.prefix / "html" / "huge.bin").write_bytes(expected)
    c = client(site, pki, settings={4: 1 << 30})  # INITIAL_WINDOW_SIZE: 1 GiB per stream (h2load's)
    c.h2.increment_flow_control_window((1 << 30) - 65535)
    c.flush()
    sids = [c.start("/huge.bin") for _ in range(8)]
    replies = c.wait(*sids, timeout=60)
    assert [(r.status, r.reset, len(r.data)) for r in replies] == [(200, None, len(expected))] * 8
    assert all(r.data == expected for r in replies)
    assert "does not read" not in site.error_log()
    c.close()


def test_alpn_falls_back_to_http11_and_listen_http2_is_deprecated(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl http2
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              locations:
                - location: /
                  return: 200 "$server_protocol"
            """,
        )
    )
    out = pyginx.run_cli("-t")
    assert out.returncode == 0
    assert 'the "listen ... http2" directive is deprecated, use the "http2" directive instead' in out.stderr
    pyginx.start()
    assert https_get(pyginx.port, pki.client_context(alpn=["http/1.1"])).body == b"HTTP/1.1"
    assert client(pyginx, pki).get("/").data == b"HTTP/2.0"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_speaks_http2(site: Pyginx, pki: Pki) -> None:
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "--cacert",
            str(pki.ca_file()),
            "-w",
            " %{http_version}",
            f"https://localhost:{site.port}/v",
        ],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert out.stdout == b"HTTP/2.0 https on h2 2"


def test_quit_sends_goaway_and_finishes_the_stream_in_flight(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki)
    assert c.get("/v").status == 200
    sid = c.start("/api/slow")
    time.sleep(0.2)  # the request is at the origin now (it answers after 0.8 s)
    site.signal(signal.SIGQUIT)
    r = c.wait(sid, timeout=10)[0]
    assert r.status == 200 and json.loads(r.data)["path"] == "/api/slow"
    assert c.goaways == [0]  # graceful GOAWAY (NO_ERROR) before the stream's answer
    c.wait_closed()
    c.close()


# ---------------------------------------------------------------------------------------------- attacks


def _still_serves(site: Pyginx, pki: Pki) -> None:
    fresh = client(site, pki)
    assert fresh.get("/v").status == 200
    fresh.close()
    assert "Traceback" not in site.error_log()


def test_rapid_reset_is_cut_off(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki)
    for _ in range(600):  # CVE-2023-44487: open and cancel streams as fast as possible
        if c.closed or c.terminated:
            break
        sid = c.start("/big.bin")
        c.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        try:
            c.flush()
        except OSError:
            break
    c.wait_closed()
    assert c.terminated is not None and c.terminated.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert "rapid reset" in site.error_log()
    _still_serves(site, pki)


def _frame(frame: hf.Frame) -> bytes:
    return frame.serialize()


def test_continuation_flood_is_a_connection_error(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki)
    block = hpack.Encoder().encode(
        [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "x")]
    )
    head = hf.HeadersFrame(1, block)  # no END_HEADERS: CONTINUATION frames must follow
    c.send_raw(_frame(head))
    try:
        for i in range(2000):
            cont = hf.ContinuationFrame(1, hpack.Encoder().encode([(f"x-{i}", "v" * 10)]))
            c.send_raw(_frame(cont))
    except OSError:
        pass
    c.wait_closed()
    _still_serves(site, pki)


def test_hpack_bomb_is_refused(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki)
    enc = hpack.Encoder()
    headers = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "x")]
    headers += [("x-bomb", "a" * 4000)] * 200  # one table entry referenced 200 times: 800 KB decoded
    block = enc.encode(headers)
    assert len(block) < 5000
    frame = hf.HeadersFrame(1, block)
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    c.send_raw(_frame(frame))
    c.wait_closed()
    assert c.terminated is not None
    _still_serves(site, pki)


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_control_frame_floods_are_cut_off(site: Pyginx, pki: Pki, kind: str) -> None:
    c = client(site, pki)
    try:
        for i in range(3000):
            frame: hf.Frame = (
                hf.PingFrame(0, (i).to_bytes(8, "big"))
                if kind == "ping"
                else hf.SettingsFrame(0, {4: 65535 + i})
            )
            c.send_raw(_frame(frame))
    except OSError:
        pass
    c.wait_closed()
    assert "too many SETTINGS or PING frames" in site.error_log() or "does not read" in site.error_log()
    _still_serves(site, pki)


def test_zero_window_stall_is_closed_by_send_timeout(site: Pyginx, pki: Pki) -> None:
    c = client(site, pki, settings={4: 0})  # INITIAL_WINDOW_SIZE 0: the server may send no DATA
    sid = c.start("/big.bin")
    started = time.monotonic()
    c.wait_closed(timeout=10)
    assert time.monotonic() - started < 8
    assert c.replies[sid].data == b""
    wait_for(lambda: "while sending response to client" in site.error_log(), what="the send timeout")
    _still_serves(site, pki)


def test_stream_count_exhaustion(pyginx: Pyginx, pki: Pki, origin: EchoOrigin) -> None:
    pki.issue("site", "localhost")
    h2_config(pyginx, origin.port, extra="http2_max_concurrent_streams: 4")
    pyginx.start()
    c = client(pyginx, pki)
    # four streams hold their slots by never sending the body they announce
    held = [
        c.start("/api/held", method="POST", headers=[("content-length", "10")], end=False) for _ in range(4)
    ]
    extra = c.start("/v")  # one more than allowed: refused alone, the connection goes on
    deadline = time.monotonic() + 10
    while c.replies[extra].reset is None and not c.closed and time.monotonic() < deadline:
        c.pump(0.2)
    assert c.replies[extra].reset == h2.errors.ErrorCodes.REFUSED_STREAM and c.terminated is None
    assert "concurrent streams exceeded 4" in pyginx.error_log()
    c.close()
    # and held slots do not last: client_body_timeout (2 s) frees them
    c2 = client(pyginx, pki)
    held = [
        c2.start("/api/held", method="POST", headers=[("content-length", "10")], end=False) for _ in range(4)
    ]
    replies = c2.wait(*held, timeout=10)
    assert all(r.reset is not None or r.status in (408, 400) for r in replies), replies
    assert c2.get("/v").status == 200  # the slots are free again
    c2.close()
    _still_serves(pyginx, pki)


def test_http11_over_tls_reads_a_large_body_and_pipelined_requests_whole(site: Pyginx, pki: Pki) -> None:
    """More than uvloop's TLS read size (256 KiB) at once: a 1 MiB body and a request pipelined
    behind it in one send arrive whole and in order."""
    ctx = pki.client_context(["http/1.1"])
    body = bytes(range(256)) * 4096
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(
                b"POST /api/up HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
                + b"GET /v HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            got = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
    assert b'"body": 1048576' in got
    assert got.count(b"HTTP/1.1 200") == 2 and got.endswith(b"HTTP/1.1 https on http/1.1")
