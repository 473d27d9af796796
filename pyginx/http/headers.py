"""Response heads: status line, Server, Date, entity headers, framing, Connection, and the headers
filter (add_header, expires) applied as nginx's ngx_http_headers_filter_module does.

The Date value is rendered once a second; everything constant is pre-encoded.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from pyginx.config.model import Expires, HeaderValue, HttpSettings
from pyginx.http.status import HEADER_FILTER_STATUSES, STATUS_LINES, server_header, status_line
from pyginx.http.variables import Getter, compile_template

if TYPE_CHECKING:
    from pyginx.http.request import Request

_SERVER = {True: server_header(True), False: server_header(False)}
_date_second = -1
_date_line = b""


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


# "Server: ...\r\nDate: ...\r\n" for server_tokens on and off, rebuilt once a second.
_server_date: dict[bool, bytes] = {}


def _refresh_date(now: int) -> None:
    global _date_second, _date_line
    _date_second = now
    _date_line = f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
    for tokens, server in _SERVER.items():
        _server_date[tokens] = server + _date_line


def date_line() -> bytes:
    now = int(time.time())
    if now != _date_second:
        _refresh_date(now)
    return _date_line


_compiled: dict[HeaderValue, Getter] = {}


def _render(hv: HeaderValue, req: Request) -> str:
    get = _compiled.get(hv)
    if get is None:
        get = _compiled[hv] = compile_template(hv.value)
    return get(req)


def expires_headers(exp: Expires) -> list[tuple[str, str]]:
    if exp.kind == "off":
        return []
    if exp.kind == "epoch":
        return [("Expires", "Thu, 01 Jan 1970 00:00:01 GMT"), ("Cache-Control", "no-cache")]
    if exp.kind == "max":
        return [("Expires", "Thu, 31 Dec 2037 23:55:55 GMT"), ("Cache-Control", "max-age=315360000")]
    seconds = int(exp.seconds)
    expires_at = time.time() + seconds
    if seconds < 0:
        return [("Expires", http_date(expires_at)), ("Cache-Control", "no-cache")]
    if seconds == 0:
        return [("Expires", http_date(time.time())), ("Cache-Control", "max-age=0")]
    return [("Expires", http_date(expires_at)), ("Cache-Control", f"max-age={seconds}")]


def filter_headers(req: Request, status: int, settings: HttpSettings) -> list[tuple[str, str]]:
    """add_header and expires for this response (empty list when neither applies)."""
    if not settings.add_header and settings.expires.kind == "off":
        return []
    in_filter = status in HEADER_FILTER_STATUSES
    out: list[tuple[str, str]] = []
    if in_filter and settings.expires.kind != "off":
        out.extend(expires_headers(settings.expires))
    for hv in settings.add_header:
        if in_filter or hv.always:
            value = _render(hv, req)
            if value:
                out.append((hv.name, value))
    return out


_NO_CONTENT_DROPS = frozenset({"content-type", "last-modified", "content-length"})


def _connection_lines(req: Request, keep: bool) -> bytes:
    if not keep:
        return b"Connection: close\r\n"
    s = req.settings
    if s.keepalive_header_timeout is not None:
        return b"Connection: keep-alive\r\nKeep-Alive: timeout=%d\r\n" % int(s.keepalive_header_timeout)
    return b"Connection: keep-alive\r\n"


_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CLOSE = b"Connection: close\r\n"


def encode_lines(headers: list[tuple[str, str]]) -> bytes:
    """`headers` as header lines, as build_head writes them."""
    return "".join([f"{n}: {v}\r\n" for n, v in headers]).encode("latin-1", "replace")


def build_head(
    req: Request,
    status: int,
    headers: list[tuple[str, str]],
    length: int | None,
    keep: bool,
    chunked: bool,
    encoded: bytes | None = None,
) -> bytes:
    """`encoded`: encode_lines(headers) when the caller has it already (the proxy's memo)."""
    settings = req.settings
    framed = length is not None and status not in (204, 304) and status >= 200
    if framed:
        req.sent_length = length
    if status == 204:
        # ngx_http_header_filter: a 204 has no Content-Type, Last-Modified or Content-Length
        headers = [(n, v) for n, v in headers if n.lower() not in _NO_CONTENT_DROPS]
        encoded = None
    if settings.add_header or settings.expires.kind != "off":
        extra = filter_headers(req, status, settings)
        if extra:
            names = {n.lower() for n, _ in extra if n.lower() in ("expires", "cache-control")}
            if names:
                headers = [(n, v) for n, v in headers if n.lower() not in names]
            headers = headers + extra
            encoded = None
    req.out_headers = headers
    now = int(time.time())
    if now != _date_second:
        _refresh_date(now)
    # the constant parts pre-encoded, as in build_head_prebuilt
    own = req.status_line  # a proxied response's own status line (the same status only)
    line = own[1] if own is not None and own[0] == status else STATUS_LINES.get(status) or status_line(status)
    parts = [line, _server_date[settings.server_tokens]]
    if encoded is not None:
        parts.append(encoded)
    elif headers:
        parts.append(encode_lines(headers))
    if length is not None and framed:
        parts.append(b"Content-Length: %d\r\n" % length)
    elif chunked and status not in (204, 304):
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if not keep:
        parts.append(_CLOSE)
    elif settings.keepalive_header_timeout is None:
        parts.append(_KEEP_ALIVE)
    else:
        parts.append(_connection_lines(req, keep))
    parts.append(b"\r\n")
    return b"".join(parts)


# "Content-Length: N\r\n" per length: a site serves its files' few sizes over and over, and the
# lookup costs less than formatting the line; emptied when full (any length is right either way)
_CL_LINES: dict[int, bytes] = {}
_CL_LINES_MAX = 4096


def _content_length_line(length: int) -> bytes:
    line = _CL_LINES.get(length)
    if line is None:
        if len(_CL_LINES) >= _CL_LINES_MAX:
            _CL_LINES.clear()
        line = _CL_LINES[length] = b"Content-Length: %d\r\n" % length
    return line


def build_head_prebuilt(req: Request, status: int, header_block: bytes, length: int) -> bytes:
    """Head for a response whose entity headers are already encoded (cached static files).
    The hot path of small static files: every constant part comes pre-encoded."""
    settings = req.settings
    req.status = status
    req.sent_block = header_block
    req.sent_length = length
    keep = req.keep_alive and not req.conn.closing_after_response
    req.keep_alive = keep
    now = int(time.time())
    if now != _date_second:
        _refresh_date(now)
    if settings.add_header or settings.expires.kind != "off":
        extra = filter_headers(req, status, settings)
        extra_bytes = (
            "".join(f"{n}: {v}\r\n" for n, v in extra).encode("latin-1", "replace") if extra else b""
        )
    else:
        extra_bytes = b""
    if not keep:
        connection = _CLOSE
    elif settings.keepalive_header_timeout is None:
        connection = _KEEP_ALIVE
    else:
        connection = _connection_lines(req, keep)
    return b"".join(
        (
            STATUS_LINES.get(status) or status_line(status),
            _server_date[settings.server_tokens],
            header_block,
            _content_length_line(length),
            extra_bytes,
            connection,
            b"\r\n",
        )
    )
