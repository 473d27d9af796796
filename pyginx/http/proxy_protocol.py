"""The PROXY protocol (HAProxy's, v1 text and v2 binary) read at the start of a connection, before any
HTTP, on a `listen ... proxy_protocol` socket (nginx's ngx_proxy_protocol_read).

`parse(data)` is the pure part: it returns NEED_MORE, or (header, bytes consumed), or raises
BrokenHeader with nginx's message. `receive(conn, data)` is the connection's hook: it buffers until the
header is whole, records it in `conn.proxy_protocol` ($proxy_protocol_addr and friends, and
`real_ip_header proxy_protocol`), and hands back the bytes after it; a bad header is logged as nginx
logs it (`broken header: "..." while reading PROXY protocol, client: ..., server: ...`) and closes the
connection.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyginx.http.connection import HttpConnection

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest v1 line, CRLF included (HAProxy's specification)
V2_MAX = 4096  # bounded: TLVs beyond this are refused as "header is too large"
_V2_HEAD = struct.Struct("!12sBBH")


@dataclass(frozen=True)
class ProxyHeader:
    src_addr: str = ""
    src_port: int = 0
    dst_addr: str = ""
    dst_port: int = 0


class BrokenHeader(Exception):
    pass


NEED_MORE = None


class Pending:
    """The bytes of a header not yet whole (the connection's `proxy_protocol` until it is)."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""


def _printable(data: bytes) -> str:
    end = len(data)
    for i, b in enumerate(data):
        if b in (13, 10):
            end = i
            break
    return data[:end].decode("latin-1")


def _addr(text: bytes, v6: bool) -> str:
    try:
        s = text.decode("ascii")
        ip = ipaddress.IPv6Address(s) if v6 else ipaddress.IPv4Address(s)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError from exc
    return str(ip) if not v6 else s


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise ValueError
    return int(text)


def parse(data: bytes) -> tuple[ProxyHeader | None, int] | None:
    """(header, consumed) for a whole header (header None: UNKNOWN / LOCAL, addresses unchanged),
    NEED_MORE, or BrokenHeader."""
    if data[: len(SIGNATURE)] == SIGNATURE[: len(data)] and len(data) < 16:
        return NEED_MORE
    if data.startswith(SIGNATURE):
        return _parse_v2(data)
    if len(data) < 8 and b"PROXY "[: len(data)] == data[:6]:
        return NEED_MORE
    end = data.find(b"\r\n")
    if end < 0:
        if len(data) >= V1_MAX or not data.startswith(b"PROXY "):
            raise BrokenHeader(f'broken header: "{_printable(data)}"')
        return NEED_MORE
    line = data[:end]
    if not line.startswith(b"PROXY "):
        raise BrokenHeader(f'broken header: "{_printable(data)}"')
    rest = line[6:]
    if rest.startswith(b"UNKNOWN"):
        return None, end + 2
    try:
        proto, src, dst, sport, dport = rest.split(b" ")
        if proto not in (b"TCP4", b"TCP6"):
            raise ValueError
        v6 = proto == b"TCP6"
        header = ProxyHeader(_addr(src, v6), _port(sport), _addr(dst, v6), _port(dport))
    except ValueError:
        raise BrokenHeader(f'broken header: "{_printable(data)}"') from None
    return header, end + 2


def _parse_v2(data: bytes) -> tuple[ProxyHeader | None, int] | None:
    if len(data) < 16:
        return NEED_MORE
    _sig, ver_cmd, fam, length = _V2_HEAD.unpack_from(data)
    version = ver_cmd >> 4
    if version != 2:
        raise BrokenHeader(f"unknown PROXY protocol version: {version}")
    if length > V2_MAX:
        raise BrokenHeader("header is too large")
    total = 16 + length
    if len(data) < total:
        return NEED_MORE
    body = data[16:total]
    if ver_cmd & 0x0F != 1 or fam & 0x0F != 1:  # LOCAL, or not a stream: keep the real addresses
        return None, total
    family = fam >> 4
    if family == 1:
        if len(body) < 12:
            raise BrokenHeader("broken header")
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack_from("!HH", body, 8)
    elif family == 2:
        if len(body) < 36:
            raise BrokenHeader("broken header")
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])  # type: ignore[assignment]
        sport, dport = struct.unpack_from("!HH", body, 32)
    else:
        return None, total
    return ProxyHeader(str(src), sport, str(dst), dport), total


def receive(conn: HttpConnection, data: bytes) -> bytes | None:
    """The connection's input while its PROXY header is pending: the bytes after the header once it
    is whole (may be empty), or None (need more, or the connection was closed)."""
    pending = conn.proxy_protocol
    assert isinstance(pending, Pending)
    buf = pending.buf + data
    try:
        got = parse(buf)
    except BrokenHeader as exc:
        from pyginx.log import error_log

        error_log().log(
            "error",
            f"{exc} while reading PROXY protocol, client: {conn.client_addr}, server: {conn.server_addr}:{conn.server_port}",
            conn.conn_id,
        )
        conn.proxy_protocol = None
        conn.close(abort=True)
        return None
    if got is NEED_MORE:
        if len(buf) > V2_MAX + 16:
            conn.close(abort=True)
            return None
        pending.buf = buf
        return None
    header, used = got
    conn.proxy_protocol = header or ProxyHeader()
    return buf[used:]
