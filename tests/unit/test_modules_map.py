"""map, geo and split_clients: parsing (nginx's errors with file and line) and the decisions
(which value a source gets), without sockets."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pyginx.config import load_config  # first: the configuration package loads the module registry
from pyginx.config.model import MainConfig
from pyginx.errors import ConfigError
from pyginx.modules.geo import GeoConf, GeoDef
from pyginx.modules.map import MapConf, MapDef, compile_map
from pyginx.modules.split_clients import SplitConf, SplitDef, murmur_hash2, parse_percent


def load(tmp_path: Path, http: str) -> MainConfig:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    body = textwrap.indent(textwrap.dedent(http).strip(), "  ")
    conf.write_text(
        "http:\n"
        + body
        + "\n  servers:\n    - listen: 127.0.0.1:8080\n      locations:\n        - location: /\n"
        + "          return: '200 \"$mapped\"'\n"
    )
    return load_config(str(conf), str(tmp_path))


def error(tmp_path: Path, http: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, http)
    return str(info.value)


def maps(cfg: MainConfig) -> tuple[MapDef, ...]:
    assert cfg.http is not None
    conf: MapConf = cfg.http.settings.conf("map")
    return conf.maps


def first_map(tmp_path: Path, http: str) -> MapDef:
    return maps(load(tmp_path, http))[0]


def value(m: MapDef, source: str) -> str | None:
    index, _ = m.find(source)
    return None if index is None else m.values[index]


# ---------------------------------------------------------------------------------------------- map


def test_map_exact_default_and_empty(tmp_path: Path) -> None:
    m = first_map(tmp_path, 'map: {"$http_upgrade $mapped": {default: upgrade, "": close, WebSocket: ws}}')
    assert value(m, "") == "close"
    assert value(m, "websocket") == "ws"  # exact keys compare without case, as nginx's hash
    assert value(m, "WEBSOCKET") == "ws"
    assert value(m, "h2c") == "upgrade"


def test_map_regexes_in_order_after_exact(tmp_path: Path) -> None:
    m = first_map(
        tmp_path,
        """
        map:
          "$uri $mapped":
            "~^/a": first
            "~*^/A/B": second
            /a/exact: exact
        """,
    )
    assert value(m, "/a/exact") == "exact"
    assert value(m, "/a/b") == "first"
    assert value(m, "/A/B") == "second"
    assert value(m, "/z") is None


def test_map_captures_in_the_value(tmp_path: Path) -> None:
    cfg = load(
        tmp_path, """map: {"$uri $mapped": {'~^/u/(?<name>[^/]+)/(\\d+)$': "/user/$name/$2", default: "-"}}"""
    )
    (m,) = maps(cfg)
    req: Any = SimpleNamespace(vars={}, captures=None, uri="/u/bob/42", conn=SimpleNamespace())
    getter = compile_map(m)
    assert getter(req) == "/user/bob/42"
    assert req.vars["mapped"] == "/user/bob/42"  # cached for the rest of the request
    assert req.vars["name"] == "bob"


def test_map_hostnames(tmp_path: Path) -> None:
    m = first_map(
        tmp_path,
        """
        map:
          "$host $mapped":
            hostnames: true
            .example.com: dot
            "*.a.example.com": star
            www.example.*: tail
            exact.org: exact
            default: none
        """,
    )
    assert value(m, "example.com") == "dot"
    assert value(m, "x.y.example.com") == "dot"
    assert value(m, "b.a.example.com") == "star"  # the most specific suffix wins
    assert value(m, "a.example.com") == "dot"
    assert value(m, "www.example.co.uk") == "tail"
    assert value(m, "EXACT.org.") == "exact"  # the trailing dot is ignored
    assert value(m, "other.org") == "none"


def test_map_without_hostnames_wildcards_are_plain(tmp_path: Path) -> None:
    m = first_map(tmp_path, 'map: {"$host $mapped": {"*.example.com": star}}')
    assert value(m, "a.example.com") is None
    assert value(m, "*.example.com") == "star"


def test_map_volatile_and_escaped_keys(tmp_path: Path) -> None:
    m = first_map(tmp_path, 'map: {"$arg_x $mapped": {volatile: true, "\\\\default": literal, default: d}}')
    assert m.volatile
    assert value(m, "default") == "literal"
    assert value(m, "other") == "d"


def test_several_maps(tmp_path: Path) -> None:
    cfg = load(tmp_path, 'map: {"$arg_a $mapped": {default: a}, "$mapped $other": {a: b}}')
    assert [m.name for m in maps(cfg)] == ["mapped", "other"]


@pytest.mark.parametrize(
    ("http", "message", "line"),
    [
        ('map: {"$a $mapped": {x: 1, X: 2}}', 'conflicting parameter "X"', 2),
        (
            'map:\n  "$uri $mapped":\n    default: a\n    \'\\\\default\': b\n    "~(": c\n',
            "pcre2_compile() failed",
            6,
        ),
        ('map: {"$uri mapped": {default: a}}', 'invalid variable name "mapped"', 2),
        ('map: {"$uri $uri": {default: a}}', 'the duplicate "uri" variable', 2),
        ('map: {"$uri $mapped $x": {default: a}}', 'invalid number of arguments in "map" directive', 2),
        ('map: {"$uri $mapped": {a: [1, 2]}}', "invalid number of the map parameters", 2),
        ('map: {"$urii $mapped": {default: a}}', 'unknown "urii" variable', 2),
        ('map: {"$uri $mapped": {default: $nope}}', 'unknown "nope" variable', 2),
        ('map: {"$host $mapped": {hostnames: true, "*.a.*": x}}', 'invalid hostname or wildcard "*.a.*"', 2),
        (
            'map: {"$host $mapped": {hostnames: true, ".a.com": x, "a.com": y}}',
            'conflicting parameter "a.com"',
            2,
        ),
    ],
)
def test_map_errors(tmp_path: Path, http: str, message: str, line: int) -> None:
    got = error(tmp_path, http)
    assert message in got
    assert got.endswith(f"pyginx.yaml:{line}")


def test_map_line_of_the_entry(tmp_path: Path) -> None:
    got = error(tmp_path, 'map:\n  "$uri $mapped":\n    default: a\n    x: 1\n    default: b\n')
    assert got.endswith("pyginx.yaml:6")  # a YAML-duplicate key: the loader's message, its line


def test_map_variables_are_known_to_the_check(tmp_path: Path) -> None:
    load(tmp_path, 'map: {"$uri $mapped": {"~(?<part>.+)": "$part"}}')  # $part: a named capture


# ---------------------------------------------------------------------------------------------- geo


def geo_of(tmp_path: Path, http: str) -> GeoDef:
    cfg = load(tmp_path, http)
    assert cfg.http is not None
    conf: GeoConf = cfg.http.settings.conf("geo")
    return conf.geos[0]


def test_geo_cidr_longest_prefix(tmp_path: Path) -> None:
    g = geo_of(
        tmp_path,
        """
        geo:
          "$mapped":
            default: world
            10.0.0.0/8: ten
            10.1.0.0/16: ten-one
            10.1.2.3: host
            2001:db8::/32: six
            10.9.0.0/16: gone
            delete: 10.9.0.0/16
        """,
    )
    assert g.source is None
    assert g.lookup("10.2.3.4", None) == "ten"
    assert g.lookup("10.1.9.9", None) == "ten-one"
    assert g.lookup("10.1.2.3", None) == "host"
    assert g.lookup("10.9.1.1", None) == "ten"
    assert g.lookup("2001:db8::1", None) == "six"
    assert g.lookup("::ffff:10.1.2.3", None) == "host"
    assert g.lookup("8.8.8.8", None) == "world"
    assert g.lookup("unix:", None) == "world"


def test_geo_without_default_is_empty(tmp_path: Path) -> None:
    g = geo_of(tmp_path, 'geo: {"$arg_ip $mapped": {127.0.0.1: lo}}')
    assert g.source == "$arg_ip"
    assert g.lookup("127.0.0.1", None) == "lo"
    assert g.lookup("1.1.1.1", None) == ""


def test_geo_255_is_where_bad_addresses_go(tmp_path: Path) -> None:
    g = geo_of(tmp_path, 'geo: {"$arg_ip $mapped": {255.255.255.255: bad, default: d}}')
    assert g.lookup("not an address", None) == "bad"


def test_geo_proxy(tmp_path: Path) -> None:
    plain = geo_of(tmp_path, 'geo: {"$mapped": {proxy: 127.0.0.1, 10.0.0.0/8: ten, 127.0.0.1: lo}}')
    assert plain.lookup("127.0.0.1", "10.1.1.1") == "ten"
    assert plain.lookup("127.0.0.1", "10.1.1.1, 127.0.0.1") == "lo"  # only the last, not recursive
    assert plain.lookup("192.0.2.1", "10.1.1.1") == ""  # an untrusted client keeps its address
    rec = geo_of(tmp_path, 'geo: {"$mapped": {proxy: [127.0.0.1], proxy_recursive: true, 10.0.0.0/8: ten}}')
    assert rec.lookup("127.0.0.1", "10.1.1.1, 127.0.0.1") == "ten"
    assert rec.lookup("127.0.0.1", "10.1.1.1:8080") == "ten"


def test_geo_ranges(tmp_path: Path) -> None:
    g = geo_of(
        tmp_path,
        """
        geo:
          "$mapped":
            ranges: true
            default: none
            10.0.0.0-10.1.255.255: wide
            10.0.5.0-10.0.5.255: inner
            192.168.0.0-192.168.0.255: lan
            delete: 192.168.0.0-192.168.0.255
        """,
    )
    assert g.lookup("10.0.5.7", None) == "inner"
    assert g.lookup("10.0.6.7", None) == "wide"
    assert g.lookup("10.1.200.1", None) == "wide"
    assert g.lookup("192.168.0.1", None) == "none"
    assert g.lookup("::1", None) == "none"


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ('geo: {"$mapped": {10.0.0.300/8: x}}', 'invalid network "10.0.0.300/8"'),
        ('geo: {"$mapped": {10.0.0.0/33: x}}', 'invalid network "10.0.0.0/33"'),
        ('geo: {"$mapped": {proxy: 10.0.0/8}}', 'invalid network "10.0.0/8"'),
        ('geo: {"$mapped": {10.0.0.0/8: x, ranges: true}}', 'the "ranges" directive must be the first'),
        ('geo: {"$mapped": {ranges: true, 10.0.0.9-10.0.0.1: x}}', 'invalid range "10.0.0.9-10.0.0.1"'),
        (
            'geo: {"$mapped": {ranges: true, 10.0.0.0-10.0.0.9: x, 10.0.0.5-10.0.0.20: y}}',
            'range "10.0.0.5-10.0.0.20" overlaps "10.0.0.0-10.0.0.9"',
        ),
        ('geo: {"$a $b $mapped": {default: x}}', 'invalid number of arguments in "geo" directive'),
    ],
)
def test_geo_errors(tmp_path: Path, http: str, message: str) -> None:
    got = error(tmp_path, http)
    assert message in got
    assert got.endswith("pyginx.yaml:2")


# ---------------------------------------------------------------------------------------------- split_clients


def test_murmur_hash2_as_nginx() -> None:
    # values from nginx's ngx_murmur_hash2 compiled from its source
    vectors = {
        b"": 0,
        b"a": 2456313694,
        b"ab": 446775395,
        b"abc": 324500635,
        b"abcd": 646393889,
        b"127.0.0.1AAA": 3053215307,
        b"hello world": 1151865881,
        b"\xff\xfe\xfd\xfc\xfb": 4209270460,
    }
    assert {k: murmur_hash2(k) for k in vectors} == vectors


def test_percent_parsing_as_ngx_atofp() -> None:
    assert parse_percent("0.5%") == 50
    assert parse_percent("33.33%") == 3333
    assert parse_percent("100%") == 10000
    assert parse_percent("33.333%") is None
    assert parse_percent("0%") is None
    assert parse_percent("5") is None
    assert parse_percent("1.2.3%") is None


def split_of(tmp_path: Path, http: str) -> SplitDef:
    cfg = load(tmp_path, http)
    assert cfg.http is not None
    conf: SplitConf = cfg.http.settings.conf("split_clients")
    return conf.splits[0]


def test_split_buckets(tmp_path: Path) -> None:
    s = split_of(tmp_path, 'split_clients: {"${arg_k}AAA $mapped": {"50%": a, "*": b}}')
    assert s.parts == ((0xFFFFFFFF // 2, "a"), (0, "b"))
    assert s.pick(b"127.0.0.1AAA") == "b"  # 3053215307 is past half the hash space
    assert s.pick(b"abc") == "a"
    counts = {"a": 0, "b": 0}
    for n in range(2000):
        counts[s.pick(f"{n}AAA".encode())] += 1
    assert 850 < counts["a"] < 1150


def test_split_without_star_leaves_the_rest_empty(tmp_path: Path) -> None:
    s = split_of(tmp_path, 'split_clients: {"$arg_k $mapped": {"10%": a}}')
    assert s.pick(b"127.0.0.1AAA") == ""


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ('split_clients: {"$arg_k $mapped": {"60%": a, "50%": b}}', "percent total is greater than 100%"),
        ('split_clients: {"$arg_k $mapped": {"*": a, "5%": b}}', "percent total is greater than 100%"),
        ('split_clients: {"$arg_k $mapped": {"5": a}}', 'invalid percent value "5"'),
        ('split_clients: {"$arg_k $mapped": {"0.001%": a}}', 'invalid percent value "0.001%"'),
        ('split_clients: {"$arg_k": {"5%": a}}', 'invalid number of arguments in "split_clients" directive'),
    ],
)
def test_split_errors(tmp_path: Path, http: str, message: str) -> None:
    got = error(tmp_path, http)
    assert message in got
    assert got.endswith("pyginx.yaml:2")
