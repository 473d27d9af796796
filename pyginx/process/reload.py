"""A reload's two steps, shared by the master and single-process mode (nginx's ngx_init_cycle on HUP).

`reread` reads the configuration again and builds its cycle (listeners taken over from the old one,
logs opened, shared zones reused or made); a configuration that is refused is logged at emerg and
gives None, and the old cycle goes on serving untouched. `switch_logs_and_pid` moves the process onto
the new cycle's error log and pid file once the caller has committed to it. What differs between the
two modes (forking workers, or starting a second server in this process) stays with the caller.
"""

from __future__ import annotations

import socket

from pyginx.errors import ConfigError
from pyginx.log import error_log, set_error_log
from pyginx.process import pidfile
from pyginx.process.cycle import Cycle, StartupError, build_cycle, redirect_stderr
from pyginx.process.listeners import close_sockets


def reread(
    old: Cycle, master_process: bool, workers: int | None = None
) -> tuple[Cycle, list[socket.socket]] | None:
    """The new cycle and the old listening sockets it did not take over, or None (refused, logged)."""
    from pyginx.config import load_config  # the master imports the loader only when it reloads

    try:
        config = load_config(old.config.file, old.config.prefix)
        if config.master_process != master_process:
            error_log().warn('changing "master_process" requires a restart, ignored')
        return build_cycle(
            config, old.listeners.sockets(), workers=workers, old_zones=old.zones, previous=old.config
        )
    except (ConfigError, StartupError, OSError) as exc:
        error_log().emerg(str(exc))
        return None


def switch_logs_and_pid(old: Cycle, cycle: Cycle, leftovers: list[socket.socket]) -> None:
    """Commit this process to `cycle`: close the addresses no longer configured, log to the new error
    log (stderr with it), log the new cycle's warnings, and move the pid file if its path changed."""
    close_sockets(leftovers, unlink_unix=True)
    previous_log = set_error_log(cycle.error_log)
    redirect_stderr(cycle.error_log)
    if previous_log is not cycle.error_log:
        previous_log.close()
    for warning in cycle.warnings:
        error_log().warn(warning)
    if cycle.config.pid != old.config.pid:
        try:
            pidfile.write_pid(cycle.config.pid)
        except pidfile.PidFileError as exc:
            error_log().emerg(str(exc))
            return
        pidfile.remove_if_ours(old.config.pid)
