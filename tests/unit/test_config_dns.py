"""Configuration of issue 16: `resolver`, `resolver_timeout`, upstream `zone`, servers with `resolve`
and `service=`, the `readiness` location and `shutdown_delay` (pyginx extensions); errors in
nginx's words with file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyginx.config import MainConfig, load_config, resolve
from pyginx.config.model import Resolver
from pyginx.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup(host: str, port: int) -> list[tuple[str, int]]:
        raise AssertionError(f"{host} must not be resolved at load time")

    monkeypatch.setattr(resolve, "lookup", lookup)


def load(tmp_path: Path, text: str) -> MainConfig:
    conf = tmp_path / "p.yaml"
    conf.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_config(str(conf), str(tmp_path))


def upstream(tmp_path: Path, body: str, http_extra: str = 'resolver: "127.0.0.1:5353"') -> MainConfig:
    return load(
        tmp_path,
        f"""
http:
  {http_extra}
  upstreams:
    app:
{textwrap.indent(textwrap.dedent(body).strip(), "      ")}
""",
    )


def test_resolver_forms(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          resolver: "127.0.0.53 [::1]:5353 10.0.0.1:53 valid=30s ipv6=off"
          resolver_timeout: 5s
          servers:
            - listen: 127.0.0.1:8080
              locations:
                - location: /
                  resolver: 127.0.0.2
        """,
    )
    assert cfg.http is not None
    s = cfg.http.settings
    assert s.resolver == Resolver((("127.0.0.53", 53), ("::1", 5353), ("10.0.0.1", 53)), 30.0, True, False)
    assert s.resolver_timeout == 5.0
    loc = cfg.http.servers[0].locations[0].settings
    assert loc.resolver == Resolver((("127.0.0.2", 53),)) and loc.resolver_timeout == 5.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"127.0.0.1 valid=x"', "invalid parameter: valid=x in"),
        ('"127.0.0.1 ipv6=maybe"', "invalid parameter: ipv6=maybe in"),
        ('"127.0.0.1 ipv4=off ipv6=off"', '"ipv4" and "ipv6" cannot both be "off" in'),
        ('"dns.example:53"', "invalid parameter: dns.example:53 in"),
        ('"valid=10s"', 'invalid number of arguments in "resolver" directive in'),
    ],
)
def test_resolver_errors(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"http:\n  resolver: {value}\n")
    assert message in str(info.value) and "p.yaml:2" in str(info.value)


def test_resolve_servers(tmp_path: Path) -> None:
    cfg = upstream(
        tmp_path,
        """
        zone: "app 64k"
        servers:
          - backend.test:8080 resolve weight=2
          - 127.0.0.1:9001 resolve
          - svc.test service=http resolve
        """,
    )
    assert cfg.http is not None
    app = cfg.http.upstreams["app"]
    assert (app.zone, app.zone_size) == ("app", 65536)
    assert app.resolver == Resolver((("127.0.0.1", 5353),)) and app.resolver_timeout == 30.0
    # an address needs no DNS: a plain server; names wait for the worker's resolver
    assert [s.name for s in app.servers] == ["127.0.0.1:9001"] and not app.servers[0].resolve
    assert [(s.host, s.port, s.weight, s.service, s.written) for s in app.resolvable] == [
        ("backend.test", 8080, 2, None, "backend.test:8080"),
        ("svc.test", 80, 1, "http", "svc.test"),
    ]


def test_upstream_own_resolver(tmp_path: Path) -> None:
    cfg = upstream(
        tmp_path,
        """
        zone: app
        resolver: "127.0.0.9 valid=5s"
        resolver_timeout: 2s
        servers: [backend.test resolve]
        """,
        http_extra="keepalive_timeout: 5s",
    )
    assert cfg.http is not None
    app = cfg.http.upstreams["app"]
    assert app.resolver == Resolver((("127.0.0.9", 53),), 5.0) and app.resolver_timeout == 2.0


@pytest.mark.parametrize(
    ("body", "http_extra", "message"),
    [
        (
            "servers: [backend.test resolve]",
            'resolver: "127.0.0.1"',
            'resolving names at run time requires upstream "app" to be in shared memory in',
        ),
        (
            "zone: app\nservers: [backend.test resolve]",
            "keepalive_timeout: 5s",
            'no resolver defined to resolve names at run time in upstream "app" in',
        ),
        (
            "zone: app\nservers: [svc.test service=http]",
            'resolver: "127.0.0.1"',
            'service upstream "svc.test" requires "resolve" parameter in',
        ),
        (
            "zone: app\nservers: [svc.test:80 service=http resolve]",
            'resolver: "127.0.0.1"',
            'service upstream "svc.test:80" may not have port in',
        ),
        (
            "zone: app\nservers: [127.0.0.1 service=http resolve]",
            'resolver: "127.0.0.1"',
            'service upstream "127.0.0.1" requires domain name in',
        ),
        ("zone: app\nservers: [svc.test service= resolve]", 'resolver: "127.0.0.1"', "service is empty in"),
        ('zone: "app 1k"\nservers: [127.0.0.1:80]', 'resolver: "127.0.0.1"', 'zone "app" is too small in'),
        ('zone: "app 1q"\nservers: [127.0.0.1:80]', 'resolver: "127.0.0.1"', 'invalid zone size "1q" in'),
    ],
)
def test_upstream_errors(tmp_path: Path, body: str, http_extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        upstream(tmp_path, body, http_extra)
    assert message in str(info.value) and "p.yaml:" in str(info.value)


def test_readiness_and_shutdown_delay(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        shutdown_delay: 5s
        http:
          servers:
            - listen: 127.0.0.1:8080
              locations:
                - location: = /readyz
                  readiness: true
        """,
    )
    assert cfg.shutdown_delay == 5.0 and cfg.http is not None
    loc = cfg.http.servers[0].locations[0].settings
    assert loc.conf("readiness").on
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "http:\n  readiness: true\n")
    assert '"readiness" directive is not allowed here in' in str(info.value)
