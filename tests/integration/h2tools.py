"""A small blocking HTTP/2 client over TLS for tests (the `h2` library), with raw-frame access for the
attack tests (hyperframe, hpack)."""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events


@dataclass
class Reply:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b""
    ended: bool = False
    reset: int | None = None


class H2Client:
    def __init__(
        self,
        port: int,
        ctx: ssl.SSLContext,
        server_name: str = "localhost",
        settings: dict[int, int] | None = None,
    ) -> None:
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
        self.alpn = self.sock.selected_alpn_protocol()
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        if settings:
            self.h2.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.h2.initiate_connection()
        self.flush()
        self.replies: dict[int, Reply] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.authority = f"localhost:{port}"
        self.inbuf = b""
        self.goaways: list[int] = []

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def start(
        self, path: str, method: str = "GET", headers: list[tuple[str, str]] | None = None, end: bool = True
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "https"), (":authority", self.authority)]
        self.h2.send_headers(sid, hdrs + (headers or []), end_stream=end)
        self.flush()
        self.replies[sid] = Reply()
        return sid

    def send_body(self, sid: int, body: bytes, end: bool = True) -> None:
        """Send as the flow-control window allows, reading meanwhile (window updates arrive as events)."""
        view = body
        deadline = time.monotonic() + 10
        while view:
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                self.pump(0.2)
                if time.monotonic() > deadline:
                    raise AssertionError("the server never opened the window")
                continue
            self.h2.send_data(sid, view[:window])
            view = view[window:]
            self.flush()
        if end:
            self.h2.end_stream(sid)
            self.flush()

    def pump(self, timeout: float) -> bool:
        """Read once (up to `timeout`); False when the connection is closed."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        except (ConnectionError, ssl.SSLError, OSError):
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        data = self._take_goaway(data)
        for event in self.h2.receive_data(data):
            self._event(event)
        self.flush()
        return True

    def _take_goaway(self, data: bytes) -> bytes:
        """h2 (as a client) stops reading at a GOAWAY, even a graceful one that lets open streams
        finish: GOAWAY frames are taken out here and recorded, the rest goes to h2."""
        self.inbuf += data
        out = b""
        while True:
            if len(self.inbuf) < 9:
                break
            length = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + length:
                break
            frame, self.inbuf = self.inbuf[: 9 + length], self.inbuf[9 + length :]
            if frame[3] == 0x7:
                self.goaways.append(int.from_bytes(frame[13:17], "big"))
                if self.goaways[-1] != 0:  # an error: the connection is over, let h2 see it
                    out += frame
            else:
                out += frame
        return out

    def _event(self, event: object) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            r = self.replies.setdefault(event.stream_id, Reply())
            for k, v in event.headers:
                name, value = k.decode(), v.decode()
                if name == ":status":
                    r.status = int(value)
                else:
                    r.headers[name] = value
            if event.stream_ended is not None:
                r.ended = True
        elif isinstance(event, h2.events.DataReceived):
            r = self.replies.setdefault(event.stream_id, Reply())
            r.data += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if event.stream_ended is not None:
                r.ended = True
        elif isinstance(event, h2.events.StreamEnded):
            self.replies.setdefault(event.stream_id, Reply()).ended = True
        elif isinstance(event, h2.events.StreamReset):
            self.replies.setdefault(event.stream_id, Reply()).reset = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event

    def wait(self, *sids: int, timeout: float = 10) -> list[Reply]:
        deadline = time.monotonic() + timeout
        while not all(self.replies[s].ended or self.replies[s].reset is not None for s in sids):
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete response on streams {sids}: {self.replies}")
            if not self.pump(0.2):
                break
        return [self.replies[s] for s in sids]

    def get(self, path: str, **kw: object) -> Reply:
        sid = self.start(path, **kw)  # type: ignore[arg-type]
        return self.wait(sid)[0]

    def wait_closed(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError("the server did not close the connection")
            self.pump(0.2)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
