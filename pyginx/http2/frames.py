"""HTTP/2 frames (RFC 9113 section 4 and 6): the constants, and the bytes of the frames a server sends.

Pure functions: the connection (connection.py) decides what to send, these only spell it. Parsing is
the connection's own loop (a 9-byte header, then the payload), since it is where the state is.
"""

from __future__ import annotations

import struct
from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

# flags
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

# error codes (section 7)
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
ENHANCE_YOUR_CALM: Final = 0xB

# settings (section 6.5.2)
HEADER_TABLE_SIZE: Final = 0x1
ENABLE_PUSH: Final = 0x2
MAX_CONCURRENT_STREAMS: Final = 0x3
INITIAL_WINDOW_SIZE: Final = 0x4
MAX_FRAME_SIZE: Final = 0x5
MAX_HEADER_LIST_SIZE: Final = 0x6

DEFAULT_WINDOW: Final = 65535
DEFAULT_FRAME_SIZE: Final = 16384
MAX_WINDOW: Final = 2**31 - 1
MAX_FRAME_SIZE_LIMIT: Final = 2**24 - 1

# length (24 bits, as a 16-bit high part and an 8-bit low part), type, flags, stream id
_HEAD: Final = struct.Struct(">HBBBI")
_U32: Final = struct.Struct(">I")
_SETTING: Final = struct.Struct(">HI")
_TWO_U32: Final = struct.Struct(">II")


def head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte frame header."""
    return _HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


def parse_head(buf: bytes, at: int) -> tuple[int, int, int, int]:
    """(length, type, flags, stream id) of the frame header at buf[at:at+9]; the reserved bit is dropped."""
    high, low, kind, flags, sid = _HEAD.unpack_from(buf, at)
    return (high << 8) | low, kind, flags, sid & 0x7FFFFFFF


def settings(values: list[tuple[int, int]]) -> bytes:
    payload = b"".join(_SETTING.pack(key, value) for key, value in values)
    return head(len(payload), SETTINGS, 0, 0) + payload


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]


SETTINGS_ACK: Final = head(0, SETTINGS, ACK, 0)


def ping_ack(payload: bytes) -> bytes:
    return head(8, PING, ACK, 0) + payload


def goaway(last_stream_id: int, code: int) -> bytes:
    return head(8, GOAWAY, 0, 0) + _TWO_U32.pack(last_stream_id, code)


def rst_stream(stream_id: int, code: int) -> bytes:
    return head(4, RST_STREAM, 0, stream_id) + _U32.pack(code)


def window_update(stream_id: int, increment: int) -> bytes:
    return head(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def u32(payload: bytes) -> int:
    """The 31-bit number a WINDOW_UPDATE, RST_STREAM or GOAWAY payload starts with."""
    value: int = _U32.unpack_from(payload, 0)[0]
    return value


def header_frames(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> list[bytes]:
    """A header block as HEADERS (+ CONTINUATION frames when it is larger than the peer's frame size)."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return [head(len(block), HEADERS, flags | END_HEADERS, stream_id), block]
    out = [head(max_frame, HEADERS, flags, stream_id), block[:max_frame]]
    at = max_frame
    while at < len(block):
        part = block[at : at + max_frame]
        at += len(part)
        out.append(head(len(part), CONTINUATION, END_HEADERS if at >= len(block) else 0, stream_id))
        out.append(part)
    return out
