"""Zero downtime: 8 client threads for 10 s while the master reloads every 0.5 s, or is upgraded.

Every request must succeed: no refused connection, no reset, no connection closed under a keep-alive
client that reuses it (the old workers answer the next request with `Connection: close` instead).
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time

from tests.integration.harness import (
    Pyginx,
    alive,
    basic_config,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
    wait_for,
)

THREADS = 8
DURATION = float(os.environ.get("PYGINX_SOAK_SECONDS", "10"))


class Load:
    """Client threads hammering GET / until stopped (bounded by a hard deadline in any case)."""

    def __init__(self, port: int, keepalive: bool) -> None:
        self.port = port
        self.keepalive = keepalive
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(THREADS)]
        self.hard_deadline = time.monotonic() + DURATION + 60

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {} if self.keepalive else {"Connection": "close"}
        while not self.stopping.is_set() and time.monotonic() < self.hard_deadline:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                good = resp.status == 200 and body == b"ok"
                outcome = "" if good else f"status {resp.status} body {body[:40]!r}"
            except (OSError, http.client.HTTPException) as exc:
                outcome = repr(exc)
                conn.close()
                conn = None
            else:
                if not self.keepalive:
                    conn.close()
                    conn = None
            with self.lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.ok += 1
        if conn is not None:
            conn.close()

    def report(self) -> str:
        return f"{self.ok} ok, {len(self.failures)} failed: {self.failures[:5]}"


def reload_under_load(pyginx: Pyginx, keepalive: bool) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=2))
    master = pyginx.start(workers=2)
    reloads = 0
    with Load(pyginx.port, keepalive) as load:
        end = time.monotonic() + DURATION
        next_hup = time.monotonic() + 0.5
        while time.monotonic() < end:
            time.sleep(max(0.0, min(next_hup, end) - time.monotonic()))
            if time.monotonic() >= next_hup:
                pyginx.signal(signal.SIGHUP, master)
                reloads += 1
                next_hup += 0.5
    assert not load.failures, load.report()
    assert load.ok > 100, load.report()
    assert reloads >= DURATION / 0.5 - 2
    assert alive(master)
    # Every old generation drains: only the last one is left.
    pyginx.wait_workers(master, 2, timeout=20)
    assert pyginx.error_log().count("reconfiguring") == reloads


def test_zero_downtime_reload_connection_close(pyginx: Pyginx) -> None:
    reload_under_load(pyginx, keepalive=False)


def test_zero_downtime_reload_keepalive(pyginx: Pyginx) -> None:
    reload_under_load(pyginx, keepalive=True)


def upgrade_under_load(pyginx: Pyginx, keepalive: bool) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=2))
    old = pyginx.start(workers=2)
    with Load(pyginx.port, keepalive) as load:
        t0 = time.monotonic()
        time.sleep(DURATION / 5)
        old_workers = pyginx.workers(old)
        pyginx.signal(signal.SIGUSR2, old)
        new = wait_for(lambda: (p := pyginx.read_pid()) != old and p, 15, "the new master")
        assert isinstance(new, int)
        pyginx.known.add(new)
        pyginx.wait_workers(new, 2)
        pyginx.signal(signal.SIGWINCH, old)
        for pid in old_workers:
            wait_for(lambda p=pid: not alive(p), 15, f"old worker {pid} to exit")
        pyginx.signal(signal.SIGQUIT, old)
        pyginx.wait_exit(old, 15)
        time.sleep(max(0.0, t0 + DURATION - time.monotonic()))
    assert not load.failures, load.report()
    assert load.ok > 100, load.report()
    assert pyginx.read_pid() == new


def test_zero_downtime_binary_upgrade(pyginx: Pyginx) -> None:
    upgrade_under_load(pyginx, keepalive=False)


def test_zero_downtime_binary_upgrade_keepalive(pyginx: Pyginx) -> None:
    upgrade_under_load(pyginx, keepalive=True)
