"""A worker's copies of the small entries it served, as open_file_cache keeps small static files.

A HIT on a copy needs the zone's node only: the node says whether the file on disk is still the one
copied (inode, validity, size: a new store renames a new file in, a revalidation changes the validity,
an eviction removes the node). Bounded per entry and in total; the oldest copies go first. Entries with
a Vary are not copied (their file says which variant they are).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pyginx.cache import fileformat as ff
from pyginx.cache.index import Node
from pyginx.cache.store import OpenEntry

HOT_BODY_MAX = 64 * 1024
HOT_TOTAL_MAX = 16 * 1024 * 1024


@dataclass
class HotCopy:
    uniq: int
    valid_sec: int
    fs_size: int
    parsed: ff.Parsed
    body: bytes
    # per drop set of a location (proxy_hide_header & co): the headers as sent and their encoded lines
    prepared: dict[int, tuple[frozenset[str], list[tuple[str, str]], bytes]] = field(default_factory=dict)

    def matches(self, node: Node) -> bool:
        return node.uniq == self.uniq and node.valid_sec == self.valid_sec and node.fs_size == self.fs_size


copies: dict[bytes, HotCopy] = {}
_bytes = [0]


def keep(digest: bytes, entry: OpenEntry, body: bytes) -> None:
    if len(body) > HOT_BODY_MAX or entry.parsed.header.vary:
        return  # variants keep looking at the file, which says which variant it is
    old = copies.pop(digest, None)
    if old is not None:
        _bytes[0] -= len(old.body)
    while copies and _bytes[0] + len(body) > HOT_TOTAL_MAX:
        gone = copies.pop(next(iter(copies)))  # the oldest copy first
        _bytes[0] -= len(gone.body)
    copies[digest] = HotCopy(entry.inode, entry.parsed.header.valid_sec, entry.fs_size, entry.parsed, body)
    _bytes[0] += len(body)
