"""Answering a request from a cached entry: nginx's not_modified and range filters on cached responses,
and the body from memory (small entries) or sent from the cache file with sendfile (large ones)."""

from __future__ import annotations

import os
from collections.abc import Awaitable
from dataclasses import dataclass

from pyginx.cache import fileformat as ff
from pyginx.config.model import HttpSettings
from pyginx.handlers import conditional, ranges
from pyginx.http.request import Request
from pyginx.http.status import error_page_body

IN_MEMORY_MAX = 256 * 1024  # larger bodies are sent from the file


@dataclass(init=False)  # __init__ written out: compiled, it is native (a dataclass's generated one is not)
class CachedBody:
    """An entry's body: in memory (`data`), or in the open cache file `fd` at `start`, which this
    object then owns (closed once sent, or when not needed)."""

    length: int
    data: bytes | None
    fd: int
    start: int

    def __init__(self, length: int, data: bytes | None = None, fd: int = -1, start: int = 0) -> None:
        self.length = length
        self.data = data
        self.fd = fd
        self.start = start

    def read(self, a: int, b: int) -> bytes:
        if self.data is not None:
            return self.data[a:b]
        return os.pread(self.fd, b - a, self.start + a)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def respond(
    req: Request, status: int, headers: list[tuple[str, str]], body: CachedBody
) -> Awaitable[None] | None:
    """The whole body with `status` (any status, no filters)."""
    return _send(req, status, headers, body, 0, body.length)


def answer_200(
    req: Request, s: HttpSettings, headers: list[tuple[str, str]], body: CachedBody, fh: ff.FileHeader
) -> Awaitable[None] | None:
    """A cached 200 for `req`: 412 / 304 by the validators, 206 / 416 by Range, else the whole body."""
    length = body.length
    etag = next((v for n, v in headers if n.lower() == "etag"), None)
    mtime = fh.last_modified if fh.last_modified >= 0 else None
    decision = conditional.evaluate(req.headers, etag, mtime, s.if_modified_since)
    if decision == 412:
        body.close()
        req.send_error(412)
        return None
    if decision == 304:
        body.close()
        req.respond(304, [h for h in headers if h[0].lower() not in conditional.NOT_MODIFIED_DROPS])
        return None
    # nginx serves ranges of a cached response only when the upstream's had an Accept-Ranges line
    # (ngx_http_upstream_copy_allow_ranges); the range filter then says "bytes" whatever it said
    ranges_on = s.max_ranges != 0 and any(n.lower() == "accept-ranges" for n, _ in headers)
    if ranges_on:
        headers = [h for h in headers if h[0].lower() != "accept-ranges"] + [("Accept-Ranges", "bytes")]
    rd = ranges.decide(req.headers, length, etag, mtime, s.max_ranges) if ranges_on else ranges.FULL
    if rd.kind != "full" and req.filters_recode(200, headers, length):
        rd = ranges.FULL  # gzip will compress it: the whole response, as nginx sends it
    if rd.kind == "full":
        return _send(req, 200, headers, body, 0, length)
    if rd.kind == "unsatisfiable":
        body.close()
        if any(code == 416 for code, _u, _o in s.error_page):
            req.send_error(416)
            return None
        req.respond(
            416,
            [("Content-Type", "text/html"), ("Content-Range", ranges.unsatisfied_range(length))],
            error_page_body(416, s.server_tokens),
        )
        return None
    headers = [h for h in headers if h[0].lower() != "accept-ranges"]
    if len(rd.ranges) == 1:
        start, end = rd.ranges[0]
        headers.append(("Content-Range", ranges.content_range(start, end, length)))
        return _send(req, 206, headers, body, start, end)
    ctype = next((v for n, v in headers if n.lower() == "content-type"), "")
    mp = ranges.multipart(rd.ranges, length, ctype)
    headers = [h for h in headers if h[0].lower() != "content-type"] + [("Content-Type", mp.content_type)]
    parts: list[bytes] = []
    for head, a, b in mp.parts:
        parts += [head, body.read(a, b)]
    body.close()
    req.respond(206, headers, b"".join(parts) + mp.trailer, False)
    return None


def _send(
    req: Request, status: int, headers: list[tuple[str, str]], body: CachedBody, a: int, b: int
) -> Awaitable[None] | None:
    if req.head_only:
        body.close()
        req.start(status, headers, b - a)
        req.end()
        return None
    if body.data is not None or body.fd < 0:
        data = body.read(a, b) if body.data is not None else b""
        body.close()
        req.respond(status, headers, data, False)
        return None
    return _sendfile(req, status, headers, body, a, b)


async def _sendfile(
    req: Request, status: int, headers: list[tuple[str, str]], body: CachedBody, a: int, b: int
) -> None:
    try:
        req.start(status, headers, b - a)
        await req.sendfile(body.fd, body.start + a, b - a)
    except (ConnectionError, OSError):
        req.abort()
        return
    finally:
        body.close()
    req.end()
