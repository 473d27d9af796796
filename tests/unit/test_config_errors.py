"""Every configuration error reads as nginx's do and names the absolute file and the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyginx.config import load_config, resolve
from pyginx.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names under .invalid never resolve; nothing here asks a real DNS server."""

    def lookup(host: str, port: int) -> list[tuple[str, int]]:
        if host.endswith(".invalid"):
            raise OSError("not found")
        return [("127.0.0.1", port)]

    monkeypatch.setattr(resolve, "lookup", lookup)


def error_of(tmp_path: Path, text: str) -> tuple[str, str]:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    return str(info.value), str(conf)


CASES: list[tuple[str, str, str, int]] = [
    # (id, config, message, line)
    ("unknown", "rooot: x\n", 'unknown directive "rooot"', 1),
    ("unknown-nested", "http:\n  servers:\n    - rooot: html\n", 'unknown directive "rooot"', 3),
    (
        "bad-size",
        "http:\n  client_max_body_size: 10q\n",
        'invalid value "10q" in "client_max_body_size" directive',
        2,
    ),
    ("bad-time", "http:\n  send_timeout: 1x\n", 'invalid value "1x" in "send_timeout" directive', 2),
    (
        "bad-time-order",
        "http:\n  send_timeout: 30m 1h\n",
        'invalid value "30m 1h" in "send_timeout" directive',
        2,
    ),
    (
        "bad-flag",
        "http:\n  sendfile: maybe\n",
        'invalid value "maybe" in "sendfile" directive, it must be "on" or "off"',
        2,
    ),
    (
        "bad-enum",
        "http:\n  gzip_static: sometimes\n",
        'invalid value "sometimes" in "gzip_static" directive, it must be "on" or "off" or "always"',
        2,
    ),
    ("bad-number", "worker_processes: zero\n", 'invalid value "zero" in "worker_processes" directive', 1),
    (
        "zero-connections",
        "events:\n  worker_connections: 0\n",
        'invalid value "0" in "worker_connections" directive',
        2,
    ),
    (
        "proxy-pass-in-server",
        "http:\n  servers:\n    - proxy_pass: http://x\n",
        '"proxy_pass" directive is not allowed here',
        3,
    ),
    ("alias-in-http", "http:\n  alias: /x/\n", '"alias" directive is not allowed here', 2),
    ("listen-in-http", "http:\n  listen: 80\n", '"listen" directive is not allowed here', 2),
    ("return-in-http", "http:\n  return: 404\n", '"return" directive is not allowed here', 2),
    ("try-files-in-http", "http:\n  try_files: $uri =404\n", '"try_files" directive is not allowed here', 2),
    (
        "log-format-in-server",
        "http:\n  servers:\n    - log_format: {a: x}\n",
        '"log_format" directive is not allowed here',
        3,
    ),
    (
        "header-buffer-in-location",
        "http:\n  servers:\n    - locations:\n        - location: /\n          client_header_buffer_size: 2k\n",
        '"client_header_buffer_size" directive is not allowed here',
        5,
    ),
    (
        "worker-in-http",
        "http:\n  worker_processes: 2\n",
        '"worker_processes" directive is not allowed here',
        2,
    ),
    (
        "upstream-directive-in-server",
        "http:\n  servers:\n    - keepalive: 3\n",
        '"keepalive" directive is not allowed here',
        3,
    ),
    (
        "events-directive-in-main",
        "worker_connections: 10\n",
        '"worker_connections" directive is not allowed here',
        1,
    ),
    ("duplicate", "http:\n  root: a\n  root: b\n", '"root" directive is duplicate', 3),
    (
        "missing-value",
        "http:\n  servers:\n    - listen:\n",
        'invalid number of arguments in "listen" directive',
        3,
    ),
    (
        "too-many",
        "http:\n  keepalive_timeout: 75s 10s 5\n",
        'invalid number of arguments in "keepalive_timeout" directive',
        2,
    ),
    (
        "too-few",
        "http:\n  large_client_header_buffers: 4\n",
        'invalid number of arguments in "large_client_header_buffers" directive',
        2,
    ),
    (
        "alias-after-root",
        "http:\n  servers:\n    - locations:\n        - location: /\n          root: a\n          alias: b\n",
        '"alias" directive is duplicate, "root" directive was specified earlier',
        6,
    ),
    (
        "root-after-alias",
        "http:\n  servers:\n    - locations:\n        - location: /\n          alias: b\n          root: a\n",
        '"root" directive is duplicate, "alias" directive was specified earlier',
        6,
    ),
    (
        "combined-redefined",
        "http:\n  log_format: {combined: x}\n",
        'duplicate "log_format" name "combined"',
        2,
    ),
    ("unknown-format", "http:\n  access_log: logs/a.log nope\n", 'unknown log format "nope"', 2),
    (
        "flush-without-buffer",
        "http:\n  access_log: logs/a.log combined flush=1s\n",
        'no buffer is defined for access_log "logs/a.log"',
        2,
    ),
    ("bad-level", "error_log: logs/e.log loud\n", 'invalid log level "loud"', 1),
    (
        "upstream-host",
        "http:\n  upstreams:\n    u:\n      servers: nosuch.invalid:80\n",
        'host not found in upstream "nosuch.invalid:80"',
        4,
    ),
    (
        "upstream-no-servers",
        "http:\n  upstreams:\n    u:\n      least_conn: true\n",
        "no servers are inside upstream",
        3,
    ),
    (
        "upstream-param",
        "http:\n  upstreams:\n    u:\n      servers: 127.0.0.1:80 weight=0\n",
        'invalid parameter "weight=0"',
        4,
    ),
    (
        "upstream-backup-hash",
        "http:\n  upstreams:\n    u:\n      servers: 127.0.0.1:80 backup\n      ip_hash: true\n",
        'invalid parameter "backup"',
        4,
    ),
    (
        "balancer-twice",
        "http:\n  upstreams:\n    u:\n      servers: 127.0.0.1:80\n      ip_hash: true\n      least_conn: true\n",
        "load balancing method redefined",
        6,
    ),
    (
        "upstream-duplicate",
        "http:\n  upstreams:\n    u: {servers: 127.0.0.1:1}\n    u: {servers: 127.0.0.1:2}\n",
        'duplicate upstream "u"',
        4,
    ),
    (
        "health-check-key",
        "http:\n  upstreams:\n    u:\n      servers: 127.0.0.1:80\n      health_check: {intervl: 5s}\n",
        'invalid parameter "intervl" in "health_check", expected one of interval, uri, status, fails, '
        "passes, timeout",
        5,
    ),
    (
        "default-server-twice",
        "http:\n  servers:\n    - listen: 127.0.0.1:8080 default_server\n"
        "    - listen: 127.0.0.1:8080 default_server\n",
        "a duplicate default server for 127.0.0.1:8080",
        4,
    ),
    (
        "listen-options-twice",
        "http:\n  servers:\n    - listen: 8080 backlog=100\n    - listen: 8080 reuseport\n",
        "duplicate listen options for 0.0.0.0:8080",
        4,
    ),
    (
        "yaml-alias-hint",
        "http:\n  servers:\n    - listen: *:8080\n",
        "a value starting with \"*\" must be quoted in YAML: '*:8080'",
        3,
    ),
    (
        "yaml-at-hint",
        "http:\n  servers:\n    - locations:\n        - location: @x\n",
        "a value starting with \"@\" must be quoted in YAML: '@x'",
        4,
    ),
    (
        "duplicate-header",
        "http:\n  add_header:\n    X-A: 1\n    X-A: 2\n",
        'duplicate key "X-A" in "add_header" directive',
        4,
    ),
    (
        "duplicate-in-location",
        "http:\n  servers:\n    - locations:\n        - location: /\n          root: a\n          root: b\n",
        '"root" directive is duplicate',
        6,
    ),
    (
        "duplicate-in-server",
        "http:\n  servers:\n    - listen: 80\n      listen: 81\n",
        '"listen" directive is duplicate',
        4,
    ),
    (
        "listen-twice",
        "http:\n  servers:\n    - listen: [8080, '8080']\n",
        "a duplicate listen 0.0.0.0:8080",
        3,
    ),
    (
        "listen-host",
        "http:\n  servers:\n    - listen: foo.invalid:80\n",
        'host not found in "foo.invalid:80" of the "listen" directive',
        3,
    ),
    (
        "listen-port",
        "http:\n  servers:\n    - listen: 127.0.0.1:99999\n",
        'invalid port in "127.0.0.1:99999" of the "listen" directive',
        3,
    ),
    ("listen-param", "http:\n  servers:\n    - listen: 8080 fast\n", 'invalid parameter "fast"', 3),
    (
        "listen-ssl-no-certificate",
        "http:\n  servers:\n    - listen: 8080 ssl\n",
        'no "ssl_certificate" is defined for the "listen ... ssl" directive',
        3,
    ),
    (
        "listen-quic",
        "http:\n  servers:\n    - listen: 8080 quic\n",
        'the "quic" parameter of the "listen" directive is not supported: pyginx has no QUIC',
        3,
    ),
    (
        "ssl-protocols",
        "http:\n  servers:\n    - ssl_protocols: TLSv1.2 TLSv9\n",
        'invalid value "TLSv9" in "ssl_protocols" directive',
        3,
    ),
    (
        "ssl-verify-client",
        "http:\n  servers:\n    - ssl_verify_client: maybe\n",
        'invalid value "maybe" in "ssl_verify_client" directive, it must be "on", "off", "optional" or "optional_no_ca"',
        3,
    ),
    (
        "ssl-session-cache",
        "http:\n  ssl_session_cache: shared:SSL\n",
        'invalid value "shared:SSL" in "ssl_session_cache" directive',
        2,
    ),
    (
        "ssl-in-location",
        "http:\n  servers:\n    - locations:\n        - location: /\n          ssl_ciphers: HIGH\n",
        '"ssl_ciphers" directive is not allowed here',
        5,
    ),
    (
        "url-prefix",
        "http:\n  servers:\n    - locations:\n        - location: /\n          proxy_pass: ftp://x\n",
        'invalid URL prefix in "ftp://x"',
        5,
    ),
    (
        "proxy-host",
        "http:\n  servers:\n    - locations:\n        - location: /\n          proxy_pass: http://no.invalid:81/\n",
        'host not found in upstream "no.invalid:81"',
        5,
    ),
    (
        "proxy-port-on-block",
        "http:\n  upstreams:\n    u: {servers: 127.0.0.1:1}\n  servers:\n    - locations:\n"
        "        - location: /\n          proxy_pass: http://u:8080\n",
        'upstream "u" may not have port 8080',
        7,
    ),
    (
        "proxy-uri-in-regex",
        "http:\n  servers:\n    - locations:\n        - location: ~ \\.php$\n"
        "          proxy_pass: http://127.0.0.1:9000/x\n",
        '"proxy_pass" cannot have URI part in location given by regular expression, or inside named '
        'location, or inside "if" statement, or inside "limit_except" block',
        5,
    ),
    (
        "bad-regex",
        "http:\n  servers:\n    - locations:\n        - location: ~ \\.(png\n",
        'invalid regular expression "\\.(png" in location: missing ), unterminated subpattern at position 2',
        4,
    ),
    (
        "inside-exact",
        "http:\n  servers:\n    - locations:\n        - location: = /a\n          locations:\n"
        "            - location: /a/b\n",
        'location "/a/b" cannot be inside the exact location "/a"',
        6,
    ),
    (
        "outside",
        "http:\n  servers:\n    - locations:\n        - location: /a/\n          locations:\n"
        "            - location: /b/\n",
        'location "/b/" is outside location "/a/"',
        6,
    ),
    (
        "named-nested",
        "http:\n  servers:\n    - locations:\n        - location: /a/\n          locations:\n"
        "            - location: '@x'\n",
        'named location "@x" can be on the server level only',
        6,
    ),
    (
        "duplicate-location",
        "http:\n  servers:\n    - locations:\n        - location: /a\n        - location: ^~ /a\n",
        'duplicate location "/a"',
        5,
    ),
    (
        "no-location-key",
        "http:\n  servers:\n    - locations:\n        - root: x\n",
        'a location block needs a "location" key',
        4,
    ),
    ("return-code", "http:\n  servers:\n    - return: 1000\n", 'invalid return code "1000"', 3),
    ("return-word", "http:\n  servers:\n    - return: foo\n", 'invalid return code "foo"', 3),
    ("error-page-code", "http:\n  error_page: {200: /x}\n", 'value "200" must be between 300 and 599', 2),
    ("expires", "http:\n  expires: '@15h'\n", 'invalid value "@15h" in "expires" directive', 2),
    (
        "open-file-cache",
        "http:\n  open_file_cache: inactive=20s\n",
        '"open_file_cache" must have the "max" parameter',
        2,
    ),
    (
        "next-upstream",
        "http:\n  proxy_next_upstream: error sometimes\n",
        'invalid value "sometimes" in "proxy_next_upstream" directive',
        2,
    ),
    (
        "server-name-regex",
        "http:\n  servers:\n    - server_name: '~^(www'\n",
        'invalid regex "^(www" in "server_name" directive: missing ), unterminated subpattern at position 1',
        3,
    ),
    (
        "header-name",
        "http:\n  add_header: {'Bad Name': x}\n",
        'invalid header name "Bad Name" in "add_header" directive',
        2,
    ),
    ("try-files-code", "http:\n  servers:\n    - try_files: $uri =abc\n", 'invalid code "=abc"', 3),
    (
        "try-files-one",
        "http:\n  servers:\n    - try_files: $uri\n",
        'invalid number of arguments in "try_files" directive',
        3,
    ),
    (
        "index-absolute",
        "http:\n  index: /abs.html other.html\n",
        'only the last index in "index" directive should be absolute',
        2,
    ),
    (
        "proxy-http-version",
        "http:\n  proxy_http_version: 2.0\n",
        'invalid value "2.0" in "proxy_http_version" directive, it must be "1.0" or "1.1"',
        2,
    ),
    (
        "yaml-syntax",
        "http:\n  root: [a\n",
        'unexpected end of file, expecting "," or "]" to close the "[" opened here',
        2,
    ),
    (
        "yaml-tab",
        "http:\n\troot: a\n",
        "a tab character cannot indent YAML, use spaces",
        2,
    ),
    # YAML mistakes: pyginx's words, at the line to fix (PyYAML's own point elsewhere or at the end)
    (
        "yaml-unclosed-quote",
        'http:\n  root: "html\n  index: a\nworker_processes: 1\n',
        'unexpected end of file, expecting the closing " of the value started here',
        2,
    ),
    (
        "yaml-unclosed-brace",
        "http: {root: x\n\n",
        'unexpected end of file, expecting "," or "}" to close the "{" opened here',
        1,
    ),
    (
        "yaml-bad-indent",
        "http:\n  root: html\n index: a\n",
        "unexpected indentation (the keys of one block must line up)",
        3,
    ),
    (
        "yaml-list-in-block",
        "http:\n  root: html\n  - location: /\n",
        'unexpected "-" (a list item where the block holds keys)',
        3,
    ),
    (
        "yaml-no-space-after-colon",
        "http:\n  root:html\n  index: a\n",
        'a ":" must be followed by a space: "root: html"',
        2,
    ),
    (
        "yaml-colon-in-value",
        "http:\n  servers:\n    - return: 200 a: b\n",
        'unexpected ":" (a value holding ": " must be quoted)',
        3,
    ),
    (
        "yaml-text-after-quote",
        'http:\n  servers:\n    - return: "200" ok\n',
        "unexpected text after a quoted value (quote the whole value)",
        3,
    ),
    ("not-a-mapping", "- a\n- b\n", "the configuration must be a mapping of directives", 1),
    ("server-not-mapping", "http:\n  servers:\n    - 8080\n", "a server must be a mapping of directives", 3),
    (
        "quote",
        'http:\n  servers:\n    - return: 200 "unterminated\n',
        "unexpected end of string, expecting closing quote",
        3,
    ),
    (
        "value-list-of-maps",
        "http:\n  index: [{a: b}]\n",
        'invalid value in "index" directive: expected a plain value',
        2,
    ),
    (
        "value-mapping",
        "http:\n  root: {a: b}\n",
        'invalid value in "root" directive: expected a value, not a mapping',
        2,
    ),
]


@pytest.mark.parametrize(("text", "message", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_message(tmp_path: Path, text: str, message: str, line: int) -> None:
    got, conf = error_of(tmp_path, text)
    assert got == f"{message} in {conf}:{line}"


def test_error_carries_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir()
    conf.write_text("http:\n  client_max_body_size: 10q\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    assert info.value.file == str(conf)
    assert info.value.line == 2
    assert info.value.message == 'invalid value "10q" in "client_max_body_size" directive'


def test_file_is_absolute_even_when_given_relative_to_the_prefix(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.yaml").write_text("rooot: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config("conf/x.yaml", str(tmp_path))
    assert str(info.value) == f'unknown directive "rooot" in {tmp_path}/conf/x.yaml:1'


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yaml"), str(tmp_path))
    assert str(info.value) == f'open() "{tmp_path}/nope.yaml" failed (2: No such file or directory)'


def test_error_in_a_list_element_names_its_own_line(tmp_path: Path) -> None:
    got, conf = error_of(
        tmp_path,
        """
        http:
          upstreams:
            app:
              servers:
                - 127.0.0.1:9001
                - 127.0.0.1:9002 weight=x
        """,
    )
    assert got == f'invalid parameter "weight=x" in {conf}:6'
