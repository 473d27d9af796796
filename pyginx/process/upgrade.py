"""Live binary upgrade (USR2): start a new master by fork + exec, handing it the listening sockets.

The new master runs the same command line (`sys.orig_argv`, so `python -m pyginx ...` and the console
script both survive) with `PYGINX=fd;fd;...;` naming the listening fds, which are made inheritable only
in the child, between fork and exec, so the old master's fds stay close-on-exec for everything else.
The handled signals stay blocked across exec: a signal sent to the new master while it starts stays
pending until its own loop collects it, instead of killing it with the default action.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence

from pyginx.log import error_log
from pyginx.process.listeners import ENV_NAME, env_value, inherited_sockets


def new_binary_argv() -> list[str]:
    return [sys.executable, *sys.orig_argv[1:]]


def spawn_new_binary(fds: Sequence[int]) -> int:
    """Fork and exec the new master; returns its pid (OSError if fork fails). If exec fails, the child
    logs it and exits 1, and the old master sees a dead new binary (and renames its pid file back)."""
    env = dict(os.environ)
    env[ENV_NAME] = env_value(fds)
    argv = new_binary_argv()
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        for fd in fds:
            os.set_inheritable(fd, True)
        os.execve(argv[0], argv, env)
    except OSError as exc:
        error_log().alert(
            f'execve() failed while executing new binary process "{argv[0]}" ({exc.errno}: {exc.strerror})'
        )
    finally:
        os._exit(1)


def take_inherited() -> tuple[list[socket.socket], str | None, list[str]]:
    """In a new master: adopt the sockets named by PYGINX and remove the variable, so that workers and
    later upgrades never see stale numbers. Returns (sockets, the raw value or None, problems)."""
    value = os.environ.pop(ENV_NAME, None)
    if value is None:
        return [], None, []
    socks, problems = inherited_sockets(value)
    return socks, value, problems
