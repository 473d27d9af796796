"""SSL contexts from the configuration: one per server with a certificate, one per TLS listening address.

`build_tls(config)` loads every certificate and key (so `-t` reports an unreadable certificate, a key
that does not match, an expired certificate as a warning, each with the file and line of the directive)
and returns a `TlsContexts`. The context of a listening address is the one OpenSSL starts every
handshake with: it carries the address's default-server certificate, the SNI callback that switches to
the context of the server named by the client (nginx's server_name rules, pyginx.http.router), and the
session-ticket key (OpenSSL makes one per context when it is created: built in the master before the
fork, it is the same in every worker; a reload builds new contexts, which rotates it).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyginx.config.model import HttpSettings, MainConfig, Server, SourcePos, TlsFile
from pyginx.errors import ConfigError
from pyginx.http.router import ListenKey, ServerTable, build_server_tables
from pyginx.tls import native
from pyginx.tls.options import protocol_range

ALPN_H2 = ["h2", "http/1.1"]
ALPN_H1 = ["http/1.1"]


def _error(message: str, pos: SourcePos | None) -> ConfigError:
    return ConfigError(message, pos.file if pos else None, pos.line if pos else None)


def read_passwords(pfile: TlsFile | None) -> list[str]:
    """ssl_password_file: one password per line, tried in turn (nginx's ngx_ssl_read_password_file)."""
    if pfile is None:
        return []
    try:
        with open(pfile.path, encoding="utf-8", errors="surrogateescape") as f:
            lines = [line.rstrip("\r\n\t ") for line in f]
    except OSError as exc:
        raise _error(f'open() "{pfile.path}" failed ({exc.errno}: {exc.strerror})', pfile.pos) from exc
    passwords = [p for p in lines if p]
    if not passwords:
        raise _error(f'no passwords were read from file "{pfile.path}"', pfile.pos)
    return passwords


def _readable(tfile: TlsFile, what: str) -> None:
    try:
        with open(tfile.path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise _error(
            f'cannot load {what} "{tfile.path}": BIO_new_file() failed ({exc.errno}: {exc.strerror})',
            tfile.pos,
        ) from exc


def certificate_expiry(path: str) -> float | None:
    """notAfter of the first certificate in `path` as a Unix time (None if it cannot be decoded)."""
    try:
        decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
        return float(ssl.cert_time_to_seconds(decoded["notAfter"]))
    except Exception:
        return None


def load_pair(ctx: ssl.SSLContext, cert: TlsFile, key: TlsFile, passwords: list[str]) -> None:
    """One certificate chain and its key into `ctx`, with nginx's messages for what goes wrong."""
    _readable(cert, "certificate")
    _readable(key, "certificate key")
    if certificate_expiry(cert.path) is None:
        raise _error(
            f'cannot load certificate "{cert.path}": PEM_read_bio_X509_AUX() failed (SSL: no certificate found)',
            cert.pos,
        )
    # never None: OpenSSL would prompt for a pass phrase on the terminal; "" fails an encrypted key
    tries: list[str] = list(passwords) if passwords else [""]
    last: OSError | None = None
    for password in tries:
        try:
            ctx.load_cert_chain(cert.path, key.path, password=lambda p=password: p)
            return
        except OSError as exc:  # ssl.SSLError, or EINVAL for a pass phrase that does not fit
            last = exc
            if getattr(exc, "reason", "") == "KEY_VALUES_MISMATCH":
                raise _error(
                    f'SSL_CTX_use_PrivateKey("{key.path}") failed (SSL: key values mismatch)', key.pos
                ) from exc
    if not passwords and last is not None and _encrypted(key.path):
        raise _error(
            f'cannot load certificate key "{key.path}": the key is encrypted and no '
            '"ssl_password_file" is given',
            key.pos,
        ) from last
    reason = getattr(last, "reason", None) or str(last)
    raise _error(
        f'cannot load certificate key "{key.path}": PEM_read_bio_PrivateKey() failed (SSL: {reason})', key.pos
    ) from last


def _encrypted(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b"ENCRYPTED" in head


def _bad_value(what: str, value: str, pos: SourcePos | None, exc: Exception) -> ConfigError:
    return _error(f'{what}("{value}") failed (SSL: {getattr(exc, "reason", None) or exc})', pos)


@dataclass
class ServerContextSpec:
    """What one server's TLS context is made of, with the source position for errors."""

    settings: HttpSettings
    alpn: list[str]
    pos: SourcePos | None


def make_context(spec: ServerContextSpec, warnings: list[str]) -> ssl.SSLContext:
    s = spec.settings
    pos = s.ssl_certificate[0].pos if s.ssl_certificate else spec.pos
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        low, high, gaps = protocol_range(s.ssl_protocols)
    except ValueError as exc:
        raise _error(str(exc), pos) from exc
    ctx.minimum_version, ctx.maximum_version = low, high
    ctx.options |= gaps | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if s.ssl_prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # Python sets it by default; nginx does not
    if not s.ssl_session_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    try:
        ctx.set_ciphers(s.ssl_ciphers)
    except ssl.SSLError as exc:
        raise _bad_value("SSL_CTX_set_cipher_list", s.ssl_ciphers, pos, exc) from exc
    curves = s.ssl_ecdh_curve
    if curves != "auto":
        first = curves.split(":")[0]
        if first != curves:
            warnings.append(
                f'"ssl_ecdh_curve" lists several curves ("{curves}"); Python\'s ssl sets one: only '
                f'"{first}" is offered, in {pos}'
            )
        try:
            ctx.set_ecdh_curve(first)
        except (ValueError, ssl.SSLError) as exc:
            raise _bad_value("SSL_CTX_set1_curves_list", curves, pos, exc) from exc
    if not native.set_session_timeout(ctx, s.ssl_session_timeout) and s.ssl_session_timeout != 300:
        warnings.append(
            f'"ssl_session_timeout" cannot be set on this Python, OpenSSL\'s default is used, in {pos}'
        )
    if s.ssl_session_cache in ("off", "none"):
        native.set_session_cache_off(ctx)
    passwords = read_passwords(s.ssl_password_file)
    for cert, key in zip(s.ssl_certificate, s.ssl_certificate_key, strict=False):
        load_pair(ctx, cert, key, passwords)
        expiry = certificate_expiry(cert.path)
        if expiry is not None and expiry < time.time():
            stamp = time.strftime("%b %d %H:%M:%S %Y GMT", time.gmtime(expiry))
            warnings.append(f'the certificate "{cert.path}" has expired (notAfter {stamp}) in {cert.pos}')
    if len(s.ssl_certificate_key) < len(s.ssl_certificate):
        missing = s.ssl_certificate[len(s.ssl_certificate_key)]
        raise _error(f'no "ssl_certificate_key" is defined for certificate "{missing.path}"', missing.pos)
    if s.ssl_verify_client != "off":
        ca = s.ssl_client_certificate
        if ca is None and s.ssl_verify_client != "optional_no_ca":
            raise _error(f'no ssl_client_certificate for ssl_verify_client "{s.ssl_verify_client}"', pos)
        if ca is not None:
            _readable(ca, "client certificate")
            try:
                ctx.load_verify_locations(cafile=ca.path)
            except ssl.SSLError as exc:
                raise _bad_value("SSL_CTX_load_verify_locations", ca.path, ca.pos, exc) from exc
        # "on" is enforced per request (400 "No required SSL certificate was sent", as nginx): the
        # handshake itself only asks for a certificate
        ctx.verify_mode = ssl.CERT_OPTIONAL
        native.set_verify_depth(ctx, s.ssl_verify_depth)
    ctx.set_alpn_protocols(spec.alpn)
    return ctx


SniCallback = Callable[[ssl.SSLObject, str | None, ssl.SSLContext], None]


def sni_callback(table: ServerTable, contexts: dict[int, ssl.SSLContext]) -> SniCallback:
    """The server_name callback of one listening address: the context of the server the client names,
    else the default server's (the one the handshake started with)."""

    def choose(sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        sslobj.pyginx_server_name = name or ""  # type: ignore[attr-defined]  # for $ssl_server_name
        if not name:
            return
        server = table.find(name.lower().rstrip("."))
        target = contexts.get(id(server))
        if target is not None and target is not ctx:
            sslobj.context = target

    return choose


@dataclass
class TlsContexts:
    by_server: dict[int, ssl.SSLContext] = field(default_factory=dict)  # id(Server) -> its context
    listeners: dict[ListenKey, ssl.SSLContext] = field(default_factory=dict)
    http2_servers: set[int] = field(default_factory=set)  # id(Server) of servers speaking h2
    warnings: list[str] = field(default_factory=list)

    def for_listener(self, key: ListenKey) -> ssl.SSLContext | None:
        return self.listeners.get(key)


def _wants_h2(server: Server) -> bool:
    return server.settings.http2 or any(la.http2 for la in server.listen)


def build_tls(config: MainConfig) -> TlsContexts | None:
    """Every context the configuration needs (None when no address is TLS). Raises ConfigError."""
    http = config.http
    if http is None:
        return None
    ssl_keys = {la.key for s in http.servers for la in s.listen if la.ssl}
    if not ssl_keys:
        return None
    out = TlsContexts()
    specs: dict[int, ServerContextSpec] = {}
    for server in http.servers:
        if not server.settings.ssl_certificate:
            continue
        if not any(la.key in ssl_keys for la in server.listen):
            continue
        spec = ServerContextSpec(server.settings, ALPN_H2 if _wants_h2(server) else ALPN_H1, server.pos)
        specs[id(server)] = spec
        out.by_server[id(server)] = make_context(spec, out.warnings)
        if _wants_h2(server):
            out.http2_servers.add(id(server))
    tables = build_server_tables(http.servers)
    for key in ssl_keys:
        table = tables[key]
        spec_default = specs.get(id(table.default))
        if spec_default is None:
            continue  # the loader refused this already (no certificate on the default server)
        listener = make_context(spec_default, [])
        listener.sni_callback = sni_callback(table, out.by_server)
        out.listeners[key] = listener
    return out


def check_tls(config: MainConfig) -> list[str]:
    """For `-t`: build everything (raising ConfigError) and return the warnings."""
    from pyginx.tls.upstream import check_upstream_tls

    built = build_tls(config)
    check_upstream_tls(config)
    return list(built.warnings) if built is not None else []
