"""proxy_next_upstream decisions and the $upstream_* variables."""

from __future__ import annotations

import pytest

from pyginx.config.model import HttpSettings
from pyginx.upstream.attempts import Attempts, NextUpstream, final_status, may_retry, replayable


def policy(*flags: str, tries: int = 0, timeout: float = 0.0) -> NextUpstream:
    return NextUpstream(frozenset(flags), tries, timeout)


DEFAULT = NextUpstream.from_settings(HttpSettings())


def retry(p: NextUpstream, cond: str, **kw: object) -> bool:
    args: dict[str, object] = {
        "method": "GET",
        "request_sent": True,
        "body_streamed": False,
        "tries_left": 1,
        "elapsed": 0.0,
    }
    args.update(kw)
    return may_retry(p, cond, **args)  # type: ignore[arg-type]


def test_defaults_are_error_and_timeout() -> None:
    assert DEFAULT.flags == {"error", "timeout"}
    assert retry(DEFAULT, "error") and retry(DEFAULT, "timeout")
    assert not retry(DEFAULT, "invalid_header")
    assert not retry(DEFAULT, "http_502")


def test_no_tries_left() -> None:
    assert not retry(DEFAULT, "error", tries_left=0)


def test_off_disables_everything() -> None:
    assert not retry(policy("off"), "error")


@pytest.mark.parametrize("method", ["POST", "PATCH", "LOCK"])
def test_non_idempotent_not_resent_once_sent(method: str) -> None:
    assert not retry(DEFAULT, "error", method=method)
    assert retry(DEFAULT, "error", method=method, request_sent=False)  # connect() failed: nothing went out
    assert retry(policy("error", "non_idempotent"), "error", method=method)


def test_streamed_body_once_sent_is_not_retried() -> None:
    assert not retry(DEFAULT, "error", body_streamed=True)
    assert retry(DEFAULT, "error", body_streamed=True, request_sent=False)


def test_next_upstream_timeout() -> None:
    p = policy("error", timeout=5.0)
    assert retry(p, "error", elapsed=4.9)
    assert not retry(p, "error", elapsed=5.0)


def test_status_conditions() -> None:
    p = policy("error", "http_502", "http_404")
    assert p.wants_status(502) == "http_502"
    assert p.wants_status(404) == "http_404"
    assert p.wants_status(500) is None
    assert p.wants_status(200) is None


def test_final_status() -> None:
    assert final_status("timeout") == 504
    assert final_status("http_504") == 504
    assert final_status("error") == 502
    assert final_status("invalid_header") == 502
    assert final_status("http_503") == 503
    assert final_status("http_429") == 429


def test_replayable() -> None:
    assert replayable(DEFAULT, "GET", False)
    assert not replayable(DEFAULT, "POST", False)
    assert replayable(policy("error", "non_idempotent"), "POST", False)
    assert not replayable(DEFAULT, "PUT", True)
    assert not replayable(policy("off"), "GET", False)


def test_variables_in_nginx_format() -> None:
    a = Attempts()
    first = a.add("127.0.0.1:9001")
    first.status = 502
    first.connect_time = 0.0012
    first.response_time = 0.0021
    second = a.add("127.0.0.1:9002")
    second.status = 200
    second.connect_time = 0.0
    second.header_time = 0.004
    second.response_time = 0.0055
    v = a.variables()
    assert v["upstream_addr"] == "127.0.0.1:9001, 127.0.0.1:9002"
    assert v["upstream_status"] == "502, 200"
    assert v["upstream_connect_time"] == "0.001, 0.000"
    assert v["upstream_header_time"] == "-, 0.004"
    assert v["upstream_response_time"] == "0.002, 0.005"
