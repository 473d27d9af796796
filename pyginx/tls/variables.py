"""The TLS side of a client connection and nginx's $ssl_* variables over it.

`TlsInfo` wraps the connection's SSLObject and answers lazily: most requests read none of these.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from pyginx.tls.options import rfc2253


class TlsInfo:
    __slots__ = ("sslobj", "_peer")

    def __init__(self, sslobj: ssl.SSLObject) -> None:
        self.sslobj = sslobj
        self._peer: dict[str, Any] | None = None

    @property
    def protocol(self) -> str:
        return self.sslobj.version() or ""

    @property
    def cipher(self) -> str:
        found = self.sslobj.cipher()
        return found[0] if found else ""

    @property
    def server_name(self) -> str:
        return str(getattr(self.sslobj, "pyginx_server_name", ""))

    @property
    def session_reused(self) -> bool:
        return bool(self.sslobj.session_reused)

    @property
    def alpn(self) -> str:
        return self.sslobj.selected_alpn_protocol() or ""

    def peer(self) -> dict[str, Any]:
        if self._peer is None:
            try:
                self._peer = dict(self.sslobj.getpeercert() or {})
            except (ValueError, ssl.SSLError):
                self._peer = {}
        return self._peer

    @property
    def client_verify(self) -> str:
        """SUCCESS or NONE: a certificate that fails verification fails the handshake itself."""
        return "SUCCESS" if self.peer() else "NONE"

    @property
    def client_s_dn(self) -> str:
        return rfc2253(self.peer().get("subject"))

    @property
    def client_i_dn(self) -> str:
        return rfc2253(self.peer().get("issuer"))


def _on(read: Callable[[TlsInfo], str]) -> Callable[[Any], str]:
    def get(req: Any) -> str:
        tls = req.conn.tls
        return read(tls) if tls is not None else ""

    return get


VARIABLES: dict[str, Callable[[Any], str]] = {
    "ssl_protocol": _on(lambda t: t.protocol),
    "ssl_cipher": _on(lambda t: t.cipher),
    "ssl_server_name": _on(lambda t: t.server_name),
    "ssl_session_reused": _on(lambda t: "r" if t.session_reused else "."),
    "ssl_client_verify": _on(lambda t: t.client_verify),
    "ssl_client_s_dn": _on(lambda t: t.client_s_dn),
    "ssl_client_i_dn": _on(lambda t: t.client_i_dn),
    "ssl_alpn_protocol": _on(lambda t: t.alpn),
}
