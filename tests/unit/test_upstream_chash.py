"""`hash KEY consistent`: nginx's ketama ring (ngx_http_upstream_init_chash / get_chash_peer),
checked against values computed by hand from nginx's C, step by step.

nginx: for each primary peer, base = crc32 update of HOST, "\\0", PORT (split at the last ':' followed
only by digits; "unix:" servers have no port); then weight * 160 points, each the crc32 of base
followed by the previous point's 4 bytes (little-endian, the first time 0). Points sorted, equal
hashes deduplicated; a key goes to the first point >= crc32(key) (wrapping), and a peer that is
down, failed or tried sends it to the next point (20 times at most, then round robin).
"""

from __future__ import annotations

import bisect
import struct
import zlib

from pyginx.config.model import Upstream, UpstreamServer
from pyginx.upstream.balancer import Peers, PeerState, _split_server_id


def server(written: str, weight: int = 1, down: bool = False) -> UpstreamServer:
    host, _, port = written.rpartition(":")
    return UpstreamServer(
        host=host, port=int(port), address=("127.0.0.1", int(port)), written=written, weight=weight, down=down
    )


def chash(*servers: UpstreamServer) -> Peers:
    return Peers(Upstream(name="u", servers=servers, balancer="hash", hash_key="$uri", hash_consistent=True))


def by_hand_ring(servers: list[tuple[str, int]]) -> list[tuple[int, str]]:
    """nginx's loop, written out with nothing shared with pyginx's code."""
    ring = []
    for written, weight in servers:
        host, _, port = written.rpartition(":")
        base = host.encode() + b"\x00" + port.encode()
        prev = 0
        for _ in range(160 * weight):
            h = zlib.crc32(base + struct.pack("<I", prev))
            ring.append((h, written))
            prev = h
    ring.sort(key=lambda p: p[0])
    return ring


def by_hand_owner(ring: list[tuple[int, str]], key: str) -> str:
    hashes = [h for h, _ in ring]
    i = bisect.bisect_left(hashes, zlib.crc32(key.encode()))
    return ring[i % len(ring)][1]


def test_points_pinned() -> None:
    """The first points of "127.0.0.1:8080" (computed once from nginx's algorithm) and a key hash."""
    peers = chash(server("127.0.0.1:8080"), server("127.0.0.1:8081"))
    mine = sorted(h for h, s in peers._points or [] if s == "127.0.0.1:8080")
    assert len(mine) == 160
    for pinned in (1841993031, 2462559737, 3720262072):
        assert pinned in mine
    assert zlib.crc32(b"/some/key") == 2354633417


def test_server_text_split_as_nginx() -> None:
    assert _split_server_id("127.0.0.1:8080") == (b"127.0.0.1", b"8080")
    assert _split_server_id("[::1]:8080") == (b"[::1]", b"8080")  # brackets stay: nginx hashes the text
    assert _split_server_id("backend") == (b"backend", b"")  # no port written: none hashed
    assert _split_server_id("unix:/tmp/s.sock") == (b"/tmp/s.sock", b"")
    assert _split_server_id("host:8a") == (b"host:8a", b"")


def test_keys_land_where_nginx_puts_them() -> None:
    layout = [("127.0.0.1:9001", 2), ("127.0.0.1:9002", 1), ("10.0.0.7:80", 1), ("backend.test:8080", 3)]
    peers = chash(*(server(w, weight=n) for w, n in layout))
    ring = by_hand_ring(layout)
    assert [h for h, _ in ring] == peers._point_hashes  # no collisions in this layout: nothing deduplicated
    for i in range(500):
        key = f"/item/{i}?v={i * 7}"
        sel = peers.selection(key)
        peer = sel.get()
        assert peer is not None
        assert peer.server_id == by_hand_owner(ring, key), key
        sel.free(peer, PeerState.OK)


def test_down_and_failed_peers_move_to_the_next_point() -> None:
    layout = [("127.0.0.1:9001", 1), ("127.0.0.1:9002", 1), ("127.0.0.1:9003", 1)]
    ring = by_hand_ring(layout)
    peers = chash(server("127.0.0.1:9001"), server("127.0.0.1:9002", down=True), server("127.0.0.1:9003"))
    hashes = [h for h, _ in ring]
    for i in range(300):
        key = f"/k{i}"
        j = bisect.bisect_left(hashes, zlib.crc32(key.encode()))
        while ring[j % len(ring)][1] == "127.0.0.1:9002":
            j += 1  # nginx walks the ring to the next point
        sel = peers.selection(key)
        peer = sel.get()
        assert peer is not None and peer.server_id == ring[j % len(ring)][1]
        # a failure of that peer: the retry goes to the next point whose peer is usable and untried
        sel.free(peer, PeerState.FAILED)
        retry = sel.get()
        assert retry is not None and retry.server_id not in (peer.server_id, "127.0.0.1:9002")
        sel.free(retry, PeerState.OK)
        for p in peers.all:
            p.fails = 0
