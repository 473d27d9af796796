"""HTTP/1.1 over TLS, and plain HTTP that arrived on a TLS port (issue 13).

Both are the ordinary HttpConnection with two differences each, kept here so that the plain-HTTP hot
path pays nothing:

* TlsHttpConnection: `$scheme` is https and the TLS facts are at hand (`tls`); a file body cannot go
  through os.sendfile (the kernel would send it unencrypted), so it is read and written through the
  TLS transport; `ssl_verify_client on` without a client certificate is nginx's 496 (a 400 page).
* PlainOnTlsConnection: the request is read, its server chosen, and answered with 497 (nginx's 400
  "The plain HTTP request was sent to HTTPS port", or the server's `error_page 497`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pyginx.errors import HttpError
from pyginx.http.connection import CLOSED, HttpConnection
from pyginx.http.request import Request
from pyginx.tls.variables import TlsInfo

if TYPE_CHECKING:
    from pyginx.http.server import ServerContext

_FILE_CHUNK = 128 * 1024  # read from the page cache in one go, then paced by the transport's drain


class TlsHttpConnection(HttpConnection):
    __slots__ = ("tls",)
    scheme = "https"

    def __init__(self, ctx: ServerContext, listen_key: tuple[str, int, str | None], tls: TlsInfo) -> None:
        super().__init__(ctx, listen_key)
        self.tls = tls

    async def sendfile(self, fd: int, offset: int, count: int) -> int:
        """No zero-copy under TLS: read the file and write it through the transport, paced by drain."""
        sent = 0
        while count > 0 and self.state != CLOSED:
            chunk = os.pread(fd, min(count, _FILE_CHUNK), offset)
            if not chunk:
                break  # the file shrank: the caller aborts
            self.write(chunk)
            offset += len(chunk)
            count -= len(chunk)
            sent += len(chunk)
            try:
                await self.drain()
            except ConnectionError:
                break
        return sent

    def _choose_server(self, req: Request) -> None:
        super()._choose_server(req)
        tls = self.tls
        if req.server.settings.ssl_verify_client == "on" and (tls is None or not tls.peer()):
            raise HttpError(496, "client sent no required SSL certificate")


class PlainOnTlsConnection(HttpConnection):
    __slots__ = ()

    def _choose_server(self, req: Request) -> None:
        super()._choose_server(req)
        raise HttpError(497, "client sent plain HTTP request to HTTPS port")
