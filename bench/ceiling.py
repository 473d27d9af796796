"""The ceiling: the least a uvloop + httptools server in Python can do per request.

It parses each request with httptools (as pyginx does) and answers every one with the same bytes: a
response captured from pyginx for the small file, head and body, so that it writes exactly as many
bytes per request as pyginx. No routing, no files, no headers looked at: what Python, uvloop and
httptools cost per request and nothing more, the reference for how close pyginx's hot path gets.

    python bench/ceiling.py PORT RESPONSE_FILE

It forks one worker (so that the bench finds it as it finds pyginx's and nginx's) and stops both on
SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import httptools
import uvloop


class Responder(asyncio.Protocol):
    __slots__ = ("parser", "transport")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_complete(self) -> None:
        assert self.transport is not None
        self.transport.write(RESPONSE)
        if not self.parser.should_keep_alive():
            self.transport.close()


RESPONSE = b""


def serve(sock: socket.socket) -> None:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_until_complete(loop.create_server(Responder, sock=sock, backlog=4096))
    loop.run_forever()


def main() -> None:
    global RESPONSE
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as f:
        RESPONSE = f.read()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    pid = os.fork()
    if pid == 0:
        serve(sock)
        os._exit(0)
    sock.close()

    def stop(signum: int, frame: object) -> None:
        os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
