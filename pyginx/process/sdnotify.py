"""systemd's notification protocol (sd_notify(3)), a few lines: one datagram to $NOTIFY_SOCKET.

The master of a `Type=notify` service tells systemd READY=1 once every worker serves, RELOADING=1
(with MONOTONIC_USEC, as systemd 253+ wants for `Type=notify-reload` and accepts otherwise) when a
HUP starts re-reading the configuration and READY=1 again once the new workers serve, STOPPING=1 when
it begins to quit or terminate. The socket path may be abstract (`@name`: a leading NUL byte). Without
$NOTIFY_SOCKET nothing is sent; a failed send is reported to the caller, never raised.
"""

from __future__ import annotations

import os
import socket
import time


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()  # the abstract namespace
    return path


def notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send `state` (lines KEY=VALUE); True if a datagram went out."""
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path or not (path.startswith("/") or path.startswith("@")):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(state.encode(), _address(path))
    except OSError:
        return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else "") + f"\nMAINPID={os.getpid()}")


def reloading() -> bool:
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    return notify("STOPPING=1")
