"""Pure decisions about TLS options: protocol ranges, names for logs and variables."""

from __future__ import annotations

import ssl
from collections.abc import Sequence

_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
_ORDER = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_NO_FLAGS: dict[str, int] = {
    "TLSv1": ssl.OP_NO_TLSv1,
    "TLSv1.1": ssl.OP_NO_TLSv1_1,
    "TLSv1.2": ssl.OP_NO_TLSv1_2,
    "TLSv1.3": ssl.OP_NO_TLSv1_3,
}


def protocol_range(names: Sequence[str]) -> tuple[ssl.TLSVersion, ssl.TLSVersion, int]:
    """(minimum, maximum, OP_NO_* flags for the gaps) for an `ssl_protocols` list. SSLv2/SSLv3 are
    accepted as nginx accepts them and simply unavailable (OpenSSL 3 has neither)."""
    wanted = [n for n in _ORDER if n in names]
    if not wanted:
        raise ValueError("no TLS protocol left: SSLv2 and SSLv3 are not supported by OpenSSL")
    low, high = _ORDER.index(wanted[0]), _ORDER.index(wanted[-1])
    gaps = 0
    for name in _ORDER[low : high + 1]:
        if name not in wanted:
            gaps |= _NO_FLAGS[name]
    return _VERSIONS[wanted[0]], _VERSIONS[wanted[-1]], gaps


def rfc2253(subject: Sequence[Sequence[tuple[str, str]]] | None) -> str:
    """$ssl_client_s_dn: the subject as RFC 2253 writes it (last RDN first), as nginx >= 1.11.6."""
    if not subject:
        return ""
    short = {
        "commonName": "CN",
        "countryName": "C",
        "localityName": "L",
        "stateOrProvinceName": "ST",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "streetAddress": "STREET",
        "domainComponent": "DC",
        "userId": "UID",
        "emailAddress": "emailAddress",
    }
    parts = []
    for rdn in reversed(subject):
        parts.append("+".join(f"{short.get(k, k)}={_escape_dn(v)}" for k, v in rdn))
    return ",".join(parts)


def _escape_dn(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


# OpenSSL reasons that mean the client did something wrong (nginx logs these at info: ngx_ssl_connection_error)
_CLIENT_REASONS = (
    "WRONG_VERSION_NUMBER",
    "UNSUPPORTED_PROTOCOL",
    "NO_SHARED_CIPHER",
    "NO_SHARED_GROUPS",
    "HTTP_REQUEST",
    "HTTPS_PROXY_REQUEST",
    "UNKNOWN_PROTOCOL",
    "VERSION_TOO_LOW",
    "VERSION_TOO_HIGH",
    "NO_PROTOCOLS_AVAILABLE",
    "NO_APPLICATION_PROTOCOL",
    "UNEXPECTED_EOF",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    "CERTIFICATE_VERIFY_FAILED",
    "BAD_KEY_SHARE",
    "DECRYPTION_FAILED",
    "BAD_RECORD_MAC",
    "RECORD_LENGTH_MISMATCH",
    "PACKET_LENGTH_TOO_LONG",
    "WRONG_SSL_VERSION",
    "BAD_CHANGE_CIPHER_SPEC",
    "INAPPROPRIATE_FALLBACK",
    "UNEXPECTED_MESSAGE",
    "UNEXPECTED_RECORD",
    "RECORD_LAYER_FAILURE",
    "BAD_PACKET_LENGTH",
    "LENGTH_MISMATCH",
    "LENGTH_TOO_SHORT",
    "BLOCK_CIPHER_PAD_IS_WRONG",
    "BAD_RECORD_TYPE",
    "DIGEST_CHECK_FAILED",
    "MISSING_FATAL",
    "CALLBACK_FAILED",
    "PARSE_TLSEXT",
    "BAD_HANDSHAKE_LENGTH",
    "BAD_EXTENSION",
    "BAD_KEY_UPDATE",
    "BAD_LENGTH",
    "EXTRA_DATA_IN_MESSAGE",
    "INVALID_COMPRESSION_ALGORITHM",
    "NO_CERTIFICATES_RETURNED",
    "SSL3_SESSION_ID_TOO_LONG",
    "TLSV1_ALERT_NO_RENEGOTIATION",
    "WRONG_CIPHER_RETURNED",
    "NO_SUITABLE_KEY_SHARE",
    "MISSING_SIGALGS_EXTENSION",
    "NO_SUITABLE_SIGNATURE_ALGORITHM",
    "NO_SHARED_SIGNATURE_ALGORITHMS",
    "SIGNATURE_ALGORITHMS_ERROR",
    "HTTPS_PROXY_REQUEST",
)


def handshake_log_level(exc: BaseException) -> str:
    """The error-log level of a failed handshake: info when the client is at fault (a TLS alert it
    sent, a protocol it got wrong, a reset or a timeout), crit for anything on our side."""
    if isinstance(exc, ssl.SSLError):
        reason = str(getattr(exc, "reason", "") or "")
        if reason.startswith(("SSLV3_ALERT", "TLSV1_ALERT", "TLSV13_ALERT")) or reason in _CLIENT_REASONS:
            return "info"
        if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
            return "info"
        return "crit"
    return "info"  # resets, timeouts, aborted connections


def describe_handshake_error(exc: BaseException) -> str:
    """The error-log text of a failed handshake, in nginx's shape."""
    if isinstance(exc, TimeoutError) or "taking longer" in str(exc):
        return "client timed out (110: Connection timed out) while SSL handshaking"
    if isinstance(exc, ssl.SSLError):
        return f"SSL_do_handshake() failed (SSL: {exc.reason or exc}) while SSL handshaking"
    if isinstance(exc, ConnectionResetError):
        return "peer closed connection in SSL handshake (104: Connection reset by peer) while SSL handshaking"
    if isinstance(exc, OSError) and exc.errno:
        return f"SSL_do_handshake() failed ({exc.errno}: {exc.strerror}) while SSL handshaking"
    return f"peer closed connection in SSL handshake while SSL handshaking ({exc})"
