"""What a Request needs of the thing under it, as one narrow interface.

A Request (pyginx/http/request.py) answers through its `conn`: it writes the bytes of an HTTP/1.1
response (head, then body, chunk-framed when the core chose chunking), waits for the peer with
`drain`, sends files with `sendfile`, reports the end with `request_done`, and asks for the request
body with `body_wanted`/`body_consumed`; handlers read a few facts (addresses, ids, scheme, TLS).
HttpConnection (HTTP/1.1, plain or TLS) is one implementation; pyginx.http2.stream.H2Stream, one
HTTP/2 stream, is the other, turning those bytes into HEADERS and DATA frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyginx.http.request import Request
    from pyginx.http.server import ServerContext
    from pyginx.tls.variables import TlsInfo


class ClientStream(Protocol):
    ctx: ServerContext
    conn_id: int
    client_addr: str
    client_port: int
    server_addr: str
    server_port: int

    @property
    def requests(self) -> int: ...  # requests answered before this one ($connection_requests)

    @property
    def scheme(self) -> str: ...

    @property
    def tls(self) -> TlsInfo | None: ...

    @property
    def closing_after_response(self) -> bool: ...  # graceful shutdown: answer with Connection: close

    @property
    def write_paused(self) -> bool: ...  # the peer does not take more now (the proxy paces by it)

    def write(self, data: bytes) -> None: ...

    def writelines(self, parts: Iterable[bytes]) -> None: ...

    async def drain(self) -> None: ...

    async def sendfile(self, fd: int, offset: int, count: int) -> int: ...

    def request_done(self, req: Request, abort: bool = False) -> None: ...

    def body_wanted(self, req: Request) -> None: ...

    def body_too_large(self, req: Request, received: int, more: int) -> None: ...

    def body_consumed(self) -> None: ...

    def detach(self, req: Request) -> tuple[asyncio.Transport, Any]: ...
