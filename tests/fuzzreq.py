"""Request generator for the seeded fuzzers (issue 12): hypothesis strategies that build HTTP/1.x
requests from a grammar of the parts that matter to a parser and a proxy (methods, targets, versions,
Host / Content-Length / Transfer-Encoding variants, bodies and chunked framings), then mutate a few
of them at the byte level. `stricter()` names the README's documented strictness that applies to a
request, if any: there pyginx's own answer is asserted instead of nginx's."""

from __future__ import annotations

import re

from hypothesis import strategies as st

METHODS = ["GET", "GET", "GET", "HEAD", "POST", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "FOO-BAR"]
ODD_METHODS = ["get", "G3T", "CONNECT", "TRACE", "A" * 40, "", "GET\t"]
TARGETS = [
    "/",
    "/index.html",
    "/index.html?x=1&y=%20",
    "/py/ok",
    "/py/x?a=b",
    "/py",
    "/nope",
    "/a/../index.html",
    "/a/./b/../../index.html",
    "//index.html",
    "/%69ndex.html",
    "/%2e%2e/x",
    "/a%00b",
    "/a%zz",
    "/../x",
    "*",
    "http://localhost/index.html",
    "http://a..b/index.html",
    "/sp ace",
    "/\u00e9",
]
VERSIONS = ["HTTP/1.1"] * 6 + [
    "HTTP/1.0",
    "HTTP/1.0",
    "HTTP/2.0",
    "HTTP/1.01",
    "http/1.1",
    "HTTP/1.1 ",
    "HTTP/0.9",
]
HOSTS = ["localhost"] * 6 + [
    "",
    "a..b",
    "LOCALHOST:80",
    "local\thost",
    "localhost\t",
    "[::1]",
    "x" * 300,
    "a b",
    "ex.com.",
]
LENGTHS = [
    "{n}",
    "{n}",
    " {n}",
    "{n} ",
    "+{n}",
    "-1",
    "0x10",
    "{n}\t",
    "9223372036854775808",
    "1 0",
    "{n}, {n}",
]
TES = ["chunked", "chunked", "Chunked", "gzip", "gzip, chunked", "chunked\t", " chunked", "identity", ""]
OTHER = [
    ("User-Agent", "fuzz"),
    ("Accept", "*/*"),
    ("Connection", "close"),
    ("Connection", "keep-alive"),
    ("Expect", "100-continue"),
    ("Range", "bytes=0-3"),
    ("Range", "bytes=3-1"),
    ("X-Under_score", "1"),
    ("X-Empty", ""),
    ("Cookie", "a=b"),
    ("If-None-Match", "*"),
]
RAW_LINES = [b"X-Bad\x01: v", b"X-Fold: a\r\n b", b"X-Space : v", b"NoColon", b"X-Ctl: a\x7fb", b"X-Lf: a\nb"]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(METHODS) | st.sampled_from(ODD_METHODS))
    target = draw(st.sampled_from(TARGETS))
    version = draw(st.sampled_from(VERSIONS))
    lines: list[bytes] = [f"{method} {target} {version}".encode()]
    if draw(st.integers(0, 9)) > 0:
        lines.append(b"Host: " + draw(st.sampled_from(HOSTS)).encode())
        if draw(st.integers(0, 15)) == 0:
            lines.append(b"Host: localhost")
    for name, value in draw(st.lists(st.sampled_from(OTHER), max_size=3, unique=True)):
        lines.append(f"{name}: {value}".encode())
    body = draw(st.sampled_from([b"", b"", b"hello", b"x" * 200]))
    framing = draw(st.sampled_from(["none", "length", "length", "chunked", "both"]))
    if framing in ("length", "both"):
        lines.append(b"Content-Length: " + draw(st.sampled_from(LENGTHS)).format(n=len(body)).encode())
    if framing in ("chunked", "both"):
        lines.append(b"Transfer-Encoding: " + draw(st.sampled_from(TES)).encode())
        chunks = draw(st.sampled_from(["ok", "ok", "bad size", "ext", "huge", "no end"]))
        if chunks == "ok":
            body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        elif chunks == "bad size":
            body = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
        elif chunks == "ext":
            body = b"5;name=v\r\nhello\r\n0\r\n\r\n"
        elif chunks == "huge":
            body = b"8000000000000000\r\nabc"
        else:
            body = b"5\r\nhello\r\n"
    if draw(st.integers(0, 7)) == 0:
        lines.insert(draw(st.integers(1, len(lines))), draw(st.sampled_from(RAW_LINES)))
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    if draw(st.integers(0, 5)) == 0:
        data = _mutate(data, draw(st.integers(0, len(data) - 1)), draw(st.sampled_from(MUTATIONS)))
    return data


MUTATIONS = [b"", b"\r", b"\n", b"\t", b" ", b"\x00", b"\x80", b":", b"%", b"\r\n"]


def _mutate(data: bytes, at: int, what: bytes) -> bytes:
    """Replace one byte of the head (never the body: it keeps the framing checkable)."""
    head_end = data.find(b"\r\n\r\n")
    at = min(at, max(head_end - 1, 0))
    return data[:at] + what + data[at + 1 :]


# ------------------------------------------------------------------ the README's strictness list

_HEAD = re.compile(rb"\A(.*?)\r\n\r\n", re.S)


def stricter(data: bytes) -> str | None:
    """The documented strictness (README, "Stricter request parsing") this request falls under."""
    data = data.lstrip(b"\r\n")  # empty lines before the request line are skipped (as nginx)
    m = _HEAD.match(data)
    head = m.group(1) if m else data
    first, _, rest = head.partition(b"\r\n")
    if re.search(rb"(?<!\r)\n", head) or re.search(rb"\r(?!\n)", head):
        return "bare LF or CR"
    if re.search(rb"\r\n[ \t]", head):
        return "obs-fold"
    if re.match(rb"[^ ]+ [^ ]+ HTTP/\d\.\d+ +\Z", first) or re.search(rb" HTTP/\d\.\d{2,}\Z", first):
        return "version form"
    if re.match(rb"[A-Za-z_-]+ [^ ]+\Z", first) or b"HTTP/0.9" in first:
        return "HTTP/0.9"
    for line in rest.split(b"\r\n") if rest else []:
        name, colon, value = line.partition(b":")
        if not colon:
            return "line without colon"
        if name != name.rstrip(b" \t"):
            return "whitespace before colon"
        if re.search(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]", name):
            return "header name characters"
        if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value):
            return "control character in value"
        if name.lower() in (b"host", b"content-length", b"transfer-encoding") and value.startswith(b"\t"):
            return "TAB after the colon"
    return None
