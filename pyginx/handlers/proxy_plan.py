"""What the proxy prepares once per location (`Plan`), and proxy_pass targets resolved per request.

A Plan holds everything about proxying that does not change from request to request: the upstream
block, the request head template with its constant lines encoded, the compiled variables, the response
header filter, the retry policy. Plans are cached by the identity of the settings they were made from,
so a reload (new settings objects) makes new ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings, Location, ProxyPass, Resolver, Upstream, UpstreamServer
from pyginx.errors import HttpError
from pyginx.handlers import proxy_headers as ph
from pyginx.http.variables import Getter, compile_template, has_variables
from pyginx.upstream.attempts import NextUpstream

if TYPE_CHECKING:
    from pyginx.http.request import Request


@dataclass
class Plan:
    pp: ProxyPass
    settings: HttpSettings
    location: Location | None
    upstream: Upstream | None  # the block, when proxy_pass names it without variables
    set_headers: ph.SetHeaders
    host_getter: Getter | None
    head: ph.HeadTemplate  # the request head with its constant lines encoded
    set_getters: list[Getter]  # the variable proxy_set_header values, in order
    hide: frozenset[str]
    drop: frozenset[str]  # response header names never passed (ph.response_drop)
    redirects: tuple[ph.RedirectRule, ...]
    policy: NextUpstream
    pp_host: Getter | None  # proxy_pass with variables: its host part (or whole URL) and URI
    pp_uri: Getter | None
    read_high_water: int  # bytes an upstream connection buffers before its reading pauses
    proxy_host: str  # $proxy_host and $proxy_port of a proxy_pass without variables
    proxy_port: str


_plans: dict[tuple[int, int], tuple[HttpSettings, Location | None, Plan]] = {}
_hash_keys: dict[int, tuple[Upstream, Getter]] = {}
_dynamic: dict[str, Upstream] = {}  # proxy_pass with variables naming host:port: implicit blocks


def plan_for(req: Request) -> Plan:
    settings = req.settings
    location = req.location
    key = (id(settings), id(location))
    hit = _plans.get(key)
    if hit is not None and hit[0] is settings and hit[1] is location:
        return hit[2]
    plan = _make_plan(req, settings, location)
    _plans[key] = (settings, location, plan)
    return plan


def _make_plan(req: Request, settings: HttpSettings, location: Location | None) -> Plan:
    pp = settings.proxy_pass
    assert pp is not None
    sh = ph.plan_set_headers(settings.proxy_set_header)
    constant = tuple(not has_variables(hv.value) for hv in sh.others)
    hide = ph.hidden_headers(settings.proxy_hide_header, settings.proxy_pass_header)
    http = req.conn.ctx.config.http
    upstream = None
    if not pp.has_variables and http is not None and pp.upstream is not None:
        upstream = http.upstreams[pp.upstream]
    return Plan(
        pp=pp,
        settings=settings,
        location=location,
        upstream=upstream,
        set_headers=sh,
        host_getter=compile_template(sh.host.value) if sh.host is not None else None,
        head=ph.HeadTemplate(settings.proxy_http_version, sh, constant),
        set_getters=[compile_template(hv.value) for hv, c in zip(sh.others, constant, strict=True) if not c],
        hide=hide,
        drop=ph.response_drop(hide, upgrade=False),
        redirects=ph.redirect_rules(pp, location, settings.proxy_redirect),
        policy=NextUpstream.from_settings(settings),
        pp_host=compile_template(pp.host) if pp.has_variables else None,
        pp_uri=compile_template(pp.uri) if pp.has_variables and pp.uri is not None else None,
        read_high_water=(
            max(64 * 1024, settings.proxy_buffers[0] * settings.proxy_buffers[1])
            if settings.proxy_buffering
            else 64 * 1024
        ),
        proxy_host=pp.proxy_host,
        proxy_port=ph.proxy_port(pp),
    )


def hash_key(up: Upstream) -> Getter | None:
    if up.balancer != "hash" or not up.hash_key:
        return None
    hit = _hash_keys.get(id(up))
    if hit is None or hit[0] is not up:
        hit = (up, compile_template(up.hash_key))
        _hash_keys[id(up)] = hit
    return hit[1]


async def resolve_upstream(req: Request, plan: Plan) -> tuple[Upstream, ProxyPass]:
    """proxy_pass with variables, evaluated for this request: an upstream block by name, else
    host:port (resolved, and kept as an implicit block)."""
    assert plan.pp_host is not None
    http = req.conn.ctx.config.http
    text = plan.pp_host(req)
    uri = plan.pp_uri(req) if plan.pp_uri is not None else None
    if text.startswith("http://"):
        rest = text[7:]
        slash = rest.find("/")
        text, uri = (rest, uri) if slash < 0 else (rest[:slash], rest[slash:])
    if http is not None:
        block = http.upstreams.get(text)
        if block is not None and not block.implicit:
            return block, ProxyPass("http", text, None, uri, upstream=text, has_variables=True)
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        host, port_text = text, "80"
    host = host.strip("[]")
    port = int(port_text)
    key = f"{host}:{port}"
    resolver = req.settings.resolver
    if resolver is not None:
        found = await _resolve_with(req, resolver, host, port, key)
        return found, ProxyPass("http", host, port, uri, upstream=key, has_variables=True)
    up = _dynamic.get(key)
    if up is None:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=1)  # SOCK_STREAM
        except OSError as exc:
            req.log_error("error", f"{host} could not be resolved ({exc})")
            raise HttpError(502) from None
        addrs: list[tuple[str, int]] = []
        for info in infos:
            addr = (str(info[4][0]), int(info[4][1]))
            if addr not in addrs:
                addrs.append(addr)
        servers = tuple(UpstreamServer(host=host, port=port, address=a) for a in addrs)
        up = Upstream(name=key, servers=servers, implicit=True)
        if len(_dynamic) > 256:
            _dynamic.clear()  # a small cache, as nginx's resolver cache is bounded too
        _dynamic[key] = up
    return up, ProxyPass("http", host, port, uri, upstream=key, has_variables=True)


# proxy_pass with variables and a `resolver`: host:port -> (its addresses, the implicit block made of them)
_resolved: dict[str, tuple[tuple[str, ...], Upstream]] = {}


async def _resolve_with(req: Request, resolver: Resolver, host: str, port: int, key: str) -> Upstream:
    """nginx's ngx_http_upstream_resolve_handler path: the name asked of the `resolver` (answers
    cached for their TTL capped by valid=, pyginx.upstream.resolver), an implicit block per answer.

    A failure is nginx's "HOST could not be resolved (N: Text)" and 502."""
    from pyginx.upstream import runtime
    from pyginx.upstream.resolver import ResolveError, client_for

    client = client_for(resolver, req.settings.resolver_timeout)
    try:
        found = await client.addresses(host)
    except ResolveError as exc:
        req.log_error("error", f"{host} could not be resolved ({exc})")
        raise HttpError(502) from None
    hit = _resolved.get(key)
    if hit is not None and hit[0] == found.addrs:
        return hit[1]
    if hit is not None:
        runtime.forget([hit[1]])  # requests still on the old block keep their own references
    servers = tuple(UpstreamServer(host=host, port=port, address=(a, port)) for a in found.addrs)
    up = Upstream(name=key, servers=servers, implicit=True)
    if len(_resolved) > 256:
        runtime.forget([u for _, u in _resolved.values()])
        _resolved.clear()
    _resolved[key] = (found.addrs, up)
    return up


def forget_configurations() -> None:
    """The proxy module's exit_worker: the plans computed for a configuration's locations."""
    _plans.clear()
    _hash_keys.clear()
