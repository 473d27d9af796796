"""The shared-zone layer: named memory zones shared by the master's children (see docs/zones.md).

Segment         memory + its cross-process lock (memfd, MAP_SHARED, fcntl record lock)
SharedTable     hash table of fixed-size records by 16-byte digest, LRU order, atomic transactions
SharedCounters  per-process rows of int64 counters, summed by readers
ZoneSet/build   the zones of a configuration, reused across reloads as nginx reuses them
current()       this process's zones (installed by the master before it forks)
"""

from pyginx.zone.counters import SharedCounters
from pyginx.zone.registry import ZoneRequest, ZoneSet, build, current, install
from pyginx.zone.segment import Segment
from pyginx.zone.table import SharedTable, Transaction, ZoneFull, capacity, key_digest

__all__ = [
    "Segment",
    "SharedCounters",
    "SharedTable",
    "Transaction",
    "ZoneFull",
    "ZoneRequest",
    "ZoneSet",
    "build",
    "capacity",
    "current",
    "install",
    "key_digest",
]
