"""`hash $request_uri consistent`: pyginx sends each key to the same backend as nginx does.

Four small origins on 127.0.0.1 (one weighted 2, one `down`); nginx (the system's, 1.22 here) and
pyginx proxy to them with the same upstream block; 300 keys through each; every key must reach the
same origin. The nginx half is skipped only when no nginx binary is installed; pyginx is always
checked against the ring computed by hand (tests/unit/test_upstream_chash.py's by_hand_ring).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, free_port, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_origin import Origin, proxy_config
from tests.unit.test_upstream_chash import by_hand_owner, by_hand_ring

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
KEYS = [f"/k/{i}?u={i * 31 % 97}" for i in range(300)]


@pytest.fixture(name="four")
def four_fixture() -> Iterator[list[Origin]]:
    started = [Origin(name).start() for name in ("a", "b", "c", "d")]
    try:
        yield started
    finally:
        for o in started:
            o.stop()


def _params(i: int) -> str:
    return {0: " weight=2", 3: " down"}.get(i, "")


def _owners(port: int) -> dict[str, str]:
    """key -> the origin that answered it, over one keep-alive connection."""
    out: dict[str, str] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for key in KEYS:
            conn.request("GET", key)
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, body
            out[key] = json.loads(body)["origin"]
    finally:
        conn.close()
    return out


def _expected(four: list[Origin]) -> dict[str, str]:
    layout = [(o.addr, 2 if i == 0 else 1) for i, o in enumerate(four)]
    ring = by_hand_ring(layout)
    names = {o.addr: o.name for o in four}
    down = four[3].addr
    hashes = [h for h, _ in ring]
    result = {}
    import bisect
    import zlib

    for key in KEYS:
        j = bisect.bisect_left(hashes, zlib.crc32(key.encode()))
        while ring[j % len(ring)][1] == down:
            j += 1
        result[key] = names[ring[j % len(ring)][1]]
    assert by_hand_owner(ring, KEYS[0])  # the helper agrees on shape
    return result


def _pyginx_owners(pyginx: Pyginx, four: list[Origin]) -> dict[str, str]:
    servers = "\n".join(f"    - {o.addr}{_params(i)}" for i, o in enumerate(four))
    pyginx.write_config(
        proxy_config(
            pyginx.port,
            upstreams=f'app:\n  hash: "$request_uri consistent"\n  servers:\n{servers}',
            locations="- location: /k/\n  proxy_pass: http://app",
        )
    )
    pyginx.start()
    return _owners(pyginx.port)


def test_pyginx_follows_the_ring(pyginx: Pyginx, four: list[Origin]) -> None:
    got = _pyginx_owners(pyginx, four)
    assert got == _expected(four)
    assert set(got.values()) == {"a", "b", "c"}  # d is down; the others all get keys


@pytest.mark.skipif(NGINX is None, reason="no nginx binary to compare with (pyginx is checked above)")
def test_same_backend_as_nginx(pyginx: Pyginx, four: list[Origin], tmp_path: Path) -> None:
    root = tmp_path / "nginx"
    (root / "logs").mkdir(parents=True)
    port = free_port()
    servers = "\n".join(f"    server {o.addr}{_params(i)};" for i, o in enumerate(four))
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
error_log {root}/logs/error.log info;
pid {root}/logs/nginx.pid;
daemon on;
events {{ worker_connections 256; }}
http {{
  access_log off;
  upstream app {{
    hash $request_uri consistent;
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    location /k/ {{ proxy_pass http://app; }}
  }}
}}
"""
    )
    assert NGINX is not None
    subprocess.run([NGINX, "-p", str(root), "-c", str(root / "nginx.conf")], check=True, timeout=20)
    pid_file = root / "logs" / "nginx.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx to start"))
    try:
        wait_for(lambda: _connects(port), 10, "nginx to answer")
        theirs = _owners(port)
    finally:
        os.kill(pid, 15)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.02)
    ours = _pyginx_owners(pyginx, four)
    differing = {k: (theirs[k], ours[k]) for k in KEYS if theirs[k] != ours[k]}
    assert not differing, f"{len(differing)} keys differ (nginx, pyginx): {list(differing.items())[:10]}"


def _connects(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
