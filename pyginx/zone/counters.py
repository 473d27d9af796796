"""Fast shared counters: one row of int64 cells per process, summed by the reader (stub_status, metrics).

A process claims a row once (under the segment's lock: the row records its pid) and then adds to its
own cells without any lock: a row has a single writer, and an aligned 8-byte store is not torn on the
platforms we run on, so a reader summing the rows sees each cell either before or after an add. A
process that dies leaves its row's totals in place (cumulative counters such as requests keep counting);
its row is reused by the next process that claims one, which continues from those totals. Gauges (active
connections; `gauges=` at construction) are zeroed when a row changes hands, as a dead process's open
connections are gone; `live_only=True` reads skip the rows of dead processes not yet reclaimed.

Layout: header 16 bytes (magic, ncounters, nrows), pids nrows x int32, cells nrows x ncounters x int64.
"""

from __future__ import annotations

import os
import struct

from pyginx.zone.segment import Segment

MAGIC = b"PGZC"
_HEADER = struct.Struct("<4sII4x")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")


def rows_for(zone_size: int, ncounters: int) -> int:
    return max(0, (zone_size - _HEADER.size) // (4 + 8 * ncounters))


class SharedCounters:
    def __init__(self, segment: Segment, ncounters: int, gauges: tuple[int, ...] = ()) -> None:
        self.segment = segment
        self.ncounters = ncounters
        self.gauges = gauges
        self.nrows = rows_for(segment.size, ncounters)
        if self.nrows < 2:
            raise ValueError(f'zone "{segment.name}" is too small for {ncounters} counters')
        self.pids_off = _HEADER.size
        self.cells_off = (self.pids_off + 4 * self.nrows + 7) & ~7
        self.nrows = min(self.nrows, (segment.size - self.cells_off) // (8 * ncounters))
        self._row_pid = 0
        self._row_off = 0
        with segment.locked() as mem:
            if _HEADER.unpack_from(mem, 0) != (MAGIC, ncounters, self.nrows):
                mem[0 : segment.size] = bytes(segment.size)
                _HEADER.pack_into(mem, 0, MAGIC, ncounters, self.nrows)

    def _row(self) -> int:
        """This process's row offset, claimed on first use after each fork."""
        pid = os.getpid()
        if self._row_pid == pid:
            return self._row_off
        mem = self.segment.mem
        with self.segment.locked():
            chosen = -1
            for r in range(self.nrows):
                owner = _I32.unpack_from(mem, self.pids_off + 4 * r)[0]
                if owner == pid:
                    chosen = r
                    break
                if chosen < 0 and (owner == 0 or not _alive(owner)):
                    chosen = r
            if chosen < 0:
                chosen = self.nrows - 1  # every row taken by a live process: share the last one
            if _I32.unpack_from(mem, self.pids_off + 4 * chosen)[0] != pid:
                for g in self.gauges:
                    _I64.pack_into(mem, self.cells_off + (chosen * self.ncounters + g) * 8, 0)
            _I32.pack_into(mem, self.pids_off + 4 * chosen, pid)
        self._row_pid = pid
        self._row_off = self.cells_off + chosen * 8 * self.ncounters
        return self._row_off

    def add(self, index: int, delta: int = 1) -> None:
        """Add to counter `index` in this process's row (no lock: the row has one writer)."""
        off = self._row() + 8 * index
        mem = self.segment.mem
        _I64.pack_into(mem, off, _I64.unpack_from(mem, off)[0] + delta)

    def total(self, index: int, live_only: bool = False) -> int:
        """The sum of counter `index` over every row (of live processes only, for gauges)."""
        mem = self.segment.mem
        out = 0
        for r in range(self.nrows):
            if live_only:
                owner = _I32.unpack_from(mem, self.pids_off + 4 * r)[0]
                if owner == 0 or not _alive(owner):
                    continue
            out += _I64.unpack_from(mem, self.cells_off + (r * self.ncounters + index) * 8)[0]
        return out

    def totals(self, live_only: bool = False) -> list[int]:
        return [self.total(i, live_only) for i in range(self.ncounters)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
