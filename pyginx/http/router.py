"""Choosing the server block and the location for a request, as nginx does. Pure: tables built once
per configuration, lookups are plain dict/list operations.

Servers: by the listening address the connection came in on, then server_name (exact, longest leading
`*.` wildcard, longest trailing `.*` wildcard, first matching regex in file order), else the
`default_server` (or first) server of that address.

Locations: `=` exact first; then the longest prefix; a `^~` longest prefix wins outright; otherwise
regex locations in file order (first match wins), else the longest prefix. Nested locations are searched
inside the chosen prefix location first, as nginx's location tree does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyginx.config.model import ListenAddr, Location, Server

ListenKey = tuple[str, int, str | None]


@dataclass
class LocationTable:
    exact: dict[str, Location] = field(default_factory=dict)
    prefixes: list[tuple[str, Location]] = field(default_factory=list)  # longest first
    regexes: list[Location] = field(default_factory=list)  # file order
    named: dict[str, Location] = field(default_factory=dict)
    children: dict[int, LocationTable] = field(default_factory=dict)  # id(location) -> nested table
    # nginx's auto_redirect: "/py" for a proxied prefix location "/py/" (no location named "/py")
    auto_redirect: dict[str, Location] = field(default_factory=dict)

    @classmethod
    def build(
        cls, locations: tuple[Location, ...], named: dict[str, Location] | None = None
    ) -> LocationTable:
        table = cls(named=named if named is not None else {})
        for loc in locations:
            if loc.modifier == "=":
                table.exact.setdefault(loc.match, loc)
            elif loc.modifier in ("", "^~"):
                table.prefixes.append((loc.match, loc))
            elif loc.modifier in ("~", "~*"):
                table.regexes.append(loc)
            elif loc.modifier == "@":
                table.named.setdefault(loc.match, loc)
            if loc.locations:
                table.children[id(loc)] = cls.build(loc.locations, table.named)
        # stable sort: for equal prefixes the first written wins, as nginx rejects duplicates anyway
        table.prefixes.sort(key=lambda item: -len(item[0]))
        named_as = {m for m, _ in table.prefixes} | set(table.exact)
        for match, loc in table.prefixes:
            if len(match) > 1 and match.endswith("/") and loc.settings.proxy_pass is not None:
                if match[:-1] not in named_as:
                    table.auto_redirect.setdefault(match[:-1], loc)
        return table

    def find(self, uri: str) -> Location | None:
        """The location serving `uri` (None when nothing matches: the server level then applies)."""
        exact = self.exact.get(uri)
        if exact is not None:
            return exact
        best: Location | None = None
        for prefix, loc in self.prefixes:
            if uri.startswith(prefix):
                best = loc
                break
        if best is not None:
            child = self.children.get(id(best))
            if child is not None:
                nested = child.find(uri)
                if nested is not None:
                    return nested
            if best.modifier == "^~":
                return best
        for loc in self.regexes:
            assert loc.regex is not None
            if loc.regex.search(uri):
                child = self.children.get(id(loc))
                if child is not None:
                    nested = child.find(uri)
                    if nested is not None:
                        return nested
                return loc
        return best


@dataclass
class ServerTable:
    """server_name lookup for one listening address."""

    default: Server
    exact: dict[str, Server] = field(default_factory=dict)
    leading: list[tuple[str, Server]] = field(default_factory=list)  # ".example.com" suffixes, longest first
    trailing: list[tuple[str, Server]] = field(default_factory=list)  # "www.example." prefixes, longest first
    regexes: list[tuple[re.Pattern[str], Server]] = field(default_factory=list)

    def find(self, host: str) -> Server:
        if not host:
            return self.exact.get("", self.default)
        server = self.exact.get(host)
        if server is not None:
            return server
        for suffix, server in self.leading:
            if host.endswith(suffix):
                return server
        for prefix, server in self.trailing:
            if host.startswith(prefix):
                return server
        for regex, server in self.regexes:
            if regex.search(host):
                return server
        return self.default


def build_server_tables(servers: tuple[Server, ...]) -> dict[ListenKey, ServerTable]:
    """One ServerTable per listening address key."""
    by_addr: dict[ListenKey, list[tuple[Server, ListenAddr]]] = {}
    for server in servers:
        for addr in server.listen:
            by_addr.setdefault(addr.key, []).append((server, addr))
    tables: dict[ListenKey, ServerTable] = {}
    for key, entries in by_addr.items():
        default = next((s for s, a in entries if a.default_server), entries[0][0])
        table = ServerTable(default=default)
        for server, _addr in entries:
            for name in server.server_names:
                _add_name(table, name, server)
        table.leading.sort(key=lambda item: -len(item[0]))
        table.trailing.sort(key=lambda item: -len(item[0]))
        tables[key] = table
    return tables


def _add_name(table: ServerTable, name: str, server: Server) -> None:
    if name.startswith("~"):
        table.regexes.append((re.compile(name[1:]), server))
    elif name.startswith("*."):
        table.leading.append((name[1:], server))
    elif name.startswith("."):
        table.exact.setdefault(name[1:], server)
        table.leading.append((name, server))
    elif name.endswith(".*"):
        table.trailing.append((name[:-1], server))
    else:
        table.exact.setdefault(name, server)
