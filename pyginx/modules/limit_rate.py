"""Response rate limiting (ngx_http_core_module's limit_rate, as ngx_http_write_filter applies it).

    limit_rate RATE          (http, server, location, if in location; 0: off) bytes/s per response
    limit_rate_after SIZE    (same; 0) the first SIZE bytes of the response go out unthrottled
    $limit_rate              the request's rate; `set $limit_rate 10k` sets it (over limit_rate)
    X-Accel-Limit-Rate: N    from a proxied upstream: the request's rate (bytes/s, 0: none)

Both values may hold variables (evaluated once per response, an invalid size is logged and counts
as 0, as ngx_http_complex_value_size does). The decision is made at configuration time: a location
gets this module's header filter only if it has a non-zero limit_rate, or if the configuration sets
$limit_rate (so that the `set` can take effect); every other location pays nothing. The pacing
itself is pyginx/http/pacing.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields
from pyginx.config.units import parse_size
from pyginx.config.values import Context, Env, Val
from pyginx.module import HeaderFilter, Module, ModuleDirective

if TYPE_CHECKING:
    from collections.abc import Callable

    from pyginx.http.request import Request

VAR = "limit_rate"


@dataclass(frozen=True)
class LimitRateConf:
    rate: int = 0
    rate_template: str = ""  # a value with $variables: evaluated per response
    after: int = 0
    after_template: str = ""
    settable: bool = False  # the configuration has `set $limit_rate` where this level can see it


def _size_parser(field: str) -> Callable[[Val, Env], Fields]:
    def parse(val: Val, env: Env) -> Fields:
        arg = val.one()
        if "$" in arg.text:
            env.use_vars(arg.text, arg.line)
            return {field: 0, f"{field}_template": arg.text}
        size = parse_size(arg.text)
        if size is None:  # ngx_http_set_complex_value_size_slot's words
            raise val.error(f'"{val.name}" directive invalid value', arg.line)
        return {field: size, f"{field}_template": ""}

    return parse


def _sets_rate(ops: tuple[Any, ...]) -> bool:
    """A `set $limit_rate` in a rewrite script (an `if` block's included)."""
    from pyginx.modules.rewrite import IfOp, SetOp

    for op in ops:
        if isinstance(op, SetOp) and op.name == VAR:
            return True
        if isinstance(op, IfOp) and _sets_rate(op.ops):
            return True
    return False


def _resolve(settings: HttpSettings, env: Env) -> HttpSettings:
    # runs before the rewrite module's resolve (module order), so `if` blocks inherit the mark; a
    # server's `set` is read before its locations are
    conf: LimitRateConf = settings.conf(MODULE.name)
    if conf.settable or VAR not in env.defined_vars:
        return settings
    return replace(settings, modules={**settings.modules, MODULE.name: replace(conf, settable=True)})


def _size_of(req: Request, template: Callable[[Request], str]) -> int:
    text = template(req)
    size = parse_size(text)
    if size is None:
        req.log_error("error", f'invalid size "{text}"')
        return 0
    return size


def _set_rate(req: Request) -> int | None:
    """The rate a `set $limit_rate` gave (None: not set, or not a size: nginx logs and ignores it)."""
    text = req.vars.get(VAR)
    if text is None:
        return None
    size = parse_size(text)
    if size is None:
        req.log_error("error", f'invalid $limit_rate "{text}"')
        del req.vars[VAR]  # logged once
    else:
        req.vars[VAR] = str(size)
    return size


def _header_filter(settings: HttpSettings) -> HeaderFilter | None:
    conf: LimitRateConf = settings.conf(MODULE.name)
    settable = conf.settable or _sets_rate(settings.conf("rewrite").ops)
    if not (conf.rate or conf.rate_template or settable):
        return None
    from pyginx.http.pacing import pace
    from pyginx.http.variables import compile_template

    rate_of = compile_template(conf.rate_template) if conf.rate_template else None
    after_of = compile_template(conf.after_template) if conf.after_template else None

    def limit_rate(
        req: Request, status: int, headers: list[tuple[str, str]], length: int | None
    ) -> tuple[int, list[tuple[str, str]], int | None]:
        rate = _set_rate(req)  # set $limit_rate, or an upstream's X-Accel-Limit-Rate
        if rate is None:
            rate = _size_of(req, rate_of) if rate_of is not None else conf.rate
            if rate_of is not None:
                req.vars[VAR] = str(rate)  # $limit_rate in the log shows the rate that applied
        if rate > 0:
            after = _size_of(req, after_of) if after_of is not None else conf.after
            pace(req, rate, after)
            if req.body_filter is None:  # a file's body must go through write(), not sendfile()
                req.body_filter = _through
        return status, headers, length

    return HeaderFilter("limit_rate", limit_rate)


def accel_limit_rate(req: Request, value: str) -> None:
    """An upstream's `X-Accel-Limit-Rate: N` (bytes/s; 0: none) is the request's rate, as nginx's
    ngx_http_upstream_process_limit_rate makes it (a value that is not a number is ignored). Called
    by the proxy before the response head goes out."""
    if not value.isdigit():
        return
    req.vars[VAR] = value
    filters = req.filters
    if filters is not None and any(f.name == "limit_rate" for f in filters):
        return  # the location's filter applies it with the location's limit_rate_after
    if int(value) > 0:
        from pyginx.http.pacing import pace

        conf: LimitRateConf = req.settings.conf(MODULE.name)
        pace(req, int(value), conf.after)


def _through(data: bytes, last: bool) -> bytes:
    return data


def _rate_var(req: Request) -> str:
    """$limit_rate: the rate set for the request, else its location's (0: none)."""
    text = req.vars.get(VAR)
    if text is not None:
        return text
    conf: LimitRateConf = req.settings.conf(MODULE.name)
    return str(conf.rate)


_CONTEXTS: frozenset[Context] = frozenset({"http", "server", "location", "if"})

MODULE = Module(
    name="limit_rate",
    conf=LimitRateConf,
    directives=(
        ModuleDirective("limit_rate", _CONTEXTS, _size_parser("rate")),
        ModuleDirective("limit_rate_after", _CONTEXTS, _size_parser("after")),
    ),
    variables={VAR: _rate_var},
    header_filter=_header_filter,
    resolve=_resolve,
)
