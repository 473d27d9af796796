"""The shared-zone layer: tables (atomic RMW, LRU eviction, iteration), counters, reuse across reloads."""

from __future__ import annotations

import os
import struct

import pytest

from pyginx.config.model import SourcePos, ZoneDecl
from pyginx.config.zones import check
from pyginx.errors import ConfigError
from pyginx.zone import (
    Segment,
    SharedCounters,
    SharedTable,
    ZoneFull,
    ZoneRequest,
    build,
    capacity,
    key_digest,
)

REC = struct.Struct("<q")


def table(size: int = 64 * 1024, record: int = 8) -> SharedTable:
    return SharedTable(Segment("t", size, "test"), record)


def test_put_get_delete() -> None:
    t = table()
    a, b = key_digest("a"), key_digest("b")
    assert t.get(a) is None
    t.put(a, REC.pack(1))
    t.put(b, REC.pack(2))
    assert t.get(a) == REC.pack(1) and t.get(b) == REC.pack(2)
    assert len(t) == 2
    assert t.delete(a) == REC.pack(1)
    assert t.get(a) is None and len(t) == 1
    assert t.delete(a) is None


def test_record_size_checked() -> None:
    with pytest.raises(ValueError):
        table().put(key_digest("a"), b"short")


def test_lru_eviction_when_full() -> None:
    t = table(size=4096)
    n = t.nslots
    keys = [key_digest(str(i)) for i in range(n)]
    for i, k in enumerate(keys):
        assert t.put(k, REC.pack(i)) == []
    t.get(keys[0])  # key 0 is now the most recently used; key 1 the least
    evicted = t.put(key_digest("new"), REC.pack(-1))
    assert evicted == [(keys[1], REC.pack(1))]
    assert t.get(keys[1]) is None and t.get(keys[0]) == REC.pack(0)
    with t.transaction() as tx:
        assert tx.evictions == 1 and tx.used == n
        with pytest.raises(ZoneFull):
            tx.put(key_digest("other"), REC.pack(0), evict=False)


def test_oldest_and_items_order() -> None:
    t = table()
    ks = [key_digest(str(i)) for i in range(5)]
    for i, k in enumerate(ks):
        t.put(k, REC.pack(i))
    t.get(ks[0])
    with t.transaction() as tx:
        assert [d for d, _ in tx.oldest(2)] == [ks[1], ks[2]]
        assert [d for d, _ in tx.items()] == [ks[0], ks[4], ks[3], ks[2], ks[1]]
        tx.put(key_digest("loaded"), REC.pack(9), touch=False)  # the loader's entries: oldest end
        assert tx.oldest(1)[0][0] == key_digest("loaded")


def test_many_keys_collisions_and_free_list() -> None:
    t = table(size=16 * 1024)
    keys = [key_digest(str(i)) for i in range(t.nslots)]
    for i, k in enumerate(keys):
        t.put(k, REC.pack(i))
    for k in keys[::2]:
        t.delete(k)
    for i, k in enumerate(keys):
        assert t.get(k) == (None if i % 2 == 0 else REC.pack(i))
    for k in keys[::2]:
        assert t.put(k, REC.pack(7)) == []  # the freed slots are reused, nothing evicted
    assert len(t) == t.nslots


def test_meta_area() -> None:
    t = SharedTable(Segment("m", 8192, "test"), 8, meta_size=16)
    with t.transaction() as tx:
        assert tx.meta == bytes(16)
        tx.meta = b"x" * 16
    with t.transaction() as tx:
        assert tx.meta == b"x" * 16


def test_capacity_about_8000_per_mib_for_a_cache_node() -> None:
    assert 7500 <= capacity(1024 * 1024, 88) <= 9000


def test_reattach_keeps_content() -> None:
    seg = Segment("r", 8192, "test")
    SharedTable(seg, 8).put(key_digest("k"), REC.pack(5))
    assert SharedTable(seg, 8).get(key_digest("k")) == REC.pack(5)


def _hammer(t: SharedTable, key: bytes, n: int) -> None:
    for _ in range(n):
        with t.transaction() as tx:
            old = tx.get(key)
            tx.put(key, REC.pack((REC.unpack(old)[0] if old else 0) + 1))


def _fork_all(procs: int, fn: object) -> None:
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                fn()  # type: ignore[operator]
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_processes_hammering_one_key_count_exactly() -> None:
    t = table()
    key = key_digest("hot")
    _fork_all(4, lambda: _hammer(t, key, 2000))
    assert t.get(key) == REC.pack(4 * 2000)


def test_a_process_killed_holding_the_lock_does_not_wedge_the_zone() -> None:
    seg = Segment("k", 8192, "test")
    t = SharedTable(seg, 8)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        seg.acquire()
        os.write(w, b"x")
        os.kill(os.getpid(), 9)
    assert os.read(r, 1) == b"x"
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    t.put(key_digest("after"), REC.pack(1))  # would block forever if the lock survived its owner
    assert t.get(key_digest("after")) == REC.pack(1)


def test_counters_sum_over_processes() -> None:
    c = SharedCounters(Segment("c", 16 * 1024, "stub_status"), 3, gauges=(2,))

    def work() -> None:
        for _ in range(1000):
            c.add(0)
        c.add(2, 5)

    _fork_all(4, work)
    # counts survive their processes exactly; a gauge restarts when a dead process's row is reused
    assert c.total(0) == 4000 and c.total(1) == 0 and c.total(2) <= 20
    assert c.total(0, live_only=True) == 0 and c.total(2, live_only=True) == 0  # the children are gone
    c.add(0, 3)
    c.add(2, 1)
    assert c.total(0) == 4003 and c.total(2, live_only=True) == 1


def test_zone_reuse_across_reload_as_nginx() -> None:
    first, _ = build([ZoneRequest("a", 8192, "proxy_cache"), ZoneRequest("b", 8192, "limit_req")])
    second, reused = build(
        [
            ZoneRequest("a", 8192, "proxy_cache"),  # same: kept
            ZoneRequest("b", 16384, "limit_req"),  # size changed: new memory
            ZoneRequest("c", 8192, "limit_conn"),  # new
        ],
        first,
    )
    assert second.get("a") is first.get("a")
    assert second.get("b") is not first.get("b") and second.get("b").size == 16384  # type: ignore[union-attr]
    assert reused == [first.get("a")]
    first.close(keep=reused)
    assert first.get("b").closed and not second.get("a").closed  # type: ignore[union-attr]


def test_declaration_conflicts_in_nginx_words() -> None:
    pos = SourcePos("/c.yaml", 7)
    assert len(check([ZoneDecl("z", 1024, "limit_req"), ZoneDecl("z", 1024, "limit_req", pos)])) == 1
    with pytest.raises(
        ConfigError, match=r'the shared memory zone "z" is already declared for a different use in /c.yaml:7'
    ):
        check([ZoneDecl("z", 1024, "limit_req"), ZoneDecl("z", 1024, "proxy_cache", pos)])
    with pytest.raises(
        ConfigError,
        match=r'the size 2048 of shared memory zone "z" conflicts with already declared size 1024',
    ):
        check([ZoneDecl("z", 1024, "limit_req"), ZoneDecl("z", 2048, "limit_req", pos)])


def test_peek_head_reads_the_most_recent_entry_without_the_lock() -> None:
    t = SharedTable(Segment("s", 64 * 1024, "test"), 8, seqlock=True)
    a, b = key_digest("a"), key_digest("b")
    assert t.peek_head(a) is None  # empty
    t.put(a, REC.pack(1))
    assert t.peek_head(a) == REC.pack(1)
    t.put(b, REC.pack(2))
    assert t.peek_head(a) is None and t.peek_head(b) == REC.pack(2)  # a is no longer the head
    with t.transaction() as tx:  # a writer is busy: no snapshot, the caller takes the lock
        assert t.peek_head(b) is None
        tx.put(b, REC.pack(3))
    assert t.peek_head(b) == REC.pack(3)
    plain = table()
    plain.put(a, REC.pack(1))
    assert plain.peek_head(a) is None  # a table without the seqlock never reads unlocked


def test_seqlock_stays_odd_during_a_transaction_after_a_dead_writer() -> None:
    from pyginx.zone.table import _SEQ, _U64

    seg = Segment("d", 64 * 1024, "test")
    t = SharedTable(seg, 8, seqlock=True)
    a = key_digest("a")
    t.put(a, REC.pack(1))
    _U64.pack_into(seg.mem, _SEQ, _U64.unpack_from(seg.mem, _SEQ)[0] + 1)  # a writer died mid-update
    assert t.peek_head(a) is None
    with t.transaction() as tx:
        assert _U64.unpack_from(seg.mem, _SEQ)[0] & 1  # odd while this one writes
        tx.clear()  # reformatting keeps the count
        assert _U64.unpack_from(seg.mem, _SEQ)[0] & 1
        tx.put(a, REC.pack(2))
    assert t.peek_head(a) == REC.pack(2)


def test_a_seqlock_zone_is_another_format() -> None:
    seg = Segment("f", 64 * 1024, "test")
    SharedTable(seg, 8).put(key_digest("k"), REC.pack(5))
    assert SharedTable(seg, 8, seqlock=True).get(key_digest("k")) is None  # reformatted: never mixed


def test_the_zone_lock_is_the_robust_mutex_here() -> None:
    """On Linux/glibc the lock is the process-shared robust mutex, not the fcntl fallback (the
    killed-holder and 4-process tests above then exercise it)."""
    seg = Segment("x", 8192, "test")
    assert seg._mutex is not None
    with seg.locked():
        pass
    seg.close()
