"""A TLS listening socket in a worker: the acceptor (pyginx.tls.acceptor) wired to the protocols that
serve what comes out of it: HTTP/1.1 over TLS, HTTP/2 when ALPN chose h2, or the 497 answer to plain HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING

from pyginx.http.router import ListenKey
from pyginx.http.tls_conn import PlainOnTlsConnection, TlsHttpConnection
from pyginx.tls.acceptor import Pending, TlsAcceptor
from pyginx.tls.contexts import TlsContexts
from pyginx.tls.variables import TlsInfo

if TYPE_CHECKING:
    from pyginx.http.server import ServerContext


def start_tls_listener(
    ctx: ServerContext, key: ListenKey, sock: socket.socket, context: ssl.SSLContext, tls: TlsContexts
) -> TlsAcceptor:
    table = ctx.server_tables.get(key)
    default = table.default if table is not None else ctx.default_server
    settings = default.settings
    timeout = settings.ssl_handshake_timeout or settings.client_header_timeout

    def choose(transport: asyncio.Transport) -> asyncio.Protocol:
        info = TlsInfo(transport.get_extra_info("ssl_object"))
        if info.alpn == "h2":
            from pyginx.http2.connection import H2Connection

            return H2Connection(ctx, key, info)
        return TlsHttpConnection(ctx, key, info)

    def plain() -> asyncio.Protocol:
        return PlainOnTlsConnection(ctx, key)

    def track(pending: Pending, opened: bool) -> None:
        # an accepted socket counts as a connection until it is one: worker_connections, and a
        # graceful shutdown that waits for handshakes in progress instead of dropping them
        if opened:
            ctx.connection_opened(pending)
        else:
            ctx.connection_closed(pending)

    acceptor = TlsAcceptor(ctx.loop, sock, context, choose, plain, timeout, track)
    acceptor.start()
    return acceptor
