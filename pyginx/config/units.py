"""nginx's value syntax: argument splitting, sizes, times, flags and numbers.

These return None (or raise ValueError) on bad input and know nothing of files or lines; the directive
layer turns a failure into `invalid value "10q" in "client_max_body_size" directive in FILE:LINE`.
"""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"(\d+)([kKmMgG]?)")
_SIZE_SCALE = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

# nginx's time units, most significant first; each may appear once, in this order ("1h 30m", "1d12h").
_TIME_UNITS: tuple[tuple[str, float], ...] = (
    ("y", 365 * 86400.0),
    ("M", 30 * 86400.0),
    ("w", 7 * 86400.0),
    ("d", 86400.0),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
    ("ms", 0.001),
)
_TIME_PART_RE = re.compile(r"\s*(\d+)(ms|[yMwdhms]?)\s*")
_MAX_TIME = float(2**63 // 1000)  # nginx keeps msec in an off_t-sized integer


_CONTROL_ESCAPES = {"t": "\t", "r": "\r", "n": "\n"}


def split_args(text: str) -> list[str]:
    """Split an nginx argument string on whitespace, honouring "..." and '...' quotes.

    Inside quotes a backslash escapes the quote character and itself, as in nginx.conf; elsewhere
    backslashes are literal so regexes (`~ \\.php$`) survive. An unterminated quote raises ValueError.
    """
    args: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            quote, i, buf = ch, i + 1, []
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt in _CONTROL_ESCAPES:  # nginx turns \t \r \n into the characters
                        buf.append(_CONTROL_ESCAPES[nxt])
                        i += 2
                        continue
                    if nxt in (quote, "\\"):
                        i += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                raise ValueError("unexpected end of string, expecting closing quote")
            args.append("".join(buf))
            i += 1
            continue
        start = i
        while i < n and not text[i].isspace():
            i += 1
        args.append(text[start:i])
    return args


def parse_size(text: str) -> int | None:
    """`1024`, `8k`, `1m`, `2G` -> bytes (nginx's ngx_parse_size); None when invalid."""
    m = _SIZE_RE.fullmatch(text.strip())
    if m is None:
        return None
    return int(m.group(1)) * _SIZE_SCALE[m.group(2).lower()]


def parse_time(text: str, seconds_only: bool = False) -> float | None:
    """`75s`, `1h 30m`, `500ms`, `60` (seconds) -> float seconds (nginx's ngx_parse_time).

    Units must come most significant first, each at most once; `ms` is refused where nginx keeps
    whole seconds (`seconds_only`, e.g. expires, fail_timeout). None when invalid.
    """
    text = text.strip()
    if not text:
        return None
    pos, total, last_rank = 0, 0.0, -1
    order = [u for u, _ in _TIME_UNITS]
    scale = dict(_TIME_UNITS)
    while pos < len(text):
        m = _TIME_PART_RE.match(text, pos)
        if m is None or m.end() == pos:
            return None
        number, unit = int(m.group(1)), m.group(2)
        if unit == "":
            # a bare number means seconds and must be the last part
            if m.end() != len(text):
                return None
            unit = "s"
        if unit == "ms" and seconds_only:
            return None
        rank = order.index(unit)
        if rank <= last_rank:
            return None
        last_rank = rank
        total += number * scale[unit]
        pos = m.end()
    if total > _MAX_TIME:
        return None
    return total


def parse_flag(text: str) -> bool | None:
    """nginx's on/off (YAML booleans arrive here already as "on"/"off")."""
    low = text.strip().lower()
    if low == "on":
        return True
    if low == "off":
        return False
    return None


def parse_number(text: str) -> int | None:
    """A non-negative decimal integer (nginx's ngx_atoi), None otherwise."""
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    return int(text)


# PCRE spellings nginx users write that Python's `re` spells differently: (?<name>...) is (?P<name>...)
_PCRE_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")


def compile_regex(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """Compile an nginx (PCRE) regex with Python's engine; raises re.error when it is invalid."""
    return re.compile(_PCRE_NAMED_GROUP.sub("(?P<", pattern), re.IGNORECASE if ignore_case else 0)
