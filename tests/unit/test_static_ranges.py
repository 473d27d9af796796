"""Range parsing, If-Range and multipart/byteranges layout, as nginx's range filter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyginx.handlers import ranges
from pyginx.handlers.ranges import FULL, UNSATISFIABLE, RangeDecision


def partial(*spans: tuple[int, int]) -> RangeDecision:
    return RangeDecision("partial", tuple(spans))


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        # single ranges
        ("bytes=0-0", 10, partial((0, 1))),
        ("bytes=0-9", 10, partial((0, 10))),
        ("bytes=2-5", 10, partial((2, 6))),
        ("bytes=0-", 10, partial((0, 10))),
        ("bytes=9-", 10, partial((9, 10))),
        ("bytes=5-100", 10, partial((5, 10))),  # end clipped
        ("bytes=-3", 10, partial((7, 10))),  # suffix
        ("bytes=-10", 10, partial((0, 10))),
        ("bytes=-20", 10, partial((0, 10))),
        ("Bytes=0-1", 10, partial((0, 2))),  # the unit is case-insensitive
        ("BYTES=0-1", 10, partial((0, 2))),
        ("bytes= 1 - 2 ", 10, partial((1, 3))),  # spaces around numbers
        ("bytes=  -2", 10, partial((8, 10))),
        # nothing satisfiable
        ("bytes=10-", 10, UNSATISFIABLE),
        ("bytes=10-20", 10, UNSATISFIABLE),
        ("bytes=-0", 10, UNSATISFIABLE),
        ("bytes=1-0", 10, UNSATISFIABLE),
        ("bytes=20-30,40-50", 10, UNSATISFIABLE),
        # syntax errors are 416 in nginx
        ("bytes=abc", 10, UNSATISFIABLE),
        ("bytes=1", 10, UNSATISFIABLE),
        ("bytes=1-2x", 10, UNSATISFIABLE),
        ("bytes=-", 10, UNSATISFIABLE),
        ("bytes=--1", 10, UNSATISFIABLE),
        ("bytes=0-1,,2-3", 10, UNSATISFIABLE),
        ("bytes=0-1,", 10, UNSATISFIABLE),
        ("bytes=0-1;2-3", 10, UNSATISFIABLE),
        ("bytes=\t0-1", 10, UNSATISFIABLE),  # only spaces are skipped
        ("bytes=99999999999999999999-", 10, UNSATISFIABLE),  # off_t overflow
        ("bytes=0-99999999999999999999", 10, UNSATISFIABLE),
        # ignored: not "bytes=", too short
        ("items=0-1", 10, FULL),
        ("bytes=", 10, FULL),
        ("bytes", 10, FULL),
        ("", 10, FULL),
        # empty file
        ("bytes=0-", 0, FULL),
        ("bytes=0-0", 0, FULL),
        ("bytes=-5", 0, FULL),
        ("bytes=1-2", 0, UNSATISFIABLE),
        # several ranges: kept in order, not merged
        ("bytes=0-1,3-4", 10, partial((0, 2), (3, 5))),
        ("bytes=6-7,0-1", 10, partial((6, 8), (0, 2))),
        ("bytes=0-1,12-13", 10, partial((0, 2))),  # the unsatisfiable one is dropped
        ("bytes=0-1, 12-13, -1", 10, partial((0, 2), (9, 10))),
        ("bytes=0-5,3-8", 10, FULL),  # together larger than the file: a full 200
        ("bytes=0-4,5-9", 10, partial((0, 5), (5, 10))),  # exactly the file is fine
    ],
)
def test_parse(value: str, length: int, expected: RangeDecision) -> None:
    assert ranges.parse(value, length) == expected


def test_max_ranges() -> None:
    assert ranges.parse("bytes=0-1,3-4", 100, max_ranges=1) == FULL
    assert ranges.parse("bytes=0-1,3-4", 100, max_ranges=2) == partial((0, 2), (3, 5))
    assert ranges.parse("bytes=0-1", 100, max_ranges=1) == partial((0, 2))
    assert ranges.parse("bytes=0-1", 100, max_ranges=0) == FULL
    # dropped (unsatisfiable) ranges do not count against the limit
    assert ranges.parse("bytes=200-300,0-1", 100, max_ranges=1) == partial((0, 2))


def test_amplification_guard_only_when_unlimited() -> None:
    ten = ",".join(f"{i}-{i}" for i in range(10))
    twenty = ",".join(f"{i}-{i}" for i in range(20))
    assert ranges.parse("bytes=" + ten, 1000).kind == "partial"  # 10 + 10*256 <= 1000 + 4096
    assert ranges.parse("bytes=" + twenty, 1000) == FULL  # 20 + 20*256 > 1000 + 4096
    assert ranges.parse("bytes=" + twenty, 1000, max_ranges=100).kind == "partial"


@given(st.integers(min_value=1, max_value=10_000), st.data())
def test_parse_properties(length: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(min_value=0, max_value=length * 2))
    end = data.draw(st.integers(min_value=start, max_value=length * 2))
    got = ranges.parse(f"bytes={start}-{end}", length)
    if start >= length:
        assert got == UNSATISFIABLE
    else:
        assert got == partial((start, min(end + 1, length)))


@given(st.text(max_size=40))
def test_parse_never_crashes(value: str) -> None:
    got = ranges.parse("bytes=" + value, 1000)
    assert got.kind in ("full", "unsatisfiable", "partial")
    for start, end in got.ranges:
        assert 0 <= start < end <= 1000


ETAG = '"5f3e2a1b-2a"'
MTIME = 1600000000  # Sun, 13 Sep 2020 12:26:40 GMT


@pytest.mark.parametrize(
    ("if_range", "allowed"),
    [
        (ETAG, True),
        ('"other"', False),
        ("W/" + ETAG, False),  # a weak validator never matches
        ('"5f3e2a1b-2a" ', False),  # nginx compares the exact bytes (but needs the final quote)
        ("Sun, 13 Sep 2020 12:26:40 GMT", True),
        ("Sun, 13 Sep 2020 12:26:41 GMT", False),
        ("Sun, 13 Sep 2020 12:26:39 GMT", False),  # equality only, not "not later than"
        ("garbage", False),
    ],
)
def test_if_range(if_range: str, allowed: bool) -> None:
    assert ranges.if_range_allows(if_range, ETAG, MTIME) is allowed


def test_if_range_without_etag() -> None:
    assert ranges.if_range_allows(ETAG, None, MTIME) is False
    assert ranges.if_range_allows("Sun, 13 Sep 2020 12:26:40 GMT", None, MTIME) is True


def test_decide() -> None:
    h = {"range": "bytes=0-1"}
    assert ranges.decide(h, 10, ETAG, MTIME) == partial((0, 2))
    assert ranges.decide({}, 10, ETAG, MTIME) == FULL
    assert ranges.decide(h, 10, ETAG, MTIME, max_ranges=0) == FULL
    assert ranges.decide({**h, "if-range": ETAG}, 10, ETAG, MTIME) == partial((0, 2))
    assert ranges.decide({**h, "if-range": '"stale"'}, 10, ETAG, MTIME) == FULL
    # If-Range is only looked at when the Range header is one nginx understands
    assert ranges.decide({"range": "bytes=x", "if-range": '"stale"'}, 10, ETAG, MTIME) == FULL
    assert ranges.decide({"range": "bytes=x", "if-range": ETAG}, 10, ETAG, MTIME) == UNSATISFIABLE


def test_content_range_values() -> None:
    assert ranges.content_range(0, 1, 10) == "bytes 0-0/10"
    assert ranges.content_range(5, 10, 10) == "bytes 5-9/10"
    assert ranges.unsatisfied_range(1234) == "bytes */1234"


def test_boundary_format() -> None:
    a = ranges.next_boundary()
    b = ranges.next_boundary()
    assert len(a) == 20 and a.isdigit() and int(b) == int(a) + 1


def test_multipart_layout() -> None:
    body = b"0123456789"
    plan = ranges.multipart(((0, 2), (4, 6)), 10, "text/plain", boundary="00000000000000000001")
    expected = (
        b"\r\n--00000000000000000001\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Range: bytes 0-1/10\r\n\r\n"
        b"01"
        b"\r\n--00000000000000000001\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Range: bytes 4-5/10\r\n\r\n"
        b"45"
        b"\r\n--00000000000000000001--\r\n"
    )
    assert b"".join(plan.segments(body)) == expected
    assert plan.length == len(expected)
    assert plan.content_type == "multipart/byteranges; boundary=00000000000000000001"


def test_multipart_without_content_type() -> None:
    plan = ranges.multipart(((1, 2), (3, 4)), 5, "", boundary="B")
    out = b"".join(plan.segments(b"abcde"))
    assert out == (
        b"\r\n--B\r\nContent-Range: bytes 1-1/5\r\n\r\nb"
        b"\r\n--B\r\nContent-Range: bytes 3-3/5\r\n\r\nd"
        b"\r\n--B--\r\n"
    )
    assert plan.length == len(out)
