"""What each try at an upstream did, and whether another try may follow (proxy_next_upstream).

Pure: the proxy handler records an `Attempt` per try and asks `may_retry` after each failure; the
`$upstream_*` variables are rendered from the attempts in nginx's formats ("a, b" per try).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyginx.config.model import HttpSettings

# Methods nginx never re-sends once the request went out, unless `non_idempotent` is set.
NON_IDEMPOTENT_METHODS = frozenset({"POST", "LOCK", "PATCH"})

# Response statuses that proxy_next_upstream can name, and the condition each one is.
STATUS_CONDITIONS = {
    500: "http_500",
    502: "http_502",
    503: "http_503",
    504: "http_504",
    403: "http_403",
    404: "http_404",
    429: "http_429",
}

# The status pyginx answers with when the last try failed with a given condition (nginx's table in
# ngx_http_upstream_next); anything not listed is 502.
_FINAL_STATUS = {
    "timeout": 504,
    "http_504": 504,
    "http_500": 500,
    "http_503": 503,
    "http_403": 403,
    "http_404": 404,
    "http_429": 429,
}


def final_status(condition: str) -> int:
    return _FINAL_STATUS.get(condition, 502)


@dataclass(frozen=True)
class NextUpstream:
    """proxy_next_upstream, _tries and _timeout as one value."""

    flags: frozenset[str]
    tries: int = 0  # 0 = no limit beyond the number of servers
    timeout: float = 0.0  # 0 = no limit

    @classmethod
    def from_settings(cls, s: HttpSettings) -> NextUpstream:
        return cls(
            frozenset(s.proxy_next_upstream), s.proxy_next_upstream_tries, s.proxy_next_upstream_timeout
        )

    def wants_status(self, status: int) -> str | None:
        """The condition a response status is, when proxy_next_upstream names it; else None."""
        cond = STATUS_CONDITIONS.get(status)
        return cond if cond is not None and cond in self.flags else None


def may_retry(
    policy: NextUpstream,
    condition: str,
    *,
    method: str,
    request_sent: bool,
    body_streamed: bool,
    tries_left: int,
    elapsed: float,
) -> bool:
    """May the request go to the next server after `condition` (error, timeout, invalid_header,
    http_NNN)? nginx's rule: the condition is enabled, a try is left, the time budget is not spent,
    a streamed body was not already (partly) sent, and a POST/LOCK/PATCH that went out is re-sent only
    with `non_idempotent`. The caller guarantees nothing was sent to the client yet.
    """
    flags = policy.flags
    if "off" in flags or condition not in flags:
        return False
    if request_sent and method in NON_IDEMPOTENT_METHODS and "non_idempotent" not in flags:
        return False
    if request_sent and body_streamed:
        return False  # the body was read from the client as it was sent: it cannot be sent again
    if tries_left <= 0:
        return False
    return not (policy.timeout and elapsed >= policy.timeout)


def replayable(policy: NextUpstream, method: str, body_streamed: bool) -> bool:
    """Could this request be sent again after it went out? Decides whether it may use a pooled
    connection of unknown liveness (a failure there is retried on a fresh connection)."""
    if "off" in policy.flags or body_streamed:
        return False
    return method not in NON_IDEMPOTENT_METHODS or "non_idempotent" in policy.flags


@dataclass(
    slots=True, init=False
)  # __init__ written out: compiled, it is native (a dataclass's generated one is not)
class Attempt:
    """One try: which server, what came back, and when (seconds since the try began; None = never)."""

    addr: str
    status: int  # 0 until a status is known; 502/504 recorded for failures as nginx does
    connect_time: float | None
    header_time: float | None
    response_time: float | None
    bytes_received: int

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.status = 0
        self.connect_time = None
        self.header_time = None
        self.response_time = None
        self.bytes_received = 0


@dataclass(init=False)  # __init__ written out: compiled, it is native (a dataclass's generated one is not)
class Attempts:
    items: list[Attempt]

    def __init__(self) -> None:
        self.items = []

    def add(self, addr: str) -> Attempt:
        a = Attempt(addr)
        self.items.append(a)
        return a

    def variables(self) -> dict[str, str]:
        """$upstream_addr, _status, _response_time, _connect_time, _header_time, tries joined by ", "."""
        items = self.items
        if len(items) == 1:  # the usual case, without the joins
            a = items[0]
            return {
                "upstream_addr": a.addr,
                "upstream_status": str(a.status) if a.status else "-",
                "upstream_response_time": _msec(a.response_time),
                "upstream_connect_time": _msec(a.connect_time),
                "upstream_header_time": _msec(a.header_time),
                "upstream_bytes_received": str(a.bytes_received),
            }
        return {
            "upstream_addr": ", ".join(a.addr for a in items),
            "upstream_status": ", ".join(str(a.status) if a.status else "-" for a in items),
            "upstream_response_time": ", ".join(_msec(a.response_time) for a in items),
            "upstream_connect_time": ", ".join(_msec(a.connect_time) for a in items),
            "upstream_header_time": ", ".join(_msec(a.header_time) for a in items),
            "upstream_bytes_received": ", ".join(str(a.bytes_received) for a in items),
        }


def _msec(value: float | None) -> str:
    # nginx keeps whole milliseconds (truncated) and prints them as seconds.milliseconds
    if value is None:
        return "-"
    ms = int(value * 1000)
    if ms <= 0:
        return "0.000"
    sec, rest = divmod(ms, 1000)
    return f"{sec}.{rest:03d}"
