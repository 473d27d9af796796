"""The limit_conn module (ngx_http_limit_conn_module): concurrent requests per key, across all workers.

    limit_conn_zone KEY zone=NAME:SIZE          (http)
    limit_conn      NAME NUMBER                 (http, server, location; repeatable)
    limit_conn_status 400..599 (503)   limit_conn_log_level info|notice|warn|error (error)
    limit_conn_dry_run on|off (off)    $limit_conn_status (PASSED, REJECTED, REJECTED_DRY_RUN)

A key's node in the shared zone counts the requests in progress for it: the preaccess handler adds
one (or rejects when the count has reached NUMBER), and the request's cleanup, when it is finished and
logged, takes it away again (the node goes when it reaches zero), as nginx's pool cleanup does. A full
zone rejects the request, as nginx does when it cannot allocate a node.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyginx.config.model import HttpSettings, SourcePos, ZoneDecl
from pyginx.config.parsers import Fields
from pyginx.config.values import Context, Env, Val
from pyginx.errors import ConfigError
from pyginx.module import DECLINED, DONE, Level, Module, ModuleDirective, Phase, PhaseHandler
from pyginx.modules.limit_req import flag_parser, level_parser, status_parser, zone_param

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyginx.http.request import Request
    from pyginx.zone import SharedTable

TAG = "limit_conn"
COUNT = struct.Struct("<q")


@dataclass(frozen=True)
class ConnZoneDef:
    name: str
    size: int
    key: str
    pos: SourcePos | None = None


@dataclass(frozen=True)
class ConnLimit:
    zone: str
    conn: int
    pos: SourcePos | None = None


@dataclass(frozen=True)
class LimitConnConf:
    zones: tuple[ConnZoneDef, ...] = ()
    limits: tuple[ConnLimit, ...] = ()
    log_level: str = "error"
    status: int = 503
    dry_run: bool = False


def _p_zone(val: Val, env: Env) -> Fields:
    zones: list[ConnZoneDef] = []
    for entry in val.entries():
        args = entry.args()
        if len(args) != 2:
            raise entry.nargs()
        key = args[0].text
        env.use_vars(key, args[0].line)
        name, size = "", 0
        arg = args[1]
        if arg.text.startswith("zone="):
            name, size = zone_param(entry, arg.text, arg.line)
        else:
            raise entry.invalid_param(arg)
        for z in zones:
            if z.name == name:
                raise entry.error(f'{val.name} "{name}" is already bound to key "{z.key}"')
        zones.append(ConnZoneDef(name, size, key, entry.pos))
    return {"zones": tuple(zones)}


def _p_limit(val: Val, env: Env) -> Fields:
    limits: list[ConnLimit] = []
    for entry in val.entries():
        args = entry.args()
        if len(args) != 2:
            raise entry.nargs()
        name, number = args[0].text, args[1].text
        n = int(number) if number.isdigit() else 0
        if n <= 0 or n > 65535:
            raise entry.error(f'invalid number of connections "{number}"', args[1].line)
        if any(limit.zone == name for limit in limits):
            raise entry.error(f'"{val.name}" directive is duplicate')
        limits.append(ConnLimit(name, n, entry.pos))
    return {"limits": tuple(limits)}


def zone_decls(http_settings: HttpSettings, levels: list[HttpSettings]) -> list[ZoneDecl]:
    conf: LimitConnConf = http_settings.conf(MODULE.name)
    out = [ZoneDecl(z.name, z.size, TAG, z.pos) for z in conf.zones]
    defined = {z.name for z in conf.zones}
    for settings in levels:
        for limit in settings.conf(MODULE.name).limits:
            if limit.zone not in defined:
                file, line = (limit.pos.file, limit.pos.line) if limit.pos else (None, None)
                raise ConfigError(f'zero size shared memory zone "{limit.zone}"', file, line)
            out.append(ZoneDecl(limit.zone, 0, TAG, limit.pos))
    return out


# ---------------------------------------------------------------------------------------------------


def acquire(table: SharedTable, digest: bytes, limit: int) -> str:
    """Count one more request for the key: "ok", "busy" (at the limit) or "full" (no room)."""
    from pyginx.zone import ZoneFull

    with table.transaction() as tx:
        rec = tx.get(digest)
        n = COUNT.unpack(rec)[0] if rec is not None else 0
        if n >= limit:
            return "busy"
        try:
            tx.put(digest, COUNT.pack(n + 1), evict=False)
        except ZoneFull:
            return "full"
    return "ok"


def release(table: SharedTable, digest: bytes) -> None:
    with table.transaction() as tx:
        rec = tx.get(digest, touch=False)
        if rec is None:
            return
        n = COUNT.unpack(rec)[0] - 1
        if n <= 0:
            tx.delete(digest)
        else:
            tx.put(digest, COUNT.pack(n), touch=False)


def _handler(settings: HttpSettings) -> PhaseHandler:
    from pyginx import zone
    from pyginx.http.variables import compile_template

    conf: LimitConnConf = settings.conf(MODULE.name)
    zdefs = {z.name: z for z in conf.zones}
    bound: list[tuple[str, Callable[[Request], str], str, int, SharedTable]] = []
    for limit in conf.limits:
        zdef = zdefs[limit.zone]
        table: SharedTable = zone.current().attach(limit.zone, zone.SharedTable, COUNT.size)  # type: ignore[assignment]
        bound.append((limit.zone, compile_template(zdef.key), zdef.key, limit.conn, table))
    dry = conf.dry_run
    level = conf.log_level
    status = conf.status
    key_digest = zone.key_digest

    def limit_conn(req: Request) -> Any:
        vars_ = req.vars
        if "limit_conn_status" in vars_:
            return DECLINED
        for name, key_of, key_text, limit, table in bound:
            key = key_of(req)
            if not key:
                continue
            if len(key) > 255:
                req.log_error("error", f'the value of the "{key_text}" key is more than 255 bytes: "{key}"')
                continue
            vars_["limit_conn_status"] = "PASSED"
            digest = key_digest(key.encode("utf-8", "surrogateescape"))
            got = acquire(table, digest, limit)
            if got != "ok":
                if got == "busy":
                    note = ", dry run," if dry else ""
                    req.log_error(level, f'limiting connections{note} by zone "{name}"')
                _cleanup_all(req)
                if dry:
                    vars_["limit_conn_status"] = "REJECTED_DRY_RUN"
                    return DECLINED
                vars_["limit_conn_status"] = "REJECTED"
                req.send_error(status)
                return DONE
            req.add_cleanup(_releaser(table, digest))
        return DECLINED

    return limit_conn


class _releaser:
    """A request cleanup that takes its count back (marked so that a rejection can run them early)."""

    __slots__ = ("table", "digest")

    def __init__(self, table: SharedTable, digest: bytes) -> None:
        self.table = table
        self.digest = digest

    def __call__(self) -> None:
        release(self.table, self.digest)


def _cleanup_all(req: Request) -> None:
    """ngx_http_limit_conn_cleanup_all: the counts this request already took go back now."""
    if req.cleanup is None:
        return
    mine = [c for c in req.cleanup if isinstance(c, _releaser)]
    req.cleanup = [c for c in req.cleanup if not isinstance(c, _releaser)] or None
    for c in reversed(mine):
        c()


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    conf: LimitConnConf = settings.conf(MODULE.name)
    if not conf.limits:
        return []
    return [(Phase.PREACCESS, _handler(settings))]


def _status_var(req: Request) -> str:
    return req.vars.get("limit_conn_status", "")


_CONTEXTS: frozenset[Context] = frozenset({"http", "server", "location"})

MODULE = Module(
    name="limit_conn",
    conf=LimitConnConf,
    directives=(
        ModuleDirective("limit_conn_zone", frozenset({"http"}), _p_zone),
        ModuleDirective("limit_conn", _CONTEXTS, _p_limit, ordered=True),
        ModuleDirective("limit_conn_status", _CONTEXTS, status_parser("status")),
        ModuleDirective("limit_conn_log_level", _CONTEXTS, level_parser("log_level")),
        ModuleDirective("limit_conn_dry_run", _CONTEXTS, flag_parser("dry_run")),
    ),
    variables={"limit_conn_status": _status_var},
    plan=_plan,
)
