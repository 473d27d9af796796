"""The frozen configuration model: what the loader produces and the runtime reads.

This module is the contract between pyginx/config (which parses, validates, defaults and merges) and
everything else (which only reads). It holds plain data: no I/O, no runtime imports.

Inheritance is already applied when the runtime sees the model: every `Location` carries a complete
`HttpSettings` (http -> server -> location merged as nginx merges), so handlers never walk up a tree.
Times are float seconds, sizes are int bytes. `None` means "not set / off" where nginx has no default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

# ---------------------------------------------------------------------------------------------------------
# small value types


@dataclass(frozen=True)
class SourcePos:
    """Where a directive was written, for error messages: `in conf/pyginx.yaml:12`."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class ListenAddr:
    """One `listen` entry. `unix` is set for unix sockets (then host/port are unused)."""

    host: str  # "0.0.0.0", "127.0.0.1", "::1" ... ("" never: "*" becomes 0.0.0.0)
    port: int
    unix: str | None = None  # absolute path of a unix socket
    default_server: bool = False
    reuseport: bool = False
    backlog: int = 511
    ipv6only: bool = True
    pos: SourcePos | None = None
    ssl: bool = False  # `listen ... ssl`: TLS on this socket (any server saying so makes it TLS)
    http2: bool = False  # `listen ... http2` (deprecated in nginx; the server's `http2: true` is the way)
    proxy_protocol: bool = False  # a PROXY protocol header (v1/v2) precedes HTTP on this listen

    @property
    def key(self) -> tuple[str, int, str | None]:
        """Identity of the socket: the same key on reload means the same listening socket."""
        return (self.host, self.port, self.unix)

    def __str__(self) -> str:
        if self.unix is not None:
            return f"unix:{self.unix}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class AccessLog:
    """One `access_log` entry (nginx allows several per level). path None = `off`."""

    path: str | None  # absolute path, or None for `off`
    format_name: str = "combined"
    buffer_size: int = 0  # 0 = unbuffered (nginx writes per request then; pyginx still batches per tick)
    flush: float | None = None  # seconds; None = only when the buffer fills (and at reopen/exit)
    pos: SourcePos | None = None


@dataclass(frozen=True)
class TlsFile:
    """A file named by an ssl_* directive, with where it was named (for -t and load errors)."""

    path: str  # absolute
    pos: SourcePos | None = None


@dataclass(frozen=True)
class ErrorLog:
    path: str | None  # absolute path, or None for stderr
    level: str = "error"  # emerg alert crit error warn notice info debug


@dataclass(frozen=True)
class OpenFileCache:
    max: int = 0  # 0 = off
    inactive: float = 60.0


@dataclass(frozen=True)
class Expires:
    """`expires`: kind "off" | "epoch" | "max" | "time" (seconds may be negative: no-cache)."""

    kind: Literal["off", "epoch", "max", "time"] = "off"
    seconds: float = 0.0
    modified: bool = False  # `expires modified 1h` (relative to mtime)


@dataclass(frozen=True)
class HeaderValue:
    """A header value that may contain nginx variables ($host, ...), compiled at load time."""

    name: str
    value: str  # the raw template, e.g. "$host:$server_port"
    always: bool = False  # add_header ... always


@dataclass(frozen=True)
class TryFiles:
    """`try_files file ... uri|=code`: the last item is a URI, @named, or =code."""

    files: tuple[str, ...]  # templates with variables, "$uri", "$uri/", "/x.html"
    fallback: str  # "/index.php?$args" or "@named" or "=404" (kept raw; code parsed below)
    fallback_code: int | None = None  # set when fallback is "=code"


@dataclass(frozen=True)
class Return:
    """`return code [text|URL]` or `return URL` (302)."""

    code: int
    text: str | None = None  # template with variables; for 301/302/303/307/308 it is the Location


@dataclass(frozen=True)
class Resolver:
    """`resolver ADDRESS ... [valid=TIME] [ipv4=on|off] [ipv6=on|off]` (nginx's resolver)."""

    addresses: tuple[tuple[str, int], ...]  # name servers, tried in turn
    valid: float | None = None  # caps the answers' TTLs (None: the TTLs alone)
    ipv4: bool = True
    ipv6: bool = True


@dataclass(frozen=True)
class ProxyPass:
    """`proxy_pass http://host:port/uri`, `http://upstream_name`, `http://unix:/path:/uri`."""

    scheme: str  # "http" or "https"
    host: str  # host part as written (name of an upstream, or a host); used for $proxy_host
    port: int | None  # None when the host names an upstream block or a unix socket
    uri: str | None  # the URI part ("/" counts); None when absent -> pass the client's URI unchanged
    upstream: str | None = None  # name of the `upstreams` block this resolves to (explicit or implicit)
    unix: str | None = None
    has_variables: bool = False  # proxy_pass with $variables: resolved per request
    url: str = ""  # the argument as written; with has_variables the proxy expands and parses this per request

    @property
    def proxy_host(self) -> str:
        """nginx's $proxy_host: host[:port], the port omitted when it is 80."""
        if self.unix is not None:
            return "localhost"
        if self.port is None or self.port == (443 if self.scheme == "https" else 80):
            return self.host
        return f"{self.host}:{self.port}"


NEXT_UPSTREAM_FLAGS = (
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
    "non_idempotent",
    "off",
)


@dataclass(frozen=True)
class ProxyRedirect:
    """`proxy_redirect default | off | FROM TO`. rules empty + default True = nginx's default."""

    default: bool = True
    off: bool = False
    rules: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CachePath:
    """`proxy_cache_path PATH levels= keys_zone=NAME:SIZE ...` (http). Times in seconds, sizes in bytes."""

    path: str  # absolute, no trailing slash
    zone: str
    zone_size: int
    levels: tuple[int, ...] = ()  # e.g. (1, 2)
    inactive: float = 600.0
    max_size: int | None = None  # None = unlimited
    min_free: int = 0
    use_temp_path: bool = True
    manager_files: int = 100
    manager_sleep: float = 0.05
    manager_threshold: float = 0.2
    loader_files: int = 100
    loader_sleep: float = 0.05
    loader_threshold: float = 0.2
    pos: SourcePos | None = None


@dataclass(frozen=True)
class CacheRef:
    """`proxy_cache NAME`, with where it was written (the zone must be declared by proxy_cache_path)."""

    zone: str
    pos: SourcePos | None = None


# ---------------------------------------------------------------------------------------------------------
# settings merged down http -> server -> location


@dataclass(frozen=True)
class HttpSettings:
    """Every directive that nginx allows in http and/or server and/or location, after merging.

    Defaults are nginx's. The loader builds one for http, merges it into each server, and each server's
    into each of its locations, following nginx's merge rules (most: inner wins if set; add_header,
    proxy_set_header, error_page: inner list replaces outer only when the inner level sets any).
    """

    # files and types
    root: str = "html"  # absolute after loading (prefix + "html" by default, as nginx)
    alias: str | None = None  # location only; absolute
    index: tuple[str, ...] = ("index.html",)
    try_files: TryFiles | None = None
    default_type: str = "text/plain"  # nginx's built-in default; the shipped conf sets octet-stream
    types: tuple[tuple[str, str], ...] = ()  # extra (extension, mime) pairs from `types`, lower-case ext
    autoindex: bool = False
    autoindex_format: Literal["html", "json", "xml", "jsonp"] = "html"
    autoindex_exact_size: bool = True
    autoindex_localtime: bool = False
    gzip_static: Literal["off", "on", "always"] = "off"
    gzip_vary: bool = False
    etag: bool = True
    expires: Expires = Expires()
    add_header: tuple[HeaderValue, ...] = ()
    max_ranges: int | None = None  # None = unlimited; 0 disables ranges
    if_modified_since: Literal["off", "exact", "before"] = "exact"
    disable_symlinks: Literal["off", "on", "if_not_owner"] = "off"
    disable_symlinks_from: str | None = None  # `from=` part
    symlinks_outside_root: bool = False  # pyginx extension: False refuses (403) symlinks escaping root
    log_not_found: bool = True
    internal: bool = False  # location only
    open_file_cache: OpenFileCache = OpenFileCache()
    open_file_cache_valid: float = 60.0
    open_file_cache_min_uses: int = 1
    open_file_cache_errors: bool = False
    sendfile: bool = False  # nginx default off; the shipped conf turns it on
    tcp_nodelay: bool = True
    tcp_nopush: bool = False
    sendfile_max_chunk: int = 2 * 1024 * 1024

    # responses and redirects
    error_page: tuple[tuple[int, str, int | None], ...] = ()  # (code, uri, override code from "=NNN")
    recursive_error_pages: bool = False
    server_tokens: bool = True
    absolute_redirect: bool = True
    server_name_in_redirect: bool = False
    port_in_redirect: bool = True
    chunked_transfer_encoding: bool = True
    msie_padding: bool = True

    # connections and limits
    keepalive_timeout: float = 75.0  # 0 disables keep-alive
    keepalive_header_timeout: float | None = None  # second arg of keepalive_timeout -> Keep-Alive: timeout=
    keepalive_requests: int = 1000
    keepalive_time: float = 3600.0
    client_header_timeout: float = 60.0  # http/server
    client_body_timeout: float = 60.0
    send_timeout: float = 60.0
    client_max_body_size: int = 1024 * 1024  # 0 = unlimited
    client_body_buffer_size: int = 16 * 1024
    client_header_buffer_size: int = 1024  # http/server
    large_client_header_buffers: tuple[int, int] = (4, 8 * 1024)  # (number, size); http/server
    merge_slashes: bool = True  # http/server
    underscores_in_headers: bool = False  # http/server
    ignore_invalid_headers: bool = True  # http/server
    lingering_close: Literal["off", "on", "always"] = "on"
    lingering_time: float = 30.0
    lingering_timeout: float = 5.0
    reset_timedout_connection: bool = False

    # logging
    access_log: tuple[AccessLog, ...] = (AccessLog(path=None),)  # replaced by the loader's default
    error_log: ErrorLog | None = None  # None = inherit the main error_log
    log_subrequest: bool = False

    # proxy
    proxy_pass: ProxyPass | None = None  # location only (and `if`, which pyginx has not)
    proxy_set_header: tuple[HeaderValue, ...] = ()  # as written; the proxy adds Host/Connection defaults
    proxy_hide_header: tuple[str, ...] = ()  # lower-case
    proxy_pass_header: tuple[str, ...] = ()  # lower-case
    proxy_pass_request_headers: bool = True
    proxy_pass_request_body: bool = True
    proxy_redirect: ProxyRedirect = ProxyRedirect()
    proxy_http_version: str = "1.1"  # nginx >= 1.29.7 default
    proxy_connect_timeout: float = 60.0
    proxy_send_timeout: float = 60.0
    proxy_read_timeout: float = 60.0
    proxy_next_upstream: tuple[str, ...] = ("error", "timeout")
    proxy_next_upstream_tries: int = 0  # 0 = unlimited
    proxy_next_upstream_timeout: float = 0.0  # 0 = unlimited
    proxy_buffering: bool = True
    proxy_request_buffering: bool = True
    proxy_buffer_size: int = 4096  # also the limit of the upstream response header (over -> 502)
    proxy_buffers: tuple[int, int] = (8, 4096)
    proxy_busy_buffers_size: int = 8192
    proxy_max_temp_file_size: int = 1024 * 1024 * 1024
    proxy_intercept_errors: bool = False
    proxy_ignore_client_abort: bool = False
    proxy_set_body: str | None = None

    # scale-out (issue 16): DNS at run time
    resolver: Resolver | None = None  # `resolver` (http/server/location)
    resolver_timeout: float = 30.0

    # the confs of the modules under pyginx/modules/, by module name (see pyginx/module.py): each
    # a frozen dataclass merged down the levels like the fields above
    modules: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def conf(self, module: str) -> Any:
        """The conf of module `module` at this level (its defaults when the settings were built
        in code rather than by the loader)."""
        found = self.modules.get(module)
        if found is None:
            from pyginx.config.merge import default_modules  # the registry imports this module

            found = default_modules()[module]
        return found

    # ---- TLS and HTTP/2 (issue 13); ssl_* and http2* are read at the server level, proxy_ssl_* per location
    ssl_certificate: tuple[TlsFile, ...] = ()  # several: an RSA and an ECDSA pair side by side
    ssl_certificate_key: tuple[TlsFile, ...] = ()
    ssl_password_file: TlsFile | None = None
    ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ssl_ciphers: str = "HIGH:!aNULL:!MD5"
    ssl_prefer_server_ciphers: bool = False
    ssl_ecdh_curve: str = "auto"
    ssl_session_cache: str = "none"  # as written; OpenSSL's per-context cache, tickets across workers
    ssl_session_timeout: float = 300.0
    ssl_session_tickets: bool = True
    ssl_verify_client: Literal["off", "on", "optional", "optional_no_ca"] = "off"
    ssl_client_certificate: TlsFile | None = None
    ssl_verify_depth: int = 1
    ssl_handshake_timeout: float | None = None  # pyginx extension; None = client_header_timeout
    http2: bool = False
    http2_max_concurrent_streams: int = 128
    http2_recv_buffer_size: int = 256 * 1024
    http2_body_preread_size: int = 64 * 1024
    proxy_ssl_verify: bool = False
    proxy_ssl_trusted_certificate: TlsFile | None = None
    proxy_ssl_verify_depth: int = 1
    proxy_ssl_server_name: bool = False
    proxy_ssl_name: str = "$proxy_host"
    proxy_ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    proxy_ssl_ciphers: str = "DEFAULT"
    proxy_ssl_certificate: TlsFile | None = None
    proxy_ssl_certificate_key: TlsFile | None = None
    proxy_ssl_password_file: TlsFile | None = None
    proxy_ssl_session_reuse: bool = True
    # proxy cache (pyginx/config/cache.py; the runtime is pyginx/cache and handlers/proxy_cache.py)
    proxy_cache: CacheRef | None = None  # None = off
    proxy_cache_key: str = "$scheme$proxy_host$request_uri"
    proxy_cache_valid: tuple[tuple[int, float], ...] = ()  # (status, seconds); status 0 = any
    proxy_cache_methods: tuple[str, ...] = ("GET", "HEAD")  # GET and HEAD always (nginx)
    proxy_cache_min_uses: int = 1
    proxy_cache_bypass: tuple[str, ...] = ()  # templates: any non-empty and not "0" bypasses
    proxy_no_cache: tuple[str, ...] = ()
    proxy_cache_use_stale: tuple[str, ...] = ("off",)
    proxy_cache_background_update: bool = False
    proxy_cache_lock: bool = False
    proxy_cache_lock_timeout: float = 5.0
    proxy_cache_lock_age: float = 5.0
    proxy_cache_revalidate: bool = False
    proxy_cache_convert_head: bool = True
    proxy_ignore_headers: tuple[str, ...] = ()  # lower-case names


# ---------------------------------------------------------------------------------------------------------
# blocks

LocationModifier = Literal["", "=", "^~", "~", "~*", "@"]


@dataclass(frozen=True)
class Location:
    modifier: LocationModifier  # "" = plain prefix
    match: str  # the prefix, exact URI, regex source, or name (without @)
    settings: HttpSettings
    pos: SourcePos | None = None
    regex: re.Pattern[str] | None = None  # compiled for ~ and ~* (case-insensitive for ~*)
    locations: tuple[Location, ...] = ()  # nested locations (nginx allows them); matched as nginx

    @property
    def name(self) -> str:
        """As nginx prints it: `= /exact`, `^~ /static/`, `~ \\.php$`, `@named`, `/`."""
        if self.modifier == "@":
            return "@" + self.match
        return f"{self.modifier} {self.match}" if self.modifier else self.match


@dataclass(frozen=True)
class Server:
    listen: tuple[ListenAddr, ...]  # default: 0.0.0.0:80 as root, 0.0.0.0:8000 otherwise (nginx's rule)
    server_names: tuple[str, ...]  # as written, lower-cased; "" allowed; "~regex" entries
    settings: HttpSettings  # the server level, merged from http; used when no location matches
    locations: tuple[Location, ...]  # in file order
    pos: SourcePos | None = None

    @property
    def primary_name(self) -> str:
        """nginx's $server_name: the first name of the server block."""
        return self.server_names[0] if self.server_names else ""


@dataclass(frozen=True)
class HealthCheck:
    """pyginx extension: active health checks for an upstream block."""

    interval: float = 5.0
    uri: str = "/"
    status: tuple[int, ...] = ()  # empty = any 2xx or 3xx
    fails: int = 1
    passes: int = 1
    timeout: float = 1.0


@dataclass(frozen=True)
class UpstreamServer:
    host: str  # as written (for $upstream_addr and logs, nginx prints the resolved address)
    port: int
    address: tuple[str, int] | None  # resolved at load time; None for unix
    unix: str | None = None
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    backup: bool = False
    down: bool = False
    max_conns: int = 0  # 0 = unlimited
    written: str = field(default="", compare=False)  # as written in the configuration: peer->server
    resolve: bool = False  # `resolve`: the name is (re-)resolved at run time (nginx >= 1.27.3)
    service: str | None = None  # `service=NAME`: SRV records of _NAME._tcp.HOST (with resolve)

    @property
    def name(self) -> str:
        """The resolved address as nginx logs it in $upstream_addr: `127.0.0.1:9001`, `unix:/p`."""
        if self.unix is not None:
            return f"unix:{self.unix}"
        assert self.address is not None
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Upstream:
    name: str
    servers: tuple[UpstreamServer, ...]  # one entry per resolved address of each `server`
    balancer: Literal["round_robin", "least_conn", "ip_hash", "hash", "random"] = "round_robin"
    hash_key: str | None = None  # template for `hash`
    hash_consistent: bool = False
    random_two: bool = False
    # idle connections kept per worker; none without a `keepalive` directive, as nginx 1.22 (the
    # reference installed here): each connection closes after its response (issue 12 item 3)
    keepalive: int = 0
    keepalive_timeout: float = 60.0
    keepalive_requests: int = 1000
    keepalive_time: float = 3600.0
    health_check: HealthCheck | None = None
    implicit: bool = False  # made from a `proxy_pass http://host:port` with no upstream block
    pos: SourcePos | None = None
    # scale-out (issue 16): `zone NAME [SIZE]` and servers resolved at run time
    zone: str | None = None
    zone_size: int = 0
    resolvable: tuple[UpstreamServer, ...] = ()  # `resolve` servers with a name: peers come from DNS
    resolver: Resolver | None = None  # the upstream's own `resolver`, else the http level's
    resolver_timeout: float = 30.0


@dataclass(frozen=True)
class ZoneDecl:
    """A shared-memory zone the configuration declares (keys_zone=, zone=): created by the master."""

    name: str
    size: int  # bytes
    tag: str  # the use: "proxy_cache", "limit_req", ... (one name may not serve two uses)
    pos: SourcePos | None = None


@dataclass(frozen=True)
class Http:
    settings: HttpSettings
    servers: tuple[Server, ...]
    upstreams: dict[str, Upstream]
    log_formats: dict[str, str]  # name -> template; "combined" always present
    types_hash_max_size: int = 1024
    zones: tuple[ZoneDecl, ...] = ()  # every shared zone, checked by config/zones.py
    proxy_cache_paths: tuple[CachePath, ...] = ()


@dataclass(frozen=True)
class Events:
    worker_connections: int = 512  # nginx's default; the shipped conf sets 1024
    multi_accept: bool = False
    accept_mutex: bool = False


@dataclass(frozen=True)
class MainConfig:
    """The whole configuration: main context plus events and http."""

    file: str  # absolute path of the configuration file
    prefix: str  # absolute prefix directory
    worker_processes: int = 1  # `auto` resolved to the CPU count at load time
    master_process: bool = True
    daemon: bool = False  # pyginx: foreground by default (CONFIG.md)
    pid: str = "logs/pyginx.pid"  # absolute after loading
    error_log: ErrorLog = ErrorLog(path=None, level="error")
    worker_shutdown_timeout: float | None = None  # None = wait for connections (nginx's default)
    worker_rlimit_nofile: int | None = None
    user: tuple[str, str | None] | None = None  # (user, group)
    worker_heartbeat_timeout: float = 10.0  # pyginx extension: a stuck worker is replaced
    shutdown_delay: float = 0.0  # pyginx extension: on QUIT, accept (unready) this long before closing
    events: Events = Events()
    http: Http | None = None
    source_text: str = ""  # the raw file, for -T
    extra_files: tuple[tuple[str, str], ...] = field(default=())  # (path, text) of included files, for -T
    warnings: tuple[str, ...] = ()  # nginx's [warn]-level findings (conflicting server name ...), for -t
