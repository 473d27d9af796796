"""An upgraded connection (a 101 to a request with Upgrade, e.g. WebSocket): a two-way byte tunnel
between the client and the upstream, until either side closes or nothing moves for proxy_read_timeout
(nginx's idle limit for upgraded connections).

A client's half-close goes on to the upstream at once (write_eof), so that a peer which answers a
half-close still can; the upstream closing ends the tunnel, as in nginx.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from pyginx.config.model import HttpSettings
from pyginx.handlers import proxy_headers as ph
from pyginx.http.headers import date_line
from pyginx.http.status import server_header
from pyginx.upstream.pool import UpstreamConnection
from pyginx.upstream.response import ResponseHead

if TYPE_CHECKING:
    from pyginx.http.connection import HttpConnection
    from pyginx.http.request import Request

TUNNELING = "while proxying upgraded connection"


def switching_head(head: ResponseHead, hide: frozenset[str], settings: HttpSettings) -> bytes:
    """The 101 head for the client: the upstream's headers through the hide rules, Upgrade kept."""
    headers = ph.response_headers(head.headers, hide=hide, upgrade=True)
    lines = "".join(f"{n}: {v}\r\n" for n, v in headers)
    reason = head.reason or "Switching Protocols"
    return (
        f"HTTP/1.1 101 {reason}\r\n".encode("latin-1", "replace")
        + server_header(settings.server_tokens)
        + date_line()
        + lines.encode("latin-1", "replace")
        + b"\r\n"
    )


class Tunnel:
    """One upgraded connection. Made at once when the 101 arrives (the client's transport is taken
    over in the same callback, so no client event can fall between the head and the tunnel); `run()`
    then moves bytes until the tunnel ends. The caller finishes the request afterwards."""

    def __init__(self, req: Request, conn: UpstreamConnection, head: bytes, extra: bytes) -> None:
        self.req = req
        self.conn = conn
        self.settings = req.settings
        self.transport, leftover = req.take_over()
        req.status = 101
        req.head_sent = True
        self.transport.write(head)
        req.bytes_sent += len(head)
        if extra:
            self.transport.write(extra)
            req.bytes_sent += len(extra)
        self.last = time.monotonic()  # the last byte either way, for the idle limit
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.resume_task: asyncio.Task[None] | None = None
        client = cast("HttpConnection", req.conn)  # an Upgrade exists only on HTTP/1.1 connections
        client.tunnel = self._from_client
        client.tunnel_lost = self._client_lost
        client.tunnel_eof = conn.write_eof
        if req.client_closed:
            self._finish()  # gone before the take-over: nothing to tunnel
        elif leftover:
            self._from_client(leftover)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def _client_lost(self, _exc: Exception | None) -> None:
        self._finish()

    def _from_client(self, data: bytes) -> None:
        self.last = time.monotonic()
        conn = self.conn
        try:
            conn.write(data)
        except OSError:
            self._finish()
            return
        if conn.write_paused and self.resume_task is None:
            # the upstream cannot take more yet: stop reading the client until it drains
            self.transport.pause_reading()
            self.resume_task = asyncio.ensure_future(self._resume_client())

    async def _resume_client(self) -> None:
        try:
            await self.conn.drain(self.settings.proxy_send_timeout)
            self.transport.resume_reading()
        except (OSError, TimeoutError):
            self._finish()
        finally:
            self.resume_task = None

    async def _from_upstream(self) -> None:
        req, conn, transport = self.req, self.conn, self.transport
        timeout = self.settings.proxy_read_timeout
        while True:
            wait = timeout - (time.monotonic() - self.last)
            try:
                data = await conn.read(max(wait, 0.001))
            except TimeoutError:
                if time.monotonic() - self.last < timeout:
                    continue  # the client side was active meanwhile
                req.log_error("info", f"upstream timed out (110: Connection timed out) {TUNNELING}")
                return
            except OSError:
                return
            if not data:
                return
            self.last = time.monotonic()
            transport.write(data)
            req.bytes_sent += len(data)
            req.body_bytes_sent += len(data)
            try:
                await req.drain()
            except ConnectionError:
                return

    async def run(self) -> None:
        pump = asyncio.ensure_future(self._from_upstream())
        try:
            await asyncio.wait({pump, self.done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, self.resume_task):
                if task is not None and not task.done():
                    task.cancel()
            client = cast("HttpConnection", self.req.conn)
            client.tunnel = None
            client.tunnel_lost = None
            client.tunnel_eof = None
            self.conn.close()
