"""nginx variables: `$host`, `$request_uri`, `$http_user_agent`, ... compiled once into getters.

`compile_template("$host:$server_port")` returns a function of the request. Unknown names fall back to
`req.vars` (which handlers fill; the proxy's `$upstream_addr` and the like wait in `req.upstream_vars` until read),
then to regex captures `$1`..`$9`.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from pyginx import __version__
from pyginx.tls.variables import VARIABLES as TLS_VARIABLES

if TYPE_CHECKING:
    from pyginx.http.request import Request

Getter = Callable[["Request"], str]

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_HOSTNAME = socket.gethostname()


class _Clock:
    """Per-second cached renderings of the current time (nginx caches its time strings too)."""

    second = -1
    local = ""
    iso = ""

    @classmethod
    def refresh(cls) -> None:
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            lt = time.localtime(now)
            cls.local = time.strftime("%d/%b/%Y:%H:%M:%S %z", lt)
            cls.iso = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + _iso_offset(lt)


def _iso_offset(lt: time.struct_time) -> str:
    off = time.strftime("%z", lt)
    return off[:3] + ":" + off[3:] if len(off) == 5 else off


def time_local(_req: Request | None = None) -> str:
    if int(time.time()) != _Clock.second:
        _Clock.refresh()
    return _Clock.local


def time_iso8601(_req: Request | None = None) -> str:
    _Clock.refresh()
    return _Clock.iso


def _arg(name: str) -> Getter:
    key = name

    def get(req: Request) -> str:
        for part in req.args.split("&"):
            k, _, v = part.partition("=")
            if k.lower() == key:
                return v
        return ""

    return get


def _header(name: str) -> Getter:
    key = name.replace("_", "-")

    def get(req: Request) -> str:
        return req.headers.get(key, "")

    return get


def _cookie(name: str) -> Getter:
    def get(req: Request) -> str:
        for part in req.headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return ""

    return get


def _sent_header(name: str) -> Getter:
    key = name.replace("_", "-")

    def get(req: Request) -> str:
        for k, v in req.out_headers:
            if k.lower() == key:
                return v
        return ""

    return get


def _fallback(name: str) -> Getter:
    pending = name.startswith("upstream_")  # may wait in req.upstream_vars

    def get(req: Request) -> str:
        if pending and req.upstream_vars is not None:
            req.vars.update(req.upstream_vars())
            req.upstream_vars = None
        value = req.vars.get(name)
        if value is not None:
            return value
        if name.isdigit() and req.captures is not None:
            index = int(name)
            groups = req.captures
            if index < len(groups):
                return groups[index] or ""
        return ""

    return get


def _request_line(req: Request) -> str:
    return req.request_line


def _body_bytes_sent(req: Request) -> str:
    return str(req.body_bytes_sent)


def _request_time(req: Request) -> str:
    end = req.end_time or time.monotonic()
    return f"{max(0.0, end - req.start_time):.3f}"


def _document_root(req: Request) -> str:
    return req.settings.root


def _request_filename(req: Request) -> str:
    s = req.settings
    if s.alias is not None and req.location is not None:
        return s.alias + req.uri[len(req.location.match) :]
    return s.root + req.uri


def _content_length(req: Request) -> str:
    return req.headers.get("content-length", "")


BUILTIN: dict[str, Getter] = {
    "uri": lambda r: r.uri,
    "document_uri": lambda r: r.uri,
    "request_uri": lambda r: r.request_uri,
    "args": lambda r: r.args,
    "query_string": lambda r: r.args,
    "is_args": lambda r: "?" if r.args else "",
    "host": lambda r: r.host,
    "hostname": lambda r: _HOSTNAME,
    "remote_addr": lambda r: r.conn.client_addr,
    "remote_port": lambda r: str(r.conn.client_port) if r.conn.client_port else "",
    "server_addr": lambda r: r.conn.server_addr,
    "server_port": lambda r: str(r.conn.server_port) if r.conn.server_port else "",
    "server_name": lambda r: r.server.primary_name,
    "server_protocol": lambda r: r.protocol,
    "scheme": lambda r: r.conn.scheme,
    "https": lambda r: "on" if r.conn.tls is not None else "",
    "request_method": lambda r: r.method,
    "request": _request_line,
    "status": lambda r: f"{r.status:03d}",
    "body_bytes_sent": _body_bytes_sent,
    "bytes_sent": lambda r: str(r.bytes_sent),
    "request_length": lambda r: str(r.request_length),
    "request_time": _request_time,
    "time_local": time_local,
    "time_iso8601": time_iso8601,
    "msec": lambda r: f"{time.time():.3f}",
    "pid": lambda r: str(os.getpid()),
    "connection": lambda r: str(r.conn.conn_id),
    "connection_requests": lambda r: str(r.conn.requests),
    "content_length": _content_length,
    "content_type": lambda r: r.headers.get("content-type", ""),
    "document_root": _document_root,
    "realpath_root": lambda r: os.path.realpath(r.settings.root),
    "request_filename": _request_filename,
    "remote_user": lambda r: "",
    "nginx_version": lambda r: "1.31.0",
    "pyginx_version": lambda r: __version__,
    "request_body": lambda r: r.body_text(),
    **TLS_VARIABLES,
}


def getter(name: str) -> Getter:
    """The getter for variable `name` (without `$`)."""
    name = name.lower() if not name.isdigit() else name
    found = BUILTIN.get(name)
    if found is not None:
        return found
    if name.startswith("http_"):
        return _header(name[5:])
    if name.startswith("arg_"):
        return _arg(name[4:])
    if name.startswith("cookie_"):
        return _cookie(name[7:])
    if name.startswith("sent_http_"):
        return _sent_header(name[10:])
    return _fallback(name)


def parse_template(text: str) -> list[str | Getter]:
    """Split a template into literal strings and getters, in order."""
    parts: list[str | Getter] = []
    pos = 0
    for m in _VAR.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        parts.append(getter(m.group(1) or m.group(2)))
        pos = m.end()
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def compile_template(text: str) -> Getter:
    """A function rendering `text` for a request; constant templates cost one closure call."""
    parts = parse_template(text)
    if not parts:
        return lambda r: ""
    if len(parts) == 1:
        only = parts[0]
        if isinstance(only, str):
            return lambda r: only
        return only

    def render(req: Request) -> str:
        return "".join(p if isinstance(p, str) else p(req) for p in parts)

    return render


def has_variables(text: str) -> bool:
    return _VAR.search(text) is not None


def unescape_arg(value: str) -> str:
    return unquote_plus(value)
