"""nginx's inheritance, http -> server -> location -> nested location.

Each level records only the fields its own directives set; the effective settings of a level are its
parent's effective settings with those fields replaced. That one rule is nginx's for almost every
directive, including the list-valued ones (add_header, proxy_set_header, error_page, access_log): a
level that writes any of them replaces the whole inherited list, one that writes none inherits it.

The exceptions are the directives nginx never merges into a location because they are the location's
own content handler or phase: proxy_pass, try_files, internal, and each module's `own` conf fields (the
rewrite module's script: a server's `return`/`rewrite` run in the server rewrite phase, before any
location is chosen, so they are not copied into locations).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pyginx import modules
from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields

# fields a location never takes from the level around it
_LOCATION_OWN: Fields = {"proxy_pass": None, "try_files": None, "internal": False}
# an `if` block inherits the content handler (proxy_pass) of its location, as in nginx
_IF_OWN: Fields = {"try_files": None, "internal": False}

ModuleFields = dict[str, Fields]  # module name -> the conf fields one block sets


def default_modules() -> dict[str, Any]:
    """Every module's conf with nginx's defaults (the level above http)."""
    return {m.name: m.conf() for m in modules.ALL if m.conf is not None}


def _modules(parent: HttpSettings, own: ModuleFields | None, location: bool) -> dict[str, Any]:
    out = dict(parent.modules) if parent.modules else default_modules()
    for m in modules.ALL:
        if m.conf is None:
            continue
        conf = out.get(m.name) or m.conf()
        if location and m.own:
            fresh = m.conf()
            conf = replace(conf, **{f: getattr(fresh, f) for f in m.own})
        fields = own.get(m.name) if own else None
        if fields:
            conf = replace(conf, **fields)
        out[m.name] = conf
    return out


def apply(parent: HttpSettings, own: Fields, mods: ModuleFields | None = None) -> HttpSettings:
    """The settings of a server (parent = http) or of the http level (parent = defaults)."""
    merged = replace(parent, **own) if own else parent
    if mods or not parent.modules:
        merged = replace(merged, modules=_modules(parent, mods, location=False))
    return merged


def apply_location(
    parent: HttpSettings, server: HttpSettings, own: Fields, mods: ModuleFields | None = None
) -> HttpSettings:
    """The settings of a location inside `parent` (the server's or an enclosing location's)."""
    merged = replace(parent, **{**_LOCATION_OWN, **own})
    return replace(merged, modules=_modules(parent, mods, location=True))


def apply_if(parent: HttpSettings, own: Fields, mods: ModuleFields | None = None) -> HttpSettings:
    """The settings of an `if` block inside a location or server."""
    merged = replace(parent, **{**_IF_OWN, **own})
    return replace(merged, modules=_modules(parent, mods, location=True))
