"""pyginx.http.chunklimit: the declared chunk sizes of a request body, judged as nginx judges them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyginx.http.chunklimit import INVALID, OK, TOO_LARGE, ChunkScan


def verdict(data: bytes, limit: int, bytewise: bool = False) -> int:
    scan = ChunkScan()
    for piece in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
        v = scan.feed(piece, limit)
        if v:
            return v
    return OK


def test_size_line_over_limit_is_413_at_its_first_data_byte() -> None:
    assert verdict(b"800\r\n", 1024) == OK  # nginx waits for a data byte
    assert verdict(b"800\r\na", 1024) == TOO_LARGE
    assert verdict(b"401\r\na", 1024) == TOO_LARGE
    assert verdict(b"400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n", 1024) == OK
    assert verdict(b"200\r\n" + b"a" * 512 + b"\r\n201\r\nb", 1024) == TOO_LARGE
    assert verdict(b"800;ext=1\r\nab", 1024) == TOO_LARGE
    assert verdict(b"800\r\nab", 0) == OK  # no limit


def test_size_over_2_63_is_invalid_before_its_line_ends() -> None:
    assert verdict(b"8000000000000000", 0) == INVALID
    assert verdict(b"7fffffffffffffff\r\n", 0) == OK
    assert verdict(b"fffffffffffffffff", 1024, bytewise=True) == INVALID


def test_last_chunk_ends_the_scan() -> None:
    scan = ChunkScan()
    assert scan.feed(b"3\r\nabc\r\n0\r\n\r\n", 2) == TOO_LARGE
    scan = ChunkScan()
    assert scan.feed(b"3\r\nabc\r\n0\r\nX-Trailer: 8000000000000000\r\n\r\n", 10) == OK
    assert scan.done


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=300), max_size=6), st.integers(1, 5000), st.data())
def test_any_split_gives_the_same_verdict(chunks: list[bytes], limit: int, data: st.DataObject) -> None:
    body = b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n\r\n"
    whole = verdict(body, limit)
    total = sum(len(c) for c in chunks)
    assert whole == (TOO_LARGE if total > limit else OK)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=5)))
    scan = ChunkScan()
    got = OK
    for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True):
        got = got or scan.feed(body[a:b], limit)
    assert got == whole
