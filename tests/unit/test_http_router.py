"""Server and location selection tables (pure), as nginx chooses."""

from __future__ import annotations

import re

from pyginx.config.model import HttpSettings, ListenAddr, Location, Server
from pyginx.http.router import LocationTable, build_server_tables

S = HttpSettings()


def loc(spec: str, *children: Location) -> Location:
    if spec.startswith("@"):
        return Location("@", spec[1:], S)
    modifier, _, match = spec.rpartition(" ")
    regex = None
    if modifier in ("~", "~*"):
        regex = re.compile(match, re.IGNORECASE if modifier == "~*" else 0)
    return Location(modifier, match, S, regex=regex, locations=children)  # type: ignore[arg-type]


def test_nginx_location_order() -> None:
    locs = (
        loc("/"),
        loc("= /exact"),
        loc("^~ /images/"),
        loc("~* \\.(gif|jpg)$"),
        loc("~ \\.php$"),
        loc("/documents/"),
        loc("/documents/deep/"),
        loc("@named"),
    )
    t = LocationTable.build(locs)
    name = lambda uri: t.find(uri).name  # noqa: E731
    assert name("/exact") == "= /exact"
    assert name("/exact/x") == "/"
    assert name("/images/a.gif") == "^~ /images/"  # ^~ stops the regex search
    assert name("/documents/a.JPG") == "~* \\.(gif|jpg)$"
    assert name("/documents/a.txt") == "/documents/"
    assert name("/documents/deep/x") == "/documents/deep/"  # longest prefix
    assert name("/x.php") == "~ \\.php$"
    assert name("/x.gif") == "~* \\.(gif|jpg)$"  # regexes in file order
    assert t.named["named"].name == "@named"


def test_no_match_returns_none() -> None:
    t = LocationTable.build((loc("/a/"),))
    assert t.find("/b") is None


def test_nested_locations_searched_inside_prefix() -> None:
    inner = loc("~ \\.txt$")
    t = LocationTable.build((loc("/a/", inner), loc("~ \\.txt$")))
    assert t.find("/a/x.txt") is inner


def _server(names: tuple[str, ...], default: bool = False, port: int = 80) -> Server:
    return Server((ListenAddr("127.0.0.1", port, default_server=default),), names, S, ())


def test_server_name_priority() -> None:
    first = _server(("first.test",))
    exact = _server(("www.example.com",))
    lead = _server(("*.example.com",))
    lead_longer = _server(("*.sub.example.com",))
    trail = _server(("mail.*",))
    regex = _server(("~^api\\d+\\.test$",))
    dot = _server((".dot.test",))
    default = _server(("d.test",), default=True)
    tables = build_server_tables((first, exact, lead, lead_longer, trail, regex, dot, default))
    t = tables[("127.0.0.1", 80, None)]
    assert t.find("www.example.com") is exact
    assert t.find("a.example.com") is lead
    assert t.find("a.sub.example.com") is lead_longer
    assert t.find("mail.foo") is trail
    assert t.find("api7.test") is regex
    assert t.find("dot.test") is dot and t.find("x.dot.test") is dot
    assert t.find("nothing") is default
    assert t.find("") is default


def test_first_server_is_default_without_default_server() -> None:
    a, b = _server(("a",)), _server(("b",))
    t = build_server_tables((a, b))[("127.0.0.1", 80, None)]
    assert t.find("zzz") is a
