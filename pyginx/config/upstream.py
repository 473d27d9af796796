"""Upstream blocks, their `server` lines, and `proxy_pass` (which names a block or makes one).

Names are resolved once, at load time, as nginx does without a `resolver`: a name with several
addresses becomes several servers; a name that does not resolve is `host not found in upstream`.
A `proxy_pass http://host:port` that names no block gets an implicit one-server upstream registered
under "host:port", so the proxy always talks to an `Upstream`.
"""

from __future__ import annotations

import re
from dataclasses import replace

from pyginx.config import resolve
from pyginx.config.model import HealthCheck, ProxyPass, Upstream, UpstreamServer
from pyginx.config.parsers import Fields, arg_flag, arg_number, arg_time
from pyginx.config.units import parse_number, parse_time
from pyginx.config.values import Arg, Env, Val
from pyginx.config.yamlload import YMap, YScalar

# balancers that pick by key or at random have no notion of a backup tier (nginx refuses it too)
_NO_BACKUP = ("ip_hash", "hash", "random")


def _host_port(text: str, default_port: int | None) -> tuple[str, int | None, bool]:
    """ "h:81" -> ("h", 81, True), "[::1]:81" -> ("::1", 81, True), "h" -> ("h", default, False).

    Raises ValueError for a malformed port.
    """
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if m is not None:
        host, port_text = m.group(1), m.group(2)
    else:
        host, sep, port_text_ = text.rpartition(":")
        if not sep:
            host, port_text = text, None
        else:
            port_text = port_text_
    if port_text is None:
        return host, default_port, False
    if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(port_text)
    return host, int(port_text), True


def _addr_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_server_line(val: Val, env: Env) -> tuple[list[UpstreamServer], int | None]:
    """One `server` line -> its servers (one per resolved address) and the line of `backup`, if any."""
    args = val.args()
    addr = args[0]
    opts: Fields = {"written": addr.text}
    backup_line: int | None = None
    for arg in args[1:]:
        # nginx words every bad server parameter the same way: invalid parameter "weight=0"
        name, eq, value = arg.text.partition("=")
        parsed: object = None
        if name in ("weight", "max_fails", "max_conns") and eq:
            parsed = parse_number(value)
            if name == "weight" and parsed == 0:
                parsed = None
        elif name == "fail_timeout" and eq:
            parsed = parse_time(value, seconds_only=True)
        elif name in ("backup", "down", "resolve") and not eq:
            parsed = True
            if name == "backup":
                backup_line = arg.line
        elif name == "service" and eq:
            if not value:
                raise val.error("service is empty", arg.line)
            parsed = value
        if parsed is None:
            raise val.invalid_param(arg)
        opts[name] = parsed
    if "service" in opts and not opts.get("resolve"):
        raise val.error(f'service upstream "{addr.text}" requires "resolve" parameter', addr.line)
    if addr.text.startswith("unix:"):
        path = env.path(addr.text[5:])
        return [UpstreamServer(host=addr.text, port=0, address=None, unix=path, **opts)], backup_line
    try:
        host, port, explicit_port = _host_port(addr.text, 80)
    except ValueError as exc:
        raise val.error(f'invalid port in upstream "{addr.text}"', addr.line) from exc
    assert port is not None
    if opts.get("resolve") and resolve.literal(host) is None:
        # resolved at run time by the worker (pyginx.upstream.dynamic): no address yet
        if "service" in opts and explicit_port:
            raise val.error(f'service upstream "{addr.text}" may not have port', addr.line)
        return [UpstreamServer(host=host, port=port, address=None, **opts)], backup_line
    if "service" in opts:
        raise val.error(f'service upstream "{addr.text}" requires domain name', addr.line)
    opts.pop("resolve", None)  # an address needs no resolving
    try:
        found = resolve.addresses(host, port)
    except OSError as exc:
        raise val.error(f'host not found in upstream "{addr.text}"', addr.line) from exc
    servers = [UpstreamServer(host=host, port=port, address=a, **opts) for a in found]
    return servers, backup_line


def p_servers(val: Val, env: Env) -> Fields:
    servers: list[UpstreamServer] = []
    backup_line: int | None = None
    for entry in val.entries():
        found, line = parse_server_line(entry, env)
        servers.extend(found)
        if backup_line is None:
            backup_line = line
    return {"servers": tuple(servers), "_backup_line": backup_line}


def _balancer(kind: str) -> Fields:
    return {"balancer": kind}


def p_least_conn(val: Val, env: Env) -> Fields:
    return _balancer("least_conn") if arg_flag(val, val.one()) else {}


def p_ip_hash(val: Val, env: Env) -> Fields:
    return _balancer("ip_hash") if arg_flag(val, val.one()) else {}


def p_hash(val: Val, env: Env) -> Fields:
    args = val.args()
    if len(args) > 2:
        raise val.nargs()
    if len(args) == 2 and args[1].text != "consistent":
        raise val.invalid_param(args[1])
    return {"balancer": "hash", "hash_key": args[0].text, "hash_consistent": len(args) == 2}


def p_random(val: Val, env: Env) -> Fields:
    """`random: true`, `random: two`, `random: two least_conn` (nginx's only method for two)."""
    args = val.args()
    if len(args) == 1 and args[0].text in ("on", "off"):
        return _balancer("random") if args[0].text == "on" else {}
    if args[0].text != "two" or len(args) > 2 or (len(args) == 2 and args[1].text != "least_conn"):
        raise val.invalid_param(args[-1] if args[0].text == "two" else args[0])
    return {"balancer": "random", "random_two": True}


def p_keepalive(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text == "off":  # pyginx: the same as no `keepalive` (nginx >= 1.29.7 keeps alive by default)
        return {"keepalive": 0}
    return {"keepalive": arg_number(val, arg)}


_HEALTH_KEYS = ("interval", "uri", "status", "fails", "passes", "timeout")


def p_health_check(val: Val, env: Env) -> Fields:
    """pyginx extension: `health_check: true` or {interval, uri, status, fails, passes, timeout}."""
    node = val.node
    if isinstance(node, YScalar):
        return {"health_check": HealthCheck() if arg_flag(val, val.one()) else None}
    if not isinstance(node, YMap):
        raise val.nargs()
    hc: Fields = {}
    for key, vnode in val.mapping():
        sub = Val(f"health_check {key.raw}", vnode, key.line, val.file)
        if key.raw in ("interval", "timeout"):
            hc[key.raw] = arg_time(sub, sub.joined())
            if hc[key.raw] == 0:
                raise sub.invalid(sub.joined())
        elif key.raw in ("fails", "passes"):
            hc[key.raw] = arg_number(sub, sub.one(), minimum=1)
        elif key.raw == "uri":
            uri = sub.one()
            if not uri.text.startswith("/"):
                raise sub.invalid(uri)
            hc["uri"] = uri.text
        elif key.raw == "status":
            codes = []
            for arg in sub.args():
                code = arg_number(sub, arg)
                if not 100 <= code <= 599:
                    raise sub.invalid(arg)
                codes.append(code)
            hc["status"] = tuple(codes)
        else:
            raise val.error(
                f'invalid parameter "{key.raw}" in "health_check", expected one of '
                + ", ".join(_HEALTH_KEYS),
                key.line,
            )
    return {"health_check": HealthCheck(**hc)}


def finish_upstream(name: str, fields: Fields, val: Val, http_dns: Fields | None = None) -> Upstream:
    """Check the block as a whole (servers present, backup allowed, run-time resolving possible)
    and build it. `http_dns` holds the http level's `resolver` and `resolver_timeout`, if set."""
    backup_line = fields.pop("_backup_line", None)
    if "servers" not in fields or not fields["servers"]:
        raise val.error("no servers are inside upstream")
    all_servers: tuple[UpstreamServer, ...] = fields["servers"]
    dynamic = tuple(s for s in all_servers if s.resolve and s.address is None and s.unix is None)
    if dynamic:
        if not fields.get("zone"):
            raise val.error(f'resolving names at run time requires upstream "{name}" to be in shared memory')
        http_dns = http_dns or {}
        if fields.get("resolver") is None:
            if http_dns.get("resolver") is None:
                raise val.error(f'no resolver defined to resolve names at run time in upstream "{name}"')
            fields["resolver"] = http_dns["resolver"]
            if "resolver_timeout" in http_dns and "resolver_timeout" not in fields:
                fields["resolver_timeout"] = http_dns["resolver_timeout"]
        fields["servers"] = tuple(s for s in all_servers if s not in dynamic)
        fields["resolvable"] = dynamic
    balancer = fields.get("balancer", "round_robin")
    if backup_line is not None and balancer in _NO_BACKUP:
        assert isinstance(backup_line, int)
        raise val.error('invalid parameter "backup"', backup_line)
    return Upstream(name=name, pos=val.pos, **fields)


# ---------------------------------------------------------------------------------------------------------
# proxy_pass


def p_proxy_pass(val: Val, env: Env) -> Fields:
    arg = val.one()
    return {"proxy_pass": replace(_proxy_pass(val, env, arg), url=arg.text)}


def _proxy_pass(val: Val, env: Env, arg: Arg) -> ProxyPass:
    text = arg.text
    has_vars = "$" in text
    scheme = "https" if text.startswith("https://") else "http"
    default_port = 443 if scheme == "https" else 80
    if not text.startswith(("http://", "https://")):
        if has_vars and text.startswith("$"):
            # the whole URL is a variable: nothing to check until a request supplies it
            return ProxyPass(scheme="http", host=text, port=None, uri=None, has_variables=True)
        raise val.error(f'invalid URL prefix in "{text}"', arg.line)
    rest = text[len(scheme) + 3 :]
    loc = env.location

    def check_uri(uri: str | None) -> None:
        if uri is not None and loc is not None and loc.modifier in ("~", "~*", "@") and not has_vars:
            raise val.error(
                '"proxy_pass" cannot have URI part in location given by regular expression, or inside '
                'named location, or inside "if" statement, or inside "limit_except" block',
                arg.line,
            )

    if rest.startswith("unix:"):
        path, sep, uri_part = rest[5:].partition(":")
        if not path:
            raise val.error(f'no path in the unix domain socket "{text}"', arg.line)
        uri = uri_part if sep else None
        check_uri(uri)
        path = env.path(path)
        key = f"unix:{path}"
        if key not in env.upstreams and not has_vars:
            server = UpstreamServer(host=key, port=0, address=None, unix=path)
            env.upstreams[key] = Upstream(name=key, servers=(server,), implicit=True, pos=val.pos)
        return ProxyPass(
            scheme=scheme,
            host="unix:" + path,
            port=None,
            uri=uri,
            upstream=None if has_vars else key,
            unix=path,
            has_variables=has_vars,
        )

    slash = rest.find("/")
    hostport, uri = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
    if not hostport:
        raise val.error(f'no host in "{text}"', arg.line)
    check_uri(uri)
    if has_vars:
        return ProxyPass(scheme=scheme, host=hostport, port=None, uri=uri, has_variables=True)
    try:
        host, port, explicit_port = _host_port(hostport, default_port)
    except ValueError as exc:
        raise val.error(f'invalid port in upstream "{hostport}"', arg.line) from exc
    assert port is not None
    block = env.upstreams.get(host)
    if block is not None and not block.implicit:
        if explicit_port:
            raise val.error(f'upstream "{host}" may not have port {port}', arg.line)
        return ProxyPass(scheme=scheme, host=host, port=None, uri=uri, upstream=host)
    key = _addr_text(host, port)
    if key not in env.upstreams:
        try:
            found = resolve.addresses(host, port)
        except OSError as exc:
            raise val.error(f'host not found in upstream "{hostport}"', arg.line) from exc
        servers = tuple(UpstreamServer(host=host, port=port, address=a) for a in found)
        env.upstreams[key] = Upstream(name=key, servers=servers, implicit=True, pos=val.pos)
    return ProxyPass(scheme=scheme, host=host, port=port, uri=uri, upstream=key)
