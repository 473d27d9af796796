"""Validators and conditional requests, as nginx's not_modified filter decides them.

Pure functions over plain values: the static handler gives the request's If-* headers, the file's
ETag and mtime, and gets back 200, 304 or 412. HTTP dates are parsed exactly as nginx's lenient
ngx_parse_http_time (RFC 1123, RFC 850 and asctime forms; the weekday and anything after the
seconds are ignored), so the same header gives the same answer under both servers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

Decision = Literal[200, 304, 412]
ImsMode = Literal["off", "exact", "before"]

# What a 304 drops from the 200 it replaces (ngx_http_not_modified_header_filter); ETag,
# Last-Modified, Expires, Cache-Control, Vary and add_header's headers stay.
NOT_MODIFIED_DROPS = frozenset({"content-type", "content-length", "accept-ranges", "content-encoding"})

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MDAY = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def make_etag(mtime: int, size: int) -> str:
    """nginx's strong ETag: `"<hex mtime>-<hex size>"`, lower-case hex, quotes included."""
    return f'"{mtime:x}-{size:x}"'


def http_date(t: float) -> str:
    """RFC 1123 date as ngx_http_time writes it: `Sat, 28 Nov 2026 23:16:33 GMT`."""
    tm = time.gmtime(int(t))
    return (
        f"{_WEEKDAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year:4d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT"
    )


def _digits(s: str, i: int, n: int) -> int | None:
    """The n-digit decimal number at s[i:i+n], or None if any of those characters is not 0-9."""
    chunk = s[i : i + n]
    if len(chunk) != n or not all("0" <= c <= "9" for c in chunk):
        return None
    return int(chunk)


def parse_http_date(value: str) -> int | None:
    """Seconds since the epoch for an HTTP date, or None where nginx's parser returns NGX_ERROR.

    A line-by-line rendering of ngx_parse_http_time: `Tue, 10 Nov 2002 23:50:13 GMT` (rfc822),
    `Tuesday, 10-Nov-02 23:50:13 GMT` (rfc850), `Tue Nov 10 23:50:13 2002` (asctime). The C code
    reads a NUL-terminated buffer, so indexing past the end behaves as reading '\\0' there.
    """
    s = value + "\0" * 8  # sentinels stand for the C string's terminator
    end = len(value)
    fmt = ""
    p = 0
    while p < end:
        if s[p] == ",":
            break
        if s[p] == " ":
            fmt = "isoc"
            break
        p += 1
    p += 1
    while p < end and s[p] == " ":
        p += 1
    if end - p < 18:
        return None

    day = 0
    if fmt != "isoc":
        d = _digits(s, p, 2)
        if d is None:
            return None
        day = d
        p += 2
        if s[p] == " ":
            if end - p < 18:
                return None
            fmt = "rfc822"
        elif s[p] == "-":
            fmt = "rfc850"
        else:
            return None
        p += 1

    c = s[p]
    if c == "J":
        month = 0 if s[p + 1] == "a" else 5 if s[p + 2] == "n" else 6
    elif c == "F":
        month = 1
    elif c == "M":
        month = 2 if s[p + 2] == "r" else 4
    elif c == "A":
        month = 3 if s[p + 1] == "p" else 7
    elif c == "S":
        month = 8
    elif c == "O":
        month = 9
    elif c == "N":
        month = 10
    elif c == "D":
        month = 11
    else:
        return None
    p += 3
    if (fmt == "rfc822" and s[p] != " ") or (fmt == "rfc850" and s[p] != "-"):
        return None
    p += 1

    year = 0
    if fmt == "rfc822":
        y = _digits(s, p, 4)
        if y is None:
            return None
        year = y
        p += 4
    elif fmt == "rfc850":
        y = _digits(s, p, 2)
        if y is None:
            return None
        year = y + (2000 if y < 70 else 1900)
        p += 2

    if fmt == "isoc":
        if s[p] == " ":
            p += 1
        if not "0" <= s[p] <= "9":
            return None
        day = ord(s[p]) - 48
        p += 1
        if s[p] != " ":
            if not "0" <= s[p] <= "9":
                return None
            day = day * 10 + ord(s[p]) - 48
            p += 1
        if end - p < 14:
            return None

    if s[p] != " ":
        return None
    p += 1
    hour = _digits(s, p, 2)
    if hour is None or s[p + 2] != ":":
        return None
    p += 3
    minute = _digits(s, p, 2)
    if minute is None or s[p + 2] != ":":
        return None
    p += 3
    sec = _digits(s, p, 2)
    if sec is None:
        return None
    if fmt == "isoc":
        p += 2
        if s[p] != " ":
            return None
        p += 1
        y = _digits(s, p, 4)
        if y is None:
            return None
        year = y

    if hour > 23 or minute > 59 or sec > 59:
        return None
    if day == 29 and month == 1:
        if (year & 3) or (year % 100 == 0 and year % 400 != 0):
            return None
    elif day > _MDAY[month]:
        return None

    # Gauss' formula, as nginx: the year starts on March 1 and months count from 1.
    month -= 1
    if month <= 0:
        month += 12
        year -= 1
    days = 365 * year + year // 4 - year // 100 + year // 400  # whole years since March 1, 1 BC
    days += 367 * month // 12 - 30 + day - 1  # then the months and days of this year
    days -= 719527 - 31 - 28  # March 1, 1 BC .. January 1, 1970
    return days * 86400 + hour * 3600 + minute * 60 + sec


def etag_list_matches(header: str, etag: str | None, weak: bool) -> bool:
    """ngx_http_test_if_match: does the If-Match / If-None-Match list name our ETag?

    `*` alone matches anything. With `weak` (If-None-Match) a `W/` prefix is ignored on both sides;
    If-Match compares strongly. Entries are compared byte for byte, quotes included, with spaces
    and tabs allowed before the separating comma.
    """
    if header == "*":
        return True
    if etag is None:
        return False
    if weak and len(etag) > 2 and etag.startswith("W/"):
        etag = etag[2:]
    n = len(etag)
    end = len(header)
    i = 0
    while i < end:
        if weak and end - i > 2 and header.startswith("W/", i):
            i += 2
        if n > end - i:
            return False
        if header.startswith(etag, i):
            i += n
            while i < end and header[i] in " \t":
                i += 1
            if i == end or header[i] == ",":
                return True
        while i < end and header[i] != ",":
            i += 1
        while i < end and header[i] in " \t,":
            i += 1
    return False


def _unmodified_ok(header: str, mtime: int | None) -> bool:
    """ngx_http_test_if_unmodified: an unparsable date counts as 'modified' (-1 < mtime)."""
    if mtime is None:
        return False
    iums = parse_http_date(header)
    return iums is not None and iums >= mtime


def _modified(header: str, mtime: int | None, mode: ImsMode) -> bool:
    """ngx_http_test_if_modified: True means "send the full response"."""
    if mtime is None or mode == "off":
        return True
    ims = parse_http_date(header)
    if ims == mtime:
        return False
    return mode == "exact" or ims is None or ims < mtime


def evaluate(
    headers: Mapping[str, str],
    etag: str | None,
    mtime: int | None,
    if_modified_since: ImsMode = "exact",
) -> Decision:
    """The not_modified filter's decision for a 200 response with this ETag and Last-Modified.

    `headers` holds lower-case request header names. Preconditions first (412), then the cache
    validators: a 304 needs every one of If-Modified-Since / If-None-Match present to agree.
    """
    ius = headers.get("if-unmodified-since")
    if ius is not None and not _unmodified_ok(ius, mtime):
        return 412
    im = headers.get("if-match")
    if im is not None and not etag_list_matches(im, etag, weak=False):
        return 412
    ims = headers.get("if-modified-since")
    inm = headers.get("if-none-match")
    if ims is None and inm is None:
        return 200
    if ims is not None and _modified(ims, mtime, if_modified_since):
        return 200
    if inm is not None and not etag_list_matches(inm, etag, weak=True):
        return 200
    return 304
