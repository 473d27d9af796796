"""limit_rate / limit_rate_after / $limit_rate with the real daemon: a 64 KiB response at 32k takes
about 2 s (as nginx's write filter paces it, nginx 1.22 takes 2.0 s too), with limit_rate_after 64k
it is immediate; static files and proxied bodies alike; the worker keeps serving others meanwhile;
the request lasts until its last byte is out (limit_conn's slot, $request_time); bad values are
refused."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable

from tests.integration.harness import Pyginx, basic_config, http_get, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_origin import Origin, big_body, origin_fixture  # noqa: F401

SIZE = 64 * 1024


def timed_get(port: int, path: str, keep: int = 1, deadline: float = 10.0) -> tuple[float, list[bytes]]:
    """`keep` GETs of `path` on one connection (the last one closes): the time, each body."""
    start = time.monotonic()
    bodies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=deadline) as s:
        f = s.makefile("rb")
        for i in range(keep):
            close = "close" if i == keep - 1 else "keep-alive"
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {close}\r\n\r\n".encode())
            status = f.readline()
            assert status.startswith(b"HTTP/1.1 200"), status
            length = None
            while (line := f.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert length is not None
            bodies.append(f.read(length))
    return time.monotonic() - start, bodies


def _config(pyginx: Pyginx, origin_port: int) -> str:
    (pyginx.prefix / "html" / "f64").write_bytes(big_body(SIZE))
    text = basic_config(
        pyginx.port,
        workers=1,
        http="""
log_format: {rate: '$uri $limit_rate $body_bytes_sent $request_time'}
limit_conn_zone: $binary_remote_addr zone=addr:1m
""",
        server="access_log: logs/rate.log rate",
    )
    return text.replace(
        "      locations:\n",
        f"""      locations:
        - location: /slow/
          alias: html/
          limit_rate: 32k
        - location: /after/
          alias: html/
          limit_rate: 32k
          limit_rate_after: 64k
        - location: /proxied/
          set: $limit_rate 32k
          proxy_pass: http://127.0.0.1:{origin_port}/
        - location: /var/
          set: $r 32k
          limit_rate: $r
          alias: html/
        - location: /one/
          limit_conn: addr 1
          limit_rate: 32k
          alias: html/
        - location: /probe
          limit_conn: addr 1
          alias: html/index.html
""",
    )


def _in_thread(
    fn: Callable[[], tuple[float, list[bytes]]],
) -> tuple[threading.Thread, list[tuple[float, list[bytes]]]]:
    out: list[tuple[float, list[bytes]]] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def test_limit_rate_paces_files_and_proxied_bodies(pyginx: Pyginx, origin: Origin) -> None:
    pyginx.write_config(_config(pyginx, origin.port))
    pyginx.start()
    want = big_body(SIZE)
    # three slow downloads at once (file by location, proxied by `set $limit_rate`, file by a
    # variable), a keep-alive connection whose second response is fast after a slow one
    jobs = [
        _in_thread(lambda: timed_get(pyginx.port, "/slow/f64")),
        _in_thread(lambda: timed_get(pyginx.port, f"/proxied/big?size={SIZE}")),
        _in_thread(lambda: timed_get(pyginx.port, "/var/f64")),
    ]
    # meanwhile the same worker answers at once; limit_rate_after 64k lets the whole body through
    fast, bodies = timed_get(pyginx.port, "/after/f64")
    assert bodies == [want]
    assert fast < 1.0, fast
    # nginx's download limit: limit_conn holds its slot for as long as the paced response is sent
    one = _in_thread(lambda: timed_get(pyginx.port, "/one/f64"))
    jobs.append(one)
    wait_for(lambda: http_get(pyginx.port, "/probe").status == 503, 1.5, "the download to hold the slot")
    for t, out in jobs:
        t.join(10)
        assert out, "a paced download did not finish in 10 s"
        took, got = out[0]
        assert got == [want]
        assert 1.5 <= took < 4.0, took  # 32 KiB at once, 32 KiB a second later, the rest after 2 s
    assert http_get(pyginx.port, "/probe").status == 200  # released when the last byte went out
    log = (pyginx.prefix / "logs" / "rate.log").read_text()
    took_logged = float(next(line for line in log.splitlines() if line.startswith("/slow/f64")).split()[-1])
    assert took_logged >= 1.5, log  # $request_time counts the whole paced send, as in nginx
    assert "/proxied/big 32768 65536" in log, log
    assert "/slow/f64 32768 65536" in log, log
    assert "/var/f64 32768 65536" in log, log
    pyginx.check_log()


def test_limit_rate_pipelined_next_response_keeps_its_order(pyginx: Pyginx, origin: Origin) -> None:
    """A paced response then a plain one on the same connection: both whole and in order (the
    second waits only for the first's tail), and the connection is fast again afterwards."""
    pyginx.write_config(_config(pyginx, origin.port))
    pyginx.start()
    took, bodies = _two_on_one(pyginx.port)
    assert bodies == [big_body(SIZE), b"ok", big_body(SIZE)]
    assert 1.5 <= took < 4.0, took
    pyginx.check_log()


def _two_on_one(port: int) -> tuple[float, list[bytes]]:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /slow/f64 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.sendall(b"GET /after/f64 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    took = time.monotonic() - start
    bodies = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        bodies.append(rest[:length])
        data = rest[length:]
    return took, bodies


class _AccelOrigin(socketserver.ThreadingTCPServer):
    """An upstream answering every request with `X-Accel-Limit-Rate: <path's number>` and 64 KiB."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AccelHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _AccelHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):
            pass
        rate = line.split(b" ")[1].strip(b"/")
        body = big_body(SIZE)
        head = b"HTTP/1.1 200 OK\r\nX-Accel-Limit-Rate: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        self.wfile.write(head % (rate, len(body)) + body)


def test_x_accel_limit_rate_from_the_upstream(pyginx: Pyginx) -> None:
    """nginx's X-Accel-Limit-Rate: the upstream sets the rate (bytes/s), 0 lifts the location's."""
    origin = _AccelOrigin()
    try:
        text = basic_config(pyginx.port, workers=1).replace(
            "      locations:\n",
            f"""      locations:
        - location: /up/
          proxy_pass: http://127.0.0.1:{origin.server_address[1]}/
        - location: /limited/
          limit_rate: 8k
          proxy_pass: http://127.0.0.1:{origin.server_address[1]}/
        - location: /ignoring/
          proxy_ignore_headers: X-Accel-Limit-Rate
          proxy_pass: http://127.0.0.1:{origin.server_address[1]}/
""",
        )
        pyginx.write_config(text)
        pyginx.start()
        jobs = [_in_thread(lambda: timed_get(pyginx.port, "/up/32768"))]
        took, bodies = timed_get(pyginx.port, "/limited/0")  # 0: no limit, over limit_rate 8k
        assert bodies == [big_body(SIZE)] and took < 1.0, took
        took, bodies = timed_get(pyginx.port, "/ignoring/1024")  # proxy_ignore_headers: unpaced
        assert bodies == [big_body(SIZE)] and took < 1.0, took
        t, out = jobs[0]
        t.join(10)
        assert out, "the paced download did not finish in 10 s"
        took, bodies = out[0]
        assert bodies == [big_body(SIZE)] and 1.5 <= took < 4.0, took
    finally:
        origin.shutdown()
        origin.server_close()
    pyginx.check_log()


def test_bad_limit_rate_is_refused(pyginx: Pyginx) -> None:
    text = basic_config(pyginx.port).replace(
        "          return: 200 ok\n", "          limit_rate: fast\n          return: 200 ok\n"
    )
    conf = pyginx.write_config(text)
    done = pyginx.run_cli("-t")
    assert done.returncode == 1
    assert '"limit_rate" directive invalid value' in done.stderr, done.stderr
    assert f"{conf}:" in done.stderr, done.stderr
