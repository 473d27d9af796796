"""Walk the YAML tree block by block and build the frozen model.

Order matters in three places, and this module owns it: `log_format` is read before any `access_log`
of the http level (access_log must name a known format); `upstreams` are read before `servers`
(`proxy_pass http://app` must find the block `app`); a location's match is read before its
directives (`proxy_pass` checks whether it stands in a regex or named location).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from pyginx import modules
from pyginx.config import directives, include, listen, locations, logs, merge, upstream, varcheck, zones
from pyginx.config.directives import Target
from pyginx.config.model import (
    AccessLog,
    ErrorLog,
    Events,
    Http,
    HttpSettings,
    Location,
    MainConfig,
    Server,
    SourcePos,
)
from pyginx.config.parsers import Fields
from pyginx.config.values import Context, Env, LocationHead, Val, check_duplicates
from pyginx.config.yamlload import YMap, YNode, YScalar, YSeq, load_yaml
from pyginx.errors import ConfigError

# read before the rest of their block, whatever the order in the file
_FIRST = ("log_format",)


@dataclass
class Block:
    """One block's own directives, sorted by target, and its nested blocks (not yet walked)."""

    fields: dict[Target, Fields] = field(default_factory=dict)
    blocks: dict[str, tuple[YScalar, YNode]] = field(default_factory=dict)
    modules: dict[str, Fields] = field(default_factory=dict)  # module name -> conf fields

    def of(self, target: Target) -> Fields:
        return self.fields.get(target, {})


def _as_map(node: YNode, what: str, env: Env, line: int | None = None) -> YMap:
    if isinstance(node, YMap):
        return node
    if isinstance(node, YScalar) and node.value is None:
        return YMap([], node.line)  # `events:` with nothing under it is an empty block
    raise ConfigError(f"{what} must be a mapping of directives", _src(node, env), line or node.line)


def read_block(node: YMap, context: Context, env: Env) -> Block:
    check_duplicates(node, _src(node, env), lambda k: f'"{k}" directive is duplicate')
    block = Block()
    items = sorted(node.items, key=lambda kv: kv[0].raw not in _FIRST)  # stable: file order otherwise
    for key, value in items:
        name = key.raw
        if _IF_KEY.match(name):
            name = "if"  # `if ($cond)`: the condition is in the key (CONFIG.md)
        entry = directives.lookup(name, context, _src(key, env), key.line)
        if entry.templated:
            env.use_vars(_text_of(value), key.line, _src(key, env))
        if entry.target == "module":
            assert entry.parse is not None and entry.module is not None
            got = entry.parse(Val(name, value, key.line, _src(key, env), key.raw), env)
            mod = block.modules.setdefault(entry.module, {})
            for k, v in got.items():
                mod[k] = mod[k] + v if entry.ordered and k in mod else v
            continue
        if entry.target == "block":
            block.blocks[name] = (key, value)
            continue
        if name in ("root", "alias") and context == "location":
            other = "alias" if name == "root" else "root"
            if node.get(other) is not None:
                first, second = sorted((name, other), key=lambda n: _line_of(node, n))
                second_key = node.first_key(second) or key
                raise ConfigError(
                    f'"{second}" directive is duplicate, "{first}" directive was specified earlier',
                    _src(second_key, env),
                    second_key.line,
                )
        assert entry.parse is not None
        got = entry.parse(Val(name, value, key.line, _src(key, env)), env)
        target = block.fields.setdefault(entry.target, {})
        if entry.target == "upstream" and "balancer" in got and "balancer" in target:
            raise ConfigError("load balancing method redefined", _src(key, env), key.line)
        target.update(got)
    return block


_IF_KEY = re.compile(r"if\s*\(")


def _text_of(node: YNode) -> str:
    """Every scalar under a YAML value, for the variable check."""
    if isinstance(node, YScalar):
        return node.text if node.value is not None else ""
    if isinstance(node, YSeq):
        return " ".join(_text_of(i) for i in node.items)
    if isinstance(node, YMap):
        return " ".join(_text_of(k) + " " + _text_of(v) for k, v in node.items)
    return ""


def _resolve(settings: HttpSettings, env: Env) -> HttpSettings:
    """The modules' post-merge step for one level (the rewrite module builds its `if` blocks here)."""
    for m in modules.ALL:
        if m.resolve is not None:
            settings = m.resolve(settings, env)
    return settings


def _line_of(node: YMap, name: str) -> int:
    return next(k.line for k, _ in node.items if k.raw == name)


def _src(node: YNode, env: Env) -> str:
    """The file a node was read from: an included file's directives name their own file."""
    return node.file or env.file


# ---------------------------------------------------------------------------------------------------------


def load(path: str, prefix: str) -> MainConfig:
    prefix = os.path.abspath(prefix)
    # a relative -c is relative to the prefix, as in nginx
    file = os.path.normpath(os.path.join(prefix, path))
    root, text = load_yaml(file)
    root, included = include.expand(root, file)
    env = Env(file=file, prefix=prefix, log_formats={"combined": logs.COMBINED})
    defaults: Fields = {
        "pid": env.path("logs/pyginx.pid"),
        "error_log": ErrorLog(path=env.path("logs/error.log"), level="error"),
    }
    if root is None:
        return MainConfig(file=file, prefix=prefix, source_text=text, extra_files=tuple(included), **defaults)
    main = read_block(_as_map(root, "the configuration", env), "main", env)
    events = Events()
    if "events" in main.blocks:
        key, node = main.blocks["events"]
        events = Events(**read_block(_as_map(node, '"events"', env, key.line), "events", env).of("events"))
    http: Http | None = None
    warnings: list[str] = []
    if "user" in main.of("main") and os.geteuid() != 0:
        warnings.append(
            'the "user" directive makes sense only if the master process runs with super-user '
            "privileges, ignored"
        )
    if "http" in main.blocks:
        key, node = main.blocks["http"]
        http = _http(_as_map(node, '"http"', env, key.line), env, warnings)
        varcheck.check(env)
    return MainConfig(
        file=file,
        prefix=prefix,
        events=events,
        http=http,
        source_text=text,
        extra_files=tuple(included),
        warnings=tuple(warnings),
        **{**defaults, **main.of("main")},
    )


def _http(node: YMap, env: Env, warnings: list[str]) -> Http:
    block = read_block(node, "http", env)
    if "upstreams" in block.blocks:
        _upstreams(*block.blocks["upstreams"], env, block.of("settings"))
    base = HttpSettings(
        root=env.path("html"),
        access_log=(AccessLog(path=env.path("logs/access.log"), format_name="combined"),),
    )
    settings = merge.apply(base, block.of("settings"), block.modules)
    servers: list[Server] = []
    if "servers" in block.blocks:
        key, snode = block.blocks["servers"]
        items = snode.items if isinstance(snode, YSeq) else [snode]
        if isinstance(snode, YScalar) and snode.value is None:
            items = []  # `servers:` with nothing under it
        for item in items:
            servers.append(_server(_as_map(item, "a server", env), settings, env))
    _check_servers(servers, env, warnings)
    _check_ssl_defaults(servers, env)
    http_fields = block.of("http")
    http = Http(
        settings=settings,
        servers=tuple(servers),
        upstreams=dict(env.upstreams),
        log_formats=dict(env.log_formats),
        **{k: v for k, v in http_fields.items() if k != "log_formats"},
    )
    return replace(http, zones=zones.collect(http))


def _upstreams(key: YScalar, node: YNode, env: Env, http_settings: Fields) -> None:
    ups = _as_map(node, '"upstreams"', env, key.line)
    check_duplicates(ups, _src(ups, env), lambda k: f'duplicate upstream "{k}"')
    for name_key, body in ups.items:
        name = name_key.raw
        block = read_block(_as_map(body, f'upstream "{name}"', env, name_key.line), "upstream", env)
        val = Val("upstream", body, name_key.line, _src(name_key, env))
        env.upstreams[name] = upstream.finish_upstream(name, dict(block.of("upstream")), val, http_settings)


def _server(node: YMap, http: HttpSettings, env: Env) -> Server:
    env.location = None
    block = read_block(node, "server", env)
    settings = _resolve(merge.apply(http, block.of("settings"), block.modules), env)
    pos = SourcePos(_src(node, env), node.line)
    locs: tuple[Location, ...] = ()
    if "locations" in block.blocks:
        locs = _locations(*block.blocks["locations"], settings, settings, None, env)
    own = block.of("server")
    listen_addrs = own.get("listen") or (listen.default_listen(pos),)
    names = own.get("server_names") or ("",)
    return Server(listen=listen_addrs, server_names=names, settings=settings, locations=locs, pos=pos)


def _locations(
    key: YScalar,
    node: YNode,
    parent: HttpSettings,
    server: HttpSettings,
    parent_head: LocationHead | None,
    env: Env,
) -> tuple[Location, ...]:
    if isinstance(node, YScalar) and node.value is None:
        return ()
    if not isinstance(node, YSeq):
        raise ConfigError('"locations" must be a list of location blocks', _src(key, env), key.line)
    out: list[Location] = []
    seen: set[tuple[str, str]] = set()
    for item in node.items:
        loc = _location(_as_map(item, "a location", env), parent, server, parent_head, env)
        dup = locations.duplicate_key(_head_of(loc))
        if dup is not None:
            if dup in seen:
                raise ConfigError(
                    f'duplicate location "{loc.match}"',
                    loc.pos.file if loc.pos else _src(item, env),
                    loc.pos.line if loc.pos else item.line,
                )
            seen.add(dup)
        out.append(loc)
    return tuple(out)


def _head_of(loc: Location) -> LocationHead:
    return LocationHead(loc.modifier, loc.match)


def _location(
    node: YMap, parent: HttpSettings, server: HttpSettings, parent_head: LocationHead | None, env: Env
) -> Location:
    check_duplicates(node, _src(node, env), lambda k: f'"{k}" directive is duplicate')
    match_node = node.get("location")
    if match_node is None:
        raise ConfigError('a location block needs a "location" key', _src(node, env), node.line)
    line = _line_of(node, "location")
    mval = Val("location", match_node, line, _src(match_node, env))
    head, regex = locations.parse_head(mval)
    locations.check_nesting(mval, head, parent_head)
    env.location = head
    if regex is not None:
        env.define_regex_captures(regex.pattern)
    block = read_block(node, "location", env)
    settings = _resolve(merge.apply_location(parent, server, block.of("settings"), block.modules), env)
    nested: tuple[Location, ...] = ()
    if "locations" in block.blocks:
        nested = _locations(*block.blocks["locations"], settings, server, head, env)
    env.location = parent_head
    return Location(
        modifier=head.modifier,
        match=head.match,
        settings=settings,
        pos=SourcePos(_src(match_node, env), line),
        regex=regex,
        locations=nested,
    )


def _check_servers(servers: list[Server], env: Env, warnings: list[str]) -> None:
    """Per address: one default_server and one set of socket options (errors, as in nginx); one
    server per name (a warning: nginx ignores the later one)."""
    defaults: set[tuple[str, int, str | None]] = set()
    options: set[tuple[str, int, str | None]] = set()
    names: set[tuple[tuple[str, int, str | None], str]] = set()
    for server in servers:
        for la in server.listen:
            if la.http2:
                warnings.append(
                    f'the "listen ... http2" directive is deprecated, use the "http2" directive instead '
                    f"in {la.pos}"
                )
            if la.reuseport or la.backlog != 511 or not la.ipv6only:
                # the socket is shared by every server on the address: its options are set once
                if la.key in options:
                    raise ConfigError(
                        f"duplicate listen options for {la}",
                        la.pos.file if la.pos else env.file,
                        la.pos.line if la.pos else None,
                    )
                options.add(la.key)
            if la.default_server:
                if la.key in defaults:
                    raise ConfigError(
                        f"a duplicate default server for {la}",
                        la.pos.file if la.pos else env.file,
                        la.pos.line if la.pos else None,
                    )
                defaults.add(la.key)
            for name in server.server_names:
                if (la.key, name) in names:
                    warnings.append(f'conflicting server name "{name}" on {la}, ignored')
                names.add((la.key, name))


def _check_ssl_defaults(servers: list[Server], env: Env) -> None:
    """nginx's ngx_http_ssl_init: the default server of a TLS address must have a certificate (it
    answers handshakes whose SNI names no server)."""
    ssl_keys = {la.key for s in servers for la in s.listen if la.ssl}
    seen: set[tuple[str, int, str | None]] = set()
    for pick_default in (True, False):
        for server in servers:
            for la in server.listen:
                if la.key not in ssl_keys or la.key in seen or (pick_default and not la.default_server):
                    continue
                seen.add(la.key)
                if not server.settings.ssl_certificate:
                    ssl_la = next((x for s in servers for x in s.listen if x.key == la.key and x.ssl), la)
                    raise ConfigError(
                        'no "ssl_certificate" is defined for the "listen ... ssl" directive',
                        env.file,
                        ssl_la.pos.line if ssl_la.pos else None,
                    )
                if len(server.settings.ssl_certificate) != len(server.settings.ssl_certificate_key):
                    raise ConfigError(
                        f'no "ssl_certificate_key" is defined for certificate '
                        f'"{server.settings.ssl_certificate[-1].path}"',
                        env.file,
                        server.pos.line if server.pos else None,
                    )


def dump(cfg: MainConfig) -> str:
    """`-T`: every configuration file, each headed as nginx heads it."""
    parts = [(cfg.file, cfg.source_text), *cfg.extra_files]
    out = []
    for path, text in parts:
        out.append(f"# configuration file {path}:\n{text}")
        if not text.endswith("\n"):
            out.append("\n")
    return "".join(out)
