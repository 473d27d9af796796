"""Differential test of the HTTP core: the same raw requests sent to the system's nginx (skipped when
there is none) and to pyginx, configured alike, compared response by response: status line, the set of
header names, the values of Connection, Content-Type, Content-Length, Location and Keep-Alive, the body
(after the server token), and whether the connection was closed afterwards.

Where issue 2 makes pyginx deliberately stricter than nginx (bare LF, obs-fold, whitespace before a
colon, control characters in header values, `HTTP/1.01`, HTTP/0.9), pyginx's own status is asserted.
Cases run concurrently (each on its own connections) so the module stays fast.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, free_port, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary to compare with")

KEY_HEADERS = ("connection", "content-type", "content-length", "location", "keep-alive")
DATE = re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\Z")
PROBE = b"GET /probe HTTP/1.1\r\nHost: default.test\r\nConnection: close\r\n\r\n"


# ---------------------------------------------------------------------------------------------- requests


def req(
    method: str = "GET",
    target: str = "/",
    host: str | None = "default.test",
    headers: tuple[tuple[str, str], ...] = (),
    version: str = "HTTP/1.1",
    body: bytes = b"",
) -> bytes:
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def close(data: bytes) -> bytes:
    """The same request with `Connection: close` (inserted after the request line)."""
    line, _, rest = data.partition(b"\r\n")
    return line + b"\r\nConnection: close\r\n" + rest


@dataclass
class Resp:
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


@dataclass
class Outcome:
    responses: list[Resp] = field(default_factory=list)
    closed: bool = False
    leftover: bytes = b""


def _parse_one(buf: bytes, head_only: bool) -> tuple[Resp, bytes] | None:
    """One response from the front of `buf` (None when it is not complete yet)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    rest = buf[end + 4 :]
    resp = Resp(lines[0], headers, b"")
    status = int(lines[0].split()[1])
    if head_only or status < 200 or status in (204, 304):
        return resp, rest
    if (resp.header("transfer-encoding") or "").lower() == "chunked":
        body = b""
        while True:
            eol = rest.find(b"\r\n")
            if eol < 0:
                return None
            size = int(rest[:eol].split(b";")[0], 16)
            if len(rest) < eol + 2 + size + 2:
                return None
            body += rest[eol + 2 : eol + 2 + size]
            rest = rest[eol + 2 + size + 2 :]
            if size == 0:
                resp.body = body
                return resp, rest
    length = resp.header("content-length")
    if length is None:
        return None  # read until close
    n = int(length)
    if len(rest) < n:
        return None
    resp.body = rest[:n]
    return resp, rest[n:]


def run(port: int, data: bytes | list[bytes], expect: int, heads: list[bool], pause: float = 0.0) -> Outcome:
    """Send the request bytes (a list: separate sends, `pause` apart), read `expect` final responses
    (or until the server closes), then find out with a probe request whether the connection is open."""
    out = Outcome()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        parts = data if isinstance(data, list) else [data]
        for i, part in enumerate(parts):
            if i and pause:
                time.sleep(pause)
            try:
                s.sendall(part)
            except OSError:
                break
        buf = b""
        eof = False
        final = 0
        deadline = time.monotonic() + 5
        while final < expect and time.monotonic() < deadline:
            parsed = _parse_one(buf, heads[final] if final < len(heads) else False)
            if parsed is not None:
                resp, buf = parsed
                out.responses.append(resp)
                if int(resp.status_line.split()[1]) >= 200:
                    final += 1
                continue
            if eof:
                break
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                chunk = b""
            if not chunk:
                eof = True
                break
            buf += chunk
        out.leftover = buf
        if eof:
            out.closed = True
            return out
        try:
            s.sendall(PROBE)
            s.settimeout(5)
            answer = s.recv(65536)
        except OSError:
            answer = b""
        out.closed = not answer
    return out


# ---------------------------------------------------------------------------------------------- normalising


def _tokens(server: str | None) -> str:
    return "none" if server is None else ("version" if "/" in server else "bare")


def _length(r: Resp, body: bytes) -> str | None:
    """Content-Length, measured as if both servers' built-in pages named the same server token."""
    value = r.header("content-length")
    if value is None or not value.isdigit():
        return value
    token = r.header("server") or ""
    if b"<center>SERVER</center>" in body:
        return str(len(body)) if int(value) == len(r.body) else f"{value} (body {len(r.body)})"
    html = "text/html" in (r.header("content-type") or "")
    if not r.body and int(value) > 0 and html and int(r.status_line.split()[1]) >= 300:
        return str(int(value) - len(token) + len("SERVER"))  # a HEAD answered with a built-in page
    return value


def normalise(outcome: Outcome, port: int) -> list[object]:
    """What must be equal between nginx and pyginx for one case."""
    result: list[object] = []
    for r in outcome.responses:
        server = r.header("server")
        body = re.sub(rb"<center>(nginx|pyginx)(/[\d.]+)?</center>", b"<center>SERVER</center>", r.body)
        values: dict[str, str | None] = {}
        for name in KEY_HEADERS:
            v = r.header(name)
            if v is not None and name == "content-length":
                v = _length(r, body)
            if v is not None and name == "location":
                v = v.replace(f":{port}", ":PORT")
            values[name] = v
        date = r.header("date")
        final = int(r.status_line.split()[1]) >= 200
        result.append(
            (
                r.status_line,
                sorted({k.lower() for k, _ in r.headers}),
                values,
                body,
                _tokens(server),
                bool(date and DATE.match(date)) if final else None,
            )
        )
    result.append(("closed", outcome.closed, "incomplete" if outcome.leftover else ""))
    return result


# ---------------------------------------------------------------------------------------------- the two servers

NGINX_CONF = r"""
@USER@
worker_processes 1;
error_log @ROOT@/logs/nginx-error.log info;
pid @ROOT@/logs/nginx.pid;
daemon on;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  access_log @ROOT@/logs/nginx-access.log combined;
  keepalive_timeout 5s;
  client_max_body_size 100;
  root @ROOT@/html;
  server {
    listen 127.0.0.1:@PORT@ default_server;
    server_name default.test;
    location / { }
    location = /probe { return 200 "probe"; }
    location = /text { return 200 "hello world"; }
    location = /page.html { return 200 "<p>typed by extension</p>"; }
    location = /vars { return 200 "$request_method|$uri|$args|$host|$request_uri|$server_protocol"; }
    location = /r200 { return 200; }
    location = /r204 { return 204; }
    location = /r204text { return 204 "ignored"; }
    location = /r301 { return 301 /new; }
    location = /r301q { return 301 "/new?a=1"; }
    location = /r301abs { return 301 http://other.test/x; }
    location = /r302 { return 302; }
    location = /r307 { return 307 /tmp; }
    location = /r308rel { return 308 relative/path; }
    location = /url { return http://other.test/url; }
    location = /r403text { return 403 "denied"; }
    location = /r404 { return 404; }
    location = /r418 { return 418; }
    location = /r444 { return 444; }
    location = /r500 { return 500; }
    location = /r503 { return 503; }
    location = /r599 { return 599; }
    location = /r300 { return 300; }
    location = /r304 { return 304; }
    location = /r305 { return 305; }
    location = /r400 { return 400; }
    location = /r408 { return 408; }
    location = /r410 { return 410; }
    location = /r413 { return 413; }
    location = /r414 { return 414; }
    location = /r429 { return 429; }
    location = /r494 { return 494; }
    location = /r505 { return 505; }
    location = /r999 { return 999; }
    location = /r400text { return 400 "bad"; }
    location = /r500text { return 500 "oops"; }
    location /ep-uri/ { error_page 404 /custom404.html; }
    location /ep-eq/ { error_page 404 = /text; }
    location /ep-code/ { error_page 404 =200 /custom404.html; }
    location /ep-named/ { error_page 404 @fallback; }
    location /ep-url/ { error_page 404 http://other.test/nf; }
    location /ep-url301/ { error_page 404 =301 http://other.test/nf; }
    location /ep-missing/ { error_page 404 /nowhere.html; }
    location = /ep-return { error_page 500 /custom500.html; return 500; }
    location = /ep-return-code { error_page 403 =404 /custom404.html; return 403; }
    location = /ep-to-return { error_page 404 /r301; return 404; }
    location @fallback { return 200 "named $uri"; }
    location /ep-405/ { error_page 405 /custom404.html; }
    location /ep-eq-named/ { error_page 404 = @fallback; }
    location /ep-named-redirect/ { error_page 404 @redirect; }
    location @redirect { return 302 http://other.test/from-named; }
    location = /exact { return 200 "exact"; }
    location /prefix/ { return 200 "prefix"; }
    location /prefix/longer/ { return 200 "longer"; }
    location ^~ /stop/ { return 200 "stop"; }
    location ~ \.php$ { return 200 "php"; }
    location ~* \.JPG$ { return 200 "jpg"; }
    location /body { return 200 "body"; }
  }
  server { listen 127.0.0.1:@PORT@; server_name www.example.com; return 200 "exact-name"; }
  server { listen 127.0.0.1:@PORT@; server_name *.example.com; return 200 "leading-wildcard"; }
  server { listen 127.0.0.1:@PORT@; server_name www.example.*; return 200 "trailing-wildcard"; }
  server { listen 127.0.0.1:@PORT@; server_name .dot.test; return 200 "dot"; }
  server { listen 127.0.0.1:@PORT@; server_name ~^api\d+\.test$; return 200 "regex"; }
  server { listen 127.0.0.1:@PORT@; server_name ""; return 200 "empty-name"; }
  server {
    listen 127.0.0.1:@PORT@; server_name noabs.test; absolute_redirect off;
    location / { }
    location = /r301 { return 301 /new; }
  }
  server {
    listen 127.0.0.1:@PORT@; server_name noport.test; port_in_redirect off;
    location / { }
    location = /r301 { return 301 /new; }
  }
  server {
    listen 127.0.0.1:@PORT@; server_name primary.test alias.test; server_name_in_redirect on;
    location / { }
    location = /r301 { return 301 /new; }
  }
  server {
    listen 127.0.0.1:@PORT@; server_name notokens.test; server_tokens off;
    location / { }
    location = /r404 { return 404; }
  }
  server {
    listen 127.0.0.1:@PORT@; server_name ka.test; keepalive_requests 3; keepalive_timeout 5s 7;
    location / { return 200 "ka"; }
  }
  server {
    listen 127.0.0.1:@PORT@; server_name nokeep.test; keepalive_timeout 0;
    location / { return 200 "nokeep"; }
  }
  server {
    listen 127.0.0.1:@PORT@; server_name log.test;
    location / { }
    location = /text { return 200 "logged"; }
  }
}
"""

PYGINX_CONF = r"""
worker_processes: 1
error_log: logs/error.log info
events:
  worker_connections: 1024
http:
  access_log: logs/access.log combined
  keepalive_timeout: 5s
  client_max_body_size: 100
  root: @ROOT@/html
  servers:
    - listen: 127.0.0.1:@PORT@ default_server
      server_name: default.test
      locations:
        - location: /
        - {location: = /probe, return: 200 probe}
        - {location: = /text, return: 200 hello world}
        - {location: = /page.html, return: "200 <p>typed by extension</p>"}
        - {location: = /vars, return: "200 $request_method|$uri|$args|$host|$request_uri|$server_protocol"}
        - {location: = /r200, return: 200}
        - {location: = /r204, return: 204}
        - {location: = /r204text, return: 204 ignored}
        - {location: = /r301, return: 301 /new}
        - {location: = /r301q, return: "301 /new?a=1"}
        - {location: = /r301abs, return: 301 http://other.test/x}
        - {location: = /r302, return: 302}
        - {location: = /r307, return: 307 /tmp}
        - {location: = /r308rel, return: 308 relative/path}
        - {location: = /url, return: http://other.test/url}
        - {location: = /r403text, return: 403 denied}
        - {location: = /r404, return: 404}
        - {location: = /r418, return: 418}
        - {location: = /r444, return: 444}
        - {location: = /r500, return: 500}
        - {location: = /r503, return: 503}
        - {location: = /r599, return: 599}
        - {location: = /r300, return: 300}
        - {location: = /r304, return: 304}
        - {location: = /r305, return: 305}
        - {location: = /r400, return: 400}
        - {location: = /r408, return: 408}
        - {location: = /r410, return: 410}
        - {location: = /r413, return: 413}
        - {location: = /r414, return: 414}
        - {location: = /r429, return: 429}
        - {location: = /r494, return: 494}
        - {location: = /r505, return: 505}
        - {location: = /r999, return: 999}
        - {location: = /r400text, return: 400 bad}
        - {location: = /r500text, return: 500 oops}
        - {location: /ep-uri/, error_page: {404: /custom404.html}}
        - {location: /ep-eq/, error_page: {404: = /text}}
        - {location: /ep-code/, error_page: {404: =200 /custom404.html}}
        - {location: /ep-named/, error_page: {404: "@fallback"}}
        - {location: /ep-url/, error_page: {404: "http://other.test/nf"}}
        - {location: /ep-url301/, error_page: {404: "=301 http://other.test/nf"}}
        - {location: /ep-missing/, error_page: {404: /nowhere.html}}
        - {location: = /ep-return, error_page: {500: /custom500.html}, return: 500}
        - {location: = /ep-return-code, error_page: {403: =404 /custom404.html}, return: 403}
        - {location: = /ep-to-return, error_page: {404: /r301}, return: 404}
        - {location: "@fallback", return: 200 named $uri}
        - {location: /ep-405/, error_page: {405: /custom404.html}}
        - {location: /ep-eq-named/, error_page: {404: "= @fallback"}}
        - {location: /ep-named-redirect/, error_page: {404: "@redirect"}}
        - {location: "@redirect", return: 302 http://other.test/from-named}
        - {location: = /exact, return: 200 exact}
        - {location: /prefix/, return: 200 prefix}
        - {location: /prefix/longer/, return: 200 longer}
        - {location: ^~ /stop/, return: 200 stop}
        - {location: ~ \.php$, return: 200 php}
        - {location: ~* \.JPG$, return: 200 jpg}
        - {location: /body, return: 200 body}
    - {listen: 127.0.0.1:@PORT@, server_name: www.example.com, return: 200 exact-name}
    - {listen: 127.0.0.1:@PORT@, server_name: "*.example.com", return: 200 leading-wildcard}
    - {listen: 127.0.0.1:@PORT@, server_name: www.example.*, return: 200 trailing-wildcard}
    - {listen: 127.0.0.1:@PORT@, server_name: .dot.test, return: 200 dot}
    - {listen: 127.0.0.1:@PORT@, server_name: ~^api\d+\.test$, return: 200 regex}
    - {listen: 127.0.0.1:@PORT@, server_name: "", return: 200 empty-name}
    - listen: 127.0.0.1:@PORT@
      server_name: noabs.test
      absolute_redirect: false
      locations:
        - location: /
        - {location: = /r301, return: 301 /new}
    - listen: 127.0.0.1:@PORT@
      server_name: noport.test
      port_in_redirect: false
      locations:
        - location: /
        - {location: = /r301, return: 301 /new}
    - listen: 127.0.0.1:@PORT@
      server_name: primary.test alias.test
      server_name_in_redirect: true
      locations:
        - location: /
        - {location: = /r301, return: 301 /new}
    - listen: 127.0.0.1:@PORT@
      server_name: notokens.test
      server_tokens: false
      locations:
        - location: /
        - {location: = /r404, return: 404}
    - listen: 127.0.0.1:@PORT@
      server_name: ka.test
      keepalive_requests: 3
      keepalive_timeout: 5s 7
      locations:
        - {location: /, return: 200 ka}
    - listen: 127.0.0.1:@PORT@
      server_name: nokeep.test
      keepalive_timeout: 0
      locations:
        - {location: /, return: 200 nokeep}
    - listen: 127.0.0.1:@PORT@
      server_name: log.test
      locations:
        - location: /
        - {location: = /text, return: 200 logged}
"""


def _fill(template: str, root: Path, port: int) -> str:
    user = "user root;" if os.geteuid() == 0 else ""
    return template.replace("@ROOT@", str(root)).replace("@PORT@", str(port)).replace("@USER@", user)


def _site(html: Path) -> None:
    (html / "static" / "dir").mkdir(parents=True, exist_ok=True)
    (html / "static" / "empty").mkdir(exist_ok=True)
    (html / "static" / "caf\xe9 d").mkdir(exist_ok=True)
    files = {
        "index.html": b"<h1>index</h1>\n",
        "custom404.html": b"custom not found\n",
        "custom500.html": b"custom error\n",
        "static/a.txt": b"hello static\n",
        "static/dir/index.html": b"dir index\n",
        "static/big.bin": bytes(range(256)) * 2000,
    }
    for name, data in files.items():
        (html / name).write_bytes(data)


@dataclass
class Pair:
    nginx: int
    pyginx: int
    root: Path
    server: Pyginx


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("core_vs_nginx")
    server = Pyginx(root)
    _site(root / "html")
    nginx_port = free_port()
    conf = root / "conf" / "nginx.conf"
    conf.write_text(_fill(NGINX_CONF, root, nginx_port))
    assert NGINX is not None
    subprocess.run([NGINX, "-p", str(root), "-c", str(conf)], check=True, capture_output=True)
    pid_file = root / "logs" / "nginx.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx to start"))
    try:
        wait_for(lambda: _answers(nginx_port), 10, "nginx to answer")
        server.write_config(_fill(PYGINX_CONF, root, server.port))
        server.start()
        yield Pair(nginx_port, server.port, root, server)
        server.check_log()
    finally:
        print(f"--- error log:\n{server.error_log()}\n--- stderr:\n{server.stderr()}")
        server.cleanup()
        os.kill(pid, 15)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, "nginx to exit")


# ---------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    data: bytes | list[bytes]
    expect: int = 0  # final responses to wait for; 0 = one per request line in `data`
    pause: float = 0.0  # between the parts of a list
    stricter: list[int] | None = None  # pyginx is deliberately stricter here: its statuses, no comparison

    def heads(self) -> list[bool]:
        raw = b"".join(self.data) if isinstance(self.data, list) else self.data
        return [m == b"HEAD" for m in re.findall(rb"(?m)^([A-Za-z_-]+) [^\r\n]*HTTP/", raw)]

    def count(self) -> int:
        return self.expect or max(1, len(self.heads()))


def _case(name: str, data: bytes | list[bytes], **kw: object) -> Case:
    return Case(name, data, **kw)  # type: ignore[arg-type]


H = "default.test"
BAD_INPUTS = [
    _case("cl+te", req("POST", headers=(("Content-Length", "3"), ("Transfer-Encoding", "chunked")), body=b"0\r\n\r\n")),
    _case("dup cl", req("POST", "/body", headers=(("Content-Length", "3"), ("Content-Length", "3")), body=b"abc")),
    _case("bad cl", req("POST", "/body", headers=(("Content-Length", "abc"),))),
    _case("negative cl", req("POST", "/body", headers=(("Content-Length", "-1"),))),
    _case("te gzip", req("POST", "/body", headers=(("Transfer-Encoding", "gzip"),))),
    _case("te gzip, chunked", req("POST", "/body", headers=(("Transfer-Encoding", "gzip, chunked"),))),
    _case("te in 1.0", req("POST", "/body", version="HTTP/1.0", headers=(("Transfer-Encoding", "chunked"),))),
    _case("no host", req(host=None)),
    _case("dup host", req(headers=(("Host", H),))),
    _case("empty host", req(host="")),
    _case("bad host", req(host="a/b")),
    _case("bad method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
    _case("lower method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n"),
    _case("http/2.0", req(version="HTTP/2.0")),
    _case("http/3.0", req(version="HTTP/3.0")),
    _case("trace", req("TRACE")),
    _case("space in uri", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
    _case("ctl in uri", b"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"),
    _case("%00", req(target="/a%00")),
    _case("bad escape", req(target="/a%g1")),
    _case("truncated escape", req(target="/a%2")),
    _case("climb", req(target="/a/../../etc/passwd")),
    _case("encoded climb", req(target="/%2e%2e/etc/passwd")),
    _case("bad chunk", req("POST", "/body", headers=(("Transfer-Encoding", "chunked"),), body=b"zz\r\n")),
    # deliberately stricter than nginx 1.22 (issue 2, item 4)
    _case("http/0.9", b"GET /\r\n", stricter=[400]),
    _case("http/1.01", req(version="HTTP/1.01"), stricter=[400]),
    _case("bare lf", b"GET / HTTP/1.1\nHost: a\n\n", stricter=[400]),
    _case("ws before colon", req(headers=(("X-A ", "b"),)), stricter=[400]),
    _case("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", stricter=[400]),
    _case("nul in value", req(headers=(("X-A", "b\x00c"),)), stricter=[400]),
    _case("bel in value", req(headers=(("X-A", "b\x07c"),)), stricter=[400]),
    _case("del in value", req(headers=(("X-A", "b\x7fc"),)), stricter=[400]),
    _case("bare cr in value", req(headers=(("X-A", "b\rc"),)), stricter=[400]),
]

LIMITS = [
    _case("uri too long", req(target="/" + "x" * 9000)),
    _case("uri at 8k", req(target="/" + "x" * 8100)),
    _case("header too long", req(headers=(("X-Long", "x" * 9000),))),
    _case("too many headers", req(headers=tuple((f"X-{i}", "y" * 4000) for i in range(10)))),
    _case("cookie too large", req(headers=(("Cookie", "c=" + "y" * 8200),))),
    _case("header at 8k", req(target="/text", headers=(("X-Long", "x" * 8180),))),
    _case("header just over 8k", req(target="/text", headers=(("X-Long", "x" * 8185),))),
    _case("3 headers of 7k", req(target="/text", headers=tuple((f"X-{i}", "y" * 7000) for i in range(3)))),
    _case("4 headers of 7k", req(target="/text", headers=tuple((f"X-{i}", "y" * 7000) for i in range(4)))),
    _case("5 headers of 7k", req(target="/text", headers=tuple((f"X-{i}", "y" * 7000) for i in range(5)))),
    _case("999 headers and host", req(target="/text", headers=tuple((f"X-{i:04d}", "y") for i in range(999)))),
    _case("1000 headers and host", req(target="/text", headers=tuple((f"X-{i:04d}", "y") for i in range(1000)))),
    _case("uri 7k and headers", req(target="/text?" + "a" * 7000, headers=tuple((f"X-{i}", "y" * 7000) for i in range(3)))),
    _case("body over limit", req("POST", "/body", headers=(("Content-Length", "101"),), body=b"x" * 101)),
    _case("body at limit", req("POST", "/body", headers=(("Content-Length", "100"),), body=b"x" * 100)),
    _case("body over limit, unsent", req("POST", "/body", headers=(("Content-Length", "1000000"),))),
    _case(
        "body over limit, expect",
        req("POST", "/body", headers=(("Content-Length", "1000"), ("Expect", "100-continue"))),
    ),
    _case(
        "body within limit, expect",
        [req("POST", "/body", headers=(("Content-Length", "5"), ("Expect", "100-continue"))), b"hello"],
        pause=0.2,
    ),
    _case(
        "chunked over limit",
        req("POST", "/body", headers=(("Transfer-Encoding", "chunked"),), body=b"80\r\n" + b"x" * 128 + b"\r\n0\r\n\r\n"),
    ),
    _case("body to static file", close(req("POST", "/static/a.txt", headers=(("Content-Length", "5"),), body=b"hello"))),
]

KEEPALIVE = [
    _case("1.1 keep-alive", req(target="/text")),
    _case("1.1 close", req(target="/text", headers=(("Connection", "close"),))),
    _case("1.0", req(target="/text", version="HTTP/1.0", host=None)),
    _case("1.0 keep-alive", req(target="/text", version="HTTP/1.0", host=None, headers=(("Connection", "keep-alive"),))),
    _case("1.0 keep-alive with host", req(target="/text", version="HTTP/1.0", headers=(("Connection", "keep-alive"),))),
    _case("connection tokens", req(target="/text", headers=(("Connection", "Keep-Alive, TE"),))),
    _case("keepalive_requests", req(target="/", host="ka.test") * 4),
    _case("keepalive off", req(target="/", host="nokeep.test")),
    _case("keep-alive header", req(target="/", host="ka.test")),
    _case("pipelined", req(target="/text") + req("HEAD", "/text") + req(target="/vars?x=1")),
    _case("pipelined, then close", req(target="/text") + close(req(target="/exact")) + req(target="/text")),
    _case("pipelined after an error", req(target="/text") + req(target="/a%00") + req(target="/text")),
    _case("pipelined split", [req(target="/text") + req(target="/ex"), b"act HTTP/1.1\r\nHost: a\r\n\r\n"], pause=0.1),
    _case("leading empty lines", b"\r\n\r\n" + req(target="/text")),
    _case("head", req("HEAD", "/text")),
    _case("head on a file", req("HEAD", "/static/a.txt")),
    _case("head on a missing file", req("HEAD", "/static/nope")),
    _case("404 keeps alive", req(target="/static/nope")),
    _case("keep-alive after 413", req("POST", "/body", headers=(("Content-Length", "101"),), body=b"x" * 101) + req(target="/text")),
]

TARGETS = [
    _case("absolute-form", req(target="http://www.example.com/x")),
    _case("absolute-form with port", req(target="http://www.example.com:81/x?y=1")),
    _case("absolute-form vars", req(target="http://Api12.Test/vars?q")),
    _case("absolute-form, no path", req(target="http://www.example.com")),
    _case("absolute-form, query only", req(target="http://www.example.com?x=1")),
    _case("absolute-form, 1.0", req(target="http://www.example.com/x", version="HTTP/1.0", host=None)),
    _case("absolute-form https", req(target="https://www.example.com/x")),
    _case("absolute-form, userinfo", req(target="http://u@www.example.com/x")),
    _case("asterisk", req("OPTIONS", "*")),
    _case("vars", req(target="/vars?a=1&b=%20")),
    _case("vars encoded", req(target="/%76ars?x")),
    _case("dot segments", req(target="/a/./b/../../vars")),
    _case("merge slashes", req(target="//vars")),
    _case("host with port", req(target="/vars", host="Default.Test:8080")),
    _case("host trailing dot", req(target="/vars", host="default.test.")),
    _case("host ipv6", req(target="/vars", host="[::1]:80")),
]

ROUTING = [
    _case("exact name", req(host="www.example.com")),
    _case("exact name, case", req(host="WWW.Example.COM")),
    _case("leading wildcard", req(host="a.b.example.com")),
    _case("trailing wildcard", req(host="www.example.org")),
    _case("dot name, bare", req(host="dot.test")),
    _case("dot name, sub", req(host="x.dot.test")),
    _case("regex name", req(host="api7.test")),
    _case("unknown name -> default_server", req(host="unknown.test", target="/text")),
    _case("no host 1.0 -> default_server", req(host=None, target="/text", version="HTTP/1.0")),
    _case("exact location", req(target="/exact")),
    _case("exact location, longer", req(target="/exact/more")),
    _case("prefix", req(target="/prefix/a")),
    _case("longest prefix", req(target="/prefix/longer/a")),
    _case("prefix then regex", req(target="/prefix/a.php")),
    _case("^~ stops regex", req(target="/stop/a.php")),
    _case("regex case-insensitive", req(target="/x.jpg")),
    _case("regex case-sensitive", req(target="/x.PHP")),
    _case("regex order", req(target="/a.php.JPG")),
]

RETURNS = [
    _case("return text", req(target="/text")),
    _case("return typed by extension", req(target="/page.html")),
    _case("return code only", req(target="/r200")),
    _case("return 204", req(target="/r204")),
    _case("return 204 with text", req(target="/r204text")),
    _case("return 301", req(target="/r301")),
    _case("return 301 with args", req(target="/r301q")),
    _case("return 301 absolute", req(target="/r301abs")),
    _case("return 302 code only", req(target="/r302")),
    _case("return 307", req(target="/r307")),
    _case("return 308 relative", req(target="/r308rel")),
    _case("return url alone", req(target="/url")),
    _case("return 403 text", req(target="/r403text")),
    _case("return 404", req(target="/r404")),
    _case("return 418", req(target="/r418")),
    _case("return 444", req(target="/r444")),
    _case("return 500", req(target="/r500")),
    _case("return 503", req(target="/r503")),
    _case("return 599", req(target="/r599")),
    _case("head return 404", req("HEAD", "/r404")),
    _case("head return 301", req("HEAD", "/r301")),
    _case("error_page uri", req(target="/ep-uri/x")),
    _case("error_page =", req(target="/ep-eq/x")),
    _case("error_page =200", req(target="/ep-code/x")),
    _case("error_page named", req(target="/ep-named/x")),
    _case("error_page url", req(target="/ep-url/x")),
    _case("error_page =301 url", req(target="/ep-url301/x")),
    _case("error_page missing page", req(target="/ep-missing/x")),
    _case("error_page on return 500", req(target="/ep-return")),
    _case("error_page =404 on return 403", req(target="/ep-return-code")),
    _case("error_page to a return 301", req(target="/ep-to-return")),
    _case("error_page head", req("HEAD", "/ep-uri/x")),
    _case("error_page on 405", req("PURGE", "/ep-405/x")),
    _case("error_page = @named", req(target="/ep-eq-named/x")),
    _case("error_page @named redirect", req(target="/ep-named-redirect/x")),
    _case("error_page post", req("POST", "/ep-uri/x", headers=(("Content-Length", "0"),))),
]

REDIRECTS = [
    _case("dir redirect", req(target="/static/dir")),
    _case("dir redirect with args", req(target="/static/dir?a=b")),
    _case("dir redirect, host port", req(target="/static/dir", host="default.test:9999")),
    _case("dir redirect, no host", req(target="/static/dir", host=None, version="HTTP/1.0")),
    _case("dir redirect, absolute-form", req(target="http://default.test/static/dir")),
    _case("absolute_redirect off", req(target="/static/dir", host="noabs.test")),
    _case("absolute_redirect off, return", req(target="/r301", host="noabs.test")),
    _case("port_in_redirect off", req(target="/static/dir", host="noport.test")),
    _case("port_in_redirect off, return", req(target="/r301", host="noport.test")),
    _case("server_name_in_redirect", req(target="/static/dir", host="alias.test")),
    _case("server_name_in_redirect, return", req(target="/r301", host="alias.test")),
    _case("return 301 host port", req(target="/r301", host="default.test:1234")),
    _case("dir redirect, non-ascii", req(target="/static/caf%C3%A9%20d")),
    _case("dir redirect, encoded", req(target="/static/%64ir")),
    _case("dir redirect, head", req("HEAD", "/static/dir")),
    _case("dir redirect, 1.0", req(target="/static/dir", version="HTTP/1.0")),
]

STATIC = [
    _case("file", req(target="/static/a.txt")),
    _case("index", req(target="/static/dir/")),
    _case("no index", req(target="/static/empty/")),
    _case("missing", req(target="/static/nope")),
    _case("unknown method on a file", req("PURGE", "/static/a.txt")),
    _case("delete on a file", req("DELETE", "/static/a.txt")),
    _case("options on a dir", req("OPTIONS", "/static/dir/")),
    _case("post on a file", req("POST", "/static/a.txt", headers=(("Content-Length", "0"),))),
    _case("unknown method on missing", req("PURGE", "/static/nope")),
    _case("long method", req("ABCDEFGHIJKLMNOPQRSTUVWXYZ_-", "/static/a.txt")),
    _case("server_tokens off 404", req(target="/r404", host="notokens.test")),
    _case("server_tokens off file", req(target="/static/a.txt", host="notokens.test")),
    _case("server_tokens off head 404", req("HEAD", "/nope", host="notokens.test")),
]


MORE = [
    *[_case(f"return {c}", req(target=f"/r{c}")) for c in (300, 304, 305, 400, 408, 410, 413, 414, 429, 494, 505, 999)],
    _case("return 400 text", req(target="/r400text")),
    _case("return 500 text", req(target="/r500text")),
    _case("expect, no body", req(target="/text", headers=(("Expect", "100-continue"),))),
    _case("expect, return 404", [req("POST", "/r404", headers=(("Content-Length", "5"), ("Expect", "100-continue"))), b"hello"], pause=0.2),
    _case("expect, return 301", [req("POST", "/r301", headers=(("Content-Length", "5"), ("Expect", "100-continue"))), b"hello"], pause=0.2),
    _case("expect, static", [req("GET", "/static/a.txt", headers=(("Content-Length", "5"), ("Expect", "100-continue"))), b"hello"], pause=0.2),
    _case("expect, static 404", [req("GET", "/static/nope", headers=(("Content-Length", "5"), ("Expect", "100-continue"))), b"hello"], pause=0.2),
    _case("expect, 1.0", req(target="/text", version="HTTP/1.0", headers=(("Expect", "100-continue"),))),
    _case("expect other", req(target="/text", headers=(("Expect", "something"),))),
    _case("chrome 404 padding", req(target="/r404", headers=(("User-Agent", "Mozilla/5.0 (X11) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),))),
    _case("msie 404 padding", req(target="/r404", headers=(("User-Agent", "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1)"),))),
    _case("firefox 404", req(target="/r404", headers=(("User-Agent", "Mozilla/5.0 (X11; rv:120.0) Gecko/20100101 Firefox/120.0"),))),
    _case("chrome 301", req(target="/r301", headers=(("User-Agent", "Chrome/1"),))),
    _case("cl leading zeros", req("POST", "/body", headers=(("Content-Length", "005"),), body=b"hello")),
    _case("cl huge", req("POST", "/body", headers=(("Content-Length", "99999999999999999999999"),))),
    _case("cl plus", req("POST", "/body", headers=(("Content-Length", "+5"),), body=b"hello")),
    _case("cl spaces", req("POST", "/body", headers=(("Content-Length", " 5 "),), body=b"hello")),
    _case("cl empty", req("POST", "/body", headers=(("Content-Length", ""),))),
    _case("cl list", req("POST", "/body", headers=(("Content-Length", "5, 5"),), body=b"hello")),
    _case("te Chunked", req("POST", "/body", headers=(("Transfer-Encoding", "Chunked"),), body=b"5\r\nhello\r\n0\r\n\r\n")),
    _case("te chunked, chunked", req("POST", "/body", headers=(("Transfer-Encoding", "chunked, chunked"),))),
    _case("te identity", req("POST", "/body", headers=(("Transfer-Encoding", "identity"),))),
    _case("te empty", req("POST", "/body", headers=(("Transfer-Encoding", ""),))),
    _case("chunk ext", req("POST", "/body", headers=(("Transfer-Encoding", "chunked"),), body=b"5;a=b\r\nhello\r\n0\r\n\r\n")),
    _case("chunked then next", req("POST", "/body", headers=(("Transfer-Encoding", "chunked"),), body=b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n") + req(target="/text")),
    _case("get with body then next", req("GET", "/text", headers=(("Content-Length", "5"),), body=b"hello") + req(target="/exact")),
    _case("underscore header", req(target="/vars", headers=(("X_A", "1"),))),
    # llhttp refuses these where nginx (ignore_invalid_headers, a lenient request line) answers: 400
    _case("invalid header name", req(target="/vars", headers=(("X@Y", "1"),)), stricter=[400]),
    _case("header without colon", b"GET /vars HTTP/1.1\r\nHost: default.test\r\nFoo\r\n\r\n", stricter=[400]),
    _case("empty header name", b"GET /vars HTTP/1.1\r\nHost: default.test\r\n: x\r\n\r\n"),
    _case("empty header value", req(target="/vars", headers=(("X-Empty", ""),))),
    _case("obs-text value", req(target="/vars", headers=(("X-A", "caf\xe9"),))),
    _case("host underscore", req(target="/vars", host="a_b.test")),
    _case("host bad port", req(target="/vars", host="default.test:abc")),
    _case("host dot only", req(target="/vars", host=".")),
    _case("host double dot", req(target="/vars", host="a..b")),
    _case("host backslash", req(target="/vars", host="a\\b")),
    _case("host space", req(target="/vars", host="a b")),
    _case("host ipv6 bad", req(target="/vars", host="[::1")),
    _case("fragment", req(target="/text#frag")),
    _case("encoded exact", req(target="/te%78t")),
    _case("empty query", req(target="/vars?")),
    _case("encoded slash", req(target="/a%2F..%2Fvars")),
    _case("no leading slash", req(target="vars")),
    _case("dot target", req(target="/..")),
    _case("high bytes in uri", b"GET /\xff\xfe HTTP/1.1\r\nHost: default.test\r\n\r\n"),
    _case("utf-8 in uri", b"GET /static/caf\xc3\xa9%20d HTTP/1.1\r\nHost: default.test\r\n\r\n"),
    # ($args and $request_uri show such bytes percent-encoded in pyginx, raw in nginx)
    _case("utf-8 in query", b"GET /text?q=\xc3\xa9 HTTP/1.1\r\nHost: default.test\r\n\r\n"),
    _case("high bytes then pipelined", b"GET /\xff HTTP/1.1\r\nHost: default.test\r\n\r\n" + req(target="/text")),
    _case("double spaces", b"GET  /text  HTTP/1.1\r\nHost: default.test\r\n\r\n"),
    _case("trailing space", b"GET /text HTTP/1.1 \r\nHost: default.test\r\n\r\n", stricter=[400]),
    _case("tab separator", b"GET\t/text\tHTTP/1.1\r\nHost: default.test\r\n\r\n"),
    _case("lowercase version", b"GET /text http/1.1\r\nHost: default.test\r\n\r\n"),
    _case("http/1.2", req(target="/vars", version="HTTP/1.2")),
    _case("http/1.9", req(target="/vars", version="HTTP/1.9")),
    _case("http/10.0", req(target="/vars", version="HTTP/10.0")),
    _case("http/1.", req(target="/vars", version="HTTP/1.")),
    _case("upgrade on return", req(target="/text", headers=(("Connection", "Upgrade"), ("Upgrade", "websocket")))),
    _case("upgrade then next", req(target="/text", headers=(("Connection", "Upgrade"), ("Upgrade", "websocket"))) + req(target="/exact")),
    _case("absolute-form upper scheme", req(target="HTTP://www.example.com/x")),
    _case("absolute-form empty host", req(target="http:///x")),
    _case("absolute-form bad host", req(target="http://a..b/x")),
    _case("connect", req("CONNECT", "www.example.com:443")),
    _case("options star", req("OPTIONS", "*", host="www.example.com")),
    _case("unknown method on return", req("FOO", "/text")),
    _case("post to exact name server", req("POST", "/", host="www.example.com", headers=(("Content-Length", "2"),), body=b"hi")),
    _case("1.0 keep-alive to nokeep", req(target="/", host="nokeep.test", version="HTTP/1.0", headers=(("Connection", "keep-alive"),))),
    _case("keepalive_requests 1.0", req(target="/", host="ka.test", version="HTTP/1.0", headers=(("Connection", "keep-alive"),)) * 4),
    _case("two connection headers", req(target="/text", headers=(("Connection", "keep-alive"), ("Connection", "close")))),
]

ALL = MORE + BAD_INPUTS + LIMITS + KEEPALIVE + TARGETS + ROUTING + RETURNS + REDIRECTS + STATIC


def _compare(pair: Pair, case: Case) -> str | None:
    if case.stricter is not None:
        got = run(pair.pyginx, case.data, case.count(), case.heads(), case.pause)
        statuses = [int(r.status_line.split()[1]) for r in got.responses]
        if statuses != case.stricter or not got.closed:
            return f"{case.name}: pyginx {statuses} closed={got.closed}, want {case.stricter} and closed"
        return None
    with ThreadPoolExecutor(2) as pool:
        fn = pool.submit(run, pair.nginx, case.data, case.count(), case.heads(), case.pause)
        fp = pool.submit(run, pair.pyginx, case.data, case.count(), case.heads(), case.pause)
        want, got = normalise(fn.result(), pair.nginx), normalise(fp.result(), pair.pyginx)
    if want == got:
        return None
    lines = [f"{case.name}:"]
    for i in range(max(len(want), len(got))):
        w = want[i] if i < len(want) else None
        g = got[i] if i < len(got) else None
        if w != g:
            lines.append(f"  nginx : {w!r}\n  pyginx: {g!r}")
    return "\n".join(lines)


def test_same_answers_as_nginx(pair: Pair) -> None:
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda c: _compare(pair, c), ALL))
    differences = [r for r in results if r]
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences)


# ---------------------------------------------------------------------------------------------- access log

UA = "agent \"quoted\" \\ caf\xe9"
LOGGED = [
    req(target="/text?log=1", headers=(("User-Agent", UA), ("Referer", "http://r.test/?a=1"))),
    req("HEAD", "/text?log=2"),
    req(target="/static/a.txt?log=3", version="HTTP/1.0", host=None),
    req(target="/nope?log=4", host="log.test"),
    req(target="/r301?log=5"),
    req("POST", "/body?log=6", headers=(("Content-Length", "101"),), body=b"x" * 101),
    req(target="/a%00?log=7"),
    req(target="http://www.example.com/x?log=8"),
    req(target="/r444?log=9"),
    req(target="/vars?log=10", headers=(("X-Forwarded-For", "a"),)),
    b"get /?log=11 HTTP/1.1\r\nHost: default.test\r\n\r\n",
    req(target="/?log=12", headers=(("Transfer-Encoding", "gzip"),)),
    req(target="/text?log=13", headers=(("Cookie", "c=" + "y" * 9000),)),
    req(target="/text?log=14", version="HTTP/2.0"),
    req("PURGE", "/static/a.txt?log=15"),
    req(target="/r204?log=16"),
    req(target="/ep-uri/x?log=17"),
    req(target="/?log=18", headers=(("X-A", "b\x00c"),)),
    b"GET /a b?log=19 HTTP/1.1\r\nHost: default.test\r\n\r\n",
    req(target="/?log=20", host=None),
]
TIME = re.compile(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]")


def _log_lines(path: Path) -> dict[str, str]:
    """Access-log lines by their `log=N` marker, the time replaced."""
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        m = re.search(r"log=(\d+)", line)
        if m:
            out[m.group(1)] = TIME.sub("[TIME]", line)
    return out


def test_access_log_lines_as_nginx(pair: Pair) -> None:
    for data in LOGGED:
        for port in (pair.nginx, pair.pyginx):
            run(port, close(data), 1, [data.startswith(b"HEAD")])
    want_path = pair.root / "logs" / "nginx-access.log"
    got_path = pair.root / "logs" / "access.log"
    wait_for(lambda: len(_log_lines(want_path)) >= len(LOGGED), 5, "nginx's access log lines")
    wait_for(lambda: len(_log_lines(got_path)) >= len(LOGGED), 5, "pyginx's access log lines")
    want, got = _log_lines(want_path), _log_lines(got_path)
    differences = [f"nginx : {want.get(k)}\npyginx: {got.get(k)}" for k in sorted(set(want) | set(got), key=int) if want.get(k) != got.get(k)]
    assert not differences, "\n".join(differences)
