"""Subrequests (nginx's ngx_http_subrequest, as auth_request uses them): a GET for another URI
of the same server, run through the phases like any request, whose response head is kept instead
of sent: `await run(parent, uri)` gives its status and headers.

The subrequest carries the parent's headers (not Content-Length or Transfer-Encoding: it never has
a body) and a copy of its variables; it is internal (internal locations may answer it), skips the
access phase as in nginx, and writes nothing to the client: its connection is a stand-in that
swallows output and reports the end of the response. It is not access-logged (nginx's
log_subrequest off).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from pyginx.http.request import Request

if TYPE_CHECKING:
    from pyginx.http.stream import ClientStream

_NO_BODY_HEADERS = ("content-length", "transfer-encoding")


class _Quiet:
    """The parent's connection for a subrequest: what it knows (addresses, ctx, backpressure) is
    the parent's; what it would send goes nowhere; the end of the response resolves `done`."""

    def __init__(self, conn: ClientStream, done: asyncio.Future[None]) -> None:
        self._conn = conn
        self._done = done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def write(self, data: bytes) -> None:
        pass

    def writelines(self, parts: Any) -> None:
        pass

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        return count

    def body_wanted(self, req: Request) -> None:
        pass

    def body_consumed(self) -> None:
        pass

    def request_done(self, req: Request, abort: bool = False) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def detach(self, req: Request) -> Any:
        raise ConnectionError("a subrequest cannot take over the connection")


class SubRequest(Request):
    """A header-only GET for `uri` inside `parent`."""

    def __init__(self, parent: Request, uri: str, args: str) -> None:
        loop = parent.conn.ctx.loop
        self.done: asyncio.Future[None] = loop.create_future()
        quiet = cast("ClientStream", _Quiet(parent.conn, self.done))
        target = f"{uri}?{args}" if args else uri
        super().__init__(quiet, "GET", target, parent.http_minor)
        self.parent = parent
        self.protocol = parent.protocol
        self.request_line = parent.request_line  # nginx: a subrequest logs its parent's request line
        self.request_uri = parent.request_uri
        self.uri = uri
        self.args = args
        self.host = parent.host
        self.server = parent.server
        self.settings = parent.server.settings
        self.headers = {k: v for k, v in parent.headers.items() if k not in _NO_BODY_HEADERS}
        self.header_list = [(k, v) for k, v in parent.header_list if k.lower() not in _NO_BODY_HEADERS]
        self.vars = dict(parent.vars)
        self.head_only = True  # nginx's sr->header_only: the body is read and dropped
        self.internal = True
        self.keep_alive = True


async def run(parent: Request, uri: str, args: str = "") -> SubRequest:
    """Run a subrequest to completion; its `status` and `out_headers` hold the response head."""
    sub = SubRequest(parent, uri, args)
    parent.conn.ctx.dispatch(sub)
    await sub.done
    return sub
