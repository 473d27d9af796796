"""THE table of directives: name, contexts, target and value parser, declared once.

The loader looks every YAML key up here. A name absent from the table is `unknown directive`; a name
present but not for the current context is `"x" directive is not allowed here` (nginx decides the same
way: the same name may exist in several modules with different contexts, e.g. `keepalive_timeout` in
http and in upstream blocks, so a name maps to a list of entries).

target says where the parser's fields go:
  main      MainConfig        events   Events             http     Http (log formats, hash sizes)
  settings  HttpSettings      server   Server (listen, server_name)
  upstream  Upstream          block    a nested block the loader walks itself (parse is None)

pyginx extensions (not in nginx): worker_heartbeat_timeout (main), symlinks_outside_root (http/server/
location), health_check (upstream), `keepalive: off` in upstreams (nginx >= 1.29.7 keeps alive by
default), `readiness` (location), `types` as YAML mapping in either direction (mime -> extensions, or extension -> mime),
ssl_handshake_timeout in http/server (nginx has it in its stream module only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Literal

from pyginx.config import cache, dns, listen, logs, parsers, ssl, upstream
from pyginx.config.parsers import (
    Fields,
    Parser,
    arg_number,
    count_and_size,
    enum,
    flag,
    number,
    size,
    time,
    word,
    words,
)
from pyginx.config.values import Context, Env, Val
from pyginx.errors import ConfigError

Target = Literal["main", "events", "http", "settings", "server", "upstream", "block", "module"]

MAIN: frozenset[Context] = frozenset({"main"})
EVENTS: frozenset[Context] = frozenset({"events"})
HTTP: frozenset[Context] = frozenset({"http"})
SRV: frozenset[Context] = frozenset({"server"})
LOC: frozenset[Context] = frozenset({"location"})
UPS: frozenset[Context] = frozenset({"upstream"})
HTTP_SRV: frozenset[Context] = frozenset({"http", "server"})
SRV_LOC: frozenset[Context] = frozenset({"server", "location"})
HTTP_ALL: frozenset[Context] = frozenset({"http", "server", "location"})


@dataclass(frozen=True)
class Directive:
    name: str
    contexts: frozenset[Context]
    target: Target
    parse: Parser | None = None
    module: str | None = None  # target "module": the module whose conf the fields go to
    ordered: bool = False  # repeated in one block: the values accumulate in file order
    templated: bool = False  # the value may hold $variables (checked against the registry at load)


# ---------------------------------------------------------------------------------------------------------
# main-context parsers (small enough to live beside the table)


def p_worker_processes(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text == "auto":
        return {"worker_processes": os.cpu_count() or 1}
    return {"worker_processes": arg_number(val, arg, minimum=1)}


def p_pid(val: Val, env: Env) -> Fields:
    return {"pid": env.path(val.one().text)}


def p_user(val: Val, env: Env) -> Fields:
    args = val.args()
    if len(args) > 2:
        raise val.nargs()
    return {"user": (args[0].text, args[1].text if len(args) == 2 else None)}


def _d(name: str, contexts: frozenset[Context], target: Target, parse: Parser | None = None) -> Directive:
    return Directive(name, contexts, target, parse)


def _s(name: str, contexts: frozenset[Context], parse: Parser) -> Directive:
    """An HttpSettings directive."""
    return Directive(name, contexts, "settings", parse)


DIRECTIVES: tuple[Directive, ...] = (
    # ---- main
    _d("worker_processes", MAIN, "main", p_worker_processes),
    _d("master_process", MAIN, "main", flag("master_process")),
    _d("daemon", MAIN, "main", flag("daemon")),
    _d("pid", MAIN, "main", p_pid),
    _d("error_log", MAIN, "main", logs.p_error_log),
    _d("worker_shutdown_timeout", MAIN, "main", time("worker_shutdown_timeout")),
    _d("worker_rlimit_nofile", MAIN, "main", number("worker_rlimit_nofile", minimum=1)),
    _d("user", MAIN, "main", p_user),
    _d("worker_heartbeat_timeout", MAIN, "main", time("worker_heartbeat_timeout")),  # pyginx
    _d("events", MAIN, "block"),
    _d("http", MAIN, "block"),
    # ---- events
    _d("worker_connections", EVENTS, "events", number("worker_connections", minimum=1)),
    _d("multi_accept", EVENTS, "events", flag("multi_accept")),
    _d("accept_mutex", EVENTS, "events", flag("accept_mutex")),
    # ---- http blocks and http-only
    _d("servers", HTTP, "block"),
    _d("upstreams", HTTP, "block"),
    _d("locations", SRV_LOC, "block"),
    _d("location", LOC, "block"),  # the match of a location block itself
    _d("log_format", HTTP, "http", logs.p_log_format),
    _d("types_hash_max_size", HTTP, "http", number("types_hash_max_size", minimum=1)),
    # ---- server
    _d("listen", SRV, "server", listen.p_listen),
    _d("server_name", SRV, "server", listen.p_server_name),
    # ---- files and types
    _s("root", HTTP_ALL, parsers.p_root),
    _s("alias", LOC, parsers.p_alias),
    _s("index", HTTP_ALL, parsers.p_index),
    _s("try_files", SRV_LOC, parsers.p_try_files),
    _s("default_type", HTTP_ALL, word("default_type")),
    _s("types", HTTP_ALL, parsers.p_types),
    _s("autoindex", HTTP_ALL, flag("autoindex")),
    _s("autoindex_format", HTTP_ALL, enum("autoindex_format", ("html", "json", "xml", "jsonp"))),
    _s("autoindex_exact_size", HTTP_ALL, flag("autoindex_exact_size")),
    _s("autoindex_localtime", HTTP_ALL, flag("autoindex_localtime")),
    _s("gzip_static", HTTP_ALL, enum("gzip_static", ("on", "off", "always"))),
    _s("gzip_vary", HTTP_ALL, flag("gzip_vary")),
    _s("etag", HTTP_ALL, flag("etag")),
    _s("expires", HTTP_ALL, parsers.p_expires),
    _s("add_header", HTTP_ALL, parsers.p_add_header),
    _s("max_ranges", HTTP_ALL, parsers.p_max_ranges),
    _s("if_modified_since", HTTP_ALL, enum("if_modified_since", ("off", "exact", "before"))),
    _s("disable_symlinks", HTTP_ALL, parsers.p_disable_symlinks),
    _s("symlinks_outside_root", HTTP_ALL, flag("symlinks_outside_root")),  # pyginx
    _s("log_not_found", HTTP_ALL, flag("log_not_found")),
    _s("internal", LOC, flag("internal")),
    _s("open_file_cache", HTTP_ALL, parsers.p_open_file_cache),
    _s("open_file_cache_valid", HTTP_ALL, time("open_file_cache_valid", seconds_only=True)),
    _s("open_file_cache_min_uses", HTTP_ALL, number("open_file_cache_min_uses", minimum=1)),
    _s("open_file_cache_errors", HTTP_ALL, flag("open_file_cache_errors")),
    _s("sendfile", HTTP_ALL, flag("sendfile")),
    _s("tcp_nodelay", HTTP_ALL, flag("tcp_nodelay")),
    _s("tcp_nopush", HTTP_ALL, flag("tcp_nopush")),
    _s("sendfile_max_chunk", HTTP_ALL, size("sendfile_max_chunk")),
    # ---- responses and redirects
    _s("error_page", HTTP_ALL, parsers.p_error_page),
    _s("recursive_error_pages", HTTP_ALL, flag("recursive_error_pages")),
    _s("server_tokens", HTTP_ALL, parsers.p_server_tokens),
    _s("absolute_redirect", HTTP_ALL, flag("absolute_redirect")),
    _s("server_name_in_redirect", HTTP_ALL, flag("server_name_in_redirect")),
    _s("port_in_redirect", HTTP_ALL, flag("port_in_redirect")),
    _s("chunked_transfer_encoding", HTTP_ALL, flag("chunked_transfer_encoding")),
    _s("msie_padding", HTTP_ALL, flag("msie_padding")),
    # ---- connections and limits
    _s("keepalive_timeout", HTTP_ALL, parsers.p_keepalive_timeout),
    _s("keepalive_requests", HTTP_ALL, number("keepalive_requests")),
    _s("keepalive_time", HTTP_ALL, time("keepalive_time")),
    _s("client_header_timeout", HTTP_SRV, time("client_header_timeout")),
    _s("client_body_timeout", HTTP_ALL, time("client_body_timeout")),
    _s("send_timeout", HTTP_ALL, time("send_timeout")),
    _s("client_max_body_size", HTTP_ALL, size("client_max_body_size")),
    _s("client_body_buffer_size", HTTP_ALL, size("client_body_buffer_size")),
    _s("client_header_buffer_size", HTTP_SRV, size("client_header_buffer_size")),
    _s("large_client_header_buffers", HTTP_SRV, count_and_size("large_client_header_buffers")),
    _s("merge_slashes", HTTP_SRV, flag("merge_slashes")),
    _s("underscores_in_headers", HTTP_SRV, flag("underscores_in_headers")),
    _s("ignore_invalid_headers", HTTP_SRV, flag("ignore_invalid_headers")),
    _s("lingering_close", HTTP_ALL, enum("lingering_close", ("off", "on", "always"))),
    _s("lingering_time", HTTP_ALL, time("lingering_time")),
    _s("lingering_timeout", HTTP_ALL, time("lingering_timeout")),
    _s("reset_timedout_connection", HTTP_ALL, flag("reset_timedout_connection")),
    # ---- logging
    _s("access_log", HTTP_ALL, logs.p_access_log),
    _s("error_log", HTTP_ALL, logs.p_error_log),
    _s("log_subrequest", HTTP_ALL, flag("log_subrequest")),
    # ---- proxy
    _s("proxy_pass", LOC, upstream.p_proxy_pass),
    _s("proxy_set_header", HTTP_ALL, parsers.p_proxy_set_header),
    _s("proxy_hide_header", HTTP_ALL, words("proxy_hide_header", lower=True)),
    _s("proxy_pass_header", HTTP_ALL, words("proxy_pass_header", lower=True)),
    _s("proxy_pass_request_headers", HTTP_ALL, flag("proxy_pass_request_headers")),
    _s("proxy_pass_request_body", HTTP_ALL, flag("proxy_pass_request_body")),
    _s("proxy_redirect", HTTP_ALL, parsers.p_proxy_redirect),
    _s("proxy_http_version", HTTP_ALL, parsers.p_proxy_http_version),
    _s("proxy_connect_timeout", HTTP_ALL, time("proxy_connect_timeout")),
    _s("proxy_send_timeout", HTTP_ALL, time("proxy_send_timeout")),
    _s("proxy_read_timeout", HTTP_ALL, time("proxy_read_timeout")),
    _s("proxy_next_upstream", HTTP_ALL, parsers.p_proxy_next_upstream),
    _s("proxy_next_upstream_tries", HTTP_ALL, number("proxy_next_upstream_tries")),
    _s("proxy_next_upstream_timeout", HTTP_ALL, time("proxy_next_upstream_timeout")),
    _s("proxy_buffering", HTTP_ALL, flag("proxy_buffering")),
    _s("proxy_request_buffering", HTTP_ALL, flag("proxy_request_buffering")),
    _s("proxy_buffer_size", HTTP_ALL, size("proxy_buffer_size")),
    _s("proxy_buffers", HTTP_ALL, count_and_size("proxy_buffers")),
    _s("proxy_busy_buffers_size", HTTP_ALL, size("proxy_busy_buffers_size")),
    _s("proxy_max_temp_file_size", HTTP_ALL, size("proxy_max_temp_file_size")),
    _s("proxy_intercept_errors", HTTP_ALL, flag("proxy_intercept_errors")),
    _s("proxy_ignore_client_abort", HTTP_ALL, flag("proxy_ignore_client_abort")),
    _s("proxy_set_body", HTTP_ALL, parsers.p_proxy_set_body),
    # ---- TLS and HTTP/2 (issue 13): pyginx/config/ssl.py parses, pyginx/tls builds the contexts
    _s("ssl_certificate", HTTP_SRV, ssl.files("ssl_certificate")),
    _s("ssl_certificate_key", HTTP_SRV, ssl.files("ssl_certificate_key")),
    _s("ssl_password_file", HTTP_SRV, ssl.one_file("ssl_password_file")),
    _s("ssl_protocols", HTTP_SRV, ssl.protocols("ssl_protocols")),
    _s("ssl_ciphers", HTTP_SRV, ssl.p_ssl_ciphers("ssl_ciphers")),
    _s("ssl_prefer_server_ciphers", HTTP_SRV, flag("ssl_prefer_server_ciphers")),
    _s("ssl_ecdh_curve", HTTP_SRV, ssl.p_ssl_ecdh_curve),
    _s("ssl_session_cache", HTTP_SRV, ssl.p_ssl_session_cache),
    _s("ssl_session_timeout", HTTP_SRV, time("ssl_session_timeout")),
    _s("ssl_session_tickets", HTTP_SRV, flag("ssl_session_tickets")),
    _s("ssl_verify_client", HTTP_SRV, ssl.p_ssl_verify_client),
    _s("ssl_client_certificate", HTTP_SRV, ssl.one_file("ssl_client_certificate")),
    _s("ssl_verify_depth", HTTP_SRV, number("ssl_verify_depth", minimum=1)),
    _s("ssl_handshake_timeout", HTTP_SRV, time("ssl_handshake_timeout")),  # pyginx
    _s("http2", HTTP_SRV, flag("http2")),
    _s("http2_max_concurrent_streams", HTTP_SRV, ssl.p_http2_max_concurrent_streams),
    _s("http2_recv_buffer_size", HTTP, ssl.p_http2_recv_buffer_size),
    _s("http2_body_preread_size", HTTP_SRV, size("http2_body_preread_size")),
    _s("proxy_ssl_verify", HTTP_ALL, flag("proxy_ssl_verify")),
    _s("proxy_ssl_trusted_certificate", HTTP_ALL, ssl.one_file("proxy_ssl_trusted_certificate")),
    _s("proxy_ssl_verify_depth", HTTP_ALL, number("proxy_ssl_verify_depth", minimum=1)),
    _s("proxy_ssl_server_name", HTTP_ALL, flag("proxy_ssl_server_name")),
    _s("proxy_ssl_name", HTTP_ALL, word("proxy_ssl_name")),
    _s("proxy_ssl_protocols", HTTP_ALL, ssl.protocols("proxy_ssl_protocols")),
    _s("proxy_ssl_ciphers", HTTP_ALL, ssl.p_ssl_ciphers("proxy_ssl_ciphers")),
    _s("proxy_ssl_certificate", HTTP_ALL, ssl.one_file("proxy_ssl_certificate")),
    _s("proxy_ssl_certificate_key", HTTP_ALL, ssl.one_file("proxy_ssl_certificate_key")),
    _s("proxy_ssl_password_file", HTTP_ALL, ssl.one_file("proxy_ssl_password_file")),
    _s("proxy_ssl_session_reuse", HTTP_ALL, flag("proxy_ssl_session_reuse")),
    # ---- proxy cache (pyginx/config/cache.py)
    _d("proxy_cache_path", HTTP, "http", cache.p_proxy_cache_path),
    _s("proxy_cache", HTTP_ALL, cache.p_proxy_cache),
    _s("proxy_cache_key", HTTP_ALL, cache.p_proxy_cache_key),
    _s("proxy_cache_valid", HTTP_ALL, cache.p_proxy_cache_valid),
    _s("proxy_cache_methods", HTTP_ALL, cache.p_proxy_cache_methods),
    _s("proxy_cache_min_uses", HTTP_ALL, number("proxy_cache_min_uses", minimum=1)),
    _s("proxy_cache_bypass", HTTP_ALL, cache.p_proxy_cache_bypass),
    _s("proxy_no_cache", HTTP_ALL, cache.p_proxy_no_cache),
    _s("proxy_cache_use_stale", HTTP_ALL, cache.p_proxy_cache_use_stale),
    _s("proxy_cache_background_update", HTTP_ALL, flag("proxy_cache_background_update")),
    _s("proxy_cache_lock", HTTP_ALL, flag("proxy_cache_lock")),
    _s("proxy_cache_lock_timeout", HTTP_ALL, time("proxy_cache_lock_timeout")),
    _s("proxy_cache_lock_age", HTTP_ALL, time("proxy_cache_lock_age")),
    _s("proxy_cache_revalidate", HTTP_ALL, flag("proxy_cache_revalidate")),
    _s("proxy_cache_convert_head", HTTP_ALL, flag("proxy_cache_convert_head")),
    _s("proxy_ignore_headers", HTTP_ALL, cache.p_proxy_ignore_headers),
    # ---- upstream blocks
    _d("servers", UPS, "upstream", upstream.p_servers),
    _d("least_conn", UPS, "upstream", upstream.p_least_conn),
    _d("ip_hash", UPS, "upstream", upstream.p_ip_hash),
    _d("hash", UPS, "upstream", upstream.p_hash),
    _d("random", UPS, "upstream", upstream.p_random),
    _d("keepalive", UPS, "upstream", upstream.p_keepalive),
    _d("keepalive_timeout", UPS, "upstream", time("keepalive_timeout")),
    _d("keepalive_requests", UPS, "upstream", number("keepalive_requests", minimum=1)),
    _d("keepalive_time", UPS, "upstream", time("keepalive_time")),
    _d("health_check", UPS, "upstream", upstream.p_health_check),  # pyginx
    # ---- scale-out (issue 16): DNS at run time, upstream zone (readiness: pyginx/modules/readiness.py)
    _s("resolver", HTTP_ALL, dns.p_resolver),
    _s("resolver_timeout", HTTP_ALL, dns.p_resolver_timeout),
    _d("resolver", UPS, "upstream", dns.p_upstream_resolver),
    _d("resolver_timeout", UPS, "upstream", dns.p_resolver_timeout),
    _d("zone", UPS, "upstream", dns.p_zone),
    _d("shutdown_delay", MAIN, "main", time("shutdown_delay")),  # pyginx
)

# Directives nginx also allows inside a location's `if` block (NGX_HTTP_LIF_CONF); a server's `if`
# takes only the rewrite module's directives.
IF_ALLOWED = frozenset(
    {
        "root",
        "sendfile",
        "access_log",
        "add_header",
        "expires",
        "error_page",
        "proxy_pass",
        "log_not_found",
        "limit_rate",
        "gzip",
        "default_type",
        "aio",
    }
)

# directives whose whole value is a template with $variables (the loader checks the names)
TEMPLATED = frozenset(
    {
        "add_header",
        "proxy_set_header",
        "log_format",
        "try_files",
        "proxy_pass",
        "error_page",
        "root",
        "alias",
        "hash",
        "proxy_set_body",
        "access_log",
    }
)


def _core_entry(entry: Directive) -> Directive:
    contexts = entry.contexts
    if entry.name in IF_ALLOWED and "location" in contexts:
        contexts = contexts | {"if"}
    return replace(entry, contexts=contexts, templated=entry.name in TEMPLATED)


def _module_entries() -> tuple[Directive, ...]:
    from pyginx import modules  # the registry's files import configuration code: see by_name()

    out: list[Directive] = []
    for module in modules.ALL:
        for d in module.directives:
            out.append(Directive(d.name, d.contexts, "module", d.parse, module.name, d.ordered, d.templated))
    return tuple(out)


_by_name: dict[str, tuple[Directive, ...]] = {}


def by_name() -> dict[str, tuple[Directive, ...]]:
    """The whole table, core and modules, by name. Built at first use: the module registry imports
    configuration code (parsers, the model), so it cannot be read while this module is imported."""
    if not _by_name:
        for entry in (*(_core_entry(d) for d in DIRECTIVES), *_module_entries()):
            _by_name[entry.name] = (*_by_name.get(entry.name, ()), entry)
    return _by_name


def lookup(name: str, context: Context, file: str, line: int) -> Directive:
    """The entry for `name` in `context`, or nginx's error for an unknown or misplaced directive."""
    entries = by_name().get(name)
    if not entries:
        raise ConfigError(f'unknown directive "{name}"', file, line)
    for entry in entries:
        if context in entry.contexts:
            return entry
    raise ConfigError(f'"{name}" directive is not allowed here', file, line)
