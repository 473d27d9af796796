"""`daemon: true`: detach from the terminal as nginx's ngx_daemon does.

One fork (the parent exits 0 so the shell or init script continues), setsid() for a new session without
a controlling terminal, stdin and stdout to /dev/null. stderr is left for the error log to take over
(cycle.redirect_stderr), so start-up messages up to this point still reach the terminal.
"""

from __future__ import annotations

import os
import sys


def daemonize() -> None:
    """Returns in the detached child only; raises OSError if fork or setsid fails."""
    sys.stdout.flush()  # or both processes would write what is buffered
    sys.stderr.flush()
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    fd = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(fd, 0)
        os.dup2(fd, 1)
    finally:
        if fd > 2:
            os.close(fd)
