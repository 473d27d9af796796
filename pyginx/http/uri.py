"""Request-target handling as nginx's ngx_http_parse_complex_uri: pure functions.

The path is percent-decoded *before* dot segments are resolved (so `%2e%2e` is `..`), slashes are
merged when `merge_slashes` is on, and a path that climbs above the root is a 400. The query string
stays raw. Paths are `str` built with surrogateescape, so any byte sequence round-trips to the file
system unchanged.
"""

from __future__ import annotations

import re

from pyginx.errors import HttpError

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_PLAIN_HOST = re.compile(r"[a-z0-9.\-]+(?::[0-9]+)?")
_host_cache: dict[str, str] = {}

_HEX = "0123456789abcdefABCDEF"


def split_target(target: str) -> tuple[str, str, str | None]:
    """Split a request-target into (path, query, host-from-absolute-form).

    `http://h:1/p?q` -> ("/p", "q", "h:1"); `/p` -> ("/p", "", None). Anything else is a 400.
    """
    if target.startswith("/"):
        q = target.find("?")
        if q < 0:
            return target, "", None
        return target[:q], target[q + 1 :], None
    host: str | None = None
    if not target.startswith("/"):
        lower = target[:8].lower()
        if lower.startswith("http://") or lower.startswith("https://"):
            rest = target[target.index("//") + 2 :]
            slash = rest.find("/")
            qmark = rest.find("?")
            if slash < 0 or (0 <= qmark < slash):
                end = qmark if qmark >= 0 else len(rest)
                host, rest = rest[:end], "/" + rest[end:]
            else:
                host, rest = rest[:slash], rest[slash:]
            if not host or "@" in host:
                raise HttpError(400, "invalid host in request line")
            target = rest
        else:
            raise HttpError(400, "invalid request-target")
    q = target.find("?")
    if q < 0:
        return target, "", host
    return target[:q], target[q + 1 :], host


def percent_decode(path: str) -> str:
    """Decode %XX escapes; a bad escape or %00 is a 400 (nginx: "client sent invalid request")."""
    if "%" not in path:
        return path
    raw = path.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b == 0x25:  # '%'
            if i + 2 >= n:
                raise HttpError(400, "bad percent escape")
            h1 = chr(raw[i + 1])
            h2 = chr(raw[i + 2])
            if h1 not in _HEX or h2 not in _HEX:
                raise HttpError(400, "bad percent escape")
            value = int(h1 + h2, 16)
            if value == 0:
                raise HttpError(400, "NUL in URI")
            out.append(value)
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode("utf-8", "surrogateescape")


def remove_dot_segments(path: str, merge_slashes: bool = True) -> str:
    """Resolve `.` and `..`, merge `//` when asked; climbing above `/` is a 400."""
    if "/." not in path and (not merge_slashes or "//" not in path):
        return path
    segments = path.split("/")
    last_index = len(segments) - 1
    out: list[str] = []
    for index in range(1, len(segments)):
        seg = segments[index]
        last = index == last_index
        if seg == ".":
            if last:
                out.append("")
            continue
        if seg == "..":
            if not out:
                raise HttpError(400, "URI climbs above the root")
            out.pop()
            if last:
                out.append("")
            continue
        if seg == "" and merge_slashes and not last:
            continue
        out.append(seg)
    return "/" + "/".join(out)


def normalize_path(raw_path: str, merge_slashes: bool = True) -> str:
    """The raw path of a request-target -> nginx's $uri (decoded, dot segments resolved)."""
    if not raw_path.startswith("/"):
        raise HttpError(400, "invalid request-target")
    if _CONTROL.search(raw_path) is not None:
        raise HttpError(400, "invalid character in URI")
    return remove_dot_segments(percent_decode(raw_path), merge_slashes)


def validate_host(value: str) -> str:
    """nginx's ngx_http_validate_host: lower-case, drop the port and a trailing dot; 400 if invalid."""
    cached = _host_cache.get(value)
    if cached is not None:
        return cached
    host = _validate_host(value)
    if len(_host_cache) < 256:  # clients send few distinct Host values; bound it anyway
        _host_cache[value] = host
    return host


def _validate_host(value: str) -> str:
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise HttpError(400, "invalid host header")
        name = host[: end + 1]
        rest = host[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            raise HttpError(400, "invalid host header")
        return name
    colon = host.find(":")
    if colon >= 0:
        port = host[colon + 1 :]
        if port and not port.isdigit():
            raise HttpError(400, "invalid host header")
        host = host[:colon]
    if host.endswith("."):
        host = host[:-1]
    if ".." in host or "/" in host or "\\" in host:
        raise HttpError(400, "invalid host header")
    for ch in host:
        if ch <= " " or ch == "\x7f":
            raise HttpError(400, "invalid host header")
    return host
