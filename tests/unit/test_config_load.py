"""Loading as a whole: defaults, relative paths, the shipped configuration, -T output."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from pyginx.config import MainConfig, config_dump, load_config
from pyginx.config.model import AccessLog, ErrorLog, Events, HttpSettings

REPO = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, text: str) -> MainConfig:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_config(str(conf), str(tmp_path))


def test_empty_file_gives_nginx_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, "# nothing yet\n")
    assert cfg.file == str(tmp_path / "conf" / "pyginx.yaml")
    assert cfg.prefix == str(tmp_path)
    assert cfg.worker_processes == 1
    assert cfg.master_process is True
    assert cfg.daemon is False
    assert cfg.pid == f"{tmp_path}/logs/pyginx.pid"
    assert cfg.error_log == ErrorLog(path=f"{tmp_path}/logs/error.log", level="error")
    assert cfg.events == Events()
    assert cfg.http is None
    assert cfg.source_text == "# nothing yet\n"


def test_main_and_events(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        worker_processes: 3
        master_process: off
        daemon: true
        pid: /run/p.pid
        error_log: stderr info
        worker_shutdown_timeout: 1m 30s
        worker_rlimit_nofile: 65536
        worker_heartbeat_timeout: 20s
        user: nobody nogroup
        events:
          worker_connections: 1024
          multi_accept: "on"
          accept_mutex: false
        """,
    )
    assert cfg.worker_processes == 3
    assert cfg.master_process is False
    assert cfg.daemon is True
    assert cfg.pid == "/run/p.pid"
    assert cfg.error_log == ErrorLog(path=None, level="info")
    assert cfg.worker_shutdown_timeout == 90.0
    assert cfg.worker_rlimit_nofile == 65536
    assert cfg.worker_heartbeat_timeout == 20.0
    assert cfg.user == ("nobody", "nogroup")
    assert cfg.events == Events(worker_connections=1024, multi_accept=True, accept_mutex=False)


def test_worker_processes_auto(tmp_path: Path) -> None:
    cfg = load(tmp_path, "worker_processes: auto\n")
    assert cfg.worker_processes == (os.cpu_count() or 1)


def test_user_without_group(tmp_path: Path) -> None:
    assert load(tmp_path, "user: www\n").user == ("www", None)


def test_http_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, "http:\n  servers:\n    - server_name: a\n")
    assert cfg.http is not None
    s = cfg.http.settings
    assert s.root == f"{tmp_path}/html"
    assert s.access_log == (AccessLog(path=f"{tmp_path}/logs/access.log", format_name="combined"),)
    assert s.error_log is None
    expected = HttpSettings(root=s.root, access_log=s.access_log)
    assert s == expected  # everything else as nginx's defaults in the model
    assert cfg.http.log_formats["combined"] == (
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent"'
    )
    assert cfg.http.upstreams == {}
    (server,) = cfg.http.servers
    assert server.locations == ()
    assert server.settings == s


def test_server_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, "http:\n  servers:\n    - root: www\n")
    assert cfg.http is not None
    (server,) = cfg.http.servers
    port = 80 if os.geteuid() == 0 else 8000
    (la,) = server.listen
    assert (la.host, la.port, la.default_server) == ("0.0.0.0", port, False)
    assert server.server_names == ("",)
    assert server.primary_name == ""
    assert server.pos is not None and server.pos.line == 3


def test_relative_paths_resolve_against_the_prefix(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        pid: run/p.pid
        error_log: logs/e.log warn
        http:
          root: www/
          access_log: logs/a.log
          error_log: logs/http-error.log
          servers:
            - listen: unix:run/p.sock
              locations:
                - location: /s/
                  alias: static/
                - location: /abs/
                  root: /srv/abs/
                - location: /var/
                  root: $document_root/x
                - location: /u/
                  proxy_pass: http://unix:run/app.sock:/
        """,
    )
    p = str(tmp_path)
    assert cfg.pid == f"{p}/run/p.pid"
    assert cfg.error_log == ErrorLog(path=f"{p}/logs/e.log", level="warn")
    assert cfg.http is not None
    s = cfg.http.settings
    assert s.root == f"{p}/www"  # nginx drops root's trailing slash
    assert s.access_log[0].path == f"{p}/logs/a.log"
    assert s.error_log == ErrorLog(path=f"{p}/logs/http-error.log", level="error")
    (server,) = cfg.http.servers
    assert server.listen[0].unix == f"{p}/run/p.sock"
    alias, absolute, variable, unix = server.locations
    assert alias.settings.alias == f"{p}/static/"  # alias keeps its slash
    assert absolute.settings.root == "/srv/abs"
    assert variable.settings.root == "$document_root/x"
    pp = unix.settings.proxy_pass
    assert pp is not None and pp.unix == f"{p}/run/app.sock" and pp.uri == "/"
    assert pp.upstream == f"unix:{p}/run/app.sock"
    ups = cfg.http.upstreams[pp.upstream]
    assert ups.implicit and ups.servers[0].unix == f"{p}/run/app.sock" and ups.servers[0].address is None


def test_config_path_relative_to_prefix(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.yaml").write_text("worker_processes: 2\n")
    cfg = load_config("conf/x.yaml", str(tmp_path))
    assert cfg.file == f"{tmp_path}/conf/x.yaml"
    assert cfg.worker_processes == 2


def test_dump(tmp_path: Path) -> None:
    text = "worker_processes: 2  # two\n"
    cfg = load(tmp_path, text)
    assert config_dump(cfg) == f"# configuration file {tmp_path}/conf/pyginx.yaml:\n{text}"
    cfg2 = load(tmp_path, "daemon: false")  # no final newline
    assert config_dump(cfg2).endswith("daemon: false\n")


def test_dump_then_load_is_stable(tmp_path: Path) -> None:
    text = "http:\n  servers:\n    - listen: 127.0.0.1:8080\n"
    cfg = load(tmp_path, text)
    body = config_dump(cfg).split("\n", 1)[1]
    assert body == text
    (tmp_path / "again.yaml").write_text(body)
    again = load_config(str(tmp_path / "again.yaml"), str(tmp_path))
    assert again.http is not None and cfg.http is not None
    assert again.http.settings == cfg.http.settings
    assert [la.key for la in again.http.servers[0].listen] == [la.key for la in cfg.http.servers[0].listen]


def test_warnings_for_conflicting_server_names(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - {listen: 127.0.0.1:8080, server_name: a.test}
            - {listen: 127.0.0.1:8080, server_name: A.test}
        """,
    )
    assert cfg.warnings == ('conflicting server name "a.test" on 127.0.0.1:8080, ignored',)


def test_yaml_anchors_share_settings(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - &site
              listen: 127.0.0.1:8080
              root: site
              index: a.html
            - <<: *site
              listen: 127.0.0.1:8081
        """,
    )
    assert cfg.http is not None
    one, two = cfg.http.servers
    assert one.settings.root == two.settings.root == f"{tmp_path}/site"
    assert two.listen[0].port == 8081 and two.settings.index == ("a.html",)


def test_shipped_configuration_loads(tmp_path: Path) -> None:
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    cfg = load_config("conf/pyginx.yaml", str(tmp_path))
    assert cfg.daemon is False
    assert cfg.pid == f"{tmp_path}/logs/pyginx.pid"
    assert cfg.worker_processes == (os.cpu_count() or 1)
    assert cfg.http is not None
    main, origin = cfg.http.servers
    assert [str(la) for la in main.listen] == ["127.0.0.1:8080"]
    assert [str(la) for la in origin.listen] == ["127.0.0.1:8081"]
    assert main.settings.root == f"{tmp_path}/html"
    assert main.settings.default_type == "application/octet-stream"
    assert main.settings.sendfile is True
    assert (404, "/404.html", None) in main.settings.error_page
    log = main.settings.access_log[0]
    assert (log.format_name, log.buffer_size, log.flush) == ("combined", 32 * 1024, 1.0)
    proxied = next(loc for loc in main.locations if loc.match == "/proxied/")
    pp = proxied.settings.proxy_pass
    assert pp is not None and pp.upstream is not None
    ups = cfg.http.upstreams[pp.upstream]
    assert [s.name for s in ups.servers] == ["127.0.0.1:8081"]


@pytest.mark.parametrize("page", ["index.html", "404.html", "50x.html"])
def test_default_site_pages_exist(page: str) -> None:
    text = (REPO / "html" / page).read_text()
    assert text.startswith("<!DOCTYPE html>")
    if page == "index.html":
        assert "Welcome to pyginx!" in text


def test_user_warning_when_not_root(tmp_path: Path) -> None:
    cfg = load(tmp_path, "user: nobody\n")
    warned = any('"user" directive makes sense only' in w for w in cfg.warnings)
    assert warned == (os.geteuid() != 0)


def test_listen_options_once_per_address(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - listen: 8080 default_server backlog=128
            - listen: 8080
        """,
    )
    assert cfg.http is not None
    assert [la.backlog for s in cfg.http.servers for la in s.listen] == [128, 511]
