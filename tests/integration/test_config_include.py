"""`include` on the real daemon: servers from conf.d/, a reload that re-reads an included file, and
a reload whose included file is broken (the old configuration keeps serving, the error names the file)."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

from tests.integration.harness import (
    Pyginx,
    free_port,
    http_get,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
    wait_for,
)


def main_config() -> str:
    return textwrap.dedent(
        """
        worker_processes: 1
        error_log: logs/error.log info
        pid: logs/pyginx.pid
        worker_shutdown_timeout: 5s
        http:
          access_log: logs/access.log
          keepalive_timeout: 5s
          include: http.d/*.yaml
          servers:
            - include: conf.d/*.yaml
        """
    ).lstrip()


def site(port: int, body: str) -> str:
    return textwrap.dedent(
        f"""
        listen: 127.0.0.1:{port}
        root: html
        locations:
          - location: /
            return: 200 {body}
          - include: locations.d/*.yaml   # relative to the main file's directory
        """
    ).lstrip()


def write(pyginx: Pyginx, name: str, text: str) -> Path:
    (pyginx.prefix / name).parent.mkdir(parents=True, exist_ok=True)
    return pyginx.write_config(text, name)


def test_servers_and_locations_from_included_files(pyginx: Pyginx) -> None:
    other = free_port()
    pyginx.write_config(main_config())
    write(pyginx, "conf/conf.d/a.yaml", site(pyginx.port, "one"))
    write(pyginx, "conf/conf.d/b.yaml", site(other, "other"))
    write(pyginx, "conf/locations.d/x.yaml", "- location: = /extra\n  return: 200 extra\n")
    write(pyginx, "conf/http.d/headers.yaml", "add_header: {X-Included: included}\n")
    pyginx.start()
    response = pyginx.get("/")
    assert (response.status, response.body) == (200, b"one")
    assert response.headers.get("x-included") == "included"
    assert pyginx.get("/extra").body == b"extra"
    assert http_get(other, "/").body == b"other"
    dump = pyginx.run_cli("-T")
    assert dump.returncode == 0, dump.stderr
    for name in (
        "pyginx.yaml",
        "conf.d/a.yaml",
        "conf.d/b.yaml",
        "locations.d/x.yaml",
        "http.d/headers.yaml",
    ):
        assert f"# configuration file {pyginx.prefix / 'conf' / name}:\n" in dump.stdout


def test_reload_rereads_included_files_and_keeps_the_old_on_error(pyginx: Pyginx) -> None:
    pyginx.write_config(main_config())
    included = write(pyginx, "conf/conf.d/a.yaml", site(pyginx.port, "one"))
    pyginx.start()
    assert pyginx.get("/").body == b"one"

    included.write_text(site(pyginx.port, "two"))
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: pyginx.get("/").body == b"two", 10, "the changed included file to serve")

    # A broken included file: the reload fails, logged with the included file and line.
    included.write_text(site(pyginx.port, "three") + "rooot: html\n")
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: 'unknown directive "rooot"' in pyginx.error_log(), 10, "the reload error")
    line = next(x for x in pyginx.error_log().splitlines() if 'unknown directive "rooot"' in x)
    assert "[emerg]" in line and f"in {included}:7" in line
    pyginx.allow = ('unknown directive "rooot"', 'to close the "["')
    assert pyginx.get("/").body == b"two"

    # A YAML mistake in it: the same, with the included file's line.
    included.write_text(site(pyginx.port, "four") + "index: [a, b\n")
    pyginx.signal(signal.SIGHUP)
    wait_for(lambda: 'to close the "["' in pyginx.error_log(), 10, "the YAML error")
    line = next(x for x in pyginx.error_log().splitlines() if 'to close the "["' in x)
    assert f"in {included}:7" in line
    assert pyginx.get("/").body == b"two"
