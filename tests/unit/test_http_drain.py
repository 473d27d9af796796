"""pyginx.http.drain: which connections a nearly full worker reuses (nginx's ngx_drain_connections)."""

from __future__ import annotations

from dataclasses import dataclass

from pyginx.http.drain import drain_threshold, to_reuse


@dataclass(eq=False)
class Conn:
    deadline: float
    reusable: bool = True


def test_threshold_is_one_sixteenth_free() -> None:
    assert drain_threshold(512) == 480
    assert drain_threshold(16) == 15
    assert drain_threshold(8) == 8


def test_oldest_reusable_first_an_eighth_at_most_32_at_least_one() -> None:
    conns = [Conn(float(i)) for i in range(100)]
    picked = to_reuse(conns)
    assert [c.deadline for c in picked] == [float(i) for i in range(12)]
    assert len(to_reuse([Conn(float(i)) for i in range(1000)])) == 32
    assert len(to_reuse([Conn(1.0)])) == 1


def test_busy_and_new_connections_are_never_reused() -> None:
    new = Conn(0.0)
    busy = [Conn(0.5, reusable=False) for _ in range(5)]
    assert to_reuse([new, *busy], exclude=new) == []
    idle = Conn(9.0)
    assert to_reuse([new, *busy, idle], exclude=new) == [idle]
