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
    A fragment ends both the path and the query, as in ngx_http_parse_complex_uri ($request_uri keeps it).
    """
    if "#" in target:
        target = target[: target.index("#")]
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
    path = percent_decode(raw_path) if "%" in raw_path else raw_path
    if "/." in path or (merge_slashes and "//" in path):
        path = remove_dot_segments(path, merge_slashes)
    return path


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
    """ngx_http_validate_host, step by step: `..` anywhere, `/`, controls and spaces are invalid; the
    port (after the first `:` outside an IPv6 literal) is dropped unchecked, so is one trailing dot;
    an empty name is invalid. Only ASCII letters are lower-cased, as ngx_strlow does."""
    dot_pos = host_len = len(value)
    state = 0  # 0: name, 1: inside [literal], 2: after the name (port)
    for i, ch in enumerate(value):
        if ch == ".":
            if dot_pos == i - 1:
                raise HttpError(400, "invalid host header")
            dot_pos = i
        elif ch == ":":
            if state == 0:
                host_len = i
                state = 2
        elif ch == "[":
            if i == 0:
                state = 1
        elif ch == "]":
            if state == 1:
                host_len = i + 1
                state = 2
        elif ch == "/" or ch <= " " or ch == "\x7f":
            raise HttpError(400, "invalid host header")
    if dot_pos == host_len - 1:
        host_len -= 1
    if host_len == 0:
        raise HttpError(400, "invalid host header")
    host = value[:host_len]
    return host.lower() if host.isascii() else host.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
