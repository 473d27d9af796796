"""Byte ranges, as nginx's range filter (ngx_http_range_filter_module.c) decides and lays them out.

`decide()` turns the Range / If-Range headers of a request for a 200 response of known length into:
the full response (`FULL`: no Range, a Range nginx ignores, an If-Range that does not match, ranges
that together exceed the file, more ranges than `max_ranges`), a 416, or a list of ranges to send as
one 206 part or as multipart/byteranges. Nothing here touches a socket or a file.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from pyginx.handlers.conditional import parse_http_date

MAX_OFF_T = 2**63 - 1  # nginx refuses numbers that would overflow its off_t
_UNLIMITED = 2**31 - 1  # NGX_MAX_INT32_VALUE: nginx's "max_ranges not set"
_BOUNDARY_WIDTH = 20  # NGX_ATOMIC_T_LEN on 64-bit systems: "%0muA" zero-pads to 20 digits


@dataclass(frozen=True)
class RangeDecision:
    """kind: "full" (send 200), "unsatisfiable" (416), "partial" (206 with `ranges`)."""

    kind: Literal["full", "unsatisfiable", "partial"]
    ranges: tuple[tuple[int, int], ...] = ()  # (start, end) with `end` exclusive, in request order


FULL = RangeDecision("full")
UNSATISFIABLE = RangeDecision("unsatisfiable")


_CUTOFF, _CUTLIM = divmod(MAX_OFF_T, 10)


def _number(s: str, p: int) -> tuple[int, int] | None:
    """The decimal number at s[p] and the position after it; None when there is no digit there or
    the value would overflow off_t (nginx's cutoff/cutlim test)."""
    if not "0" <= s[p] <= "9":
        return None
    value = 0
    while "0" <= s[p] <= "9":
        digit = ord(s[p]) - 48
        if value >= _CUTOFF and (value > _CUTOFF or digit > _CUTLIM):
            return None
        value = value * 10 + digit
        p += 1
    return value, p


def parse(value: str, content_length: int, max_ranges: int | None = None) -> RangeDecision:
    """Parse a `Range` header value for a body of `content_length` bytes, as ngx_http_range_parse.

    Only `bytes=` (any case) is understood; anything else is ignored (FULL). A syntax error is a 416,
    as nginx answers it. Ranges starting at or past the end are dropped; an end past the end is
    clipped; `-N` is the last N bytes. Overlapping ranges are neither merged nor reordered.
    """
    if len(value) < 7 or value[:6].lower() != "bytes=":
        return FULL
    limit = _UNLIMITED if max_ranges is None else max_ranges
    if limit == 0:
        return FULL
    s = value + "\0"  # the C parser stops on the string terminator
    p = 6
    total = 0
    remaining = limit
    found: list[tuple[int, int]] = []

    while True:
        start = 0
        end = 0
        suffix = False
        while s[p] == " ":
            p += 1
        open_ended = False
        if s[p] != "-":
            number = _number(s, p)
            if number is None:
                return UNSATISFIABLE
            start, p = number
            while s[p] == " ":
                p += 1
            if s[p] != "-":
                return UNSATISFIABLE
            p += 1
            while s[p] == " ":
                p += 1
            if s[p] in ",\0":
                end = content_length
                open_ended = True
        else:
            suffix = True
            p += 1

        if not open_ended:
            number = _number(s, p)
            if number is None:
                return UNSATISFIABLE
            end, p = number
            while s[p] == " ":
                p += 1
            if s[p] not in ",\0":
                return UNSATISFIABLE
            if suffix:
                start = content_length - end if end < content_length else 0
                end = content_length - 1
            end = content_length if end >= content_length else end + 1

        if start < end:
            found.append((start, end))
            if total > MAX_OFF_T - (end - start):
                return UNSATISFIABLE
            total += end - start
            if remaining == 0:
                return FULL  # more ranges than max_ranges: nginx sends the whole body
            remaining -= 1
        elif start == 0:
            return FULL  # an empty body (or "bytes=0-" of one): nothing to cut
        if s[p] != ",":
            break
        p += 1

    if not found:
        return UNSATISFIABLE
    if len(found) > 1:
        if total > content_length:
            return FULL
        # Unlimited ranges: refuse (with a full 200) requests whose multipart overhead alone
        # would exceed the file by more than 4 KiB, nginx's guard against amplification.
        if limit == _UNLIMITED and total + len(found) * 256 > content_length + 4096:
            return FULL
    return RangeDecision("partial", tuple(found))


def if_range_allows(if_range: str, etag: str | None, mtime: int | None) -> bool:
    """If-Range: a value ending in `"` must equal the ETag exactly; else a date equal to mtime."""
    if len(if_range) >= 2 and if_range.endswith('"'):
        return etag is not None and if_range == etag
    if mtime is None:
        return False
    return parse_http_date(if_range) == mtime


def decide(
    headers: Mapping[str, str],
    content_length: int,
    etag: str | None,
    mtime: int | None,
    max_ranges: int | None = None,
) -> RangeDecision:
    """The range filter's decision for a 200 of `content_length` bytes (headers: lower-case names)."""
    rng = headers.get("range")
    if rng is None or max_ranges == 0:
        return FULL
    if len(rng) < 7 or rng[:6].lower() != "bytes=":
        return FULL
    if_range = headers.get("if-range")
    if if_range is not None and not if_range_allows(if_range, etag, mtime):
        return FULL
    return parse(rng, content_length, max_ranges)


def content_range(start: int, end: int, total: int) -> str:
    """The Content-Range value of one part: `bytes S-E/TOTAL` (E inclusive)."""
    return f"bytes {start}-{end - 1}/{total}"


def unsatisfied_range(total: int) -> str:
    """The Content-Range of a 416: `bytes */TOTAL`."""
    return f"bytes */{total}"


_boundary_counter = itertools.count(1)


def next_boundary() -> str:
    """A fresh multipart boundary: nginx's temp-number counter, zero-padded to 20 digits."""
    return f"{next(_boundary_counter):0{_BOUNDARY_WIDTH}d}"


@dataclass(frozen=True)
class MultipartPlan:
    """A multipart/byteranges body: for each range its header bytes, then the file bytes; a trailer.

    The body is: for each (head, start, end) in parts: head + file[start:end]; then trailer.
    """

    content_type: str  # the response's Content-Type: multipart/byteranges; boundary=...
    parts: tuple[tuple[bytes, int, int], ...]
    trailer: bytes
    length: int  # Content-Length of the whole body

    def segments(self, body: bytes) -> Iterator[bytes]:
        """The body's pieces, given the whole file in memory."""
        for head, start, end in self.parts:
            yield head
            yield body[start:end]
        yield self.trailer


def multipart(
    ranges: tuple[tuple[int, int], ...],
    total: int,
    content_type: str,
    boundary: str | None = None,
) -> MultipartPlan:
    """Lay out a multipart/byteranges body as ngx_http_range_multipart_header does.

    Each part is CRLF "--BOUNDARY" CRLF ["Content-Type: T" CRLF] "Content-Range: bytes S-E/LEN"
    CRLF CRLF data; the body ends with CRLF "--BOUNDARY--" CRLF.
    """
    if boundary is None:
        boundary = next_boundary()
    type_line = f"Content-Type: {content_type}\r\n" if content_type else ""
    prefix = f"\r\n--{boundary}\r\n{type_line}Content-Range: bytes "
    parts: list[tuple[bytes, int, int]] = []
    length = 0
    for start, end in ranges:
        head = f"{prefix}{start}-{end - 1}/{total}\r\n\r\n".encode("latin-1")
        parts.append((head, start, end))
        length += len(head) + (end - start)
    trailer = f"\r\n--{boundary}--\r\n".encode("latin-1")
    length += len(trailer)
    return MultipartPlan(
        content_type=f"multipart/byteranges; boundary={boundary}",
        parts=tuple(parts),
        trailer=trailer,
        length=length,
    )
