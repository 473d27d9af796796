"""What -t and start-up refuse or accept, on the real daemon (issue 12, item 5): configurations without
servers run as nginx's do (listening nowhere, workers alive), an access log that cannot be opened fails
-t and start with nginx's emerg, a port in use is reported in error.log as well as on the terminal;
named regex captures of a location are variables; a foreground start says where it listens."""

from __future__ import annotations

import signal
import socket

import pytest

from tests.integration.harness import (
    Pyginx,
    alive,
    basic_config,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
    wait_for,
)


@pytest.mark.parametrize(
    "text",
    ["", "worker_processes: 1\nhttp:\n", "worker_processes: 1\nhttp:\n  servers:\n"],
    ids=["empty", "http", "servers"],
)
def test_nothing_to_serve_runs_idle_workers_as_nginx(pyginx: Pyginx, text: str) -> None:
    pyginx.write_config(text)
    assert pyginx.run_cli("-t").returncode == 0  # nginx -t accepts these too
    pyginx.spawn()
    master = wait_for(lambda: pyginx.read_pid(), 10, "the pid file")
    pyginx.known.add(master)
    old = pyginx.wait_workers(master, 1)
    # a reload makes a new generation: a worker that cannot run would have died (exit 2) by then
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: not any(alive(p) for p in old), 10, "the old worker to quit")
    new = pyginx.wait_workers(master, 1)
    assert new != old and all(alive(p) for p in new)
    assert "exited with" not in pyginx.error_log()
    assert "listening nowhere" in pyginx.stderr()


@pytest.mark.parametrize("where", ["dir", "missing"])
def test_an_access_log_that_cannot_be_opened_fails_test_and_start(pyginx: Pyginx, where: str) -> None:
    path = pyginx.prefix / "html" if where == "dir" else pyginx.prefix / "nodir" / "sub" / "access.log"
    reason = "21: Is a directory" if where == "dir" else "2: No such file or directory"
    pyginx.write_config(basic_config(pyginx.port, server=f"access_log: {path}"))
    expected = f'[emerg] open() "{path}" failed ({reason})'
    result = pyginx.run_cli("-t")
    assert result.returncode == 1
    assert f"pyginx: {expected}" in result.stderr and "test failed" in result.stderr
    proc = pyginx.spawn()
    assert proc.wait(15) == 1
    assert f"pyginx: {expected}" in pyginx.stderr()
    assert not pyginx.pid_path.exists()
    pyginx.allow = (f'open() "{path}" failed',)


def test_a_port_in_use_is_logged_in_error_log_too(pyginx: Pyginx) -> None:
    busy = socket.socket()
    try:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", pyginx.port))
        busy.listen()
        pyginx.write_config(basic_config(pyginx.port))
        proc = pyginx.spawn()
        assert proc.wait(15) == 1
    finally:
        busy.close()
    message = f"bind() to 127.0.0.1:{pyginx.port} failed (98: Address already in use)"
    assert f"pyginx: [emerg] {message}" in pyginx.stderr()
    assert any("[emerg]" in line and message in line for line in pyginx.error_log().splitlines())
    pyginx.allow = (message,)


def test_named_captures_and_the_serving_notice(pyginx: Pyginx) -> None:
    text = basic_config(pyginx.port, body="ok").replace(
        "      locations:\n",
        "      locations:\n"
        "        - location: ~ ^/u/(?<name>\\w+)/(?P<item>\\d+)$\n"
        '          return: 200 "hello $name, item $item ($1 $2)"\n',
    )
    pyginx.write_config(text)
    pyginx.start()
    response = pyginx.get("/u/alice/7")
    assert (response.status, response.body) == (200, b"hello alice, item 7 (alice 7)")
    assert pyginx.get("/").body == b"ok"
    assert f"pyginx: serving on http://127.0.0.1:{pyginx.port}/ (pid " in pyginx.stderr()
