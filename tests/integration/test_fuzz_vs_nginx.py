"""Seeded differential fuzzer (issue 12): the same grammar-built, mutated requests (tests.fuzzreq)
sent to pyginx and, when /usr/sbin/nginx is installed, to nginx configured alike (static files and
a proxied prefix on one shared origin). The sequence of response statuses must agree, except where
the README documents pyginx as stricter (then pyginx must refuse). Without nginx the same requests
still run against pyginx alone: no 500, no dead worker, no traceback. Derandomized and bounded
(FUZZ_EXAMPLES, default 150)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzzreq import requests, stricter
from tests.integration.faultorigin import FaultOrigin
from tests.integration.harness import Pyginx, free_port, port_answers, wait_for

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
IDLE = 0.4  # seconds without a byte after which a connection's answer is taken as complete

NGINX_CONF = """
{user}
worker_processes 1;
error_log {root}/logs/nginx-error.log info;
pid {root}/logs/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  client_header_timeout 2s; client_body_timeout 2s; keepalive_timeout 2s;
  client_max_body_size 4k;
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    root {root}/html;
    location /py/ {{ proxy_pass http://{origin}; }}
  }}
}}
"""

PYGINX_CONF = """
worker_processes: 1
error_log: logs/error.log info
pid: logs/pyginx.pid
events:
  worker_connections: 256
http:
  access_log: "off"
  client_header_timeout: 2s
  client_body_timeout: 2s
  keepalive_timeout: 2s
  client_max_body_size: 4k
  servers:
    - listen: 127.0.0.1:{port}
      server_name: localhost
      root: {root}/html
      locations:
        - location: /
        - location: /py/
          proxy_pass: http://{origin}
"""


@dataclass
class Pair:
    pyginx: Pyginx
    nginx_port: int | None


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "html").mkdir()
    (root / "html" / "index.html").write_bytes(b"<p>index</p>\n")
    (root / "tmp").mkdir()
    (root / "logs").mkdir()
    origin = FaultOrigin()
    server = Pyginx(root)
    nginx_pid = None
    nginx_port = None
    try:
        if NGINX is not None:
            nginx_port = free_port()
            conf = root / "nginx.conf"
            user = "user root;" if os.geteuid() == 0 else ""  # its worker must read the test's files
            conf.write_text(NGINX_CONF.format(user=user, root=root, port=nginx_port, origin=origin.addr))
            subprocess.run([NGINX, "-p", str(root), "-c", str(conf)], check=True, capture_output=True)
            pid_file = root / "logs" / "nginx.pid"
            nginx_pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx"))
            wait_for(lambda: port_answers(nginx_port) or None, 10, "nginx to answer")
        server.write_config(PYGINX_CONF.format(root=root, port=server.port, origin=origin.addr))
        server.start()
        yield Pair(server, nginx_port)
        server.check_log()
    finally:
        print(f"--- error log:\n{server.error_log()}")
        server.cleanup()
        if nginx_pid is not None:
            os.kill(nginx_pid, 15)
            wait_for(lambda: not os.path.exists(f"/proc/{nginx_pid}") or None, 5, "nginx to exit")
        origin.stop()


STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


def answer(port: int, data: bytes) -> list[int]:
    """The statuses of every response the server sent (until it closed or went quiet)."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            s.settimeout(IDLE)
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
    # a status line at the start of the output or right after a previous response's end
    return [
        int(m.group(1))
        for m in STATUS.finditer(out)
        if m.start() == 0 or out[m.start() - 2 : m.start()] == b"\r\n"
    ]


_pool = ThreadPoolExecutor(2)


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=requests())
def test_fuzzed_requests_agree_with_nginx(pair: Pair, data: bytes) -> None:
    ours_f = _pool.submit(answer, pair.pyginx.port, data)
    theirs = _pool.submit(answer, pair.nginx_port, data).result() if pair.nginx_port else None
    ours = ours_f.result()
    assert 500 not in ours, data
    why = stricter(data)
    if why is not None:
        # documented strictness: pyginx refuses (or, for a head it cannot even frame, says nothing)
        assert not ours or ours[0] in (400, 501, 505), (why, data, ours)
        return
    if theirs is not None:
        assert ours[:1] == theirs[:1], (data, ours, theirs)
