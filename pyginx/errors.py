"""The one exception tree of pyginx.

ConfigError carries file and line so every configuration problem reads as nginx's do:
`unknown directive "rooot" in /p/conf/pyginx.yaml:12`. HttpError carries the status a request error
must produce. Upstream errors say which nginx condition (error, timeout, invalid_header) they are, for
proxy_next_upstream.
"""

from __future__ import annotations


class PyginxError(Exception):
    """Base of every error pyginx raises on purpose."""


class ConfigError(PyginxError):
    """A configuration problem; str() is nginx's wording with ` in FILE:LINE` appended when known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.file is not None and self.line is not None:
            return f"{self.message} in {self.file}:{self.line}"
        if self.file is not None:
            return f"{self.message} in {self.file}"
        return self.message


class HttpError(PyginxError):
    """A request that must be answered with `status` (and, for 4xx/5xx from the parser, closed)."""

    def __init__(self, status: int, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}".strip())


class UpstreamError(PyginxError):
    """A failure talking to an upstream server. `kind` is the proxy_next_upstream condition."""

    kind = "error"

    def __init__(self, message: str, status: int = 502) -> None:
        self.message = message
        self.status = status
        super().__init__(message)


class UpstreamTimeout(UpstreamError):
    kind = "timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, status=504)


class UpstreamInvalidHeader(UpstreamError):
    kind = "invalid_header"
