"""The keys zone: one node per cached key in a pyginx.zone table shared by every process.

A node is nginx's ngx_http_file_cache_node_t, reduced to what pyginx uses:
    expire      last use + inactive (epoch seconds): the cache manager drops nodes past it
    valid_sec   the entry's validity (a copy of the file header's, for the manager's decisions)
    lock_time   with `updating`: the fetch in progress on this key ends its lock at this time
    fs_size     bytes the file takes on disk (blocks), summed into the zone's size for max_size
    uniq        the file's inode
    body_start  where the body starts in the file
    uses        requests for the key since the node exists (proxy_cache_min_uses)
    exists      a complete file is on disk
    updating    one request is fetching the key (proxy_cache_lock, or an expired entry's refresh)
Zone meta: the total fs_size, the count of "cold" loading (the loader has not finished), a serial.

Every function here is one transaction under the zone's lock: short, and never doing file I/O. The
evicted nodes a full table returns (LRU first, as nginx's forced expiry) are handed back to the caller,
which deletes their files outside the lock.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Final

from pyginx.zone import SharedTable
from pyginx.zone.registry import current as current_zones

NODE: Final = struct.Struct("<dqdqqIIBB30x")  # padded to 88 bytes: about 8,000 nodes per MiB, as nginx
NODE_SIZE: Final = NODE.size
META: Final = struct.Struct("<qBB6x")  # total fs_size, loaded flag (the loader finished), cold flag
META_SIZE: Final = META.size

# results of lookup() (nginx's return codes of ngx_http_file_cache_exists)
FOUND: Final = "found"  # a node that says a file exists (or enough uses): open the file
NEW: Final = "new"  # no node before (or one renewed): fetch, and store if cacheable
SCARCE: Final = "scarce"  # fewer uses than proxy_cache_min_uses: fetch, do not store


@dataclass(init=False)  # __init__ written out: the compiled build makes it native (a dataclass's is not)
class Node:
    expire: float
    valid_sec: int
    lock_time: float
    fs_size: int
    uniq: int
    body_start: int
    uses: int
    exists: bool
    updating: bool

    def __init__(
        self,
        expire: float = 0.0,
        valid_sec: int = 0,
        lock_time: float = 0.0,
        fs_size: int = 0,
        uniq: int = 0,
        body_start: int = 0,
        uses: int = 0,
        exists: bool = False,
        updating: bool = False,
    ) -> None:
        self.expire = expire
        self.valid_sec = valid_sec
        self.lock_time = lock_time
        self.fs_size = fs_size
        self.uniq = uniq
        self.body_start = body_start
        self.uses = uses
        self.exists = exists
        self.updating = updating

    def pack(self) -> bytes:
        return NODE.pack(
            self.expire,
            self.valid_sec,
            self.lock_time,
            self.fs_size,
            self.uniq,
            self.body_start,
            min(self.uses, 0xFFFFFFFF),
            self.exists,
            self.updating,
        )

    @classmethod
    def unpack(cls, data: bytes) -> Node:
        e, v, lt, fs, u, bs, uses, ex, up = NODE.unpack(data)
        return cls(e, v, lt, fs, u, bs, uses, bool(ex), bool(up))


Evicted = list[tuple[bytes, Node]]


class KeysIndex:
    def __init__(self, table: SharedTable) -> None:
        self.table = table

    @classmethod
    def attach(cls, table: SharedTable) -> KeysIndex:
        return cls(table)

    # ---- zone-wide

    def _meta(self) -> tuple[int, bool, bool]:
        with self.table.transaction() as tx:
            size, loaded, cold = META.unpack(tx.meta)
        return size, bool(loaded), bool(cold)

    def size(self) -> int:
        return self._meta()[0]

    def count(self) -> int:
        return len(self.table)

    @property
    def capacity(self) -> int:
        return self.table.nslots

    def loaded(self) -> bool:
        return self._meta()[1]

    def set_loaded(self, loaded: bool) -> None:
        with self.table.transaction() as tx:
            size, _l, cold = META.unpack(tx.meta)
            tx.meta = META.pack(size, loaded, cold)

    def _add_size(self, tx_meta: bytes, delta: int) -> bytes:
        size, loaded, cold = META.unpack(tx_meta)
        return META.pack(max(0, size + delta), loaded, cold)

    # ---- a request's view

    def lookup(self, digest: bytes, inactive: float, min_uses: int) -> tuple[str, Node, Evicted]:
        """ngx_http_file_cache_exists: count a use, refresh the node's place and expiry.

        The usual HIT takes no lock: a node with a file whose expiry was already set this second
        (nginx's expire is ngx_time() + inactive, whole seconds: another use now writes the same value)
        and that is already the most recently used node (a use would not move it) is read with the
        zone's seqlock (SharedTable.peek_head), and nothing is written: nginx would write the same
        expiry and LRU place. Its use count is not raised: with a file, uses decide nothing any more
        (min_uses only matters for a key without one)."""
        now = time.time()
        expire = int(now) + inactive
        raw = self.table.peek_head(digest)
        if raw is not None:
            e, v, lt, fs, u, bs, uses, ex, up = NODE.unpack(raw)
            if ex and e == expire:
                return FOUND, Node(e, v, lt, fs, u, bs, uses, True, bool(up)), []
        evicted: Evicted = []
        with self.table.transaction() as tx:
            raw = tx.get(digest)
            if raw is not None:
                node = Node.unpack(raw)
                node.uses += 1
                node.expire = expire
                tx.put(digest, node.pack())
                if node.exists or node.uses >= min_uses:
                    return FOUND, node, evicted
                return SCARCE, node, evicted
            node = Node(expire=expire, uses=1)
            for d, rec in tx.put(digest, node.pack()):
                gone = Node.unpack(rec)
                if gone.exists:
                    tx.meta = self._add_size(tx.meta, -gone.fs_size)
                evicted.append((d, gone))
        return (NEW if min_uses <= 1 else SCARCE), node, evicted

    def get(self, digest: bytes) -> Node | None:
        with self.table.transaction() as tx:
            raw = tx.get(digest, touch=False)
        return Node.unpack(raw) if raw is not None else None

    def try_lock(self, digest: bytes, lock_age: float) -> bool:
        """proxy_cache_lock: True if this request is now the one fetching (nobody was, or the
        previous holder's lock_age is over)."""
        now = time.time()
        with self.table.transaction() as tx:
            raw = tx.get(digest, touch=False)
            if raw is None:
                return True  # evicted meanwhile: nobody else holds it either
            node = Node.unpack(raw)
            if node.updating and node.lock_time > now:
                return False
            node.updating = True
            node.lock_time = now + lock_age
            tx.put(digest, node.pack(), touch=False)
            return True

    def is_locked(self, digest: bytes) -> bool:
        node = self.get(digest)
        return node is not None and node.updating and node.lock_time > time.time()

    def start_update(self, digest: bytes, lock_age: float) -> bool:
        """An expired entry: True if this request refreshes it (STALE), False if another one already
        does (UPDATING), as in ngx_http_file_cache_read. The same lock as proxy_cache_lock's."""
        return self.try_lock(digest, lock_age)

    def unlock(self, digest: bytes) -> None:
        with self.table.transaction() as tx:
            raw = tx.get(digest, touch=False)
            if raw is not None:
                node = Node.unpack(raw)
                if node.updating:
                    node.updating = False
                    tx.put(digest, node.pack(), touch=False)

    def stored(
        self, digest: bytes, fs_size: int, uniq: int, body_start: int, valid_sec: int, inactive: float
    ) -> Evicted:
        """A complete file is in place for `digest` (ngx_http_file_cache_update): account its size."""
        now = time.time()
        evicted: Evicted = []
        with self.table.transaction() as tx:
            raw = tx.get(digest)
            node = Node.unpack(raw) if raw is not None else Node(uses=1)
            delta = fs_size - (node.fs_size if node.exists else 0)
            node.exists = True
            node.fs_size = fs_size
            node.uniq = uniq
            node.body_start = body_start
            node.valid_sec = valid_sec
            node.updating = False
            node.expire = int(now) + inactive
            for d, rec in tx.put(digest, node.pack()):
                gone = Node.unpack(rec)
                if gone.exists:
                    delta -= gone.fs_size
                evicted.append((d, gone))
            tx.meta = self._add_size(tx.meta, delta)
        return evicted

    def refreshed(self, digest: bytes, valid_sec: int) -> None:
        """A revalidated entry (304 upstream): new validity, same file."""
        with self.table.transaction() as tx:
            raw = tx.get(digest, touch=False)
            if raw is not None:
                node = Node.unpack(raw)
                node.valid_sec = valid_sec
                node.updating = False
                tx.put(digest, node.pack(), touch=False)

    def remove(self, digest: bytes) -> Node | None:
        """Forget `digest` (its file is gone or bad)."""
        with self.table.transaction() as tx:
            raw = tx.delete(digest)
            if raw is None:
                return None
            node = Node.unpack(raw)
            if node.exists:
                tx.meta = self._add_size(tx.meta, -node.fs_size)
            return node

    # ---- the loader and the manager

    def add_loaded(
        self, digest: bytes, fs_size: int, uniq: int, body_start: int, valid_sec: int, inactive: float
    ) -> bool:
        """The loader found a file: a node for it unless a request made one already (then that request
        owns it). Loaded nodes go to the LRU end: a file nobody asked for since is the first to go."""
        now = time.time()
        with self.table.transaction() as tx:
            if tx.get(digest, touch=False) is not None:
                return False
            if tx.used >= tx.capacity:
                return False  # a full zone: nginx's loader stops adding too ("could not allocate node")
            node = Node(int(now) + inactive, valid_sec, 0.0, fs_size, uniq, body_start, 1, True, False)
            tx.put(digest, node.pack(), touch=False)
            tx.meta = self._add_size(tx.meta, fs_size)
            return True

    def expire_inactive(self, now: float, limit: int) -> tuple[Evicted, bool]:
        """Up to `limit` nodes past their `expire`, oldest first, removed; and whether more remain."""
        out: Evicted = []
        with self.table.transaction() as tx:
            for d, rec in tx.oldest(limit + 1):
                node = Node.unpack(rec)
                if node.expire > now:
                    return out, False
                if len(out) >= limit:
                    return out, True
                if node.updating and node.lock_time > now:
                    tx.touch(d)  # in use: to the front, as nginx does with locked entries
                    continue
                tx.delete(d)
                if node.exists:
                    tx.meta = self._add_size(tx.meta, -node.fs_size)
                out.append((d, node))
        return out, False

    def forced_expire(self, count: int) -> Evicted:
        """Remove the `count` least recently used nodes not being fetched (max_size, min_free, a zone
        nearly full: ngx_http_file_cache_forced_expire)."""
        now = time.time()
        out: Evicted = []
        with self.table.transaction() as tx:
            for d, rec in tx.oldest(count + 20):
                if len(out) >= count:
                    break
                node = Node.unpack(rec)
                if node.updating and node.lock_time > now:
                    continue
                tx.delete(d)
                if node.exists:
                    tx.meta = self._add_size(tx.meta, -node.fs_size)
                out.append((d, node))
        return out


_indexes: dict[int, KeysIndex] = {}
_by_name: dict[str, tuple[object, KeysIndex]] = {}  # per zone name, for the zone set it was made from


def index_for(zone_name: str) -> KeysIndex | None:
    """This process's view of the keys zone `zone_name` (None if the running zones lack it)."""
    zones = current_zones()
    hit = _by_name.get(zone_name)
    if hit is not None and hit[0] is zones:
        return hit[1]
    if zones.get(zone_name) is None:
        return None
    table = zones.attach(zone_name, SharedTable, NODE_SIZE, META_SIZE, True)  # seqlock: lock-free HITs
    assert isinstance(table, SharedTable)
    idx = _indexes.get(id(table))
    if idx is None or idx.table is not table:
        idx = KeysIndex(table)
        _indexes[id(table)] = idx
    _by_name[zone_name] = (zones, idx)
    return idx
