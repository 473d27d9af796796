"""The realip module (ngx_http_realip_module): the client address a trusted balancer reports.

    set_real_ip_from ADDRESS | CIDR | unix:    (http, server, location; repeatable)
    real_ip_header   X-Real-IP | X-Forwarded-For | proxy_protocol | any header   (X-Real-IP)
    real_ip_recursive on | off                                                   (off)
    $realip_remote_addr, $realip_remote_port: the address and port before the change
    $proxy_protocol_addr, $proxy_protocol_port (and _server_addr/_server_port): the PROXY header's

When the connection's address is trusted, the request's client address (the connection's, as in nginx:
`$remote_addr`, allow/deny, limit zones and logs all read it) becomes the one the header names; with
`real_ip_recursive`, trusted addresses are skipped from the right of X-Forwarded-For (nginx's
ngx_http_get_forwarded_addr). The change lasts for the request: its cleanup restores the connection's
own address, so the next request on a keep-alive connection starts from it again. Runs in post-read
with the server's settings and again in preaccess for a location with its own settings (once per
request), as nginx's two handlers do.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields, arg_flag
from pyginx.config.values import Context, Env, Val
from pyginx.module import DECLINED, Level, Module, ModuleDirective, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RealipConf:
    sources: tuple[Network | str, ...] = ()  # networks, or "unix:"
    header: str = "x-real-ip"  # lower-cased; "proxy_protocol" for the PROXY header
    recursive: bool = False


def _p_from(val: Val, env: Env) -> Fields:
    out: list[Network | str] = []
    for entry in val.entries():
        arg = entry.one()
        text = arg.text
        if text == "unix:":
            out.append("unix:")
            continue
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise entry.error(f'host not found in set_real_ip_from "{text}"', arg.line) from None
    return {"sources": tuple(out)}


def _p_header(val: Val, env: Env) -> Fields:
    text = val.one().text
    return {"header": "proxy_protocol" if text == "proxy_protocol" else text.lower()}


def _p_recursive(val: Val, env: Env) -> Fields:
    return {"recursive": arg_flag(val, val.one())}


# ---------------------------------------------------------------------------------------------------
# the decision (pure)


def trusted(addr: str, sources: tuple[Network | str, ...]) -> bool:
    if addr.startswith("unix:"):
        return "unix:" in sources
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # nginx matches a v4-mapped peer against IPv4 networks
    return any(not isinstance(n, str) and ip.version == n.version and ip in n for n in sources)


def parse_addr_port(text: str) -> tuple[str, int] | None:
    """ngx_parse_addr_port: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80` -> (address, port or 0)."""
    text = text.strip()
    port = 0
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit() or not 0 < int(rest[1:]) < 65536:
                return None
            port = int(rest[1:])
        text = host
    elif text.count(":") == 1:
        text, _, p = text.partition(":")
        if not p.isdigit() or not 0 < int(p) < 65536:
            return None
        port = int(p)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(ip), port


def forwarded(
    addr: str, values: list[str], sources: tuple[Network | str, ...], recursive: bool
) -> tuple[str, int] | None:
    """nginx's ngx_http_get_forwarded_addr over header values (last header first): the new
    (address, port), or None to keep the connection's."""
    current: tuple[str, int] = (addr, 0)
    found = False
    for value in reversed(values):
        items = value.replace(" ", ",").split(",")
        while items and not items[-1]:
            items.pop()
        while items:
            if not trusted(current[0], sources):
                return current if found else None
            got = parse_addr_port(items.pop())
            if got is None:
                return current if found else None
            current, found = got, True
            while items and not items[-1]:
                items.pop()
            if not recursive:
                return current
        if not recursive:
            break
    return current if found else None


# ---------------------------------------------------------------------------------------------------
# the handler


def _handler(conf: RealipConf) -> PhaseHandler:
    sources, header, recursive = conf.sources, conf.header, conf.recursive
    from_proxy_protocol = header == "proxy_protocol"
    xff = header == "x-forwarded-for"

    def realip(req: Request) -> Any:
        vars_ = req.vars
        if "realip_remote_addr" in vars_:
            return DECLINED
        conn = req.conn
        addr = conn.client_addr
        if from_proxy_protocol:
            pp: Any = getattr(conn, "proxy_protocol", None)  # none on HTTP/2 streams
            value = getattr(pp, "src_addr", "")
            if not value:
                return DECLINED
            got: tuple[str, int] | None = (value, pp.src_port) if trusted(addr, sources) else None
        else:
            if xff:
                values = [v for k, v in req.header_list if k.lower() == "x-forwarded-for"]
            else:
                one = req.headers.get(header)
                values = [one] if one is not None else []
            if not values:
                return DECLINED
            got = forwarded(addr, values, sources, recursive)
        if got is None:
            return DECLINED
        original = (addr, conn.client_port)
        vars_["realip_remote_addr"] = original[0]
        vars_["realip_remote_port"] = str(original[1]) if original[1] else ""
        conn.client_addr, conn.client_port = got

        def restore() -> None:
            conn.client_addr, conn.client_port = original

        req.add_cleanup(restore)
        return DECLINED

    return realip


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    conf: RealipConf = settings.conf(MODULE.name)
    if not conf.sources:
        return []
    handler = _handler(conf)
    if level == "server":
        # the server's plan is also a location's when no location matches: preaccess too (declines
        # when post-read already did the work)
        return [(Phase.POST_READ, handler), (Phase.PREACCESS, handler)]
    return [(Phase.PREACCESS, handler)]


def _pp(field: str) -> Any:
    def get(req: Request) -> str:
        pp = getattr(req.conn, "proxy_protocol", None)
        value = getattr(pp, field, "")
        return str(value) if value else ""

    return get


def _remote(field: str, fallback: str) -> Any:
    def get(req: Request) -> str:
        got = req.vars.get(field)
        if got is not None:
            return got
        conn = req.conn
        return str(getattr(conn, fallback) or "") if fallback == "client_port" else conn.client_addr

    return get


_CONTEXTS: frozenset[Context] = frozenset({"http", "server", "location"})

MODULE = Module(
    name="realip",
    conf=RealipConf,
    directives=(
        ModuleDirective("set_real_ip_from", _CONTEXTS, _p_from, ordered=True),
        ModuleDirective("real_ip_header", _CONTEXTS, _p_header),
        ModuleDirective("real_ip_recursive", _CONTEXTS, _p_recursive),
    ),
    variables={
        "realip_remote_addr": _remote("realip_remote_addr", "client_addr"),
        "realip_remote_port": _remote("realip_remote_port", "client_port"),
        "proxy_protocol_addr": _pp("src_addr"),
        "proxy_protocol_port": _pp("src_port"),
        "proxy_protocol_server_addr": _pp("dst_addr"),
        "proxy_protocol_server_port": _pp("dst_port"),
    },
    plan=_plan,
)
