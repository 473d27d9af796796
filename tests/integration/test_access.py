"""Access control against the real daemon: allow/deny in order, satisfy, auth_basic with a user file
that changes under it, $remote_user in the access log, auth_request to a real auth service with
auth_request_set, nginx's error-log lines, and bad configurations refused with file and line."""

from __future__ import annotations

import base64
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, free_port, wait_for
from tests.integration.test_gzip import raw


class _AuthService(http.server.BaseHTTPRequestHandler):
    """An auth service: X-Token good -> 200 with X-User, bad -> 403, weird -> 302, else 401."""

    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        token = self.headers.get("X-Token")
        if token == "good":
            self._answer(200, [("X-User", "alice"), ("X-Groups", "admin,dev")])
        elif token == "bad":
            self._answer(403)
        elif token == "weird":
            self._answer(302, [("Location", "/elsewhere")])
        else:
            self._answer(401, [("WWW-Authenticate", 'Bearer realm="svc"')])

    def _answer(self, status: int, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"ignored")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def auth_service() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthService)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _config(port: int, auth: str, dead: int) -> str:
    return f"""
worker_processes: 2
error_log: logs/error.log info
pid: logs/pyginx.pid
worker_shutdown_timeout: 3s
http:
  log_format:
    users: '$request_uri $status user=$remote_user'
  access_log: logs/access.log users
  servers:
    - listen: 127.0.0.1:{port}
      root: html
      locations:
        - location: = /
          return: 200 ready
        - location: /open/
          alias: html/
        - location: /deny-me/
          alias: html/
          deny: 127.0.0.1
          allow: all
        - location: /keys/
          alias: html/
          allow: [192.0.2.0/24, 127.0.0.0/8]
          deny: all
        - location: /ordered/
          alias: html/
          access: ["deny 10.0.0.1", "allow ::1", "deny all"]
        - location: /v6only/
          alias: html/
          allow: 2001:db8::/32
          deny: all
        - location: /basic/
          alias: html/
          auth_basic: Staff only
          auth_basic_user_file: htpasswd
        - location: /basic-off/
          alias: html/
          auth_basic: "off"
          auth_basic_user_file: htpasswd
        - location: /nofile/
          alias: html/
          auth_basic: x
          auth_basic_user_file: /nonexistent/htpasswd
        - location: /any-deny/
          alias: html/
          satisfy: any
          deny: all
          auth_basic: any realm
          auth_basic_user_file: htpasswd
        - location: /any-allow/
          alias: html/
          satisfy: any
          allow: 127.0.0.1
          auth_basic: any realm
          auth_basic_user_file: htpasswd
        - location: /all-both/
          alias: html/
          deny: all
          auth_basic: both
          auth_basic_user_file: htpasswd
        - location: /sso/
          alias: html/
          auth_request: /_auth
          auth_request_set: {{$user: $upstream_http_x_user, $groups: $upstream_http_x_groups}}
          add_header: {{X-User: $user, X-Groups: $groups}}
        - location: /sso-dead/
          alias: html/
          auth_request: /_dead
        - location: = /_auth
          internal: true
          proxy_pass: http://{auth}/verify
        - location: = /_dead
          internal: true
          proxy_pass: http://127.0.0.1:{dead}/
"""


def _users(path: Path, text: str) -> None:
    """Write the user file with a new mtime (the cache is keyed by it), atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    old = path.stat().st_mtime_ns if path.exists() else 0
    os.utime(tmp, ns=(old + 2_000_000_000, old + 2_000_000_000))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, auth_service: str) -> Iterator[Pyginx]:
    p = Pyginx(tmp_path_factory.mktemp("access"))
    # alice: $apr1$ (openssl passwd -apr1 -salt abcdefgh builder), bob: {PLAIN}
    _users(
        p.prefix / "conf" / "htpasswd",
        "# staff\nalice:$apr1$abcdefgh$LIQepOrDnCPxfpon9ueYt0\nbob:{PLAIN}pw\n",
    )
    p.write_config(_config(p.port, auth_service, free_port()))
    try:
        p.start()
        yield p
        p.check_log(allow=("connect() failed",))
    finally:
        p.cleanup()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _status(server: Pyginx, target: str, headers: dict[str, str] | None = None) -> int:
    return raw(server.port, target, headers)[0]


def _logged(server: Pyginx, text: str) -> str:
    return wait_for(
        lambda: next((line for line in server.error_log().splitlines() if text in line), ""), 5, text
    )


def test_allow_deny_in_order(server: Pyginx) -> None:
    assert _status(server, "/open/index.html") == 200
    assert _status(server, "/deny-me/index.html") == 403
    line = _logged(server, "access forbidden by rule")
    assert "[error]" in line and 'request: "GET /deny-me/index.html HTTP/1.1"' in line
    assert _status(server, "/keys/index.html") == 200  # a list's elements, in order, then deny all
    assert _status(server, "/ordered/index.html") == 403  # 127.0.0.1 is not ::1
    assert _status(server, "/v6only/index.html") == 403


def test_auth_basic(server: Pyginx) -> None:
    status, h, body = raw(server.port, "/basic/index.html")
    assert status == 401 and h["www-authenticate"] == 'Basic realm="Staff only"'
    assert b"401 Authorization Required" in body
    assert _status(server, "/basic/index.html", _basic("alice", "builder")) == 200
    assert _status(server, "/basic/index.html", _basic("bob", "pw")) == 200
    status, h, _ = raw(server.port, "/basic/index.html", _basic("alice", "wrong"))
    assert status == 401 and h["www-authenticate"] == 'Basic realm="Staff only"'
    assert "[error]" in _logged(server, 'user "alice": password mismatch')
    assert _status(server, "/basic/index.html", _basic("carol", "x")) == 401
    htpasswd = server.prefix / "conf" / "htpasswd"
    assert "[error]" in _logged(server, f'user "carol" was not found in "{htpasswd}"')
    assert _status(server, "/basic/index.html", {"Authorization": "Bearer zzz"}) == 401
    assert "[info]" in _logged(server, "no user/password was provided for basic authentication")
    assert _status(server, "/basic-off/index.html") == 200


def test_remote_user_in_the_access_log(server: Pyginx) -> None:
    raw(server.port, "/basic/index.html?log=1", _basic("bob", "pw"))
    raw(server.port, "/open/index.html?log=2", _basic("zed", "whatever"))  # nginx: any Basic credentials
    raw(server.port, "/open/index.html?log=3")
    log = server.prefix / "logs" / "access.log"

    def logged() -> list[str]:
        found = [ln for ln in log.read_text().splitlines() if "?log=" in ln]
        return found if len(found) >= 3 else []

    lines = wait_for(logged, 5, "three access log lines")
    assert lines == [
        "/basic/index.html?log=1 200 user=bob",
        "/open/index.html?log=2 200 user=zed",
        "/open/index.html?log=3 200 user=-",
    ]


def test_user_file_changes_are_seen_by_every_worker(server: Pyginx) -> None:
    htpasswd = server.prefix / "conf" / "htpasswd"
    before = htpasswd.read_text()
    try:
        _users(
            htpasswd,
            "dave:{SHA}" + base64.b64encode(__import__("hashlib").sha1(b"new").digest()).decode() + "\n",
        )
        for _ in range(6):  # new connections: both workers answer some
            assert _status(server, "/basic/index.html", _basic("dave", "new")) == 200
            assert _status(server, "/basic/index.html", _basic("bob", "pw")) == 401
    finally:
        _users(htpasswd, before)
    assert _status(server, "/basic/index.html", _basic("bob", "pw")) == 200


def test_missing_user_file_is_403_at_request_time(server: Pyginx) -> None:
    assert _status(server, "/nofile/index.html", _basic("a", "b")) == 403
    line = _logged(server, 'open() "/nonexistent/htpasswd" failed (2: No such file or directory)')
    assert "[error]" in line
    assert _status(server, "/nofile/index.html") == 401  # no credentials: the challenge comes first


def test_satisfy(server: Pyginx) -> None:
    status, h, _ = raw(server.port, "/any-deny/index.html")
    assert status == 401 and h["www-authenticate"] == 'Basic realm="any realm"'  # 401 wins over 403
    assert _status(server, "/any-deny/index.html", _basic("bob", "pw")) == 200
    assert _status(server, "/any-allow/index.html") == 200  # the address suffices
    assert _status(server, "/all-both/index.html", _basic("bob", "pw")) == 403  # satisfy all: rules first


def test_auth_request(server: Pyginx) -> None:
    seen = _AuthService.seen
    seen.clear()
    status, h, body = raw(server.port, "/sso/index.html?x=1", {"X-Token": "good", "Cookie": "s=1"})
    assert status == 200 and body == b"<h1>pyginx test</h1>\n"
    assert h["x-user"] == "alice" and h["x-groups"] == "admin,dev"
    method, path, headers, sub_body = seen[-1]
    assert (method, path, sub_body) == ("GET", "/verify", b"")
    assert headers["x-token"] == "good" and headers["cookie"] == "s=1"
    status, h, _ = raw(server.port, "/sso/index.html", {"X-Token": "nope"})
    assert status == 401 and h["www-authenticate"] == 'Bearer realm="svc"' and "x-user" not in h
    assert _status(server, "/sso/index.html", {"X-Token": "bad"}) == 403
    assert _status(server, "/sso/index.html", {"X-Token": "weird"}) == 500
    assert "[error]" in _logged(server, "auth request unexpected status: 302")
    assert _status(server, "/_auth") == 404  # internal


def test_auth_request_with_a_body_sends_none_and_waits_not(server: Pyginx) -> None:
    seen = _AuthService.seen
    seen.clear()
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", "/sso/index.html", body=b"x" * 5000, headers={"X-Token": "good"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 405  # the static handler's answer: the auth step let it through
    finally:
        conn.close()
    method, _, headers, sub_body = seen[-1]
    assert method == "GET" and "content-length" not in headers and sub_body == b""


def test_auth_service_down_is_500(server: Pyginx) -> None:
    assert _status(server, "/sso-dead/index.html") == 500
    assert "[error]" in _logged(server, "auth request unexpected status: 502")


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("allow: 10.0.0.0/33", 'invalid parameter "10.0.0.0/33"'),
        ("deny: [10.0.0.1, nonsense]", 'invalid parameter "nonsense"'),
        ("satisfy: sometimes", 'invalid value "sometimes"'),
    ],
)
def test_bad_configs_are_refused_with_file_and_line(tmp_path: Path, directive: str, message: str) -> None:
    p = Pyginx(tmp_path)
    conf = p.write_config(
        "http:\n  servers:\n    - listen: 127.0.0.1:1\n      locations:\n        - location: /\n"
        f"          {directive}\n"
    )
    result = p.run_cli("-t")
    assert result.returncode != 0
    assert f"{message} in {conf}:6" in result.stderr
