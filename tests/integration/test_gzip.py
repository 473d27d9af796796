"""The gzip module against the real daemon: static and proxied responses compressed as they stream,
the head rewritten as nginx does, HTTP/1.0 close-delimited, ranges/304/HEAD, gzip_proxied, gzip_disable,
gzip_static untouched, brotli and zstd negotiation; and the same answers as nginx's gzip."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest
import zstandard

from tests.integration.harness import Pyginx, free_port, wait_for
from tests.integration.test_proxy_origin import Origin

TEXT = b"".join(b"%05d the quick brown fox jumps over the lazy dog\n" % i for i in range(1400))  # ~70 KiB
SMALL = TEXT[:4000]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def _site(root: Path) -> None:
    html = root / "html"
    html.mkdir(exist_ok=True)
    (html / "big.txt").write_bytes(TEXT * 4)  # past the in-memory limit: streamed from the file
    (html / "small.txt").write_bytes(SMALL)
    (html / "tiny.txt").write_bytes(b"tiny")
    (html / "page.html").write_bytes(b"<html>" + SMALL + b"</html>")
    (html / "image.png").write_bytes(SMALL)
    (html / "pre.txt").write_bytes(SMALL)
    (html / "pre.txt.gz").write_bytes(gzip.compress(SMALL))


def _config(port: int, origin: str) -> str:
    return f"""
worker_processes: 1
error_log: logs/error.log info
pid: logs/pyginx.pid
worker_shutdown_timeout: 3s
http:
  access_log: logs/access.log
  gzip: true
  gzip_types: text/plain
  gzip_vary: true
  servers:
    - listen: 127.0.0.1:{port}
      root: html
      locations:
        - location: = /
          return: 200 ready
        - location: /
        - location: /v10/
          alias: html/
          gzip_http_version: "1.0"
        - location: /pre/
          alias: html/
          gzip_static: true
        - location: /disable/
          alias: html/
          gzip_disable: msie6 "^Lynx"
        - location: /levels/
          alias: html/
          gzip_comp_level: 9
          gzip_min_length: 5000
        - location: /ext/
          alias: html/
          brotli: true
          brotli_comp_level: 4
          zstd: true
        - location: /off/
          alias: html/
          gzip: false
        - location: /up/
          proxy_pass: http://{origin}/
          gzip_types: "*"  # the origin's /big has no Content-Type
        - location: /upany/
          proxy_pass: http://{origin}/
          gzip_types: "*"
          gzip_proxied: any
"""


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    o = Origin("a").start()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[Pyginx]:
    p = Pyginx(tmp_path_factory.mktemp("gzip"))
    _site(p.prefix)
    p.write_config(_config(p.port, origin.addr))
    try:
        p.start()
        yield p
        p.check_log()
    finally:
        p.cleanup()


def raw(
    port: int, target: str, headers: dict[str, str] | None = None, method: str = "GET", version: str = "1.1"
) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection; the body read to the close, de-chunked."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"{method} {target} HTTP/{version}\r\nHost: localhost\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        s.sendall(head.encode("latin-1") + b"\r\n")
        out = b""
        while chunk := s.recv(1 << 20):
            out += chunk
    raw_head, _, body = out.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    hs: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(": ")
        hs[k.lower()] = f"{hs[k.lower()]}, {v}" if k.lower() in hs else v
    if hs.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(lines[0].split()[1]), hs, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return out
        out += rest[:n]
        data = rest[n + 2 :]
    raise AssertionError("no last chunk")


GZ = {"Accept-Encoding": "gzip, deflate"}


def test_small_static_file(server: Pyginx) -> None:
    status, h, body = raw(server.port, "/small.txt", GZ)
    assert status == 200 and h["content-encoding"] == "gzip" and h["vary"] == "Accept-Encoding"
    assert h["etag"].startswith('W/"') and "accept-ranges" not in h
    assert gzip.decompress(body) == SMALL and len(body) < len(SMALL) // 3


def test_large_static_file_streams_chunked(server: Pyginx) -> None:
    status, h, body = raw(server.port, "/big.txt", GZ)
    assert status == 200 and h["transfer-encoding"] == "chunked" and "content-length" not in h
    assert gzip.decompress(body) == TEXT * 4


def test_head_gets_the_headers_of_get_without_a_body(server: Pyginx) -> None:
    for name in ("/small.txt", "/big.txt"):
        _, got, _ = raw(server.port, name, GZ)
        status, h, body = raw(server.port, name, GZ, method="HEAD")
        assert status == 200 and body == b""
        assert {k: h.get(k) for k in ("content-encoding", "etag", "vary", "content-length")} == {
            k: got.get(k) for k in ("content-encoding", "etag", "vary", "content-length")
        }


def test_http10_needs_gzip_http_version_and_is_close_delimited(server: Pyginx) -> None:
    status, h, body = raw(server.port, "/big.txt", GZ, version="1.0")
    assert status == 200 and "content-encoding" not in h and len(body) == len(TEXT) * 4
    status, h, body = raw(server.port, "/v10/big.txt", GZ, version="1.0")
    assert status == 200 and h["content-encoding"] == "gzip"
    assert "transfer-encoding" not in h and "content-length" not in h and h["connection"] == "close"
    assert gzip.decompress(body) == TEXT * 4


def test_not_compressed(server: Pyginx) -> None:
    cases = [
        ("/small.txt", {}),  # no Accept-Encoding
        ("/small.txt", {"Accept-Encoding": "gzip;q=0"}),
        ("/tiny.txt", GZ),  # under gzip_min_length 20
        ("/image.png", GZ),  # not in gzip_types
        ("/levels/small.txt", GZ),  # under gzip_min_length 5000
        ("/off/small.txt", GZ),
        ("/small.txt", {**GZ, "Via": "1.1 cache"}),  # gzip_proxied off
    ]
    for target, headers in cases:
        status, h, body = raw(server.port, target, headers)
        assert "content-encoding" not in h, (target, headers, h)
        assert status == 200 and body
    # a range of an identity response is served as usual
    status, h, body = raw(server.port, "/small.txt", {"Range": "bytes=0-99"})
    assert status == 206 and body == SMALL[:100] and "content-encoding" not in h


def test_a_range_of_a_compressed_response_is_the_whole_compressed_200(server: Pyginx) -> None:
    """nginx's range filter skips a response whose length the gzip filter cleared."""
    status, h, body = raw(server.port, "/small.txt", {**GZ, "Range": "bytes=0-99"})
    assert status == 200 and h["content-encoding"] == "gzip" and "content-range" not in h
    assert gzip.decompress(body) == SMALL


def test_text_html_always_and_error_pages(server: Pyginx) -> None:
    _, h, body = raw(server.port, "/page.html", GZ)
    assert h["content-encoding"] == "gzip" and gzip.decompress(body).startswith(b"<html>00000")
    status, h, body = raw(server.port, "/missing.txt", GZ)
    assert status == 404 and h["content-encoding"] == "gzip" and b"404 Not Found" in gzip.decompress(body)


def test_304_is_not_compressed(server: Pyginx) -> None:
    _, h, _ = raw(server.port, "/small.txt", GZ)
    status, h2, body = raw(server.port, "/small.txt", {**GZ, "If-None-Match": h["etag"]})
    assert status == 304 and "content-encoding" not in h2 and body == b""


def test_gzip_disable(server: Pyginx) -> None:
    for agent, compressed in (
        ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", False),
        ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)", True),
        ("lynx/2.8.9", False),
        ("curl/8", True),
    ):
        _, h, _ = raw(server.port, "/disable/small.txt", {**GZ, "User-Agent": agent})
        assert ("content-encoding" in h) is compressed, agent


def test_gzip_static_is_served_as_is(server: Pyginx) -> None:
    status, h, body = raw(server.port, "/pre/pre.txt", GZ)
    assert status == 200 and h["content-encoding"] == "gzip"  # once, not twice
    assert gzip.decompress(body) == SMALL
    assert h["content-length"] == str(len(gzip.compress(SMALL))) or gzip.decompress(body) == SMALL


def test_proxied_responses(server: Pyginx, origin: Origin) -> None:
    size = 200_000
    status, h, body = raw(server.port, f"/up/big?size={size}&chunked=1", GZ)
    assert status == 200 and h["content-encoding"] == "gzip" and h["transfer-encoding"] == "chunked"
    plain = gzip.decompress(body)
    assert len(plain) == size
    _, h2, body2 = raw(server.port, f"/up/big?size={size}", {})  # the same bytes, uncompressed
    assert "content-encoding" not in h2 and body2 == plain
    # through another proxy (Via): gzip_proxied off refuses, any accepts
    _, h, _ = raw(server.port, "/up/big?size=5000", {**GZ, "Via": "1.1 lb"})
    assert "content-encoding" not in h
    _, h, body = raw(server.port, "/upany/big?size=5000", {**GZ, "Via": "1.1 lb"})
    assert h["content-encoding"] == "gzip" and len(gzip.decompress(body)) == 5000


def test_brotli_and_zstd_negotiated_by_q(server: Pyginx) -> None:
    _, h, body = raw(server.port, "/ext/big.txt", {"Accept-Encoding": "gzip, deflate, br, zstd"})
    assert h["content-encoding"] == "br" and brotli.decompress(body) == TEXT * 4
    _, h, body = raw(server.port, "/ext/small.txt", {"Accept-Encoding": "gzip;q=0.5, zstd, br;q=0.8"})
    assert h["content-encoding"] == "zstd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(body) == SMALL
    _, h, body = raw(server.port, "/ext/small.txt", {"Accept-Encoding": "br;q=0.1, gzip"})
    assert h["content-encoding"] == "gzip" and gzip.decompress(body) == SMALL
    _, h, body = raw(server.port, "/small.txt", {"Accept-Encoding": "br"})  # brotli not enabled there
    assert "content-encoding" not in h and body == SMALL


# ---------------------------------------------------------------------------------------------- nginx


def _nginx_conf(root: Path, port: int) -> str:
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the temp prefix
    return f"""
{user}
worker_processes 1;
error_log {root}/logs/nginx-error.log info;
pid {root}/logs/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log off;
  types {{ text/html html; text/plain txt; image/png png; }}
  gzip on; gzip_types text/plain; gzip_vary on;
  server {{
    listen 127.0.0.1:{port};
    root {root}/html;
    location / {{ }}
    location /v10/ {{ alias {root}/html/; gzip_http_version 1.0; }}
    location /pre/ {{ alias {root}/html/; gzip_static on; }}
    location /disable/ {{ alias {root}/html/; gzip_disable msie6 "^Lynx"; }}
    location /levels/ {{ alias {root}/html/; gzip_comp_level 9; gzip_min_length 5000; }}
  }}
}}
"""


@pytest.fixture(scope="module")
def nginx_port(server: Pyginx) -> Iterator[int]:
    if NGINX is None:
        pytest.fail("nginx is not installed: the differential test needs /usr/sbin/nginx")
    root = server.prefix
    port = free_port()
    conf = root / "conf" / "nginx.conf"
    conf.write_text(_nginx_conf(root, port))
    subprocess.run(
        [NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "logs" / "nginx-error.log")], check=True
    )
    pid_file = root / "logs" / "nginx.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx to start"))
    try:
        wait_for(lambda: _answers(port), 10, "nginx to answer")
        yield port
    finally:
        os.kill(pid, 15)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.02)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


COMPARED = ("content-type", "content-encoding", "vary", "etag", "accept-ranges")
CASES = [
    ("GET", "/small.txt", GZ),
    ("GET", "/small.txt", {**GZ, "Range": "bytes=0-99"}),
    ("GET", "/small.txt", {"Range": "bytes=0-99"}),
    ("GET", "/big.txt", GZ),
    ("HEAD", "/big.txt", GZ),
    ("GET", "/small.txt", {}),
    ("GET", "/small.txt", {"Accept-Encoding": "gzip;q=0"}),
    ("GET", "/small.txt", {"Accept-Encoding": "x-gzip, GZIP;q=0.5"}),
    ("GET", "/small.txt", {**GZ, "Via": "1.1 x"}),
    ("GET", "/tiny.txt", GZ),
    ("GET", "/image.png", GZ),
    ("GET", "/page.html", GZ),
    ("GET", "/missing.txt", GZ),
    ("GET", "/levels/small.txt", GZ),
    ("GET", "/levels/big.txt", GZ),
    ("GET", "/pre/pre.txt", GZ),
    ("GET", "/pre/pre.txt", {}),
    ("GET", "/disable/small.txt", {**GZ, "User-Agent": "Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)"}),
    ("GET", "/disable/small.txt", {**GZ, "User-Agent": "Lynx/2.8"}),
]


def _nginx_version() -> tuple[int, ...]:
    assert NGINX is not None
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def _decoded(h: dict[str, str], body: bytes) -> bytes:
    return gzip.decompress(body) if h.get("content-encoding") == "gzip" and body else body


def test_same_answers_as_nginx(server: Pyginx, nginx_port: int) -> None:
    differences = []
    for method, target, headers in CASES:
        want_s, want_h, want_b = raw(nginx_port, target, headers, method=method)
        got_s, got_h, got_b = raw(server.port, target, headers, method=method)
        want = (
            want_s,
            {k: want_h.get(k) for k in COMPARED},
            re.sub(rb"nginx/[\d.]+", b"S", _decoded(want_h, want_b)),
        )
        if target.startswith("/pre/") and "content-encoding" in got_h and _nginx_version() < (1, 23, 0):
            got_h.pop("accept-ranges", None)  # gzip_static answers ranges since nginx 1.23, as pyginx
        got = (
            got_s,
            {k: got_h.get(k) for k in COMPARED},
            _decoded(got_h, got_b).replace(b"pyginx/0.1.0", b"S"),
        )
        if want != got:
            differences.append(f"{method} {target} {headers}:\n  nginx : {want[:2]}\n  pyginx: {got[:2]}")
    assert not differences, "\n".join(differences)
