"""The one signal table, shared by the master, the workers and `pyginx -s` (as nginx's signals[]).

Each row says what a signal means: the `-s` name that sends it, the master's flag it sets, and the words
nginx appends when it logs the signal ("signal 1 (SIGHUP) received from 1234, reconfiguring").
"""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class SignalSpec:
    signum: signal.Signals
    command: str | None  # the `-s` argument that sends it, if any
    master_flag: str  # the Master flag it raises (handled in nginx's order, see MASTER_ORDER)
    master_action: str  # appended to the notice the master logs
    worker_action: str  # appended to the notice a worker logs


TABLE: tuple[SignalSpec, ...] = (
    SignalSpec(signal.SIGHUP, "reload", "reconfigure", "reconfiguring", "ignoring"),
    SignalSpec(signal.SIGUSR1, "reopen", "reopen", "reopening logs", "reopening logs"),
    SignalSpec(signal.SIGWINCH, None, "noaccept", "stop accepting connections", "ignoring"),
    SignalSpec(signal.SIGTERM, "stop", "terminate", "exiting", "exiting"),
    SignalSpec(signal.SIGINT, None, "terminate", "exiting", "exiting"),
    SignalSpec(signal.SIGQUIT, "quit", "quit", "shutting down", "shutting down"),
    SignalSpec(signal.SIGUSR2, None, "change_binary", "changing binary", "ignoring"),
    SignalSpec(signal.SIGCHLD, None, "reap", "", ""),
)

BY_SIGNUM: dict[int, SignalSpec] = {int(spec.signum): spec for spec in TABLE}
BY_COMMAND: dict[str, SignalSpec] = {spec.command: spec for spec in TABLE if spec.command}

# The signals the master blocks and collects with sigtimedwait.
MASTER_SIGNALS: frozenset[signal.Signals] = frozenset(spec.signum for spec in TABLE)

# nginx's order of handling after each wake-up of the master (ngx_master_process_cycle).
MASTER_ORDER = ("reap", "terminate", "quit", "reconfigure", "restart", "reopen", "change_binary", "noaccept")

# Workers act on these and ignore HUP, USR2 and WINCH (the master's business).
WORKER_IGNORED: frozenset[signal.Signals] = frozenset({signal.SIGHUP, signal.SIGUSR2, signal.SIGWINCH})


def command_names() -> tuple[str, ...]:
    """The `-s` names, in table order: stop, quit, reopen, reload."""
    return tuple(sorted(BY_COMMAND, key=("stop", "quit", "reopen", "reload").index))


def signal_for_command(command: str) -> signal.Signals:
    """The signal `pyginx -s COMMAND` sends; KeyError for an unknown command."""
    return BY_COMMAND[command].signum


def describe(signum: int, sender: int | None, action: str) -> str:
    """nginx's notice line: `signal 1 (SIGHUP) received from 1234, reconfiguring`."""
    name = signal.Signals(signum).name
    text = f"signal {signum} ({name}) received"
    if sender:
        text += f" from {sender}"
    if action:
        text += f", {action}"
    return text
