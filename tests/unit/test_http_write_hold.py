"""Small writes wait for the end of the loop turn, then leave in order (HttpConnection.write).

The hold batches the answers to one epoll batch of requests into back-to-back sends (fewer
wake-ups of the clients); these tests pin that nothing is lost, reordered or sent after the FIN.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pyginx.http.connection import HttpConnection

from .fake_http import KEY, Exchange, FakeTransport, statuses

GET = b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n"


class RecordingTransport(FakeTransport):
    """Keeps the order of sends and closes."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self.events.append(("write", bytes(data)))

    def writelines(self, parts: Any) -> None:
        for p in parts:
            self.write(p)

    def close(self) -> None:
        self.events.append(("close", b""))
        super().close()

    def write_eof(self) -> None:
        self.events.append(("eof", b""))
        super().write_eof()


def _turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_answers_of_one_turn_leave_together_at_its_end() -> None:
    ex = Exchange()
    try:
        other = HttpConnection(ex.ctx, KEY)
        other_t = FakeTransport()
        other.connection_made(other_t)  # type: ignore[arg-type]
        ex.conn.data_received(GET)
        other.data_received(GET)
        # answered (the handler ran) but held: nothing sent inside the turn
        assert ex.transport.out == b"" and other_t.out == b""
        _turn(ex.loop)
        assert statuses(bytes(ex.transport.out)) == [200]
        assert statuses(bytes(other_t.out)) == [200]
    finally:
        ex.close()


def test_pipelined_answers_are_one_send_in_order() -> None:
    ex = Exchange()
    try:
        t = RecordingTransport()
        conn = HttpConnection(ex.ctx, KEY)
        conn.connection_made(t)  # type: ignore[arg-type]
        conn.data_received(GET + GET.replace(b"/a", b"/b") + GET.replace(b"/a", b"/c"))
        _turn(ex.loop)
        writes = [data for kind, data in t.events if kind == "write"]
        assert len(writes) == 1
        assert re.findall(rb"ok GET /[abc]", writes[0]) == [b"ok GET /a", b"ok GET /b", b"ok GET /c"]
        assert statuses(writes[0]) == [200, 200, 200]
    finally:
        ex.close()


def test_held_answer_goes_before_the_close() -> None:
    ex = Exchange()
    try:
        t = RecordingTransport()
        conn = HttpConnection(ex.ctx, KEY)
        conn.connection_made(t)  # type: ignore[arg-type]
        conn.data_received(b"GET /a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        kinds = [kind for kind, _ in t.events]
        assert kinds == ["write", "close"]  # flushed by close, inside the turn
        assert statuses(t.events[0][1]) == [200]
        _turn(ex.loop)
        assert [kind for kind, _ in t.events] == ["write", "close"]  # nothing after the close
    finally:
        ex.close()


def test_large_write_goes_at_once_after_what_is_held() -> None:
    ex = Exchange()
    try:
        t = RecordingTransport()
        conn = HttpConnection(ex.ctx, KEY)
        conn.connection_made(t)  # type: ignore[arg-type]
        conn.write(b"head")
        assert t.events == []
        big = b"x" * (64 * 1024)
        conn.write(big)
        assert bytes(t.out) == b"head" + big
        _turn(ex.loop)
        assert bytes(t.out) == b"head" + big  # the flush at the turn's end has nothing left to send
    finally:
        ex.close()


def test_lost_connection_drops_what_is_held() -> None:
    ex = Exchange()
    try:
        t = RecordingTransport()
        conn = HttpConnection(ex.ctx, KEY)
        conn.connection_made(t)  # type: ignore[arg-type]
        conn.write(b"late")
        conn.connection_lost(ConnectionResetError())
        _turn(ex.loop)
        assert t.events == []
    finally:
        ex.close()
