"""The DNS client (pyginx.upstream.resolver) and re-resolution (pyginx.upstream.dynamic) against a
small DNS server on 127.0.0.1 (tests/dnsserver.py) whose answers the tests change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from pyginx.config.model import Resolver, Upstream, UpstreamServer
from pyginx.upstream import dynamic
from pyginx.upstream.balancer import Peers, PeerState
from pyginx.upstream.resolver import (
    HOST_NOT_FOUND,
    SERVER_FAILURE,
    TIMEDOUT,
    DnsClient,
    ResolveError,
    cap_ttl,
    srv_name,
)
from tests.dnsserver import DnsServer


@pytest.fixture(name="dns")
def dns_fixture() -> Iterator[DnsServer]:
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


def client(dns: DnsServer, valid: float | None = None, timeout: float = 2.0, ipv6: bool = False) -> DnsClient:
    return DnsClient(Resolver((("127.0.0.1", dns.port),), valid=valid, ipv6=ipv6), timeout)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_pure_helpers() -> None:
    assert srv_name("http", "svc.test") == "_http._tcp.svc.test"
    assert srv_name("_sip._udp", "svc.test") == "_sip._udp.svc.test"
    assert cap_ttl(300, 5) == 5 and cap_ttl(2, 5) == 2 and cap_ttl(0, None) == 1.0 and cap_ttl(30, None) == 30


def test_a_and_aaaa_and_cache(dns: DnsServer) -> None:
    dns.set_a("b.test", ["127.0.0.2", "127.0.0.3"], ttl=60)
    dns.set_aaaa("b.test", ["::1"], ttl=60)
    c = client(dns, ipv6=True)

    async def go() -> None:
        got = await c.addresses("b.test")
        assert sorted(got.addrs[:2]) == ["127.0.0.2", "127.0.0.3"] and got.addrs[2] == "::1" and got.ttl == 60
        again = await c.addresses("B.test")  # cached (names are case-insensitive)
        assert again == got

    run(go())
    assert dns.count("b.test") == 1 and dns.count("b.test", "AAAA") == 1
    # ipv6=off asks for A only
    c4 = client(dns)
    assert sorted(run(c4.addresses("b.test")).addrs) == ["127.0.0.2", "127.0.0.3"]
    assert dns.count("b.test", "AAAA") == 1
    # an IP literal never reaches the DNS
    assert run(c4.addresses("127.0.0.9")).addrs == ("127.0.0.9",)


def test_valid_caps_the_ttl(dns: DnsServer) -> None:
    dns.set_a("b.test", ["127.0.0.2"], ttl=300)
    c = client(dns, valid=1)
    assert run(c.addresses("b.test")).ttl == 1


def test_faults(dns: DnsServer) -> None:
    c = client(dns, timeout=1.0)
    with pytest.raises(ResolveError) as info:
        run(c.addresses("missing.test"))
    assert info.value.code == HOST_NOT_FOUND and info.value.not_found
    assert str(info.value) == "3: Host not found"
    dns.set_a("b.test", ["127.0.0.2"])
    dns.mode = "servfail"
    with pytest.raises(ResolveError) as info:
        run(c.addresses("b.test"))
    assert info.value.code == SERVER_FAILURE and not info.value.not_found
    dns.mode = "drop"
    t0 = time.monotonic()
    with pytest.raises(ResolveError) as info:
        run(c.addresses("b.test"))
    assert info.value.code == TIMEDOUT and str(info.value) == "110: Operation timed out"
    assert 0.9 <= time.monotonic() - t0 < 3  # resolver_timeout bounds it
    dns.stop()  # nobody listens: refused datagrams, then the timeout
    with pytest.raises(ResolveError) as info:
        run(c.addresses("b.test"))
    assert info.value.code == TIMEDOUT


def test_second_name_server_answers(dns: DnsServer) -> None:
    dead = DnsServer()  # bound, never serving: its queries go unanswered
    try:
        dns.set_a("b.test", ["127.0.0.2"])
        c = DnsClient(Resolver((("127.0.0.1", dead.port), ("127.0.0.1", dns.port)), ipv6=False), 3.0)
        assert run(c.addresses("b.test")).addrs == ("127.0.0.2",)
    finally:
        dead.sock.close()


def test_srv(dns: DnsServer) -> None:
    dns.set_srv(
        "_http._tcp.svc.test",
        [(10, 5, 8081, "a.svc.test"), (10, 1, 8082, "b.svc.test"), (20, 1, 8083, "c.svc.test")],
        ttl=30,
    )
    dns.set_a("a.svc.test", ["127.0.0.2"], ttl=10)
    dns.set_a("b.svc.test", ["127.0.0.3"], ttl=30)
    dns.set_a("c.svc.test", ["127.0.0.4"], ttl=30)
    got = run(client(dns).services("http", "svc.test"))
    assert got.ttl == 10  # the shortest TTL of the records and their targets
    rows = sorted((t.target, t.port, t.priority, t.weight, a) for t in got.targets for a in t.addrs)
    assert rows == [
        ("a.svc.test", 8081, 10, 5, "127.0.0.2"),
        ("b.svc.test", 8082, 10, 1, "127.0.0.3"),
        ("c.svc.test", 8083, 20, 1, "127.0.0.4"),
    ]
    template = UpstreamServer(
        host="svc.test", port=80, address=None, written="svc.test", resolve=True, service="http"
    )
    servers = dynamic.servers_from_srv(template, rows)
    assert [(s.name, s.weight, s.backup, s.written) for s in servers] == [
        ("127.0.0.2:8081", 5, False, "a.svc.test"),
        ("127.0.0.3:8082", 1, False, "b.svc.test"),
        ("127.0.0.4:8083", 1, True, "c.svc.test"),
    ]
    # a weight on the server line wins over the SRV weights
    heavy = dynamic.servers_from_srv(UpstreamServer(host="svc.test", port=80, address=None, weight=3), rows)
    assert {s.weight for s in heavy} == {3}


def _upstream(dns: DnsServer, valid: float | None = None, **kw: object) -> Upstream:
    template = UpstreamServer(host="b.test", port=8080, address=None, written="b.test:8080", resolve=True)
    return Upstream(
        name="app",
        servers=(),
        zone="app",
        resolvable=(template,),
        resolver=Resolver((("127.0.0.1", dns.port),), valid=valid, ipv6=False),
        resolver_timeout=1.0,
        **kw,  # type: ignore[arg-type]
    )


def test_reresolution_keeps_state_of_peers_that_stay(dns: DnsServer) -> None:
    dns.set_a("b.test", ["127.0.0.2", "127.0.0.3"], ttl=1)
    up = _upstream(dns)
    peers = Peers(up)
    assert peers.tries() == 0 and peers.selection().get() is None  # nothing known yet: no live upstreams

    async def go() -> None:
        r = dynamic.Reresolver(up, peers, asyncio.get_running_loop())
        delay = await r.resolve_once(0)
        assert delay == 2.0  # TTL + 1 s, as nginx's timer
        assert sorted(p.name for p in peers.all) == ["127.0.0.2:8080", "127.0.0.3:8080"]
        sel = peers.selection()
        in_flight = sel.get()
        assert in_flight is not None and in_flight.conns == 1
        stays = in_flight.name
        gone = "127.0.0.3:8080" if stays == "127.0.0.2:8080" else "127.0.0.2:8080"
        dns.set_a("b.test", [stays.split(":")[0], "127.0.0.4"], ttl=1)
        r.client.forget("b.test")
        await r.resolve_once(0)
        names = sorted(p.name for p in peers.all)
        assert stays in names and gone not in names and "127.0.0.4:8080" in names
        kept = next(p for p in peers.all if p.name == stays)
        assert kept is in_flight and kept.conns == 1  # the same object: the request gives it back
        sel.free(in_flight, PeerState.OK)
        assert kept.conns == 0
        # a DNS outage keeps the last good peers
        dns.mode = "servfail"
        r.client.forget("b.test")
        assert await r.resolve_once(0) == 1.0  # retry after max(resolver_timeout, 1 s)
        assert sorted(p.name for p in peers.all) == names
        # NXDOMAIN is an answer: the name is gone, and so are its peers (as nginx)
        dns.mode = "ok"
        dns.a.clear()
        r.client.forget("b.test")
        await r.resolve_once(0)
        assert peers.all == []

    run(go())


def test_chash_ring_follows_resolution(dns: DnsServer) -> None:
    """The ring hashes the server text as written, so a resolve server's points do not move when
    its address changes (nginx hashes peer->server)."""
    dns.set_a("b.test", ["127.0.0.2"], ttl=1)
    up = _upstream(dns, balancer="hash", hash_key="$uri", hash_consistent=True)
    up = Upstream(
        **{
            **up.__dict__,
            "servers": (
                UpstreamServer(
                    host="127.0.0.1", port=9001, address=("127.0.0.1", 9001), written="127.0.0.1:9001"
                ),
            ),
        }
    )
    peers = Peers(up)

    async def go() -> dict[str, str]:
        r = dynamic.Reresolver(up, peers, asyncio.get_running_loop())
        await r.resolve_once(0)
        picks = {}
        for i in range(50):
            p = peers.selection(f"/k{i}").get()
            assert p is not None
            picks[f"/k{i}"] = p.server_id
            peers.selection(f"/k{i}").free(p, PeerState.OK)
        return picks

    before = run(go())
    assert set(before.values()) == {"127.0.0.1:9001", "b.test:8080"}


def test_concurrent_lookups_share_one_query(dns: DnsServer) -> None:
    dns.set_a("b.test", ["127.0.0.2"], ttl=60)
    c = client(dns)

    async def go() -> None:
        got = await asyncio.gather(*(c.addresses("b.test") for _ in range(20)))
        assert {g.addrs for g in got} == {("127.0.0.2",)}

    run(go())
    assert dns.count("b.test") == 1
    # the same during an outage: 20 waiting requests, one query, one failure each
    dns.mode = "drop"
    c.forget("b.test")

    async def outage() -> None:
        got = await asyncio.gather(*(c.addresses("b.test") for _ in range(20)), return_exceptions=True)
        assert all(isinstance(g, ResolveError) and g.code == TIMEDOUT for g in got)

    before = dns.count("b.test")
    c.timeout = 1.0
    run(outage())
    assert dns.count("b.test") - before <= 2  # one query, re-sent once a second
