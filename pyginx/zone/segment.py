"""One shared-memory zone's memory and its lock: a memfd the master maps before it forks.

Memory: `os.memfd_create` (an unlinked temp file where memfd is missing), truncated to the configured
size and mapped MAP_SHARED, so every process forked afterwards sees the same bytes. The master creates
segments; workers, the cache manager and the cache loader inherit them with the fork.

Lock discipline (documented in docs/zones.md):
  * one exclusive lock per segment: a process-shared *robust* pthread mutex in a small shared mapping
    of its own (glibc's, through ctypes). Uncontended it is one atomic instruction each way, no system
    call (a futex wait only when another process holds it); robust: when its owner dies holding it,
    the next locker gets EOWNERDEAD, marks it consistent and goes on (a worker killed mid-update never
    wedges the zone: nginx's master has to force-unlock a dead worker's mutex, the kernel does it here);
  * where such a mutex cannot be made (no glibc/pthread through ctypes), a POSIX record lock
    (`fcntl.lockf`) on byte 0 of the segment's fd, which the kernel also drops when its process dies,
    plus a `threading.Lock` (POSIX locks do not exclude threads of one process);
  * the lock is held only around synchronous code that touches the segment: never across an `await`,
    never around I/O. Measured: one lock+unlock pair costs ~0.7 µs (the mutex; fcntl's two syscalls
    ~1.1 µs), see docs/zones.md.
  * (fcntl fallback) a process must never close another fd of the same file (closing any fd drops
    the POSIX locks): the segment's fd is private to this module.
"""

from __future__ import annotations

import ctypes
import errno
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
        # the robust mutex (None: the fcntl lock). Its mapping is never unmapped, not even by close():
        # a late acquire() must find memory there, and it is one page
        self._mutex = _RobustMutex.make()
        if self._mutex is not None:
            self.acquire = self._mutex.acquire  # type: ignore[method-assign]
            self.release = self._mutex.release  # type: ignore[method-assign]

    @contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        """Hold the zone's lock (across processes and threads) for the duration of the block."""
        self.acquire()
        try:
            yield self.mem
        finally:
            self.release()

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


class _RobustMutex:
    """A process-shared robust pthread mutex in a shared anonymous page, inherited across fork."""

    SIZE = 64  # >= sizeof(pthread_mutex_t) (40 on x86-64 glibc)

    def __init__(self, lib: ctypes.CDLL, mem: mmap.mmap, addr: int) -> None:
        self._mem = mem  # kept: the mutex lives in it
        self._addr = addr
        self._lock = lib.pthread_mutex_lock
        self._unlock = lib.pthread_mutex_unlock
        self._consistent = lib.pthread_mutex_consistent

    @classmethod
    def make(cls) -> _RobustMutex | None:
        lib = _pthread()
        if lib is None:
            return None
        mem = mmap.mmap(-1, cls.SIZE, mmap.MAP_SHARED | getattr(mmap, "MAP_ANONYMOUS", 0x20))
        view = ctypes.c_char.from_buffer(mem)
        addr = ctypes.addressof(view)
        del view  # no buffer export left: the address stays valid as long as `mem` is mapped
        attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes; room to spare
        if (
            lib.pthread_mutexattr_init(attr)
            or lib.pthread_mutexattr_setpshared(attr, 1)  # PTHREAD_PROCESS_SHARED
            or lib.pthread_mutexattr_setrobust(attr, 1)  # PTHREAD_MUTEX_ROBUST
            or lib.pthread_mutex_init(addr, attr)
        ):
            return None
        lib.pthread_mutexattr_destroy(attr)
        return cls(lib, mem, addr)

    def acquire(self) -> None:
        rc: int = self._lock(self._addr)
        if rc == 0:
            return
        if rc == errno.EOWNERDEAD:  # its owner died holding it: ours now, usable again
            self._consistent(self._addr)
            return
        raise OSError(rc, os.strerror(rc))

    def release(self) -> None:
        self._unlock(self._addr)


_lib: list[ctypes.CDLL | None] = []


def _pthread() -> ctypes.CDLL | None:
    """glibc's pthread functions with their argument types, or None where they are missing."""
    if _lib:
        return _lib[0]
    lib: ctypes.CDLL | None = None
    try:
        cand = ctypes.CDLL(None)
        for name in ("pthread_mutex_lock", "pthread_mutex_unlock", "pthread_mutex_consistent"):
            fn = getattr(cand, name)
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_int
        for name in ("pthread_mutexattr_setpshared", "pthread_mutexattr_setrobust"):
            fn = getattr(cand, name)
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int]
            fn.restype = ctypes.c_int
        for name in ("pthread_mutexattr_init", "pthread_mutexattr_destroy"):
            fn = getattr(cand, name)
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_int
        cand.pthread_mutex_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        cand.pthread_mutex_init.restype = ctypes.c_int
        lib = cand
    except (OSError, AttributeError):
        lib = None
    _lib.append(lib)
    return lib
