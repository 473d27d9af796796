"""The module API: what one module declares, and the request phases its handlers join.

A module is one file under pyginx/modules/ that ends with `MODULE = Module(...)`. It declares

* its directives (name, contexts, value parser) and the frozen dataclass that holds their values per
  level (`conf`; its field defaults are nginx's defaults). The loader stores one instance per
  http/server/location level in `HttpSettings.modules`, merged down as nginx merges: a level that sets a
  field replaces the inherited value; `own` names the fields a location never inherits (nginx's
  per-location scripts, like the rewrite module's codes);
* its variables (`variables`: name -> getter; `prefixed`: prefix -> getter factory, as `$http_*`);
* `plan(settings, level)`: called once per location (and once per server) at configuration time, it
  returns the handlers this module adds to that level's request phases, so a request runs only what
  its location uses; a module that has nothing to do for a location returns nothing;
* `header_filter(settings)`: likewise, an output header filter for the location, or None;
* `init_worker` / `exit_worker`: per-worker start and stop hooks (state that lives as long as one
  configuration in one worker belongs there, not in module globals). `init_worker(ctx)` gets the
  worker's ServerContext for that configuration (`ctx.config`), built once per configuration, and may
  put getters of the variables the configuration defines into `ctx.variables` (map, geo and
  split_clients do: pyginx/http/variables.py serves them to every use site of that configuration).

A phase handler takes the request and returns DECLINED (None: the next handler runs), DONE (True: the
request was answered or passed on, e.g. redirected), or an awaitable of one of those (the engine waits
for it, then goes on). The engine is pyginx/http/phases.py; docs/modules.md walks through an example.

This file is pure: it imports nothing of the runtime, so configuration code may import module
declarations (their parsers) without pulling in the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pyginx.config.model import HttpSettings
    from pyginx.config.parsers import Fields
    from pyginx.config.values import Context, Env, Val
    from pyginx.http.request import Request


class Phase(IntEnum):
    """nginx's request phases (ngx_http_phases), in the order they run."""

    POST_READ = 0
    SERVER_REWRITE = 1
    FIND_CONFIG = 2
    REWRITE = 3
    POST_REWRITE = 4
    PREACCESS = 5
    ACCESS = 6
    POST_ACCESS = 7
    PRECONTENT = 8  # try_files
    CONTENT = 9
    LOG = 10


DECLINED = None  # go on with the next handler
DONE = True  # the request is answered, or was passed on (internal redirect, named location)

PhaseResult = "bool | None | Awaitable[bool | None]"
PhaseHandler = Callable[["Request"], Any]
"""(req) -> DECLINED | DONE | Awaitable[DECLINED | DONE]. Content handlers return None or an
awaitable that answers the request."""

Getter = Callable[["Request"], str]


@dataclass(frozen=True)
class HeaderFilter:
    """An output header filter: `head(req, status, headers, length)` may change the response head
    (returning the new status, headers and length) and may set `req.body_filter` to transform the body
    that follows (a callable taking bytes and `last`, returning bytes)."""

    name: str
    head: Callable[
        [Request, int, list[tuple[str, str]], int | None], tuple[int, list[tuple[str, str]], int | None]
    ]
    # whether `head` would re-code this response's body (its length then unknown beforehand): a
    # handler that could answer a Range asks first, and serves the whole response when it would
    recodes: Callable[[Request, int, list[tuple[str, str]], int | None], bool] | None = None


Level = Literal["server", "location"]


@dataclass(frozen=True)
class ModuleDirective:
    """A directive owned by a module. `parse` returns the conf fields it sets. `ordered`: repeated
    occurrences within one block accumulate (tuples are concatenated in file order) instead of
    replacing each other. `templated`: the whole value may hold $variables (checked at load)."""

    name: str
    contexts: frozenset[Context]
    parse: Callable[[Val, Env], Fields]
    ordered: bool = False
    templated: bool = False


@dataclass(frozen=True)
class Module:
    name: str
    conf: type | None = None  # a frozen dataclass; its defaults are nginx's
    directives: tuple[ModuleDirective, ...] = ()
    own: tuple[str, ...] = ()  # conf fields a location does not inherit from the level around it
    variables: Mapping[str, Getter] = field(default_factory=dict)
    prefixed: Mapping[str, Callable[[str], Getter]] = field(default_factory=dict)
    plan: Callable[[HttpSettings, Level], list[tuple[Phase, PhaseHandler]]] | None = None
    header_filter: Callable[[HttpSettings], HeaderFilter | None] | None = None
    init_worker: Callable[[Any], None] | None = None
    exit_worker: Callable[[Any], None] | None = None
    # after a server's or location's settings are merged: may return them completed (the rewrite
    # module builds the settings of its `if` blocks here, which inherit from the enclosing level)
    resolve: Callable[[HttpSettings, Env], HttpSettings] | None = None
