"""Directory listings as nginx's autoindex module renders them (html, json, jsonp, xml).

Rendering is pure: `render_html(uri, entries, ...)` etc. take plain `Entry` values and return the body
bytes, byte for byte what nginx 1.31 sends without a `charset` directive (names are measured and cut
in bytes, as nginx does unless the response charset is utf-8). `scan()` is the only I/O: it reads a
directory (given as an open descriptor, so the symlink rules of paths.open_file apply to it).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass

from pyginx.handlers.conditional import http_date

NAME_LEN = 50  # NGX_HTTP_AUTOINDEX_NAME_LEN: the width of the name column
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# ngx_escape_uri's NGX_ESCAPE_URI_COMPONENT map: everything but ALPHA, DIGIT, "-", ".", "_", "~".
_COMPONENT = (0xFFFFFFFF, 0xFC009FFF, 0x78000001, 0xB8000001, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
_HTML = {ord("<"): b"&lt;", ord(">"): b"&gt;", ord("&"): b"&amp;", ord('"'): b"&quot;"}
_JSON_SHORT = {0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t", 0x08: b"\\b", 0x0C: b"\\f"}

CONTENT_TYPES = {
    "html": "text/html",
    "json": "application/json",
    "jsonp": "application/javascript",
    "xml": "text/xml; charset=utf-8",
}


@dataclass(frozen=True)
class Entry:
    """One directory entry: raw name bytes, kind, mtime (seconds) and size."""

    name: bytes
    is_dir: bool
    is_file: bool
    mtime: int
    size: int


def escape_uri_component(raw: bytes) -> bytes:
    """%XX-encode every byte but ALPHA / DIGIT / - . _ ~ (upper-case hex, as nginx)."""
    out = bytearray()
    for b in raw:
        if _COMPONENT[b >> 5] & (1 << (b & 0x1F)):
            out += b"%%%02X" % b
        else:
            out.append(b)
    return bytes(out)


def escape_html(raw: bytes) -> bytes:
    """ngx_escape_html: only < > & and double quote are replaced."""
    if not any(b in _HTML for b in raw):
        return raw
    out = bytearray()
    for b in raw:
        rep = _HTML.get(b)
        if rep is None:
            out.append(b)
        else:
            out += rep
    return bytes(out)


def escape_json(raw: bytes) -> bytes:
    r"""ngx_escape_json: backslash-escape " and \, short escapes for \n \r \t \b \f, \u00XX for other
    control bytes; bytes >= 0x20 (UTF-8 included) pass through unchanged."""
    out = bytearray()
    for b in raw:
        if b > 0x1F:
            if b in (0x22, 0x5C):
                out.append(0x5C)
            out.append(b)
        else:
            out += _JSON_SHORT.get(b) or b"\\u00%d%X" % (b >> 4, b & 0xF)
    return bytes(out)


def sort_entries(entries: list[Entry]) -> list[Entry]:
    """Directories first, then files; each group by name compared as bytes (nginx's strcmp)."""
    return sorted(entries, key=lambda e: (not e.is_dir, e.name))


def _human_size(size: int) -> bytes:
    """The non-exact size column: up to 9999 bytes as is, then K / M / G rounded half up."""
    if size > 1024 * 1024 * 1024 - 1:
        n, rest, scale = size // (1024**3), size % (1024**3), b"G"
        n += rest > 1024**3 // 2 - 1
    elif size > 1024 * 1024 - 1:
        n, rest, scale = size // (1024**2), size % (1024**2), b"M"
        n += rest > 1024**2 // 2 - 1
    elif size > 9999:
        n, rest, scale = size // 1024, size % 1024, b"K"
        n += rest > 511
    else:
        return b" %6d" % size
    return b"%6d%s" % (n, scale)


def render_html(
    uri: str,
    entries: list[Entry],
    exact_size: bool = True,
    localtime: bool = False,
    gmtoff: int | None = None,
) -> bytes:
    """The html listing: title and h1 with the (decoded, html-escaped) URI, a "../" link, then one
    line per entry: link, name padded or cut ("...&gt;") to 50 columns, date, size."""
    title = escape_html(uri.encode("utf-8", "surrogateescape"))
    out = bytearray(b"<html>\r\n<head><title>Index of ")
    out += title
    out += b"</title></head>\r\n<body>\r\n<h1>Index of "
    out += title
    out += b'</h1><hr><pre><a href="../">../</a>\r\n'
    if localtime:
        offset = time.localtime().tm_gmtoff if gmtoff is None else gmtoff
    else:
        offset = 0
    for e in entries:
        out += b'<a href="'
        out += escape_uri_component(e.name)
        if e.is_dir:
            out += b"/"
        out += b'">'
        length = len(e.name)
        if length > NAME_LEN:
            out += escape_html(e.name[: NAME_LEN - 3])
            out += b"..&gt;</a>"
        else:
            out += escape_html(e.name)
            if e.is_dir and NAME_LEN - length > 0:
                out += b"/"
                length += 1
            out += b"</a>"
            out += b" " * (NAME_LEN - length)
        tm = time.gmtime(e.mtime + offset)
        out += b" %02d-%s-%d %02d:%02d " % (
            tm.tm_mday,
            _MONTHS[tm.tm_mon - 1].encode(),
            tm.tm_year,
            tm.tm_hour,
            tm.tm_min,
        )
        if exact_size:
            out += b"                  -" if e.is_dir else b"%19d" % e.size
        else:
            out += b"      -" if e.is_dir else _human_size(e.size)
        out += b"\r\n"
    out += b"</pre><hr></body>\r\n</html>\r\n"
    return bytes(out)


def render_json(entries: list[Entry], callback: str | None = None) -> bytes:
    """`[` CRLF `{ "name":"x", "type":"file", "mtime":"<http date>", "size":N },` ... CRLF `]`.

    With a jsonp `callback`: `/* callback */` CRLF `cb(` ... `);`.
    """
    out = bytearray()
    if callback:
        out += b"/* callback */\r\n" + callback.encode("ascii") + b"("
    out += b"["
    for i, e in enumerate(entries):
        if i:
            out += b","
        kind = b"directory" if e.is_dir else b"file" if e.is_file else b"other"
        out += b'\r\n{ "name":"' + escape_json(e.name) + b'", "type":"' + kind
        out += b'", "mtime":"' + http_date(e.mtime).encode("ascii")
        if e.is_file:
            out += b'", "size":%d' % e.size
        else:
            out += b'"'
        out += b" }"
    out += b"\r\n]"
    if callback:
        out += b");"
    return bytes(out)


def render_xml(entries: list[Entry]) -> bytes:
    """`<?xml version="1.0"?>` `<list>` then `<file mtime="..." size="N">name</file>` lines."""
    out = bytearray(b'<?xml version="1.0"?>\r\n<list>\r\n')
    for e in entries:
        kind = b"directory" if e.is_dir else b"file" if e.is_file else b"other"
        tm = time.gmtime(e.mtime)
        out += b"<" + kind + b' mtime="%4d-%02d-%02dT%02d:%02d:%02dZ' % tm[:6]
        if e.is_file:
            out += b'" size="%d' % e.size
        out += b'">' + escape_html(e.name) + b"</" + kind + b">\r\n"
    out += b"</list>\r\n"
    return bytes(out)


def jsonp_callback(args: str) -> str | None:
    """The `callback` argument for the jsonp format: None if absent or empty (plain json then).

    ValueError (nginx answers 400) when it is longer than 128 bytes or has characters other than
    letters, digits, `_` and `.`.
    """
    for part in args.split("&"):
        key, eq, value = part.partition("=")
        if eq and key.lower() == "callback":
            break
    else:
        return None
    if not value:
        return None
    if len(value) > 128:
        raise ValueError("client sent too long callback name")
    for ch in value:
        if not (ch.isascii() and (ch.isalnum() or ch in "_.")):
            raise ValueError("client sent invalid callback name")
    return value


def render(
    fmt: str,
    uri: str,
    entries: list[Entry],
    args: str = "",
    exact_size: bool = True,
    localtime: bool = False,
) -> tuple[str, bytes]:
    """(Content-Type, body) for the configured `autoindex_format`. ValueError: bad jsonp callback."""
    entries = sort_entries(entries)
    if fmt == "json":
        return CONTENT_TYPES["json"], render_json(entries)
    if fmt == "jsonp":
        callback = jsonp_callback(args)
        if callback is None:
            return CONTENT_TYPES["json"], render_json(entries)
        return CONTENT_TYPES["jsonp"], render_json(entries, callback)
    if fmt == "xml":
        return CONTENT_TYPES["xml"], render_xml(entries)
    return CONTENT_TYPES["html"], render_html(uri, entries, exact_size, localtime)


def scan(dir_fd: int) -> list[Entry]:
    """Read a directory (an open descriptor; not closed here), dotfiles left out.

    Entries are stat()ed through symlinks; a dangling or looping symlink is described by lstat(),
    an entry that cannot be stat()ed for lack of permission is left out, as nginx does. Other
    errors propagate (the caller answers 500).
    """
    entries: list[Entry] = []
    with os.scandir(dir_fd) as it:
        for de in it:
            name = de.name
            if name.startswith("."):
                continue
            try:
                st = de.stat(follow_symlinks=True)
            except FileNotFoundError:
                st = de.stat(follow_symlinks=False)
            except PermissionError:
                continue
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
                st = de.stat(follow_symlinks=False)
            entries.append(
                Entry(
                    name=os.fsencode(name),
                    is_dir=stat.S_ISDIR(st.st_mode),
                    is_file=stat.S_ISREG(st.st_mode),
                    mtime=int(st.st_mtime),
                    size=st.st_size,
                )
            )
    return entries
