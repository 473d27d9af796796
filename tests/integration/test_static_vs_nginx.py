"""Differential test: the same static site served by pyginx and by the system's nginx (skipped when
there is none), compared response by response: status, headers (but Date, Server, Connection and
framing), and bodies byte for byte (error pages after the server token, autoindex after nginx's
chunked framing, multipart after the boundary)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, free_port, pyginx_fixture, wait_for  # noqa: F401

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary to compare with")

MTIME = 1795907793  # Sat, 28 Nov 2026 23:16:33 GMT
SKIP_HEADERS = {"server", "date", "connection", "keep-alive", "transfer-encoding", "content-length"}


def _nginx_version() -> tuple[int, ...]:
    assert NGINX is not None
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def _get(port: int, method: str, target: str, headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(head.encode("latin-1") + b"\r\n")
        out = b""
        while chunk := s.recv(1 << 20):
            out += chunk
    raw_head, _, body = out.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    hs = dict((k.lower(), v) for k, _, v in (line.partition(": ") for line in lines[1:]))
    if hs.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return lines[0], {k: v for k, v in hs.items() if k not in SKIP_HEADERS}, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2 :]
    return out


def _normalise(resp: tuple[str, dict[str, str], bytes], port: int) -> tuple[str, dict[str, str], bytes]:
    status, headers, body = resp
    headers = {k: v.replace(f":{port}/", ":PORT/") for k, v in headers.items()}
    body = re.sub(rb"<center>(nginx|pyginx)/[\d.]+</center>", b"<center>SERVER</center>", body)
    ctype = headers.get("content-type", "")
    if "boundary=" in ctype:
        boundary = ctype.split("boundary=")[1]
        headers["content-type"] = ctype.replace(boundary, "B")
        body = body.replace(boundary.encode(), b"B")
    return status, headers, body


CASES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/a.txt", {}),
    ("HEAD", "/a.txt", {}),
    ("GET", "/big.bin", {}),
    ("GET", "/dir", {}),
    ("GET", "/dir?a=1&b", {}),
    ("GET", "/dir/", {}),
    ("GET", "/nope", {}),
    ("POST", "/a.txt", {}),
    ("PUT", "/a.txt", {}),
    ("POST", "/dir/", {}),
    ("POST", "/list/", {}),
    ("GET", "/empty/", {}),
    ("GET", "/a.txt/", {}),
    ("GET", "/missing/", {}),
    ("GET", "/a.txt", {"Range": "bytes=0-3"}),
    ("GET", "/a.txt", {"Range": "bytes=-3"}),
    ("GET", "/a.txt", {"Range": "bytes=5-"}),
    ("GET", "/a.txt", {"Range": "bytes=100-"}),
    ("GET", "/a.txt", {"Range": "bytes=abc"}),
    ("GET", "/a.txt", {"Range": "bytes=1-0"}),
    ("GET", "/a.txt", {"Range": "bytes=0-1,0-20"}),
    ("GET", "/a.txt", {"Range": "items=0-1"}),
    ("GET", "/a.txt", {"Range": "bytes=0-0", "If-Range": '"x"'}),
    ("GET", "/a.txt", {"Range": "bytes=0-0", "If-Range": "Sat, 28 Nov 2026 23:16:33 GMT"}),
    ("GET", "/a.txt", {"Range": "bytes=0-0", "If-Range": "Sat, 28 Nov 2026 23:16:34 GMT"}),
    ("GET", "/big.bin", {"Range": "bytes=0-0,-1,1000-1999"}),
    ("GET", "/big.bin", {"Range": "bytes=100-199,50-149"}),
    ("GET", "/a.txt", {"If-None-Match": "*"}),
    ("GET", "/a.txt", {"If-None-Match": f'"x", W/"{MTIME:x}-c"'}),
    ("GET", "/a.txt", {"If-Match": f'W/"{MTIME:x}-c"'}),
    ("GET", "/a.txt", {"If-Match": f'"{MTIME:x}-c"'}),
    ("GET", "/a.txt", {"If-Match": '"x"'}),
    ("GET", "/a.txt", {"If-Match": "*"}),
    ("GET", "/a.txt", {"If-Unmodified-Since": "garbage"}),
    ("GET", "/a.txt", {"If-Modified-Since": "Sat, 28 Nov 2026 23:16:33 GMT"}),
    ("GET", "/a.txt", {"If-Modified-Since": "Sunday, 29-Nov-26 23:16:33 GMT"}),
    ("GET", "/a.txt", {"If-Modified-Since": "Sat Nov 28 23:16:33 2026"}),
    ("GET", "/list/", {}),
    ("HEAD", "/list/", {}),
    ("GET", "/listj/", {}),
    ("GET", "/listx/", {}),
    ("GET", "/listh/", {}),
    ("GET", "/listp/?callback=cb", {}),
    ("GET", "/listp/?callback=c-b", {}),
    ("GET", "/list/sub", {}),
    ("GET", "/gz/a.txt", {"Accept-Encoding": "gzip"}),
    ("GET", "/gz/a.txt", {}),
    ("GET", "/gz/a.txt", {"Accept-Encoding": "gzip;q=0"}),
    ("GET", "/gz/big.bin", {"Accept-Encoding": "gzip"}),
    ("GET", "/tf/a.txt", {}),
    ("GET", "/tf/nothing", {}),
    ("GET", "/ep/nothing", {}),
    ("GET", "/img/x.png", {}),
    ("GET", "/re/x.jpg", {}),
    ("GET", "/a%20b.txt", {}),
    ("GET", "/link_in", {}),
    ("GET", "/dirlink/index.html", {}),
    ("GET", "/strict/a.txt", {}),
    ("GET", "/strict/link_in", {}),
    ("GET", "/strict/dirlink/index.html", {}),
    ("GET", "/strict/dirlink/", {}),
    ("GET", "/%2e%2e/x", {}),
]


def _site(root: Path) -> None:
    html = root / "html"
    (html / "dir").mkdir(parents=True)
    (html / "empty").mkdir()
    (html / "list" / "sub").mkdir(parents=True)
    (html / "img").mkdir()
    files = {
        "a.txt": b"hello world\n",
        "a b.txt": b"spaced\n",
        "big.bin": bytes(range(256)) * 1200,
        "dir/index.html": b"idx\n",
        "list/a b.txt": b"",
        "list/<x>&.txt": b"",
        "list/.hidden": b"",
        "list/" + "L" * 60 + ".txt": b"y" * 12345,
        "list/é.txt": b"x",
        "img/x.png": b"PNG",
        "404.html": b"custom 404\n",
    }
    for name, data in files.items():
        (html / name).write_bytes(data)
    import gzip

    (html / "link_in").symlink_to("a.txt")
    (html / "dirlink").symlink_to("dir")

    (html / "a.txt.gz").write_bytes(gzip.compress(b"hello world\n", mtime=0))
    for path in [*html.rglob("*"), html]:
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)


def _nginx_conf(root: Path, port: int) -> str:
    html = root / "html"
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
error_log {root}/logs/nginx-error.log info;
pid {root}/logs/nginx.pid;
daemon on;
events {{ worker_connections 256; }}
http {{
  include /etc/nginx/mime.types;
  access_log off;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    root {html};
    location / {{ }}
    location /list/ {{ autoindex on; }}
    location /listj/ {{ alias {html}/list/; autoindex on; autoindex_format json; }}
    location /listx/ {{ alias {html}/list/; autoindex on; autoindex_format xml; }}
    location /listh/ {{ alias {html}/list/; autoindex on; autoindex_exact_size off; }}
    location /listp/ {{ alias {html}/list/; autoindex on; autoindex_format jsonp; }}
    location /gz/ {{ alias {html}/; gzip_static on; gzip_vary on; }}
    location /tf/ {{ alias {html}/; try_files $uri $uri/ =404; }}
    location /tf418/ {{ alias {html}/; try_files $uri =418; }}
    location /ep/ {{ error_page 404 /404.html; }}
    location /strict/ {{ alias {html}/; disable_symlinks on; }}
    location ~ ^/re/(.+)\\.jpg$ {{ alias {html}/img/$1.png; }}
  }}
}}
"""


def _pyginx_conf(root: Path, port: int) -> str:
    html = root / "html"
    return f"""
worker_processes: 1
error_log: logs/error.log info
http:
  access_log: off
  default_type: application/octet-stream
  servers:
    - listen: 127.0.0.1:{port}
      server_name: localhost
      root: {html}
      locations:
        - location: /
        - location: /list/
          autoindex: true
        - location: /listj/
          alias: {html}/list/
          autoindex: true
          autoindex_format: json
        - location: /listx/
          alias: {html}/list/
          autoindex: true
          autoindex_format: xml
        - location: /listh/
          alias: {html}/list/
          autoindex: true
          autoindex_exact_size: false
        - location: /listp/
          alias: {html}/list/
          autoindex: true
          autoindex_format: jsonp
        - location: /gz/
          alias: {html}/
          gzip_static: true
          gzip_vary: true
        - location: /tf/
          alias: {html}/
          try_files: $uri $uri/ =404
        - location: /tf418/
          alias: {html}/
          try_files: $uri =418
        - location: /ep/
          error_page: {{404: /404.html}}
        - location: /strict/
          alias: {html}/
          disable_symlinks: true
        - location: ~ ^/re/(.+)\\.jpg$
          alias: {html}/img/$1.png
"""


@pytest.fixture
def nginx_port(pyginx: Pyginx) -> object:  # noqa: F811
    root = pyginx.prefix
    _site(root)
    port = free_port()
    (root / "conf" / "nginx.conf").write_text(_nginx_conf(root, port))
    assert NGINX is not None
    subprocess.run([NGINX, "-p", str(root), "-c", str(root / "conf" / "nginx.conf")], check=True)
    pid_file = root / "logs" / "nginx.pid"
    pid = wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx to start")
    try:
        wait_for(lambda: _answers(port), 10, "nginx to answer")
        yield port
    finally:
        os.kill(int(pid), 15)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.02)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_same_answers_as_nginx(pyginx: Pyginx, nginx_port: int) -> None:  # noqa: F811
    pyginx.write_config(_pyginx_conf(pyginx.prefix, pyginx.port))
    pyginx.start()
    gzip_ranges = _nginx_version() >= (1, 23, 0)  # gzip_static answers ranges since nginx 1.23
    differences = []
    for method, target, headers in CASES:
        want = _normalise(_get(nginx_port, method, target, headers), nginx_port)
        got = _normalise(_get(pyginx.port, method, target, headers), pyginx.port)
        if not gzip_ranges and target.startswith("/gz/") and "content-encoding" in got[1]:
            got[1].pop("accept-ranges", None)
        if want != got:
            differences.append(f"{method} {target} {headers}:\n  nginx : {want}\n  pyginx: {got}")
    assert not differences, "\n".join(differences)


def test_unknown_status_code_body(pyginx: Pyginx, nginx_port: int) -> None:  # noqa: F811
    pyginx.write_config(_pyginx_conf(pyginx.prefix, pyginx.port))
    pyginx.start()
    want = _normalise(_get(nginx_port, "GET", "/tf418/nothing", {}), nginx_port)
    got = _normalise(_get(pyginx.port, "GET", "/tf418/nothing", {}), pyginx.port)
    assert want == got
