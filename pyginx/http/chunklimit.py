"""The declared sizes of a chunked request body, seen as they arrive (issue 12 item 4).

llhttp decodes the chunked framing but does not tell its callbacks how large a chunk said it was, so
a chunk size line far over client_max_body_size (or one that does not even fit a 63-bit size) would
only be noticed once that many bytes had come. nginx judges the size line itself
(ngx_http_parse_chunked, ngx_http_request_body_chunked_filter): a size over NGX_MAX_OFF_T_VALUE is an
invalid body (400) at once, and a chunk that takes the body over the limit is a 413 as soon as its
first data byte arrives. `ChunkScan` follows the framing byte by byte beside llhttp to make the same
decisions; llhttp stays the judge of everything else (what does not look like framing here ends the
scan and is left to it). Pure: bytes in, a verdict out.
"""

from __future__ import annotations

MAX_OFF_T = (1 << 63) - 1  # nginx's NGX_MAX_OFF_T_VALUE

_SIZE, _EXT, _LF, _DATA, _CRLF, _DONE = range(6)
_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}

OK = 0
TOO_LARGE = 413
INVALID = 400


class ChunkScan:
    """Follows one chunked body's framing; `feed` says whether the body must be refused."""

    __slots__ = ("state", "size", "digits", "left", "announced", "last")

    def __init__(self) -> None:
        self.state = _SIZE
        self.size = 0  # the size line being read
        self.digits = 0
        self.left = 0  # data bytes of the current chunk still to come
        self.announced = 0  # sum of the sizes of every chunk so far (the body's size once they arrive)
        self.last = 0  # the size of the latest chunk

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes, limit: int) -> int:  # noqa: C901 (one state machine)
        """OK, TOO_LARGE (a chunk takes the body over `limit`, 0: none, and its data began) or INVALID
        (a size line over 2^63 - 1)."""
        i, n = 0, len(data)
        while i < n:
            state = self.state
            if state == _DATA:
                take = min(self.left, n - i)
                if limit and self.announced > limit:
                    return TOO_LARGE  # at the first data byte of the chunk, as nginx
                self.left -= take
                i += take
                if self.left == 0:
                    self.state = _CRLF
                    self.digits = 0
                continue
            c = data[i]
            i += 1
            if state == _SIZE:
                digit = _HEX.get(c)
                if digit is not None:
                    self.size = self.size * 16 + digit
                    self.digits += 1
                    if self.size > MAX_OFF_T:
                        return INVALID
                elif self.digits and c in b";\t ":
                    self.state = _EXT
                elif self.digits and c == 0x0D:
                    self.state = _LF
                else:
                    self.state = _DONE  # not framing this scan understands: llhttp decides
            elif state in (_EXT, _LF):
                if c == 0x0A:
                    self._size_line_done()
                elif state == _LF:
                    self.state = _DONE
            elif state == _CRLF:
                # the CRLF after a chunk's data (llhttp checks it); then the next size line
                self.digits += 1
                if c == 0x0A or self.digits >= 2:
                    self.state = _SIZE
                    self.size = 0
                    self.digits = 0
            else:
                return OK
        return OK

    def _size_line_done(self) -> None:
        if self.size == 0:
            self.state = _DONE  # the last chunk: trailers are llhttp's
            return
        self.announced += self.size
        self.last = self.left = self.size
        self.size = 0
        self.state = _DATA
