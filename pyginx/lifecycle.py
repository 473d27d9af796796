"""The worker's readiness, as an orchestrator's probe sees it (pyginx extension, issue 16).

A worker is ready until a graceful quit (or a fast stop) starts; from then on a location with
`readiness: true` answers 503, so that a balancer probing it stops sending new connections while the
worker still accepts them for `shutdown_delay` and then drains. Plain state, set by pyginx.process.worker and
read by the request dispatcher: nothing here knows about processes or sockets.
"""

from __future__ import annotations

_ready = True


def ready() -> bool:
    return _ready


def mark_unready() -> None:
    global _ready
    _ready = False
