"""One shared-memory zone's memory and its lock: a memfd the master maps before it forks.

Memory: `os.memfd_create` (an unlinked temp file where memfd is missing), truncated to the configured
size and mapped MAP_SHARED, so every process forked afterwards sees the same bytes. The master creates
segments; workers, the cache manager and the cache loader inherit them with the fork.

Lock discipline (documented in docs/zones.md):
  * one exclusive lock per segment, a POSIX record lock (`fcntl.lockf`) on byte 0 of the segment's fd;
  * POSIX locks belong to a process, so processes forked from the master exclude each other, and the
    kernel drops the lock of a process that dies holding it (a worker killed mid-update never wedges
    the zone: nginx's master has to force-unlock a dead worker's mutex, we do not);
  * within a process a `threading.Lock` is taken too (POSIX locks do not exclude threads of one process);
  * the lock is held only around synchronous code that touches the segment: never across an `await`,
    never around I/O. Measured: one lock+unlock pair costs ~1 µs (two fcntl syscalls), see docs/zones.md.
  * a process must never close another fd of the same file (closing any fd drops the POSIX locks): the
    segment's fd is private to this module.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Segment:
    """`size` bytes of memory shared by the processes forked after it was created."""

    def __init__(self, name: str, size: int, tag: str) -> None:
        self.name = name
        self.size = size
        self.tag = tag  # the use it was declared for ("proxy_cache", "limit_req", ...)
        self.fd = _anonymous_file(f"pyginx-zone-{name}")
        try:
            os.ftruncate(self.fd, size)
            self.mem = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self._tlock = threading.Lock()
        self.closed = False

    @contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        """Hold the zone's lock (across processes and threads) for the duration of the block."""
        with self._tlock:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 0)
            try:
                yield self.mem
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)

    def acquire(self) -> None:
        """The lock without a context manager (the hot paths of the tables use this pair)."""
        self._tlock.acquire()
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 0)
        except BaseException:
            self._tlock.release()
            raise

    def release(self) -> None:
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0)
        finally:
            self._tlock.release()

    def close(self) -> None:
        """Drop this process's mapping (others keep theirs: the memory lives while one process maps it)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.mem.close()
        except BufferError:
            pass  # a live memoryview still points into it; the mapping goes with the process
        os.close(self.fd)

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, {self.size}, {self.tag!r})"


def _anonymous_file(name: str) -> int:
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        try:
            fd: int = memfd(name, os.MFD_CLOEXEC)
            return fd
        except OSError:
            pass
    fd, path = tempfile.mkstemp(prefix=name + "-")
    os.unlink(path)
    os.set_inheritable(fd, False)
    return fd
