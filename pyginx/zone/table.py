"""A fixed-size hash table of small records in a shared segment, with LRU order: the zone's main use.

Keys are 16-byte digests (`key_digest()` = md5 of the key, which is also the name of a cache file);
values are `record_size` bytes each, packed and unpacked by the zone's user (limit_req's excess and
last time, limit_conn's counter, the cache's node). Every operation runs inside a `Transaction`, under
the segment's lock, so a read-modify-write of one record is atomic across all processes:

    with table.transaction() as tx:
        old = tx.get(d)                      # None if absent; marks it most recently used
        tx.put(d, new)                       # inserts or replaces; evicts the LRU tail if full

When the table is full, `put` of a new key evicts the least recently used entries (nginx's rule for
its zones: limit_req expires the oldest nodes, the cache's forced expiry drops LRU entries) unless the
caller passes `evict=False` (then `ZoneFull`); the evicted records are returned to the caller, which
may have files to remove. `oldest()` walks the LRU list from its tail (the cache manager's order).

Layout (all little-endian, fixed at format time):
  header   64 bytes: magic, version, record_size, meta_size, nslots, nbuckets, lru head/tail, free
           list head, used count, evictions, `fresh` (slots from here on were never used: formatting
           a zone costs one fill of its buckets, whatever its size)
  meta     meta_size bytes for the user's zone-wide state (the cache's total size, loader flag ...)
  buckets  nbuckets x int32: head slot of each hash chain (-1 = empty)
  slots    nslots x (digest 16, chain next i32, lru prev i32, lru next i32, in-use u32, record)
A segment that does not carry the expected magic/shape is formatted on first attach (a fresh zone).

Lock-free reads (`SharedTable.peek_head`, in a table made with seqlock=True): the header's `seq`
(bytes 56..63) is a sequence count every transaction makes odd when it starts and even again when it ends (a seqlock). A reader that sees the
same even count before and after reading a record read a state no writer was changing: a consistent
snapshot, without the lock's syscalls. A writer that died holding the lock leaves the count odd; the
next transaction makes it odd again (never even while it writes). This relies on the stores of one
process reaching the others in program order (x86-64's TSO); elsewhere `peek_head` always says None and
callers take the lock.
"""

from __future__ import annotations

import hashlib
import mmap
import platform
import struct
from collections.abc import Iterator
from types import TracebackType
from typing import Final

from pyginx.zone.segment import Segment

MAGIC = b"PGZT"
VERSION = 2
# magic version rsize msize nslots nbuckets head tail free used evictions fresh
_HEADER: Final = struct.Struct("<4sIIIIIiiiiQi")
# the mutable header fields
_HEAD: Final = 24
_TAIL: Final = 28
_FREE: Final = 32
_USED: Final = 36
_EVICTIONS: Final = 40
_FRESH: Final = 48
_U64: Final = struct.Struct("<Q")
_PAIR: Final = struct.Struct("<ii")
HEADER_SIZE: Final = 64
_SLOT_HEAD: Final = struct.Struct("<16siiiI")  # digest, chain next, lru prev, lru next, in use
SLOT_HEAD_SIZE: Final = _SLOT_HEAD.size  # 32
_I32: Final = struct.Struct("<i")
DIGEST_SIZE: Final = 16
NIL: Final = -1
_SEQ: Final = 56  # the seqlock's count (u64) in the header's spare bytes: odd while a transaction runs
_MASK64: Final = 2**64 - 1
# total store order (stores seen by other processes in program order): seqlock readers are safe
_TSO = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


class ZoneFull(Exception):
    """No free slot and eviction was not allowed."""


def key_digest(key: bytes | str) -> bytes:
    """The 16-byte key the table stores: md5, as nginx names cache files (and hashes zone keys)."""
    return hashlib.md5(key.encode() if isinstance(key, str) else key).digest()


def _align8(n: int) -> int:
    return (n + 7) & ~7


def slot_size(record_size: int) -> int:
    return _align8(SLOT_HEAD_SIZE + record_size)


def capacity(zone_size: int, record_size: int, meta_size: int = 0) -> int:
    """How many records a zone of `zone_size` bytes holds (one bucket per slot)."""
    room = zone_size - HEADER_SIZE - _align8(meta_size)
    return max(0, room // (slot_size(record_size) + 4))


class SharedTable:
    """seqlock: transactions keep the header's sequence count, so that `peek_head` can read without the
    lock (the cache's keys zone); a zone nobody reads that way (limit_req, limit_conn) saves its cost.
    Part of the zone's format: every process attaching a zone must pass the same value."""

    def __init__(self, segment: Segment, record_size: int, meta_size: int = 0, seqlock: bool = False) -> None:
        self.segment = segment
        self.mem: mmap.mmap = segment.mem
        self.seqlock = seqlock and _TSO
        self.record_size = record_size
        self.meta_size = meta_size
        self.slot_size = slot_size(record_size)
        self.nslots = capacity(segment.size, record_size, meta_size)
        if self.nslots < 1:
            raise ValueError(f'zone "{segment.name}" is too small for one record')
        self.nbuckets = self.nslots
        self.meta_off = HEADER_SIZE
        self.buckets_off = HEADER_SIZE + _align8(meta_size)
        self.slots_off = self.buckets_off + 4 * self.nbuckets
        self._version = VERSION | (0x100 if self.seqlock else 0)  # a seqlock zone is another format
        self._tx = SeqTransaction(self) if self.seqlock else Transaction(self)
        with segment.locked():
            if not self._formatted():
                self._format()

    def _formatted(self) -> bool:
        magic, version, rsize, msize, nslots, nbuckets, *_ = _HEADER.unpack_from(self.segment.mem, 0)
        return (magic, version, rsize, msize, nslots, nbuckets) == (
            MAGIC,
            self._version,
            self.record_size,
            self.meta_size,
            self.nslots,
            self.nbuckets,
        )

    def _format(self) -> None:
        # O(buckets), whatever the zone's size: slots are handed out from `fresh` (never used yet) when
        # the free list (slots given back) is empty, so they need no formatting
        mem = self.segment.mem
        seq = _U64.unpack_from(mem, _SEQ)[0]  # kept: a clear() inside a transaction must leave it odd
        mem[0 : self.buckets_off] = bytes(self.buckets_off)
        _U64.pack_into(mem, _SEQ, seq)
        mem[self.buckets_off : self.slots_off] = b"\xff" * (self.slots_off - self.buckets_off)  # all NIL
        _HEADER.pack_into(
            mem,
            0,
            MAGIC,
            self._version,
            self.record_size,
            self.meta_size,
            self.nslots,
            self.nbuckets,
            NIL,
            NIL,
            NIL,
            0,
            0,
            0,
        )

    def transaction(self) -> Transaction:
        """`with table.transaction() as tx:` holds the zone lock for the block."""
        return self._tx

    def peek_head(self, digest: bytes) -> bytes | None:
        """The record of `digest` if it is the most recently used entry, read without the lock (its
        use would not move it); None when it is not, or no consistent snapshot could be read (a
        transaction was running): the caller takes the lock then."""
        if not self.seqlock:
            return None
        mem = self.mem
        seq: int = _U64.unpack_from(mem, _SEQ)[0]  # the count first, then what it guards
        if seq & 1:
            return None
        s: int = _I32.unpack_from(mem, _HEAD)[0]
        if not 0 <= s < self.nslots:
            return None
        off: int = self.slots_off + s * self.slot_size
        if mem[off : off + DIGEST_SIZE] != digest:
            return None
        start = off + SLOT_HEAD_SIZE
        rec = mem[start : start + self.record_size]
        if _U64.unpack_from(mem, _SEQ)[0] != seq:
            return None
        return rec

    # ---- one-shot conveniences (each one transaction)

    def get(self, digest: bytes, touch: bool = True) -> bytes | None:
        with self._tx as tx:
            return tx.get(digest, touch)

    def put(self, digest: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
        with self._tx as tx:
            return tx.put(digest, value)

    def delete(self, digest: bytes) -> bytes | None:
        with self._tx as tx:
            return tx.delete(digest)

    def __len__(self) -> int:
        with self._tx as tx:
            return tx.used


class Transaction:
    """The operations on a table, valid only inside `with table.transaction()` (the lock is held).

    Re-entrant within one process (a depth count), so the one-shot conveniences nest in a transaction.
    """

    def __init__(self, table: SharedTable) -> None:
        self.t = table
        self.mem: mmap.mmap = table.segment.mem
        self._seg = table.segment
        self.depth = 0
        self._memo_digest = b""  # the last key _find looked up in this transaction, and its slot
        self._memo_slot = NIL

    def __enter__(self) -> Transaction:
        if self.depth == 0:
            self._seg.acquire()
            self._memo_digest = b""
        self.depth += 1
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.depth -= 1
        if self.depth == 0:
            self._seg.release()

    # ---- header fields

    def _h(self, off: int) -> int:
        v: int = _I32.unpack_from(self.mem, off)[0]
        return v

    def _seth(self, off: int, value: int) -> None:
        _I32.pack_into(self.mem, off, value)

    @property
    def used(self) -> int:
        return self._h(_USED)

    @property
    def capacity(self) -> int:
        return self.t.nslots

    @property
    def evictions(self) -> int:
        v: int = _U64.unpack_from(self.mem, _EVICTIONS)[0]
        return v

    @property
    def meta(self) -> bytes:
        return bytes(self.mem[self.t.meta_off : self.t.meta_off + self.t.meta_size])

    @meta.setter
    def meta(self, value: bytes) -> None:
        if len(value) != self.t.meta_size:
            raise ValueError("meta must be exactly meta_size bytes")
        self.mem[self.t.meta_off : self.t.meta_off + self.t.meta_size] = value

    # ---- slots

    def _slot_off(self, s: int) -> int:
        return self.t.slots_off + s * self.t.slot_size

    def _bucket_off(self, digest: bytes) -> int:
        return self.t.buckets_off + 4 * (int.from_bytes(digest[:4], "little") % self.t.nbuckets)

    def _find(self, digest: bytes) -> int:
        # a get-then-put of one key finds its slot once: the last find is remembered for the rest of
        # the transaction (nothing else changes the table while we hold the lock; delete forgets it)
        if digest == self._memo_digest:
            return self._memo_slot
        s = self._find_uncached(digest)
        self._memo_digest, self._memo_slot = digest, s
        return s

    def _find_uncached(self, digest: bytes) -> int:
        mem, t = self.mem, self.t
        slots_off, size = t.slots_off, t.slot_size
        s: int = _I32.unpack_from(
            mem, t.buckets_off + 4 * (int.from_bytes(digest[:4], "little") % t.nbuckets)
        )[0]
        while s != NIL:
            off = slots_off + s * size
            if mem[off : off + DIGEST_SIZE] == digest:
                return s
            s = _I32.unpack_from(mem, off + DIGEST_SIZE)[0]
        return NIL

    def record_offset(self, digest: bytes, touch: bool = True) -> int:
        """Where `digest`'s record is in `self.mem` (-1 if absent), for reading and writing it in
        place with struct's unpack_from / pack_into: valid until the table changes (put of another
        key, delete) or the transaction ends. touch: mark it most recently used, as get() does."""
        s = self._find(digest)
        if s == NIL:
            return -1
        if touch:
            self._touch_slot(s)
        return self.t.slots_off + s * self.t.slot_size + SLOT_HEAD_SIZE

    def _record(self, s: int) -> bytes:
        off = self._slot_off(s) + SLOT_HEAD_SIZE
        return bytes(self.mem[off : off + self.t.record_size])

    def _links(self, s: int) -> tuple[int, int]:
        off = self._slot_off(s) + 20
        p, n = _PAIR.unpack_from(self.mem, off)
        return int(p), int(n)

    def _set_links(self, s: int, prev: int, nxt: int) -> None:
        _PAIR.pack_into(self.mem, self._slot_off(s) + 20, prev, nxt)

    def _lru_unlink(self, s: int) -> None:
        prev, nxt = self._links(s)
        if prev != NIL:
            self._set_links(prev, self._links(prev)[0], nxt)
        else:
            self._seth(_HEAD, nxt)
        if nxt != NIL:
            self._set_links(nxt, prev, self._links(nxt)[1])
        else:
            self._seth(_TAIL, prev)
        self._set_links(s, NIL, NIL)

    def _lru_push_head(self, s: int) -> None:
        head = self._h(_HEAD)
        self._set_links(s, NIL, head)
        if head != NIL:
            self._set_links(head, s, self._links(head)[1])
        else:
            self._seth(_TAIL, s)
        self._seth(_HEAD, s)

    def _lru_push_tail(self, s: int) -> None:
        tail = self._h(_TAIL)
        self._set_links(s, tail, NIL)
        if tail != NIL:
            self._set_links(tail, self._links(tail)[0], s)
        else:
            self._seth(_HEAD, s)
        self._seth(_TAIL, s)

    def _touch_slot(self, s: int) -> None:
        if self._h(_HEAD) != s:
            self._lru_unlink(s)
            self._lru_push_head(s)

    def touch(self, digest: bytes) -> bool:
        """Mark `digest` most recently used; False if absent."""
        s = self._find(digest)
        if s == NIL:
            return False
        self._touch_slot(s)
        return True

    def get(self, digest: bytes, touch: bool = True) -> bytes | None:
        s = self._find(digest)
        if s == NIL:
            return None
        if touch:
            self._touch_slot(s)
        return self._record(s)

    def put(
        self, digest: bytes, value: bytes, evict: bool = True, touch: bool = True
    ) -> list[tuple[bytes, bytes]]:
        """Insert or replace; returns the (digest, record) pairs evicted to make room (LRU first).
        touch=False keeps an existing entry's place, and puts a new one at the oldest end (the cache
        loader's entries are not uses)."""
        if len(value) != self.t.record_size:
            raise ValueError(f"record must be {self.t.record_size} bytes, not {len(value)}")
        s = self._find(digest)
        evicted: list[tuple[bytes, bytes]] = []
        if s != NIL:
            off = self._slot_off(s) + SLOT_HEAD_SIZE
            self.mem[off : off + self.t.record_size] = value
            if touch:
                self._touch_slot(s)
            return evicted
        if self._h(_FREE) == NIL and self._h(_FRESH) < self.t.nslots:
            fresh = self._h(_FRESH)  # a never-used slot: put it on the free list
            _SLOT_HEAD.pack_into(self.mem, self._slot_off(fresh), bytes(16), NIL, NIL, NIL, 0)
            self._seth(_FREE, fresh)
            self._seth(_FRESH, fresh + 1)
        if self._h(_FREE) == NIL:
            tail = self._h(_TAIL)
            if not evict or tail == NIL:
                raise ZoneFull(self.t.segment.name)
            d = bytes(_SLOT_HEAD.unpack_from(self.mem, self._slot_off(tail))[0])
            evicted.append((d, self._record(tail)))
            self.delete(d)
            _U64.pack_into(self.mem, _EVICTIONS, self.evictions + 1)
        s = self._h(_FREE)
        off = self._slot_off(s)
        self._seth(_FREE, _SLOT_HEAD.unpack_from(self.mem, off)[1])
        boff = self._bucket_off(digest)
        _SLOT_HEAD.pack_into(self.mem, off, digest, self._h(boff), NIL, NIL, 1)
        self.mem[off + SLOT_HEAD_SIZE : off + SLOT_HEAD_SIZE + self.t.record_size] = value
        self._seth(boff, s)
        self._memo_digest, self._memo_slot = digest, s
        if touch:
            self._lru_push_head(s)
        else:
            self._lru_push_tail(s)
        self._seth(_USED, self.used + 1)
        return evicted

    def delete(self, digest: bytes) -> bytes | None:
        """Remove `digest`; its record, or None if it was absent."""
        self._memo_digest = b""
        boff = self._bucket_off(digest)
        prev = NIL
        s = self._h(boff)
        nxt = NIL
        while s != NIL:
            d, nxt, _p, _n, _u = _SLOT_HEAD.unpack_from(self.mem, self._slot_off(s))
            if d == digest:
                break
            prev, s = s, nxt
        if s == NIL:
            return None
        record = self._record(s)
        if prev == NIL:
            self._seth(boff, nxt)
        else:
            self._seth(self._slot_off(prev) + 16, nxt)
        self._lru_unlink(s)
        _SLOT_HEAD.pack_into(self.mem, self._slot_off(s), bytes(16), self._h(_FREE), NIL, NIL, 0)
        self._seth(_FREE, s)
        self._seth(_USED, self.used - 1)
        return record

    def oldest(self, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """Up to `limit` (digest, record) pairs from the least recently used end, oldest first."""
        out: list[tuple[bytes, bytes]] = []
        s = self._h(_TAIL)
        while s != NIL and (limit is None or len(out) < limit):
            d = bytes(self.mem[self._slot_off(s) : self._slot_off(s) + 16])
            out.append((d, self._record(s)))
            s = self._links(s)[0]
        return out

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (digest, record), most recently used first. Do not modify the table while iterating."""
        s = self._h(_HEAD)
        while s != NIL:
            d = bytes(self.mem[self._slot_off(s) : self._slot_off(s) + 16])
            yield d, self._record(s)
            s = self._links(s)[1]

    def clear(self) -> None:
        self._memo_digest = b""
        self.t._format()


class SeqTransaction(Transaction):
    """A transaction of a seqlock table: the sequence count is odd while it runs (peek_head retries)."""

    def __enter__(self) -> Transaction:
        if self.depth == 0:
            self._seg.acquire()
            self._memo_digest = b""
            mem = self.mem
            _U64.pack_into(mem, _SEQ, ((_U64.unpack_from(mem, _SEQ)[0] + 1) | 1) & _MASK64)
        self.depth += 1
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.depth -= 1
        if self.depth == 0:
            mem = self.mem
            _U64.pack_into(mem, _SEQ, (_U64.unpack_from(mem, _SEQ)[0] + 1) & _MASK64)
            self._seg.release()
