"""Per-worker peer state and nginx's balancing methods, as plain data and pure decisions.

Each worker keeps its own `Peers` per upstream block (nginx without a shared `zone` does the same), so
weights, failure counts and connection counts are per worker. A request asks `Peers.selection()` for a
`Selection` (nginx's per-request peer data: which peers this request already tried, its hash state),
calls `get()` before every try and `free()` after it.

The clock and the random source are injected so that tests are deterministic; times are float seconds
from any monotonic origin.

nginx sources followed (behaviour, not code): ngx_http_upstream_round_robin.c, and the least_conn,
ip_hash, hash and random modules under src/http/modules/.
"""

from __future__ import annotations

import bisect
import ipaddress
import random as _random
import time
import zlib
from collections.abc import Callable
from enum import Enum

from pyginx.config.model import Upstream, UpstreamServer

Clock = Callable[[], float]
RandInt = Callable[[int], int]  # n -> a uniform integer in [0, n)

# nginx gives up on hashing after this many collisions with unusable peers and falls back to round robin.
HASH_MAX_TRIES = 20
# Points on the ketama ring per unit of weight (Cache::Memcached::Fast compatible, as nginx).
CHASH_POINTS_PER_WEIGHT = 160


class PeerState(Enum):
    """How a try ended, for `Selection.free` (nginx's NGX_PEER_FAILED / NGX_PEER_NEXT / 0)."""

    OK = 0
    FAILED = 1  # error, timeout, invalid header, or an http_5xx/429 that proxy_next_upstream retries
    NEXT = 2  # http_403/http_404 retried: not the server's fault, so no failure is counted


class Peer:
    """One upstream address and its mutable per-worker state."""

    __slots__ = (
        "server",
        "index",
        "backup",
        "name",
        "server_id",
        "weight",
        "max_fails",
        "fail_timeout",
        "max_conns",
        "down",
        "current_weight",
        "effective_weight",
        "fails",
        "checked",
        "accessed",
        "conns",
        "health_down",
    )

    def __init__(self, server: UpstreamServer, index: int, backup: bool) -> None:
        self.server = server
        self.index = index
        self.backup = backup
        self.name = server.name  # resolved address: what $upstream_addr and the error log print
        # The `server` directive as written: the ketama ring hashes this, so that resolving a name to
        # a different address keeps its points (nginx hashes peer->server too).
        self.server_id = _server_id(server)
        self.weight = max(1, server.weight)
        self.max_fails = server.max_fails
        self.fail_timeout = server.fail_timeout
        self.max_conns = server.max_conns
        self.down = server.down
        self.current_weight = 0
        self.effective_weight = self.weight
        self.fails = 0
        self.checked = 0.0
        self.accessed = 0.0
        self.conns = 0
        self.health_down = False  # set by active health checks (pyginx/upstream/health.py)

    def failing(self, now: float) -> bool:
        """Over max_fails within fail_timeout of the last failure or probe: skip it."""
        return self.max_fails > 0 and self.fails >= self.max_fails and now - self.checked <= self.fail_timeout

    def usable(self, now: float) -> bool:
        if self.down or self.health_down:
            return False
        if self.failing(now):
            return False
        return not (self.max_conns and self.conns >= self.max_conns)

    def __repr__(self) -> str:
        return f"<Peer {self.name} w={self.weight} cw={self.current_weight} fails={self.fails}>"


class PeerGroup:
    """The primary servers, or the backup ones (nginx's ngx_http_upstream_rr_peers_t)."""

    __slots__ = ("peers", "total_weight", "tries", "single", "cumulative")

    def __init__(self, peers: list[Peer], single: bool) -> None:
        self.peers = peers
        self.total_weight = sum(p.weight for p in peers)
        # Tries a request may make in this group: the servers not marked `down` in the configuration.
        self.tries = sum(1 for p in peers if not p.down)
        # One primary and no backup: nginx never marks such a server failed (there is nowhere else to go).
        self.single = single
        # Running weight totals, for the random method's weighted pick.
        self.cumulative: list[int] = []
        total = 0
        for p in peers:
            total += p.weight
            self.cumulative.append(total)


class Peers:
    """Every peer of one upstream block in this worker, and the balancing method to pick among them."""

    def __init__(
        self,
        upstream: Upstream,
        clock: Clock = time.monotonic,
        randint: RandInt | None = None,
    ) -> None:
        self.upstream = upstream
        self.name = upstream.name
        self.clock = clock
        self.randint: RandInt = randint if randint is not None else _random.Random().randrange
        self.method = upstream.balancer
        # Peers found by DNS at run time (pyginx.upstream.dynamic), per `resolve` server: index into
        # upstream.resolvable -> the servers its last good answer gave.
        self._resolved: dict[int, list[UpstreamServer]] = {}
        self.generation = 0  # bumped by every change of the peer set
        self.primary = PeerGroup([], single=False)
        self.backup: PeerGroup | None = None
        self.all: list[Peer] = []
        self._tries = 0
        self._points: list[tuple[int, str]] | None = None
        self._point_hashes: list[int] = []
        self._rebuild()

    def _rebuild(self) -> None:
        """(Re)make the groups from the configured servers plus the resolved ones.

        A peer that stays (same server and address) keeps its Peer object, and so its connection
        count, failures, weights and index: requests in flight hold it and give it back with free(),
        and the keep-alive pool is keyed by its address, so neither notices the change. A removed
        peer is only dropped from the groups; a request still using it finishes normally.
        """
        upstream = self.upstream
        servers = list(upstream.servers)
        for key in sorted(self._resolved):
            servers.extend(self._resolved[key])
        primaries = [s for s in servers if not s.backup]
        backups = [s for s in servers if s.backup]
        if not primaries and not upstream.resolvable:  # the loader refuses this; keep a usable shape
            primaries, backups = backups, []
        old = {(p.server_id, p.name, p.backup): p for p in self.all}
        prim = self._group_peers(primaries, False, old)
        back = self._group_peers(backups, True, old)
        self.primary = PeerGroup(prim, single=len(prim) == 1 and not back)
        self.backup = PeerGroup(back, single=False) if back else None
        self.all = prim + back
        # the servers not marked down: nginx's peers->tries
        self._tries = self.primary.tries + (self.backup.tries if self.backup is not None else 0)
        self._points = None
        self._point_hashes = []
        if self.method == "hash" and upstream.hash_consistent:
            self._build_ketama()
        self.generation += 1

    @staticmethod
    def _group_peers(
        servers: list[UpstreamServer], backup: bool, old: dict[tuple[str, str, bool], Peer]
    ) -> list[Peer]:
        kept: list[Peer | None] = []
        used: set[int] = set()
        for s in servers:
            peer = old.pop((_server_id(s), s.name, backup), None)
            if peer is not None:
                peer.server = s
                peer.weight = max(1, s.weight)
                used.add(peer.index)
            kept.append(peer)
        # New peers take the smallest free indexes (a kept peer's index never changes: requests in
        # flight mark tried peers by index).
        result: list[Peer] = []
        candidate = 0
        for p, s in zip(kept, servers, strict=True):
            if p is None:
                while candidate in used:
                    candidate += 1
                p = Peer(s, candidate, backup)
                candidate += 1
            result.append(p)
        return result

    def resolved_count(self, key: int) -> int:
        """How many servers the last good answer for `upstream.resolvable[key]` gave."""
        return len(self._resolved.get(key, ()))

    def set_resolved(self, key: int, servers: list[UpstreamServer]) -> bool:
        """The servers DNS now gives for `upstream.resolvable[key]`; True when the peer set changed."""
        before = self._resolved.get(key)
        if before is not None and [(s.name, s.weight, s.backup, s.written) for s in before] == [
            (s.name, s.weight, s.backup, s.written) for s in servers
        ]:
            return False
        self._resolved[key] = list(servers)
        self._rebuild()
        return True

    # --------------------------------------------------------------------------------------- per request

    def tries(self) -> int:
        """nginx's ngx_http_upstream_tries(): usable configured servers, primaries and backups."""
        return self._tries

    def selection(self, key: str = "", client_addr: str = "", next_tries: int = 0) -> Selection:
        """Per-request state. `key` is the evaluated `hash` key; `client_addr` feeds ip_hash.

        `next_tries` is proxy_next_upstream_tries (0 = no limit beyond the number of servers).
        """
        tries = self._tries
        if next_tries and tries > next_tries:
            tries = next_tries
        return Selection(self, key, client_addr, tries)

    # --------------------------------------------------------------------------------------- ketama ring

    def _build_ketama(self) -> None:
        points: list[tuple[int, str]] = []
        for peer in self.primary.peers:
            host, port = _split_server_id(peer.server_id)
            base = zlib.crc32(host + b"\0" + port)
            prev = 0
            for _ in range(peer.weight * CHASH_POINTS_PER_WEIGHT):
                # Each point hashes the previous one's value (little-endian) after HOST \0 PORT.
                h = zlib.crc32(prev.to_bytes(4, "little"), base)
                points.append((h, peer.server_id))
                prev = h
        points.sort(key=lambda p: p[0])
        # Equal hashes keep the first point only, as nginx's dedup after qsort.
        uniq: list[tuple[int, str]] = []
        for point in points:
            if not uniq or uniq[-1][0] != point[0]:
                uniq.append(point)
        self._points = uniq
        self._point_hashes = [h for h, _ in uniq]

    def ketama_start(self, key: bytes) -> int:
        """Index of the first point at or after crc32(key) (may equal len(points): wraps later)."""
        return bisect.bisect_left(self._point_hashes, zlib.crc32(key))

    # --------------------------------------------------------------------------------------- health

    def set_health(self, peer: Peer, up: bool) -> None:
        """Active health checks mark a peer down or up again (independent of passive failures)."""
        peer.health_down = not up


def _server_id(server: UpstreamServer) -> str:
    """nginx's peer->server: the address as the `server` line wrote it (an SRV target's name)."""
    if server.written:
        return server.written
    return f"unix:{server.unix}" if server.unix is not None else f"{server.host}:{server.port}"


def _split_server_id(server_id: str) -> tuple[bytes, bytes]:
    """HOST and PORT as nginx's chash splits the server name: a trailing `:digits` is the port."""
    raw = server_id.encode("utf-8", "surrogateescape")
    if raw[:5].lower() == b"unix:":
        return raw[5:], b""
    host, sep, port = raw.rpartition(b":")
    if sep and port.isdigit():
        return host, port
    return raw, b""


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _ip_hash_bytes(addr: str) -> bytes:
    """ip_hash input: the first three octets of an IPv4 address, all of an IPv6 one, else 3 zeros."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return b"\0\0\0"  # unix-socket clients: nginx's pseudo address
    packed = ip.packed
    return packed[:3] if ip.version == 4 else packed


class Selection:
    """One request's view of the balancer: peers tried so far, tries left, hash progress."""

    __slots__ = (
        "peers",
        "group",
        "tried",
        "tries",
        "key",
        "client_bytes",
        "hash_tries",
        "hash_value",
        "rehash",
        "ip_hash",
        "current",
    )

    def __init__(self, peers: Peers, key: str, client_addr: str, tries: int) -> None:
        self.peers = peers
        self.group = peers.primary
        self.tried = 0  # bitmask over self.group.peers
        self.tries = tries
        self.key = _key_bytes(key) if key else b""
        self.client_bytes = _ip_hash_bytes(client_addr) if peers.method == "ip_hash" else b""
        self.hash_tries = 0
        self.hash_value = 0
        self.rehash = 0
        self.ip_hash = 89  # nginx's seed
        self.current: Peer | None = None
        if peers.method == "hash" and peers.upstream.hash_consistent and peers._points:
            self.hash_value = peers.ketama_start(self.key)

    # ------------------------------------------------------------------------------------------ get

    def get(self) -> Peer | None:
        """The peer for the next try, its connection count taken; None means "no live upstreams"."""
        method = self.peers.method
        if method == "least_conn":
            peer = self._get_least_conn()
        elif method == "ip_hash":
            peer = self._get_ip_hash()
        elif method == "hash":
            peer = self._get_chash() if self.peers.upstream.hash_consistent else self._get_hash()
        elif method == "random":
            peer = self._get_random()
        else:
            peer = self._get_round_robin()
        self.current = peer
        return peer

    def _mark_tried(self, peer: Peer) -> None:
        self.tried |= 1 << peer.index

    def _is_tried(self, peer: Peer) -> bool:
        return bool(self.tried >> peer.index & 1)

    def _take(self, peer: Peer, now: float) -> Peer:
        """Book-keeping common to every method once a peer is chosen."""
        if now - peer.checked > peer.fail_timeout:
            peer.checked = now  # starts a probe window if the peer had failed
        peer.conns += 1
        self._mark_tried(peer)
        return peer

    def _to_backup(self) -> bool:
        """Every primary is unusable: move this request to the backup servers (once)."""
        backup = self.peers.backup
        if backup is None or self.group is backup:
            return False
        self.group = backup
        self.tried = 0
        return True

    def _get_round_robin(self) -> Peer | None:
        now = self.peers.clock()
        while True:
            group = self.group
            if group.single:
                peer = group.peers[0]
                # A lone server is used even after failures; only `down`, health checks and max_conns stop it.
                if not (peer.down or peer.health_down or (peer.max_conns and peer.conns >= peer.max_conns)):
                    peer.conns += 1
                    return peer
            else:
                best = self._smooth_pick(group.peers, now, None)
                if best is not None:
                    return self._take(best, now)
            if not self._to_backup():
                return None

    def _smooth_pick(self, peers: list[Peer], now: float, server_id: str | None) -> Peer | None:
        """Smooth weighted round robin over the usable, untried `peers` (optionally one server's)."""
        best: Peer | None = None
        total = 0
        for peer in peers:
            if self._is_tried(peer) or not peer.usable(now):
                continue
            if server_id is not None and peer.server_id != server_id:
                continue
            peer.current_weight += peer.effective_weight
            total += peer.effective_weight
            if peer.effective_weight < peer.weight:
                peer.effective_weight += 1  # a failed peer regains its weight step by step
            if best is None or peer.current_weight > best.current_weight:
                best = peer
        if best is not None:
            best.current_weight -= total
        return best

    def _get_least_conn(self) -> Peer | None:
        if self.group.single:
            return self._get_round_robin()
        now = self.peers.clock()
        while True:
            peers = self.group.peers
            best: Peer | None = None
            many = False
            for peer in peers:
                if self._is_tried(peer) or not peer.usable(now):
                    continue
                # conns/weight compared without division, as nginx
                if best is None or peer.conns * best.weight < best.conns * peer.weight:
                    best, many = peer, False
                elif peer.conns * best.weight == best.conns * peer.weight:
                    many = True
            if best is not None:
                if many:
                    # Ties are broken by smooth weighted round robin among the tied peers.
                    first = best
                    total = 0
                    for peer in peers[first.index :]:
                        if self._is_tried(peer) or not peer.usable(now):
                            continue
                        if peer.conns * first.weight != first.conns * peer.weight:
                            continue
                        peer.current_weight += peer.effective_weight
                        total += peer.effective_weight
                        if peer.effective_weight < peer.weight:
                            peer.effective_weight += 1
                        if peer.current_weight > best.current_weight:
                            best = peer
                    best.current_weight -= total
                return self._take(best, now)
            if not self._to_backup():
                return None

    def _get_ip_hash(self) -> Peer | None:
        group = self.peers.primary
        if self.hash_tries > HASH_MAX_TRIES or len(group.peers) < 2 or self.group is not group:
            return self._get_round_robin()
        now = self.peers.clock()
        h = self.ip_hash
        while True:
            for byte in self.client_bytes:
                h = (h * 113 + byte) % 6271
            peer = self._weighted_at(group, h % group.total_weight)
            if not self._is_tried(peer) and peer.usable(now):
                self.ip_hash = h
                return self._take(peer, now)
            self.hash_tries += 1
            if self.hash_tries > HASH_MAX_TRIES:
                self.ip_hash = h
                return self._get_round_robin()

    def _get_hash(self) -> Peer | None:
        group = self.peers.primary
        if (
            self.hash_tries > HASH_MAX_TRIES
            or len(group.peers) < 2
            or not self.key
            or self.group is not group
        ):
            return self._get_round_robin()
        now = self.peers.clock()
        while True:
            # Cache::Memcached compatible: ((crc32([REHASH] KEY) >> 16) & 0x7fff) + PREV_HASH
            data = (b"%d" % self.rehash if self.rehash > 0 else b"") + self.key
            self.hash_value += (zlib.crc32(data) >> 16) & 0x7FFF
            self.rehash += 1
            peer = self._weighted_at(group, self.hash_value % group.total_weight)
            if not self._is_tried(peer) and peer.usable(now):
                return self._take(peer, now)
            self.hash_tries += 1
            if self.hash_tries > HASH_MAX_TRIES:
                return self._get_round_robin()

    def _get_chash(self) -> Peer | None:
        group = self.peers.primary
        points = self.peers._points
        if self.hash_tries > HASH_MAX_TRIES or group.single or not self.key or self.group is not group:
            return self._get_round_robin()
        if not points:
            return None
        now = self.peers.clock()
        while True:
            server_id = points[self.hash_value % len(points)][1]
            best = self._smooth_pick(group.peers, now, server_id)
            if best is not None:
                return self._take(best, now)
            self.hash_value += 1  # walk the ring to the next point
            self.hash_tries += 1
            if self.hash_tries > HASH_MAX_TRIES:
                return self._get_round_robin()

    def _get_random(self) -> Peer | None:
        group = self.peers.primary
        if self.hash_tries > HASH_MAX_TRIES or len(group.peers) < 2 or self.group is not group:
            return self._get_round_robin()
        now = self.peers.clock()
        two = self.peers.upstream.random_two
        prev: Peer | None = None
        while True:
            x = self.peers.randint(group.total_weight)
            peer = group.peers[bisect.bisect_right(group.cumulative, x)]
            if peer is not prev and not self._is_tried(peer) and peer.usable(now):
                if not two:
                    return self._take(peer, now)
                if prev is not None:
                    # "two": of two distinct random picks, the one with fewer connections per weight
                    if peer.conns * prev.weight > prev.conns * peer.weight:
                        peer = prev
                    return self._take(peer, now)
                prev = peer
            self.hash_tries += 1
            if self.hash_tries > HASH_MAX_TRIES:
                return self._get_round_robin()

    @staticmethod
    def _weighted_at(group: PeerGroup, w: int) -> Peer:
        """The peer whose weight span contains `w` (0 <= w < total_weight), in configuration order."""
        return group.peers[bisect.bisect_right(group.cumulative, w)]

    # ------------------------------------------------------------------------------------------ free

    def free(self, peer: Peer, state: PeerState) -> bool:
        """Release `peer` after a try. Returns True when this failure disabled the peer (the caller
        logs nginx's warning "upstream server temporarily disabled").

        A reused keep-alive connection that the server had closed is not a try: the proxy retries
        the same peer on a fresh connection without calling free() in between.
        """
        peer.conns = max(0, peer.conns - 1)
        if self.current is peer:
            self.current = None
        if self.group.single:
            peer.fails = 0  # a lone server is never marked failed, and there is nothing to retry
            self.tries = 0
            return False
        disabled = False
        if state is PeerState.FAILED:
            now = self.peers.clock()
            peer.fails += 1
            peer.accessed = now
            peer.checked = now
            if peer.max_fails:
                peer.effective_weight -= peer.weight // peer.max_fails
                disabled = peer.fails >= peer.max_fails
            if peer.effective_weight < 0:
                peer.effective_weight = 0
        elif peer.accessed < peer.checked:
            # A success after the last failure (the probe went through): the peer is live again.
            peer.fails = 0
        if self.tries:
            self.tries -= 1
        return disabled
