"""Drive HttpConnection without sockets: bytes in, bytes out (a fake transport, as uvicorn tests do)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from pyginx.config.model import (
    AccessLog,
    Http,
    HttpSettings,
    ListenAddr,
    Location,
    MainConfig,
    Return,
    Server,
)
from pyginx.http.connection import HttpConnection
from pyginx.http.server import ServerContext
from pyginx.modules.rewrite import ReturnOp, with_script

KEY = ("127.0.0.1", 8080, None)


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.eof = False
        self.paused = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, parts: Any) -> None:
        for p in parts:
            self.out += p

    def close(self) -> None:
        if not self.closed:
            self.closed = True

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def make_config(**settings: Any) -> MainConfig:
    base = HttpSettings(**{"access_log": (AccessLog(None),), **settings})
    answer = with_script(base, ReturnOp(Return(200, "ok $request_method $uri")))
    server = Server((ListenAddr("127.0.0.1", 8080),), ("localhost",), base, (Location("", "/", answer),))
    return MainConfig(file="test.yaml", prefix="/tmp", http=Http(base, (server,), {}, {}))


class Exchange:
    """One connection fed with chunks; `responses()` splits what came out."""

    def __init__(self, config: MainConfig | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.ctx = ServerContext(config or make_config(), self.loop)
        self.conn = HttpConnection(self.ctx, KEY)
        self.transport = FakeTransport()
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]

    def feed(self, *chunks: bytes) -> bytes:
        for c in chunks:
            if self.transport.closed or self.transport.eof:
                break
            self.conn.data_received(c)
        self.loop.run_until_complete(asyncio.sleep(0))
        return bytes(self.transport.out)

    def close(self) -> None:
        self.loop.close()


def statuses(out: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\nServer: ", out)]
