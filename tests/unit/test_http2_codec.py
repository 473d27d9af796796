"""HTTP/2's pure parts: our HPACK encoder and remembering decoder, frame spelling, header-block reading."""

from __future__ import annotations

import hpack
from hypothesis import given, settings
from hypothesis import strategies as st

from pyginx.http2 import frames as f
from pyginx.http2.connection import name_kind, prepare
from pyginx.http2.hpack_codec import TABLE_SIZE_ZERO, HeaderDecoder, encode
from pyginx.http2.stream import parse_head, response_block

names = st.sampled_from(
    [
        b":status",
        b"content-type",
        b"content-length",
        b"server",
        b"x-custom",
        b"set-cookie",
        b"etag",
        b"a" * 200,
    ]
)
values = st.binary(max_size=300)


@given(st.lists(st.tuples(names, values), max_size=20))
def test_encoded_blocks_decode_to_the_same_headers(headers: list[tuple[bytes, bytes]]) -> None:
    decoder = hpack.Decoder()
    assert [tuple(h) for h in decoder.decode(encode(headers), raw=True)] == headers
    # and the table stays empty: blocks decode alike whatever came before, after a size update to 0
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = 0
    decoder.header_table.maxsize = 0
    assert [tuple(h) for h in decoder.decode(TABLE_SIZE_ZERO + encode(headers), raw=True)] == headers


request_fields = st.tuples(
    st.sampled_from([":path", "user-agent", "cookie", "x-a", "accept"]),
    st.sampled_from(["/", "/a", "/b", "x", "y" * 50]),
)


@settings(max_examples=60)
@given(st.lists(st.lists(request_fields, min_size=1, max_size=6), min_size=1, max_size=30), st.data())
def test_remembering_decoder_agrees_with_hpack(
    blocks: list[list[tuple[str, str]]], data: st.DataObject
) -> None:
    """A client's encoder indexing fields (and sometimes not, and shrinking its table): every block
    decodes to what a plain hpack decoder says, remembered or not."""
    encoder = hpack.Encoder()
    plain = hpack.Decoder()
    ours = HeaderDecoder(65536, 4096)
    for headers in blocks:
        if data.draw(st.booleans()):
            headers = data.draw(st.sampled_from(blocks))  # a block seen before: often all references
        if data.draw(st.integers(0, 10)) == 0:
            encoder.header_table_size = data.draw(st.sampled_from([0, 64, 4096]))
        block = encoder.encode(headers)
        expected = [(bytes(n), bytes(v)) for n, v in plain.decode(block, raw=True)]
        assert ours.decode(block).headers == expected


def test_a_block_of_references_is_remembered_and_forgotten_when_the_table_changes() -> None:
    encoder = hpack.Encoder()
    ours = HeaderDecoder(65536, 4096)
    first = encoder.encode([(":path", "/x"), ("user-agent", "t")])  # inserts into the table
    again = encoder.encode([(":path", "/x"), ("user-agent", "t")])  # references only
    ours.decode(first)
    assert not ours.known
    decoded = ours.decode(again)
    assert ours.decode(again) is decoded  # remembered
    ours.decode(encoder.encode([("x-new", "v")]))  # an insertion shifts every index
    assert not ours.known


def test_hpack_bomb_is_refused_by_the_list_size() -> None:
    encoder = hpack.Encoder()
    block = encoder.encode([("x-bomb", "a" * 4000)] * 20)
    try:
        HeaderDecoder(32768, 4096).decode(block)
    except hpack.OversizedHeaderListError:
        return
    raise AssertionError("an 80 KB header list was accepted under a 32 KB limit")


def test_header_frames_split_into_continuations() -> None:
    block = bytes(range(256)) * 100  # 25600 bytes
    parts = f.header_frames(1, block, True, 16384)
    heads = [f.parse_head(parts[i], 0) for i in range(0, len(parts), 2)]
    assert heads == [(16384, f.HEADERS, f.END_STREAM, 1), (9216, f.CONTINUATION, f.END_HEADERS, 1)]
    assert b"".join(parts[1::2]) == block
    assert f.header_frames(3, b"ab", False, 16384) == [f.head(2, f.HEADERS, f.END_HEADERS, 3), b"ab"]


def test_response_heads_become_blocks_without_connection_headers() -> None:
    head = b"HTTP/1.1 200 OK\r\nServer: pyginx\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
    status, headers, chunked = parse_head(head)
    assert (status, chunked) == (b"200", True)
    assert headers == [(b":status", b"200"), (b"server", b"pyginx")]
    status2, block, chunked2 = response_block(head)
    assert response_block(head) == (status2, block, chunked2)
    assert [tuple(h) for h in hpack.Decoder().decode(block, raw=True)] == headers


def test_header_names_as_nginx_takes_them() -> None:
    assert [name_kind(n) for n in (b"x-a1", b"x_a", b"x.a", b"X-A", b"x a", b"")] == [0, 1, 2, 3, 3, 3]


def _pseudo(path: str = "/") -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"https"), (b":path", path.encode())]


def test_prepare_reads_a_block_as_nginx() -> None:
    p = prepare(
        _pseudo("/p")
        + [
            (b":authority", b"h"),
            (b"cookie", b"a=1"),
            (b"x_u", b"1"),
            (b"cookie", b"b=2"),
            (b"connection", b"close"),
            (b"x.y", b"1"),
            (b"accept", b"*/*"),
        ],
        underscores=False,
    )
    assert (p.method, p.path, p.authority, p.scheme, p.error) == ("GET", "/p", "h", "https", None)
    assert p.headers == [("accept", "*/*"), ("cookie", "a=1; b=2")]
    assert ("x_u", "1") in prepare(_pseudo() + [(b"x_u", b"1")], underscores=True).headers
    for bad in (
        _pseudo() + [(b"X-Up", b"1")],
        [(b"x-a", b"1")] + _pseudo(),
        _pseudo() + [(b":method", b"POST")],
        _pseudo() + [(b":status", b"200")],
        _pseudo() + [(b"x-a", b"a\r\nb")],
        [(b":method", b"GET"), (b":path", b"/")],
        [(b":method", b"GET"), (b":scheme", b"https")],
    ):
        error = prepare(bad, underscores=False).error
        assert error is not None and error[0] == 400, bad
