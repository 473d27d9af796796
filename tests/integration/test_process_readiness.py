"""Lifecycle under an orchestrator (issue 16): the `readiness` location (pyginx extension) answers
200 "ready", then 503 from the moment a graceful quit starts; with `shutdown_delay` the worker keeps
accepting (unready) that long before its listener closes; worker_shutdown_timeout, counted from the
QUIT, ends a request that a hung upstream keeps open."""

from __future__ import annotations

import http.client
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import Pyginx, alive, basic_config, port_refuses, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_process_shutdown import InFlight, SlowOrigin


@pytest.fixture(name="hung")
def hung_fixture() -> Iterator[SlowOrigin]:
    origin = SlowOrigin(delay=30)  # never answers within the test
    origin.thread.start()
    try:
        yield origin
    finally:
        origin.close()


def _config(pyginx: Pyginx, origin: SlowOrigin) -> str:
    text = basic_config(pyginx.port, workers=1, main="shutdown_delay: 1s").replace(
        "worker_shutdown_timeout: 5s", "worker_shutdown_timeout: 2500ms"
    )
    return text.replace(
        "      locations:\n",
        "      locations:\n"
        "        - location: = /ready\n"
        "          readiness: true\n"
        "        - location: /slow\n"
        f"          proxy_pass: http://127.0.0.1:{origin.port}\n",
    )


def _probe(conn: http.client.HTTPConnection) -> tuple[int, bytes, str]:
    conn.request("GET", "/ready")
    resp = conn.getresponse()
    return resp.status, resp.read(), resp.getheader("Connection") or ""


def test_readiness_turns_503_on_quit_before_the_listener_closes(pyginx: Pyginx, hung: SlowOrigin) -> None:
    pyginx.write_config(_config(pyginx, hung))
    master = pyginx.start(workers=1)
    worker = pyginx.workers(master)[0]
    probe = http.client.HTTPConnection("127.0.0.1", pyginx.port, timeout=5)
    assert _probe(probe)[:2] == (200, b"ready\n")
    request = InFlight(pyginx.port)  # held open by the hung upstream
    assert hung.received.wait(10)
    t0 = time.monotonic()
    pyginx.signal(signal.SIGQUIT)
    # the kept-alive probe connection sees 503 (and is closed after it) ...
    wait_for(lambda: _probe_new(pyginx.port) == 503, 3, "readiness to turn 503")
    assert time.monotonic() - t0 < 1.0  # ... while new connections are still accepted (shutdown_delay)
    status, _body, connection = _probe(probe)
    assert (status, connection) == (503, "close")
    # then the listener closes
    wait_for(lambda: port_refuses(pyginx.port), 3, "the listener to close")
    assert time.monotonic() - t0 >= 0.9
    # the hung request is cut at worker_shutdown_timeout, counted from the QUIT
    pyginx.wait_exit(master, 10)
    elapsed = time.monotonic() - t0
    assert 2.3 <= elapsed < 4.5, elapsed
    assert not alive(worker)
    assert isinstance(request.wait(), Exception)
    assert "worker_shutdown_timeout (2.5s) expired, closing 1 connection(s)" in pyginx.error_log()


def _probe_new(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        return _probe(conn)[0]
    except OSError:
        return 0
    finally:
        conn.close()
