"""Live binary upgrade (USR2 / WINCH / QUIT) and its rollback, in the foreground and with daemon: true."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.integration.harness import (
    Pyginx,
    alive,
    basic_config,
    cmdline,
    proc_stat,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
    wait_for,
)


def start_upgrade(pyginx: Pyginx, old: int) -> int:
    """USR2 to the old master; returns the new master once it serves with its own workers."""
    pyginx.signal(signal.SIGUSR2, old)
    wait_for(lambda: pyginx.read_pid(pyginx.oldbin_path) == old, 10, "pid file renamed to .oldbin")
    new = wait_for(lambda: (p := pyginx.read_pid()) != old and p, 15, "the new master's pid file")
    assert isinstance(new, int)
    pyginx.known.add(new)
    st = proc_stat(new)
    assert st is not None and st[1] == old, "the new master is the old master's child"
    wait_for(lambda: cmdline(new).startswith("pyginx: master process"), 10, "the new master's title")
    pyginx.wait_workers(new, 2)
    return new


def upgrade_and_complete(pyginx: Pyginx, old: int) -> int:
    old_workers = pyginx.workers(old)
    new = start_upgrade(pyginx, old)
    assert pyginx.get("/").status == 200
    pyginx.signal(signal.SIGWINCH, old)
    for pid in old_workers:
        wait_for(lambda p=pid: not alive(p), 10, f"old worker {pid} to exit")
    assert alive(old)
    assert pyginx.get("/").status == 200  # served by the new binary's workers
    pyginx.signal(signal.SIGQUIT, old)
    pyginx.wait_exit(old, 10)
    assert not pyginx.oldbin_path.exists()
    assert pyginx.read_pid() == new
    assert pyginx.get("/").status == 200
    return new


def test_upgrade_in_foreground(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    old = pyginx.start(workers=2)
    new = upgrade_and_complete(pyginx, old)
    log = pyginx.error_log()
    assert f"start new binary process {new}" in log
    assert "using inherited sockets from" in log
    # The upgraded master can be upgraded again once its parent is gone.
    newer = upgrade_and_complete(pyginx, new)
    assert newer not in (old, new)
    pyginx.signal(signal.SIGQUIT, newer)
    wait_for(lambda: not alive(newer), 10, "the last master to exit")
    assert not pyginx.pid_path.exists()


def test_upgrade_rollback(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    old = pyginx.start(workers=2)
    old_workers = pyginx.workers(old)
    new = start_upgrade(pyginx, old)
    pyginx.signal(signal.SIGWINCH, old)
    for pid in old_workers:
        wait_for(lambda p=pid: not alive(p), 10, f"old worker {pid} to exit")
    # Roll back: HUP brings the old workers back (without re-reading the configuration) ...
    pyginx.signal(signal.SIGHUP, old)
    pyginx.wait_workers(old, 2)
    # ... and the new master is told to quit; the old one takes its pid file back.
    pyginx.signal(signal.SIGQUIT, new)
    wait_for(lambda: not alive(new), 10, "the new master to exit")
    wait_for(lambda: pyginx.read_pid() == old, 10, "the pid file to be restored")
    assert not pyginx.oldbin_path.exists()
    assert pyginx.get("/").status == 200
    assert pyginx.workers(old)  # not respawned twice over, still serving
    log = pyginx.error_log()
    assert f"new binary process {new} exited with code 0" in log


def test_usr2_ignored_while_new_binary_runs(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    old = pyginx.start(workers=2)
    new = start_upgrade(pyginx, old)
    pyginx.signal(signal.SIGUSR2, old)
    pyginx.signal(signal.SIGUSR2, new)  # its parent (the old master) still runs
    wait_for(lambda: pyginx.error_log().count("SIGUSR2) received from") >= 3, 10, "the ignored signals")
    assert pyginx.error_log().count(", ignoring") >= 2
    assert pyginx.read_pid() == new
    pyginx.signal(signal.SIGTERM, new)
    wait_for(lambda: not alive(new), 10, "the new master to exit")
    wait_for(lambda: pyginx.read_pid() == old, 10, "the pid file to be restored")


def test_daemon_start_signals_and_upgrade(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, main="daemon: true"))
    proc = pyginx.spawn()
    assert proc.wait(15) == 0  # the foreground process returns once the daemon is detached
    master = wait_for(pyginx.read_pid, 10, "the daemon's pid file")
    pyginx.known.add(master)
    wait_for(lambda: pyginx.get("/").status == 200, 10, "the daemon to serve")
    st = proc_stat(master)
    assert st is not None and st[1] != proc.pid
    pyginx.wait_workers(master, 2)
    new = upgrade_and_complete(pyginx, master)
    assert pyginx.get("/").status == 200
    assert pyginx.run_cli("-s", "stop").returncode == 0
    wait_for(lambda: not alive(new), 10, "the daemon to stop")
    assert not pyginx.pid_path.exists()


def test_upgrade_keeps_unix_socket_file(pyginx: Pyginx) -> None:
    path: Path = pyginx.prefix / "logs" / "u.sock"
    text = basic_config(pyginx.port).replace(
        f"    - listen: 127.0.0.1:{pyginx.port}\n",
        f'    - listen: [127.0.0.1:{pyginx.port}, "unix:{path}"]\n',
    )
    pyginx.write_config(text)
    old = pyginx.start(workers=2)
    upgrade_and_complete(pyginx, old)
    assert path.exists()
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
