"""`master_process: false`: one process serves, reloads in place, reopens logs, exits on QUIT/TERM."""

from __future__ import annotations

import signal

from tests.integration.harness import (
    Pyginx,
    alive,
    basic_config,
    children,
    port_refuses,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
    wait_for,
)

SINGLE = "master_process: false"


def test_single_process_serves_without_children(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, main=SINGLE))
    pid = pyginx.start()
    assert pyginx.get("/").body == b"ok"
    assert children(pid) == []
    pyginx.signal(signal.SIGTERM)
    pyginx.wait_exit(pid, 5)
    assert not pyginx.pid_path.exists()


def test_single_process_reload_in_place(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, main=SINGLE, body="one"))
    pid = pyginx.start()
    pyginx.write_config(basic_config(pyginx.port, main=SINGLE, body="two"))
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "the reload")
    assert pyginx.read_pid() == pid and alive(pid)
    # A broken configuration is refused and the running one stays.
    pyginx.write_config(basic_config(pyginx.port, main=SINGLE, body="three").replace("root:", "rooot:"))
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: 'unknown directive "rooot"' in pyginx.error_log(), 10, "the reload error")
    pyginx.allow = ('unknown directive "rooot"',)
    assert pyginx.get("/").body == b"two"


def test_single_process_reopen_and_quit(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, main=SINGLE))
    pid = pyginx.start()
    access = pyginx.prefix / "logs" / "access.log"
    pyginx.get("/first")
    wait_for(lambda: access.exists() and b"/first" in access.read_bytes(), 10, "the first line")
    access.rename(access.with_suffix(".log.1"))
    pyginx.signal(signal.SIGUSR1)
    wait_for(access.exists, 10, "a new access.log")
    pyginx.get("/second")
    wait_for(lambda: b"/second" in access.read_bytes(), 10, "the next line in the new file")
    pyginx.signal(signal.SIGQUIT)
    pyginx.wait_exit(pid, 10)
    assert port_refuses(pyginx.port)
    assert not pyginx.pid_path.exists()
