"""Configuration of DNS at run time (issue 16): `resolver`, upstream `zone`, and the `readiness`
extension's location directive.

nginx's words are kept for every error (ngx_resolver_create, ngx_http_upstream_zone).
"""

from __future__ import annotations

from pyginx.config.model import Resolver
from pyginx.config.parsers import Fields, arg_time
from pyginx.config.resolve import literal
from pyginx.config.units import parse_size, parse_time
from pyginx.config.values import Env, Val

DNS_PORT = 53
# nginx refuses a zone smaller than 8 pages
_MIN_ZONE = 8 * 4096


def _name_server(text: str) -> tuple[str, int] | None:
    """`127.0.0.1`, `127.0.0.1:5353`, `[::1]:5353`, `::1` -> (address, port); None if not an address.

    pyginx's resolver talks to IP addresses only (nginx would resolve a name here once, at load)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        port = int(rest[1:]) if rest else DNS_PORT
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    else:
        host, port = text, DNS_PORT
    addr = literal(host)
    if addr is None or not 0 < port < 65536:
        return None
    return addr, port


def p_resolver(val: Val, env: Env) -> Fields:
    args = val.args()
    servers: list[tuple[str, int]] = []
    valid: float | None = None
    ipv4 = ipv6 = True
    for arg in args:
        name, eq, value = arg.text.partition("=")
        if eq and name == "valid":
            valid = parse_time(value, seconds_only=True)
            if not valid:
                raise val.error(f"invalid parameter: {arg.text}", arg.line)
        elif eq and name in ("ipv4", "ipv6"):
            if value not in ("on", "off"):
                raise val.error(f"invalid parameter: {arg.text}", arg.line)
            if name == "ipv4":
                ipv4 = value == "on"
            else:
                ipv6 = value == "on"
        elif eq and name == "status_zone":
            continue  # nginx's resolver statistics zone: accepted, no statistics kept
        else:
            server = _name_server(arg.text)
            if server is None:
                raise val.error(f"invalid parameter: {arg.text}", arg.line)
            servers.append(server)
    if not ipv4 and not ipv6:
        raise val.error('"ipv4" and "ipv6" cannot both be "off"', args[-1].line)
    if not servers:
        raise val.nargs()
    return {"resolver": Resolver(tuple(servers), valid, ipv4, ipv6)}


def p_upstream_resolver(val: Val, env: Env) -> Fields:
    """`resolver` inside an upstream block (nginx >= 1.27.3): the upstream's own name servers."""
    return p_resolver(val, env)


def p_zone(val: Val, env: Env) -> Fields:
    """`zone: "NAME [SIZE]"`. pyginx keeps the upstream's state per worker (see docs/scale-out.md)."""
    args = val.args()
    if len(args) > 2:
        raise val.nargs()
    name = args[0].text
    size = 0
    if len(args) == 2:
        parsed = parse_size(args[1].text)
        if parsed is None:
            raise val.error(f'invalid zone size "{args[1].text}"', args[1].line)
        size = parsed
        if size < _MIN_ZONE:
            raise val.error(f'zone "{name}" is too small', args[1].line)
    return {"zone": name, "zone_size": size}


def p_resolver_timeout(val: Val, env: Env) -> Fields:
    return {"resolver_timeout": arg_time(val, val.one())}
