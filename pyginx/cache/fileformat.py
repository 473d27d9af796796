"""The cache file's layout (pure): a fixed header, the key, the upstream response head, the body.

    header  FORMAT below: magic, version, valid/updating/error periods, Last-Modified, Date, the key's
            crc32, header_start, body_start, the body's length, ETag, Vary and the variant md5
    at header_start   b"\\nKEY: " key b"\\n"
    then    the upstream's response head as received (status line, header lines, blank line)
    at body_start     the body, body_len bytes (de-chunked)

As nginx's ngx_http_file_cache_header_t, with one addition: the body's length, so that a truncated
file (a crash while it was copied, a full disk) is recognised and discarded rather than served. A file
is only ever visible complete (written to a temp file and renamed), so this guards against outside damage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = b"PGXC"
VERSION = 1
ETAG_LEN = 128
VARY_LEN = 128
FORMAT = struct.Struct(f"<4sIqqqqqIIIqB{ETAG_LEN}sB{VARY_LEN}s16s")
HEADER_SIZE = FORMAT.size
KEY_PREFIX = b"\nKEY: "


class BadCacheFile(Exception):
    """str() is the reason, in nginx's words where it has them ("cache file ... is too small")."""


@dataclass
class FileHeader:
    valid_sec: int
    updating_sec: int
    error_sec: int
    last_modified: int
    date: int
    crc32: int
    header_start: int
    body_start: int
    body_len: int
    etag: str = ""
    vary: str = ""
    variant: bytes = b"\0" * 16

    def pack(self) -> bytes:
        etag = self.etag.encode("latin-1", "replace")[:ETAG_LEN]
        vary = self.vary.encode("latin-1", "replace")[:VARY_LEN]
        return FORMAT.pack(
            MAGIC,
            VERSION,
            self.valid_sec,
            self.updating_sec,
            self.error_sec,
            self.last_modified,
            self.date,
            self.crc32,
            self.header_start,
            self.body_start,
            self.body_len,
            len(etag),
            etag,
            len(vary),
            vary,
            self.variant,
        )


def unpack(data: bytes) -> FileHeader:
    if len(data) < HEADER_SIZE:
        raise BadCacheFile("is too small")
    (
        magic,
        version,
        valid,
        updating,
        error,
        lm,
        date,
        crc,
        hstart,
        bstart,
        blen,
        elen,
        etag,
        vlen,
        vary,
        var,
    ) = FORMAT.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise BadCacheFile("version mismatch")
    if elen > ETAG_LEN or vlen > VARY_LEN:
        raise BadCacheFile("has incorrect vary length")
    if hstart != HEADER_SIZE or bstart < hstart or blen < 0:
        raise BadCacheFile("has too long header")
    return FileHeader(
        valid,
        updating,
        error,
        lm,
        date,
        crc,
        hstart,
        bstart,
        blen,
        etag[:elen].decode("latin-1"),
        vary[:vlen].decode("latin-1"),
        var,
    )


def key_block(key: str) -> bytes:
    return KEY_PREFIX + key.encode("utf-8", "surrogateescape") + b"\n"


def encode_head(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}".rstrip() + "\r\n"]
    lines.extend(f"{n}: {v}\r\n" for n, v in headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", "replace")


def decode_head(raw: bytes) -> tuple[int, list[tuple[str, str]]]:
    """The status and header list of a stored head (written by encode_head)."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        raise BadCacheFile("contains invalid header")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            break
        name, colon, value = line.partition(":")
        if not colon or not name:
            raise BadCacheFile("contains invalid header")
        headers.append((name, value.strip()))
    return int(status_line[1]), headers


def build(header: FileHeader, key: str, head: bytes) -> bytes:
    """The bytes before the body; sets header_start and body_start."""
    kb = key_block(key)
    header.header_start = HEADER_SIZE
    header.body_start = HEADER_SIZE + len(kb) + len(head)
    return header.pack() + kb + head


@dataclass
class Parsed:
    header: FileHeader
    key: str
    status: int
    headers: list[tuple[str, str]]


def parse(prefix: bytes, file_size: int, key: str | None = None, crc: int | None = None) -> Parsed:
    """Validate and take apart the first bytes of a cache file (at least up to body_start)."""
    h = unpack(prefix)
    if crc is not None and h.crc32 != crc:
        raise BadCacheFile("has md5 collision")
    if len(prefix) < h.body_start:
        raise BadCacheFile("has too long header")
    kb_end = prefix.find(b"\n", h.header_start + len(KEY_PREFIX))
    if prefix[h.header_start : h.header_start + len(KEY_PREFIX)] != KEY_PREFIX or kb_end < 0:
        raise BadCacheFile("has md5 collision")
    stored_key = prefix[h.header_start + len(KEY_PREFIX) : kb_end].decode("utf-8", "surrogateescape")
    if key is not None and stored_key != key:
        raise BadCacheFile("has md5 collision")
    if file_size != h.body_start + h.body_len:
        raise BadCacheFile("is truncated")
    status, headers = decode_head(prefix[kb_end + 1 : h.body_start])
    return Parsed(h, stored_key, status, headers)
