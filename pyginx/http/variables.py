"""nginx variables: `$host`, `$request_uri`, `$http_user_agent`, ... compiled once into getters.

`compile_template("$host:$server_port")` returns a function of the request. Other names fall back to
`req.vars` (which `set` and handlers fill; the proxy's `$upstream_addr` and the like wait in
`req.upstream_vars` until read), regex captures `$1`..`$9`, then the variables the configuration
defines (map, geo, split_clients: `ServerContext.variables`).
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

_VAR = re.compile(r"\$(?:\{(\w+)\}|([1-9]|\w+))")  # `$10` is capture 1 then "0", as in nginx
_HOSTNAME = socket.gethostname()


class _Clock:
    """Per-second cached renderings of the current time (nginx caches its time strings too)."""

    def __init__(self) -> None:
        self.second = -1
        self.local = ""
        self.iso = ""

    def refresh(self) -> None:
        now = int(time.time())
        if now != self.second:
            self.second = now
            lt = time.localtime(now)
            self.local = time.strftime("%d/%b/%Y:%H:%M:%S %z", lt)
            self.iso = time.strftime("%Y-%m-%dT%H:%M:%S", lt) + _iso_offset(lt)


_CLOCK = _Clock()


def _iso_offset(lt: time.struct_time) -> str:
    off = time.strftime("%z", lt)
    return off[:3] + ":" + off[3:] if len(off) == 5 else off


def time_local(_req: Request | None = None) -> str:
    if int(time.time()) != _CLOCK.second:
        _CLOCK.refresh()
    return _CLOCK.local


def time_iso8601(_req: Request | None = None) -> str:
    if int(time.time()) != _CLOCK.second:
        _CLOCK.refresh()
    return _CLOCK.iso


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
    """$sent_http_NAME: a header of the response (nginx's ngx_http_variable_sent_* for the ones the
    header filter writes itself: Content-Length, Transfer-Encoding)."""
    key = name.replace("_", "-")
    if key == "content-length":

        def length(req: Request) -> str:
            return str(req.sent_length) if req.sent_length is not None else _find_sent(req, key)

        return length
    if key == "transfer-encoding":
        return lambda req: "chunked" if req._chunked_out else ""

    def get(req: Request) -> str:
        return _find_sent(req, key)

    return get


def _find_sent(req: Request, key: str) -> str:
    for k, v in req.out_headers:
        if k.lower() == key:
            return v
    if req.sent_block:  # a cached file's head: "Name: value\r\n" lines
        for line in req.sent_block.decode("latin-1").split("\r\n"):
            k, _, v = line.partition(": ")
            if k.lower() == key:
                return v
    return ""


_NONE: dict[str, Getter] = {}  # the defined variables of a request without a configuration (tests)


def _fallback(name: str) -> Getter:
    pending = name.startswith("upstream_")  # may wait in req.upstream_vars
    capture = name.isdigit()

    def get(req: Request) -> str:
        if pending and req.upstream_vars is not None:
            req.vars.update(req.upstream_vars())
            req.upstream_vars = None
        value = req.vars.get(name)
        if value is not None:
            return value
        if capture:
            groups = req.captures
            index = int(name)
            if groups is not None and index < len(groups):
                return groups[index] or ""
            return ""
        defined: Getter | None = getattr(getattr(req.conn, "ctx", None), "variables", _NONE).get(name)
        if defined is not None:
            return defined(req)
        return ""

    return get


def _request_line(req: Request) -> str:
    return req.request_line


def _body_bytes_sent(req: Request) -> str:
    return str(req.body_bytes_sent)


def _request_time(req: Request) -> str:
    end = req.end_time or time.monotonic()
    return f"{max(0.0, end - req.start_time):.3f}"


def _request_length(req: Request) -> str:
    size: int = req.body.size
    return str(req.request_length + size)


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
    "binary_remote_addr": lambda r: _binary_addr(r.conn.client_addr),
    "request_id": lambda r: _request_id(r),
    "request_completion": lambda r: "OK" if r.finished and r.status else "",
    "request_method": lambda r: r.method,
    "request": _request_line,
    "status": lambda r: f"{r.status:03d}",
    "body_bytes_sent": _body_bytes_sent,
    "bytes_sent": lambda r: str(r.bytes_sent),
    "request_length": lambda r: _request_length(r),  # head and body, as nginx
    "request_time": _request_time,
    "time_local": time_local,
    "time_iso8601": time_iso8601,
    "msec": lambda r: f"{time.time():.3f}",
    "pid": lambda r: str(os.getpid()),
    "connection": lambda r: str(r.conn.conn_id),
    "connection_requests": lambda r: str(r.conn.requests + 1),  # conn.requests counts finished ones
    "content_length": _content_length,
    "content_type": lambda r: r.headers.get("content-type", ""),
    "document_root": _document_root,
    "realpath_root": lambda r: os.path.realpath(r.settings.root),
    "request_filename": _request_filename,
    "nginx_version": lambda r: "1.31.0",
    "pyginx_version": lambda r: __version__,
    "request_body": lambda r: r.body_text(),
    **TLS_VARIABLES,
}


def _binary_addr(addr: str) -> str:
    """$binary_remote_addr: the address's bytes (4 or 16), carried in a str as latin-1."""
    try:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        return socket.inet_pton(family, addr).decode("latin-1")
    except (OSError, ValueError):
        return addr


def _request_id(req: Request) -> str:
    """$request_id: 16 random bytes in hex, fixed for the request once read."""
    rid = req.vars.get("request_id")
    if rid is None:
        rid = req.vars["request_id"] = os.urandom(16).hex()
    return rid


# `$http_user_agent`, `$arg_id`, ...: the prefix families of the core
PREFIXES: dict[str, Callable[[str], Getter]] = {
    "http_": _header,
    "arg_": _arg,
    "cookie_": _cookie,
    "sent_http_": _sent_header,
}

# names filled in `req.vars` while a request runs (by the proxy, the parser), known to the registry
RUNTIME_NAMES = frozenset(
    {
        "upstream_addr",
        "upstream_cache_status",  # set by the proxy cache (handlers/proxy_cache.py)
        "upstream_status",
        "upstream_response_time",
        "upstream_connect_time",
        "upstream_header_time",
        "upstream_bytes_received",
        "upstream_bytes_sent",
        "upstream_response_length",
        "proxy_host",
        "proxy_port",
        "proxy_add_x_forwarded_for",
        "proxy_internal_body_length",
        "proxy_internal_chunked",
    }
)

# Variables a configuration defines (map, geo, split_clients) are served per configuration: the
# modules' init_worker hooks put their getters in the worker's ServerContext.variables, and a use
# site that names none of the core's or modules' variables looks there at run time (after the
# request's own `set` values and cached results), so a single-process reload serves each request
# with the configuration it started under.


def cached(name: str, compute: Getter, volatile: bool = False) -> Getter:
    """A configuration-defined variable, evaluated when first read and kept for the rest of the
    request (nginx caches it in r->variables; `volatile` ones are evaluated at every read). The ""
    written before evaluating stops a variable whose value reads itself from recursing."""
    if volatile:
        return compute

    def get(req: Request) -> str:
        req.vars[name] = ""
        value = req.vars[name] = compute(req)
        return value

    return get


def _module_getter(name: str) -> Getter | None:
    from pyginx import modules

    for m in modules.ALL:
        found = m.variables.get(name)
        if found is not None:
            return found
        for prefix, factory in m.prefixed.items():
            if name.startswith(prefix):
                return factory(name[len(prefix) :])
    return None


def known_name(name: str) -> bool:
    """Whether the core or a module declares `name` (the rest are the configuration's own: set,
    map, geo, split_clients, regex captures)."""
    if name in BUILTIN or name in RUNTIME_NAMES or name.startswith(tuple(PREFIXES)):
        return True
    return _module_getter(name) is not None


def getter(name: str) -> Getter:
    """The getter for variable `name` (without `$`): core, then modules, then `req.vars` (set, the
    proxy's $upstream_*), regex captures and the configuration's own (map and the like)."""
    name = name.lower() if not name.isdigit() else name
    found = BUILTIN.get(name)
    if found is not None:
        return found
    for prefix, factory in PREFIXES.items():
        if name.startswith(prefix):
            return factory(name[len(prefix) :])
    found = _module_getter(name)
    if found is not None:
        return found
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
    return _joined([_constant(p) if isinstance(p, str) else p for p in parts])


def _constant(text: str) -> Getter:
    return lambda r: text


def _joined(getters: list[Getter]) -> Getter:
    """The concatenation of the getters' values. Templates of two to four parts (the usual cache and
    limit keys: `$scheme$proxy_host$request_uri`) are one expression: no generator per request."""
    if len(getters) == 2:
        a, b = getters
        return lambda r: a(r) + b(r)
    if len(getters) == 3:
        a, b, c = getters
        return lambda r: a(r) + b(r) + c(r)
    if len(getters) == 4:
        a, b, c, d = getters
        return lambda r: a(r) + b(r) + c(r) + d(r)
    return lambda r: "".join([g(r) for g in getters])


def has_variables(text: str) -> bool:
    return _VAR.search(text) is not None


def unescape_arg(value: str) -> str:
    return unquote_plus(value)
