"""proxy_cache_path and the proxy_cache_* directives: values, defaults, inheritance, nginx's errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyginx.config import load_config
from pyginx.config.model import MainConfig
from pyginx.errors import ConfigError


def load(tmp_path: Path, http: str, location: str = "") -> MainConfig:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    text = "http:\n" + textwrap.indent(textwrap.dedent(http).strip("\n"), "  ") + "\n"
    text += "  servers:\n    - listen: 127.0.0.1:8080\n      locations:\n        - location: /\n"
    text += "          proxy_pass: http://127.0.0.1:9\n"
    if location:
        text += textwrap.indent(textwrap.dedent(location).strip("\n"), " " * 10) + "\n"
    conf.write_text(text)
    return load_config(str(conf), str(tmp_path))


def error(tmp_path: Path, http: str, location: str = "") -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, http, location)
    return str(info.value)


def test_cache_path_parameters_and_the_zone(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        'proxy_cache_path: "cache/ levels=1:2 keys_zone=c:10m inactive=60m max_size=1g min_free=10m '
        "use_temp_path=off manager_files=5 manager_sleep=20ms manager_threshold=1s loader_files=7 "
        'loader_sleep=10ms loader_threshold=300ms"',
        "proxy_cache: c",
    )
    assert cfg.http is not None
    (cp,) = cfg.http.proxy_cache_paths
    assert cp.path == str(tmp_path / "cache") and cp.levels == (1, 2) and cp.zone == "c"
    assert cp.zone_size == 10 * 1024 * 1024 and cp.inactive == 3600 and cp.max_size == 1 << 30
    assert cp.min_free == 10 << 20 and not cp.use_temp_path
    assert (cp.manager_files, cp.manager_sleep, cp.manager_threshold) == (5, 0.02, 1.0)
    assert (cp.loader_files, cp.loader_sleep, cp.loader_threshold) == (7, 0.01, 0.3)
    (zone,) = cfg.http.zones
    assert (zone.name, zone.size, zone.tag) == ("c", 10 << 20, "proxy_cache")
    loc = cfg.http.servers[0].locations[0].settings
    assert loc.proxy_cache is not None and loc.proxy_cache.zone == "c"
    assert loc.proxy_cache_key == "$scheme$proxy_host$request_uri"  # nginx's default


def test_defaults_as_nginx(tmp_path: Path) -> None:
    cfg = load(tmp_path, 'proxy_cache_path: "c keys_zone=z:1m"')
    assert cfg.http is not None
    cp = cfg.http.proxy_cache_paths[0]
    assert cp.levels == () and cp.inactive == 600 and cp.max_size is None and cp.use_temp_path
    assert (cp.manager_files, cp.manager_sleep, cp.manager_threshold) == (100, 0.05, 0.2)
    s = cfg.http.servers[0].locations[0].settings
    assert s.proxy_cache is None and s.proxy_cache_min_uses == 1 and s.proxy_cache_use_stale == ("off",)
    assert s.proxy_cache_lock_timeout == 5 and s.proxy_cache_lock_age == 5 and s.proxy_cache_convert_head


def test_directive_values(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        'proxy_cache_path: ["a keys_zone=one:1m", "b keys_zone=two:1m"]\nproxy_cache: one',
        """
        proxy_cache_valid: ["10m", "404 1m", "any 5s"]
        proxy_cache_methods: POST
        proxy_cache_bypass: $cookie_nocache $arg_nocache
        proxy_no_cache: $http_pragma
        proxy_cache_use_stale: error timeout updating http_503
        proxy_ignore_headers: Cache-Control Set-Cookie
        proxy_cache_lock: true
        proxy_cache_key: "$host$uri"
        """,
    )
    assert cfg.http is not None
    s = cfg.http.servers[0].locations[0].settings
    assert s.proxy_cache is not None and s.proxy_cache.zone == "one"  # inherited from http
    assert s.proxy_cache_valid == ((200, 600), (301, 600), (302, 600), (404, 60), (0, 5))
    assert s.proxy_cache_methods == ("GET", "HEAD", "POST")
    assert s.proxy_cache_bypass == ("$cookie_nocache", "$arg_nocache") and s.proxy_no_cache == (
        "$http_pragma",
    )
    assert s.proxy_cache_use_stale == ("error", "timeout", "updating", "http_503")
    assert s.proxy_ignore_headers == ("cache-control", "set-cookie")
    assert s.proxy_cache_lock and s.proxy_cache_key == "$host$uri"
    assert [z.name for z in cfg.http.zones] == ["one", "two"]


@pytest.mark.parametrize(
    ("http", "location", "message"),
    [
        ('proxy_cache_path: "c levels=1:2"', "", '"proxy_cache_path" must have "keys_zone" parameter'),
        ('proxy_cache_path: "c keys_zone=z:1m levels=3"', "", 'invalid "levels" "levels=3"'),
        ('proxy_cache_path: "c keys_zone=z:1m levels=1:2:2:1"', "", 'invalid "levels" "levels=1:2:2:1"'),
        ('proxy_cache_path: "c keys_zone=z"', "", 'invalid keys zone size "keys_zone=z"'),
        ('proxy_cache_path: "c keys_zone=z:8k"', "", 'keys zone "keys_zone=z:8k" is too small'),
        ('proxy_cache_path: "c keys_zone=z:1m inactive=x"', "", 'invalid inactive value "inactive=x"'),
        ('proxy_cache_path: "c keys_zone=z:1m max_size=big"', "", 'invalid max_size value "max_size=big"'),
        ('proxy_cache_path: "c keys_zone=z:1m use_temp_path=maybe"', "", "invalid use_temp_path value"),
        ('proxy_cache_path: "c keys_zone=z:1m bogus=1"', "", 'invalid parameter "bogus=1"'),
        ('proxy_cache_path: ["a keys_zone=z:1m", "b keys_zone=z:1m"]', "", 'duplicate zone "z"'),
        ('proxy_cache_path: ["a keys_zone=y:1m", "a keys_zone=z:1m"]', "", "the same path name"),
        ('proxy_cache_path: "c keys_zone=z:1m"', "proxy_cache: nope", '"proxy_cache" zone "nope" is unknown'),
        ("", "proxy_cache_valid: 99 1m", 'invalid status "99"'),
        ("", "proxy_cache_valid: 200 soon", 'invalid time value "soon"'),
        ("", "proxy_cache_use_stale: sometimes", 'invalid value "sometimes"'),
        ("", "proxy_ignore_headers: Server", 'invalid value "Server"'),
        ("", "proxy_cache_methods: PUT", 'invalid value "PUT"'),
    ],
)
def test_errors_in_nginx_words_with_file_and_line(
    tmp_path: Path, http: str, location: str, message: str
) -> None:
    text = error(tmp_path, http or "default_type: text/plain", location)
    assert message in text
    assert f"{tmp_path}/conf/pyginx.yaml:" in text


def test_a_reload_keeping_a_zone_must_keep_its_path_and_levels() -> None:
    from pyginx.config.cache import reload_conflict
    from pyginx.config.model import CachePath

    old = (CachePath("/c", "z", 1 << 20, (1, 2)),)
    assert reload_conflict(old, (CachePath("/c", "z", 1 << 20, (1, 2)),)) is None
    assert reload_conflict(old, (CachePath("/d", "z", 2 << 20, (1,)),)) is None  # resized: a new zone
    assert reload_conflict(old, (CachePath("/d", "z", 1 << 20, (1, 2)),)) == (
        'cache "z" uses the "/d" cache path while previously it used the "/c" cache path'
    )
    assert (
        reload_conflict(old, (CachePath("/c", "z", 1 << 20, (2,)),))
        == 'cache "z" had previously different levels'
    )
