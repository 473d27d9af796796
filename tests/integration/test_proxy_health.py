"""Active health checks (pyginx extension): a failing server is skipped before any client request
fails on it, and comes back once it passes again."""

from __future__ import annotations

from tests.integration.harness import Pyginx, free_port, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_basic import info
from tests.integration.test_proxy_origin import (
    Origin,
    origins_fixture,  # noqa: F401  (the `origins` fixture)
    proxy_config,
)


def config(pyginx: Pyginx, *addrs: str, check: str) -> str:
    servers = "\n".join(f"    - {a}" for a in addrs)
    ups = f"app:\n  servers:\n{servers}\n  health_check: {check}\n"
    return proxy_config(pyginx.port, upstreams=ups, locations="- location: /\n  proxy_pass: http://app")


def test_failing_server_is_skipped_then_comes_back(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    b.status_override = 500
    pyginx.write_config(
        config(pyginx, a.addr, b.addr, check="{interval: 200ms, uri: /health, fails: 1, passes: 2}")
    )
    pyginx.start()
    wait_for(
        lambda: "failed the health check (status 500), marked down" in pyginx.error_log(), 10, "b marked down"
    )
    assert all(info(pyginx.port, f"/r{i}")["origin"] == "a" for i in range(10))
    assert not b.seen("/r")
    assert b.seen("/health") and b.seen("/health")[0].method == "GET"
    b.status_override = None
    wait_for(lambda: "passed the health check, marked up" in pyginx.error_log(), 10, "b marked up")
    names = {info(pyginx.port, f"/s{i}")["origin"] for i in range(6)}
    assert names == {"a", "b"}


def test_dead_server_is_skipped_before_any_client_request(pyginx: Pyginx, origins: list[Origin]) -> None:
    a = origins[0]
    dead = f"127.0.0.1:{free_port()}"
    pyginx.write_config(config(pyginx, dead, a.addr, check="{interval: 100ms, timeout: 500ms}"))
    pyginx.start()
    wait_for(lambda: f"upstream server {dead}" in pyginx.error_log(), 10, "the dead server marked down")
    assert all(info(pyginx.port, f"/r{i}")["origin"] == "a" for i in range(6))
    # no client request ever tried it: the only connect() failures are the checks'
    assert "while connecting to upstream" not in pyginx.error_log()


def test_expected_status_list(pyginx: Pyginx, origins: list[Origin]) -> None:
    a, b = origins
    pyginx.write_config(
        config(pyginx, a.addr, b.addr, check='{interval: 100ms, uri: "/status?code=204", status: [204]}')
    )
    pyginx.start()
    b.status_override = 200  # healthy by HTTP, but not what the check expects
    wait_for(lambda: "failed the health check (status 200)" in pyginx.error_log(), 10, "b marked down")
    assert all(info(pyginx.port, f"/r{i}")["origin"] == "a" for i in range(4))
