"""Graceful shutdown with requests in flight (QUIT), bounded by worker_shutdown_timeout; reload while a
slow request runs in an old worker."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import (
    Pyginx,
    alive,
    basic_config,
    port_refuses,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
    wait_for,
)


class SlowOrigin:
    """An upstream that answers every request `delay` seconds after reading its head."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.received = threading.Event()
        self.closing = False
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                self.received.set()
                time.sleep(self.delay)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow")
            except OSError:
                pass

    def close(self) -> None:
        self.closing = True
        self.sock.close()


@pytest.fixture
def slow_origin() -> Iterator[SlowOrigin]:
    origin = SlowOrigin(delay=1.5)
    origin.thread.start()
    try:
        yield origin
    finally:
        origin.close()


def slow_config(pyginx: Pyginx, origin: SlowOrigin, main: str = "", body: str = "ok") -> str:
    text = basic_config(pyginx.port, workers=1, main=main, body=body)
    return text.replace(
        "      locations:\n",
        f"      locations:\n        - location: /slow\n          proxy_pass: http://127.0.0.1:{origin.port}\n",
    )


class InFlight:
    """GET /slow in a thread; .result is (status, connection header, body) or the exception."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.result: tuple[int, str, bytes] | Exception | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", "/slow")
            resp = conn.getresponse()
            self.result = (resp.status, resp.getheader("Connection") or "", resp.read())
        except Exception as exc:  # reported by the test
            self.result = exc
        finally:
            conn.close()

    def wait(self) -> tuple[int, str, bytes] | Exception | None:
        self.thread.join(30)
        return self.result


def test_quit_completes_in_flight_request(pyginx: Pyginx, slow_origin: SlowOrigin) -> None:
    pyginx.write_config(slow_config(pyginx, slow_origin))
    master = pyginx.start(workers=1)
    worker = pyginx.workers(master)[0]
    request = InFlight(pyginx.port)
    assert slow_origin.received.wait(10)
    pyginx.signal(signal.SIGQUIT)
    wait_for(lambda: port_refuses(pyginx.port), 5, "new connections to be refused")
    assert alive(worker) and alive(master)
    assert request.wait() == (200, "close", b"slow")
    pyginx.wait_exit(master, 10)
    assert not alive(worker)
    assert not pyginx.pid_path.exists()


def test_worker_shutdown_timeout_bounds_quit(pyginx: Pyginx, slow_origin: SlowOrigin) -> None:
    slow_origin.delay = 20
    pyginx.write_config(
        slow_config(pyginx, slow_origin).replace("worker_shutdown_timeout: 5s", "worker_shutdown_timeout: 1s")
    )
    master = pyginx.start(workers=1)
    request = InFlight(pyginx.port)
    assert slow_origin.received.wait(10)
    t0 = time.monotonic()
    pyginx.signal(signal.SIGQUIT)
    pyginx.wait_exit(master, 10)
    assert time.monotonic() - t0 < 5
    assert isinstance(request.wait(), Exception)  # cut off by the deadline
    assert "worker_shutdown_timeout (1s) expired" in pyginx.error_log()


def test_reload_lets_old_worker_finish_slow_request(pyginx: Pyginx, slow_origin: SlowOrigin) -> None:
    pyginx.write_config(slow_config(pyginx, slow_origin, body="one"))
    master = pyginx.start(workers=1)
    old_worker = pyginx.workers(master)[0]
    request = InFlight(pyginx.port)
    assert slow_origin.received.wait(10)
    pyginx.write_config(slow_config(pyginx, slow_origin, body="two"))
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "the new configuration")
    assert alive(old_worker)
    assert request.wait() == (200, "close", b"slow")
    wait_for(lambda: not alive(old_worker), 10, "the old worker to exit")
    assert alive(master)
