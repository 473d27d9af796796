"""A sans-IO parser for one upstream response, as strict as nginx's proxy module.

Bytes in, events out; no sockets. The head is collected until its empty line (bounded by
proxy_buffer_size: a bigger head is "upstream sent too big header"), then parsed with httptools and
checked as nginx checks it: a Content-Length together with Transfer-Encoding, a duplicate or invalid
Content-Length, a Transfer-Encoding other than "chunked" are invalid headers (502). The body framing is
then decided here, not by httptools, because only the proxy knows the request was HEAD:
no body (HEAD, 1xx, 204, 304), Content-Length (counted here, data passed through untouched), chunked
(de-chunked by httptools), or read-until-close.

Interim 1xx responses other than 101 are skipped (nginx never sends Expect upstream; 103 Early Hints
are dropped as nginx does without early_hints).

Most heads are plain: CRLF line ends, token names, visible values, one Content-Length. Those are taken
apart by one regular expression and a split (`_plain_head`), which costs a fraction of httptools'
callback per header; anything else (interim responses, chunked bodies, bare LF, odd bytes, any framing
header nginx would complain about) goes the general way, so errors keep their exact wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httptools

from pyginx.errors import UpstreamError, UpstreamInvalidHeader

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] [0-9]{3}(?: |\r|\n)")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: str
    http_minor: int
    headers: list[tuple[str, str]] = field(default_factory=list)  # as received, latin-1 decoded
    content_length: int | None = None
    chunked: bool = False
    connection_close: bool = False  # the upstream will close: HTTP/1.0 or "Connection: close"
    names: list[str] = field(default_factory=list)  # the header names lower-cased, in the same order
    # the proxy's memo: the headers passed to the client with this drop set (filter_response); a head
    # is shared by the responses with the same bytes (_PLAIN_CACHE), so is this list: read only
    # (and their header lines, encoded)
    passed: tuple[frozenset[str], list[tuple[str, str]], bytes] | None = field(
        default=None, compare=False, repr=False
    )

    def get(self, name: str) -> str | None:
        lname = name.lower()
        names = self.names
        if lname not in names:
            return None
        return self.headers[names.index(lname)][1]


# A plain head: status line, then lines of token ":" visible characters, all ended by CRLF. Visible
# means HTAB, SP, VCHAR and obs-text, as llhttp accepts in values; a status of 1xx is never plain.
_PLAIN_HEAD = re.compile(
    rb"HTTP/1\.([01]) ([2-5][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?\r\n"
    rb"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*)\r\n"
)


def _plain_head(block: bytes) -> ResponseHead | None:
    """The head if it is plain and its framing is a single valid Content-Length or none; else None
    (the general parser then decides, with nginx's messages)."""
    m = _PLAIN_HEAD.fullmatch(block)
    if m is None:
        return None
    minor_b, status_b, reason_b, lines_b = m.groups()
    # Known to be plain, the lines are taken apart as text; values lose their leading blanks (llhttp
    # keeps trailing ones). A plain loop beats re.findall here (its per-match cost dominates).
    lines = lines_b.decode("latin-1").split("\r\n")
    lines.pop()  # after the last CRLF
    headers: list[tuple[str, str]] = []
    names: list[str] = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name, value.lstrip(" \t")))
        names.append(name.lower())
    length: int | None = None
    if "transfer-encoding" in names:
        return None  # chunked bodies need httptools' de-chunking state anyway
    if "content-length" in names:
        at = names.index("content-length")
        value = headers[at][1]
        if "content-length" in names[at + 1 :] or not value.isdigit() or not value.isascii():
            return None
        length = int(value)
    close = minor_b == b"0"
    if not close and "connection" in names:
        if names.count("connection") == 1:
            close = "close" in headers[names.index("connection")][1].lower()
        else:
            close = any(
                "close" in v.lower() for n, (_, v) in zip(names, headers, strict=True) if n == "connection"
            )
    # positional: this runs once per proxied request, and keywords cost more than the call's work
    reason = reason_b.decode("latin-1") if reason_b else ""
    return ResponseHead(int(status_b), reason, int(minor_b), headers, length, False, close, names)


# Parsed plain heads by their bytes. An upstream usually answers a resource with the same head, Date
# included, for a whole second: parsing it again each time is the largest part of reading a response.
# The heads in here are shared by the responses that had those bytes, hence never modified (no one
# modifies a ResponseHead after parsing, but for the proxy's memo `passed`). Bounded: emptied when full.
_PLAIN_CACHE: dict[bytes, ResponseHead] = {}
_PLAIN_CACHE_SIZE = 128


def _plain_head_cached(block: bytes) -> ResponseHead | None:
    plain = _PLAIN_CACHE.get(block)
    if plain is None:
        plain = _plain_head(block)
        if plain is not None:
            if len(_PLAIN_CACHE) >= _PLAIN_CACHE_SIZE:
                _PLAIN_CACHE.clear()
            _PLAIN_CACHE[block] = plain
    return plain


class _HeadCallbacks:
    """httptools callbacks for the head only; nginx's checks happen as each header arrives."""

    __slots__ = ("reason", "headers", "content_length", "transfer_encoding", "complete")

    def __init__(self) -> None:
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.content_length: str | None = None
        self.transfer_encoding: str | None = None
        self.complete = False

    def on_status(self, data: bytes) -> None:
        self.reason += data

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.decode("latin-1")
        v = value.decode("latin-1")
        lname = n.lower()
        if lname == "content-length":
            self.content_length = v.strip()
        elif lname == "transfer-encoding":
            self.transfer_encoding = v
        self.headers.append((n, v))

    def on_headers_complete(self) -> None:
        self.complete = True


_BOTH = 'upstream sent "Content-Length" and "Transfer-Encoding" headers at the same time'


class _BodyCallbacks:
    """httptools callbacks while de-chunking a body."""

    __slots__ = ("chunks", "complete", "overrun")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.complete = False
        self.overrun = False  # bytes after the last chunk began another message

    def on_body(self, data: bytes) -> None:
        self.chunks.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


_FRAMING_LINE = re.compile(rb"\n([ \t]*(?:content-length|transfer-encoding)[ \t]*):([^\r\n]*)", re.IGNORECASE)


def _check_framing(block: bytes) -> None:
    """nginx's checks of the framing headers, with its messages. Done before httptools sees the
    head so that the error names the real problem (llhttp rejects some of these with its own words)."""
    cl: str | None = None
    te: str | None = None
    for raw_name, raw_value in _FRAMING_LINE.findall(block):
        n = raw_name.strip().decode("latin-1")
        v = raw_value.strip().decode("latin-1")
        if n.lower() == "content-length":
            if cl is not None:
                raise UpstreamInvalidHeader(
                    f'upstream sent duplicate header line: "{n}: {v}", previous value: "Content-Length: {cl}"'
                )
            if te is not None:
                raise UpstreamInvalidHeader(_BOTH)
            if not _DIGITS.fullmatch(v):
                raise UpstreamInvalidHeader(f'upstream sent invalid "Content-Length" header: "{n}: {v}"')
            cl = v
        else:
            if te is not None:
                raise UpstreamInvalidHeader(
                    f'upstream sent duplicate header line: "{n}: {v}", previous value: "Transfer-Encoding: {te}"'
                )
            if cl is not None:
                raise UpstreamInvalidHeader(_BOTH)
            if v.lower() != "chunked":
                raise UpstreamInvalidHeader(f'upstream sent unknown "Transfer-Encoding": "{v}"')
            te = v


def _parse_head(block: bytes) -> tuple[ResponseHead, httptools.HttpResponseParser, _BodyCallbacks]:
    """Parse one complete head (status line through the empty line). Raises UpstreamInvalidHeader."""
    if not _STATUS_LINE.match(block):
        raise UpstreamInvalidHeader("upstream sent no valid HTTP/1.0 header")
    _check_framing(block)
    cb = _HeadCallbacks()
    body_cb = _BodyCallbacks()
    parser = httptools.HttpResponseParser(_Switch(cb, body_cb))
    # nginx accepts a bare LF as a line end in the head (not in chunked bodies: set back below).
    parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
    try:
        parser.feed_data(block)
    except httptools.HttpParserUpgrade:
        pass  # a 101: what follows the head belongs to the tunnel, not to HTTP
    except httptools.HttpParserCallbackError as exc:
        cause = exc.__context__
        if isinstance(cause, UpstreamError):
            raise cause from None
        raise UpstreamInvalidHeader("upstream sent invalid header") from exc
    except httptools.HttpParserError as exc:
        # llhttp pauses after the head of a 101 (the rest is another protocol): that is no error
        if not (cb.complete and parser.get_status_code() == 101):
            raise UpstreamInvalidHeader(f"upstream sent invalid header: {exc}") from None
    if not cb.complete:
        raise UpstreamInvalidHeader("upstream sent invalid header")
    parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=False)
    status = parser.get_status_code()
    version = parser.get_http_version()
    minor = 0 if version == "1.0" else 1
    close = minor == 0
    for name, value in cb.headers:
        if name.lower() == "connection" and "close" in value.lower():
            close = True
    head = ResponseHead(
        status=status,
        reason=cb.reason.decode("latin-1"),
        http_minor=minor,
        headers=cb.headers,
        content_length=int(cb.content_length) if cb.content_length is not None else None,
        chunked=cb.transfer_encoding is not None,
        connection_close=close,
        names=[n.lower() for n, _ in cb.headers],
    )
    return head, parser, body_cb


class _Switch:
    """One callback object for both phases: head callbacks until the head is complete, then body
    ones. Trailer fields (chunked) and anything after the end of the response are not headers."""

    __slots__ = ("head", "body")

    def __init__(self, head: _HeadCallbacks, body: _BodyCallbacks) -> None:
        self.head = head
        self.body = body

    def on_message_begin(self) -> None:
        if self.body.complete:
            self.body.overrun = True

    def on_status(self, data: bytes) -> None:
        if not self.head.complete:
            self.head.on_status(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head.complete:
            self.head.on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self.head.complete:
            self.head.on_headers_complete()

    def on_body(self, data: bytes) -> None:
        if not self.body.complete:
            self.body.on_body(data)

    def on_message_complete(self) -> None:
        if self.head.complete:
            self.body.on_message_complete()


class ResponseParser:
    """One upstream response: `feed()` until `head` is set, then body data via `feed()` too.

    Usage:
        p = ResponseParser(limit=4096, head_request=False)
        for data in socket: pieces = p.feed(data)   # body pieces, once the head is known
        p.head (ResponseHead | None), p.complete (whole body seen), p.extra (bytes after the response)
        on EOF: p.feed_eof()  (raises if the response was cut short)
    """

    __slots__ = (
        "limit",
        "head_request",
        "head",
        "complete",
        "framing",
        "remaining",
        "received",
        "extra",
        "head_bytes",
        "error",
        "_buf",
        "_parser",
        "_body_cb",
    )

    def __init__(self, limit: int, head_request: bool = False) -> None:
        self.limit = limit
        self.head_request = head_request
        self.head: ResponseHead | None = None
        self.complete = False
        self.framing = ""  # "none" | "length" | "chunked" | "close", once the head is known
        self.remaining = 0  # body bytes still expected with Content-Length
        self.received = 0  # body bytes received (after de-chunking)
        self.extra = b""  # bytes after the end of the response (an upstream that must not be reused)
        self.head_bytes = 0
        self.error: UpstreamError | None = None  # a body error met, raised by the next feed()
        self._buf = b""
        self._parser: httptools.HttpResponseParser | None = None
        self._body_cb: _BodyCallbacks | None = None

    # ------------------------------------------------------------------------------------------- input

    def feed(self, data: bytes) -> list[bytes]:
        """Consume bytes from the upstream; returns body pieces (possibly empty).

        A bad body (an invalid chunk) is raised by the call after the one that met it, so that the
        body bytes before it, and the head, are not lost with it; `error` shows it at once."""
        if self.error is not None:
            raise self.error
        if self.head is None:
            return self._feed_head(data)
        return self._feed_body(data)

    def feed_eof(self) -> None:
        """The upstream closed. Fine after a complete response or for a read-until-close body;
        otherwise the response was cut short (UpstreamError)."""
        if self.error is not None:
            raise self.error
        if self.head is None:
            raise UpstreamError("upstream prematurely closed connection while reading response header")
        if self.complete:
            return
        if self.framing == "close":
            self.complete = True
            return
        raise UpstreamError("upstream prematurely closed connection while reading upstream")

    @property
    def keepalive(self) -> bool:
        """May the connection carry another request after this response?"""
        return (
            self.head is not None
            and self.complete
            and not self.extra
            and not self.head.connection_close
            and self.framing in ("none", "length", "chunked")
            and self.head.status != 101
        )

    # ------------------------------------------------------------------------------------------- head

    def _feed_head(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        # The usual head ends at its first CRLF CRLF, and is plain: no bare LF anywhere in it, hence no
        # earlier end of head (what _HEAD_END finds, at a cost of a search from every position).
        end = buf.find(b"\r\n\r\n") + 4
        if 4 <= end <= self.limit:
            block = buf[:end]
            plain = _PLAIN_CACHE.get(block) or _plain_head_cached(block)
            if plain is not None:
                length = plain.content_length
                if length == len(buf) - end and not self.head_request and plain.status not in (204, 304):
                    # the commonest case of all: the whole response in one read
                    self._buf = b""
                    self.head = plain
                    self.head_bytes = end
                    self.framing = "length"
                    self.received = length
                    self.complete = True
                    return [buf[end:]] if length else []
                return self._head_done(plain, None, None, buf, end)
        while True:
            m = _HEAD_END.search(buf)
            if m is None:
                if len(buf) > self.limit:
                    raise UpstreamInvalidHeader("upstream sent too big header")
                self._buf = buf
                return []
            end = m.end()
            if end > self.limit:
                raise UpstreamInvalidHeader("upstream sent too big header")
            rest = buf[end:]
            head, parser, body_cb = _parse_head(buf[:end])
            if 100 <= head.status < 200 and head.status != 101:
                buf = rest  # an interim response: the real one follows
                if not buf:
                    self._buf = b""
                    return []
                continue
            return self._head_done(head, parser, body_cb, buf, end)

    def _head_done(
        self,
        head: ResponseHead,
        parser: httptools.HttpResponseParser | None,
        body_cb: _BodyCallbacks | None,
        buf: bytes,
        end: int,
    ) -> list[bytes]:
        self._buf = b""
        self.head = head
        self.head_bytes = end
        self._parser = parser
        self._body_cb = body_cb
        self._decide_framing(head)
        return self._feed_body(buf[end:]) if len(buf) > end else []

    def _decide_framing(self, head: ResponseHead) -> None:
        status = head.status
        if self.head_request or status in (204, 304) or 100 <= status < 200:
            # 101 included: the bytes after its head belong to the tunnel (see `extra`)
            self.framing = "none"
            self.complete = True
        elif head.chunked:
            self.framing = "chunked"
        elif head.content_length is not None:
            self.framing = "length"
            self.remaining = head.content_length
            self.complete = self.remaining == 0
        else:
            self.framing = "close"

    # ------------------------------------------------------------------------------------------- body

    def _feed_body(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        if self.complete:
            self.extra += data
            return []
        if self.framing == "length":
            n = self.remaining
            if len(data) <= n:
                self.remaining -= len(data)
                self.received += len(data)
                self.complete = self.remaining == 0
                return [data]
            self.remaining = 0
            self.received += n
            self.complete = True
            self.extra += data[n:]
            return [data[:n]]
        if self.framing == "close":
            self.received += len(data)
            return [data]
        return self._feed_chunked(data)

    def _feed_chunked(self, data: bytes) -> list[bytes]:
        parser = self._parser
        cb = self._body_cb
        assert parser is not None and cb is not None
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not cb.complete:
                # the chunks before the bad one are still delivered; the error comes with the next call
                self.error = UpstreamInvalidHeader(f"upstream sent invalid chunked response: {exc}")
            else:
                cb.overrun = (
                    True  # garbage after the last chunk: the response is whole, the connection is not
                )
        out, cb.chunks = cb.chunks, []
        for piece in out:
            self.received += len(piece)
        if cb.complete:
            self.complete = True
            if cb.overrun:
                self.extra = b"?"  # marks the connection unusable; the bytes themselves are not needed
        return out
