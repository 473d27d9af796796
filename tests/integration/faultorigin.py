"""A deliberately careless (and sometimes broken) HTTP origin for hardening tests (issue 12).

A thread per connection over plain sockets, so that each fault is exact at the byte level. The path
picks the behaviour; everything else is a keep-alive origin that reads a request head and answers
without reading any body (the origin that exposes upstream connections reused out of step):

    /ok                   200 "ok\\n"
    /status/NNN           status NNN with the reason phrase "Weird Reason"
    /fault/reset          RST before any response byte
    /fault/close          close before any response byte
    /fault/partial-head   half a status line, then close
    /fault/short-body     Content-Length: 100, 10 bytes, then close
    /fault/bad-chunk      a chunked body with a malformed size line
    /fault/stall          never answers (the proxy's read timeout)
    /fault/garbage        a line that is not a status line
    /fault/cl-te          both Content-Length and Transfer-Encoding
    /fault/dup-cl         two different Content-Length headers
    /fault/huge-head      a header larger than proxy_buffer_size
    anything else         404 naming the request line it read

Every connection and every request head is recorded (`heads`, `connections`). All sockets are on
127.0.0.1; `stop()` closes every one of them.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

FAULTS = {
    # path: (what the proxy must answer, what the error log says)
    "/fault/reset": (502, "recv() failed (104: Connection reset by peer)"),
    "/fault/close": (502, "upstream prematurely closed connection"),
    "/fault/partial-head": (502, "upstream prematurely closed connection"),
    "/fault/garbage": (502, "upstream sent no valid HTTP/1.0 header"),
    "/fault/cl-te": (502, "upstream sent"),
    "/fault/dup-cl": (502, "upstream sent duplicate header line"),
    "/fault/huge-head": (502, "upstream sent too big header"),
    "/fault/stall": (504, "upstream timed out (110: Connection timed out)"),
}


class FaultOrigin:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        self.connections = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stopped = True
        self.sock.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self._stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        buf = b""
        c.settimeout(30)
        try:
            while not self._stopped:
                while b"\r\n\r\n" not in buf:
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                with self._lock:
                    self.heads.append(head)
                if not self._answer(c, head):
                    return
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _answer(self, c: socket.socket, head: bytes) -> bool:
        """Answer one request; False to close the connection."""
        line = head.split(b"\r\n", 1)[0]
        parts = line.split(b" ")
        path = parts[1].decode("latin-1") if len(parts) > 1 else "?"
        path = path.split("?", 1)[0]
        close = b"\r\nconnection: close" in head.lower()
        if path.endswith("/ok"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        elif "/status/" in path:
            code = path.rsplit("/", 1)[1].encode()
            c.sendall(b"HTTP/1.1 " + code + b" Weird Reason\r\nContent-Length: 2\r\n\r\nst")
        elif path.endswith("/fault/reset"):
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif path.endswith("/fault/close"):
            return False
        elif path.endswith("/fault/partial-head"):
            c.sendall(b"HTTP/1.1 20")
            return False
        elif path.endswith("/fault/short-body"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            return False
        elif path.endswith("/fault/bad-chunk"):
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
            return False
        elif path.endswith("/fault/stall"):
            time.sleep(10)
            return False
        elif path.endswith("/fault/garbage"):
            c.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            return False
        elif path.endswith("/fault/cl-te"):
            c.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n"
            )
            return False
        elif path.endswith("/fault/dup-cl"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
            return False
        elif path.endswith("/fault/huge-head"):
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"x" * 65536 + b"\r\nContent-Length: 2\r\n\r\nab")
            return False
        else:
            body = b"nf " + line + b"\n"
            c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return not close


@pytest.fixture(name="fault_origin")
def fault_origin_fixture() -> Iterator[FaultOrigin]:
    o = FaultOrigin()
    try:
        yield o
    finally:
        o.stop()
