"""Crash-loop throttling of respawns (pyginx's addition to nginx's reap)."""

from __future__ import annotations

from pyginx.process.throttle import RespawnThrottle


def test_burst_then_backoff_doubling_then_calm() -> None:
    t = RespawnThrottle(burst=3, window=10.0, first_delay=1.0, max_delay=4.0)
    now = 100.0
    for _ in range(3):
        assert t.next_allowed(now) == now
        t.record(now)
    assert t.next_allowed(now) == now + 1.0  # fourth crash in the window: wait
    assert t.next_allowed(now + 0.5) == now + 1.0  # still waiting
    now += 1.0
    for _ in range(3):
        assert t.next_allowed(now) == now
        t.record(now)
    assert t.next_allowed(now) == now + 2.0  # doubled
    now += 2.0
    for _ in range(3):
        t.record(now)
    assert t.next_allowed(now) == now + 4.0
    now += 4.0
    for _ in range(3):
        t.record(now)
    assert t.next_allowed(now) == now + 4.0  # capped at max_delay
    # Calm for a whole window: back to respawning at once.
    now += 30.0
    assert t.next_allowed(now) == now
    assert t.delay == 0.0


def test_slow_crashes_are_never_throttled() -> None:
    t = RespawnThrottle(burst=2, window=1.0)
    now = 0.0
    for _ in range(20):
        assert t.next_allowed(now) == now
        t.record(now)
        now += 0.6
