"""Cacheability and validity of an upstream response, as ngx_http_upstream decides them (pure).

Headers are processed in the order received, as nginx's header handlers run: X-Accel-Expires sets the
validity and wins over Cache-Control and Expires; Cache-Control's max-age/s-maxage win over Expires;
no-cache/no-store/private, max-age=0, `X-Accel-Expires: 0`, an Expires in the past, Set-Cookie and
`Vary: *` make the response uncacheable; stale-while-revalidate/stale-if-error give the periods a stale
entry may still be served. Every one of these honours proxy_ignore_headers. Without a validity from the
headers, proxy_cache_valid decides by status (`any` = 0 matches every status).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyginx.handlers.conditional import parse_http_date

MAX_TIME = 2**62


@dataclass
class Verdict:
    """What the headers said. valid_sec is absolute (epoch seconds), 0 = not given by the headers."""

    cacheable: bool = True
    valid_sec: int = 0
    updating_sec: int = 0
    error_sec: int = 0
    no_cache: bool = False
    expired: bool = False
    vary: str = ""  # the Vary value(s), joined with ", " (nginx), when it is to be honoured
    etag: str = ""
    last_modified: int = -1


def _delta_seconds(text: str, start: int) -> int | None:
    """nginx's ngx_http_upstream_process_delta_seconds: digits up to `,` `;` or space; None = error."""
    n = 0
    for ch in text[start:]:
        if ch in ",; ":
            break
        if not "0" <= ch <= "9":
            return None
        n = n * 10 + (ord(ch) - 48)
        if n >= MAX_TIME:
            return MAX_TIME
    return n


def _cache_control(v: Verdict, value: str, now: int, accel_seen: bool) -> None:
    low = value.lower()
    if not (v.valid_sec != 0 and accel_seen):
        if "no-cache" in low or "no-store" in low or "private" in low:
            v.no_cache = True
            return
        at, offset = low.find("s-maxage="), 9
        if at < 0:
            at, offset = low.find("max-age="), 8
        if at >= 0:
            n = _delta_seconds(low, at + offset)
            if n is None:
                v.cacheable = False
                return
            if n == 0:
                v.no_cache = True
                return
            v.valid_sec = min(now + n, MAX_TIME)
            v.expired = False
    at = low.find("stale-while-revalidate=")
    if at >= 0:
        n = _delta_seconds(low, at + 23)
        if n is None:
            v.cacheable = False
            return
        v.updating_sec = n
        v.error_sec = n
    at = low.find("stale-if-error=")
    if at >= 0:
        n = _delta_seconds(low, at + 15)
        if n is None:
            v.cacheable = False
            return
        v.error_sec = n


def _accel_expires(v: Verdict, value: str, now: int) -> None:
    if not value.startswith("@"):
        if not value.isdigit():
            return  # NGX_ERROR: ignored
        n = int(value)
        if n == 0:
            v.cacheable = False
            return
        v.valid_sec = min(now + n, MAX_TIME)
        v.no_cache = False
        v.expired = False
        return
    rest = value[1:]
    if rest.isdigit():
        v.valid_sec = int(rest)
        v.no_cache = False
        v.expired = False


def from_headers(headers: Iterable[tuple[str, str]], ignore: Sequence[str], now: int) -> Verdict:
    """Walk the upstream response's headers as nginx's header handlers do."""
    v = Verdict()
    accel_seen = False
    expires_seen = False
    varies: list[str] = []
    for name, value in headers:
        lname = name.lower()
        if lname == "cache-control":
            if "cache-control" not in ignore:
                _cache_control(v, value, now, accel_seen)
        elif lname == "expires":
            if expires_seen:
                continue  # a duplicate is ignored (nginx warns)
            expires_seen = True
            if "expires" in ignore or v.valid_sec != 0:
                continue
            t = parse_http_date(value)
            if t is None or t < now:
                v.expired = True
            else:
                v.valid_sec = t
        elif lname == "x-accel-expires":
            if accel_seen:
                continue
            accel_seen = True
            if "x-accel-expires" not in ignore:
                _accel_expires(v, value.strip(), now)
        elif lname == "set-cookie":
            if "set-cookie" not in ignore:
                v.cacheable = False
        elif lname == "vary":
            if "vary" in ignore or not v.cacheable:
                continue
            if value.strip() == "*":
                v.cacheable = False
                continue
            varies.append(value)
        elif lname == "etag":
            v.etag = value
        elif lname == "last-modified":
            t = parse_http_date(value)
            v.last_modified = t if t is not None else -1
    if varies:
        v.vary = ", ".join(varies)
    return v


def valid_for(cache_valid: Sequence[tuple[int, float]], status: int) -> int:
    """proxy_cache_valid for `status`, in whole seconds (0 = not cached); the first match wins."""
    for code, seconds in cache_valid:
        if code == 0 or code == status:
            return int(seconds)
    return 0


@dataclass(frozen=True)
class StoreDecision:
    valid_sec: int
    updating_sec: int
    error_sec: int
    etag: str
    last_modified: int
    vary: str


def decide_store(
    status: int, verdict: Verdict, cache_valid: Sequence[tuple[int, float]], now: int
) -> StoreDecision | None:
    """Whether to store the response, with its validity (ngx_http_upstream_send_response)."""
    if not verdict.cacheable or verdict.no_cache or verdict.expired:
        return None
    valid = verdict.valid_sec
    if valid == 0:
        seconds = valid_for(cache_valid, status)
        if seconds:
            valid = now + seconds
    if not valid:
        return None
    ok = status in (200, 206)
    return StoreDecision(
        valid_sec=valid,
        updating_sec=verdict.updating_sec,
        error_sec=verdict.error_sec,
        etag=verdict.etag if ok else "",
        last_modified=verdict.last_modified if ok else -1,
        vary=verdict.vary,
    )


def predicate_true(values: Iterable[str]) -> bool:
    """proxy_cache_bypass / proxy_no_cache: any value not empty and not "0" (ngx_http_test_predicates)."""
    return any(v and v != "0" for v in values)


# the use_stale conditions of a failed try, by the status it ends with (ngx_http_upstream_next_errors)
STATUS_CONDITIONS = {
    500: "http_500",
    502: "http_502",
    503: "http_503",
    504: "http_504",
    403: "http_403",
    404: "http_404",
    429: "http_429",
}


def stale_allowed(use_stale: Sequence[str], condition: str, stale_error: bool = False) -> bool:
    """May an expired entry be served when the upstream failed with `condition` ("error", "timeout",
    "invalid_header", "http_502", ...)? stale_error: within the entry's stale-if-error period, which
    allows it for errors whatever use_stale says (nginx: r->cache->stale_error)."""
    if condition in use_stale:
        return True
    return stale_error and not condition.startswith("http_")
