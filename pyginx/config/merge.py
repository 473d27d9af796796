"""nginx's inheritance, http -> server -> location -> nested location.

Each level records only the fields its own directives set; the effective settings of a level are its
parent's effective settings with those fields replaced. That one rule is nginx's for almost every
directive, including the list-valued ones (add_header, proxy_set_header, error_page, access_log): a
level that writes any of them replaces the whole inherited list, one that writes none inherits it.

The exceptions are the directives nginx never merges into a location because they are the location's
own content handler or phase: proxy_pass, try_files, internal, and a location's `return`. A server-level
`return` runs in the server rewrite phase, before any location is chosen, so it wins in every location.
"""

from __future__ import annotations

from dataclasses import replace

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields

# fields a location never takes from the level around it
_LOCATION_OWN: Fields = {"proxy_pass": None, "try_files": None, "internal": False, "return_": None}


def apply(parent: HttpSettings, own: Fields) -> HttpSettings:
    """The settings of a server (parent = http) or of the http level (parent = defaults)."""
    return replace(parent, **own) if own else parent


def apply_location(parent: HttpSettings, server: HttpSettings, own: Fields) -> HttpSettings:
    """The settings of a location inside `parent` (the server's or an enclosing location's)."""
    merged = replace(parent, **{**_LOCATION_OWN, **own})
    if server.return_ is not None and merged.return_ != server.return_:
        merged = replace(merged, return_=server.return_)
    return merged
