"""Running as a service: sd_notify against a test datagram socket (path and abstract names), the
logrotate snippet run for real against a temp directory (USR1 reopens the logs), and the systemd unit
and Dockerfile read and checked (no systemd or docker here)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyginx.process import sdnotify
from tests.integration.harness import REPO, Pyginx, basic_config, pyginx_fixture, wait_for  # noqa: F401


class Listener:
    """A systemd stand-in: the datagrams sent to $NOTIFY_SOCKET."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(15)

    def next(self) -> dict[str, str]:
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[tuple[str, Listener]]:
    path = str(tmp_path / "notify.sock")
    listener = Listener(path)
    try:
        yield path, listener
    finally:
        listener.close()


def test_sd_notify_abstract_and_missing_socket() -> None:
    name = f"pyginx-test-{os.getpid()}"
    listener = Listener(b"\0" + name.encode())
    try:
        assert sdnotify.notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": "@" + name})
        assert listener.next() == {"READY": "1", "STATUS": "x"}
    finally:
        listener.close()
    assert not sdnotify.notify("READY=1", {})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "relative"})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/socket"})


def test_master_notifies_ready_reloading_stopping(
    pyginx: Pyginx, notify_path: tuple[str, Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, listener = notify_path
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    pyginx.write_config(basic_config(pyginx.port, workers=2))
    master = pyginx.start(workers=2)
    got = listener.next()
    assert got["READY"] == "1" and got["MAINPID"] == str(master) and got["STATUS"] == "2 worker processes"
    old = set(pyginx.workers(master))
    pyginx.signal(signal.SIGHUP, master)
    got = listener.next()
    assert got["RELOADING"] == "1" and int(got["MONOTONIC_USEC"]) > 0
    got = listener.next()
    assert got["READY"] == "1"
    # READY comes once the new workers serve (the old ones retire meanwhile: their titles change
    # a moment later, so wait for the generation to settle)
    new = set(pyginx.wait_workers(master, 2))
    assert new.isdisjoint(old), (new, old)
    # a reload that fails keeps the old workers and says READY again at once
    pyginx.write_config("http: {unknown_directive: 1}\n")
    pyginx.signal(signal.SIGHUP, master)
    assert "RELOADING" in listener.next()
    assert listener.next()["READY"] == "1"
    pyginx.allow = ('unknown directive "unknown_directive"',)
    pyginx.signal(signal.SIGQUIT, master)
    assert listener.next() == {"STOPPING": "1"}
    pyginx.wait_exit(master)


LOGROTATE = shutil.which("logrotate") or ("/usr/sbin/logrotate" if os.path.exists("/usr/sbin/logrotate") else None)


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate is not installed (apt-get install -y logrotate)")
def test_logrotate_snippet_rotates_and_usr1_reopens(pyginx: Pyginx) -> None:
    assert LOGROTATE is not None
    snippet = (REPO / "conf" / "logrotate.d" / "pyginx").read_text()
    assert "kill -USR1 $(cat /opt/pyginx/logs/pyginx.pid)" in snippet
    prefix = str(pyginx.prefix)
    conf = pyginx.prefix / "logrotate.conf"
    conf.write_text(snippet.replace("/opt/pyginx", prefix).replace("create 0640 root root", "create 0640"))
    os.chmod(conf, 0o644)
    state = pyginx.prefix / "logrotate.state"
    pyginx.write_config(basic_config(pyginx.port, workers=2))
    pyginx.start(workers=2)
    pyginx.get("/before")
    access = pyginx.prefix / "logs" / "access.log"
    wait_for(lambda: "/before" in access.read_text(), 5, "the request in the log")
    dry = subprocess.run([LOGROTATE, "-d", "-s", str(state), str(conf)], capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0, dry.stderr
    done = subprocess.run([LOGROTATE, "-f", "-s", str(state), str(conf)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    rotated = pyginx.prefix / "logs" / "access.log.1"
    assert "/before" in rotated.read_text()
    # every worker reopened: requests land in the new file, none in the rotated one
    # (error.log is rotated too: the master logs the signal in the old file, then reopens)
    old_error = pyginx.prefix / "logs" / "error.log.1"
    wait_for(lambda: "reopening logs" in old_error.read_text(), 5, "the reopen")
    for i in range(6):
        pyginx.get(f"/after{i}")
    wait_for(lambda: access.exists() and access.read_text().count("/after") == 6, 5, "the new log")
    assert "/after" not in rotated.read_text()


def _unit(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, _, value = line.partition("=")
        sections[current].append((key, value))
    return sections


def test_systemd_unit(pyginx: Pyginx) -> None:
    unit = _unit((REPO / "conf" / "systemd" / "pyginx.service").read_text())
    service = dict(unit["Service"])
    assert service["Type"] == "notify"
    reloads = [v for k, v in unit["Service"] if k == "ExecReload"]
    assert reloads[-1] == "/bin/kill -HUP $MAINPID"
    assert service["ExecStop"] == "/bin/kill -QUIT $MAINPID"
    start = shlex.split(service["ExecStart"])
    assert start[1:] == ["-p", "/opt/pyginx", "-c", "conf/pyginx.yaml"]
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"
    # the shipped configuration it starts stays in the foreground, as Type=notify needs
    done = pyginx.run_cli("-p", str(REPO), "-c", "conf/pyginx.yaml", "-t")
    assert done.returncode == 0, done.stderr


def _dockerfile(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instr, _, rest = line.partition(" ")
        out.append((instr.upper(), rest.strip()))
    return out


def test_dockerfile_serves_html(pyginx: Pyginx) -> None:
    steps = _dockerfile((REPO / "Dockerfile").read_text())
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11")
    for instr, rest in steps:
        if instr == "COPY":
            *sources, _dest = rest.split()
            for src in sources:
                assert (REPO / src).exists(), src
    cmd = json.loads(dict(steps)["CMD"])
    assert cmd[0] == "pyginx" and cmd[cmd.index("-c") + 1] == "conf/pyginx.yaml"
    assert dict(steps)["STOPSIGNAL"] == "SIGQUIT"
    # the image's configuration (conf/docker.yaml) serves html/: run it here on a free port
    text = (REPO / "conf" / "docker.yaml").read_text()
    assert "root: html" in text and "listen: 8080" in text
    pyginx.write_config(
        text.replace("listen: 8080", f"listen: 127.0.0.1:{pyginx.port}")
        .replace("worker_processes: auto", "worker_processes: 1")
        .replace("/dev/stderr", "logs/error.log")
        .replace("/dev/stdout", "logs/access.log")
    )
    pyginx.start()
    (pyginx.prefix / "html" / "index.html").write_text((REPO / "html" / "index.html").read_text())
    got = pyginx.get("/")
    assert got.status == 200 and got.body == (REPO / "html" / "index.html").read_bytes()
