"""The master -> worker command channel (nginx's ngx_channel): one socketpair per worker.

Signals cannot say "retire after a reload" (finish, answer the next request of each idle keep-alive
connection with `Connection: close`) apart from "quit" (close idle connections now), so commands travel
as single bytes on a socketpair. The worker watches its end in its event loop; end-of-file there means the
master is gone, and the worker then shuts down gracefully instead of serving on as an orphan.
"""

from __future__ import annotations

import socket
from enum import Enum


class Command(Enum):
    QUIT = b"q"  # graceful shutdown, idle keep-alive connections closed now
    RETIRE = b"r"  # graceful shutdown after a reload: idle connections closed on their next request
    TERMINATE = b"t"  # exit now
    REOPEN = b"o"  # reopen log files


class Channel:
    """Both ends, made in the master before fork; each side closes the end it does not use."""

    def __init__(self) -> None:
        self.master_end, self.worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.master_end.setblocking(False)

    def in_master(self) -> None:
        """After fork, in the master: the worker's end belongs to the worker."""
        self.worker_end.close()

    def in_worker(self) -> socket.socket:
        """After fork, in the worker: keep only our end."""
        self.master_end.close()
        self.worker_end.setblocking(False)
        return self.worker_end

    def send(self, command: Command) -> bool:
        """Master side; False if the byte could not be written (worker gone, buffer full)."""
        try:
            return self.master_end.send(command.value) == 1
        except OSError:
            return False

    def close(self) -> None:
        self.master_end.close()
        self.worker_end.close()


def decode(data: bytes) -> list[Command]:
    """Commands in a chunk read by the worker; unknown bytes are ignored."""
    by_value = {c.value: c for c in Command}
    return [by_value[bytes([b])] for b in data if bytes([b]) in by_value]
