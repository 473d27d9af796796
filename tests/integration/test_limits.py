"""limit_req and limit_conn with the real daemon: 2 workers share one zone and admit what one nginx
admits; the zone survives a reload; limit_conn counts requests in flight across workers; bad
configurations are refused with file and line."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, basic_config, free_port, http_get, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_origin import Origin, origin_fixture  # noqa: F401

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def burst(port: int, path: str, n: int) -> list[int]:
    """n requests on n connections, all connected first and then sent at once: their statuses."""
    return timed_burst(port, path, n)[0]


def timed_burst(port: int, path: str, n: int) -> tuple[list[int], float]:
    """burst(), and the seconds from the first request sent to the last answer read."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
    try:
        req = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        t0 = time.monotonic()
        for s in socks:
            s.sendall(req)
        out = []
        for s in socks:
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            out.append(int(data.split(b" ", 2)[1]))
        return out, time.monotonic() - t0
    finally:
        for s in socks:
            s.close()


def _limits_config(port: int, workers: int = 2, rate: str = "10r/s") -> str:
    """Two workers on one reuseport listener (the kernel spreads connections over both)."""
    text = basic_config(
        port,
        workers=workers,
        http=f"""
log_format: {{lr: '$pid $status $limit_req_status $limit_conn_status'}}
limit_req_zone:
  - $binary_remote_addr zone=one:1m rate={rate}
  - $binary_remote_addr zone=minute:1m rate=1r/m
limit_req_status: 429
""",
        server="access_log: logs/limits.log lr",
    )
    text = text.replace(f"    - listen: 127.0.0.1:{port}\n", f"    - listen: 127.0.0.1:{port} reuseport\n")
    return text.replace(
        "      locations:\n",
        """      locations:
        - location: /burst
          limit_req: zone=one burst=5 nodelay
          alias: html/index.html
        - location: /delay
          limit_req: zone=one burst=5
          alias: html/index.html
        - location: /minute
          limit_req: zone=minute
          limit_req_log_level: warn
          alias: html/index.html
""",
    )


def _nginx_burst(tmp: Path, n: int) -> tuple[list[int], float]:
    assert NGINX is not None
    root = tmp / "ngx"
    for sub in ("conf", "logs", "html"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "html" / "index.html").write_text("x\n")
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "conf" / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
error_log {root}/logs/error.log info;
pid {root}/logs/nginx.pid;
daemon on;
events {{ worker_connections 256; }}
http {{
  access_log off;
  limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s;
  limit_req_status 429;
  server {{
    listen 127.0.0.1:{port};
    location / {{ root {root}/html; }}
    location /burst {{ limit_req zone=one burst=5 nodelay; alias {root}/html/index.html; }}
  }}
}}
"""
    )
    subprocess.run([NGINX, "-p", str(root), "-c", str(root / "conf" / "nginx.conf")], check=True)
    pid_file = root / "logs" / "nginx.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx to start"))
    try:
        wait_for(lambda: http_get(port, "/").status == 200, 10, "nginx to answer")
        return timed_burst(port, "/burst", n)
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "nginx to stop")


@pytest.mark.skipif(NGINX is None, reason="no nginx binary to compare with")
def test_burst_over_two_workers_admits_what_nginx_admits(pyginx: Pyginx, tmp_path: Path) -> None:
    pyginx.write_config(_limits_config(pyginx.port))
    master = pyginx.start(workers=2)
    got, took = timed_burst(pyginx.port, "/burst", 20)
    want, nginx_took = _nginx_burst(tmp_path, 20)
    # burst=5 nodelay at 10r/s admits 1 + 5 at once, then one more per 100 ms the burst lasts: the
    # same rule bounds both servers (each by its own duration, so a loaded host cannot fail it)
    for statuses, seconds in ((want, nginx_took), (got, took)):
        assert set(statuses) == {200, 429}, statuses
        assert 6 <= statuses.count(200) <= 7 + int(seconds * 10), (statuses, seconds, want, got)
    # both workers took part (reuseport spreads the connections), so the zone was really shared
    workers = {str(p) for p in pyginx.workers(master)}
    lines = wait_for(
        lambda: [ln for ln in (pyginx.prefix / "logs" / "limits.log").read_text().splitlines() if " 429 " in ln or " 200 PASSED" in ln],
        5,
        "the access log",
    )
    assert {ln.split()[0] for ln in lines} == workers, (lines, workers)
    assert any(ln.split()[2] == "REJECTED" for ln in lines)
    log = pyginx.error_log()
    assert re.search(r'\[error\] .*limiting requests, excess: 5\.\d{3} by zone "one", client: 127\.0\.0\.1, server: localhost, request: "GET /burst HTTP/1\.1", host: "x"', log), log


def test_delay_paces_the_excess(pyginx: Pyginx) -> None:
    pyginx.write_config(_limits_config(pyginx.port, rate="10r/s"))
    pyginx.start(workers=2)
    t0 = time.monotonic()
    got = burst(pyginx.port, "/delay", 4)
    took = time.monotonic() - t0
    assert got == [200, 200, 200, 200]
    assert took >= 0.25, took  # the 4th waited (excess 3 at 10r/s: ~300 ms)
    log = wait_for(lambda: (pyginx.prefix / "logs" / "limits.log").read_text().count("DELAYED") >= 3 and (pyginx.prefix / "logs" / "limits.log").read_text(), 5, "the log")
    assert "PASSED" in log
    assert re.search(r'\[warn\] .*delaying request, excess: [0-9]\.\d{3}, by zone "one"', pyginx.error_log())


def test_zone_survives_reload_and_a_new_size_starts_empty(pyginx: Pyginx) -> None:
    conf = pyginx.write_config(_limits_config(pyginx.port))
    master = pyginx.start(workers=2)
    assert pyginx.get("/minute").status == 200
    assert pyginx.get("/minute").status == 429  # 1r/m, no burst
    old = set(pyginx.workers(master))
    pyginx.signal(signal.SIGHUP, master)
    wait_for(lambda: set(pyginx.serving_workers(master)).isdisjoint(old) and len(pyginx.serving_workers(master)) == 2, 15, "new workers")
    assert pyginx.get("/minute").status == 429  # the same zone: the bucket is still full
    # 1r/m drains 16 milli-requests a second: nginx's integer arithmetic
    assert re.search(r'\[warn\] .*limiting requests, excess: 0\.9\d\d by zone "minute"', pyginx.error_log())
    # a changed size gives a fresh zone (nginx: the old memory cannot be reused)
    conf.write_text(_limits_config(pyginx.port).replace("zone=minute:1m", "zone=minute:2m"))
    old = set(pyginx.workers(master))
    pyginx.signal(signal.SIGHUP, master)
    wait_for(lambda: set(pyginx.serving_workers(master)).isdisjoint(old) and len(pyginx.serving_workers(master)) == 2, 15, "new workers")
    assert pyginx.get("/minute").status == 200


class _Slow:
    """An origin whose /hold answers only when released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.arrived = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c: socket.socket) -> None:
        with c:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.arrived += 1
            if b"/hold" in data:
                self.release.wait(10)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def slow() -> Iterator[_Slow]:
    s = _Slow()
    try:
        yield s
    finally:
        s.release.set()
        s.sock.close()


def test_limit_conn_across_workers(pyginx: Pyginx, slow: _Slow) -> None:
    text = _limits_config(pyginx.port).replace(
        "limit_req_status: 429\n",
        "limit_req_status: 429\n  limit_conn_zone: $binary_remote_addr zone=addr:1m\n",
    ).replace(
        "        - location: /burst\n",
        f"""        - location: /hold
          limit_conn: addr 2
          limit_conn_log_level: info
          proxy_pass: http://127.0.0.1:{slow.port}
        - location: /burst
""",
    )
    pyginx.write_config(text)
    pyginx.start(workers=2)
    results: list[int] = []

    def one() -> None:
        results.append(http_get(pyginx.port, "/hold", timeout=10).status)

    held = [threading.Thread(target=one) for _ in range(2)]
    for t in held:
        t.start()
    wait_for(lambda: slow.arrived >= 2, 10, "two requests held at the origin")
    # whichever worker takes it, a third request from the address is over the limit
    assert burst(pyginx.port, "/hold", 3) == [503, 503, 503]
    slow.release.set()
    for t in held:
        t.join(10)
    assert results == [200, 200]
    assert http_get(pyginx.port, "/hold").status == 200  # the counts went back
    log = pyginx.error_log()
    assert re.search(r'\[info\] .*limiting connections by zone "addr", client: 127\.0\.0\.1', log), log
    assert "REJECTED" in (pyginx.prefix / "logs" / "limits.log").read_text()


@pytest.mark.parametrize(
    ("http", "location", "message"),
    [
        ("limit_req_zone: $binary_remote_addr zone=one:1m rate=1r/s", "limit_req: zone=two", 'zero size shared memory zone "two"'),
        ("limit_req_zone: $binary_remote_addr zone=one:1m rate=fast", "", 'invalid rate "rate=fast"'),
        ("limit_req_zone: $binary_remote_addr zone=one:1k rate=1r/s", "", 'zone "zone=one:1k" is too small'),
        ("limit_req_zone: $binary_remote_addr rate=1r/s size=1", "", 'invalid parameter "size=1"'),
        ("limit_req_zone: $binary_remote_addr zone=one:1m rate=1r/s", "limit_req: zone=one burst=0", 'invalid burst value "burst=0"'),
        ("limit_req_zone: $binary_remote_addr zone=one:1m rate=1r/s", "limit_req_status: 302", "value must be between 400 and 599"),
        ("limit_req_zone: $binary_remote_addr zone=one:1m rate=1r/s", "limit_req_log_level: debug", 'invalid value "debug"'),
        ("limit_conn_zone: $binary_remote_addr zone=addr:1m", "limit_conn: addr 0", 'invalid number of connections "0"'),
        ("limit_conn_zone: $binary_remote_addr zone=one:1m\nlimit_req_zone: $binary_remote_addr zone=one:1m rate=1r/s", "", 'the shared memory zone "one" is already declared for a different use'),
    ],
)
def test_bad_configs_are_refused(pyginx: Pyginx, http: str, location: str, message: str) -> None:
    text = basic_config(pyginx.port, http=http).replace(
        "          return: 200 ok\n", (f"          {location}\n" if location else "") + "          return: 200 ok\n"
    )
    conf = pyginx.write_config(text)
    done = pyginx.run_cli("-t")
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
    assert f"{conf}:" in done.stderr, done.stderr
