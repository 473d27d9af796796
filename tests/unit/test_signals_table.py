"""The one signal table shared by the master, workers and `pyginx -s`."""

from __future__ import annotations

import signal

import pytest

from pyginx.process import signals


def test_s_commands_are_nginx_s() -> None:
    assert signals.command_names() == ("stop", "quit", "reopen", "reload")
    assert signals.signal_for_command("stop") == signal.SIGTERM
    assert signals.signal_for_command("quit") == signal.SIGQUIT
    assert signals.signal_for_command("reopen") == signal.SIGUSR1
    assert signals.signal_for_command("reload") == signal.SIGHUP
    with pytest.raises(KeyError):
        signals.signal_for_command("restart")


def test_master_flags_cover_the_order() -> None:
    flags = {spec.master_flag for spec in signals.TABLE}
    assert flags <= set(signals.MASTER_ORDER)
    assert signals.MASTER_ORDER == (
        "reap", "terminate", "quit", "reconfigure", "restart", "reopen", "change_binary", "noaccept",
    )  # fmt: skip
    assert signals.BY_SIGNUM[signal.SIGINT].master_flag == "terminate"
    assert signals.BY_SIGNUM[signal.SIGWINCH].master_flag == "noaccept"
    assert signal.SIGHUP in signals.WORKER_IGNORED and signal.SIGQUIT not in signals.WORKER_IGNORED


def test_describe_as_nginx_logs_it() -> None:
    assert signals.describe(1, 1234, "reconfiguring") == "signal 1 (SIGHUP) received from 1234, reconfiguring"
    assert signals.describe(17, 99, "") == "signal 17 (SIGCHLD) received from 99"
    assert signals.describe(3, None, "shutting down") == "signal 3 (SIGQUIT) received, shutting down"
