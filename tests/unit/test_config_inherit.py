"""nginx's inheritance: http -> server -> location -> nested location."""

from __future__ import annotations

import textwrap
from pathlib import Path

from pyginx.config import MainConfig, load_config
from pyginx.config.model import HeaderValue, Location, Return, Server, TryFiles
from pyginx.modules.rewrite import returns_of


def load(tmp_path: Path, text: str) -> MainConfig:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_config(str(conf), str(tmp_path))


def servers(cfg: MainConfig) -> tuple[Server, ...]:
    assert cfg.http is not None
    return cfg.http.servers


def find(locs: tuple[Location, ...], name: str) -> Location:
    return next(loc for loc in locs if loc.name == name)


CONF = """
http:
  client_max_body_size: 2m
  keepalive_timeout: 10s
  add_header: {X-Http: h}
  proxy_set_header: {X-From: http}
  error_page: {404: /http404.html}
  access_log: logs/http.log
  servers:
    - listen: 127.0.0.1:8080
      client_max_body_size: 3m
      add_header: {X-Server: s}
      locations:
        - location: /inherit/
        - location: /own/
          client_max_body_size: 4m
          add_header: {X-Loc: l}
          error_page: {500: /loc500.html}
          access_log: "off"
          proxy_set_header: {X-From: loc}
          locations:
            - location: /own/nested/
            - location: /own/nested2/
              add_header: {X-Nested: n}
              client_max_body_size: 5m
    - listen: 127.0.0.1:8081
      locations:
        - location: /
"""


def test_scalar_directives_inner_wins(tmp_path: Path) -> None:
    first, second = servers(load(tmp_path, CONF))
    assert first.settings.client_max_body_size == 3 * 1024**2
    assert find(first.locations, "/inherit/").settings.client_max_body_size == 3 * 1024**2
    own = find(first.locations, "/own/")
    assert own.settings.client_max_body_size == 4 * 1024**2
    assert find(own.locations, "/own/nested/").settings.client_max_body_size == 4 * 1024**2
    assert find(own.locations, "/own/nested2/").settings.client_max_body_size == 5 * 1024**2
    # the second server sets nothing: http's value everywhere
    assert second.settings.client_max_body_size == 2 * 1024**2
    assert second.locations[0].settings.client_max_body_size == 2 * 1024**2
    assert second.locations[0].settings.keepalive_timeout == 10.0


def test_add_header_replaces_only_when_set(tmp_path: Path) -> None:
    first, second = servers(load(tmp_path, CONF))
    assert second.settings.add_header == (HeaderValue("X-Http", "h"),)
    assert first.settings.add_header == (HeaderValue("X-Server", "s"),)  # not X-Http as well
    assert find(first.locations, "/inherit/").settings.add_header == (HeaderValue("X-Server", "s"),)
    own = find(first.locations, "/own/")
    assert own.settings.add_header == (HeaderValue("X-Loc", "l"),)
    assert find(own.locations, "/own/nested/").settings.add_header == (HeaderValue("X-Loc", "l"),)
    assert find(own.locations, "/own/nested2/").settings.add_header == (HeaderValue("X-Nested", "n"),)


def test_error_page_access_log_proxy_set_header_replace_only_when_set(tmp_path: Path) -> None:
    first, _ = servers(load(tmp_path, CONF))
    inherit = find(first.locations, "/inherit/").settings
    own = find(first.locations, "/own/")
    assert inherit.error_page == ((404, "/http404.html", None),)
    assert own.settings.error_page == ((500, "/loc500.html", None),)
    assert find(own.locations, "/own/nested/").settings.error_page == ((500, "/loc500.html", None),)
    assert inherit.access_log[0].path == f"{tmp_path}/logs/http.log"
    assert own.settings.access_log[0].path is None
    assert inherit.proxy_set_header == (HeaderValue("X-From", "http"),)
    assert own.settings.proxy_set_header == (HeaderValue("X-From", "loc"),)


def test_location_own_directives_are_not_inherited(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - try_files: $uri /server.html
              locations:
                - location: /p/
                  proxy_pass: http://127.0.0.1:9000
                  internal: true
                  return: 403
                  try_files: $uri =404
                  locations:
                    - location: /p/n/
                - location: /plain/
        """,
    )
    (server,) = servers(cfg)
    assert server.settings.try_files == TryFiles(("$uri",), "/server.html")
    p = find(server.locations, "/p/")
    assert p.settings.proxy_pass is not None and p.settings.internal
    assert returns_of(p.settings) == (Return(403),)
    nested = p.locations[0].settings
    assert nested.proxy_pass is None and nested.internal is False
    assert returns_of(nested) == () and nested.try_files is None
    # server-level try_files applies only when no location matches, as in nginx
    assert find(server.locations, "/plain/").settings.try_files is None


def test_server_return_runs_in_the_server_rewrite_phase(tmp_path: Path) -> None:
    """A server's `return` stays in the server's script (run before any location is chosen, so it
    wins everywhere); locations keep their own scripts."""
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - return: 301 https://example.com$request_uri
              locations:
                - location: /
                  return: 404
                  locations:
                    - location: /x/
        """,
    )
    (server,) = servers(cfg)
    want = Return(301, "https://example.com$request_uri")
    assert returns_of(server.settings) == (want,)
    assert returns_of(server.locations[0].settings) == (Return(404),)
    assert returns_of(server.locations[0].locations[0].settings) == ()


def test_root_and_alias_merge_as_one(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          root: /srv/http
          servers:
            - locations:
                - location: /a/
                  alias: /srv/alias/
                  locations:
                    - location: /a/r/
                      root: /srv/r
                    - location: /a/i/
                - location: /b/
        """,
    )
    (server,) = servers(cfg)
    a = find(server.locations, "/a/")
    assert a.settings.alias == "/srv/alias/"
    r = find(a.locations, "/a/r/")
    assert (r.settings.root, r.settings.alias) == ("/srv/r", None)
    i = find(a.locations, "/a/i/")
    assert i.settings.alias == "/srv/alias/"
    b = find(server.locations, "/b/")
    assert (b.settings.root, b.settings.alias) == ("/srv/http", None)


def test_keepalive_timeout_sets_both_fields_together(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          keepalive_timeout: 75s 60s
          servers:
            - keepalive_timeout: 5s
        """,
    )
    assert cfg.http is not None
    assert cfg.http.settings.keepalive_header_timeout == 60.0
    (server,) = servers(cfg)
    assert (server.settings.keepalive_timeout, server.settings.keepalive_header_timeout) == (5.0, None)


def test_error_log_at_http_levels(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        error_log: logs/main.log
        http:
          servers:
            - error_log: stderr debug
              locations:
                - location: /
            - listen: 8081
        """,
    )
    one, two = servers(cfg)
    assert one.locations[0].settings.error_log is not None
    assert one.locations[0].settings.error_log.level == "debug"
    assert two.settings.error_log is None  # = the main error_log
