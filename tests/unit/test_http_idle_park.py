"""An idle keep-alive connection parks (gives back its parser and the last head's pieces) and the
next request on it is read as if nothing happened: split across feeds, pipelined, or refused."""

from __future__ import annotations

import pytest

from pyginx.http import connection
from tests.unit.fake_http import Exchange, statuses

GET = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"


def test_a_parked_connection_answers_its_next_requests() -> None:
    ex = Exchange()
    try:
        assert statuses(ex.feed(GET)) == [200]
        ex.conn.park_idle()
        assert ex.conn.parser is None and not ex.conn._headers
        out = ex.feed(GET[:7], GET[7:] + GET)  # split in two feeds, then a pipelined one
        assert statuses(out) == [200, 200, 200] and out.endswith(b"ok GET /a")
        assert ex.conn.parser is not None and not ex.conn._slow
        ex.conn.park_idle()
        assert statuses(ex.feed(b"GET /b HTTP/1.1\r\n\r\n"))[-1] == 400  # no Host: still refused
    finally:
        ex.close()


def test_a_connection_inside_a_request_does_not_park() -> None:
    ex = Exchange()
    try:
        ex.feed(GET[:10])  # a head half read
        ex.conn.park_idle()
        assert ex.conn.parser is not None
        assert statuses(ex.feed(GET[10:])) == [200]
    finally:
        ex.close()


def test_with_many_connections_open_an_idle_one_parks_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_PARK_AT_ONCE", 0)
    ex = Exchange()
    try:
        assert statuses(ex.feed(GET + GET[:5])) == [200]
        assert ex.conn.parser is not None  # inside the next head: kept
        assert statuses(ex.feed(GET[5:])) == [200, 200]
        assert ex.conn.parser is None  # idle: parked by the feed itself
        assert statuses(ex.feed(GET)) == [200, 200, 200]
    finally:
        ex.close()
