"""The `location:` key: modifiers, regexes, nesting."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from pyginx.config import load_config
from pyginx.config.model import Location


def locations(tmp_path: Path, body: str) -> tuple[Location, ...]:
    conf = tmp_path / "p.yaml"
    conf.write_text(
        "http:\n  servers:\n    - locations:\n" + textwrap.indent(textwrap.dedent(body), "        ")
    )
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None
    return cfg.http.servers[0].locations


@pytest.mark.parametrize(
    ("value", "modifier", "match", "name"),
    [
        ("/", "", "/", "/"),
        ("/static/", "", "/static/", "/static/"),
        ("= /exact", "=", "/exact", "= /exact"),
        ("=/glued", "=", "/glued", "= /glued"),
        ("^~ /s/", "^~", "/s/", "^~ /s/"),
        ("'~ \\.php$'", "~", "\\.php$", "~ \\.php$"),
        ("'~* \\.(png|jpe?g)$'", "~*", "\\.(png|jpe?g)$", "~* \\.(png|jpe?g)$"),
        ("'~*\\.gif$'", "~*", "\\.gif$", "~* \\.gif$"),
        ("'@fallback'", "@", "fallback", "@fallback"),
    ],
)
def test_modifiers(tmp_path: Path, value: str, modifier: str, match: str, name: str) -> None:
    (loc,) = locations(tmp_path, f"- location: {value}\n")
    assert (loc.modifier, loc.match, loc.name) == (modifier, match, name)
    assert loc.pos is not None and loc.pos.line == 4
    if modifier in ("~", "~*"):
        assert loc.regex is not None
    else:
        assert loc.regex is None


def test_regex_case(tmp_path: Path) -> None:
    sens, insens = locations(tmp_path, "- location: '~ \\.PNG$'\n- location: '~* \\.PNG$'\n")
    assert sens.regex is not None and insens.regex is not None
    assert sens.regex.search("/a.png") is None and sens.regex.search("/a.PNG") is not None
    assert insens.regex.search("/a.png") is not None
    assert insens.regex.flags & re.IGNORECASE


def test_pcre_named_captures(tmp_path: Path) -> None:
    (loc,) = locations(tmp_path, "- location: '~ ^/u/(?<user>[a-z]+)/'\n")
    assert loc.regex is not None
    m = loc.regex.search("/u/bob/x")
    assert m is not None and m.group("user") == "bob"
    assert loc.match == "^/u/(?<user>[a-z]+)/"  # as written, for messages and $-captures


def test_empty_location_and_file_order(tmp_path: Path) -> None:
    locs = locations(tmp_path, "- location: /b\n- location: /a\n- location: = /a\n- location: '~ x'\n")
    assert [loc.name for loc in locs] == ["/b", "/a", "= /a", "~ x"]


def test_nested(tmp_path: Path) -> None:
    (outer,) = locations(
        tmp_path,
        """
        - location: /api/
          root: /srv
          locations:
            - location: /api/v1/
              locations:
                - location: = /api/v1/ping
            - location: '~ \\.json$'
        """,
    )
    assert [loc.name for loc in outer.locations] == ["/api/v1/", "~ \\.json$"]
    assert outer.locations[0].locations[0].name == "= /api/v1/ping"
    assert outer.locations[0].locations[0].settings.root == "/srv"


def test_regex_parent_allows_any_nested_prefix(tmp_path: Path) -> None:
    (outer,) = locations(tmp_path, "- location: '~ ^/x'\n  locations:\n    - location: /y/\n")
    assert outer.locations[0].match == "/y/"


def test_same_name_in_different_kinds_is_not_a_duplicate(tmp_path: Path) -> None:
    locs = locations(tmp_path, "- location: /\n- location: = /\n- location: '~ /'\n- location: '~ /'\n")
    assert len(locs) == 4


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'/a b'", 'invalid location modifier "/a"'),
        ("'@'", 'invalid location name "@"'),
        ("'='", 'invalid number of arguments in "location" directive'),
        ("", 'invalid number of arguments in "location" directive'),
    ],
)
def test_bad_location(tmp_path: Path, value: str, message: str) -> None:
    from pyginx.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        locations(tmp_path, f"- location: {value}\n")
    assert info.value.message == message
    assert info.value.line == 4
