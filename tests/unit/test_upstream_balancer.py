"""Balancers and passive health: sequences, distributions and state transitions, with a fake clock."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyginx.config.model import Upstream, UpstreamServer
from pyginx.upstream.balancer import Peer, Peers, PeerState


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def srv(port: int, **kw: Any) -> UpstreamServer:
    return UpstreamServer(host="127.0.0.1", port=port, address=("127.0.0.1", port), **kw)


def make(*servers: UpstreamServer, clock: Clock | None = None, **kw: Any) -> Peers:
    return Peers(Upstream("u", tuple(servers), **kw), clock=clock or Clock())


def pick(peers: Peers, state: PeerState = PeerState.OK, **sel: Any) -> Peer | None:
    s = peers.selection(**sel)
    p = s.get()
    if p is not None:
        s.free(p, state)
    return p


def ports(peers: Peers, n: int, **sel: Any) -> list[int]:
    out = []
    for _ in range(n):
        p = pick(peers, **sel)
        assert p is not None
        out.append(p.server.port)
    return out


# ------------------------------------------------------------------------------------------ round robin


def test_smooth_weighted_round_robin_5_1_1() -> None:
    peers = make(srv(1, weight=5), srv(2), srv(3))
    assert ports(peers, 7) == [1, 1, 2, 1, 3, 1, 1]
    assert ports(peers, 7) == [1, 1, 2, 1, 3, 1, 1]  # and again: the cycle repeats


def test_equal_weights_alternate_over_ten_requests() -> None:
    peers = make(srv(1), srv(2))
    assert ports(peers, 10) == [1, 2] * 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6))
def test_each_cycle_follows_the_weights_exactly(weights: list[int]) -> None:
    peers = make(*(srv(i + 1, weight=w) for i, w in enumerate(weights)))
    total = sum(weights)
    for _ in range(3):
        counts = Counter(ports(peers, total))
        assert counts == Counter({i + 1: w for i, w in enumerate(weights)})


def test_down_servers_are_never_picked_and_do_not_count_as_tries() -> None:
    peers = make(srv(1), srv(2, down=True), srv(3))
    assert set(ports(peers, 10)) == {1, 3}
    assert peers.tries() == 2


def test_a_request_never_gets_the_same_peer_twice() -> None:
    peers = make(srv(1), srv(2), srv(3))
    s = peers.selection()
    got = []
    while True:
        p = s.get()
        if p is None:
            break
        got.append(p.server.port)
        s.free(p, PeerState.FAILED)
    assert sorted(got) == [1, 2, 3]
    assert s.tries == 0


def test_proxy_next_upstream_tries_limits_the_tries() -> None:
    peers = make(srv(1), srv(2), srv(3))
    assert peers.selection(next_tries=2).tries == 2
    assert peers.selection(next_tries=0).tries == 3
    assert peers.selection(next_tries=9).tries == 3


# ------------------------------------------------------------------------------------------ passive health


def probe_for(peers: Peers, port: int) -> tuple[Any, Peer]:
    """Requests until one gets `port`; that selection is returned still holding the peer."""
    for _ in range(10):
        s = peers.selection()
        p = s.get()
        assert p is not None
        if p.server.port == port:
            return s, p
        s.free(p, PeerState.OK)
    raise AssertionError(f"port {port} never picked")


def test_failed_server_is_skipped_for_fail_timeout_then_probed_once() -> None:
    clock = Clock()
    peers = make(srv(1, max_fails=1, fail_timeout=10), srv(2), clock=clock)
    s = peers.selection()
    first = s.get()
    assert first is not None and first.server.port == 1
    assert s.free(first, PeerState.FAILED) is True  # "upstream server temporarily disabled"
    assert ports(peers, 5) == [2] * 5
    clock.now += 10  # still within fail_timeout (<=)
    assert ports(peers, 3) == [2] * 3
    clock.now += 1
    # past fail_timeout: one request probes it (its weight climbs back first, as in nginx) ...
    s1, probe = probe_for(peers, 1)
    # ... and while the probe is in flight, others keep away
    assert ports(peers, 4) == [2] * 4
    s1.free(probe, PeerState.OK)
    # the probe succeeded: back in the rotation
    assert sorted(ports(peers, 4)) == [1, 1, 2, 2]
    assert peers.primary.peers[0].fails == 0


def test_failed_probe_disables_again() -> None:
    clock = Clock()
    peers = make(srv(1, max_fails=1, fail_timeout=5), srv(2), clock=clock)
    pick(peers, PeerState.FAILED)  # port 1 fails
    clock.now += 6
    s, probe = probe_for(peers, 1)
    s.free(probe, PeerState.FAILED)
    assert ports(peers, 4) == [2] * 4
    clock.now += 6
    assert 1 in ports(peers, 4)


def test_max_fails_counts_failures_within_fail_timeout() -> None:
    clock = Clock()
    peers = make(srv(1, max_fails=3, fail_timeout=30), srv(2, max_fails=0), clock=clock)
    peer1 = peers.primary.peers[0]
    for expected_disabled in (False, False, True):
        s = peers.selection()
        p = s.get()
        while p is not None and p is not peer1:
            s.free(p, PeerState.OK)
            s = peers.selection()
            p = s.get()
        assert p is peer1
        assert s.free(p, PeerState.FAILED) is expected_disabled
        clock.now += 1
    assert ports(peers, 6) == [2] * 6


def test_max_fails_zero_never_disables() -> None:
    peers = make(srv(1, max_fails=0), srv(2, max_fails=0))
    for _ in range(10):
        pick(peers, PeerState.FAILED)
    assert set(ports(peers, 6)) == {1, 2}


def test_failure_lowers_effective_weight_which_recovers() -> None:
    clock = Clock()
    peers = make(srv(1, weight=4, max_fails=2), srv(2, weight=4), clock=clock)
    p1 = peers.primary.peers[0]
    s = peers.selection()
    p = s.get()
    assert p is p1
    s.free(p, PeerState.FAILED)
    assert p1.effective_weight == 2  # weight / max_fails
    ports(peers, 8)
    assert p1.effective_weight == 4


def test_single_server_is_never_marked_down() -> None:
    clock = Clock()
    peers = make(srv(1, max_fails=1), clock=clock)
    for _ in range(5):
        s = peers.selection()
        assert s.tries == 1
        p = s.get()
        assert p is not None
        assert s.free(p, PeerState.FAILED) is False
        assert s.tries == 0
    assert peers.primary.peers[0].fails == 0
    assert pick(peers) is not None


def test_single_down_server_means_no_live_upstreams() -> None:
    peers = make(srv(1, down=True))
    assert peers.selection().get() is None


def test_every_server_failing_means_no_live_upstreams() -> None:
    peers = make(srv(1), srv(2))
    s = peers.selection()
    for _ in range(2):
        p = s.get()
        assert p is not None
        s.free(p, PeerState.FAILED)
    assert peers.selection().get() is None


def test_next_state_does_not_count_a_failure() -> None:
    peers = make(srv(1), srv(2))
    s = peers.selection()
    p = s.get()
    assert p is not None
    s.free(p, PeerState.NEXT)  # an http_404 retried elsewhere
    assert p.fails == 0
    assert s.tries == 1


# ------------------------------------------------------------------------------------------ backup, max_conns


def test_backups_only_when_every_primary_is_unusable() -> None:
    clock = Clock()
    peers = make(srv(1), srv(2), srv(9, backup=True), clock=clock)
    assert peers.tries() == 3
    assert set(ports(peers, 6)) == {1, 2}
    pick(peers, PeerState.FAILED)
    left = set(ports(peers, 4))
    assert len(left) == 1 and 9 not in left  # one primary left: still no backup
    s = peers.selection()
    got = []
    while (p := s.get()) is not None:
        got.append(p.server.port)
        s.free(p, PeerState.OK if p.backup else PeerState.FAILED)
        if p.backup:
            break
    assert got[-1] == 9  # the backup was the last resort
    assert ports(peers, 3) == [9, 9, 9]  # both primaries are disabled now
    clock.now += 11
    assert set(ports(peers, 2)) <= {1, 2}  # primaries probed again first


def test_backup_is_not_single() -> None:
    # one primary plus a backup: the primary can be marked failed (nginx clears `single` then)
    peers = make(srv(1), srv(9, backup=True))
    assert not peers.primary.single
    assert pick(peers, PeerState.FAILED) is not None
    assert ports(peers, 2) == [9, 9]


def test_max_conns() -> None:
    peers = make(srv(1, max_conns=1), srv(2, max_conns=1))
    s1, s2, s3 = peers.selection(), peers.selection(), peers.selection()
    a, b = s1.get(), s2.get()
    assert a is not None and b is not None and a is not b
    assert s3.get() is None  # both at max_conns: no live upstreams
    s1.free(a, PeerState.OK)
    c = s3.get()
    assert c is a


def test_single_server_max_conns_falls_to_none() -> None:
    peers = make(srv(1, max_conns=1))
    s1 = peers.selection()
    assert s1.get() is not None
    assert peers.selection().get() is None


def test_health_down_peer_is_skipped() -> None:
    peers = make(srv(1), srv(2))
    peers.set_health(peers.primary.peers[0], up=False)
    assert ports(peers, 4) == [2] * 4
    peers.set_health(peers.primary.peers[0], up=True)
    assert set(ports(peers, 4)) == {1, 2}


# ------------------------------------------------------------------------------------------ least_conn


def test_least_conn_prefers_fewest_connections() -> None:
    peers = make(srv(1), srv(2), srv(3), balancer="least_conn")
    held = []
    for _ in range(3):
        s = peers.selection()
        p = s.get()
        assert p is not None
        held.append((s, p))
    assert sorted(p.server.port for _, p in held) == [1, 2, 3]
    s0, p0 = held[1]
    s0.free(p0, PeerState.OK)
    s = peers.selection()
    p = s.get()
    assert p is p0


def test_least_conn_ties_go_round_robin_with_weights() -> None:
    peers = make(srv(1, weight=5), srv(2), srv(3), balancer="least_conn")
    assert ports(peers, 7) == [1, 1, 2, 1, 3, 1, 1]


def test_least_conn_divides_by_weight() -> None:
    peers = make(srv(1, weight=3), srv(2), balancer="least_conn")
    held = [peers.selection() for _ in range(4)]
    got = Counter()
    for s in held:
        p = s.get()
        assert p is not None
        got[p.server.port] += 1
    assert got == Counter({1: 3, 2: 1})


# ------------------------------------------------------------------------------------------ ip_hash


def test_ip_hash_same_network_same_server() -> None:
    peers = make(srv(1), srv(2), srv(3), balancer="ip_hash")
    first = ports(peers, 1, client_addr="10.1.2.3")[0]
    for last in range(256):
        assert ports(peers, 1, client_addr=f"10.1.2.{last}") == [first]


def test_ip_hash_matches_nginx_formula() -> None:
    peers = make(srv(1), srv(2), srv(3), balancer="ip_hash")
    h = 89
    for b in (192, 168, 7):
        h = (h * 113 + b) % 6271
    assert ports(peers, 1, client_addr="192.168.7.200") == [h % 3 + 1]


def test_ip_hash_spreads_networks_and_uses_all_of_ipv6() -> None:
    peers = make(srv(1), srv(2), srv(3), balancer="ip_hash")
    seen = {ports(peers, 1, client_addr=f"10.{a}.{b}.1")[0] for a in range(4) for b in range(8)}
    assert seen == {1, 2, 3}
    v6 = {ports(peers, 1, client_addr=f"2001:db8::{i:x}")[0] for i in range(40)}
    assert len(v6) > 1  # the last bytes matter for IPv6


def test_ip_hash_moves_off_a_failed_server_and_back() -> None:
    clock = Clock()
    peers = make(srv(1), srv(2), srv(3), balancer="ip_hash", clock=clock)
    home = ports(peers, 1, client_addr="10.0.0.1")[0]
    s = peers.selection(client_addr="10.0.0.1")
    p = s.get()
    assert p is not None
    s.free(p, PeerState.FAILED)
    other = ports(peers, 1, client_addr="10.0.0.1")[0]
    assert other != home
    clock.now += 11
    assert ports(peers, 1, client_addr="10.0.0.1") == [home]


# ------------------------------------------------------------------------------------------ hash


def test_hash_same_key_same_server_and_spread() -> None:
    peers = make(srv(1), srv(2), srv(3), balancer="hash", hash_key="$request_uri")
    for key in ("/a", "/b", "/c?x=1"):
        first = ports(peers, 1, key=key)
        assert ports(peers, 5, key=key) == first * 5
    counts = Counter(ports(peers, 1, key=f"/k{i}")[0] for i in range(600))
    assert set(counts) == {1, 2, 3}
    assert min(counts.values()) > 100


def test_hash_empty_key_is_round_robin() -> None:
    peers = make(srv(1), srv(2), balancer="hash", hash_key="$arg_x")
    assert ports(peers, 4, key="") == [1, 2, 1, 2]


def test_consistent_hash_moves_few_keys_when_a_server_is_added() -> None:
    three = make(srv(1), srv(2), srv(3), balancer="hash", hash_consistent=True)
    four = make(srv(1), srv(2), srv(3), srv(4), balancer="hash", hash_consistent=True)
    keys = [f"/object/{i}" for i in range(2000)]
    before = {k: ports(three, 1, key=k)[0] for k in keys}
    after = {k: ports(four, 1, key=k)[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == 4 for k in moved)  # keys only move to the new server
    assert 0.10 < len(moved) / len(keys) < 0.40  # about a quarter


def test_consistent_hash_points_follow_weight() -> None:
    peers = make(srv(1, weight=3), srv(2), balancer="hash", hash_consistent=True)
    assert peers._points is not None
    owners = Counter(sid for _, sid in peers._points)
    assert owners["127.0.0.1:1"] == 480 and owners["127.0.0.1:2"] == 160


def test_consistent_hash_skips_a_failed_server() -> None:
    peers = make(srv(1), srv(2), srv(3), balancer="hash", hash_consistent=True)
    key = "/some/key"
    home = ports(peers, 1, key=key)[0]
    s = peers.selection(key=key)
    p = s.get()
    assert p is not None and p.server.port == home
    s.free(p, PeerState.FAILED)
    assert ports(peers, 1, key=key)[0] != home


# ------------------------------------------------------------------------------------------ random


def _seeded(seed: int) -> Any:
    return random.Random(seed).randrange


def test_random_follows_weights() -> None:
    up = Upstream("u", (srv(1, weight=3), srv(2)), balancer="random")
    peers = Peers(up, clock=Clock(), randint=_seeded(7))
    counts = Counter(ports(peers, 4000))
    assert 0.70 < counts[1] / 4000 < 0.80


def test_random_two_prefers_fewer_connections() -> None:
    up = Upstream("u", (srv(1), srv(2)), balancer="random", random_two=True)
    peers = Peers(up, clock=Clock(), randint=_seeded(1))
    busy = peers.selection()
    p = busy.get()
    assert p is not None
    # with two peers, "two" always compares both: the other one wins while p is busy
    for _ in range(10):
        q = pick(peers)
        assert q is not None and q is not p


def test_random_deterministic_with_injected_source() -> None:
    seq = iter([0, 1, 1, 0])
    up = Upstream("u", (srv(1), srv(2)), balancer="random")
    peers = Peers(up, clock=Clock(), randint=lambda n: next(seq))
    assert ports(peers, 4) == [1, 2, 2, 1]
