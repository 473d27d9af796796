"""Static files against the real daemon (issue 4): byte-exact full and ranged downloads of a
multi-megabyte file with sendfile on and off, HEAD, conditionals, index / autoindex / try_files /
alias / gzip_static, redirects, error pages, symlink rules, open_file_cache under changing files,
a file truncated while it is being sent, and a stalled client that must not stall the worker."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import threading
import time

import pytest

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401

MIB = 1024 * 1024
ALLOWED_LOG = ("was truncated",)


def config(port: int, http: str = "", server: str = "", workers: int = 2) -> str:
    return f"""
worker_processes: {workers}
error_log: logs/error.log info
pid: logs/pyginx.pid
worker_shutdown_timeout: 5s
http:
  access_log: logs/access.log
  keepalive_timeout: 5s
  send_timeout: 10s
  default_type: application/octet-stream
{_indent(http, 2)}
  servers:
    - listen: 127.0.0.1:{port}
      server_name: localhost
      root: html
{_indent(server, 6)}
"""


def _indent(text: str, n: int) -> str:
    lines = [line for line in text.strip("\n").splitlines()]
    if not lines:
        return ""
    strip = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(" " * n + line[strip:] for line in lines)


def request(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None, timeout: float = 20.0
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()  # raises IncompleteRead if body and Content-Length disagree
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


@pytest.fixture(scope="module")
def big() -> bytes:
    return os.urandom(5 * MIB + 12345)


def _start(p: Pyginx, http: str = "", server: str = "", workers: int = 2) -> None:
    p.write_config(config(p.port, http, server, workers))
    p.start()


class Reader:
    """Responses read from a keep-alive connection, leftover bytes kept for the next one."""

    def __init__(self, s: socket.socket) -> None:
        self.s = s
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), headers, body


# ------------------------------------------------------------------ byte-exact downloads


@pytest.mark.parametrize("sendfile", [True, False])
@pytest.mark.parametrize("cache", ["open_file_cache: max=100 inactive=20s", "open_file_cache: off"])
def test_big_file_full_and_ranges(pyginx: Pyginx, big: bytes, sendfile: bool, cache: str) -> None:
    (pyginx.prefix / "html" / "big.bin").write_bytes(big)
    _start(pyginx, http=f"sendfile: {str(sendfile).lower()}\n{cache}")
    n = len(big)
    status, headers, body = request(pyginx.port, "/big.bin")
    assert status == 200 and body == big
    assert headers["content-length"] == str(n) and headers["accept-ranges"] == "bytes"
    assert headers["content-type"] == "application/octet-stream"
    st = os.stat(pyginx.prefix / "html" / "big.bin")
    assert headers["etag"] == f'"{int(st.st_mtime):x}-{n:x}"'

    for rng, start, end in [
        ("bytes=0-0", 0, 1),
        ("bytes=1000000-2999999", 1000000, 3000000),
        (f"bytes={n - 100}-", n - 100, n),
        ("bytes=-777", n - 777, n),
        (f"bytes=4000000-{n + 100000}", 4000000, n),
    ]:
        status, headers, body = request(pyginx.port, "/big.bin", headers={"Range": rng})
        assert status == 206, rng
        assert body == big[start:end], rng
        assert headers["content-range"] == f"bytes {start}-{end - 1}/{n}"
        assert headers["content-length"] == str(end - start)

    spans = [(0, 100), (2 * MIB, 3 * MIB), (n - 10, n)]
    rng = "bytes=" + ",".join(f"{a}-{b - 1}" for a, b in spans)
    status, headers, body = request(pyginx.port, "/big.bin", headers={"Range": rng})
    assert status == 206 and int(headers["content-length"]) == len(body)
    boundary = headers["content-type"].split("boundary=")[1]
    expected = (
        b"".join(
            f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {a}-{b - 1}/{n}\r\n\r\n".encode()
            + big[a:b]
            for a, b in spans
        )
        + f"\r\n--{boundary}--\r\n".encode()
    )
    assert body == expected

    status, headers, body = request(pyginx.port, "/big.bin", headers={"Range": f"bytes={n}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{n}"
    pyginx.check_log()


def test_head_and_keepalive_after_big_file(pyginx: Pyginx, big: bytes) -> None:
    (pyginx.prefix / "html" / "big.bin").write_bytes(big)
    (pyginx.prefix / "html" / "small.txt").write_bytes(b"small\n")
    _start(pyginx, http="sendfile: true")
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=20) as s:
        r = Reader(s)
        s.sendall(b"HEAD /big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = r.response(head_only=True)
        assert status == 200 and headers["content-length"] == str(len(big))
        status, _, body = r.response()
        assert (status, body) == (200, b"small\n")  # the HEAD left nothing behind on the wire
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: a\r\n\r\n")
        status, headers, body = r.response()
        assert status == 200 and body == big
        status, headers, body = r.response()
        assert status == 200 and body == b"small\n"
        assert r.buf == b""


# ------------------------------------------------------------------ behaviour


def test_static_behaviour(pyginx: Pyginx) -> None:
    html = pyginx.prefix / "html"
    (html / "a.txt").write_bytes(b"0123456789")
    (html / "dir").mkdir()
    (html / "dir" / "index.html").write_bytes(b"dir index")
    (html / "list").mkdir()
    (html / "list" / "f.txt").write_bytes(b"12345")
    (html / "list" / ".secret").write_bytes(b"hidden")
    (html / "empty").mkdir()
    (html / "404.html").write_bytes(b"custom 404")
    (html / "app.js").write_bytes(b"plain js")
    gz = gzip.compress(b"plain js")
    (html / "app.js.gz").write_bytes(gz)
    images = pyginx.prefix / "images"
    images.mkdir()
    (images / "logo.png").write_bytes(b"PNG!")
    _start(
        pyginx,
        server=f"""
        error_page: {{404: /404.html}}
        locations:
          - location: /
            try_files: $uri $uri/ =404
          - location: /list/
            autoindex: true
          - location: /img/
            alias: {images}/
            expires: 1h
            add_header: {{X-Static: hit}}
          - location: /gz/
            alias: {html}/
            gzip_static: true
            gzip_vary: true
          - location: ~ ^/pics/(.+)\\.jpg$
            alias: {images}/$1.png
        """,
    )
    port = pyginx.port
    status, h, body = request(port, "/a.txt")
    assert (status, body, h["content-type"]) == (200, b"0123456789", "text/plain")
    etag = h["etag"]
    assert request(port, "/a.txt", headers={"If-None-Match": etag})[0] == 304
    assert request(port, "/a.txt", headers={"If-Modified-Since": h["last-modified"]})[0] == 304
    assert request(port, "/a.txt", headers={"If-Match": '"other"'})[0] == 412
    assert request(port, "/a.txt", headers={"Range": "bytes=2-3"})[2] == b"23"
    assert request(port, "/a.txt", headers={"Range": "bytes=2-3", "If-Range": '"old"'})[0] == 200
    assert request(port, "/a.txt", "HEAD")[2] == b""
    assert request(port, "/a.txt", "POST")[0] == 405
    assert request(port, "/a.txt", "DELETE")[0] == 405

    status, h, _ = request(port, "/dir?x=1")
    assert status == 301 and h["location"] == f"http://127.0.0.1:{port}/dir/?x=1"
    assert request(port, "/dir/")[2] == b"dir index"
    status, _, body = request(port, "/empty/")
    assert status == 403
    status, _, body = request(port, "/nope")
    assert (status, body) == (404, b"custom 404")

    status, h, body = request(port, "/list/")
    assert status == 200 and b'<a href="f.txt">f.txt</a>' in body and b"secret" not in body

    status, h, body = request(port, "/img/logo.png")
    assert (status, body, h["content-type"]) == (200, b"PNG!", "image/png")
    assert h["cache-control"] == "max-age=3600" and h["x-static"] == "hit" and "expires" in h
    assert request(port, "/pics/logo.jpg")[2] == b"PNG!"

    status, h, body = request(port, "/gz/app.js", headers={"Accept-Encoding": "gzip"})
    assert (status, body, h["content-encoding"], h["vary"]) == (200, gz, "gzip", "Accept-Encoding")
    status, h, body = request(port, "/gz/app.js")
    assert body == b"plain js" and "content-encoding" not in h and h["vary"] == "Accept-Encoding"
    pyginx.check_log()


def test_symlink_rules(pyginx: Pyginx) -> None:
    html = pyginx.prefix / "html"
    (pyginx.prefix / "outside.txt").write_bytes(b"OUTSIDE")
    (html / "inside.txt").write_bytes(b"inside")
    (html / "link_in").symlink_to("inside.txt")
    (html / "link_out").symlink_to(pyginx.prefix / "outside.txt")
    (html / "dir_out").symlink_to(pyginx.prefix)
    _start(
        pyginx,
        server="""
        locations:
          - location: /
          - location: /strict/
            alias: html/
            disable_symlinks: true
          - location: /loose/
            alias: html/
            symlinks_outside_root: true
        """.replace("html/", str(html) + "/"),
    )
    port = pyginx.port
    assert request(port, "/link_in")[2] == b"inside"
    assert request(port, "/link_out")[0] == 403
    assert request(port, "/dir_out/outside.txt")[0] == 403
    assert request(port, "/strict/inside.txt")[2] == b"inside"
    assert request(port, "/strict/link_in")[0] == 403
    assert request(port, "/loose/link_out")[2] == b"OUTSIDE"


# ------------------------------------------------------------------ changing files


def test_changing_file_never_disagrees_with_its_length(pyginx: Pyginx) -> None:
    html = pyginx.prefix / "html"
    target = html / "c.txt"
    versions = [bytes([65 + i]) * (1000 + 997 * i) for i in range(8)]
    target.write_bytes(versions[0])
    _start(pyginx, http="open_file_cache: max=100 inactive=20s\nopen_file_cache_valid: 0s")
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            data = versions[i % len(versions)]
            if i % 2:
                tmp = html / "c.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, target)  # atomic replacement: a whole version or the previous one
            else:
                with open(target, "r+b") as f:  # in place: readers may see a mix, never a lie
                    f.truncate(0)
                    f.write(data)

    t = threading.Thread(target=writer)
    t.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", pyginx.port, timeout=10)
        for _ in range(300):
            conn.request("GET", "/c.txt")
            resp = conn.getresponse()
            body = resp.read()  # IncompleteRead if Content-Length promised more than was sent
            assert int(resp.getheader("content-length") or -1) == len(body)
        conn.close()
    finally:
        stop.set()
        t.join()
    pyginx.check_log()


@pytest.mark.parametrize("sendfile", [True, False])
def test_file_truncated_while_sending_closes_the_connection(pyginx: Pyginx, sendfile: bool) -> None:
    path = pyginx.prefix / "html" / "shrink.bin"
    size = 64 * MIB
    with open(path, "wb") as f:
        f.truncate(size)
    pyginx.allow = ALLOWED_LOG
    _start(pyginx, http=f"sendfile: {str(sendfile).lower()}", workers=1)
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=20) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"GET /shrink.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        got = s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: %d" % size in got
        time.sleep(0.3)  # let the server fill the socket buffers and wait for us
        with open(path, "r+b") as f:
            f.truncate(MIB)
        total = len(got)
        s.settimeout(20)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            total += len(chunk)
    assert total < size  # cut short by a close, never padded or left hanging
    wait_for(lambda: "was truncated" in pyginx.error_log(), 5, "the truncation alert")
    pyginx.check_log(allow=ALLOWED_LOG)


def test_stalled_client_does_not_block_the_worker(pyginx: Pyginx, big: bytes) -> None:
    (pyginx.prefix / "html" / "big.bin").write_bytes(big * 4)
    (pyginx.prefix / "html" / "small.txt").write_bytes(b"quick")
    _start(pyginx, http="sendfile: true", workers=1)
    stalled = socket.create_connection(("127.0.0.1", pyginx.port), timeout=10)
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        stalled.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        stalled.recv(1024)  # the response started; now we stop reading
        time.sleep(0.2)
        t0 = time.monotonic()
        status, _, body = request(pyginx.port, "/small.txt", timeout=5)
        assert (status, body) == (200, b"quick")
        assert time.monotonic() - t0 < 2.0
    finally:
        stalled.close()
    pyginx.check_log()
