"""The request parser and validation, fed whole, byte by byte and in random chunks (issue 2, item 4)."""

from __future__ import annotations

import random

import pytest

from tests.unit.fake_http import Exchange, make_config, statuses

OK = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

BAD_CASES: list[tuple[str, bytes, int]] = [
    ("cl with te", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("duplicate cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("invalid cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400),
    ("negative cl", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    ("unknown te", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("te list", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te in 1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # nginx's verdicts on the combinations (ngx_http_process_request_header)
    ("te then cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    ("cl with te gzip", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("te gzip then cl", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\n", 501),
    ("cl with te in 1.0", b"POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ("duplicate te", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    ("te chunked, gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501),
    ("te empty", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 501),
    ("empty host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    ("http/10.0", b"GET / HTTP/10.0\r\nHost: a\r\n\r\n", 505),
    ("missing host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("duplicate host", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("lowercase method", b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("method with digit", b"G3T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http/2.0", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    ("http/3.0", b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    ("http/0.9 line", b"GET /\r\n\r\n", 400),
    ("http/0.9 single crlf", b"GET /\r\n", 400),
    ("http/0.9 version", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 400),
    ("http/1.01", b"GET / HTTP/1.01\r\nHost: a\r\n\r\n", 400),
    ("bare lf", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare lf in header", b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    ("nul in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("bel in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x07b\r\n\r\n", 400),
    ("del in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
    ("bare cr in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    ("trace", b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("control in target", b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("percent nul", b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad escape", b"GET /a%zzb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("short escape", b"GET /a%2 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("climb above root", b"GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("encoded climb", b"GET /a/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
]


def _chunkings(data: bytes) -> list[tuple[str, list[bytes]]]:
    rng = random.Random(len(data))
    cuts = sorted(rng.sample(range(1, len(data)), min(5, len(data) - 1)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return [("whole", [data]), ("bytewise", [bytes([b]) for b in data]), ("random", pieces)]


@pytest.mark.parametrize("name,data,status", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_request_gets_status_and_close(name: str, data: bytes, status: int) -> None:
    for how, chunks in _chunkings(data):
        ex = Exchange()
        try:
            out = ex.feed(*chunks)
            assert statuses(out) == [status], (how, out)
            assert b"Connection: close" in out, how
            assert ex.transport.closed or ex.transport.eof, how
        finally:
            ex.close()


@pytest.mark.parametrize("how", ["whole", "bytewise", "random"])
def test_good_request_in_any_split(how: str) -> None:
    data = OK + b"GET /two?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    chunks = dict(_chunkings(data))[how]
    ex = Exchange()
    try:
        out = ex.feed(*chunks)
        assert statuses(out) == [200, 200]
        assert out.index(b"ok GET /\r\n" if False else b"ok GET /") < out.index(b"ok GET /two")
        assert not ex.transport.closed
    finally:
        ex.close()


def test_unknown_method_token_is_accepted_like_nginx() -> None:
    for how, chunks in _chunkings(b"FOO-BAR_X /m HTTP/1.1\r\nHost: a\r\n\r\n"):
        ex = Exchange()
        try:
            out = ex.feed(*chunks)
            assert statuses(out) == [200], how
            assert b"ok FOO-BAR_X /m" in out, how
        finally:
            ex.close()


def test_request_line_too_long_is_414() -> None:
    ex = Exchange()
    try:
        out = ex.feed(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        assert statuses(out) == [414]
    finally:
        ex.close()


def test_header_too_long_is_400() -> None:
    ex = Exchange()
    try:
        out = ex.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
        assert statuses(out) == [400]
        assert b"400 Request Header Or Cookie Too Large" in out
    finally:
        ex.close()


def test_too_many_headers_is_400() -> None:
    ex = Exchange()
    try:
        many = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(12))
        out = ex.feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
        assert statuses(out) == [400]
    finally:
        ex.close()


def test_more_than_a_thousand_header_lines_is_400() -> None:
    # nginx's max_headers (1000, Host included)
    for count, status in ((999, 200), (1000, 400)):
        ex = Exchange()
        try:
            lines = b"".join(b"X-%04d: y\r\n" % i for i in range(count))
            out = ex.feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n")
            assert statuses(out) == [status], count
        finally:
            ex.close()


def test_raw_high_bytes_in_the_target_are_accepted_like_nginx() -> None:
    for how, chunks in _chunkings(b"GET /caf\xc3\xa9?q=\xff HTTP/1.1\r\nHost: a\r\n\r\n" + OK):
        ex = Exchange()
        try:
            out = ex.feed(*chunks)
            assert statuses(out) == [200, 200], how
            assert b"ok GET /caf\xc3\xa9" in out
        finally:
            ex.close()


def test_endless_header_line_is_cut_off() -> None:
    ex = Exchange()
    try:
        out = ex.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX: ", *([b"a" * 4096] * 20))
        assert statuses(out) == [400]
    finally:
        ex.close()


def test_http10_keepalive() -> None:
    ex = Exchange()
    try:
        out = ex.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert b"Connection: keep-alive" in out and not ex.transport.closed
        out = ex.feed(b"GET / HTTP/1.0\r\n\r\n")
        assert statuses(out) == [200, 200]
        assert out.endswith(b"ok GET /") and b"Connection: close" in out
        assert ex.transport.closed
    finally:
        ex.close()


def test_body_too_large_decided_before_reading() -> None:
    ex = Exchange(make_config(client_max_body_size=10))
    try:
        out = ex.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
        assert statuses(out) == [413]
    finally:
        ex.close()


def test_body_is_discarded_and_next_request_served() -> None:
    ex = Exchange()
    try:
        body = b"x" * 1000
        out = ex.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n", body[:500], body[500:], OK)
        assert statuses(out) == [200, 200]
    finally:
        ex.close()


def test_chunked_body_with_trailer_then_next_request() -> None:
    ex = Exchange()
    try:
        out = ex.feed(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n" + OK
        )
        assert statuses(out) == [200, 200]
    finally:
        ex.close()


def test_keepalive_requests_limit_closes() -> None:
    ex = Exchange(make_config(keepalive_requests=2))
    try:
        out = ex.feed(OK, OK)
        assert statuses(out) == [200, 200]
        assert out.count(b"Connection: close") == 1 and ex.transport.closed
    finally:
        ex.close()


def test_absolute_form_sets_host() -> None:
    ex = Exchange(make_config())
    try:
        out = ex.feed(b"GET http://example.org/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n")
        assert statuses(out) == [200] and b"ok GET /p" in out
    finally:
        ex.close()


def test_bad_chunk_in_discarded_body_closes() -> None:
    # nginx reads the body bytes that came with the head before answering: the bad chunk is a 400
    ex = Exchange()
    try:
        out = ex.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + OK)
        assert statuses(out) == [400]
        assert ex.transport.closed or ex.transport.eof
    finally:
        ex.close()
    # arriving after the answer, it can only close the connection
    ex = Exchange()
    try:
        out = ex.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", b"zz\r\n" + OK)
        assert statuses(out) == [200]
        assert ex.transport.closed or ex.transport.eof
    finally:
        ex.close()


def test_nothing_is_answered_after_a_closing_error_in_the_same_feed() -> None:
    # the 413 closes the connection (lingering): the pipelined GET behind it is not answered
    ex = Exchange(make_config(client_max_body_size=4))
    try:
        out = ex.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" + OK + OK)
        assert statuses(out) == [413]
        assert ex.transport.closed or ex.transport.eof
    finally:
        ex.close()


# ---------------------------------------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PIPELINE = (
    OK
    + b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"
    + b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
    + b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n"
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(PIPELINE) - 1), max_size=12, unique=True))
def test_any_split_gives_the_same_responses(cuts: list[int]) -> None:
    points = sorted(cuts)
    chunks = [PIPELINE[a:b] for a, b in zip([0, *points], [*points, len(PIPELINE)], strict=True)]
    ex = Exchange()
    try:
        out = ex.feed(*chunks)
        assert statuses(out) == [200, 200, 200, 200]
        assert not ex.transport.closed
    finally:
        ex.close()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    ex = Exchange()
    try:
        out = ex.feed(data)
        for status in statuses(out):
            assert status in (200, 400, 405, 413, 414, 501, 505)
    finally:
        ex.close()
