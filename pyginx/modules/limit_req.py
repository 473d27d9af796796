"""The limit_req module (ngx_http_limit_req_module): request rate limits shared by all workers.

    limit_req_zone  KEY zone=NAME:SIZE rate=N r/s|r/m        (http)
    limit_req       zone=NAME [burst=N] [nodelay | delay=N]  (http, server, location; repeatable)
    limit_req_status 400..599 (503)   limit_req_log_level info|notice|warn|error (error)
    limit_req_dry_run on|off (off)    $limit_req_status (PASSED, DELAYED, REJECTED, *_DRY_RUN)

nginx's leaky bucket, exactly: a key's state is its `excess` in milli-requests and the millisecond
time it was last changed; each request drains `rate * ms / 1000` and adds 1000. Above `burst` the
request is rejected, above `delay` it waits `(excess - delay) * 1000 / rate` ms. With several limits,
each but the last is only looked up (its node held by a count) and all are accounted once every one
has passed, as nginx's lookup/account order does. The state lives in a shared zone (pyginx/zone): one
transaction under the zone lock per lookup, so 2 workers admit exactly what one nginx admits.

Runs in the preaccess phase, once per main request (an internal redirect is not limited again).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyginx.config.model import HttpSettings, SourcePos, ZoneDecl
from pyginx.config.parsers import Fields, arg_flag
from pyginx.config.units import parse_size
from pyginx.config.values import Context, Env, Val
from pyginx.errors import ConfigError
from pyginx.module import DECLINED, DONE, Level, Module, ModuleDirective, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request
    from pyginx.zone import SharedTable, Transaction

TAG = "limit_req"
PAGE = 4096
LOG_LEVELS = ("info", "notice", "warn", "error")
_MORE_VERBOSE = {"error": "warn", "warn": "notice", "notice": "info", "info": "info"}
NODELAY = (2**63 - 1) // 1000 * 1000  # nginx: NGX_MAX_INT_T_VALUE / 1000, in milli-requests

# a key's node: excess (milli-requests), last change (ms, monotonic), count (lookups not yet accounted)
NODE = struct.Struct("<qqi4x")


@dataclass(frozen=True)
class ZoneDef:
    name: str
    size: int
    key: str  # a template
    rate: int  # milli-requests per second (nginx's ctx->rate)
    pos: SourcePos | None = None


@dataclass(frozen=True)
class Limit:
    zone: str
    burst: int  # milli-requests
    delay: int  # milli-requests
    pos: SourcePos | None = None


@dataclass(frozen=True)
class LimitReqConf:
    zones: tuple[ZoneDef, ...] = ()  # http level only
    limits: tuple[Limit, ...] = ()
    log_level: str = "error"
    status: int = 503
    dry_run: bool = False


# ---------------------------------------------------------------------------------------------------
# parsing


def zone_param(val: Val, text: str, line: int) -> tuple[str, int]:
    """`zone=NAME:SIZE` as ngx_http_limit_req_zone and ngx_http_limit_conn_zone read it."""
    body = text[5:]
    name, sep, size_text = body.partition(":")
    if not sep:
        raise val.error(f'invalid zone size "{text}"', line)
    size = parse_size(size_text)
    if size is None:
        raise val.error(f'invalid zone size "{text}"', line)
    if size < 8 * PAGE:
        raise val.error(f'zone "{text}" is too small', line)
    return name, size


def _p_zone(val: Val, env: Env) -> Fields:
    zones: list[ZoneDef] = []
    for entry in val.entries():
        args = entry.args()
        if len(args) != 3:
            raise entry.nargs()
        key = args[0].text
        env.use_vars(key, args[0].line)
        name, size, rate, scale = "", 0, 1, 1
        for arg in args[1:]:
            text = arg.text
            if text.startswith("zone="):
                name, size = zone_param(entry, text, arg.line)
            elif text.startswith("rate="):
                digits = text[5:]
                if digits.endswith("r/s"):
                    digits = digits[:-3]
                elif digits.endswith("r/m"):
                    scale, digits = 60, digits[:-3]
                rate = int(digits) if digits.isdigit() else 0
                if rate <= 0:
                    raise entry.error(f'invalid rate "{text}"', arg.line)
            else:
                raise entry.invalid_param(arg)
        if not name:
            raise entry.error(f'"{val.name}" must have "zone" parameter')
        for z in zones:
            if z.name == name:
                raise entry.error(f'{val.name} "{name}" is already bound to key "{z.key}"')
        zones.append(ZoneDef(name, size, key, rate * 1000 // scale, entry.pos))
    return {"zones": tuple(zones)}


def _positive(entry: Val, text: str, what: str, line: int) -> int:
    digits = text.split("=", 1)[1]
    value = int(digits) if digits.isdigit() else 0
    if value <= 0:
        raise entry.error(f'invalid {what} value "{text}"', line)
    return value


def _p_limit(val: Val, env: Env) -> Fields:
    limits: list[Limit] = []
    for entry in val.entries():
        args = entry.args()
        if len(args) > 3:
            raise entry.nargs()
        zone, burst, delay = "", 0, 0
        for arg in args:
            text = arg.text
            if text.startswith("zone="):
                zone = text[5:]
            elif text.startswith("burst="):
                burst = _positive(entry, text, "burst", arg.line)
            elif text.startswith("delay="):
                delay = _positive(entry, text, "delay", arg.line)
            elif text == "nodelay":
                delay = NODELAY // 1000
            else:
                raise entry.invalid_param(arg)
        if not zone:
            raise entry.error(f'"{val.name}" must have "zone" parameter')
        if any(limit.zone == zone for limit in limits):
            raise entry.error(f'"{val.name}" directive is duplicate')
        limits.append(Limit(zone, burst * 1000, min(delay * 1000, NODELAY), entry.pos))
    return {"limits": tuple(limits)}


def status_parser(field: str) -> Callable[[Val, Env], Fields]:
    def parse(val: Val, env: Env) -> Fields:
        arg = val.one()
        if not arg.text.isdigit():
            raise val.invalid(arg)
        code = int(arg.text)
        if not 400 <= code <= 599:
            raise val.error("value must be between 400 and 599", arg.line)
        return {field: code}

    return parse


def level_parser(field: str) -> Callable[[Val, Env], Fields]:
    def parse(val: Val, env: Env) -> Fields:
        arg = val.one()
        if arg.text not in LOG_LEVELS:
            raise val.error(f'invalid value "{arg.text}"', arg.line)
        return {field: arg.text}

    return parse


def flag_parser(field: str) -> Callable[[Val, Env], Fields]:
    def parse(val: Val, env: Env) -> Fields:
        return {field: arg_flag(val, val.one())}

    return parse


# ---------------------------------------------------------------------------------------------------
# zones: declared for the master, checked against their uses


def zone_decls(http_settings: HttpSettings, levels: list[HttpSettings]) -> list[ZoneDecl]:
    conf: LimitReqConf = http_settings.conf(MODULE.name)
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
# the leaky bucket (pure functions of a transaction, the time and the limit; nginx's names)

BUSY, OK, AGAIN = "busy", "ok", "again"


def _drained(excess: int, rate: int, now: int, last: int) -> tuple[int, int]:
    """(the new excess after one more request, the ms elapsed) as nginx computes them."""
    ms = now - last
    if ms < -60000:
        ms = 1
    elif ms < 0:
        ms = 0
    return max(0, excess - rate * ms // 1000 + 1000), ms


def lookup(tx: Transaction, digest: bytes, rate: int, burst: int, now: int, account: bool) -> tuple[str, int]:
    """ngx_http_limit_req_lookup: (BUSY | OK | AGAIN, excess). The node is read and written in place."""
    off = tx.record_offset(digest)  # moves the node to the head of the LRU queue
    if off >= 0:
        mem = tx.mem
        old, last, count = NODE.unpack_from(mem, off)
        ms = now - last
        if ms < -60000:
            ms = 1
        elif ms < 0:
            ms = 0
        excess = old - rate * ms // 1000 + 1000  # _drained(), inline: this runs for every request
        if excess < 0:
            excess = 0
        if excess > burst:
            return BUSY, excess
        if account:
            NODE.pack_into(mem, off, excess, now if ms else last, count)
            return OK, excess
        NODE.pack_into(mem, off, old, last, count + 1)
        return AGAIN, excess
    expire(tx, rate, now, 1)
    if account:
        tx.put(digest, NODE.pack(0, now, 0))  # a full zone evicts its oldest node (nginx's forced expiry)
        return OK, 0
    tx.put(digest, NODE.pack(0, 0, 1))
    return AGAIN, 0


def account(tx: Transaction, digest: bytes, rate: int, now: int) -> int:
    """One held node of ngx_http_limit_req_account: charge the request, release the hold; its excess."""
    off = tx.record_offset(digest, touch=False)
    if off < 0:  # evicted meanwhile (a tiny zone under pressure): nothing to charge
        return 0
    old, last, count = NODE.unpack_from(tx.mem, off)
    excess, ms = _drained(old, rate, now, last)
    NODE.pack_into(tx.mem, off, excess, now if ms else last, count - 1)
    return excess


def release(tx: Transaction, digest: bytes) -> None:
    """ngx_http_limit_req_unlock: a held node's count goes down without charging."""
    off = tx.record_offset(digest, touch=False)
    if off >= 0:
        old, last, count = NODE.unpack_from(tx.mem, off)
        NODE.pack_into(tx.mem, off, old, last, count - 1)


def expire(tx: Transaction, rate: int, now: int, n: int) -> None:
    """ngx_http_limit_req_expire: drop up to two idle, fully drained nodes from the LRU tail."""
    while n < 3:
        tail = tx.oldest(1)
        if not tail:
            return
        digest, rec = tail[0]
        excess, last, count = NODE.unpack(rec)
        if count:
            return
        if n != 0:
            ms = abs(now - last)
            if ms < 60000:
                return
            if excess - rate * ms // 1000 > 0:
                return
        n += 1
        tx.delete(digest)


# ---------------------------------------------------------------------------------------------------
# the phase handler


@dataclass
class _Bound:
    """One `limit_req` of a location, bound to its zone in this process."""

    name: str
    key: Callable[[Request], str]
    key_text: str
    rate: int
    burst: int
    delay: int
    table: SharedTable


def _bind(settings: HttpSettings, http_zones: dict[str, ZoneDef]) -> list[_Bound]:
    from pyginx import zone
    from pyginx.http.variables import compile_template

    conf: LimitReqConf = settings.conf(MODULE.name)
    out: list[_Bound] = []
    for limit in conf.limits:
        zdef = http_zones[limit.zone]
        table: SharedTable = zone.current().attach(limit.zone, zone.SharedTable, NODE.size)  # type: ignore[assignment]
        out.append(
            _Bound(
                limit.zone, compile_template(zdef.key), zdef.key, zdef.rate, limit.burst, limit.delay, table
            )
        )
    return out


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


DIGESTS_MAX = 4096  # a worker's memo of key -> digest (the same clients come back)


def handler_for(bound: list[_Bound], conf: LimitReqConf) -> PhaseHandler:
    from pyginx.zone import key_digest

    log_level = conf.log_level
    delay_level = _MORE_VERBOSE[log_level]
    dry = conf.dry_run
    dry_note = ", dry run" if dry else ""
    last_index = len(bound) - 1
    digests: dict[str, bytes] = {}

    def digest_of(key: str) -> bytes:
        d = digests.get(key)
        if d is None:
            if len(digests) >= DIGESTS_MAX:
                digests.clear()
            d = digests[key] = key_digest(key.encode("utf-8", "surrogateescape"))
        return d

    def too_long(req: Request, limit: _Bound, key: str) -> bool:
        if len(key) > 65535:
            req.log_error(
                "error", f'the value of the "{limit.key_text}" key is more than 65535 bytes: "{key}"'
            )
            return True
        return False

    def conclude(req: Request, rc: str, excess: int, limit: _Bound, held: list[tuple[_Bound, bytes]]) -> Any:
        vars_ = req.vars
        if rc == BUSY:
            req.log_error(
                log_level,
                f'limiting requests{dry_note}, excess: {excess // 1000}.{excess % 1000:03d} by zone "{limit.name}"',
            )
            for b, d in held:
                with b.table.transaction() as tx:
                    release(tx, d)
            if dry:
                vars_["limit_req_status"] = "REJECTED_DRY_RUN"
                return DECLINED
            vars_["limit_req_status"] = "REJECTED"
            req.send_error(conf.status)
            return DONE
        if rc == AGAIN:  # the last limit's key was empty: every node was only looked up
            excess = 0
        # ngx_http_limit_req_account: charge every held node; the longest delay wins
        worst = limit
        max_delay = 0 if excess <= limit.delay else (excess - limit.delay) * 1000 // limit.rate
        for b, d in reversed(held):
            with b.table.transaction() as tx:
                got = account(tx, d, b.rate, _now_ms())
            if got <= b.delay:
                continue
            delay = (got - b.delay) * 1000 // b.rate
            if delay > max_delay:
                max_delay, excess, worst = delay, got, b
        if not max_delay:
            vars_["limit_req_status"] = "PASSED"
            return DECLINED
        req.log_error(
            delay_level,
            f'delaying request{dry_note}, excess: {excess // 1000}.{excess % 1000:03d}, by zone "{worst.name}"',
        )
        if dry:
            vars_["limit_req_status"] = "DELAYED_DRY_RUN"
            return DECLINED
        vars_["limit_req_status"] = "DELAYED"
        return _delayed(req, max_delay / 1000)

    def limit_req(req: Request) -> Any:
        if "limit_req_status" in req.vars:
            return DECLINED
        held: list[tuple[_Bound, bytes]] = []
        rc, excess, limit = "declined", 0, bound[0]
        for i, limit in enumerate(bound):
            key = limit.key(req)
            if not key or too_long(req, limit, key):
                continue
            digest = digest_of(key)
            with limit.table.transaction() as tx:
                rc, excess = lookup(tx, digest, limit.rate, limit.burst, _now_ms(), i == last_index)
            if rc == AGAIN:
                held.append((limit, digest))
                continue
            break
        if rc == "declined":
            return DECLINED
        return conclude(req, rc, excess, limit, held)

    if len(bound) != 1:
        return limit_req
    only = bound[0]
    key_of, tx, rate, burst, delay = only.key, only.table.transaction(), only.rate, only.burst, only.delay

    def limit_req_one(req: Request) -> Any:
        """The usual case, one limit_req: the same steps without the bookkeeping of several."""
        vars_ = req.vars
        if "limit_req_status" in vars_:
            return DECLINED
        key = key_of(req)
        if not key or too_long(req, only, key):
            return DECLINED
        digest = digest_of(key)
        with tx:
            rc, excess = lookup(tx, digest, rate, burst, _now_ms(), True)
        if rc == OK and excess <= delay:
            vars_["limit_req_status"] = "PASSED"
            return DECLINED
        return conclude(req, rc, excess, only, [])

    return limit_req_one


async def _delayed(req: Request, seconds: float) -> bool | None:
    await asyncio.sleep(seconds)
    if req.client_closed:  # ngx_http_test_reading: the client went away while waiting
        raise ConnectionResetError("client closed the connection while delayed")
    return DECLINED


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    conf: LimitReqConf = settings.conf(MODULE.name)
    if not conf.limits:
        return []  # nothing at all for a location without limit_req
    http_zones = {z.name: z for z in conf.zones}  # declared at http level, inherited by every level
    return [(Phase.PREACCESS, handler_for(_bind(settings, http_zones), conf))]


def _status_var(req: Request) -> str:
    return req.vars.get("limit_req_status", "")


_CONTEXTS: frozenset[Context] = frozenset({"http", "server", "location"})

MODULE = Module(
    name="limit_req",
    conf=LimitReqConf,
    directives=(
        ModuleDirective("limit_req_zone", frozenset({"http"}), _p_zone),
        ModuleDirective("limit_req", _CONTEXTS, _p_limit, ordered=True),
        ModuleDirective("limit_req_status", _CONTEXTS, status_parser("status")),
        ModuleDirective("limit_req_log_level", _CONTEXTS, level_parser("log_level")),
        ModuleDirective("limit_req_dry_run", _CONTEXTS, flag_parser("dry_run")),
    ),
    variables={"limit_req_status": _status_var},
    plan=_plan,
)
