"""A cycle (nginx's word): one configuration with the resources it needs — sockets, error log, user.

Building a cycle opens everything first and commits nothing: start-up and reload (in the master and in
single-process mode) both call `build_cycle`, and a reload that fails leaves the running cycle intact.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from pyginx.config.model import Location, MainConfig
from pyginx.errors import PyginxError
from pyginx.listeners import ListenError, ListenerSet, open_listeners
from pyginx.log import ErrorLog
from pyginx.zone import Segment, ZoneRequest, ZoneSet
from pyginx.zone import build as build_zones


class StartupError(PyginxError):
    """A cycle that cannot be built; str() is the emerg message in nginx's words."""


@dataclass(frozen=True)
class UserIds:
    name: str
    uid: int
    gid: int


@dataclass
class Cycle:
    config: MainConfig
    listeners: ListenerSet
    error_log: ErrorLog
    user: UserIds | None
    warnings: tuple[str, ...] = ()  # to log at warn once the cycle is in use
    zones: ZoneSet = field(default_factory=ZoneSet)  # shared memory, created before the fork
    reused_zones: tuple[Segment, ...] = ()  # segments taken over from the previous cycle

    @property
    def workers(self) -> int:
        return max(1, self.config.worker_processes)


def open_error_log(config: MainConfig) -> ErrorLog:
    """Open the configured error log; StartupError if the file cannot be opened (ErrorLog itself would
    silently fall back to stderr, which a reload must not accept)."""
    spec = config.error_log
    if spec.path is not None:
        try:
            os.close(open_append(spec.path))
        except OSError as exc:
            raise StartupError(f'open() "{spec.path}" failed ({exc.errno}: {exc.strerror})') from exc
    return ErrorLog(spec.path, spec.level)


def open_append(path: str) -> int:
    """Open a log file for appending, creating its directory (logs/ is made at run time) if missing."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, flags, 0o644)


def resolve_user(config: MainConfig) -> tuple[UserIds | None, tuple[str, ...]]:
    """The `user` directive as ids, honoured only when we run as root (nginx's rule)."""
    if config.user is None:
        return None, ()
    if os.geteuid() != 0:
        return None, (
            'the "user" directive makes sense only if the master process runs with super-user privileges, ignored',
        )
    name, group = config.user
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise StartupError(f'getpwnam("{name}") failed') from None
    gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise StartupError(f'getgrnam("{group}") failed') from None
    return UserIds(name, pw.pw_uid, gid), ()


def log_paths(config: MainConfig) -> list[str]:
    """Every log file the configuration names (error log, access logs at every level), once each."""
    paths: list[str] = []
    if config.error_log.path is not None:
        paths.append(config.error_log.path)

    def add_locations(locations: tuple[Location, ...]) -> None:
        for location in locations:
            paths.extend(a.path for a in location.settings.access_log if a.path)
            add_locations(location.locations)

    if config.http is not None:
        paths.extend(a.path for a in config.http.settings.access_log if a.path)
        for server in config.http.servers:
            paths.extend(a.path for a in server.settings.access_log if a.path)
            add_locations(server.locations)
    return [p for p in dict.fromkeys(paths) if "$" not in p]


def prepare_log_files(config: MainConfig, user: UserIds | None) -> None:
    """As nginx's master: create the log files as root and hand them to the worker user, so workers that
    dropped privileges can open them (at start) and reopen them (USR1) in a root-owned directory."""
    if user is None:
        return
    for path in log_paths(config):
        try:
            fd = open_append(path)
            try:
                os.fchown(fd, user.uid, -1)
            finally:
                os.close(fd)
        except OSError:
            pass  # the worker reports the failure when it opens the file itself


def build_cycle(
    config: MainConfig,
    pool: Iterable[socket.socket],
    tries: int = 1,
    workers: int | None = None,
    old_zones: ZoneSet | None = None,
) -> tuple[Cycle, list[socket.socket]]:
    """Everything `config` needs, or StartupError. Returns the cycle and the pool sockets it left unused.
    Shared zones of `old_zones` with the same name, use and size are taken over (nginx's reload rule);
    the caller closes the others with `retire_zones` once it commits to the new cycle."""
    user, warnings = resolve_user(config)
    log = open_error_log(config)
    prepare_log_files(config, user)
    count = max(1, config.worker_processes) if workers is None else workers
    try:
        zones, reused = build_zones(zone_requests(config), old_zones)
    except (OSError, ValueError) as exc:
        log.close()
        raise StartupError(f"shared memory zone could not be created ({exc})") from exc
    try:
        listeners, leftovers = open_listeners(config, pool, count, tries=tries)
    except ListenError as exc:
        log.close()
        zones.close(keep=reused)
        raise StartupError(str(exc)) from exc
    return Cycle(config, listeners, log, user, warnings, zones, tuple(reused)), leftovers


def zone_requests(config: MainConfig) -> list[ZoneRequest]:
    if config.http is None:
        return []
    return [ZoneRequest(z.name, z.size, z.tag) for z in config.http.zones]


def retire_zones(old: Cycle, new: Cycle) -> None:
    """The old cycle's zones the new one did not take over: this process unmaps them (the old workers
    keep their own mappings until they exit)."""
    old.zones.close(keep=new.reused_zones)


def redirect_stderr(log: ErrorLog) -> None:
    """As nginx: once running, stderr (tracebacks, stray prints) goes to the error log file."""
    if log.path is not None and log.fd > 2:
        try:
            os.dup2(log.fd, 2)
        except OSError:
            pass
