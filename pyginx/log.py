"""The error log, in nginx's line format and levels.

`2026/11/28 23:16:33 [error] 1234#1234: *5 open() "/x" failed (2: No such file or directory), client: ...`

One ErrorLog object per process (the master's, each worker's), installed with `set_error_log` and
reached with `error_log()`. Writes go straight to the file descriptor (O_APPEND), as nginx's do, so
lines from several processes never interleave mid-line. `reopen()` serves USR1 after logrotate.
"""

from __future__ import annotations

import os
import sys
import time

LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}


def parse_level(name: str) -> int:
    """Rank of a level name (0 = emerg); ValueError for an unknown one."""
    return LEVEL_RANK[name]


class ErrorLog:
    """An error log file (or stderr when path is None) with a minimum level."""

    def __init__(self, path: str | None, level: str = "error") -> None:
        self.path = path
        self.level = level
        self.rank = LEVEL_RANK[level]
        self.fd = -1
        self.open()

    def open(self) -> None:
        """Open (or create) the file; on failure fall back to stderr and say why there."""
        if self.path is None:
            self.fd = sys.stderr.fileno()
            return
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self.fd = sys.stderr.fileno()
            self._write_line("emerg", f'open() "{self.path}" failed ({exc.errno}: {exc.strerror})')

    def reopen(self) -> None:
        """Close and open again by name: after logrotate moved the file, a new one is created."""
        old = self.fd
        self.open()
        if old > 2 and old != self.fd:
            try:
                os.close(old)
            except OSError:
                pass

    def close(self) -> None:
        if self.fd > 2:
            try:
                os.close(self.fd)
            except OSError:
                pass
        self.fd = -1

    def enabled(self, level: str) -> bool:
        return LEVEL_RANK[level] <= self.rank

    def log(self, level: str, message: str, conn_id: int | None = None) -> None:
        """Write one line if `level` is at or above the configured level."""
        if LEVEL_RANK[level] <= self.rank:
            self._write_line(level, message, conn_id)

    def _write_line(self, level: str, message: str, conn_id: int | None = None) -> None:
        now = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime())
        pid = os.getpid()
        conn = f"*{conn_id} " if conn_id is not None else ""
        line = f"{now} [{level}] {pid}#{pid}: {conn}{message}\n"
        fd = self.fd if self.fd >= 0 else 2
        try:
            os.write(fd, line.encode("utf-8", "backslashreplace"))
        except OSError:
            pass

    # shorthands
    def emerg(self, msg: str) -> None:
        self.log("emerg", msg)

    def alert(self, msg: str) -> None:
        self.log("alert", msg)

    def crit(self, msg: str) -> None:
        self.log("crit", msg)

    def error(self, msg: str, conn_id: int | None = None) -> None:
        self.log("error", msg, conn_id)

    def warn(self, msg: str, conn_id: int | None = None) -> None:
        self.log("warn", msg, conn_id)

    def notice(self, msg: str) -> None:
        self.log("notice", msg)

    def info(self, msg: str, conn_id: int | None = None) -> None:
        self.log("info", msg, conn_id)

    def debug(self, msg: str, conn_id: int | None = None) -> None:
        self.log("debug", msg, conn_id)


_current = ErrorLog(None, "notice")


def error_log() -> ErrorLog:
    """The process's error log (stderr at notice level until the configuration installs one)."""
    return _current


def set_error_log(log: ErrorLog) -> ErrorLog:
    """Install `log` as the process's error log; returns the previous one (the caller closes it)."""
    global _current
    previous, _current = _current, log
    return previous
