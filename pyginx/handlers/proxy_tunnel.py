"""An upgraded connection (a 101 to a request with Upgrade, e.g. WebSocket): a two-way byte tunnel
between the client and the upstream, until either side closes or nothing moves for proxy_read_timeout
(nginx's idle limit for upgraded connections).

A client's half-close goes on to the upstream at once (write_eof), so that a peer which answers a
half-close still can; the upstream closing ends the tunnel, as in nginx.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.handlers import proxy_headers as ph
from pyginx.http.headers import date_line
from pyginx.http.status import server_header
from pyginx.upstream.pool import UpstreamConnection
from pyginx.upstream.response import ResponseHead

if TYPE_CHECKING:
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


async def run_tunnel(req: Request, conn: UpstreamConnection, head: bytes, extra: bytes) -> None:
    """Send `head` (and `extra`, bytes the upstream sent after its head) to the client, then move
    bytes both ways until the tunnel ends. The caller finishes the request afterwards."""
    settings = req.settings
    transport, leftover = req.take_over()
    req.status = 101
    req.head_sent = True
    client = req.conn
    transport.write(head)
    req.bytes_sent += len(head)
    if extra:
        transport.write(extra)
        req.bytes_sent += len(extra)
    timeout = settings.proxy_read_timeout
    last = [time.monotonic()]
    done = asyncio.get_running_loop().create_future()
    resume_task: list[asyncio.Task[None] | None] = [None]

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    async def resume_client() -> None:
        # the upstream took what the client sent: read from the client again
        try:
            await conn.drain(settings.proxy_send_timeout)
            transport.resume_reading()
        except (OSError, TimeoutError):
            finish()
        finally:
            resume_task[0] = None

    def from_client(data: bytes) -> None:
        last[0] = time.monotonic()
        try:
            conn.write(data)
        except OSError:
            finish()
            return
        if conn.write_paused and resume_task[0] is None:
            transport.pause_reading()
            resume_task[0] = asyncio.ensure_future(resume_client())

    async def from_upstream() -> None:
        while True:
            wait = timeout - (time.monotonic() - last[0])
            try:
                data = await conn.read(max(wait, 0.001))
            except TimeoutError:
                if time.monotonic() - last[0] < timeout:
                    continue  # the client side was active meanwhile
                req.log_error("info", f"upstream timed out (110: Connection timed out) {TUNNELING}")
                return
            except OSError:
                return
            if not data:
                return
            last[0] = time.monotonic()
            transport.write(data)
            req.bytes_sent += len(data)
            req.body_bytes_sent += len(data)
            try:
                await req.drain()
            except ConnectionError:
                return

    client.tunnel = from_client
    client.tunnel_lost = lambda _exc: finish()
    client.tunnel_eof = conn.write_eof
    if leftover:
        from_client(leftover)
    pump = asyncio.ensure_future(from_upstream())
    try:
        await asyncio.wait({pump, done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, resume_task[0]):
            if task is not None and not task.done():
                task.cancel()
        client.tunnel = None
        client.tunnel_lost = None
        client.tunnel_eof = None
        conn.close()
