"""How the master words a reaped child's wait status (nginx's ngx_process_get_status)."""

from __future__ import annotations

from pyginx.process.channel import Channel, Command, decode
from pyginx.process.heartbeat import Heartbeat
from pyginx.process.master import Master, WorkerProc, describe_exit


def test_exit_codes_and_signals() -> None:
    ok = describe_exit("worker process", 12, 0 << 8)
    assert (ok.level, ok.message, ok.fatal) == ("notice", "worker process 12 exited with code 0", False)
    one = describe_exit("worker process", 12, 1 << 8)
    assert (one.level, one.message, one.fatal) == ("alert", "worker process 12 exited with code 1", False)
    fatal = describe_exit("worker process", 12, 2 << 8)
    assert fatal.fatal and fatal.extra == [
        "worker process 12 exited with fatal code 2 and cannot be respawned"
    ]
    killed = describe_exit("worker process", 12, 9)
    assert (killed.level, killed.message) == ("alert", "worker process 12 exited on signal 9")
    core = describe_exit("worker process", 12, 11 | 0x80)
    assert core.message == "worker process 12 exited on signal 11 (core dumped)"


def test_channel_commands_decode() -> None:
    assert decode(b"qrxto") == [Command.QUIT, Command.RETIRE, Command.TERMINATE, Command.REOPEN]


def make_master() -> Master:
    from types import SimpleNamespace

    cycle = SimpleNamespace(
        workers=2, config=SimpleNamespace(worker_heartbeat_timeout=10.0, pid="/nonexistent")
    )
    return Master(cycle)  # type: ignore[arg-type]


def proc(pid: int, generation: int = 0, exiting: bool = False) -> WorkerProc:
    return WorkerProc(
        pid, slot=pid % 2, generation=generation, channel=Channel(), beat=Heartbeat(), exiting=exiting
    )


def test_respawn_decisions() -> None:
    master = make_master()
    master.worker_exited(proc(11), 9)  # killed: respawned
    assert master.vacant == [1]
    master.worker_exited(proc(12), 2 << 8)  # fatal at start: not respawned
    assert master.vacant == [1]
    master.worker_exited(proc(13, exiting=True), 0)  # told to quit: not respawned
    master.generation = 1
    master.worker_exited(proc(14, generation=0), 9)  # an old generation's worker: not respawned
    assert master.vacant == [1]
    master.quitting = True
    master.worker_exited(proc(15, generation=1), 9)
    assert master.vacant == [1]
