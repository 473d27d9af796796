"""The zones of a running configuration: created by the master before it forks, kept across reloads.

nginx's rule (ngx_init_cycle + ngx_shared_memory_add): a zone of the new configuration reuses the old
cycle's memory when the name, the use (tag) and the size are all unchanged; otherwise (a new name, a
changed size) it gets fresh memory, and a zone no longer configured goes away with the old workers.
Conflicting declarations within one configuration (the same name for two uses, or two sizes) are
refused when the configuration is loaded (pyginx/config/zones.py).

Each process reads its zones through `current()`: the master (or single-process mode) installs the set
with `install()` before forking, so workers and the cache processes inherit it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyginx.zone.segment import Segment


@dataclass(frozen=True)
class ZoneRequest:
    """What a configuration asks for: the runtime view of a config ZoneDecl."""

    name: str
    size: int
    tag: str


class ZoneSet:
    def __init__(self, segments: dict[str, Segment] | None = None) -> None:
        self.segments: dict[str, Segment] = dict(segments or {})
        self.attached: dict[str, object] = {}  # name -> the table/counters object built on the segment

    def get(self, name: str) -> Segment | None:
        return self.segments.get(name)

    def attach(self, name: str, kind: type, *args: object) -> object:
        """The (cached) `kind(segment, *args)` view of zone `name` in this process."""
        view = self.attached.get(name)
        if view is None or type(view) is not kind:
            segment = self.segments[name]
            view = kind(segment, *args)
            self.attached[name] = view
        return view

    def close(self, keep: Iterable[Segment] = ()) -> None:
        kept = {id(s) for s in keep}
        for segment in self.segments.values():
            if id(segment) not in kept:
                segment.close()


def build(requests: Iterable[ZoneRequest], old: ZoneSet | None = None) -> tuple[ZoneSet, list[Segment]]:
    """The zones for a new configuration, reusing `old`'s where name, tag and size match. Returns the
    set and the reused segments (so the caller can close the rest of `old` once it commits)."""
    out: dict[str, Segment] = {}
    reused: list[Segment] = []
    try:
        for req in requests:
            prev = old.get(req.name) if old is not None else None
            if prev is not None and not prev.closed and prev.tag == req.tag and prev.size == req.size:
                out[req.name] = prev
                reused.append(prev)
            else:
                out[req.name] = Segment(req.name, req.size, req.tag)
    except BaseException:
        for segment in out.values():
            if segment not in reused:
                segment.close()
        raise
    zones = ZoneSet(out)
    if old is not None:  # views of reused segments stay valid
        for name, view in old.attached.items():
            if name in out and out[name] is old.segments.get(name):
                zones.attached[name] = view
    return zones, reused


_current = ZoneSet()


def install(zones: ZoneSet) -> None:
    global _current
    _current = zones


def current() -> ZoneSet:
    return _current
