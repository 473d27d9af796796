"""The pid file: create, read, rename to `.oldbin` and back, remove (only while it still holds our pid).

Messages are nginx's: `open() "/p/logs/pyginx.pid" failed (2: No such file or directory)`,
`invalid PID number "" in "/p/logs/pyginx.pid"`.
"""

from __future__ import annotations

import os

from pyginx.errors import PyginxError

OLDBIN_SUFFIX = ".oldbin"


class PidFileError(PyginxError):
    """A pid file that cannot be read, written or renamed; str() is nginx's wording."""


def os_error(call: str, path: str, exc: OSError) -> str:
    """`open() "/p" failed (2: No such file or directory)`, as nginx words a failed system call."""
    return f'{call}() "{path}" failed ({exc.errno}: {exc.strerror})'


def read_pid(path: str) -> int:
    """The pid stored in `path`; PidFileError when missing, unreadable or not a positive number."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64)
    except OSError as exc:
        raise PidFileError(os_error("open", path, exc)) from exc
    text = raw.decode("ascii", "replace").rstrip("\r\n")
    if not text.isdigit() or int(text) <= 0:
        raise PidFileError(f'invalid PID number "{text}" in "{path}"')
    return int(text)


def write_pid(path: str, pid: int | None = None) -> None:
    """Write our pid atomically (temp file + rename), so `pyginx -s` never reads a half-written file."""
    pid = os.getpid() if pid is None else pid
    tmp = f"{path}.{pid}.tmp"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{pid}\n".encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PidFileError(os_error("open", path, exc)) from exc


def is_pyginx_alive(pid: int) -> bool:
    """Whether `pid` is a live process that looks like a pyginx (a stale pid may be reused by another)."""
    if pid == os.getpid():
        return False  # a stale file that happens to name us (e.g. pid 1 in a restarted container)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return True  # no /proc: trust kill(0)
    return b"pyginx" in cmdline


def running_pid(path: str) -> int | None:
    """The pid of a live pyginx named by the pid file, or None (no file, bad content, dead process)."""
    try:
        pid = read_pid(path)
    except PidFileError:
        return None
    return pid if is_pyginx_alive(pid) else None


def remove_if_ours(path: str, pid: int | None = None) -> bool:
    """Remove `path` only if it still holds `pid` (ours by default): a new master may own it by now."""
    pid = os.getpid() if pid is None else pid
    try:
        if read_pid(path) != pid:
            return False
        os.unlink(path)
    except (PidFileError, OSError):
        return False
    return True


def rename(src: str, dst: str) -> None:
    """Rename for the binary upgrade (`pid` <-> `pid.oldbin`); PidFileError in nginx's words."""
    try:
        os.rename(src, dst)
    except OSError as exc:
        raise PidFileError(f'rename() "{src}" to "{dst}" failed ({exc.errno}: {exc.strerror})') from exc


def oldbin_path(path: str) -> str:
    return path + OLDBIN_SUFFIX
