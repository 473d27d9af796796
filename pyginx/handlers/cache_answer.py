"""Answering a request from a cached 200: nginx's not_modified and range filters on cached responses."""

from __future__ import annotations

from pyginx.cache import fileformat as ff
from pyginx.config.model import HttpSettings
from pyginx.handlers import conditional, ranges
from pyginx.http.request import Request
from pyginx.http.status import error_page_body


def answer_from_entry(
    req: Request,
    s: HttpSettings,
    headers: list[tuple[str, str]],
    body: bytes,
    length: int,
    fh: ff.FileHeader,
) -> None:
    etag = next((v for n, v in headers if n.lower() == "etag"), None)
    mtime = fh.last_modified if fh.last_modified >= 0 else None
    decision = conditional.evaluate(req.headers, etag, mtime, s.if_modified_since)
    if decision == 412:
        req.send_error(412)
        return
    if decision == 304:
        req.respond(304, [h for h in headers if h[0].lower() not in conditional.NOT_MODIFIED_DROPS])
        return
    ranges_on = s.max_ranges != 0
    if ranges_on and not any(n.lower() == "accept-ranges" for n, _ in headers):
        headers = [*headers, ("Accept-Ranges", "bytes")]
    rd = ranges.decide(req.headers, length, etag, mtime, s.max_ranges) if ranges_on else ranges.FULL
    if rd.kind == "full":
        if req.head_only:
            req.start(200, headers, length)
            req.end()
        else:
            req.respond(200, headers, body, False)
        return
    if rd.kind == "unsatisfiable":
        if any(code == 416 for code, _u, _o in s.error_page):
            req.send_error(416)
            return
        req.respond(
            416,
            [("Content-Type", "text/html"), ("Content-Range", ranges.unsatisfied_range(length))],
            error_page_body(416, s.server_tokens),
        )
        return
    headers = [h for h in headers if h[0].lower() != "accept-ranges"]
    if len(rd.ranges) == 1:
        start, end = rd.ranges[0]
        headers.append(("Content-Range", ranges.content_range(start, end, length)))
        req.respond(206, headers, body[start:end], False)
        return
    ctype = next((v for n, v in headers if n.lower() == "content-type"), "")
    mp = ranges.multipart(rd.ranges, length, ctype)
    headers = [h for h in headers if h[0].lower() != "content-type"] + [("Content-Type", mp.content_type)]
    req.respond(206, headers, b"".join(mp.segments(body)), False)
