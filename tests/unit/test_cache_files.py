"""Cache keys, the file format, the keys index and the files on disk (no sockets)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pyginx.cache import fileformat as ff
from pyginx.cache import key as ck
from pyginx.cache import processes, store
from pyginx.cache.index import FOUND, META_SIZE, NEW, NODE_SIZE, SCARCE, KeysIndex
from pyginx.config.model import CachePath
from pyginx.zone import Segment, SharedTable


def index(size: int = 64 * 1024) -> KeysIndex:
    return KeysIndex(SharedTable(Segment("c", size, "proxy_cache"), NODE_SIZE, META_SIZE, True))


def test_paths_follow_nginx_levels() -> None:
    name = "b7f54b2df7773722d382f4809d65029c"
    assert ck.relative_path(name, (1, 2)) == f"c/29/{name}"
    assert ck.relative_path(name, (2,)) == f"9c/{name}"
    assert ck.relative_path(name, ()) == name
    assert ck.digest("httpapp/").hex() == __import__("hashlib").md5(b"httpapp/").hexdigest()
    assert ck.is_cache_name(name) and not ck.is_cache_name(".tmp.1.2")


def test_variants_differ_by_the_vary_headers() -> None:
    main = ck.digest("k")
    a = ck.variant(main, "Accept-Encoding", {"accept-encoding": "gzip"})
    b = ck.variant(main, "accept-encoding", {"accept-encoding": "br"})
    assert a != b and a == ck.variant(main, " Accept-Encoding ", {"accept-encoding": "gzip"})


def header() -> ff.FileHeader:
    return ff.FileHeader(100, 5, 6, 978307200, 50, ck.crc32("k"), 0, 0, 0, '"e"', "Accept", b"v" * 16)


def test_file_round_trip_and_damage() -> None:
    h = header()
    head = ff.encode_head(200, "OK", [("Content-Type", "text/plain"), ("X-A", "b")])
    prefix = ff.build(h, "k", head)
    h.body_len = 5
    data = h.pack() + prefix[ff.HEADER_SIZE :] + b"hello"
    p = ff.parse(data, len(data), "k", ck.crc32("k"))
    assert p.status == 200 and p.headers == [("Content-Type", "text/plain"), ("X-A", "b")]
    assert (
        p.key == "k" and p.header.etag == '"e"' and p.header.vary == "Accept" and p.header.updating_sec == 5
    )
    assert data[p.header.body_start :] == b"hello"
    with pytest.raises(ff.BadCacheFile, match="truncated"):
        ff.parse(data[:-1], len(data) - 1, "k")
    with pytest.raises(ff.BadCacheFile, match="md5 collision"):
        ff.parse(data, len(data), "other")
    with pytest.raises(ff.BadCacheFile, match="too small"):
        ff.parse(data[:10], 10)
    with pytest.raises(ff.BadCacheFile, match="version"):
        ff.parse(b"XXXX" + data[4:], len(data))


def test_writer_commits_atomically_and_aborts_cleanly(tmp_path: Path) -> None:
    name = ck.digest("k").hex()
    h = header()
    w = store.Writer(str(tmp_path), (1, 2), name, ff.build(h, "k", ff.encode_head(200, "OK", [])))
    w.write(b"abc")
    final = Path(ck.file_path(str(tmp_path), name, (1, 2)))
    assert not final.exists()  # nothing visible before the rename
    fs_size, inode = w.commit(h)
    assert final.is_file() and inode == final.stat().st_ino and fs_size > 0
    entry = store.open_entry(str(final), "k", ck.crc32("k"))
    assert entry is not None and entry.body() == b"abc"
    entry.close()
    w2 = store.Writer(str(tmp_path), (1, 2), name, b"x")
    w2.abort()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_walk_removes_dead_temp_files_and_junk(tmp_path: Path) -> None:
    (tmp_path / ".tmp.999999999.1").write_bytes(b"half")  # a process killed mid-write
    mine = tmp_path / f".tmp.{os.getpid()}.1"
    mine.write_bytes(b"being written")
    (tmp_path / "junk").write_bytes(b"?")
    good = tmp_path / "a" / ("0" * 31 + "a")
    good.parent.mkdir()
    good.write_bytes(b"")
    assert [n for _, n in store.walk(str(tmp_path))] == [good.name]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "a"])


def test_index_uses_min_uses_and_the_lock() -> None:
    idx = index()
    d = ck.digest("k")
    assert idx.lookup(d, 60, 2)[0] == SCARCE  # first use of two
    assert idx.lookup(d, 60, 2)[0] == FOUND  # enough uses: look for the file
    assert idx.lookup(ck.digest("n"), 60, 1)[0] == NEW
    assert idx.try_lock(d, 5) and not idx.try_lock(d, 5) and idx.is_locked(d)
    idx.unlock(d)
    assert not idx.is_locked(d) and idx.try_lock(d, 0.0)
    assert idx.try_lock(d, 5)  # an expired lock (lock_age 0) is taken over
    idx.stored(d, 4096, 1, 300, int(time.time()) + 60, 60)
    assert idx.size() == 4096 and not idx.is_locked(d)
    node = idx.get(d)
    assert node is not None and node.exists and node.fs_size == 4096
    idx.remove(d)
    assert idx.size() == 0


def test_index_forced_and_inactive_expiry_lru_first() -> None:
    idx = index()
    ds = [ck.digest(str(i)) for i in range(5)]
    for d in ds:
        idx.lookup(d, 60, 1)
        idx.stored(d, 1000, 1, 1, 0, 60)
    idx.lookup(ds[0], 60, 1)  # key 0 used again: key 1 is now the least recently used
    gone = idx.forced_expire(2)
    assert [d for d, _ in gone] == [ds[1], ds[2]] and idx.size() == 3000
    gone, more = idx.expire_inactive(time.time() + 120, 10)
    assert len(gone) == 3 and not more and idx.count() == 0


def test_manager_pass_keeps_max_size_and_loader_refills(tmp_path: Path) -> None:
    cp = CachePath(path=str(tmp_path), zone="c", zone_size=64 * 1024, levels=(1, 2), max_size=3 * 4096)
    idx = index()
    for i in range(6):
        key = f"k{i}"
        name = ck.digest(key).hex()
        h = ff.FileHeader(int(time.time()) + 60, 0, 0, -1, 0, ck.crc32(key), 0, 0, 0)
        w = store.Writer(cp.path, cp.levels, name, ff.build(h, key, ff.encode_head(200, "OK", [])))
        w.write(b"x" * 100)
        fs, ino = w.commit(h)
        idx.lookup(ck.digest(key), 60, 1)
        idx.stored(ck.digest(key), fs, ino, h.body_start, h.valid_sec, 60)
    processes.manage_once(cp, idx)
    assert idx.size() < 3 * 4096
    left = [n for _, n in store.walk(cp.path)]
    assert len(left) == idx.count() and ck.digest("k5").hex() in left and ck.digest("k0").hex() not in left
    fresh = index()
    assert processes.load_cache(cp, fresh) == len(left) and fresh.size() == idx.size()


def test_manager_keeps_min_free_and_drops_inactive(tmp_path: Path) -> None:
    cp = CachePath(path=str(tmp_path), zone="c", zone_size=64 * 1024, min_free=1 << 62, inactive=0.0)
    idx = index()
    for i in range(3):
        d = ck.digest(str(i))
        idx.lookup(d, 60, 1)
        idx.stored(d, 4096, 1, 1, 0, 60)
    processes.manage_once(cp, idx)  # no disk has 4 EiB free: everything not being fetched goes
    assert idx.count() == 0
    d = ck.digest("old")
    idx.lookup(d, 0.0, 1)  # inactive 0: expired at once
    gone, _more = idx.expire_inactive(time.time() + 1, 10)
    assert [x for x, _ in gone] == [d]


def test_index_hit_without_the_lock_sees_other_writers() -> None:
    """The lock-free HIT (the node at the LRU head, its expiry set this second) still sees every
    change another process makes: a removal, a new file, another key used since."""
    idx = index()
    d, other = ck.digest("hit"), ck.digest("other")
    idx.lookup(d, 60, 1)
    idx.stored(d, 1000, 7, 1, int(time.time()) + 60, 60)
    assert idx.lookup(d, 60, 1)[0] == FOUND  # locked: refreshes expiry and place
    rc, node, _ = idx.lookup(d, 60, 1)  # lock-free now
    assert rc == FOUND and node.exists and node.uniq == 7
    idx.stored(d, 1000, 8, 1, int(time.time()) + 60, 60)  # a new file (another worker's store)
    assert idx.lookup(d, 60, 1)[1].uniq == 8
    idx.remove(d)  # purged or evicted elsewhere
    assert idx.lookup(d, 60, 1)[0] == NEW
    idx.stored(d, 1000, 9, 1, int(time.time()) + 60, 60)
    idx.lookup(other, 60, 1)  # another key is now the most recent: d's use must move it back
    idx.lookup(d, 60, 1)
    with idx.table.transaction() as tx:
        assert [k for k, _ in tx.oldest(1)] == [other]
