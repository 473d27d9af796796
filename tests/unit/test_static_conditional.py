"""The conditional-request decision table, ETag format and HTTP dates, as nginx's not_modified filter."""

from __future__ import annotations

import calendar
import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyginx.handlers.conditional import (
    NOT_MODIFIED_DROPS,
    etag_list_matches,
    evaluate,
    http_date,
    make_etag,
    parse_http_date,
)

MTIME = calendar.timegm((2026, 11, 28, 23, 16, 33))
LM = "Sat, 28 Nov 2026 23:16:33 GMT"
EARLIER = "Sat, 28 Nov 2026 23:16:32 GMT"
LATER = "Sat, 28 Nov 2026 23:16:34 GMT"
ETAG = make_etag(MTIME, 1234)


def test_etag_format() -> None:
    assert make_etag(0x6B0B62F6, 6) == '"6b0b62f6-6"'
    assert make_etag(1, 0) == '"1-0"'
    assert ETAG == f'"{MTIME:x}-4d2"'


def test_http_date() -> None:
    assert http_date(MTIME) == LM
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777),  # RFC 1123
        ("Sunday, 06-Nov-94 08:49:37 GMT", 784111777),  # RFC 850
        ("Sun Nov  6 08:49:37 1994", 784111777),  # asctime
        ("Sun Nov 16 08:49:37 1994", 784111777 + 10 * 86400),
        ("Xyz, 06 Nov 1994 08:49:37 GMT", 784111777),  # the weekday is not checked
        ("Sun, 06 Nov 1994 08:49:37", 784111777),  # nor the zone
        ("Sun, 06 Nov 1994 08:49:37 GMT; length=1234", 784111777),  # old MSIE suffix
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
        ("Sat, 29 Feb 2020 00:00:00 GMT", 1582934400),
        ("Tue, 01 Jan 2069 00:00:00 GMT", 3124224000),
        ("Wednesday, 01-Jan-69 00:00:00 GMT", 3124224000),  # two-digit years below 70 are 20xx
        ("Thursday, 01-Jan-70 00:00:00 GMT", 0),
        ("Sun, 29 Feb 2021 00:00:00 GMT", None),  # not a leap year
        ("Sun, 31 Apr 2021 00:00:00 GMT", None),
        ("Sun, 06 Nov 1994 24:00:00 GMT", None),
        ("Sun, 06 Nov 1994 08:60:00 GMT", None),
        ("Sun, 06 Nov 1994 08:49:60 GMT", None),
        ("Sun, 06 Xyz 1994 08:49:37 GMT", None),
        ("Sun, 6 Nov 1994 08:49:37 GMT", None),
        ("Sun, 06 Nov 94 08:49:37 GMT", None),
        ("Sun, 06-Nov-1994 08:49:37 GMT", None),
        ("1994-11-06T08:49:37Z", None),
        ("", None),
        ("garbage", None),
        ("Sun, 06 Nov 1994", None),
    ],
)
def test_parse_http_date(value: str, expected: int | None) -> None:
    assert parse_http_date(value) == expected


@given(st.integers(min_value=0, max_value=2**33))
def test_date_round_trip(t: int) -> None:
    assert parse_http_date(http_date(t)) == t
    assert parse_http_date(email.utils.formatdate(t, usegmt=True)) == t


@given(st.text(max_size=40))
def test_parse_never_crashes(value: str) -> None:
    parse_http_date(value)


@pytest.mark.parametrize(
    ("header", "weak", "expected"),
    [
        (ETAG, False, True),
        (ETAG, True, True),
        ("*", False, True),
        ("*", True, True),
        (' "a", ' + ETAG, False, True),
        (f'"a",{ETAG}', True, True),
        (f'"a" , {ETAG} ,"b"', True, True),
        (f'{ETAG}\t, "b"', False, True),
        ('"a", "b"', True, False),
        ("W/" + ETAG, True, True),  # weak comparison ignores W/
        ("W/" + ETAG, False, False),  # strong comparison does not
        (ETAG[:-1], False, False),
        (ETAG + "x", False, False),
        ("", False, False),
        ("*, " + '"a"', False, False),  # only a lone "*" is the wildcard
    ],
)
def test_etag_list(header: str, weak: bool, expected: bool) -> None:
    assert etag_list_matches(header, ETAG, weak) is expected


def test_etag_list_without_etag() -> None:
    assert etag_list_matches('"x"', None, True) is False
    assert etag_list_matches("*", None, True) is True


# (headers, if_modified_since mode, expected) -- the not_modified filter's table
TABLE: list[tuple[dict[str, str], str, int]] = [
    ({}, "exact", 200),
    # If-Modified-Since
    ({"if-modified-since": LM}, "exact", 304),
    ({"if-modified-since": LATER}, "exact", 200),  # exact: only equality is "not modified"
    ({"if-modified-since": LATER}, "before", 304),  # before: any date not older than mtime
    ({"if-modified-since": EARLIER}, "before", 200),
    ({"if-modified-since": LM}, "off", 200),
    ({"if-modified-since": "garbage"}, "exact", 200),
    ({"if-modified-since": "garbage"}, "before", 200),
    # If-None-Match
    ({"if-none-match": ETAG}, "exact", 304),
    ({"if-none-match": "*"}, "exact", 304),
    ({"if-none-match": '"other"'}, "exact", 200),
    ({"if-none-match": "W/" + ETAG}, "exact", 304),
    ({"if-none-match": ETAG}, "off", 304),  # if_modified_since off does not touch ETags
    # both: every validator present must agree
    ({"if-none-match": ETAG, "if-modified-since": LM}, "exact", 304),
    ({"if-none-match": ETAG, "if-modified-since": EARLIER}, "exact", 200),
    ({"if-none-match": '"other"', "if-modified-since": LM}, "exact", 200),
    # If-Unmodified-Since
    ({"if-unmodified-since": LM}, "exact", 200),
    ({"if-unmodified-since": LATER}, "exact", 200),
    ({"if-unmodified-since": EARLIER}, "exact", 412),
    ({"if-unmodified-since": "garbage"}, "exact", 412),  # an unparsable date fails it
    # If-Match
    ({"if-match": ETAG}, "exact", 200),
    ({"if-match": "*"}, "exact", 200),
    ({"if-match": '"other"'}, "exact", 412),
    ({"if-match": "W/" + ETAG}, "exact", 412),  # strong comparison
    ({"if-match": f'"a", {ETAG}'}, "exact", 200),
    # preconditions come first
    ({"if-match": '"other"', "if-none-match": ETAG}, "exact", 412),
    ({"if-unmodified-since": EARLIER, "if-modified-since": LM}, "exact", 412),
    ({"if-match": ETAG, "if-none-match": ETAG}, "exact", 304),
    ({"if-unmodified-since": LM, "if-modified-since": LM}, "exact", 304),
]


@pytest.mark.parametrize(("headers", "mode", "expected"), TABLE)
def test_decision_table(headers: dict[str, str], mode: str, expected: int) -> None:
    assert evaluate(headers, ETAG, MTIME, mode) == expected  # type: ignore[arg-type]


def test_etag_off() -> None:
    # `etag off`: If-Match can only pass with "*", If-None-Match only matches "*"
    assert evaluate({"if-match": ETAG}, None, MTIME) == 412
    assert evaluate({"if-match": "*"}, None, MTIME) == 200
    assert evaluate({"if-none-match": ETAG}, None, MTIME) == 200
    assert evaluate({"if-none-match": "*"}, None, MTIME) == 304


def test_no_last_modified() -> None:
    assert evaluate({"if-modified-since": LM}, ETAG, None) == 200
    assert evaluate({"if-unmodified-since": LM}, ETAG, None) == 412


def test_not_modified_drops() -> None:
    assert NOT_MODIFIED_DROPS == {"content-type", "content-length", "accept-ranges", "content-encoding"}
