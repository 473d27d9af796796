"""Starting, watching and stopping the servers under test, always by pid.

Each server runs in the foreground (nginx `daemon off`, pyginx's default) as our child, so its master's
pid is the Popen's; the worker is found as the master's child. Stopping sends SIGTERM to the master
(nginx and pyginx both stop their workers on it), then SIGKILL to whatever pid we know that is left.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    log_dir: Path
    cpus: str | None = None  # taskset list, e.g. "0"
    nworkers: int = 1
    proc: subprocess.Popen[bytes] | None = None
    worker: int | None = None  # the first worker (the only one, but in the 2-worker scenario)
    workers: list[int] = field(default_factory=list)
    known: set[int] = field(default_factory=set)  # every pid seen, for the final clean-up

    def start(self, ready_path: str = "/", timeout: float = 20.0) -> None:
        argv = (["taskset", "-c", self.cpus] if self.cpus else []) + self.argv
        out = (self.log_dir / "stdout.log").open("ab")
        # taskset execs the server in place, so the Popen pid is the master's own.
        self.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.log_dir.parent
        )
        out.close()
        self.known.add(self.proc.pid)
        self.wait_ready(ready_path, timeout)
        self.workers = self.find_workers(timeout)
        self.worker = self.workers[0]
        self.known.update(self.workers)

    def cpu_seconds(self) -> float:
        """utime + stime of all the workers."""
        return sum(cpu_seconds(pid) for pid in self.workers)

    def wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if http_status(self.port, path) == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer 200 for {path} within {timeout:g}s")

    def find_workers(self, timeout: float) -> list[int]:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        kids: list[int] = []
        while time.monotonic() < deadline:
            kids = children(self.proc.pid)
            workers = [pid for pid in kids if b"worker" in cmdline(pid)] or kids
            if len(workers) == self.nworkers:
                return workers
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name}: expected {self.nworkers} worker(s) under pid {self.proc.pid}, found {kids}"
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.log_dir / "stdout.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.known.update(children(self.proc.pid))
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.known - {self.proc.pid}:
            kill_if_ours(pid, self.argv[0])
        self.proc = None
        self.worker = None
        self.workers = []


def kill_if_ours(pid: int, program: str) -> None:
    """SIGKILL a worker left behind, unless its pid has already been reused by something else."""
    if os.path.basename(program).encode()[:15] not in comm(pid) and not any(
        word in cmdline(pid) for word in (b"pyginx", b"ceiling")
    ):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (scans /proc: /proc/PID/task/*/children needs a kernel option)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ppid(int(entry)) == pid:
            found.append(int(entry))
    return sorted(found)


def stat_fields(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    # The command name may contain spaces and parentheses: the fields start after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def ppid(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def cpu_seconds(pid: int) -> float:
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0  # utime + stime


def cpu_snapshot() -> dict[tuple[int, str], float]:
    """CPU seconds of every user-space process, children reaped included, keyed by (pid, start time)."""
    snapshot = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(int(entry))
        if not fields or entry == "2" or fields[1] == "2":  # kthreadd and the kernel threads under it
            continue
        # utime, stime, cutime, cstime: a short-lived process shows up in its parent once reaped.
        snapshot[(int(entry), fields[19])] = sum(int(x) for x in fields[11:15]) / CLK_TCK
    return snapshot


def others_cpu(before: dict[tuple[int, str], float], ours: set[int]) -> float:
    """CPU seconds used since `before` by processes not in `ours`: someone else's load on the machine.

    Kernel threads are left out on purpose: ksoftirqd does the loopback work of our own runs.
    """
    after = cpu_snapshot()
    # Totals, not per-process deltas: a process reaped meanwhile leaves its whole life in its parent's
    # cutime, and its share from before the window is subtracted only if it is summed out here too.
    total = sum(v for k, v in after.items() if k[0] not in ours) - sum(
        v for k, v in before.items() if k[0] not in ours
    )
    return max(total, 0.0)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def comm(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes()
    except OSError:
        return b""


def http_get(
    port: int, path: str, timeout: float = 2.0, headers: tuple[tuple[str, str], ...] = ()
) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 GET with Connection: close; (0, {}, b"") when nothing answers. A chunked
    body comes back de-chunked."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return 0, {}, b""
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0, {}, b""
    got = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if got.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status, got, body


def dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size.split(b";")[0] or b"0", 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2 :]
    return bytes(out)


def http_status(port: int, path: str) -> int:
    return http_get(port, path)[0]


def raw_response(port: int, path: str, timeout: float = 2.0) -> bytes:
    """The exact bytes of one keep-alive response (head and body) to a GET as wrk sends it."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"port {port} closed before the end of the head")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"port {port} closed before the end of the body")
            body += chunk
    return head + b"\r\n\r\n" + body[:length]
