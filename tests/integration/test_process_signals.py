"""The master/worker process model on the real daemon: one test per signal of CONFIG.md's table."""

from __future__ import annotations

import os
import signal
import socket
import time

from tests.integration.harness import (
    Pyginx,
    alive,
    basic_config,
    cmdline,
    free_port,
    http_get,
    port_refuses,
    proc_stat,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
    wait_for,
)


def test_master_and_workers_parentage_and_titles(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=3))
    master = pyginx.start(workers=3)
    assert cmdline(master).startswith("pyginx: master process ")
    assert "-m pyginx" in cmdline(master)
    workers = pyginx.workers(master)
    assert len(workers) == 3
    for pid in workers:
        st = proc_stat(pid)
        assert st is not None and st[1] == master
        assert cmdline(pid) == "pyginx: worker process"
    assert pyginx.get("/").body == b"ok"
    assert pyginx.read_pid() == master
    log = pyginx.error_log()
    assert f"start worker process {workers[0]}" in log


def test_term_ends_everything_within_seconds(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    master = pyginx.start(workers=2)
    workers = pyginx.workers(master)
    t0 = time.monotonic()
    pyginx.signal(signal.SIGTERM)
    pyginx.wait_exit(master, timeout=5)
    for pid in workers:
        wait_for(lambda p=pid: not alive(p), 2, f"worker {pid} to exit")
    assert time.monotonic() - t0 < 3
    assert not pyginx.pid_path.exists()
    assert port_refuses(pyginx.port)
    assert f"signal 15 (SIGTERM) received from {os.getpid()}, exiting" in pyginx.error_log()


def test_int_is_fast_shutdown_too(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=1))
    master = pyginx.start(workers=1)
    pyginx.signal(signal.SIGINT)
    pyginx.wait_exit(master, timeout=5)
    assert not pyginx.pid_path.exists()


def test_quit_closes_idle_keepalive_and_exits(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    master = pyginx.start(workers=2)
    idle = socket.create_connection(("127.0.0.1", pyginx.port), timeout=5)
    idle.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    wait_for(lambda: b"ok" in idle.recv(4096), 5, "the first response")
    pyginx.signal(signal.SIGQUIT)
    # The idle keep-alive connection is closed by the server (EOF), not left to its timeout.
    idle.settimeout(3)
    assert idle.recv(4096) == b""
    idle.close()
    pyginx.wait_exit(master, timeout=5)
    assert not pyginx.pid_path.exists()
    log = pyginx.error_log()
    assert "received from" in log and ", shutting down" in log
    assert "gracefully shutting down" in log


def test_hup_reload_takes_effect_master_unchanged(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, body="one"))
    master = pyginx.start(workers=2)
    old_workers = set(pyginx.workers(master))
    pyginx.write_config(basic_config(pyginx.port, body="two"))
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "the new configuration to serve")
    assert pyginx.read_pid() == master and alive(master)
    new_workers = set(pyginx.wait_workers(master, 2))
    assert not (new_workers & old_workers)
    for pid in old_workers:
        wait_for(lambda p=pid: not alive(p), 10, f"old worker {pid} to exit")
    for _ in range(10):
        assert pyginx.get("/").body == b"two"
    assert "reconfiguring" in pyginx.error_log()


def test_hup_with_broken_config_keeps_old_one(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, body="one"))
    master = pyginx.start(workers=2)
    workers = pyginx.workers(master)
    pyginx.write_config(
        basic_config(pyginx.port, body="two").replace("worker_connections", "worker_connectionz")
    )
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: "[emerg]" in pyginx.error_log(), 10, "the reload error")
    line = next(x for x in pyginx.error_log().splitlines() if "[emerg]" in x)
    assert 'unknown directive "worker_connectionz"' in line and "pyginx.yaml:" in line
    pyginx.allow = ('unknown directive "worker_connectionz"',)
    assert pyginx.get("/").body == b"one"
    assert pyginx.workers(master) == workers
    # A fixed configuration then loads.
    pyginx.write_config(basic_config(pyginx.port, body="three"))
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"three", 10, "the fixed configuration")


def test_hup_with_unbindable_address_keeps_old_one(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, body="one"))
    master = pyginx.start(workers=2)
    workers = pyginx.workers(master)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    try:
        text = basic_config(pyginx.port, body="two").replace(
            f"    - listen: 127.0.0.1:{pyginx.port}\n",
            f"    - listen: [127.0.0.1:{pyginx.port}, 127.0.0.1:{busy_port}]\n",
        )
        pyginx.write_config(text)
        pyginx.signal(signal.SIGHUP)
        wait_for(lambda: "bind() to" in pyginx.error_log(), 10, "the bind error")
        pyginx.allow = (f"bind() to 127.0.0.1:{busy_port} failed (98: Address already in use)",)
        assert pyginx.get("/").body == b"one"
        assert pyginx.workers(master) == workers
    finally:
        busy.close()


def test_hup_adds_and_removes_listen_addresses(pyginx: Pyginx) -> None:
    other = free_port()
    pyginx.write_config(basic_config(pyginx.port, body="one"))
    master = pyginx.start(workers=2)
    both = basic_config(pyginx.port, body="two").replace(
        f"    - listen: 127.0.0.1:{pyginx.port}\n",
        f"    - listen: [127.0.0.1:{pyginx.port}, 127.0.0.1:{other}]\n",
    )
    pyginx.write_config(both)
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "the reload")
    assert http_get(other, "/").body == b"two"
    # Now keep only the new port: the first one stops answering.
    only_other = basic_config(other, body="three")
    pyginx.write_config(only_other)
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: http_get(other, "/").body == b"three", 10, "the second reload")
    wait_for(lambda: port_refuses(pyginx.port), 10, "the removed address to be closed")
    assert alive(master)


def test_kill9_worker_is_respawned(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    master = pyginx.start(workers=2)
    victim = pyginx.workers(master)[0]
    pyginx.allow = (f"worker process {victim} exited on signal 9",)
    os.kill(victim, signal.SIGKILL)
    # the kill is asynchronous: wait for the victim to be gone before counting its replacement
    wait_for(lambda: victim not in pyginx.workers(master), 10, "the killed worker to be reaped")
    workers = pyginx.wait_workers(master, 2)
    assert victim not in workers
    assert f"worker process {victim} exited on signal 9" in pyginx.error_log()
    assert pyginx.get("/").status == 200


def test_stuck_worker_is_killed_and_replaced(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, main="worker_heartbeat_timeout: 1s"))
    master = pyginx.start(workers=2)
    victim = pyginx.workers(master)[0]
    os.kill(victim, signal.SIGSTOP)  # its event loop can no longer stamp the heartbeat
    try:
        wait_for(lambda: f"worker process {victim} is stuck" in pyginx.error_log(), 10, "the stuck worker")
        workers = pyginx.wait_workers(master, 2)
        assert victim not in workers
    finally:
        if alive(victim):
            os.kill(victim, signal.SIGCONT)
    log = pyginx.error_log()
    assert f"worker process {victim} is stuck (no heartbeat for 1s), killing it" in log
    pyginx.allow = (f"worker process {victim} is stuck", f"worker process {victim} exited on signal 9")


def test_usr1_reopens_access_and_error_logs(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    master = pyginx.start(workers=2)
    access = pyginx.prefix / "logs" / "access.log"
    pyginx.get("/first")
    wait_for(lambda: access.exists() and b"/first" in access.read_bytes(), 10, "the first access log line")
    access.rename(access.with_suffix(".log.1"))
    pyginx.error_log_path.rename(pyginx.error_log_path.with_suffix(".log.1"))
    pyginx.signal(signal.SIGUSR1)
    wait_for(lambda: access.exists(), 10, "a new access.log")
    wait_for(lambda: pyginx.error_log_path.exists(), 10, "a new error.log")
    for _ in range(4):  # reach both workers
        pyginx.get("/second")
    wait_for(lambda: b"/second" in access.read_bytes(), 10, "the next line in the new access.log")
    assert b"/second" not in access.with_suffix(".log.1").read_bytes()
    assert alive(master)
    assert "reopening logs" in pyginx.error_log_path.with_suffix(".log.1").read_text()


def test_winch_stops_workers_keeps_master_and_socket(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    master = pyginx.start(workers=2)
    pyginx.signal(signal.SIGWINCH)
    wait_for(lambda: not pyginx.workers(master), 10, "the workers to exit")
    assert alive(master)
    assert not port_refuses(pyginx.port)  # the socket stays open (connections queue)
    # HUP brings workers back.
    pyginx.signal(signal.SIGHUP)
    pyginx.wait_workers(master, 2)
    assert pyginx.get("/").status == 200


def test_s_signals_the_running_master(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=1, body="one"))
    master = pyginx.start(workers=1)
    pyginx.write_config(basic_config(pyginx.port, workers=1, body="two"))
    assert pyginx.run_cli("-s", "reload").returncode == 0
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "-s reload")
    assert pyginx.run_cli("-s", "reopen").returncode == 0
    wait_for(lambda: "reopening logs" in pyginx.error_log(), 10, "-s reopen")
    assert pyginx.run_cli("-s", "quit").returncode == 0
    pyginx.wait_exit(master, 10)
    assert not pyginx.pid_path.exists()
    result = pyginx.run_cli("-s", "stop")
    assert result.returncode == 1
    assert (
        f'pyginx: [error] open() "{pyginx.pid_path}" failed (2: No such file or directory)' in result.stderr
    )


def test_refuses_to_start_when_running(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=1))
    master = pyginx.start(workers=1)
    result = pyginx.run_cli()
    assert result.returncode == 1
    assert "already running" in result.stderr and str(master) in result.stderr
    assert pyginx.read_pid() == master


def test_stale_pid_file_is_ignored(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=1))
    pyginx.pid_path.write_text("999999\n")
    master = pyginx.start(workers=1)
    assert pyginx.read_pid() == master


def test_bind_failure_at_start_is_emerg(pyginx: Pyginx) -> None:
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    busy.bind(("127.0.0.1", pyginx.port))
    busy.listen()
    try:
        pyginx.write_config(basic_config(pyginx.port))
        t0 = time.monotonic()
        result = pyginx.run_cli()
        assert time.monotonic() - t0 < 10
    finally:
        busy.close()
    assert result.returncode == 1
    message = f"bind() to 127.0.0.1:{pyginx.port} failed (98: Address already in use)"
    assert f"pyginx: [emerg] {message}" in result.stderr
    # in error.log too, as nginx writes it
    assert any("[emerg]" in line and message in line for line in pyginx.error_log().splitlines())
    pyginx.allow = (message,)
    assert not pyginx.pid_path.exists()


def test_invalid_config_at_start(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port).replace("root: html", "rooot: html"))
    result = pyginx.run_cli()
    assert result.returncode == 1
    assert result.stderr.startswith('pyginx: [emerg] unknown directive "rooot" in ')
    assert "pyginx.yaml:" in result.stderr


def test_reuseport_gives_each_worker_a_socket(pyginx: Pyginx) -> None:
    text = basic_config(pyginx.port, body="one").replace(
        f"listen: 127.0.0.1:{pyginx.port}", f'listen: "127.0.0.1:{pyginx.port} reuseport"'
    )
    pyginx.write_config(text)
    master = pyginx.start(workers=2)

    def listeners() -> int:
        port_hex = f":{pyginx.port:04X} "
        with open("/proc/net/tcp") as f:
            return sum(1 for line in f if port_hex in line and line.split()[3] == "0A")

    assert listeners() == 2
    for _ in range(10):
        assert pyginx.get("/").body == b"one"
    pyginx.write_config(text.replace("200 one", "200 two"))
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "reload with reuseport")
    pyginx.wait_workers(master, 2)
    assert listeners() == 2


def test_unix_socket_listen(pyginx: Pyginx) -> None:
    path = pyginx.prefix / "logs" / "p.sock"
    text = basic_config(pyginx.port, workers=1).replace(
        f"    - listen: 127.0.0.1:{pyginx.port}\n",
        f'    - listen: [127.0.0.1:{pyginx.port}, "unix:{path}"]\n',
    )
    pyginx.write_config(text)
    master = pyginx.start(workers=1)

    def unix_get() -> bytes:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            return data

    assert unix_get().endswith(b"ok")
    pyginx.signal(signal.SIGQUIT)
    pyginx.wait_exit(master, 10)
    assert not path.exists()


def test_signal_right_after_pid_file_is_not_fatal(pyginx: Pyginx) -> None:
    """The signals are blocked from the start: a reload sent the moment the pid file appears waits for
    the master's loop instead of killing the process with SIGHUP's default action."""
    pyginx.write_config(basic_config(pyginx.port, body="one"))
    pyginx.spawn()
    master = wait_for(pyginx.read_pid, 10, "the pid file", interval=0.001)
    pyginx.known.add(master)
    pyginx.write_config(basic_config(pyginx.port, body="two"))
    os.kill(master, signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "the reload")
    assert alive(master)


def test_crash_loop_is_throttled(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=1))
    master = pyginx.start(workers=1)
    killed: set[int] = set()
    t0 = time.monotonic()
    # Kill every worker as soon as it appears, more often than the master allows respawns (10 in 10 s).
    for _ in range(20):

        def next_victim() -> list[int] | bool:
            if "respawn too fast" in pyginx.error_log():
                return True
            return [p for p in pyginx.workers(master) if p not in killed]

        found = wait_for(next_victim, 10, "a worker to kill or the throttling")
        if found is True:
            break
        assert isinstance(found, list)
        os.kill(found[0], signal.SIGKILL)
        killed.add(found[0])
        t0 = time.monotonic()
    assert len(killed) == 11  # the 11th crash within 10 s is throttled
    pyginx.wait_workers(master, 1)  # respawned after the back-off, not before
    assert time.monotonic() - t0 > 0.5
    assert pyginx.get("/").status == 200
    pyginx.allow = ("exited on signal 9", "respawn too fast")


def proc_status(pid: int, field: str) -> str:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def test_user_and_rlimit_apply_to_workers(pyginx: Pyginx) -> None:
    import pwd

    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root")
    nobody = pwd.getpwnam("nobody")
    # pytest's temporary directories are private to root: nothing there for the workers to open.
    text = basic_config(pyginx.port, main="user: nobody\nworker_rlimit_nofile: 4321")
    pyginx.write_config(text.replace("access_log: logs/access.log", "access_log: false"))
    master = pyginx.start(workers=2)
    assert proc_status(master, "Uid").split()[0] == "0"
    for pid in pyginx.workers(master):
        assert proc_status(pid, "Uid").split() == [str(nobody.pw_uid)] * 4
        limits = open(f"/proc/{pid}/limits").read()
        assert [x for x in limits.splitlines() if x.startswith("Max open files")][0].split()[3:5] == [
            "4321",
            "4321",
        ]
    assert pyginx.get("/").status == 200


def test_hup_with_unopenable_error_log_keeps_old_one(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, body="one"))
    master = pyginx.start(workers=2)
    workers = pyginx.workers(master)
    broken = basic_config(pyginx.port, body="two").replace(
        "error_log: logs/error.log info", "error_log: html/index.html/error.log info"
    )
    pyginx.write_config(broken)
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: "[emerg]" in pyginx.error_log(), 10, "the reload error")
    assert 'error.log" failed (20: Not a directory)' in pyginx.error_log()
    pyginx.allow = ("(20: Not a directory)",)
    assert pyginx.get("/").body == b"one"
    assert pyginx.workers(master) == workers


def test_hup_moves_the_pid_file(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=1))
    master = pyginx.start(workers=1)
    pyginx.write_config(
        basic_config(pyginx.port, workers=1).replace("pid: logs/pyginx.pid", "pid: logs/other.pid")
    )
    pyginx.signal(signal.SIGHUP)
    other = pyginx.prefix / "logs" / "other.pid"
    wait_for(other.exists, 10, "the new pid file")
    assert pyginx.read_pid(other) == master
    assert not pyginx.pid_path.exists()
    os.kill(master, signal.SIGQUIT)
    pyginx.wait_exit(master, 10)
    assert not other.exists()


def test_stopping_the_whole_group_kills_no_worker(pyginx: Pyginx) -> None:
    """SIGSTOP/SIGCONT of master and workers together (Ctrl-Z in a terminal) is no stuck worker."""
    pyginx.write_config(basic_config(pyginx.port, main="worker_heartbeat_timeout: 1s"))
    master = pyginx.start(workers=2)
    workers = pyginx.workers(master)
    group = [master, *workers]
    for pid in group:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(3)  # the point of the test: longer than the heartbeat timeout
    for pid in group:
        os.kill(pid, signal.SIGCONT)
    time.sleep(2)
    assert pyginx.workers(master) == workers
    assert "is stuck" not in pyginx.error_log()


def test_term_escalates_to_kill(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, main="worker_heartbeat_timeout: 60s"))
    master = pyginx.start(workers=2)
    frozen = pyginx.workers(master)[0]
    os.kill(frozen, signal.SIGSTOP)  # cannot act on TERM
    t0 = time.monotonic()
    pyginx.signal(signal.SIGTERM)
    pyginx.wait_exit(master, 10)
    assert time.monotonic() - t0 < 4
    assert not alive(frozen)
    assert f"worker process {frozen} did not exit on SIGTERM, sending SIGKILL" in pyginx.error_log()
    pyginx.allow = (f"worker process {frozen}",)
