"""Worker heartbeat (beyond nginx): each worker's event loop stamps a shared page once a second.

The master creates one anonymous shared mapping per worker before forking it; the worker writes
time.monotonic() (CLOCK_MONOTONIC is system-wide, so both processes read the same clock) from a loop
timer. A loop that is stuck in a blocking call or a busy loop stops stamping, and the master, which only
reads, kills the worker once the stamp is older than `worker_heartbeat_timeout`. A stamp of 0 means
"not ready yet": the master then counts from the fork, and treats the first stamp as "serving".
No syscall on either side: the master polls on its one-second tick.
"""

from __future__ import annotations

import mmap
import struct
import time

_FMT = "d"
_SIZE = struct.calcsize(_FMT)
INTERVAL = 1.0  # seconds between stamps


class Heartbeat:
    def __init__(self) -> None:
        self._map = mmap.mmap(-1, mmap.PAGESIZE)  # MAP_SHARED | MAP_ANONYMOUS: survives fork, shared
        self.spawned = time.monotonic()

    def beat(self, now: float | None = None) -> None:
        struct.pack_into(_FMT, self._map, 0, time.monotonic() if now is None else now)

    def last(self) -> float:
        """The last stamp, 0.0 when the worker has not stamped yet."""
        value: float = struct.unpack_from(_FMT, self._map, 0)[0]
        return value

    def ready(self) -> bool:
        return self.last() > 0.0

    def silent_for(self, now: float) -> float:
        """Seconds since the last sign of life (the fork counts as one)."""
        return now - max(self.last(), self.spawned)

    def close(self) -> None:
        try:
            self._map.close()
        except (BufferError, ValueError):
            pass
