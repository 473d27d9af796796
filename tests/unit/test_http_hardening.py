"""Regression tests for issue 12 (hardening): requests a hostile client sends, answered as nginx 1.22
answers them (each expected status checked against the real nginx). Fed whole, byte by byte and in
random chunks, as the parser tests are."""

from __future__ import annotations

import pytest

from tests.unit.fake_http import Exchange, make_config, statuses
from tests.unit.test_http_parser import _chunkings

H = b"Host: localhost\r\n"


def _feed_all(data: bytes, **settings: object) -> list[tuple[str, bytes, Exchange]]:
    runs = []
    for how, chunks in _chunkings(data):
        ex = Exchange(make_config(**settings) if settings else None)
        runs.append((how, ex.feed(*chunks), ex))
    return runs


def test_connect_is_405_and_closes_so_its_body_is_never_a_request() -> None:
    """Issue 12 item 1: CONNECT with a body holding a second request (request smuggling)."""
    hidden = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
    data = b"CONNECT /small.html HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(hidden) + hidden
    for how, out, ex in _feed_all(data):
        try:
            assert statuses(out) == [405], (how, out)
            assert b"Connection: close" in out, how
            assert ex.transport.closed or ex.transport.eof, how
        finally:
            ex.close()


def test_connect_without_body_then_pipelined_get_is_not_answered() -> None:
    data = b"CONNECT /x HTTP/1.1\r\n" + H + b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n"
    for how, out, ex in _feed_all(data):
        try:
            assert statuses(out) == [405], (how, out)
        finally:
            ex.close()


# nginx keeps TAB inside a header value (it skips only spaces around it), so a TAB anywhere in these
# three values makes them invalid: 400 for Host and Content-Length, 501 for Transfer-Encoding.
TAB_CASES = [
    ("host tab inside", b"GET / HTTP/1.1\r\nHost: loc\talhost\r\n\r\n", 400),
    ("host tab trailing", b"GET / HTTP/1.1\r\nHost: localhost\t\r\n\r\n", 400),
    ("te tab trailing", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 501),
    ("te tab inside", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chu\tnked\r\n\r\n0\r\n\r\n", 501),
    ("cl tab trailing", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2\t\r\n\r\nab", 400),
    ("cl tab inside", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\t0\r\n\r\n0123456789", 400),
    # absolute-form: the Host header is still checked (nginx validates it before the target's host wins)
    ("absolute form, bad host header", b"GET http://localhost/x HTTP/1.1\r\nHost: a..b\r\n\r\n", 400),
    # a Content-Length of 2^63 or more does not fit nginx's off_t: invalid, not too large
    ("cl 2^63", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 9223372036854775808\r\n\r\n", 400),
    ("cl 2^64", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 18446744073709551616\r\n\r\n", 400),
]


@pytest.mark.parametrize("name,data,status", TAB_CASES, ids=[c[0] for c in TAB_CASES])
def test_item6_refused_as_nginx(name: str, data: bytes, status: int) -> None:
    """Issue 12 item 6: TAB in Host / TE / CL values, absolute-form with a bad Host, CL >= 2^63."""
    for how, out, ex in _feed_all(data):
        try:
            assert statuses(out) == [status], (how, out)
            assert b"Connection: close" in out, how
        finally:
            ex.close()


def test_content_length_just_below_2_63_is_too_large_not_invalid() -> None:
    data = b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 9223372036854775807\r\n\r\n"
    for how, out, ex in _feed_all(data, client_max_body_size=1024):
        try:
            assert statuses(out) == [413], (how, out)
        finally:
            ex.close()


@pytest.mark.parametrize("length", [33, 64, 200])
def test_long_method_is_a_method_not_a_bad_request(length: int) -> None:
    """Issue 12 item 6: nginx has no length limit on a method token (a long one is 405 where it is
    not allowed); `return` answers any method."""
    method = b"A" * length
    data = method + b" /x HTTP/1.1\r\n" + H + b"\r\n"
    for how, out, ex in _feed_all(data):
        try:
            assert statuses(out) == [200], (how, out)
            assert out.endswith(b"ok " + method + b" /x"), (how, out[-80:])
        finally:
            ex.close()
