"""Value forms of the http/server/location directives, as YAML strings, numbers, lists and mappings."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyginx.config import load_config
from pyginx.config.model import (
    AccessLog,
    ErrorLog,
    Expires,
    HeaderValue,
    HttpSettings,
    OpenFileCache,
    ProxyRedirect,
    Return,
    SourcePos,
    TryFiles,
)
from pyginx.modules.rewrite import returns_of


def location_settings(tmp_path: Path, body: str) -> HttpSettings:
    """Settings of a single location `/` holding `body` (http-level log_format `main` defined)."""
    conf = tmp_path / "p.yaml"
    conf.write_text(
        "http:\n  log_format: {main: '$remote_addr $status'}\n  servers:\n    - locations:\n"
        "        - location: /\n" + textwrap.indent(textwrap.dedent(body).strip(), "          ") + "\n"
    )
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None
    return cfg.http.servers[0].locations[0].settings


FIELD_CASES: list[tuple[str, str, Any]] = [
    # (directive line, field, expected)
    ("client_max_body_size: 10m", "client_max_body_size", 10 * 1024**2),
    ("client_max_body_size: 0", "client_max_body_size", 0),
    ("client_max_body_size: 2048", "client_max_body_size", 2048),
    ("client_body_buffer_size: 8K", "client_body_buffer_size", 8192),
    ("sendfile_max_chunk: 1g", "sendfile_max_chunk", 1024**3),
    ("send_timeout: 90", "send_timeout", 90.0),
    ("send_timeout: 1m 30s", "send_timeout", 90.0),
    ("send_timeout: '1h30m'", "send_timeout", 5400.0),
    ("proxy_read_timeout: 500ms", "proxy_read_timeout", 0.5),
    ("keepalive_time: 1d", "keepalive_time", 86400.0),
    ("keepalive_requests: 10", "keepalive_requests", 10),
    ("sendfile: true", "sendfile", True),
    ("sendfile: on", "sendfile", True),
    ("sendfile: 'on'", "sendfile", True),
    ("sendfile: 'OFF'", "sendfile", False),
    ("etag: no", "etag", False),
    ("autoindex_format: json", "autoindex_format", "json"),
    ("gzip_static: always", "gzip_static", "always"),
    ("gzip_static: true", "gzip_static", "on"),
    ("lingering_close: false", "lingering_close", "off"),
    ("if_modified_since: before", "if_modified_since", "before"),
    ("server_tokens: build", "server_tokens", True),
    ("server_tokens: off", "server_tokens", False),
    ("max_ranges: 0", "max_ranges", 0),
    ("default_type: text/html", "default_type", "text/html"),
    ("index: index.htm index.html", "index", ("index.htm", "index.html")),
    ("index: [a.html, /b.html]", "index", ("a.html", "/b.html")),
    ("try_files: $uri $uri/ /index.php?$args", "try_files", TryFiles(("$uri", "$uri/"), "/index.php?$args")),
    ("try_files: [$uri, '@back']", "try_files", TryFiles(("$uri",), "@back")),
    ("try_files: $uri =404", "try_files", TryFiles(("$uri",), "=404", 404)),
    ("proxy_next_upstream: error timeout http_502", "proxy_next_upstream", ("error", "timeout", "http_502")),
    (
        "proxy_next_upstream: [http_503, non_idempotent]",
        "proxy_next_upstream",
        ("http_503", "non_idempotent"),
    ),
    ("proxy_next_upstream: off", "proxy_next_upstream", ("off",)),
    ("proxy_hide_header: X-Powered-By Server", "proxy_hide_header", ("x-powered-by", "server")),
    ("proxy_pass_header: [X-Accel-Expires]", "proxy_pass_header", ("x-accel-expires",)),
    ("proxy_http_version: 1.0", "proxy_http_version", "1.0"),
    ("proxy_http_version: '1.1'", "proxy_http_version", "1.1"),
    ("proxy_buffers: 16 8k", "proxy_buffers", (16, 8192)),
    ("proxy_buffers: [4, 16k]", "proxy_buffers", (4, 16384)),
    ("proxy_next_upstream_tries: 3", "proxy_next_upstream_tries", 3),
    ("proxy_set_body: 'a=$arg_a&b=1'", "proxy_set_body", "a=$arg_a&b=1"),
    ("open_file_cache: off", "open_file_cache", OpenFileCache(max=0)),
    ("open_file_cache: max=10", "open_file_cache", OpenFileCache(max=10, inactive=60.0)),
    ("open_file_cache: max=10 inactive=1m", "open_file_cache", OpenFileCache(max=10, inactive=60.0)),
    ("open_file_cache_valid: 30s", "open_file_cache_valid", 30.0),
    ("open_file_cache_min_uses: 2", "open_file_cache_min_uses", 2),
    ("expires: off", "expires", Expires()),
    ("expires: epoch", "expires", Expires(kind="epoch")),
    ("expires: max", "expires", Expires(kind="max")),
    ("expires: 7d", "expires", Expires(kind="time", seconds=7 * 86400.0)),
    ("expires: 1h 30m", "expires", Expires(kind="time", seconds=5400.0)),
    ("expires: -1", "expires", Expires(kind="time", seconds=-1.0)),
    ("expires: modified 1h", "expires", Expires(kind="time", seconds=3600.0, modified=True)),
    ("disable_symlinks: if_not_owner from=$document_root", "disable_symlinks", "if_not_owner"),
    (
        "types: {text/x-foo: foo fooz, application/x-bar: [bar]}",
        "types",
        (("foo", "text/x-foo"), ("fooz", "text/x-foo"), ("bar", "application/x-bar")),
    ),
    ("types: {MD: text/markdown}", "types", (("md", "text/markdown"),)),
    ("return: 403", "return_", Return(403)),
    ("return: '404'", "return_", Return(404)),
    ("return: 301 /new/", "return_", Return(301, "/new/")),
    ("return: 200 hello world", "return_", Return(200, "hello world")),
    ("return: '200 \"quoted text\"'", "return_", Return(200, "quoted text")),
    ("return: [200, 'a b']", "return_", Return(200, "a b")),
    ("return: https://example.com/", "return_", Return(302, "https://example.com/")),
    ("return: http://example.com/", "return_", Return(302, "http://example.com/")),
    ("return: $scheme://$host/x", "return_", Return(302, "$scheme://$host/x")),
    ("return: 444", "return_", Return(444)),
    ("error_page: {404: /404.html}", "error_page", ((404, "/404.html", None),)),
    (
        "error_page: {'502 503': /50x.html}",
        "error_page",
        ((502, "/50x.html", None), (503, "/50x.html", None)),
    ),
    ("error_page: {'404': '=200 /empty.gif'}", "error_page", ((404, "/empty.gif", 200),)),
    ("error_page: {404: '= /fallback'}", "error_page", ((404, "/fallback", 0),)),
    ("error_page: {404: '@named'}", "error_page", ((404, "@named", None),)),
    ("error_page: {404: 'http://example.com/'}", "error_page", ((404, "http://example.com/", 302),)),
    ("error_page: {404: '=301 http://example.com/'}", "error_page", ((404, "http://example.com/", 301),)),
    ("error_page: 500 502 =503 /x.html", "error_page", ((500, "/x.html", 503), (502, "/x.html", 503))),
    (
        "error_page: ['404 /a.html', '500 /b.html']",
        "error_page",
        ((404, "/a.html", None), (500, "/b.html", None)),
    ),
    ("add_header: {X-Frame-Options: DENY}", "add_header", (HeaderValue("X-Frame-Options", "DENY"),)),
    (
        "add_header: {Cache-Control: 'no-cache always'}",
        "add_header",
        (HeaderValue("Cache-Control", "no-cache", always=True),),
    ),
    ("add_header: ['X-A 1', 'X-A 2']", "add_header", (HeaderValue("X-A", "1"), HeaderValue("X-A", "2"))),
    ("add_header: [{X-A: 1}, {X-A: 2}]", "add_header", (HeaderValue("X-A", "1"), HeaderValue("X-A", "2"))),
    ("add_header: {X-Empty: ''}", "add_header", (HeaderValue("X-Empty", ""),)),
    (
        "proxy_set_header: {Host: $host, Accept-Encoding: '', X-Null: }",
        "proxy_set_header",
        (HeaderValue("Host", "$host"), HeaderValue("Accept-Encoding", ""), HeaderValue("X-Null", "")),
    ),
    ("proxy_redirect: off", "proxy_redirect", ProxyRedirect(default=False, off=True)),
    ("proxy_redirect: default", "proxy_redirect", ProxyRedirect(default=True)),
    (
        "proxy_redirect: http://up/ /",
        "proxy_redirect",
        ProxyRedirect(default=False, rules=(("http://up/", "/"),)),
    ),
    (
        "proxy_redirect: [default, 'http://a/ http://b/']",
        "proxy_redirect",
        ProxyRedirect(default=True, rules=(("http://a/", "http://b/"),)),
    ),
    ("error_log: logs/loc.log debug", "error_log", ErrorLog(path="{p}/logs/loc.log", level="debug")),
    ("error_log: stderr", "error_log", ErrorLog(path=None)),
    ("internal: true", "internal", True),
    ("alias: /srv/x/", "alias", "/srv/x/"),
    ("root: /", "root", "/"),
]


@pytest.mark.parametrize(("line", "field", "expected"), FIELD_CASES, ids=[c[0] for c in FIELD_CASES])
def test_field(tmp_path: Path, line: str, field: str, expected: Any) -> None:
    settings = location_settings(tmp_path, line)
    if isinstance(expected, ErrorLog) and expected.path is not None:
        expected = ErrorLog(path=expected.path.format(p=tmp_path), level=expected.level)
    actual = returns_of(settings)[0] if field == "return_" else getattr(settings, field)
    assert actual == expected


def test_keepalive_timeout_with_header_timeout(tmp_path: Path) -> None:
    s = location_settings(tmp_path, "keepalive_timeout: 75s 60")
    assert (s.keepalive_timeout, s.keepalive_header_timeout) == (75.0, 60.0)
    s = location_settings(tmp_path, "keepalive_timeout: 0")
    assert (s.keepalive_timeout, s.keepalive_header_timeout) == (0.0, None)


def test_disable_symlinks_from(tmp_path: Path) -> None:
    s = location_settings(tmp_path, "disable_symlinks: on from=$document_root")
    assert (s.disable_symlinks, s.disable_symlinks_from) == ("on", "$document_root")
    s = location_settings(tmp_path, "disable_symlinks: off")
    assert (s.disable_symlinks, s.disable_symlinks_from) == ("off", None)


def test_access_log_forms(tmp_path: Path) -> None:
    p = str(tmp_path)
    s = location_settings(tmp_path, "access_log: logs/a.log main buffer=32k flush=5s")
    assert s.access_log == (
        AccessLog(
            path=f"{p}/logs/a.log",
            format_name="main",
            buffer_size=32768,
            flush=5.0,
            pos=SourcePos(f"{p}/p.yaml", 6),
        ),
    )
    s = location_settings(tmp_path, "access_log: [logs/a.log, /var/log/b.log main]")
    assert [(a.path, a.format_name) for a in s.access_log] == [
        (f"{p}/logs/a.log", "combined"),
        ("/var/log/b.log", "main"),
    ]
    assert location_settings(tmp_path, "access_log: off").access_log[0].path is None
    assert location_settings(tmp_path, "access_log: false").access_log[0].path is None
    s = location_settings(tmp_path, "access_log: logs/a.log buffer=4k")
    assert (s.access_log[0].format_name, s.access_log[0].buffer_size) == ("combined", 4096)


def test_log_format_parts_are_joined(tmp_path: Path) -> None:
    conf = tmp_path / "p.yaml"
    conf.write_text(
        "http:\n  access_log: logs/x.log timed\n  log_format:\n    timed:\n      - '$remote_addr '\n"
        "      - '$request_time'\n"
    )
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None
    assert cfg.http.log_formats["timed"] == "$remote_addr $request_time"
    assert cfg.http.settings.access_log[0].format_name == "timed"  # log_format read first
    assert "combined" in cfg.http.log_formats


def test_types_hash_max_size(tmp_path: Path) -> None:
    conf = tmp_path / "p.yaml"
    conf.write_text("http:\n  types_hash_max_size: 2048\n")
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None and cfg.http.types_hash_max_size == 2048


def test_server_level_only_directives(tmp_path: Path) -> None:
    conf = tmp_path / "p.yaml"
    conf.write_text(
        "http:\n  servers:\n    - client_header_buffer_size: 2k\n      large_client_header_buffers: 8 16k\n"
        "      merge_slashes: off\n      underscores_in_headers: on\n      ignore_invalid_headers: off\n"
        "      client_header_timeout: 10s\n"
    )
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None
    s = cfg.http.servers[0].settings
    assert s.client_header_buffer_size == 2048
    assert s.large_client_header_buffers == (8, 16384)
    assert (s.merge_slashes, s.underscores_in_headers, s.ignore_invalid_headers) == (False, True, False)
    assert s.client_header_timeout == 10.0
