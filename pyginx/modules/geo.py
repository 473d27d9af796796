"""The geo module (ngx_http_geo_module): variables by client address.

    geo:
      "$geo": {default: world, "127.0.0.0/8": local, "10.0.0.0/8": lan, "::1": local,
               delete: 10.1.0.0/16, proxy: [192.168.0.0/16], proxy_recursive: true}
      "$arg_ip $zone": {ranges: true, "10.0.0.0-10.0.255.255": a, default: none}

The address is the client's (`geo $var`) or a variable's value (`geo $src $var`); an address that is
not one (or a unix socket) is looked up as 255.255.255.255, as nginx does. With `proxy` networks, a
client in one of them is replaced by the last address of X-Forwarded-For (`proxy_recursive`: the
last one not in them). CIDR mode picks the longest matching network (IPv4 and IPv6; IPv4-mapped IPv6
addresses are looked up as IPv4); `ranges` mode takes IPv4 ranges `a.b.c.d-e.f.g.h`, where a range
inside another one overrides that part of it and any other overlap is nginx's error. `delete` removes
a network (or an exact range) added before it. Values are plain strings, as in nginx.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyginx.config import varblocks
from pyginx.config.parsers import Fields
from pyginx.config.values import Env, Val
from pyginx.errors import ConfigError
from pyginx.module import Getter, Module, ModuleDirective

if TYPE_CHECKING:
    from pyginx.http.request import Request

INADDR_NONE = 0xFFFFFFFF
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CidrTable:
    """Longest-prefix match: per family, prefix length -> {network address as int: value}."""

    v4: tuple[tuple[int, dict[int, str]], ...]  # longest prefixes first
    v6: tuple[tuple[int, dict[int, str]], ...]

    def find(self, addr: int, v6: bool) -> str:
        bits = 128 if v6 else 32
        for plen, nets in self.v6 if v6 else self.v4:
            found = nets.get(addr >> (bits - plen) << (bits - plen) if plen else 0)
            if found is not None:
                return found
        return ""


@dataclass(frozen=True)
class RangeTable:
    """nginx's ranges, per /16 block as nginx keeps them: high 16 bits -> sorted (start, end, value)
    of the low 16 bits."""

    blocks: dict[int, tuple[tuple[int, int, str], ...]]
    default: str

    def find(self, addr: int) -> str:
        ranges = self.blocks.get(addr >> 16)
        if ranges:
            low = addr & 0xFFFF
            i = bisect.bisect_right(ranges, (low, 0x10000, "")) - 1
            if i >= 0 and ranges[i][0] <= low <= ranges[i][1]:
                return ranges[i][2]
        return self.default


@dataclass(frozen=True)
class GeoDef:
    source: str | None  # a template, or None for the client's address
    name: str
    table: CidrTable | RangeTable
    proxies: tuple[Network, ...]
    proxy_recursive: bool
    volatile: bool
    line: int

    def lookup(self, address: str, forwarded: str | None) -> str:
        """The value for an address as text (and the X-Forwarded-For header, if any)."""
        ip = parse_addr(address)
        if ip is not None and forwarded is not None and self.proxies:
            ip = forwarded_addr(ip, forwarded, self.proxies, self.proxy_recursive)
        table = self.table
        if ip is not None and ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if isinstance(table, RangeTable):
            return table.find(int(ip) if ip is not None and ip.version == 4 else INADDR_NONE)
        if ip is None:
            return table.find(INADDR_NONE, False)
        return table.find(int(ip), ip.version == 6)


@dataclass(frozen=True)
class GeoConf:
    geos: tuple[GeoDef, ...] = ()


def parse_addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """ngx_parse_addr: an IPv4 or IPv6 address, nothing else."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_addr_port(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """ngx_parse_addr_port: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`)."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return parse_addr(host)
    found = parse_addr(text)
    if found is None and text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isdigit():
            found = parse_addr(host)
    return found


def forwarded_addr(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, xff: str, proxies: tuple[Network, ...], recursive: bool
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """ngx_http_get_forwarded_addr: a trusted client is replaced by the last X-Forwarded-For
    address; recursively, while that one is trusted too, by the one before it."""
    items = [p.strip() for p in xff.split(",")]
    while items and not items[-1]:
        items.pop()
    while items and _trusted(ip, proxies):
        got = _parse_addr_port(items.pop())
        if got is None:
            return ip
        ip = got
        if not recursive:
            break
        while items and not items[-1]:
            items.pop()
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: tuple[Network, ...]) -> bool:
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in proxies)


# ---------------------------------------------------------------------------------------------------
# parsing


def parse_cidr(text: str, val: Val, line: int) -> Network:
    """ngx_ptocidr: an address or address/bits; extra low bits are dropped (nginx warns)."""
    if text == "255.255.255.255":
        return ipaddress.IPv4Network("255.255.255.255/32")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f'invalid network "{text}"', val.file, line) from None


def _p_geo(val: Val, env: Env) -> Fields:
    geos: list[GeoDef] = []
    for block in varblocks.read_blocks(val, env, (1, 2)):
        source: str | None = None
        if len(block.args) == 2:
            source = block.args[0]
            varblocks.variable_name(source, val, block.line)
            env.use_vars(source, block.line)
        name = varblocks.variable_name(block.args[-1], val, block.line)
        geos.append(_read_geo(block, source, name, val))
        varblocks.define(name, val, env, block.line)
    return {"geos": tuple(geos)}


def _read_geo(block: varblocks.Block, source: str | None, name: str, val: Val) -> GeoDef:
    ranges = proxy_recursive = volatile = False
    proxies: list[Network] = []
    nets: dict[Network, str] = {}  # CIDR mode, in insertion order
    blocks: dict[int, list[tuple[int, int, str]]] = {}  # ranges mode
    default: str | None = None
    cidr_seen = False
    for entry in block.entries:
        key, line = entry.key, entry.line
        if key in ("ranges", "proxy_recursive", "volatile") and entry.flag is not None:
            on = varblocks.flag_entry(entry, val)
            if key == "ranges":
                if cidr_seen:
                    raise ConfigError(
                        'the "ranges" directive must be the first directive inside "geo" block',
                        val.file,
                        line,
                    )
                ranges = on
            elif key == "proxy_recursive":
                proxy_recursive = on
            else:
                volatile = on
            continue
        if not entry.values:
            raise ConfigError("invalid number of the geo parameters", val.file, line)
        if key == "proxy":
            proxies.extend(parse_cidr(v, val, line) for v in entry.values)
            continue
        if key == "include":
            raise ConfigError('"include" inside "geo" is not supported', val.file, line)
        if key != "delete" and len(entry.values) != 1:
            raise ConfigError("invalid number of the geo parameters", val.file, line)
        if ranges:
            if key == "default":
                default = entry.values[0]
            elif key == "delete":
                for text in entry.values:
                    _delete_range(blocks, _parse_range(text, val, line))
            else:
                _add_range(blocks, _parse_range(key, val, line), entry.values[0], key, val, line)
            continue
        cidr_seen = True
        if key == "default":
            nets[ipaddress.IPv4Network("0.0.0.0/0")] = entry.values[0]
            nets[ipaddress.IPv6Network("::/0")] = entry.values[0]
        elif key == "delete":
            for text in entry.values:
                nets.pop(parse_cidr(text, val, line), None)  # nginx warns when there is none
        else:
            nets[parse_cidr(key, val, line)] = entry.values[0]  # a duplicate replaces (nginx warns)
    table: CidrTable | RangeTable
    if ranges:
        table = RangeTable({h: tuple(r) for h, r in blocks.items() if r}, default or "")
    else:
        table = _cidr_table(nets)
    return GeoDef(source, name, table, tuple(proxies), proxy_recursive, volatile, block.line)


def _cidr_table(nets: dict[Network, str]) -> CidrTable:
    v4: dict[int, dict[int, str]] = {}
    v6: dict[int, dict[int, str]] = {}
    for net, value in nets.items():
        by_len = v6 if net.version == 6 else v4
        by_len.setdefault(net.prefixlen, {})[int(net.network_address)] = value
    return CidrTable(
        tuple(sorted(v4.items(), reverse=True)),
        tuple(sorted(v6.items(), reverse=True)),
    )


def _parse_range(text: str, val: Val, line: int) -> tuple[int, int]:
    start_text, sep, end_text = text.partition("-")
    try:
        if not sep:
            raise ValueError(text)
        start = int(ipaddress.IPv4Address(start_text))
        end = int(ipaddress.IPv4Address(end_text))
    except ValueError:
        raise ConfigError(f'invalid range "{text}"', val.file, line) from None
    if start > end:
        raise ConfigError(f'invalid range "{text}"', val.file, line)
    return start, end


def _chunks(start: int, end: int) -> list[tuple[int, int, int]]:
    """A range cut at /16 borders: (high 16 bits, low start, low end), as nginx stores it."""
    out = []
    n = start
    while n <= end:
        s = n & 0xFFFF if n == start else 0
        e = end & 0xFFFF if (n | 0xFFFF) > end else 0xFFFF
        out.append((n >> 16, s, e))
        n = (n + 0x10000) & 0xFFFF0000
        if n == 0:
            break
    return out


def _add_range(
    blocks: dict[int, list[tuple[int, int, str]]],
    span: tuple[int, int],
    value: str,
    text: str,
    val: Val,
    line: int,
) -> None:
    """ngx_http_geo_add_range: a new range may equal (replace), or sit inside, one range of the
    same /16 block; any other overlap is an error."""
    for h, s, e in _chunks(*span):
        ranges = blocks.setdefault(h, [])
        for i, (rs, re_, rv) in enumerate(ranges):
            if e < rs or s > re_:
                continue
            if (s, e) == (rs, re_):
                ranges[i] = (s, e, value)
                break
            if rs <= s and e <= re_:
                pieces = [(rs, s - 1, rv)] if s > rs else []
                pieces.append((s, e, value))
                if e < re_:
                    pieces.append((e + 1, re_, rv))
                ranges[i : i + 1] = pieces
                break
            first = (h << 16) | rs
            last = (h << 16) | re_
            raise ConfigError(
                f'range "{text}" overlaps "{ipaddress.IPv4Address(first)}-{ipaddress.IPv4Address(last)}"',
                val.file,
                line,
            )
        else:
            bisect.insort(ranges, (s, e, value))


def _delete_range(blocks: dict[int, list[tuple[int, int, str]]], span: tuple[int, int]) -> None:
    for h, s, e in _chunks(*span):
        ranges = blocks.get(h)
        if ranges:
            blocks[h] = [r for r in ranges if (r[0], r[1]) != (s, e)]  # nginx warns when none matched


# ---------------------------------------------------------------------------------------------------
# serving


def compile_geo(g: GeoDef) -> Getter:
    from pyginx.http.variables import cached, compile_template

    source = compile_template(g.source) if g.source is not None else None
    lookup = g.lookup
    proxied = bool(g.proxies)

    def compute(req: Request) -> str:
        address = source(req) if source is not None else req.conn.client_addr
        forwarded = _forwarded_header(req) if proxied else None
        return lookup(address, forwarded)

    return cached(g.name, compute, g.volatile)


def _forwarded_header(req: Request) -> str | None:
    values = [v for k, v in req.header_list if k.lower() == "x-forwarded-for"]
    return ", ".join(values) if values else None


def _init_worker(ctx: Any) -> None:
    conf: GeoConf = ctx.config.http.settings.conf(MODULE.name)
    for g in conf.geos:
        ctx.variables[g.name] = compile_geo(g)


MODULE = Module(
    name="geo",
    conf=GeoConf,
    directives=(ModuleDirective("geo", frozenset({"http"}), _p_geo),),
    init_worker=_init_worker,
)
