"""Response rate limiting (`limit_rate`): a transport that lets a response's bytes out at a rate.

nginx's write filter (ngx_http_write_filter) sends at most

    limit = rate * (seconds since the request started + 1) - (bytes sent - limit_rate_after)

at a time and, after each send, waits (bytes sent past limit_rate_after) / rate before the next
one; a response's first `limit_rate_after` bytes (its head counts) go out unthrottled. Here the
same two rules run over a queue: a rate-limited request's connection writes into a PacedTransport
that stands in for the real transport (HttpConnection.transport) and feeds the real one as the
rules allow. Everything written to the connection meanwhile (a whole response, a streamed body,
the chunked terminator) goes through the same queue, so bytes keep their order; a close or
write_eof waits until the queue is out. Back-pressure is the connection's own:
the queue pauses the protocol above HIGH and resumes it below LOW, so a streaming writer (a file,
a proxied body) awaits drain() as it would for a slow client, and memory stays bounded.

A paced request is finished (logged, its cleanups run: a limit_conn slot is held as long as in
nginx, `$request_time` counts the whole send) only when its last byte has gone to the real
transport: Request._finish hands it to hold(). Meanwhile the connection counts as a writer waiting
for a slow client, so `send_timeout` closes it when the client stops reading. Once the queue is
empty the real transport is put back: the connection costs nothing more. A connection that never
serves a rate-limited response never sees this class.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from pyginx.http.connection import HttpConnection
    from pyginx.http.request import Request

HIGH = 64 * 1024  # queued bytes above which the writer is paused (the transports' own limit)
LOW = 16 * 1024
_POLL = 0.02  # s: the real transport's buffer is full (a slow client): look again this much later


class PacedTransport(asyncio.Transport):
    def __init__(self, conn: HttpConnection, real: asyncio.Transport) -> None:
        super().__init__()
        self.conn = conn
        self.real = real
        self.pending = bytearray()
        self.queued = 0  # bytes ever queued
        self.fed = 0  # bytes ever handed to the real transport
        self.rate = 0
        self.after = 0
        self.start = 0.0
        self.sent = 0  # bytes of the paced response handed on so far (nginx's c->sent)
        self.until: int | None = None  # `queued` when the paced request ended: later bytes go freely
        self.held: Request | None = None  # finished, waiting for its bytes to go out
        self.timer: asyncio.TimerHandle | None = None
        self.paused_writer = False
        self.closing = False
        self.eof = False

    # ------------------------------------------------------------------ pacing

    def begin(self, rate: int, after: int, start: float) -> None:
        """A response limited to `rate` bytes/s after its first `after` bytes (from now on)."""
        self.rate, self.after, self.start = rate, after, start
        self.sent = 0
        self.until = None

    def hold(self, req: Request) -> None:
        """The paced request is complete: it is done once what it wrote is out (see _release)."""
        self.until = self.queued
        self.held = req
        req.pacer = None
        if self.fed >= self.until:
            self._release()
            return
        if not self.paused_writer:  # a writer waiting for the client: send_timeout applies
            self.paused_writer = True
            self.conn.pause_writing()

    def _release(self) -> None:
        """The held request's bytes are out (or the connection is gone): it is done now."""
        req, self.held = self.held, None
        if req is None:
            return
        if self.fed >= self.queued:
            self._done()  # the delay after the last send is not kept: nothing follows yet
        unsent = self.queued - self.fed if self.real.is_closing() else 0
        if unsent:  # the client went away: log what it was sent, as nginx does
            req.bytes_sent = max(req.bytes_sent - unsent, 0)
            req.body_bytes_sent = max(req.body_bytes_sent - unsent, 0)
        req.end_time = time.monotonic()
        req.conn.request_done(req)

    def _pump(self) -> None:
        self.timer = None
        real = self.real
        if real.is_closing():
            self._release()
            self.pending.clear()
            self._detach()
            return
        pending = self.pending
        while pending:
            room = HIGH - real.get_write_buffer_size()
            if room <= 0:
                self._later(_POLL)
                break
            n = min(len(pending), room)
            paced = self.rate > 0 and (self.until is None or self.fed < self.until)
            if paced:
                if self.until is not None:
                    n = min(n, self.until - self.fed)
                # whole seconds, as nginx's ngx_time() - r->start_sec
                limit = self.rate * (int(time.monotonic() - self.start) + 1) - (self.sent - self.after)
                if limit <= 0:
                    self._later(-limit / self.rate + 0.001)
                    break
                n = min(n, limit)
            chunk = bytes(pending[:n])
            del pending[:n]
            self.fed += n
            real.write(chunk)
            if self.held is not None and self.fed >= self.queued:
                self._release()  # the real transport is back: the connection goes on from here
                return
            if paced:
                before = max(self.sent - self.after, 0)
                self.sent += n
                delay = (max(self.sent - self.after, 0) - before) / self.rate
                if delay >= 0.001:
                    self._later(delay)
                    break
        self._flow()
        if not pending and (self.closing or self.eof or self.until is not None):
            self._done()  # the delay after the last send is dropped: nothing paced follows

    def _done(self) -> None:
        """The queue is out: a close or write_eof asked for meanwhile happens now; the real
        transport is put back."""
        if self.closing:
            self.real.close()
        elif self.eof:
            self.eof = False
            self.real.write_eof()
        self._detach()

    def _later(self, delay: float) -> None:
        self.timer = asyncio.get_running_loop().call_later(delay, self._pump)

    def _flow(self) -> None:
        if self.held is not None:
            return  # stays paused until the held request is released
        size = len(self.pending)
        if size > HIGH and not self.paused_writer:
            self.paused_writer = True
            self.conn.pause_writing()
        elif size <= LOW and self.paused_writer:
            self.paused_writer = False
            self.conn.resume_writing()

    def _detach(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.paused_writer:
            self.paused_writer = False
            if not self.real.is_closing():
                self.conn.resume_writing()
        if self.conn.transport is self:
            self.conn.transport = self.real

    # ------------------------------------------------------------------ asyncio.Transport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closing or not data:
            return
        self.pending += data
        self.queued += len(data)
        if self.timer is None:
            self._pump()
        else:
            self._flow()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.pending += data
            self.queued += len(data)
        if self.timer is None:
            self._pump()
        else:
            self._flow()

    def write_eof(self) -> None:
        if self.pending:
            self.eof = True
        else:
            self.real.write_eof()

    def can_write_eof(self) -> bool:
        return self.real.can_write_eof()

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if not self.pending:
            self.real.close()
            self._detach()

    def abort(self) -> None:
        self.closing = True
        self.real.abort()
        self._release()
        self.pending.clear()
        self._detach()

    def is_closing(self) -> bool:
        return self.closing or self.real.is_closing()

    def get_write_buffer_size(self) -> int:
        return len(self.pending) + self.real.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.real.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.real.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.real.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.real.pause_reading()

    def resume_reading(self) -> None:
        self.real.resume_reading()

    def is_reading(self) -> bool:
        return self.real.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.real.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.real.get_protocol()


def pace(req: Request, rate: int, after: int) -> None:
    """Limit the rest of `req`'s response (its head included) to `rate` bytes/s after `after` bytes."""
    conn = cast("HttpConnection", req.conn)
    # HTTP/1.x connections only: an HTTP/2 stream shares its connection's transport with the
    # other streams, and its pacing would be the flow-control window (not done: sent unpaced)
    t = getattr(conn, "transport", None)
    if t is None or t.is_closing():
        return
    if isinstance(t, PacedTransport):
        paced = t
    else:
        conn.flush_out()  # what earlier responses on the connection hold goes first, unpaced
        paced = PacedTransport(conn, t)
        conn.transport = paced
    paced.begin(rate, after, req.start_time)
    req.pacer = paced
