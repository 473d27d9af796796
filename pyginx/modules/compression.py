"""The pure decisions of response compression (no I/O): nginx's ngx_http_gzip_ok for a request and
its response head, Accept-Encoding negotiation between gzip and the extensions (brotli, zstd), and
the streaming encoders the gzip module installs as the body filter.

nginx tests `gzip` against Accept-Encoding with its own quirks (pyginx/handlers/static.py
`gzip_accepted`, kept as is); when brotli or zstd are enabled too, the codings are ranked by their
q-values instead, ties going br > zstd > gzip.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from email.utils import mktime_tz, parsedate_tz

BodyFilter = Callable[[bytes, bool], bytes]

# gzip_proxied's flags (NGX_HTTP_GZIP_PROXIED_*)
PROXIED_FLAGS = (
    "off",
    "expired",
    "no-cache",
    "no-store",
    "private",
    "no_last_modified",
    "no_etag",
    "auth",
    "any",
)


def msie6(agent: str) -> bool:
    """nginx's r->headers_in.msie6 (ngx_http_process_user_agent): MSIE 4/5, and 6 without SV1."""
    p = agent.find("MSIE ")
    if p < 0 or p + 7 >= len(agent):
        return False
    if agent[p + 6] != ".":
        return False
    major = agent[p + 5]
    if major in "45":
        return True
    return major == "6" and "SV1" not in agent[p + 8 :]


def _http_time(value: str) -> int | None:
    parsed = parsedate_tz(value)
    if parsed is None:
        return None
    try:
        return int(mktime_tz(parsed))
    except (OverflowError, ValueError):
        return None


def _has_token(values: Sequence[str], name: str) -> bool:
    """ngx_http_parse_multi_header_lines: `name` as a token of a comma-separated header."""
    for value in values:
        for part in value.split(","):
            token = part.strip().lower()
            if token == name or token.startswith((name + "=", name + ";", name + " ")):
                return True
    return False


def proxied_ok(
    flags: frozenset[str], request: Mapping[str, str], response: Sequence[tuple[str, str]], now: float
) -> bool:
    """The gzip_proxied part of ngx_http_gzip_ok, for a request that came through a proxy (Via)."""
    if "off" in flags:
        return False
    if "any" in flags:
        return True
    if "auth" in flags and "authorization" in request:
        return True
    expires = date = None
    cache_control: list[str] = []
    last_modified = etag = False
    for name, value in response:
        n = name.lower()
        if n == "expires":
            expires = value
        elif n == "date":
            date = value
        elif n == "cache-control":
            cache_control.append(value)
        elif n == "last-modified":
            last_modified = True
        elif n == "etag":
            etag = True
    if expires is not None:
        if "expired" not in flags:
            return False
        exp = _http_time(expires)
        if exp is None:
            return False
        if date is not None:
            at = _http_time(date)
            if at is None:
                return False
        else:
            at = int(now)
        return exp < at
    if cache_control:
        return any(f in flags and _has_token(cache_control, f) for f in ("no-cache", "no-store", "private"))
    if "no_last_modified" in flags and last_modified:
        return False
    return not ("no_etag" in flags and etag)


def request_ok(
    http_minor: int,
    request: Mapping[str, str],
    response: Sequence[tuple[str, str]],
    *,
    min_minor: int,
    proxied: frozenset[str],
    disable: tuple[re.Pattern[str], ...],
    disable_msie6: bool,
    now: float,
) -> bool:
    """ngx_http_gzip_ok without the Accept-Encoding test: HTTP version, msie6, Via, gzip_disable."""
    agent = request.get("user-agent")
    if disable_msie6 and agent is not None and msie6(agent):
        return False
    if http_minor < min_minor:
        return False
    if "via" in request and not proxied_ok(proxied, request, response, now):
        return False
    if disable and agent is not None:
        return not any(rx.search(agent) for rx in disable)
    return True


# ---------------------------------------------------------------------------------------------------
# Accept-Encoding


def codings_q(accept_encoding: str) -> dict[str, float]:
    """Each coding of an Accept-Encoding value with its q-value (RFC 9110 12.5.3); bad q = 0."""
    out: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        out[name] = q
    return out


PREFERENCE = ("br", "zstd", "gzip")  # ties go to the first


def choose(accept_encoding: str, offered: Sequence[str]) -> str | None:
    """The best of `offered` (in PREFERENCE order) the client accepts, or None."""
    qs = codings_q(accept_encoding)
    star = qs.get("*")
    best: str | None = None
    best_q = 0.0
    for coding in PREFERENCE:
        if coding not in offered:
            continue
        q = qs.get(coding, star if star is not None else 0.0)
        if coding == "gzip" and "gzip" not in qs and "x-gzip" in qs:
            q = qs["x-gzip"]
        if q > best_q:
            best, best_q = coding, q
    return best


# ---------------------------------------------------------------------------------------------------
# encoders


def available(coding: str) -> bool:
    """Whether the package a coding needs is installed (brotli, zstandard: the `compress` extra)."""
    try:
        if coding == "br":
            import brotli  # noqa: F401
        elif coding == "zstd":
            import zstandard  # noqa: F401
    except ImportError:
        return False
    return True


def encoder(coding: str, level: int) -> BodyFilter:
    """A streaming compressor as a body filter: (data, last) -> the compressed bytes ready so far."""
    if coding == "br":
        import brotli

        bro = brotli.Compressor(quality=level)

        def br(data: bytes, last: bool) -> bytes:
            out: bytes = bro.process(data) if data else b""
            if last:
                out += bro.finish()
            return out

        return br
    if coding == "zstd":
        import zstandard

        zc = zstandard.ZstdCompressor(level=level).compressobj()

        def zstd(data: bytes, last: bool) -> bytes:
            out: bytes = zc.compress(data) if data else b""
            if last:
                out += zc.flush()
            return out

        return zstd
    # the gzip wrapper (wbits 16 + 15), nginx's gzip_window and gzip_hash defaults
    z = zlib.compressobj(level, zlib.DEFLATED, 31, 8)

    def gz(data: bytes, last: bool) -> bytes:
        out = z.compress(data) if data else b""
        if last:
            out += z.flush()
        return out

    return gz
