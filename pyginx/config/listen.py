"""`listen` and `server_name`: what a server block answers to.

listen "8080" | "127.0.0.1:8080" | "[::1]:8080" | "*:8080" | "localhost:8080" | "unix:/path", each with
nginx's parameters default_server, reuseport, backlog=N, ipv6only=on|off. A host name is resolved at
load time and, as in nginx, listens on every address it resolves to.
"""

from __future__ import annotations

import os
import re

from pyginx.config import resolve
from pyginx.config.model import ListenAddr, SourcePos
from pyginx.config.parsers import Fields
from pyginx.config.units import compile_regex
from pyginx.config.values import Arg, Env, Val
from pyginx.config.yamlload import YScalar

_NO_QUIC = ("quic", "http3")
_IGNORED = ("bind", "deferred")  # pyginx binds each address it is given; no TCP_DEFER_ACCEPT knob


def default_listen(pos: SourcePos | None) -> ListenAddr:
    """nginx's default for a server without `listen`: *:80 as root, *:8000 otherwise."""
    port = 80 if os.geteuid() == 0 else 8000
    return ListenAddr(host="0.0.0.0", port=port, pos=pos)


def _port(val: Val, arg: Arg, text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise val.error(f'invalid port in "{arg.text}" of the "listen" directive', arg.line)
    return int(text)


def _split_address(val: Val, arg: Arg) -> tuple[str, int]:
    """ "8080" -> ("*", 8080), "[::1]:81" -> ("::1", 81), "host" -> ("host", 80)."""
    text = arg.text
    if text.startswith("["):
        m = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", text)
        if m is None:
            raise val.error(f'invalid host in "{text}" of the "listen" directive', arg.line)
        return m.group(1), _port(val, arg, m.group(2)) if m.group(2) is not None else 80
    if text.isascii() and text.isdigit():
        return "*", _port(val, arg, text)
    if text.count(":") > 1:
        raise val.error(
            f'invalid host in "{text}" of the "listen" directive, IPv6 addresses are written in brackets',
            arg.line,
        )
    host, sep, port = text.partition(":")
    if not host:
        raise val.error(f'no host in "{text}" of the "listen" directive', arg.line)
    return host, _port(val, arg, port) if sep else 80


def _params(val: Val, args: list[Arg]) -> Fields:
    opts: Fields = {}
    for arg in args:
        name, eq, value = arg.text.partition("=")
        if name in ("default_server", "default") and not eq:
            opts["default_server"] = True
        elif name == "reuseport" and not eq:
            opts["reuseport"] = True
        elif name == "proxy_protocol" and not eq:
            opts["proxy_protocol"] = True
        elif name == "backlog" and eq:
            if not value.lstrip("-").isdigit() or int(value) == 0:
                raise val.error(f'invalid backlog "{value}"', arg.line)
            opts["backlog"] = int(value)
        elif name == "ipv6only" and eq:
            if value not in ("on", "off"):
                raise val.error(f'invalid ipv6only flags "{value}"', arg.line)
            opts["ipv6only"] = value == "on"
        elif name in ("ssl", "http2") and not eq:
            opts[name] = True
        elif name in _NO_QUIC:
            raise val.error(
                f'the "{name}" parameter of the "listen" directive is not supported: pyginx has no QUIC',
                arg.line,
            )
        elif name in _IGNORED and not eq:
            pass
        else:
            raise val.error(f'invalid parameter "{arg.text}"', arg.line)
    return opts


def parse_listen_entry(val: Val, env: Env) -> list[ListenAddr]:
    args = val.args()
    addr = args[0]
    opts = _params(val, args[1:])
    pos = SourcePos(val.file, addr.line)
    backlog = opts.get("backlog", 511)
    assert isinstance(backlog, int)
    common: Fields = {
        "default_server": bool(opts.get("default_server", False)),
        "reuseport": bool(opts.get("reuseport", False)),
        "backlog": backlog,
        "ipv6only": bool(opts.get("ipv6only", True)),
        "proxy_protocol": bool(opts.get("proxy_protocol", False)),
        "pos": pos,
        "ssl": bool(opts.get("ssl", False)),
        "http2": bool(opts.get("http2", False)),
    }
    if addr.text.startswith("unix:"):
        path = addr.text[5:]
        if not path:
            raise val.error(f'no path in the unix domain socket "{addr.text}"', addr.line)
        if opts.get("reuseport"):
            raise val.error('"reuseport" is not supported on unix domain sockets', addr.line)
        return [ListenAddr(host="", port=0, unix=env.path(path), **common)]
    host, port = _split_address(val, addr)
    if host == "*":
        return [ListenAddr(host="0.0.0.0", port=port, **common)]
    try:
        found = resolve.addresses(host, port)
    except OSError as exc:
        raise val.error(f'host not found in "{addr.text}" of the "listen" directive', addr.line) from exc
    return [ListenAddr(host=h, port=p, **common) for h, p in found]


def p_listen(val: Val, env: Env) -> Fields:
    out: list[ListenAddr] = []
    for entry in val.entries():
        for la in parse_listen_entry(entry, env):
            if any(o.key == la.key for o in out):
                raise val.error(f"a duplicate listen {la}", entry.line)
            out.append(la)
    return {"listen": tuple(out)}


def p_server_name(val: Val, env: Env) -> Fields:
    """Names lower-cased as nginx keeps them; `~regex` names compiled now to report errors by line."""
    names: list[str] = []
    if isinstance(val.node, YScalar) and val.node.value == "":
        return {"server_names": ("",)}  # `server_name ""`: the catch-all for requests without Host
    for arg in val.args():
        name = arg.text
        if name.startswith("~"):
            try:
                compile_regex(name[1:], ignore_case=True)
            except re.error as exc:
                raise val.error(
                    f'invalid regex "{name[1:]}" in "server_name" directive: {exc}', arg.line
                ) from exc
            names.append(name)
            continue
        name = name.lower()
        if name == "*" or ("*" in name and not (name.startswith("*.") or name.endswith(".*"))):
            raise val.error(f'invalid server name or wildcard "{arg.text}"', arg.line)
        names.append(name)
    return {"server_names": tuple(names)}
