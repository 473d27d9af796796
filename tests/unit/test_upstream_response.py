"""The upstream response parser: nginx's strictness, body framing, any split of the input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyginx.errors import UpstreamError, UpstreamInvalidHeader
from pyginx.upstream.response import ResponseParser


class _Parsed:
    """A parser with the body the helper below collected (a wrapper: ResponseParser has slots, and a
    compiled build's class cannot be subclassed here)."""

    def __init__(self, parser: ResponseParser, body: bytes) -> None:
        self.parser = parser
        self.body = body

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


def parse(data: bytes, *, head: bool = False, limit: int = 4096, step: int = 0, eof: bool = True) -> Any:
    p = ResponseParser(limit, head)
    body = []
    step = step or max(1, len(data))
    for i in range(0, len(data), step):
        body += p.feed(data[i : i + step])
    if eof:
        p.feed_eof()
    return _Parsed(p, b"".join(body))


def body_of(p: Any) -> bytes:
    return p.body  # type: ignore[no-any-return]


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer-X: t\r\n\r\n"
)


def test_content_length_body() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Y: z\r\n\r\nabc")
    assert p.head is not None
    assert (p.head.status, p.head.reason, p.head.content_length) == (200, "OK", 3)
    assert p.head.headers == [("Content-Length", "3"), ("X-Y", "z")]
    assert body_of(p) == b"abc" and p.complete and p.keepalive


def test_chunked_body_is_dechunked_and_trailers_dropped() -> None:
    p = parse(CHUNKED)
    assert body_of(p) == b"hello world!"
    assert p.framing == "chunked" and p.complete and p.keepalive
    assert p.head is not None and ("Trailer-X", "t") not in p.head.headers


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(CHUNKED)), max_size=12))
def test_any_split_gives_the_same_result(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces, prev = [], 0
    for c in points:
        pieces.append(CHUNKED[prev:c])
        prev = c
    pieces.append(CHUNKED[prev:])
    p = ResponseParser(4096)
    body = b"".join(b"".join(p.feed(piece)) for piece in pieces if piece)
    assert body == b"hello world!" and p.complete and p.keepalive


def test_byte_by_byte_content_length() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", step=1)
    assert body_of(p) == b"hello" and p.keepalive


def test_read_until_close() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert body_of(p) == b"all of it" and p.framing == "close" and not p.keepalive


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"",
    ],
)
def test_cut_short_is_an_error(data: bytes) -> None:
    with pytest.raises(UpstreamError, match="prematurely closed"):
        parse(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "at the same time"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "at the same time"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "duplicate header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", 'invalid "Content-Length"'),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 'invalid "Content-Length"'),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 'unknown "Transfer-Encoding"'),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 'unknown "Transfer-Encoding"'),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "duplicate header line",
        ),
        (b"garbage\r\n\r\n", "no valid HTTP/1.0 header"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "no valid HTTP/1.0 header"),
        (b"HTTP/2.0 200 OK\r\n\r\n", "no valid HTTP/1.0 header"),
        (b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "invalid header"),
        (b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n", "invalid header"),
    ],
)
def test_invalid_responses(data: bytes, message: str) -> None:
    with pytest.raises(UpstreamInvalidHeader, match=message):
        parse(data, eof=False)


def test_bad_chunk_is_raised_after_the_good_data() -> None:
    p = ResponseParser(4096)
    pieces = p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    assert p.head is not None and pieces == [b"abc"]
    assert isinstance(p.error, UpstreamInvalidHeader)
    with pytest.raises(UpstreamInvalidHeader, match="invalid chunked"):
        p.feed(b"more")
    with pytest.raises(UpstreamInvalidHeader, match="invalid chunked"):
        p.feed_eof()


def test_header_bigger_than_the_buffer() -> None:
    big = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 5000 + b"\r\n\r\n"
    with pytest.raises(UpstreamInvalidHeader, match="too big header"):
        parse(big, eof=False)
    with pytest.raises(UpstreamInvalidHeader, match="too big header"):
        parse(big[:4500], eof=False, step=100)  # noticed before the end of the head arrives
    assert parse(big, limit=8192).head is not None


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(status: int) -> None:
    p = parse(b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status)
    assert body_of(p) == b"" and p.complete and p.keepalive


def test_head_response_has_no_body_whatever_it_says() -> None:
    for framing in (b"Content-Length: 100", b"Transfer-Encoding: chunked"):
        p = parse(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n", head=True)
        assert p.complete and body_of(p) == b"" and p.keepalive


def test_interim_responses_are_skipped() -> None:
    p = parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"
    )
    assert p.head is not None and p.head.status == 200 and body_of(p) == b"z"


def test_switching_protocols_keeps_the_tunnel_bytes() -> None:
    p = parse(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"
    )
    assert p.head is not None and p.head.status == 101
    assert p.extra == b"\x81\x02hi" and not p.keepalive


def test_http10_and_connection_close_are_not_reused() -> None:
    assert not parse(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx").keepalive
    assert not parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx").keepalive


def test_bytes_after_the_response_make_the_connection_unusable() -> None:
    p = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA")
    assert body_of(p) == b"x" and p.extra == b"EXTRA" and not p.keepalive
    p = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    )
    assert body_of(p) == b"x" and not p.keepalive


def test_bare_lf_in_head_is_accepted_as_nginx_does() -> None:
    p = parse(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    assert body_of(p) == b"ok"


_TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1
)
_VALUE = st.binary(max_size=20).map(lambda b: bytes(c for c in b if c == 9 or 32 <= c <= 126 or c >= 128))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"0", b"1"]),
    st.integers(min_value=200, max_value=599),
    st.one_of(st.none(), _VALUE),
    st.lists(st.tuples(_TOKEN, _VALUE), max_size=8),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
)
def test_plain_heads_read_as_httptools_reads_them(
    minor: bytes, status: int, reason: bytes | None, headers: list[tuple[str, bytes]], length: int | None
) -> None:
    """The regular-expression path for plain heads gives exactly what the general path gives."""
    from pyginx.upstream.response import _parse_head, _plain_head

    line = b"HTTP/1.%s %d" % (minor, status) + (b" " + reason if reason is not None else b"") + b"\r\n"
    fields = [(n.encode(), v) for n, v in headers if n.lower() not in ("content-length", "transfer-encoding")]
    if length is not None:
        fields.append((b"Content-Length", b"%d" % length))
    block = line + b"".join(n + b":" + v + b"\r\n" for n, v in fields) + b"\r\n"
    plain = _plain_head(block)
    general = _parse_head(block)[0]
    assert plain is not None
    assert plain == general


def test_a_head_seen_before_is_parsed_once_and_the_cache_stays_bounded() -> None:
    from pyginx.upstream import response

    head = b"HTTP/1.1 200 OK\r\nX-Cached: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
    first, second = ResponseParser(4096), ResponseParser(4096)
    assert first.feed(head + b"ok") == [b"ok"] and second.feed(head + b"ok") == [b"ok"]
    assert first.head is not None and first.head is second.head  # shared, never modified
    assert first.head.names == ["x-cached", "content-length", "connection"]
    assert first.head.connection_close and not second.keepalive
    for i in range(response._PLAIN_CACHE_SIZE + 5):
        other = ResponseParser(4096)
        other.feed(b"HTTP/1.1 200 OK\r\nX-N: %d\r\nContent-Length: 0\r\n\r\n" % i)
        assert other.head is not None and other.head.get("X-N") == str(i) and other.complete
    assert len(response._PLAIN_CACHE) <= response._PLAIN_CACHE_SIZE
