"""What an upstream response's headers mean for the cache (pyginx.cache.policy), as nginx decides."""

from __future__ import annotations

from pyginx.cache import policy
from pyginx.cache.policy import decide_store, from_headers, valid_for

NOW = 1_700_000_000
VALID = ((200, 600.0), (301, 600.0), (404, 60.0))


def store(headers: list[tuple[str, str]], status: int = 200, ignore: tuple[str, ...] = ()) -> int | None:
    d = decide_store(status, from_headers(headers, ignore, NOW), VALID, NOW)
    return None if d is None else d.valid_sec - NOW


def test_proxy_cache_valid_by_status_first_match_and_any() -> None:
    assert store([]) == 600 and store([], 404) == 60 and store([], 500) is None
    assert valid_for(((0, 5.0), (200, 60.0)), 200) == 5  # `any` first wins
    assert valid_for((), 200) == 0


def test_cache_control() -> None:
    assert store([("Cache-Control", "max-age=30")]) == 30
    assert store([("Cache-Control", "public, s-maxage=7, max-age=30")]) == 7
    assert store([("Cache-Control", "max-age=0")]) is None
    assert store([("Cache-Control", "no-cache")]) is None
    assert store([("Cache-Control", "private, max-age=60")]) is None
    assert store([("Cache-Control", "no-store")]) is None
    assert store([("Cache-Control", "max-age=abc")]) is None  # nginx: not cacheable
    assert store([("Cache-Control", "max-age=30")], 500) == 30  # the headers' validity, any status
    assert store([("Cache-Control", "no-cache")], ignore=("cache-control",)) == 600


def test_stale_extensions() -> None:
    v = from_headers([("Cache-Control", "max-age=1, stale-while-revalidate=20, stale-if-error=50")], (), NOW)
    assert (v.updating_sec, v.error_sec) == (20, 50)
    v = from_headers([("Cache-Control", "stale-while-revalidate=20")], (), NOW)
    assert (v.updating_sec, v.error_sec) == (20, 20)


def test_expires_and_its_precedence() -> None:
    assert store([("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")]) == 4070908800 - NOW
    assert store([("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")]) is None  # in the past: expired
    assert store([("Expires", "garbage")]) is None
    assert store([("Cache-Control", "max-age=30"), ("Expires", "Thu, 01 Jan 2099 00:00:00 GMT")]) == 30
    assert store([("Expires", "Thu, 01 Jan 1970 00:00:00 GMT")], ignore=("expires",)) == 600


def test_x_accel_expires_wins() -> None:
    assert store([("X-Accel-Expires", "15"), ("Cache-Control", "max-age=30")]) == 15
    assert store([("Cache-Control", "max-age=30"), ("X-Accel-Expires", "15")]) == 15
    assert store([("Cache-Control", "no-cache"), ("X-Accel-Expires", "15")]) == 15
    assert store([("X-Accel-Expires", "0")]) is None
    assert store([("X-Accel-Expires", f"@{NOW + 99}")]) == 99
    assert store([("X-Accel-Expires", "soon")]) == 600  # an invalid value is ignored
    assert store([("X-Accel-Expires", "0")], ignore=("x-accel-expires",)) == 600


def test_set_cookie_and_vary() -> None:
    assert store([("Set-Cookie", "a=b")]) is None
    assert store([("Set-Cookie", "a=b")], ignore=("set-cookie",)) == 600
    assert store([("Vary", "*")]) is None
    assert store([("Vary", "*")], ignore=("vary",)) == 600
    d = decide_store(
        200, from_headers([("Vary", "Accept-Encoding"), ("Vary", "Cookie")], (), NOW), VALID, NOW
    )
    assert d is not None and d.vary == "Accept-Encoding, Cookie"


def test_validators_kept_for_200_only() -> None:
    hs = [("ETag", '"v1"'), ("Last-Modified", "Mon, 01 Jan 2001 00:00:00 GMT")]
    d = decide_store(200, from_headers(hs, (), NOW), VALID, NOW)
    assert d is not None and d.etag == '"v1"' and d.last_modified == 978307200
    d = decide_store(404, from_headers(hs, (), NOW), VALID, NOW)
    assert d is not None and d.etag == "" and d.last_modified == -1


def test_predicates_and_use_stale() -> None:
    assert not policy.predicate_true(["", "0"]) and policy.predicate_true(["", "1"])
    assert policy.stale_allowed(("error", "timeout"), "timeout")
    assert not policy.stale_allowed(("off",), "error")
    assert policy.stale_allowed(("off",), "error", stale_error=True)  # stale-if-error
    assert not policy.stale_allowed(("off",), "http_502", stale_error=True)
