"""map, geo and split_clients on the real daemon: values by exact key, regex with captures and
hostnames; evaluated once per request unless volatile; in headers and access-log lines; geo by the
client's address and X-Forwarded-For; split_clients buckets as nginx's; and a single-process reload
that serves the new configuration's maps."""

from __future__ import annotations

import signal

from tests.integration.harness import Pyginx, basic_config, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_rewrite_vs_nginx import _get

HTTP = """
log_format: {maps: '$uri $user $variant'}
map:
  "$uri $user": {"~^/u/(?<name>[^/]+)/(\\\\d+)$": "$name-$2", "~*^/ADMIN": admin, default: nobody}
  "$http_host $site": {hostnames: true, ".example.com": ex, "www.shop.*": shop, default: other}
  "$x $cached": {a: A, b: B}
  "$x $fresh": {volatile: true, a: A, b: B}
geo:
  "$client": {default: far, 127.0.0.0/8: local}
  "$behind": {proxy: 127.0.0.1, default: far, 10.0.0.0/8: lan}
split_clients:
  "${arg_k}AAA $variant": {"50%": first, "*": second}
"""

SERVER = """
access_log: logs/maps.log maps
"""


def _config(port: int, extra_http: str = "", main: str = "") -> str:
    text = basic_config(port, workers=1, http=HTTP + extra_http, server=SERVER, main=main)
    return text.replace(
        "          return: 200 ok\n",
        "          add_header: X-Foo $user\n"
        "          return: '200 \"$user|$site|$client|$behind|$variant\\n\"'\n"
        "        - location: /cache\n"
        "          set: [$x a, $first_cached $cached, $first_fresh $fresh, $x b]\n"
        "          return: '200 \"$first_cached$cached $first_fresh$fresh\\n\"'\n",
    )


def test_map_values(pyginx: Pyginx) -> None:  # noqa: F811
    pyginx.write_config(_config(pyginx.port))
    pyginx.start()
    status, headers, body = _get(pyginx.port, "/u/bob/42?k=abc", {"Host": "a.b.example.com"})
    assert status.startswith("HTTP/1.1 200")
    # murmur2("abcAAA") decides the split bucket exactly as nginx does
    assert body == b"bob-42|ex|local|far|first\n"
    assert headers["x-foo"] == "bob-42"
    assert (
        _get(pyginx.port, "/admin/x?k=127.0.0.1", {"Host": "www.shop.co.uk"})[2]
        == b"admin|shop|local|far|second\n"
    )
    assert _get(pyginx.port, "/z", {"Host": "example.org"})[2] == b"nobody|other|local|far|second\n"


def test_map_cached_per_request_unless_volatile(pyginx: Pyginx) -> None:  # noqa: F811
    pyginx.write_config(_config(pyginx.port))
    pyginx.start()
    assert _get(pyginx.port, "/cache", {})[2] == b"AA AB\n"


def test_geo_behind_a_trusted_proxy(pyginx: Pyginx) -> None:  # noqa: F811
    pyginx.write_config(_config(pyginx.port))
    pyginx.start()
    body = _get(pyginx.port, "/", {"X-Forwarded-For": "10.2.3.4"})[2]
    assert body.split(b"|")[3] == b"lan"


def test_maps_in_the_access_log(pyginx: Pyginx) -> None:  # noqa: F811
    pyginx.write_config(_config(pyginx.port))
    pyginx.start()
    _get(pyginx.port, "/u/ann/7?k=abc", {})
    log = pyginx.prefix / "logs" / "maps.log"
    wait_for(lambda: log.exists() and "/u/ann/7 ann-7 first" in log.read_text(), 10, "the log line")


def test_single_process_reload_serves_the_new_maps(pyginx: Pyginx) -> None:  # noqa: F811
    pyginx.write_config(_config(pyginx.port, main="master_process: false"))
    pyginx.start()
    assert _get(pyginx.port, "/z", {})[2].startswith(b"nobody|")
    pyginx.write_config(
        _config(pyginx.port, main="master_process: false").replace("default: nobody", "default: someone")
    )
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: _get(pyginx.port, "/z", {})[2].startswith(b"someone|"), 10, "the reload")
