"""`include`: mapping and block-list forms, globs, errors naming the included file, cycles, -T."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyginx.config import config_dump, load_config
from pyginx.errors import ConfigError


def write(base: Path, name: str, text: str) -> Path:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path: Path, main: str):  # type: ignore[no-untyped-def]
    conf = write(tmp_path, "conf/pyginx.yaml", main)
    return load_config(str(conf), str(tmp_path))


def error_of(tmp_path: Path, main: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, main)
    return str(info.value)


SERVER_MAIN = """
http:
  servers:
    - listen: 127.0.0.1:8080
      include: common.yaml
      locations:
        - location: /
"""


def test_mapping_form_merges_directives_into_the_block(tmp_path: Path) -> None:
    write(tmp_path, "conf/common.yaml", "root: /srv/www\nkeepalive_timeout: 5s\n")
    cfg = load(tmp_path, SERVER_MAIN)
    server = cfg.http.servers[0]
    assert server.settings.root == "/srv/www"
    assert server.settings.keepalive_timeout == 5.0
    assert server.locations[0].settings.root == "/srv/www"  # inherited as if written in the server


def test_glob_in_list_form_expands_to_blocks_sorted(tmp_path: Path) -> None:
    write(tmp_path, "conf/conf.d/b.yaml", "listen: 127.0.0.1:8082\nserver_name: b\n")
    write(
        tmp_path,
        "conf/conf.d/a.yaml",
        "- listen: 127.0.0.1:8081\n  server_name: a1\n- listen: 127.0.0.1:8081\n  server_name: a2\n",
    )
    write(tmp_path, "conf/conf.d/empty.yaml", "# nothing\n")
    write(tmp_path, "conf/conf.d/skip.txt", "not: yaml: at all\n")
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - listen: 127.0.0.1:8080
              server_name: main
            - include: conf.d/*.yaml
        """,
    )
    assert [s.server_names[0] for s in cfg.http.servers] == ["main", "a1", "a2", "b"]


def test_locations_from_an_included_file(tmp_path: Path) -> None:
    write(tmp_path, "conf/locs.yaml", "- location: /a/\n  return: 200 a\n- location: = /b\n")
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - listen: 127.0.0.1:8080
              locations:
                - location: /
                - include: locs.yaml
        """,
    )
    assert [loc.match for loc in cfg.http.servers[0].locations] == ["/", "/a/", "/b"]


def test_list_of_paths_and_nested_includes(tmp_path: Path) -> None:
    write(tmp_path, "conf/one.yaml", "include: sub/two.yaml\n")
    write(tmp_path, "conf/sub/two.yaml", "worker_processes: 3\n")  # relative to the MAIN file's dir
    write(tmp_path, "conf/three.yaml", "pid: logs/x.pid\n")
    cfg = load(tmp_path, "include: [one.yaml, three.yaml]\n")
    assert cfg.worker_processes == 3
    assert cfg.pid.endswith("logs/x.pid")


def test_a_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    cfg = load(tmp_path, "include: nothing/*.yaml\nworker_processes: 2\n")
    assert cfg.worker_processes == 2


def test_a_missing_plain_path_is_nginx_open_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, "worker_processes: 2\ninclude: missing.yaml\n")
    assert message == (
        f'open() "{tmp_path}/conf/missing.yaml" failed (2: No such file or directory)'
        f" in {tmp_path}/conf/pyginx.yaml:2"
    )


def test_unknown_directive_names_the_included_file_and_line(tmp_path: Path) -> None:
    inc = write(tmp_path, "conf/common.yaml", "root: /srv\n\nrooot: x\n")
    assert error_of(tmp_path, SERVER_MAIN) == f'unknown directive "rooot" in {inc}:3'


def test_bad_value_names_the_included_file_and_line(tmp_path: Path) -> None:
    inc = write(tmp_path, "conf/common.yaml", "client_max_body_size: 10q\n")
    assert error_of(tmp_path, SERVER_MAIN) == (
        f'invalid value "10q" in "client_max_body_size" directive in {inc}:1'
    )


def test_wrong_context_in_an_included_block(tmp_path: Path) -> None:
    inc = write(
        tmp_path, "conf/s.yaml", "listen: 127.0.0.1:8080\nlocations:\n  - location: /\n    listen: 80\n"
    )
    message = error_of(tmp_path, "http:\n  servers:\n    - include: s.yaml\n")
    assert message == f'"listen" directive is not allowed here in {inc}:4'


def test_yaml_error_names_the_included_file(tmp_path: Path) -> None:
    inc = write(tmp_path, "conf/common.yaml", "root: /srv\nindex: [a, b\n")
    message = error_of(tmp_path, SERVER_MAIN)
    assert message == f'unexpected end of file, expecting "," or "]" to close the "[" opened here in {inc}:2'


def test_duplicate_across_files_names_both_places(tmp_path: Path) -> None:
    inc = write(tmp_path, "conf/common.yaml", "index: a.html\nroot: /srv\n")
    main = write(
        tmp_path,
        "conf/pyginx.yaml",
        "http:\n  servers:\n    - listen: 127.0.0.1:8080\n      root: html\n      include: common.yaml\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(str(main), str(tmp_path))
    assert str(info.value) == f'"root" directive is duplicate (first set in {main}:4) in {inc}:2'


def test_duplicate_between_two_included_files(tmp_path: Path) -> None:
    a = write(tmp_path, "conf/d/a.yaml", "worker_processes: 1\n")
    b = write(tmp_path, "conf/d/b.yaml", "# b\nworker_processes: 2\n")
    message = error_of(tmp_path, "include: d/*.yaml\n")
    assert message == f'"worker_processes" directive is duplicate (first set in {a}:1) in {b}:2'


def test_include_cycle_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "conf/a.yaml", "include: b.yaml\n")
    b = write(tmp_path, "conf/b.yaml", "include: a.yaml\n")
    message = error_of(tmp_path, "include: a.yaml\n")
    assert message == f'include cycle: "{tmp_path}/conf/a.yaml" includes itself in {b}:1'


def test_including_the_main_file_is_a_cycle(tmp_path: Path) -> None:
    message = error_of(tmp_path, "http:\n  include: pyginx.yaml\n")
    assert "include cycle" in message and message.endswith("pyginx.yaml:2")


def test_a_list_where_directives_are_expected(tmp_path: Path) -> None:
    write(tmp_path, "conf/list.yaml", "- a\n- b\n")
    message = error_of(tmp_path, "http:\n  include: list.yaml\n")
    assert message.startswith(f'"{tmp_path}/conf/list.yaml" must hold a mapping of directives')
    assert message.endswith("pyginx.yaml:2")


def test_upstreams_may_come_from_an_include(tmp_path: Path) -> None:
    write(tmp_path, "conf/ups.yaml", "app:\n  servers: [127.0.0.1:9001]\n")
    cfg = load(
        tmp_path,
        """
        http:
          upstreams:
            include: ups.yaml
          servers:
            - listen: 127.0.0.1:8080
              locations:
                - location: /
                  proxy_pass: http://app
        """,
    )
    assert "app" in cfg.http.upstreams


def test_dump_prints_every_file_read(tmp_path: Path) -> None:
    inc = write(tmp_path, "conf/common.yaml", "root: /srv\n")
    cfg = load(tmp_path, SERVER_MAIN)
    text = config_dump(cfg)
    main = tmp_path / "conf" / "pyginx.yaml"
    assert text.index(f"# configuration file {main}:\n") < text.index(f"# configuration file {inc}:\n")
    assert text.endswith("root: /srv\n")
    assert text.count("# configuration file") == 2


def test_the_shipped_configuration_reads_its_servers_from_conf_d() -> None:
    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(str(repo / "conf" / "pyginx.yaml"), str(repo))
    assert [f for f, _ in cfg.extra_files] == [
        str(repo / "conf" / "conf.d" / "default.yaml"),
        str(repo / "conf" / "conf.d" / "origin.yaml"),
    ]
    main, origin = cfg.http.servers
    assert [str(a) for a in main.listen] == ["127.0.0.1:8080"] and main.listen[0].default_server
    assert main.settings.root == str(repo / "html")
    assert [loc.match for loc in main.locations] == ["/", "/proxied/", "/50x.html"]
    assert [str(a) for a in origin.listen] == ["127.0.0.1:8081"]
    assert origin.server_names == ("origin",)
