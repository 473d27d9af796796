"""The `location:` key: modifier and match, regex compilation, and nginx's rules for nesting.

`/x` prefix, `= /x` exact, `^~ /x` prefix that stops the regex search, `~ re` / `~* re` regexes
(case-sensitive / not), `@name` named. The modifier may be glued to the match (`=/x`), as nginx allows.
"""

from __future__ import annotations

import re

from pyginx.config.model import LocationModifier
from pyginx.config.units import compile_regex
from pyginx.config.values import LocationHead, Val

_MODIFIERS: tuple[LocationModifier, ...] = ("=", "^~", "~*", "~")  # "~*" before "~": longest first


def parse_head(val: Val) -> tuple[LocationHead, re.Pattern[str] | None]:
    arg = val.raw_string()
    text = arg.text.strip()
    if not text:
        raise val.nargs()
    if text.startswith("@"):
        if len(text) == 1 or any(c.isspace() for c in text):
            raise val.error(f'invalid location name "{text}"', arg.line)
        return LocationHead("@", text[1:]), None
    modifier: LocationModifier = ""
    match = text
    for mod in _MODIFIERS:
        if text.startswith(mod):
            modifier, match = mod, text[len(mod) :].strip()
            break
    if not match:
        raise val.nargs()
    if modifier in ("", "=", "^~") and any(c.isspace() for c in match):
        first = text.split()[0]
        if modifier == "":
            raise val.error(f'invalid location modifier "{first}"', arg.line)
        raise val.nargs()
    regex = None
    if modifier in ("~", "~*"):
        try:
            regex = compile_regex(match, ignore_case=modifier == "~*")
        except re.error as exc:
            raise val.error(f'invalid regular expression "{match}" in location: {exc}', arg.line) from exc
    return LocationHead(modifier, match), regex


def check_nesting(val: Val, head: LocationHead, parent: LocationHead | None) -> None:
    """nginx's limits on where a location may stand (ngx_http_core_location)."""
    if parent is None:
        return
    if parent.modifier == "=":
        raise val.error(f'location "{head.match}" cannot be inside the exact location "{parent.match}"')
    if parent.modifier == "@":
        raise val.error(f'location "{head.match}" cannot be inside the named location "@{parent.match}"')
    if head.modifier == "@":
        raise val.error(f'named location "@{head.match}" can be on the server level only')
    if (
        parent.modifier in ("", "^~")
        and head.modifier in ("", "=", "^~")
        and not head.match.startswith(parent.match)
    ):
        raise val.error(f'location "{head.match}" is outside location "{parent.match}"')


def duplicate_key(head: LocationHead) -> tuple[str, str] | None:
    """Locations that nginx calls duplicates share this key (`/a` and `^~ /a` are the same prefix)."""
    if head.modifier in ("", "^~"):
        return ("prefix", head.match)
    if head.modifier in ("=", "@"):
        return (head.modifier, head.match)
    return None  # nginx does not compare regexes
