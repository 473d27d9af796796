"""Accepting on a TLS listening socket: tell a TLS client from plain HTTP, then hand the connection over.

nginx's ngx_http_ssl_handshake peeks at the first byte a client sends: 0x16 (a TLS handshake record)
or the SSLv2 high bit starts TLS; anything else is a plain HTTP request sent to an HTTPS port, which is
read as HTTP and answered with the 400 "The plain HTTP request was sent to HTTPS port" page (497).
uvloop's transports read as soon as they exist, so the peek happens before there is one: this acceptor
accepts the socket itself, waits for its first byte with `recv(MSG_PEEK)`, and only then gives it to
uvloop, with `connect_accepted_socket(..., ssl=context)` for TLS (uvloop and OpenSSL do the handshake)
or without for plain HTTP.

A connection that sends nothing within the handshake timeout is closed, as nginx closes it. Failed
handshakes are logged at nginx's levels (info for the client's faults), never with a traceback.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from pyginx.log import error_log
from pyginx.tls.options import describe_handshake_error, handshake_log_level

ProtocolFactory = Callable[[], asyncio.BaseProtocol]
Chooser = Callable[[asyncio.Transport], asyncio.Protocol]
# told when a socket is accepted and when it has become a connection (or was dropped): the server
# counts those in between as connections, so a graceful shutdown waits for their handshakes
Tracker = Callable[["Pending", bool], None]


class Pending:
    """An accepted socket not yet a connection: waiting for its first byte, or in its handshake."""

    deadline = 0.0  # the acceptor times it (handshake timeout), not the server's sweep

    def __init__(self, acceptor: TlsAcceptor, fd: int) -> None:
        self.acceptor = acceptor
        self.fd = fd
        self.handshaking = False

    def check_deadline(self, now: float) -> None:
        pass

    def graceful(self, close_idle: bool) -> None:
        if close_idle and not self.handshaking:
            self.acceptor.drop_silent(self.fd)  # said nothing yet: an idle connection, closed

    def close(self, abort: bool = False) -> None:
        self.acceptor.drop_silent(self.fd)


_ACCEPTS_PER_WAKEUP = 8


class _HandshakeDone(asyncio.Protocol):
    """The protocol uvloop's SSL transport starts with: once the handshake is complete it asks
    `choose` for the protocol that serves the connection (HTTP/1.1 or HTTP/2, by ALPN) and steps aside."""

    def __init__(self, choose: Chooser) -> None:
        self.choose = choose

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        real = self.choose(transport)  # type: ignore[arg-type]
        transport.set_protocol(real)
        real.connection_made(transport)


class TlsAcceptor:
    """One TLS listening socket in one worker (the counterpart of an asyncio Server for plain ones)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        context: ssl.SSLContext,
        choose: Chooser,
        plain_factory: ProtocolFactory,
        handshake_timeout: float,
        track: Tracker | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.context = context
        self.choose = choose
        self.plain_factory = plain_factory
        self.handshake_timeout = handshake_timeout
        self.track = track
        self.pending: dict[int, tuple[socket.socket, asyncio.TimerHandle, Pending]] = {}
        self.handshakes: set[asyncio.Task[None]] = set()
        self.closed = False
        try:
            name = sock.getsockname()
            self.local = f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)
        except OSError:
            self.local = "?"

    def start(self) -> None:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._on_accept)

    def close(self) -> None:
        """Stop accepting. Sockets already accepted go on (the server's graceful shutdown decides
        about them through their Pending entries)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.remove_reader(self.sock.fileno())
        except (OSError, ValueError):
            pass
        self.sock.close()

    def drop_silent(self, fd: int) -> None:
        conn = self._drop(fd)
        if conn is not None:
            conn.close()

    # ------------------------------------------------------------------ accept and peek

    def _on_accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: nginx logs them at crit and goes on accepting later
                error_log().log("crit", f"accept() failed ({exc.errno}: {exc.strerror})")
                return
            conn.setblocking(False)
            fd = conn.fileno()
            timer = self.loop.call_later(self.handshake_timeout, self._timed_out, fd, addr)
            token = Pending(self, fd)
            self.pending[fd] = (conn, timer, token)
            if self.track is not None:
                self.track(token, True)
            self.loop.add_reader(fd, self._first_byte, fd)

    def _drop(self, fd: int, settle: bool = True) -> socket.socket | None:
        entry = self.pending.pop(fd, None)
        if entry is None:
            return None
        conn, timer, token = entry
        timer.cancel()
        try:
            self.loop.remove_reader(fd)
        except (OSError, ValueError):
            pass
        if settle and self.track is not None:
            self.track(token, False)
        return conn

    def _timed_out(self, fd: int, addr: object) -> None:
        conn = self._drop(fd)
        if conn is not None:
            self._log("info", "client timed out (110: Connection timed out) while SSL handshaking", addr)
            conn.close()

    def _first_byte(self, fd: int) -> None:
        entry = self.pending.get(fd)
        if entry is None:
            return
        conn, _timer, token = entry
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            first = b""
        if not first:
            self.drop_silent(fd)  # closed before saying anything: nothing to answer, nothing to log
            return
        self._drop(fd, settle=False)  # still pending for the server until it is a connection
        token.handshaking = True
        work = self._handshake(conn) if first[0] == 0x16 or first[0] & 0x80 else self._plain(conn)
        task = self.loop.create_task(work)
        self.handshakes.add(task)
        task.add_done_callback(self.handshakes.discard)
        if self.track is not None:
            track = self.track
            task.add_done_callback(lambda _t: track(token, False))

    async def _plain(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.plain_factory, conn)
        except OSError:
            conn.close()

    async def _handshake(self, conn: socket.socket) -> None:
        try:
            peer = conn.getpeername()
        except OSError:
            peer = None
        try:
            await self.loop.connect_accepted_socket(
                lambda: _HandshakeDone(self.choose),
                conn,
                ssl=self.context,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except (TimeoutError, OSError, EOFError) as exc:
            self._log(handshake_log_level(exc), describe_handshake_error(exc), peer)
            try:
                conn.close()
            except OSError:
                pass
        except Exception as exc:  # never a traceback to the error log for a client's handshake
            self._log("crit", f"SSL handshake failed ({exc!r}) while SSL handshaking", peer)
            try:
                conn.close()
            except OSError:
                pass

    def _log(self, level: str, message: str, addr: object) -> None:
        log = error_log()
        if not log.enabled(level):
            return
        client = addr[0] if isinstance(addr, tuple) else "unix:"
        log.log(level, f"{message}, client: {client}, server: {self.local}")
