"""Cache files on disk: read one, write one (temp file, then rename), delete, walk (for the loader).

A file becomes visible only complete: it is written under a temp name in the cache directory
(`.tmp.PID.N`, on the same file system as its final place) and renamed over the final name. A process
killed mid-write leaves only its temp file, which no lookup ever opens; the cache loader removes the
temp files of processes that no longer run.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

from pyginx.cache import fileformat as ff
from pyginx.cache.key import file_path, is_cache_name

TEMP_PREFIX = ".tmp."
FIRST_READ = 16 * 1024  # the header, key and upstream head of nearly every entry in one read

_serial = itertools.count(1)


@dataclass
class OpenEntry:
    fd: int
    parsed: ff.Parsed
    size: int  # the file's size
    inode: int
    fs_size: int  # bytes on disk
    prefix: bytes  # the bytes read so far (header, key, head, maybe some or all of the body)

    @property
    def body_start(self) -> int:
        return self.parsed.header.body_start

    @property
    def body_len(self) -> int:
        return self.parsed.header.body_len

    def body(self) -> bytes:
        start, end = self.body_start, self.body_start + self.body_len
        if len(self.prefix) >= end:
            return self.prefix[start:end]
        have = self.prefix[start:]
        return have + os.pread(self.fd, end - start - len(have), start + len(have))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_entry(path: str, key: str | None, crc: int | None) -> OpenEntry | None:
    """The entry at `path`, validated; None if there is no file; BadCacheFile if it is damaged or is
    another key's (md5 collision); OSError for other failures."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    try:
        st = os.fstat(fd)
        prefix = os.pread(fd, FIRST_READ, 0)
        if len(prefix) >= ff.HEADER_SIZE:
            body_start = ff.unpack(prefix).body_start
            if body_start > len(prefix) and body_start <= st.st_size:
                prefix += os.pread(fd, body_start - len(prefix), len(prefix))
        parsed = ff.parse(prefix, st.st_size, key, crc)
        return OpenEntry(fd, parsed, st.st_size, st.st_ino, disk_size(st), prefix)
    except BaseException:
        os.close(fd)
        raise


def disk_size(st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", 0)
    return blocks * 512 if blocks else st.st_size


class Writer:
    """One entry being written: the prefix at once, the body as it arrives, then commit() or abort()."""

    def __init__(self, root: str, levels: tuple[int, ...], hexname: str, prefix: bytes) -> None:
        self.root = root
        self.final = file_path(root, hexname, levels)
        self.temp = os.path.join(root, f"{TEMP_PREFIX}{os.getpid()}.{next(_serial)}")
        self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        self.body_len = 0
        self.prefix_len = len(prefix)
        try:
            self._write(prefix)
        except BaseException:
            self.abort()
            raise

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def write(self, data: bytes) -> None:
        self._write(data)
        self.body_len += len(data)

    def commit(self, header: ff.FileHeader) -> tuple[int, int]:
        """Patch the header with the body's length and move the file into place: (fs_size, inode)."""
        try:
            header.body_len = self.body_len
            os.pwrite(self.fd, header.pack(), 0)
            st = os.fstat(self.fd)
            os.close(self.fd)
            self.fd = -1
            try:
                os.rename(self.temp, self.final)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(self.final), 0o700, exist_ok=True)
                os.rename(self.temp, self.final)
            return disk_size(st), st.st_ino
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1
        try:
            os.unlink(self.temp)
        except OSError:
            pass


def rewrite_header(path: str, header: ff.FileHeader, inode: int) -> bool:
    """A revalidated entry gets its new validity in place (ngx_http_file_cache_update_header); only
    if the file is still the one we read."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_ino != inode:
            return False
        os.pwrite(fd, header.pack(), 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def delete(root: str, levels: tuple[int, ...], digest: bytes) -> None:
    try:
        os.unlink(file_path(root, digest.hex(), levels))
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def walk(root: str) -> Iterator[tuple[str, str]]:
    """Every cache file under `root` as (path, hex name); removes the temp files of dead processes
    and files whose names cannot be cache entries (nginx's loader deletes those too)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if is_cache_name(name):
                yield path, name
                continue
            if name.startswith(TEMP_PREFIX):
                pid_text = name[len(TEMP_PREFIX) :].split(".", 1)[0]
                if pid_text.isdigit() and _alive(int(pid_text)):
                    continue  # being written right now
            try:
                os.unlink(path)
            except OSError:
                pass
