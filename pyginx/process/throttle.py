"""Respawn throttling: a worker that crashes at once must not make the master fork in a tight loop.

nginx respawns without limit; pyginx allows `burst` respawns within `window` seconds, then waits before
the next one, doubling the wait (up to `max_delay`) while crashes go on, and forgets once calm returns.
Pure bookkeeping on a clock passed in, so it is unit-tested without processes.
"""

from __future__ import annotations

from collections import deque


class RespawnThrottle:
    def __init__(
        self, burst: int = 10, window: float = 10.0, first_delay: float = 1.0, max_delay: float = 30.0
    ) -> None:
        self.burst = burst
        self.window = window
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.recent: deque[float] = deque()
        self.delay = 0.0  # the current back-off; 0 = not throttling
        self.not_before = 0.0  # no respawn before this time
        self.last = float("-inf")  # the last respawn

    def _forget(self, now: float) -> None:
        while self.recent and now - self.recent[0] > self.window:
            self.recent.popleft()
        if now - self.last > self.window and now >= self.not_before:
            self.delay = 0.0  # a whole window without a respawn: calm again

    def next_allowed(self, now: float) -> float:
        """When the next respawn may happen (<= now: at once). Starts or extends a back-off."""
        self._forget(now)
        if now < self.not_before:
            return self.not_before
        if len(self.recent) < self.burst:
            return now
        self.delay = self.first_delay if self.delay == 0 else min(self.delay * 2, self.max_delay)
        self.not_before = now + self.delay
        self.recent.clear()
        return self.not_before

    def record(self, now: float) -> None:
        """A respawn happened at `now`."""
        self.recent.append(now)
        self.last = now
