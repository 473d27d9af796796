"""Coarse timeouts for upstream exchanges: one loop timer for all of them, not one per request.

A proxied request sets its `deadline` (time.monotonic() seconds) when it starts waiting on its upstream,
moves it as bytes arrive (nginx's proxy timeouts run between two reads or writes, not over the whole
exchange) and registers itself here. A tick every TICK seconds, armed only while something is
registered, calls `expired()` on what is overdue. A timer handle per request would cost a libuv timer
start and stop each time; this costs a set insertion. Timeouts fire up to TICK late, never early.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

TICK = 0.05  # seconds; proxy timeouts are configured in seconds


class Expiring(Protocol):
    deadline: float

    def expired(self) -> None:
        """Called once when `deadline` has passed; the item is no longer registered then."""


class Deadlines:
    """The registered exchanges of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.items: set[Expiring] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, item: Expiring) -> None:
        self.items.add(item)
        if self._handle is None:
            self._handle = self.loop.call_later(TICK, self._tick)

    def discard(self, item: Expiring) -> None:
        self.items.discard(item)

    def _tick(self) -> None:
        self._handle = None
        now = time.monotonic()
        due = [item for item in self.items if item.deadline <= now]
        for item in due:
            self.items.discard(item)
            item.expired()
        if self.items:
            self._handle = self.loop.call_later(TICK, self._tick)


_current: Deadlines | None = None


def deadlines(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The worker's Deadlines (one per event loop; tests run several loops in one process)."""
    global _current
    if _current is None or _current.loop is not loop:
        _current = Deadlines(loop)
    return _current
