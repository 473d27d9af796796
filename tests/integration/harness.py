"""A harness for integration tests: the real `python -m pyginx` in a temporary prefix, on free ports.

Everything waits by polling with a deadline (never a fixed sleep), every process the harness starts or
discovers (masters from pid files, their children from /proc) is cleaned up by pid, and `check_log`
fails a test whose error log shows an unexpected `[alert]`, `[emerg]` or a Python traceback.

    def test_x(pyginx: Pyginx) -> None:
        pyginx.write_config(basic_config(pyginx.port))
        pyginx.start()
        assert pyginx.get("/").status == 200
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


# Ports handed to servers a test starts later come from below the kernel's ephemeral range
# (32768-60999 by default), walking from a per-process offset: a port picked here and bound a moment
# later cannot meanwhile be given by the kernel to an outgoing connection or to a bind(0) elsewhere.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_next_port = _PORT_LOW + (os.getpid() * 37) % (_PORT_HIGH - _PORT_LOW)


def free_port() -> int:
    """A port nobody listens on right now, one this process has not handed out before."""
    global _next_port
    for _ in range(_PORT_HIGH - _PORT_LOW):
        port = _next_port
        _next_port = _PORT_LOW + (_next_port + 1 - _PORT_LOW) % (_PORT_HIGH - _PORT_LOW)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def wait_for(
    predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> T:
    """Poll until predicate() is truthy; return its value, or fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------- /proc


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None if it is gone. Reads /proc, no ps or psutil."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    return rest[0], int(rest[1])


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Live children of `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st is not None and st[1] == pid and st[0] != "Z":
                out.append(int(entry))
    return sorted(out)


# ---------------------------------------------------------------------------------------------- HTTP


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def http_get(
    port: int, path: str = "/", headers: dict[str, str] | None = None, timeout: float = 5.0
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
    finally:
        conn.close()


def port_answers(port: int) -> bool:
    try:
        return http_get(port, "/", timeout=1.0).status > 0
    except OSError:
        return False


def port_refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


# ---------------------------------------------------------------------------------------------- configs


def basic_config(
    port: int, *, workers: int = 2, main: str = "", http: str = "", server: str = "", body: str = "ok"
) -> str:
    """A small complete configuration with short timeouts, answering `body` on / without files."""
    text = f"""
worker_processes: {workers}
error_log: logs/error.log info
pid: logs/pyginx.pid
worker_shutdown_timeout: 5s
{main}
events:
  worker_connections: 256
http:
  access_log: logs/access.log
  keepalive_timeout: 5s
  client_header_timeout: 5s
  client_body_timeout: 5s
  send_timeout: 5s
{textwrap.indent(http.strip(), "  ") if http.strip() else ""}
  servers:
    - listen: 127.0.0.1:{port}
      server_name: localhost
      root: html
{textwrap.indent(server.strip(), "      ") if server.strip() else ""}
      locations:
        - location: /
          return: 200 {body}
"""
    return textwrap.dedent(text).strip() + "\n"


# ---------------------------------------------------------------------------------------------- the server


class Pyginx:
    """One pyginx installation in a temporary prefix, and every process it led to."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.conf = "conf/pyginx.yaml"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.allow: tuple[str, ...] = ()  # error log alert/emerg lines a test expects (checked at teardown)
        self.known: set[int] = set()  # masters and workers seen: cleaned up by pid
        for sub in ("conf", "html", "logs"):
            (prefix / sub).mkdir(exist_ok=True)
        (prefix / "html" / "index.html").write_text("<h1>pyginx test</h1>\n")

    # ---- files

    @property
    def pid_path(self) -> Path:
        return self.prefix / "logs" / "pyginx.pid"

    @property
    def oldbin_path(self) -> Path:
        return self.prefix / "logs" / "pyginx.pid.oldbin"

    @property
    def error_log_path(self) -> Path:
        return self.prefix / "logs" / "error.log"

    def write_config(self, text: str, name: str | None = None) -> Path:
        path = self.prefix / (name or self.conf)
        path.write_text(text)
        return path

    def error_log(self) -> str:
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def check_log(self, allow: tuple[str, ...] = ()) -> None:
        """Fail on `[alert]`/`[emerg]` lines (unless they contain one of `allow`) and on tracebacks."""
        text = self.error_log()
        assert "Traceback" not in text, f"traceback in the error log:\n{text}"
        for line in text.splitlines():
            if ("[alert]" in line or "[emerg]" in line or "[crit]" in line) and not any(
                a in line for a in allow
            ):
                raise AssertionError(f"unexpected line in the error log: {line}\n--- whole log:\n{text}")

    # ---- processes

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyginx", "-p", str(self.prefix), "-c", self.conf, *args]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.pop("PYGINX", None)
        return env

    def run_cli(self, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """A short-lived command (-t, -T, -s ...), output captured."""
        return subprocess.run(
            self.command(*args),
            cwd=self.prefix,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.prefix / "stdout.txt", "ab")
        err = open(self.prefix / "stderr.txt", "ab")
        try:
            proc = subprocess.Popen(
                self.command(*args),
                cwd=self.prefix,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        finally:
            out.close()
            err.close()
        self.procs.append(proc)
        self.known.add(proc.pid)
        return proc

    def start(self, *args: str, workers: int | None = None, timeout: float = 15.0) -> int:
        """Start the server and wait until it serves; returns the master pid."""
        proc = self.spawn(*args)

        def ready() -> int | None:
            if proc.poll() is not None and not self.pid_path.exists():
                raise AssertionError(
                    f"pyginx exited with {proc.returncode}: {self.stderr()}\n{self.error_log()}"
                )
            if not port_answers(self.port):
                return None
            pid = self.read_pid()  # read after the port answers: the file may hold a stale pid before
            return pid if pid is not None and alive(pid) and "pyginx" in cmdline(pid) else None

        pid = wait_for(ready, timeout, "pyginx to serve")
        self.known.add(pid)
        if workers is not None:
            self.wait_workers(pid, workers)
        return pid

    def stderr(self) -> str:
        try:
            return (self.prefix / "stderr.txt").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def read_pid(self, path: Path | None = None) -> int | None:
        try:
            text = (path or self.pid_path).read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def workers(self, master: int) -> list[int]:
        """The master's worker processes (a new binary is its child too, with a master's title)."""
        pids = children(master)
        self.known.update(pids)
        return [p for p in pids if "worker process" in cmdline(p)]

    def worker_titles(self, master: int) -> dict[int, str]:
        return {pid: cmdline(pid) for pid in self.workers(master)}

    def serving_workers(self, master: int) -> list[int]:
        """Workers that are not shutting down (by their process title)."""
        return [p for p, t in self.worker_titles(master).items() if t == "pyginx: worker process"]

    def wait_workers(self, master: int, count: int, timeout: float = 10.0) -> list[int]:
        def settled() -> list[int] | None:
            serving = self.serving_workers(master)
            return serving if len(serving) == count and len(self.workers(master)) == count else None

        return wait_for(settled, timeout, f"{count} workers of {master}")

    def signal(self, sig: int, pid: int | None = None) -> None:
        target = pid if pid is not None else self.read_pid()
        assert target is not None, "no pid file"
        self.known.add(target)
        os.kill(target, sig)

    def wait_exit(self, pid: int, timeout: float = 10.0) -> None:
        for proc in self.procs:  # reap our own child so it does not linger as a zombie
            if proc.pid == pid:
                proc.wait(timeout)
                return
        wait_for(lambda: not alive(pid), timeout, f"process {pid} to exit")

    def get(self, path: str = "/", headers: dict[str, str] | None = None, timeout: float = 5.0) -> Response:
        return http_get(self.port, path, headers, timeout)

    def cleanup(self) -> None:
        """Kill whatever is left of what we started, by pid (never by name)."""
        for pid in list(self.known):
            if alive(pid) and "pyginx" in cmdline(pid):
                self.known.update(children(pid))
        for pid in sorted(self.known):
            if alive(pid) and "pyginx" in cmdline(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        while (
            any(alive(pid) for pid in self.known) and time.monotonic() < deadline
        ):  # SIGKILL is asynchronous
            time.sleep(0.01)


@pytest.fixture(name="pyginx")
def pyginx_fixture(tmp_path: Path) -> Iterator[Pyginx]:
    """Import `pyginx_fixture` into a test module to get the `pyginx` fixture."""
    server = Pyginx(tmp_path)
    try:
        yield server
        server.check_log(server.allow)  # before cleanup: killing a master makes its workers complain
    finally:
        # pytest shows this only for a failed test
        print(f"--- error log of {tmp_path}:\n{server.error_log()}\n--- stderr:\n{server.stderr()}")
        server.cleanup()
