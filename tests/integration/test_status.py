"""stub_status (nginx's exact text) and prometheus_metrics, counted across 2 workers, with the real
daemon; the stub page's shape compared with nginx's own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, basic_config, free_port, http_get, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_limits import burst

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
STUB = re.compile(
    r"Active connections: (\d+) \nserver accepts handled requests\n (\d+) (\d+) (\d+) \n"
    r"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n\Z"
)


def _config(port: int) -> str:
    text = basic_config(port, workers=2).replace(f"listen: 127.0.0.1:{port}", f"listen: 127.0.0.1:{port} reuseport")
    return text.replace(
        "      locations:\n",
        """      locations:
        - location: = /basic_status
          stub_status:
        - location: = /metrics
          prometheus_metrics: on
        - location: /missing
          root: html/none
""",
    )


def _stub(port: int) -> tuple[int, ...]:
    resp = http_get(port, "/basic_status")
    assert resp.status == 200 and resp.headers["content-type"] == "text/plain"
    m = STUB.match(resp.body.decode())
    assert m is not None, resp.body
    return tuple(int(x) for x in m.groups())


def test_stub_status_counts_every_worker(pyginx: Pyginx) -> None:
    pyginx.write_config(_config(pyginx.port))
    pyginx.start(workers=2)
    before = _stub(pyginx.port)
    assert burst(pyginx.port, "/", 10) == [200] * 10  # 10 connections, spread over both workers
    after = _stub(pyginx.port)
    active, accepts, handled, requests, reading, writing, waiting = after
    # exact: 10 connections and requests, plus the status request itself
    assert accepts - before[1] == 11 and handled - before[2] == 11 and requests - before[3] == 11
    assert writing >= 1 and active == reading + writing + waiting
    assert http_get(pyginx.port, "/basic_status").status == 200
    assert _post(pyginx.port, "/basic_status") == 405


def _post(port: int, path: str) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", path, body=b"x")
        return conn.getresponse().status
    finally:
        conn.close()


def _metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in\n{text}")


def test_prometheus_sums_workers(pyginx: Pyginx) -> None:
    pyginx.write_config(_config(pyginx.port))
    pyginx.start(workers=2)
    burst(pyginx.port, "/", 8)
    assert burst(pyginx.port, "/missing/x", 4) == [404] * 4

    def settled() -> str | None:
        text = http_get(pyginx.port, "/metrics").body.decode()
        ok = _metric(text, 'pyginx_http_responses_total{server="localhost",code="2xx"}')
        missing = _metric(text, 'pyginx_http_responses_total{server="localhost",code="4xx"}')
        return text if ok >= 9 and missing == 4 else None  # 8 + the harness' probe; published by sweeps

    text = wait_for(settled, 5, "metrics from both workers")
    assert "# TYPE pyginx_http_request_duration_seconds histogram" in text
    assert _metric(text, 'pyginx_http_request_duration_seconds_bucket{le="+Inf"}') == _metric(
        text, "pyginx_http_request_duration_seconds_count"
    )
    assert _metric(text, 'pyginx_connections{state="writing"}') >= 1
    assert _metric(text, 'pyginx_http_response_bytes_total{server="localhost"}') > 0
    assert _metric(text, "pyginx_http_requests_total") >= 13
    assert http_get(pyginx.port, "/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")


@pytest.mark.skipif(NGINX is None, reason="no nginx binary to compare with")
def test_stub_status_text_matches_nginx(tmp_path: Path) -> None:
    assert NGINX is not None
    root = tmp_path / "ngx"
    for sub in ("conf", "logs"):
        (root / sub).mkdir(parents=True)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "conf" / "nginx.conf").write_text(
        f"""{user}
worker_processes 1; error_log {root}/logs/error.log; pid {root}/logs/nginx.pid; daemon on;
events {{ worker_connections 64; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port}; location = /basic_status {{ stub_status; }} }} }}
"""
    )
    subprocess.run([NGINX, "-p", str(root), "-c", str(root / "conf" / "nginx.conf")], check=True)
    pid_file = root / "logs" / "nginx.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx"))
    try:
        resp = wait_for(lambda: _try(port), 10, "nginx to answer")
        assert STUB.match(resp.body.decode()), resp.body
        assert resp.headers["content-type"] == "text/plain"
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10, "nginx to stop")


def _try(port: int) -> object:
    try:
        return http_get(port, "/basic_status")
    except OSError:
        return None
