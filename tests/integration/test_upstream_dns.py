"""Upstreams found by DNS while pyginx runs (issue 16), against a DNS server in the test
(tests/dnsserver.py) whose answers the test changes.

* an upstream server with `resolve` whose address changes under a bounded keep-alive load: no request
  fails and the traffic moves to the new address within valid= (plus nginx's one-second timer);
* the DNS goes away (its port closed): pyginx keeps serving on the last good address, and logs it once;
* `proxy_pass http://$arg_b:PORT` with `resolver`: the name resolved per request, cached for the TTL
  capped by valid=, an unknown name a 502.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.dnsserver import DnsServer
from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_origin import Origin, proxy_config


@dataclass
class BoundOrigin(Origin):
    """An Origin on a chosen address and port (two origins share a port on 127.0.0.2 and .3)."""

    host: str = "127.0.0.2"
    want_port: int = 0

    async def _start(self) -> None:
        import asyncio

        self._server = await asyncio.start_server(self._client, self.host, self.want_port, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture(name="pair")
def pair_fixture() -> Iterator[tuple[BoundOrigin, BoundOrigin]]:
    old = BoundOrigin("old", host="127.0.0.2").start()
    new = BoundOrigin("new", host="127.0.0.3", want_port=old.port).start()
    try:
        yield old, new
    finally:
        old.stop()
        new.stop()


@pytest.fixture(name="dns")
def dns_fixture() -> Iterator[DnsServer]:
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Load:
    """A few threads of keep-alive clients, each request's (time, origin or error) recorded."""

    port: int
    path: str
    threads: int = 3
    results: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _client(self) -> None:
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self.stop.is_set() and n < 20000:  # bounded in time (stop) and in count
            n += 1
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                what = json.loads(body)["origin"] if resp.status == 200 else f"status {resp.status}"
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as exc:  # any failure counts
                what = f"error {exc!r}"
                conn.close()
                conn = None
            with self.lock:
                self.results.append((time.monotonic(), what))
        if conn is not None:
            conn.close()

    def run(self) -> list[threading.Thread]:
        started = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]
        for t in started:
            t.start()
        return started

    def snapshot(self) -> list[tuple[float, str]]:
        with self.lock:
            return list(self.results)


def _config(pyginx: Pyginx, dns: DnsServer, port: int, valid: str = "1s") -> None:
    pyginx.write_config(
        proxy_config(
            pyginx.port,
            workers=2,
            http=f'resolver: "{dns.addr} valid={valid} ipv6=off"\nresolver_timeout: 1s',
            upstreams=f'app:\n  zone: "app 64k"\n  servers:\n    - backend.test:{port} resolve',
            locations=(
                "- location: /app/\n  proxy_pass: http://app\n"
                f"- location: /dyn/\n  proxy_pass: http://$arg_b:{port}"
            ),
        )
    )


def test_address_change_under_load_then_dns_outage(
    pyginx: Pyginx, dns: DnsServer, pair: tuple[BoundOrigin, BoundOrigin]
) -> None:
    old, new = pair
    dns.set_a("backend.test", ["127.0.0.2"], ttl=30)  # valid=1s caps the TTL
    _config(pyginx, dns, old.port)
    pyginx.start()
    wait_for(lambda: _origin(pyginx, "/app/x") == "old", 10, "the first resolution")
    load = Load(pyginx.port, "/app/x")
    threads = load.run()
    try:
        wait_for(lambda: len(load.snapshot()) > 50, 10, "load to run")
        switched = time.monotonic()
        dns.set_a("backend.test", ["127.0.0.3"], ttl=30)
        # valid=1s + nginx's one-second timer: every worker has moved 2 s later (with slack for 2 cores)
        wait_for(lambda: _moved(load.snapshot(), switched), 8, "traffic to move to the new address")
        moved_after = _moved(load.snapshot(), switched)
        assert moved_after is not None and moved_after - switched < 4.0, moved_after - switched
        # the load may have reached one worker only: give the other its re-resolution (valid=1s plus
        # the one-second timer, with slack for 2 busy cores) before the DNS goes away
        wait_for(lambda: time.monotonic() - switched > 4.0, 6, "every worker's re-resolution")
        # DNS outage: its port closes; the upstream keeps its last good address
        dns.stop()
        outage = time.monotonic()
        wait_for(lambda: pyginx.error_log().count("could not be resolved") >= 1, 8, "the failure logged")
        wait_for(lambda: time.monotonic() - outage > 3.5, 5, "a few failed re-resolutions")
    finally:
        load.stop.set()
        for t in threads:
            t.join(15)
    results = load.snapshot()
    failures = [r for r in results if r[1] not in ("old", "new")]
    assert not failures, failures[:5]
    after_outage = [who for t, who in results if t > outage]
    assert after_outage and set(after_outage) == {"new"}, Counter(after_outage)
    assert len(results) > 200
    print(f"requests: {len(results)}, moved {moved_after - switched:.2f}s after the DNS change")
    # logged once per worker for the whole outage (nginx would log each retry)
    lines = [ln for ln in pyginx.error_log().splitlines() if "could not be resolved" in ln]
    assert 1 <= len(lines) <= 2, lines
    assert "keeping the last 1 address(es)" in lines[0]
    assert "backend.test could not be resolved (110: Operation timed out)" in lines[0]


def _origin(pyginx: Pyginx, path: str) -> str:
    try:
        resp = pyginx.get(path)
    except OSError:
        return ""
    return str(json.loads(resp.body)["origin"]) if resp.status == 200 else f"status {resp.status}"


def _moved(results: list[tuple[float, str]], since: float) -> float | None:
    """The time from which every answer came from the new address (None: not yet, or not for long)."""
    last_old = max((t for t, who in results if who == "old"), default=since)
    later_new = [t for t, who in results if who == "new" and t > last_old]
    return last_old if len(later_new) >= 20 else None


def test_proxy_pass_variable_resolved_per_request(
    pyginx: Pyginx, dns: DnsServer, pair: tuple[BoundOrigin, BoundOrigin]
) -> None:
    old, _new = pair
    dns.set_a("backend.test", ["127.0.0.2"], ttl=30)
    _config(pyginx, dns, old.port)
    pyginx.start()
    assert _origin(pyginx, "/dyn/?b=backend.test") == "old"
    queries = dns.count("backend.test")
    for _ in range(20):
        assert _origin(pyginx, "/dyn/?b=backend.test") == "old"
    # answers are cached (valid=1s): 20 requests cost at most a few more queries (2 workers, 1 s)
    assert dns.count("backend.test") - queries <= 4
    dns.set_a("backend.test", ["127.0.0.3"], ttl=30)
    wait_for(lambda: _origin(pyginx, "/dyn/?b=backend.test") == "new", 5, "the cache to expire")
    # an unknown name is nginx's 502 and error line
    assert _origin(pyginx, "/dyn/?b=nowhere.test") == "status 502"
    wait_for(lambda: "nowhere.test could not be resolved (3: Host not found)" in pyginx.error_log(), 5, "log")
    # an IP literal needs no DNS
    assert _origin(pyginx, "/dyn/?b=127.0.0.3") == "new"


def test_srv_service(pyginx: Pyginx, dns: DnsServer, pair: tuple[BoundOrigin, BoundOrigin]) -> None:
    """`service=http`: the SRV records of _http._tcp.NAME give the peers (ports from the records);
    a lower-priority record is a backup, used only when the primaries are gone."""
    old, new = pair
    other = BoundOrigin("third", host="127.0.0.4").start()
    try:
        dns.set_srv(
            "_http._tcp.svc.test", [(10, 1, old.port, "a.svc.test"), (10, 1, new.port, "b.svc.test")], ttl=30
        )
        dns.set_a("a.svc.test", ["127.0.0.2"], ttl=30)
        dns.set_a("b.svc.test", ["127.0.0.3"], ttl=30)
        pyginx.write_config(
            proxy_config(
                pyginx.port,
                http=f'resolver: "{dns.addr} valid=1s ipv6=off"\nresolver_timeout: 1s',
                upstreams="app:\n  zone: app\n  servers:\n    - svc.test service=http resolve",
                locations="- location: /app/\n  proxy_pass: http://app",
            )
        )
        pyginx.start()
        wait_for(
            lambda: {_origin(pyginx, "/app/s") for _ in range(6)} == {"old", "new"}, 10, "both SRV targets"
        )
        # a lower priority joins: a backup, unused while a primary works
        dns.set_srv(
            "_http._tcp.svc.test",
            [(10, 1, old.port, "a.svc.test"), (20, 1, other.port, "c.svc.test")],
            ttl=30,
        )
        dns.set_a("c.svc.test", ["127.0.0.4"], ttl=30)
        wait_for(lambda: {_origin(pyginx, "/app/s") for _ in range(6)} == {"old"}, 8, "b.svc.test to leave")
        # the primary breaks: the backup answers
        old.reset_all = True
        assert {_origin(pyginx, "/app/s") for _ in range(4)} == {"third"}
    finally:
        other.stop()
