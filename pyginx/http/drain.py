"""A worker's connection table near full (issue 12 item 2): nginx's ngx_drain_connections.

When fewer than 1/16 of worker_connections are free, nginx closes some of its *reusable* connections
(idle keep-alive ones, and ones that have not sent a byte yet), the oldest first: at most 32, about
1/8 of the reusable ones, at least one; it warns once a second "N worker_connections are not enough,
reusing connections". Only when none can be reused is a new connection refused ("worker_connections
are not enough", alert), and then this worker stops accepting until a slot frees, so that a sibling
with room takes the next clients (the listening socket is shared; see HttpServer).

The decisions are here, pure; the server applies them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Slot(Protocol):
    deadline: float

    @property
    def reusable(self) -> bool: ...


def drain_threshold(max_connections: int) -> int:
    """Draining starts when more connections than this are open (free <= worker_connections / 16)."""
    return max_connections - max_connections // 16


def to_reuse(connections: Iterable[Slot], exclude: object = None) -> list[Slot]:
    """The reusable connections to close now, oldest first (the soonest idle deadline: they have
    waited longest)."""
    reusable = [c for c in connections if c is not exclude and c.reusable]
    if not reusable:
        return []
    n = max(min(32, len(reusable) // 8), 1)
    reusable.sort(key=lambda c: c.deadline)
    return reusable[:n]
