"""Listening sockets: bound from the configuration, or adopted from a previous binary (`PYGINX=fd;fd;`).

One `ListenerSet` belongs to one configuration. `open_listeners` builds the set for a new configuration
from a pool of sockets that already exist (the running set on reload, the inherited fds on upgrade): a
socket whose address is still configured is kept (same socket, so no connection is lost), missing ones are
bound, and the pool's leftovers are handed back for the caller to close once the new set is committed.
A failure closes only what this call created and leaves the pool untouched, so the old set keeps serving.

With `reuseport`, nginx gives every worker its own socket bound with SO_REUSEPORT; the master keeps all
of them open so a respawned or reloaded worker N takes over socket N without dropping its queue.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from pyginx.config.model import ListenAddr, MainConfig
from pyginx.errors import PyginxError

Key = tuple[str, int, str | None]
# What the kernel says a socket is bound to: ("unix", path) or (family, packed address, port).
Identity = tuple[object, ...]

ENV_NAME = "PYGINX"


class ListenError(PyginxError):
    """A listening socket that cannot be created; str() is nginx's wording."""


@dataclass
class Listener:
    addr: ListenAddr
    sockets: list[socket.socket] = field(default_factory=list)  # one, or one per worker with reuseport


class ListenerSet:
    def __init__(self, listeners: dict[Identity, Listener], keys: dict[Key, Identity]) -> None:
        self.listeners = listeners
        self.keys = keys  # every configured key -> the listener serving it

    def for_worker(self, slot: int) -> dict[Key, socket.socket]:
        """The sockets worker `slot` accepts on: the shared ones, and its own clone of reuseport ones."""
        out: dict[Key, socket.socket] = {}
        for key, ident in self.keys.items():
            socks = self.listeners[ident].sockets
            out[key] = socks[slot % len(socks)]
        return out

    def sockets(self) -> list[socket.socket]:
        return [s for listener in self.listeners.values() for s in listener.sockets]

    def fds(self) -> list[int]:
        return [s.fileno() for s in self.sockets()]

    def close(self, unlink_unix: bool) -> None:
        """Close every socket; unlink unix socket files unless a new binary still uses them."""
        close_sockets(self.sockets(), unlink_unix)
        self.listeners = {}
        self.keys = {}


def close_sockets(socks: Iterable[socket.socket], unlink_unix: bool) -> None:
    for sock in socks:
        path = unix_path(sock) if unlink_unix else None
        sock.close()
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass


def unix_path(sock: socket.socket) -> str | None:
    try:
        if sock.family == socket.AF_UNIX:
            name = sock.getsockname()
            return name if isinstance(name, str) and name else None
    except OSError:
        pass
    return None


def config_addrs(config: MainConfig) -> dict[Key, ListenAddr]:
    """Every distinct `listen` of the configuration, in file order; options of repeated keys OR-ed."""
    out: dict[Key, ListenAddr] = {}
    if config.http is None:
        return out
    for server in config.http.servers:
        for addr in server.listen:
            seen = out.get(addr.key)
            if seen is None:
                out[addr.key] = addr
            else:
                # socket options are the union of what the servers on the address ask for
                merged = replace(
                    seen,
                    reuseport=seen.reuseport or addr.reuseport,
                    ssl=seen.ssl or addr.ssl,
                    http2=seen.http2 or addr.http2,
                )
                if merged != seen:
                    out[addr.key] = merged
    return out


def addr_identity(addr: ListenAddr) -> tuple[Identity, int, object]:
    """(identity, family, sockaddr) for a configured address; ListenError if the host does not resolve."""
    if addr.unix is not None:
        return ("unix", addr.unix), socket.AF_UNIX, addr.unix
    host = addr.host or "0.0.0.0"
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            packed = socket.inet_pton(family, host)
        except OSError:
            continue
        inet: object = (host, addr.port) if family == socket.AF_INET else (host, addr.port, 0, 0)
        return (family, packed, addr.port), family, inet
    try:
        infos = socket.getaddrinfo(host, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(f'host not found in "{addr}"') from exc
    found_family, _, _, _, found = infos[0]
    ip = str(found[0]).split("%")[0]
    return (int(found_family), socket.inet_pton(found_family, ip), addr.port), int(found_family), found


def sock_identity(sock: socket.socket) -> Identity | None:
    """The identity of an existing socket, from getsockname(); None when it is not a usable listener."""
    try:
        name = sock.getsockname()
        if sock.family == socket.AF_UNIX:
            return ("unix", name) if isinstance(name, str) and name else None
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            ip = str(name[0]).split("%")[0]
            return (int(sock.family), socket.inet_pton(sock.family, ip), int(name[1]))
    except OSError:
        pass
    return None


def inherited_sockets(value: str) -> tuple[list[socket.socket], list[str]]:
    """Adopt the listening fds named by `PYGINX=fd;fd;...;`. Returns (sockets, problems to log)."""
    socks: list[socket.socket] = []
    problems: list[str] = []
    for token in value.split(";"):
        token = token.strip()
        if not token:
            continue
        if not token.isdigit():
            problems.append(
                f'invalid socket number "{token}" in {ENV_NAME} environment variable, ignoring the rest of the variable'
            )
            break
        try:
            sock = socket.socket(fileno=int(token))
        except OSError as exc:
            problems.append(f"inherited fd {token} is not a socket ({exc.errno}: {exc.strerror}), ignored")
            continue
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = 0
        if sock.type != socket.SOCK_STREAM or not listening:
            problems.append(f"inherited fd {token} is not a listening socket, closed")
            sock.close()
            continue
        sock.set_inheritable(False)  # ours now; the next upgrade marks it inheritable again
        socks.append(sock)
    return socks, problems


def _bind(
    addr: ListenAddr, family: int, sockaddr: object, reuseport: bool, tries: int, delay: float
) -> socket.socket:
    """Create, bind and listen() one socket; retries EADDRINUSE `tries` times as nginx does."""
    for attempt in range(tries):
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise ListenError(f"socket() {addr} failed ({exc.errno}: {exc.strerror})") from exc
        try:
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuseport:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if addr.ipv6only else 0)
            else:
                _unlink_stale(str(sockaddr))
            sock.bind(sockaddr)  # type: ignore[arg-type]
        except OSError as exc:
            sock.close()
            if exc.errno == 98 and attempt + 1 < tries:  # EADDRINUSE: a previous server may be exiting
                time.sleep(delay)
                continue
            raise ListenError(f"bind() to {addr} failed ({exc.errno}: {exc.strerror})") from exc
        try:
            sock.listen(addr.backlog)
        except OSError as exc:
            sock.close()
            raise ListenError(
                f"listen() to {addr}, backlog {addr.backlog} failed ({exc.errno}: {exc.strerror})"
            ) from exc
        sock.setblocking(False)
        return sock
    raise ListenError(f"still could not bind() to {addr}")


def _unlink_stale(path: str) -> None:
    """A unix socket file left by a dead server would make bind() fail; nginx removes it first."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def _has_reuseport(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
    except OSError:
        return False


def open_listeners(
    config: MainConfig,
    pool: Iterable[socket.socket],
    workers: int,
    tries: int = 1,
    delay: float = 0.5,
) -> tuple[ListenerSet, list[socket.socket]]:
    """Build the listener set of `config`, reusing pool sockets by address.

    Returns (set, leftovers): the pool sockets no longer configured. Raises ListenError after closing
    the sockets this call created; pool sockets are never closed here.
    """
    by_ident: dict[Identity, list[socket.socket]] = {}
    for sock in pool:
        ident = sock_identity(sock)
        if ident is not None:
            by_ident.setdefault(ident, []).append(sock)
    listeners: dict[Identity, Listener] = {}
    keys: dict[Key, Identity] = {}
    created: list[socket.socket] = []
    try:
        for key, addr in config_addrs(config).items():
            ident, family, sockaddr = addr_identity(addr)
            keys[key] = ident
            if ident in listeners:
                continue  # two spellings of one address share its sockets
            reuseport = addr.reuseport and family != socket.AF_UNIX
            want = max(1, workers) if reuseport else 1
            have = by_ident.pop(ident, [])
            socks, extra = have[:want], have[want:]
            by_ident[("extra", ident)] = extra
            for sock in socks:
                if reuseport and not _has_reuseport(sock):
                    # turning reuseport on at reload: the kernel accepts clones once the kept socket has it
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.listen(addr.backlog)  # applies a changed backlog to a kept socket
            while len(socks) < want:
                sock = _bind(addr, family, sockaddr, reuseport, tries, delay)
                created.append(sock)
                socks.append(sock)
            listeners[ident] = Listener(addr, socks)
    except (ListenError, OSError) as exc:
        close_sockets(created, unlink_unix=False)
        if isinstance(exc, ListenError):
            raise
        raise ListenError(f"listen socket setup failed ({exc.errno}: {exc.strerror})") from exc
    leftovers = [s for socks in by_ident.values() for s in socks]
    return ListenerSet(listeners, keys), leftovers


def env_value(fds: Iterable[int]) -> str:
    """`PYGINX` for a new binary: `3;4;5;`, as nginx's `NGINX` variable."""
    return "".join(f"{fd};" for fd in fds)
