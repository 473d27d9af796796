"""Connections to upstream servers and the per-worker keep-alive pool (nginx's keepalive module).

`UpstreamConnection` is a thin asyncio Protocol with two ways of reading. With a `sink` (the proxy's
exchange in progress) every event goes straight to it: no buffer, no future, no wake-up, which is what
keeps a proxied request cheap. Without one, reads are buffered up to a high-water mark and then paused
(so a slow client, which stops the proxy from reading, pushes back on the upstream through TCP instead
of filling memory), for the coroutines that read with `read()` (tunnels, health checks). While a
connection sits idle in the pool the same protocol watches it: any byte or EOF from the server then
means the server gave it up (or is out of step), and the connection is dropped at once, as nginx's
keepalive close handler does.

`Pool` keeps at most `keepalive` idle connections per upstream block, newest first (nginx's cache is
a LIFO queue shared by the block's servers); `keepalive_timeout` closes an idle connection,
`keepalive_requests` and `keepalive_time` retire a connection after that many requests / that long.
One timer per pool, not per connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

READ_HIGH_WATER = 64 * 1024  # bytes buffered from an upstream before its reading is paused
# A non-idempotent request (which must never be sent twice) takes a pooled connection only if it was
# in use this recently: far below the idle timeouts servers use (gunicorn 2 s, node 5 s, apache 5 s,
# nginx 75 s), so the server cannot have started closing it. Older ones are left to retryable requests.
KNOWN_ALIVE_IDLE = 1.0


class Sink(Protocol):
    """Who gets a connection's events while a request is in flight on it (the proxy's exchange)."""

    def upstream_data(self, data: bytes) -> None: ...

    def upstream_eof(self) -> None: ...

    def upstream_lost(self, exc: Exception | None) -> None: ...

    def upstream_writable(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP or unix-socket connection to a peer."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, peer_name: str, high_water: int = READ_HIGH_WATER
    ) -> None:
        self.loop = loop
        self.peer_name = peer_name
        self.high_water = high_water
        self.transport: asyncio.Transport | None = None
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.eof = False
        self.error: OSError | None = None
        self.closed = False
        self.read_paused = False
        self.write_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.requests = 0  # requests sent on this connection
        self.created = time.monotonic()
        self.idle_since = 0.0
        self.pool: Pool | None = None  # set while idle in a pool
        self.sink: Sink | None = None  # set while an exchange reads by callbacks (see the module doc)
        self.received_any = (
            False  # a byte arrived for the request in flight (a stale reuse cannot be retried then)
        )

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        sink = self.sink
        if sink is not None:
            self.received_any = True
            sink.upstream_data(data)
            return
        if self.pool is not None:
            # idle: the server has nothing to say unless it is closing or out of step
            self.pool.discard(self)
            self.close()
            return
        self.received_any = True
        self.buffer.append(data)
        self.buffered += len(data)
        if self.buffered >= self.high_water and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool | None:
        self.eof = True
        sink = self.sink
        if sink is not None:
            sink.upstream_eof()
            return True  # the exchange closes the connection when it is done with it
        if self.pool is not None:
            self.pool.discard(self)
            self.close()
            return None
        self._wake_reader()
        return True  # keep the write side: the request may still be going out (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        if isinstance(exc, OSError) and self.error is None:
            self.error = exc
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.upstream_lost(exc)
        if self.pool is not None:
            self.pool.discard(self)
        self._wake_reader()
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        w = self._drain_waiter
        if w is not None and not w.done():
            w.set_result(None)
        sink = self.sink
        if sink is not None:
            sink.upstream_writable()

    def _wake_reader(self) -> None:
        w = self._read_waiter
        if w is not None and not w.done():
            w.set_result(None)

    # ------------------------------------------------------------------ reading

    def read_nowait(self) -> bytes | None:
        """Buffered bytes, b"" at EOF, None when nothing is there yet. Raises the connection's error."""
        if self.buffer:
            data = self.buffer[0] if len(self.buffer) == 1 else b"".join(self.buffer)
            self.buffer = []
            self.buffered = 0
            if self.read_paused and self.transport is not None and not self.closed:
                self.read_paused = False
                self.transport.resume_reading()
            return data
        if self.error is not None:
            raise self.error
        if self.eof:
            return b""
        return None

    async def read(self, timeout: float) -> bytes:
        """The next bytes (b"" at EOF); TimeoutError after `timeout` seconds without any."""
        data = self.read_nowait()
        if data is not None:
            return data
        fut = self.loop.create_future()
        self._read_waiter = fut
        handle = self.loop.call_later(timeout, _expire, fut) if timeout > 0 else None
        try:
            await fut
        finally:
            if self._read_waiter is fut:  # a cancelled earlier waiter must not clear a newer one
                self._read_waiter = None
            if handle is not None:
                handle.cancel()
        data = self.read_nowait()
        if data is None:  # woken without data: the timer fired
            raise TimeoutError
        return data

    async def wait_readable(self) -> None:
        """Until bytes, EOF or an error are there (no timeout: the caller bounds the wait)."""
        if self.buffer or self.eof or self.error is not None:
            return
        fut = self.loop.create_future()
        self._read_waiter = fut
        try:
            await fut
        finally:
            if self._read_waiter is fut:
                self._read_waiter = None

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes) -> None:
        if self.transport is None or self.closed:
            raise self.error or ConnectionResetError(104, "Connection reset by peer")
        self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        if self.transport is None or self.closed:
            raise self.error or ConnectionResetError(104, "Connection reset by peer")
        self.transport.writelines(parts)

    async def drain(self, timeout: float) -> None:
        """Wait while the transport's buffer is over its high-water mark; TimeoutError after
        `timeout` seconds without progress."""
        while self.write_paused and not self.closed:
            fut = self.loop.create_future()
            self._drain_waiter = fut
            handle = self.loop.call_later(timeout, _expire, fut) if timeout > 0 else None
            try:
                await fut
            finally:
                if self._drain_waiter is fut:
                    self._drain_waiter = None
                if handle is not None:
                    handle.cancel()
            if self.write_paused and not self.closed:
                raise TimeoutError
        if self.closed:
            raise self.error or BrokenPipeError(32, "Broken pipe")

    def write_eof(self) -> None:
        """Half-close: the peer reads EOF once what is buffered has gone out; reading goes on."""
        t = self.transport
        if t is not None and not self.closed and not t.is_closing() and t.can_write_eof():
            try:
                t.write_eof()
            except (OSError, RuntimeError):
                self.abort()

    @property
    def write_buffer_size(self) -> int:
        t = self.transport
        return t.get_write_buffer_size() if t is not None and not self.closed else 0

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def reset_for_request(self) -> None:
        self.received_any = False

    def pause_reading(self) -> None:
        """Stop reading (the client cannot take more yet); TCP pushes back on the server."""
        if not self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


Clock = Callable[[], float]


class Pool:
    """Idle keep-alive connections of one upstream block, in this worker."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_idle: int,
        idle_timeout: float,
        max_requests: int,
        max_time: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.loop = loop
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.max_requests = max_requests
        self.max_time = max_time
        self.clock = clock
        self.idle: list[UpstreamConnection] = []  # oldest first; taken from the end (LIFO)
        self._timer: asyncio.TimerHandle | None = None
        self.reused = 0  # counters, for tests and debugging
        self.opened = 0

    def acquire(self, peer_name: str, known_alive_only: bool = False) -> UpstreamConnection | None:
        """An idle connection to `peer_name`, newest first, or None."""
        now = self.clock()
        idle = self.idle
        for i in range(len(idle) - 1, -1, -1):
            conn = idle[i]
            if conn.peer_name != peer_name:
                continue
            if conn.closed or conn.eof:
                del idle[i]
                continue
            if known_alive_only and now - conn.idle_since > KNOWN_ALIVE_IDLE:
                continue
            del idle[i]
            conn.pool = None
            conn.reset_for_request()
            self.reused += 1
            return conn
        return None

    def reusable(self, conn: UpstreamConnection) -> bool:
        """May `conn` go back to the pool after its response was read whole?"""
        if self.max_idle <= 0 or conn.closed or conn.eof or conn.buffer:
            return False
        if self.max_requests and conn.requests >= self.max_requests:
            return False
        return not (self.max_time and self.clock() - conn.created >= self.max_time)

    def release(self, conn: UpstreamConnection) -> bool:
        """Keep `conn` for later if it may be reused; else close it. True when kept."""
        if not self.reusable(conn):
            conn.close()
            return False
        conn.idle_since = self.clock()
        conn.pool = self
        if conn.read_paused and conn.transport is not None:
            # watch the idle connection: EOF or stray bytes must reach data_received/eof_received
            conn.read_paused = False
            conn.transport.resume_reading()
        self.idle.append(conn)
        while len(self.idle) > self.max_idle:
            oldest = self.idle.pop(0)
            oldest.pool = None
            oldest.close()
        if self._timer is None:
            self._timer = self.loop.call_later(self.idle_timeout, self._expire_idle)
        return True

    def discard(self, conn: UpstreamConnection) -> None:
        """The server closed an idle connection (or sent something): forget it."""
        conn.pool = None
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def _expire_idle(self) -> None:
        self._timer = None
        now = self.clock()
        keep: list[UpstreamConnection] = []
        for conn in self.idle:
            if now - conn.idle_since >= self.idle_timeout:
                conn.pool = None
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep
        if keep:
            delay = max(0.05, keep[0].idle_since + self.idle_timeout - now)
            self._timer = self.loop.call_later(delay, self._expire_idle)

    def close_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in self.idle:
            conn.pool = None
            conn.close()
        self.idle = []


async def open_connection(
    loop: asyncio.AbstractEventLoop,
    peer_name: str,
    address: tuple[str, int] | None,
    unix: str | None,
    timeout: float,
    high_water: int = READ_HIGH_WATER,
    tls: ssl.SSLContext | None = None,
    server_hostname: str = "",
) -> UpstreamConnection:
    """Connect within `timeout` (TimeoutError; 0: no limit here) or raise the OSError connect() gave.
    With `tls`, the TLS handshake is part of connecting (server_hostname "" sends no SNI)."""

    def factory() -> UpstreamConnection:
        return UpstreamConnection(loop, peer_name, high_water)

    coro: Any
    if unix is not None:
        coro = loop.create_unix_connection(
            factory, unix, ssl=tls, server_hostname=server_hostname if tls else None
        )
    elif tls is not None:
        assert address is not None
        coro = loop.create_connection(
            factory, address[0], address[1], ssl=tls, server_hostname=server_hostname
        )
    else:
        assert address is not None
        coro = loop.create_connection(factory, address[0], address[1])
    if timeout > 0:
        async with asyncio.timeout(timeout):
            _transport, protocol = await coro
    else:
        _transport, protocol = await coro  # the caller times it (the proxy's swept deadlines)
    assert isinstance(protocol, UpstreamConnection)
    return protocol
