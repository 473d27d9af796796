"""The master as PID 1 of a container (issue 16): it reaps every child, not only its workers (orphans
of the namespace are re-parented to it), and TERM/QUIT do what they mean.

Two ways to stand where PID 1 stands: a child subreaper (prctl PR_SET_CHILD_SUBREAPER, kept across
exec: any user), and a new PID namespace (`unshare --pid --fork`, root only) where the master is
really pid 1 and an orphan is made inside the namespace with nsenter.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.harness import (  # noqa: F401
    Pyginx,
    basic_config,
    children,
    cmdline,
    port_answers,
    proc_stat,
    pyginx_fixture,
    wait_for,
)

# A subreaper that leaves an orphan behind, then becomes the master (same pid, subreaper kept).
SUBREAPER = textwrap.dedent(
    """
    import ctypes, os, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        sys.exit("prctl failed")
    child = os.fork()
    if child == 0:
        if os.fork() == 0:  # the orphan: its parent exits at once, so it is re-parented to us
            with open(sys.argv[1] + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
            time.sleep(2.0)
            os._exit(0)
        os._exit(0)
    os.waitpid(child, 0)
    os.execv(sys.executable, [sys.executable, "-m", "pyginx", *sys.argv[2:]])
    """
)


def _spawn(pyginx: Pyginx, argv: list[str]) -> subprocess.Popen[bytes]:
    err = open(pyginx.prefix / "stderr.txt", "ab")
    try:
        proc = subprocess.Popen(
            argv, cwd=pyginx.prefix, env=pyginx.env(), stdin=subprocess.DEVNULL, stderr=err
        )
    finally:
        err.close()
    pyginx.procs.append(proc)
    pyginx.known.add(proc.pid)
    return proc


def test_subreaper_master_reaps_orphans(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=1))
    orphan_file = pyginx.prefix / "orphan.pid"
    args = pyginx.command()[3:]  # after `python -m pyginx`
    proc = _spawn(pyginx, [sys.executable, "-c", SUBREAPER, str(orphan_file), *args])
    wait_for(lambda: port_answers(pyginx.port), 15, "pyginx to serve")
    orphan = int(wait_for(lambda: orphan_file.exists() and orphan_file.read_text(), 10, "the orphan"))
    st = proc_stat(orphan)
    if st is not None and st[0] != "Z":
        assert st[1] == proc.pid  # re-parented to the master
    # it exits after 2 s: the master must reap it (a zombie would stay in /proc with state Z)
    wait_for(lambda: proc_stat(orphan) is None, 10, "the orphan to be reaped")
    wait_for(lambda: f"unknown process {orphan} exited with code 0" in pyginx.error_log(), 5, "the log line")
    assert pyginx.get("/").status == 200  # and the workers were not disturbed
    os.kill(proc.pid, signal.SIGQUIT)
    assert proc.wait(10) == 0


UNSHARE = shutil.which("unshare")
NSENTER = shutil.which("nsenter")


@pytest.mark.skipif(
    os.geteuid() != 0 or UNSHARE is None or NSENTER is None,
    reason="a PID namespace needs root and util-linux",
)
@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGTERM])
def test_pid1_in_a_namespace(pyginx: Pyginx, sig: int) -> None:
    pyginx.write_config(basic_config(pyginx.port, workers=2))
    assert UNSHARE is not None and NSENTER is not None
    proc = _spawn(pyginx, [UNSHARE, "--pid", "--fork", "--mount-proc", *pyginx.command()])
    wait_for(lambda: port_answers(pyginx.port), 15, "pyginx to serve")
    master = wait_for(
        lambda: next((p for p in children(proc.pid) if "pyginx" in cmdline(p)), None), 5, "master"
    )
    pyginx.known.add(master)
    assert (pyginx.pid_path.read_text().strip()) == "1"  # its own namespace's pid
    nspid = Path(f"/proc/{master}/status").read_text().split("NSpid:")[1].splitlines()[0].split()
    assert nspid[-1] == "1"  # PID 1 of the innermost namespace
    # an orphan inside the namespace: sh starts a sleep in the background and exits at once
    subprocess.run(
        [NSENTER, "-t", str(master), "-p", "--", "sh", "-c", "sleep 1.5 &"], check=True, timeout=10
    )
    sleeper = wait_for(
        lambda: next((p for p in children(master) if cmdline(p).startswith("sleep")), None), 5, "the orphan"
    )
    wait_for(lambda: proc_stat(sleeper) is None, 10, "the orphan to be reaped by PID 1")
    workers = [p for p in children(master) if "worker" in cmdline(p)]
    assert len(workers) == 2
    os.kill(master, sig)  # what `docker stop` (TERM) or a preStop QUIT sends to PID 1
    assert proc.wait(10) == 0
    assert all(proc_stat(w) is None for w in workers)
    log = pyginx.error_log()
    assert "exit" in log and ("gracefully shutting down" in log if sig == signal.SIGQUIT else True)
