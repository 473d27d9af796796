"""Upstream blocks, server lines, resolution, and proxy_pass (explicit and implicit upstreams)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyginx.config import MainConfig, load_config, resolve
from pyginx.config.model import HealthCheck, Http, ProxyPass, UpstreamServer
from pyginx.errors import ConfigError


@pytest.fixture(autouse=True)
def _fake_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    names = {"app.test": ["10.0.0.1", "10.0.0.2"], "one.test": ["10.0.0.9"], "v6.test": ["fd00::1"]}

    def lookup(host: str, port: int) -> list[tuple[str, int]]:
        asked.append(host)
        if host not in names:
            raise OSError("not found")
        return [(a, port) for a in names[host]]

    monkeypatch.setattr(resolve, "lookup", lookup)
    return asked


def load(tmp_path: Path, text: str) -> MainConfig:
    conf = tmp_path / "p.yaml"
    conf.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_config(str(conf), str(tmp_path))


def http(cfg: MainConfig) -> Http:
    assert cfg.http is not None
    return cfg.http


def test_servers_and_parameters(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          upstreams:
            app:
              servers:
                - 127.0.0.1:9001 weight=3 max_fails=2 fail_timeout=5s
                - 127.0.0.1:9002 max_conns=10
                - 127.0.0.1:9003 backup
                - 127.0.0.1:9004 down
                - 127.0.0.1
                - "[::1]:9005"
                - unix:/run/app.sock
              keepalive: 16
              keepalive_timeout: 30s
              keepalive_requests: 500
              keepalive_time: 1h
        """,
    )
    ups = http(cfg).upstreams["app"]
    assert ups.name == "app" and not ups.implicit
    assert ups.balancer == "round_robin"
    assert (ups.keepalive, ups.keepalive_timeout, ups.keepalive_requests, ups.keepalive_time) == (
        16,
        30.0,
        500,
        3600.0,
    )
    s = ups.servers
    assert s[0] == UpstreamServer(
        host="127.0.0.1", port=9001, address=("127.0.0.1", 9001), weight=3, max_fails=2, fail_timeout=5.0
    )
    assert s[1].max_conns == 10
    assert s[2].backup and s[3].down
    assert s[4].port == 80 and s[4].name == "127.0.0.1:80"
    assert s[5].address == ("::1", 9005) and s[5].name == "[::1]:9005"
    assert s[6].unix == "/run/app.sock" and s[6].address is None and s[6].name == "unix:/run/app.sock"
    assert ups.pos is not None and ups.pos.line == 3


def test_a_name_with_several_addresses_gives_several_servers(tmp_path: Path) -> None:
    cfg = load(tmp_path, "http:\n  upstreams:\n    app:\n      servers: app.test:8080 weight=2\n")
    servers = http(cfg).upstreams["app"].servers
    assert [(s.host, s.name, s.weight) for s in servers] == [
        ("app.test", "10.0.0.1:8080", 2),
        ("app.test", "10.0.0.2:8080", 2),
    ]


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("least_conn: true", {"balancer": "least_conn"}),
        ("least_conn: false", {"balancer": "round_robin"}),
        ("ip_hash: on", {"balancer": "ip_hash"}),
        ("hash: $request_uri", {"balancer": "hash", "hash_key": "$request_uri", "hash_consistent": False}),
        ("hash: $request_uri consistent", {"balancer": "hash", "hash_consistent": True}),
        ("random: true", {"balancer": "random", "random_two": False}),
        ("random: two", {"balancer": "random", "random_two": True}),
        ("random: two least_conn", {"balancer": "random", "random_two": True}),
        ("keepalive: off", {"keepalive": 0}),
    ],
)
def test_balancers(tmp_path: Path, line: str, fields: dict[str, object]) -> None:
    cfg = load(tmp_path, f"http:\n  upstreams:\n    u:\n      servers: 127.0.0.1:1\n      {line}\n")
    ups = http(cfg).upstreams["u"]
    for name, value in fields.items():
        assert getattr(ups, name) == value


def test_health_check(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          upstreams:
            a:
              servers: 127.0.0.1:1
              health_check: {interval: 2s, uri: /health, status: [200, 204], fails: 3, passes: 2, timeout: 500ms}
            b:
              servers: 127.0.0.1:1
              health_check: true
            c:
              servers: 127.0.0.1:1
              health_check: {status: 200 301}
        """,
    )
    ups = http(cfg).upstreams
    assert ups["a"].health_check == HealthCheck(
        interval=2.0, uri="/health", status=(200, 204), fails=3, passes=2, timeout=0.5
    )
    assert ups["b"].health_check == HealthCheck()
    assert ups["c"].health_check == HealthCheck(status=(200, 301))


def test_proxy_pass_to_a_block(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - locations:
                - location: /api/
                  proxy_pass: http://app/v1/
                - location: /raw/
                  proxy_pass: http://app
          upstreams:            # after the servers in the file: still found
            app: {servers: 127.0.0.1:9000}
        """,
    )
    api, raw = http(cfg).servers[0].locations
    assert api.settings.proxy_pass == ProxyPass(
        scheme="http", host="app", port=None, uri="/v1/", upstream="app", url="http://app/v1/"
    )
    assert raw.settings.proxy_pass == ProxyPass(
        scheme="http", host="app", port=None, uri=None, upstream="app", url="http://app"
    )
    assert api.settings.proxy_pass.proxy_host == "app"
    assert list(http(cfg).upstreams) == ["app"]


def test_proxy_pass_implicit_upstreams(tmp_path: Path, _fake_dns: list[str]) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - locations:
                - location: /a/
                  proxy_pass: http://127.0.0.1:8081/
                - location: /b/
                  proxy_pass: http://127.0.0.1:8081
                - location: /c/
                  proxy_pass: http://app.test
                - location: /d/
                  proxy_pass: "http://[::1]:9000/x"
        """,
    )
    a, b, c, d = (loc.settings.proxy_pass for loc in http(cfg).servers[0].locations)
    assert a == ProxyPass(
        scheme="http",
        host="127.0.0.1",
        port=8081,
        uri="/",
        upstream="127.0.0.1:8081",
        url="http://127.0.0.1:8081/",
    )
    assert b is not None and b.upstream == "127.0.0.1:8081" and b.uri is None
    assert a.proxy_host == "127.0.0.1:8081"
    assert c is not None and c.upstream == "app.test:80" and c.port == 80 and c.proxy_host == "app.test"
    assert d is not None and d.upstream == "[::1]:9000" and d.host == "::1"
    ups = http(cfg).upstreams
    assert set(ups) == {"127.0.0.1:8081", "app.test:80", "[::1]:9000"}
    assert all(u.implicit for u in ups.values())
    assert [s.name for s in ups["app.test:80"].servers] == ["10.0.0.1:80", "10.0.0.2:80"]
    assert _fake_dns.count("app.test") == 1


def test_proxy_pass_with_variables_is_not_resolved(tmp_path: Path, _fake_dns: list[str]) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - locations:
                - location: '~ ^/v/'
                  proxy_pass: http://$host:8080$request_uri
                - location: /w/
                  set: {$backend: "http://127.0.0.1:9000"}
                  proxy_pass: $backend
        """,
    )
    v, w = (loc.settings.proxy_pass for loc in http(cfg).servers[0].locations)
    assert v is not None and v.has_variables and v.upstream is None
    assert v.url == "http://$host:8080$request_uri"  # expanded and parsed per request
    assert w is not None and w.has_variables and w.host == "$backend"
    assert _fake_dns == []
    assert http(cfg).upstreams == {}


def test_proxy_pass_without_uri_in_regex_and_named_locations(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - locations:
                - location: '~ \\.php$'
                  proxy_pass: http://127.0.0.1:9000
                - location: '@back'
                  proxy_pass: http://127.0.0.1:9000
        """,
    )
    assert all(loc.settings.proxy_pass is not None for loc in http(cfg).servers[0].locations)


def test_proxy_pass_uri_in_named_location_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(
            tmp_path,
            "http:\n  servers:\n    - locations:\n        - location: '@x'\n"
            "          proxy_pass: http://127.0.0.1:1/\n",
        )
    assert info.value.message.startswith('"proxy_pass" cannot have URI part')


def test_unresolvable_names_in_both_places(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "http:\n  upstreams:\n    u:\n      servers: [one.test, x.test:81]\n")
    assert str(info.value) == f'host not found in upstream "x.test:81" in {tmp_path}/p.yaml:4'
