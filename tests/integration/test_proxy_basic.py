"""Proxying against real origins: balancing, URI rules, headers both ways, keep-alive to upstreams,
the $upstream_* variables, and pyginx as its own upstream."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from tests.integration.harness import Pyginx, free_port, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_origin import (
    Origin,
    origins_fixture,  # noqa: F401  (the `origins` fixture)
    proxy_config,
)


def request(
    port: int,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, str], bytes]:
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if conn is None:
            c.close()


def info(port: int, path: str, **kw: Any) -> dict[str, Any]:
    status, _, body = request(port, path, **kw)
    assert status == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def upstream_block(*origins: Origin, extra: str = "", server_params: str = "") -> str:
    servers = "\n".join(f"    - {o.addr} {server_params}".rstrip() for o in origins)
    return f"app:\n  servers:\n{servers}\n{extra}"


def test_round_robin_over_ten_requests_alternates(pyginx: Pyginx, origins: list[Origin]) -> None:
    pyginx.write_config(
        proxy_config(
            pyginx.port,
            upstreams=upstream_block(*origins),
            locations="- location: /\n  proxy_pass: http://app",
        )
    )
    pyginx.start()
    names = [info(pyginx.port, f"/r{i}")["origin"] for i in range(10)]
    assert names == ["a", "b"] * 5 or names == ["b", "a"] * 5


def test_weights(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    ups = f"app:\n  servers:\n    - {a.addr} weight=3\n    - {b.addr}\n"
    pyginx.write_config(
        proxy_config(pyginx.port, upstreams=ups, locations="- location: /\n  proxy_pass: http://app")
    )
    pyginx.start()
    names = [info(pyginx.port, "/w")["origin"] for _ in range(8)]
    assert names.count("a") == 6 and names.count("b") == 2


def test_uri_rules(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    locations = f"""
- location: /
  proxy_pass: http://{a.addr}
- location: /api/
  proxy_pass: http://{a.addr}/v2/
- location: = /exact
  proxy_pass: http://{a.addr}/other
- location: ~ \\.php$
  proxy_pass: http://{a.addr}
"""
    pyginx.write_config(proxy_config(pyginx.port, locations=locations))
    pyginx.start()
    # without a URI part the client's URI goes unchanged, escapes and all
    assert info(pyginx.port, "/a/b%20c//d?x=1&y=%2F")["target"] == "/a/b%20c//d?x=1&y=%2F"
    # with one, the location prefix is replaced
    assert info(pyginx.port, "/api/users/7?full=1")["target"] == "/v2/users/7?full=1"
    assert info(pyginx.port, "/api/sp%20ace")["target"] == "/v2/sp%20ace"
    assert info(pyginx.port, "/exact?q")["target"] == "/other?q"
    assert info(pyginx.port, "/x/index.php?a=b")["target"] == "/x/index.php?a=b"


def test_request_headers(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    locations = f"""
- location: /
  proxy_pass: http://{a.addr}
- location: /set/
  proxy_pass: http://app
  proxy_set_header:
    Host: $host
    X-Real-IP: $remote_addr
    X-Forwarded-For: $proxy_add_x_forwarded_for
    X-Scheme: $scheme
    X-Req: $request_uri
    Accept-Encoding: ""
"""
    ups = upstream_block(a, extra="  keepalive: 8")
    pyginx.write_config(proxy_config(pyginx.port, upstreams=ups, locations=locations))
    pyginx.start()
    sent = {
        "Connection": "keep-alive, X-Hop",
        "Keep-Alive": "timeout=5",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "X-Hop": "removed because Connection names it",
        "X-Custom": "kept",
        "Accept-Encoding": "gzip",
        "X-Forwarded-For": "10.9.8.7",
    }
    got = dict((k.lower(), v) for k, v in info(pyginx.port, "/p", headers=sent)["headers"])
    assert got["host"] == a.addr  # $proxy_host
    for hop in ("keep-alive", "proxy-connection", "te", "x-hop"):
        assert hop not in got
    assert got["connection"] == "close"  # an implicit upstream is not kept alive (nginx)
    assert got["x-custom"] == "kept" and got["accept-encoding"] == "gzip"
    got = dict((k.lower(), v) for k, v in info(pyginx.port, "/set/p?q=1", headers=sent)["headers"])
    assert got["host"] == "127.0.0.1"  # $host: the Host header without its port
    assert got["x-real-ip"] == "127.0.0.1"
    assert got["x-forwarded-for"] == "10.9.8.7, 127.0.0.1"
    assert got["x-scheme"] == "http" and got["x-req"] == "/set/p?q=1"
    assert "accept-encoding" not in got  # an empty value removes the header
    assert "connection" not in got  # keep-alive upstream, HTTP/1.1: nothing to say (nginx)


def test_response_headers(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    locations = f"""
- location: /
  proxy_pass: http://{a.addr}
- location: /pass/
  proxy_pass: http://{a.addr}/
  proxy_pass_header: Server
  proxy_hide_header: X-Kept
"""
    pyginx.write_config(proxy_config(pyginx.port, locations=locations))
    pyginx.start()
    status, headers, body = request(pyginx.port, "/raw?r=hidden")
    assert status == 200 and body == b"ok"
    assert headers["server"].startswith("pyginx")
    assert headers["date"] != "Mon, 01 Jan 2001 00:00:00 GMT"
    for gone in ("x-pad", "x-accel-buffering", "x-accel-expires", "x-hop", "keep-alive"):
        assert gone not in headers
    assert headers["x-kept"] == "yes"
    status, headers, _ = request(pyginx.port, "/pass/raw?r=hidden")
    assert status == 200
    assert headers["server"] == "origin/1" and "x-kept" not in headers


def test_x_accel_redirect(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    locations = f"""
- location: /
  proxy_pass: http://{a.addr}
- location: /protected/
  internal: true
  return: 200 internal $uri $args
"""
    pyginx.write_config(proxy_config(pyginx.port, locations=locations))
    pyginx.start()
    assert request(pyginx.port, "/protected/file")[0] == 404  # internal: not for clients
    status, _, body = request(pyginx.port, "/raw?r=accel")
    assert (status, body) == (200, b"internal /protected/file k=v")


def test_proxy_redirect_default(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    locations = """
- location: /one/
  proxy_pass: http://app/
"""
    pyginx.write_config(proxy_config(pyginx.port, upstreams=upstream_block(a), locations=locations))
    pyginx.start()
    status, headers, _ = request(pyginx.port, "/one/redirect")
    assert status == 302
    # the origin answered Location: http://app/target/x (its Host was $proxy_host = app)
    assert headers["location"] == f"http://127.0.0.1:{pyginx.port}/one/target/x"


def test_keepalive_to_upstream(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    pyginx.write_config(
        proxy_config(
            pyginx.port,
            upstreams=upstream_block(a, extra="  keepalive: 8"),
            locations="- location: /\n  proxy_pass: http://app",
        )
    )
    pyginx.start()
    for i in range(20):
        request(pyginx.port, f"/n{i}")  # a new client connection each time
    assert len(a.seen("/n")) == 20
    assert a.connections < 20
    assert a.connections == 1  # one worker, sequential requests: one pooled connection
    assert all(r.version == "HTTP/1.1" for r in a.seen("/n"))


def test_keepalive_off_and_requests_limit(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    ups = f"""
app:
  servers:
    - {a.addr}
  keepalive: 0
lim:
  servers:
    - {b.addr}
  keepalive: 8
  keepalive_requests: 3
"""
    locations = "- location: /\n  proxy_pass: http://app\n- location: /lim/\n  proxy_pass: http://lim"
    pyginx.write_config(proxy_config(pyginx.port, upstreams=ups, locations=locations))
    pyginx.start()
    for i in range(4):
        request(pyginx.port, f"/k{i}")
        request(pyginx.port, f"/lim/{i}")
    assert a.connections == 4
    assert b.connections == 2  # three requests, then a new connection


def test_idle_connection_closed_by_upstream_is_dropped(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    a.idle_close = 0.2
    pyginx.write_config(
        proxy_config(
            pyginx.port, upstreams=upstream_block(a), locations="- location: /\n  proxy_pass: http://app"
        )
    )
    pyginx.start()
    assert request(pyginx.port, "/first")[0] == 200
    wait_for(lambda: a.closed >= 1, 5, "the origin to close the idle connection")
    assert request(pyginx.port, "/second")[0] == 200
    assert a.connections == 2
    # the pool noticed the close while the connection was idle: no request ever met a dead connection
    assert "keep-alive connection closed" not in pyginx.error_log()
    assert "[error]" not in pyginx.error_log()


def test_upstream_variables_in_access_log(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    dead = free_port()
    ups = f"app:\n  servers:\n    - 127.0.0.1:{dead}\n    - {a.addr}\n"
    pyginx.write_config(
        proxy_config(pyginx.port, upstreams=ups, locations="- location: /\n  proxy_pass: http://app")
    )
    pyginx.start()
    assert request(pyginx.port, "/v")[0] == 200
    log = Path(pyginx.prefix / "logs" / "access.log")

    def line() -> str | None:
        text = log.read_text() if log.exists() else ""
        found = [ln for ln in text.splitlines() if '"GET /v HTTP/1.1"' in ln]
        return found[-1] if found else None

    entry = wait_for(line, 5, "the access log line")
    assert f'ua="127.0.0.1:{dead}, {a.addr}"' in entry
    assert 'us="502, 200"' in entry
    assert 'uht="-, 0.' in entry


def test_hash_and_ip_hash(pyginx: Pyginx, origins: list[Origin]) -> None:
    ups = (
        upstream_block(*origins, extra="  hash: $arg_k")
        + "\n"
        + upstream_block(*origins, extra="  ip_hash: true").replace("app:", "iph:")
    )
    locations = "- location: /\n  proxy_pass: http://app\n- location: /ip/\n  proxy_pass: http://iph"
    pyginx.write_config(proxy_config(pyginx.port, upstreams=ups, locations=locations))
    pyginx.start()
    for key in ("alpha", "beta", "gamma", "delta"):
        first = info(pyginx.port, f"/h?k={key}")["origin"]
        assert all(info(pyginx.port, f"/h?k={key}")["origin"] == first for _ in range(4))
    first = info(pyginx.port, "/ip/x")["origin"]
    assert all(info(pyginx.port, f"/ip/{i}")["origin"] == first for i in range(6))


def test_pyginx_as_upstream(pyginx: Pyginx, tmp_path: Path) -> None:
    (tmp_path / "backend").mkdir()
    backend = Pyginx(tmp_path / "backend")
    try:
        backend.write_config(
            proxy_config(backend.port, locations="- location: /\n  return: 200 from-backend-$request_uri")
        )
        backend.start()
        ups = f"app:\n  servers:\n    - 127.0.0.1:{backend.port}\n"
        pyginx.write_config(
            proxy_config(
                pyginx.port, upstreams=ups, locations="- location: /front/\n  proxy_pass: http://app/"
            )
        )
        pyginx.start()
        status, headers, body = request(pyginx.port, "/front/x?y=1")
        assert status == 200 and body == b"from-backend-/x?y=1"
        # chunked from the client, through both
        status, _, body = request(pyginx.port, "/front/echo", method="POST", body=iter([b"abc", b"def"]))  # type: ignore[arg-type]
        assert status == 200
        backend.check_log()
    finally:
        backend.cleanup()


def test_unix_socket_upstream(pyginx: Pyginx, tmp_path: Path) -> None:
    path = tmp_path / "origin.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(8)
    import threading

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                line = data.split(b"\r\n", 1)[0]
                body = b"unix " + line
                c.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(body), body)
                )

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        pyginx.write_config(
            proxy_config(pyginx.port, locations=f"- location: /\n  proxy_pass: http://unix:{path}:/u/")
        )
        pyginx.start()
        status, _, body = request(pyginx.port, "/p?q")
        assert status == 200 and body == b"unix GET /u/p?q HTTP/1.1"
    finally:
        srv.close()


def test_proxy_pass_with_variables(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    locations = f"""
- location: /byport/
  proxy_pass: http://127.0.0.1:$arg_port
- location: /byname/
  proxy_pass: http://$arg_up
- location: /withuri/
  proxy_pass: http://{b.addr}/fixed$uri
"""
    pyginx.write_config(proxy_config(pyginx.port, upstreams=upstream_block(a), locations=locations))
    pyginx.start()
    got = info(pyginx.port, f"/byport/x?port={b.port}")
    assert got["origin"] == "b" and got["target"] == f"/byport/x?port={b.port}"
    assert info(pyginx.port, "/byname/y?up=app")["origin"] == "a"
    # an evaluated URI part is sent as it is
    assert info(pyginx.port, "/withuri/z?q=1")["target"] == "/fixed/withuri/z"


def test_error_page_to_a_proxied_location(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    locations = f"""
- location: /x/
  proxy_pass: http://127.0.0.1:{free_port()}
  error_page: {{502: "= /fallback/"}}  # "=": the fallback's own status, as nginx
- location: /fallback/
  proxy_pass: http://{a.addr}
"""
    pyginx.write_config(proxy_config(pyginx.port, locations=locations))
    pyginx.start()
    assert info(pyginx.port, "/x/a")["target"] == "/fallback/"
