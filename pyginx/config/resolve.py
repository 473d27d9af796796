"""Name resolution at load time, as nginx resolves `listen` and upstream `server` names.

Kept in one small function so tests can replace it (monkeypatch `resolve.lookup`) and never touch DNS.
"""

from __future__ import annotations

import ipaddress
import socket


def literal(host: str) -> str | None:
    """The normalised text of an IP literal, or None when `host` is a name."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def lookup(host: str, port: int) -> list[tuple[str, int]]:
    """Every address of `host` (IPv4 and IPv6, in the resolver's order, without repeats).

    Raises OSError when the name does not resolve.
    """
    found: list[tuple[str, int]] = []
    for _family, _type, _proto, _canon, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        addr = (str(sockaddr[0]), port)
        if addr not in found:
            found.append(addr)
    if not found:
        raise OSError(f"no addresses for {host}")
    return found


def addresses(host: str, port: int) -> list[tuple[str, int]]:
    """An IP literal as itself (no resolver involved), a name through `lookup`."""
    lit = literal(host)
    if lit is not None:
        return [(lit, port)]
    return lookup(host, port)
