"""The access log: log_format templates compiled once, lines gathered in a buffer.

Values are escaped as the format's `escape=` says, as nginx does: `default` writes `"`, `\\` and bytes
outside 0x20..0x7e as `\\xHH` and an empty value as `-`; `json` writes `\\"`, `\\\\`, `\\n` `\\r` `\\t`
`\\b` `\\f` and other control bytes as `\\u00XX`, an empty value as nothing (other bytes as they are,
so a UTF-8 value stays valid JSON); `none` writes every value as it is.

A writer never makes a syscall per request: lines go into a bytearray flushed when it exceeds
`buffer=`, after `flush=`, at the end of the current loop iteration when no buffer is configured (so
concurrent requests share one write), at reopen and at exit.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyginx.config.model import AccessLog
from pyginx.http.variables import _VAR, Getter, getter, time_iso8601, time_local
from pyginx.log import error_log

if TYPE_CHECKING:
    from pyginx.http.request import Request

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)

_ESCAPE = {i: f"\\x{i:02X}" for i in list(range(0x20)) + list(range(0x7F, 0x100))}
_ESCAPE[ord('"')] = "\\x22"
_ESCAPE[ord("\\")] = "\\x5C"


def escape(value: str) -> str:
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    raw = value.encode("utf-8", "surrogateescape")
    return "".join(_ESCAPE.get(b, chr(b)) for b in raw)


def _logged(value: str) -> str:
    """A variable's value as nginx logs it: `-` when empty, unsafe bytes as \\xHH."""
    if not value:
        return "-"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return escape(value)


def _json_bytes(raw: bytes) -> str:
    """nginx's ngx_escape_json over bytes; the result keeps other bytes as they are (surrogates
    for invalid UTF-8, so the line is written byte for byte)."""
    return raw.decode("utf-8", "surrogateescape").translate(_JSON)


_JSON = {i: f"\\u{i:04X}" for i in range(0x20)}  # nginx: \\u001F
_JSON.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord("\b"): "\\b", ord("\f"): "\\f"})
_JSON[ord('"')] = '\\"'
_JSON[ord("\\")] = "\\\\"


def _json(value: str) -> str:
    """escape=json: no `-` for an empty value; `"`, `\\` and control characters escaped."""
    return value.translate(_JSON) if value else ""


def _json_field(value: str) -> str:
    return _json_bytes(value.encode("latin-1", "replace")) if value else ""


def _none(value: str) -> str:
    """escape=none: the value as it is, empty as empty."""
    return value


def _none_field(value: str) -> str:
    return value.encode("latin-1", "replace").decode("utf-8", "surrogateescape")


_SLOW = {
    "default": ("_logged", "_logged_field"),
    "json": ("_json", "_json_field"),
    "none": ("_none", "_none_field"),
}


def _logged_field(value: str) -> str:
    """_logged for a header's value: its str holds one character per byte (latin-1), where URIs
    hold UTF-8 with surrogate escapes, so the bytes are the ones the client sent."""
    if not value:
        return "-"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join(_ESCAPE.get(b, chr(b)) for b in value.encode("latin-1", "replace"))


def _logged_kept(value: str) -> str:
    """_logged for a variable that exists but may be empty: nginx writes `-` only for a value "not
    found"; $https, $is_args and the configuration's own variables (map, set) are found empty."""
    return escape(value) if value else ""


# found empty rather than not found (nginx's ngx_http_variable_null_value)
_FOUND_EMPTY = frozenset({"https", "is_args", "request_completion"})


def _kept_empty(name: str) -> bool:
    from pyginx.http.variables import known_name

    return name in _FOUND_EMPTY or not known_name(name)


# Variables rendered inline by compiled formats. The first table needs no escaping (addresses,
# numbers, times); the second is escaped. Everything else goes through the generic getters.
_PLAIN_EXPR = {
    "remote_addr": "req.conn.client_addr",
    "status": "_status(req.status)",
    "body_bytes_sent": "str(req.body_bytes_sent)",
    "bytes_sent": "str(req.bytes_sent)",
    "request_length": "str(req.request_length + req.body.size)",
    "time_local": "time_local()",
    "time_iso8601": "time_iso8601()",
}
_ESCAPED_EXPR = {
    "request": "req.request_line",
    "request_uri": "req.request_uri",
    "uri": "req.uri",
    "args": "req.args",
    "host": "req.host",
    "request_method": "req.method",
    "server_protocol": "req.protocol",
}


# the bytes escape=default writes as \\xHH: controls, DEL, `"` and `\\` (non-ASCII is checked apart)
_UNSAFE = bytes(range(0x20)) + b'\x7f"\\'


def _status(status: int) -> str:
    return str(status) if status >= 100 else format(status, "03d")  # nginx's %03ui (000: none sent)


def compile_format(template: str) -> Callable[[Request], bytes]:
    """Compile a log_format into one function (generated source, as namedtuple does), so a line
    costs a handful of attribute reads instead of a call per variable.

    The line is first put together from the values as they are and checked once, whole: ASCII with
    no control byte, `"` or `\\` beyond the format's own means every value was already safe, and the
    line is what escaping would have written (nearly every request). Otherwise it is rendered again
    with each value through the escaping functions."""
    mode = "default"
    if template.startswith("escape="):  # the log_format's escape= (config/logs.py puts it there)
        word, _, template = template.partition(" ")
        mode = word[7:]
    slow_value, slow_field = _SLOW[mode]
    fetch: list[str] = []  # each variable's value, read once
    fast: list[str] = []  # the line's pieces as they are (empty values as the slow function writes them)
    slow: list[str] = []  # the same pieces, escaped
    literal = ""
    getters: list[Getter] = []
    pos = 0
    for m in _VAR.finditer(template):
        if m.start() > pos:
            text = template[pos : m.start()]
            literal += text
            fast.append(repr(text))
            slow.append(repr(text))
        name = (m.group(1) or m.group(2)).lower()
        pos = m.end()
        if name in _PLAIN_EXPR:
            fast.append(_PLAIN_EXPR[name])
            slow.append(_PLAIN_EXPR[name])
            continue
        if name in _ESCAPED_EXPR:
            expr, escape_fn = _ESCAPED_EXPR[name], slow_value
        elif name.startswith("http_"):
            expr, escape_fn = f"req.headers.get({name[5:].replace('_', '-')!r}, '')", slow_field
        else:
            getters.append(getter(name))
            expr = f"_g[{len(getters) - 1}](req)"
            escape_fn = slow_field if name.startswith(("cookie_", "sent_http_")) else slow_value
            if escape_fn == "_logged" and _kept_empty(name):
                escape_fn = "_logged_kept"  # found empty: nginx writes nothing, not `-`
        var = f"v{len(fetch)}"
        fetch.append(f"    {var} = {expr}\n")
        dash = escape_fn in ("_logged", "_logged_field")  # an empty value is written as `-`
        fast.append(f"({var} or '-')" if dash else var)
        slow.append(f"{escape_fn}({var})")
    if pos < len(template):
        literal += template[pos:]
        fast.append(repr(template[pos:]))
        slow.append(repr(template[pos:]))
    slow_line = "''.join((" + ", ".join(slow) + ",))"
    if mode == "none":  # nothing is escaped: the values as they are
        body = f"    return ({slow_line} + '\\n').encode('utf-8', 'surrogateescape')\n"
    elif not (literal.isascii() and literal.isprintable()):  # the check would never pass
        body = f"    return ({slow_line} + '\\n').encode('utf-8', 'surrogateescape')\n"
    else:
        # the format's own `"` and `\\`, and the newline: every other byte the check deletes came
        # from a value, which must then be escaped
        expected = literal.count('"') + literal.count("\\") + 1
        body = (
            "    line = ''.join((" + ", ".join(fast) + ", '\\n'))\n"
            "    if line.isascii():\n"
            "        raw = line.encode('ascii')\n"
            f"        if len(raw) - len(raw.translate(None, _UNSAFE)) == {expected}:\n"
            "            return raw\n"
            f"    return ({slow_line} + '\\n').encode('utf-8', 'surrogateescape')\n"
        )
    source = "def render(req):\n" + "".join(fetch) + body
    namespace: dict[str, object] = {
        "_logged": _logged,
        "_logged_field": _logged_field,
        "_logged_kept": _logged_kept,
        "_json": _json,
        "_json_field": _json_field,
        "_none": _none,
        "_none_field": _none_field,
        "_g": getters,
        "_UNSAFE": _UNSAFE,
        "_status": _status,
        "time_local": time_local,
        "time_iso8601": time_iso8601,
    }
    exec(compile(source, f"<log_format {template[:40]!r}>", "exec"), namespace)  # noqa: S102
    render: Callable[[Request], bytes] = namespace["render"]  # type: ignore[assignment]
    return render


class LogFile:
    """One open access-log file with its buffer; shared by every access_log naming the same path."""

    def __init__(self, path: str, buffer_size: int, flush: float | None) -> None:
        self.path = path
        self.buffer_size = buffer_size
        self.flush_after = flush
        self.buf = bytearray()
        self.fd = -1
        self._flush_scheduled = False
        self.open()

    def open(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self.fd = -1
            error_log().log("alert", f'open() "{self.path}" failed ({exc.errno}: {exc.strerror})')

    def write(self, line: bytes) -> None:
        self.buf += line
        if self.buffer_size and len(self.buf) < self.buffer_size:
            if self.flush_after is not None and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_event_loop().call_later(self.flush_after, self.flush)
            return
        if not self.buffer_size and len(self.buf) < 65536:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_event_loop().call_soon(self.flush)
            return
        self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self.buf:
            return
        data, self.buf = bytes(self.buf), bytearray()
        if self.fd < 0:
            return
        try:
            os.write(self.fd, data)
        except OSError as exc:
            error_log().log("alert", f'write() to "{self.path}" failed ({exc.errno}: {exc.strerror})')

    def reopen(self) -> None:
        self.flush()
        old = self.fd
        self.open()
        if old >= 0:
            os.close(old)

    def close(self) -> None:
        self.flush()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AccessLogs:
    """Every access-log file of a configuration, and the compiled formats."""

    def __init__(self, formats: dict[str, str]) -> None:
        self.formats = {name: compile_format(text) for name, text in formats.items()}
        self.formats.setdefault("combined", compile_format(COMBINED))
        self.files: dict[str, LogFile] = {}
        # keyed by the identity of a settings' access_log tuple: settings live as long as this object,
        # and hashing the frozen dataclasses on every request would cost more than the write itself
        self._writers: dict[int, list[tuple[LogFile, Callable[[Request], bytes]]]] = {}
        self._keep: list[tuple[AccessLog, ...]] = []

    def writers(self, logs: tuple[AccessLog, ...]) -> list[tuple[LogFile, Callable[[Request], bytes]]]:
        found = self._writers.get(id(logs))
        if found is not None:
            return found
        result = []
        for entry in logs:
            if entry.path is None:
                continue
            f = self.files.get(entry.path)
            if f is None:
                f = self.files[entry.path] = LogFile(entry.path, entry.buffer_size, entry.flush)
            fmt = self.formats.get(entry.format_name) or self.formats["combined"]
            result.append((f, fmt))
        self._writers[id(logs)] = result
        self._keep.append(logs)  # ids stay unique while the tuples are alive
        return result

    def log(self, req: Request) -> None:
        writers = self._writers.get(id(req.settings.access_log))
        if writers is None:
            writers = self.writers(req.settings.access_log)
        for f, fmt in writers:
            f.write(fmt(req))

    def reopen(self) -> None:
        for f in self.files.values():
            f.reopen()

    def flush(self) -> None:
        for f in self.files.values():
            f.flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()
