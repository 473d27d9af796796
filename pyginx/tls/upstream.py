"""TLS to upstreams (`proxy_pass https://...`): client contexts from the proxy_ssl_* settings.

One context per TLS identity (verification, trusted CAs, protocols, ciphers, client certificate) and
upstream peer, made on first use in the worker and kept: the keep-alive pool keys connections by the
same identity (a connection made for one identity is never handed to a location with another), and
`proxy_ssl_session_reuse` resumes the peer's last session, which OpenSSL only accepts on the context
that made it.
"""

from __future__ import annotations

import ssl
from typing import Any

from pyginx.config.model import HttpSettings
from pyginx.errors import ConfigError
from pyginx.tls import native
from pyginx.tls.contexts import read_passwords
from pyginx.tls.options import protocol_range

Identity = tuple[Any, ...]


class UpstreamTlsContext(ssl.SSLContext):
    """A client context that offers the last session it saw (proxy_ssl_session_reuse): uvloop makes
    its SSLObject through wrap_bio, which has no other way in for a session."""

    reuse_session = True
    last_session: ssl.SSLSession | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and self.reuse_session and self.last_session is not None:
            session = self.last_session
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def remember(self, sslobj: Any) -> None:
        if not self.reuse_session or sslobj is None:
            return
        try:
            session = sslobj.session
        except (AttributeError, ValueError):
            return
        if session is not None:
            self.last_session = session


def identity(s: HttpSettings) -> Identity:
    return (
        s.proxy_ssl_verify,
        s.proxy_ssl_trusted_certificate,
        s.proxy_ssl_verify_depth,
        s.proxy_ssl_protocols,
        s.proxy_ssl_ciphers,
        s.proxy_ssl_certificate,
        s.proxy_ssl_certificate_key,
        s.proxy_ssl_password_file,
        s.proxy_ssl_session_reuse,
    )


def make_client_context(s: HttpSettings) -> UpstreamTlsContext:
    ctx = UpstreamTlsContext(ssl.PROTOCOL_TLS_CLIENT)
    low, high, gaps = protocol_range(s.proxy_ssl_protocols)
    ctx.minimum_version, ctx.maximum_version = low, high
    ctx.options |= gaps
    ctx.set_ciphers(s.proxy_ssl_ciphers)
    ctx.reuse_session = s.proxy_ssl_session_reuse
    if s.proxy_ssl_verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        if s.proxy_ssl_trusted_certificate is not None:
            ctx.load_verify_locations(cafile=s.proxy_ssl_trusted_certificate.path)
        native.set_verify_depth(ctx, s.proxy_ssl_verify_depth)
    else:
        ctx.check_hostname = False  # nginx's default: proxy_ssl_verify off
        ctx.verify_mode = ssl.CERT_NONE
    if s.proxy_ssl_certificate is not None:
        key = s.proxy_ssl_certificate_key or s.proxy_ssl_certificate
        tries = list(read_passwords(s.proxy_ssl_password_file)) or [""]  # "": never a terminal prompt
        for n, password in enumerate(tries):
            try:
                ctx.load_cert_chain(s.proxy_ssl_certificate.path, key.path, password=lambda p=password: p)
                break
            except OSError:
                if n == len(tries) - 1:
                    raise
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class UpstreamTls:
    """The worker's upstream TLS contexts, by (identity, peer)."""

    def __init__(self) -> None:
        self.contexts: dict[tuple[Identity, str], UpstreamTlsContext] = {}

    def context(self, s: HttpSettings, peer: str) -> UpstreamTlsContext:
        key = (identity(s), peer)
        ctx = self.contexts.get(key)
        if ctx is None:
            if len(self.contexts) > 1024:
                self.contexts.clear()  # bounded: peers come from the configuration and the resolver
            try:
                ctx = self.contexts[key] = make_client_context(s)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ConfigError(f"cannot make the upstream TLS context ({exc})") from exc
        return ctx


def check_upstream_tls(config: Any) -> None:
    """For -t, start and reload: every `proxy_pass https://` location's client context can be made
    (trusted certificates and client certificates readable and valid). Raises ConfigError."""
    http = config.http
    if http is None:
        return

    def walk(locations: Any) -> None:
        for loc in locations:
            s = loc.settings
            if s.proxy_pass is not None and s.proxy_pass.scheme == "https":
                try:
                    make_client_context(s)
                except ConfigError:
                    raise
                except (OSError, ssl.SSLError, ValueError) as exc:
                    named = s.proxy_ssl_certificate or s.proxy_ssl_trusted_certificate
                    pos = named.pos if named is not None and named.pos is not None else loc.pos
                    raise ConfigError(
                        f"cannot make the upstream TLS context ({exc})",
                        pos.file if pos else None,
                        pos.line if pos else None,
                    ) from exc
            walk(loc.locations)

    for server in http.servers:
        walk(server.locations)


def ssl_name(template_value: str) -> str:
    """The name from proxy_ssl_name, without a port ($proxy_host may carry one)."""
    name = template_value
    if name.startswith("["):
        return name[1 : name.find("]")] if "]" in name else name
    host, sep, port = name.rpartition(":")
    return host if sep and port.isdigit() else name


def handshake_error(exc: BaseException) -> str:
    """nginx's words for an upstream handshake that failed (the reason goes to the error log)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"upstream SSL certificate verify error: ({exc.verify_code}:{exc.verify_message}) "
            "while SSL handshaking to upstream"
        )
    if isinstance(exc, ssl.SSLError):
        return f"SSL_do_handshake() failed (SSL: {exc.reason or exc}) while SSL handshaking to upstream"
    return f"SSL handshake to upstream failed ({exc}) while SSL handshaking to upstream"


TLS_UPSTREAM = UpstreamTls()
