"""The module spine against the real daemon: a module's content handler (empty_gif, the worked
example of docs/modules.md), the rewrite phases with the location search run again, the internal
redirect limit, try_files before proxy_pass, an `if` block inheriting its location's proxy_pass, and
unknown variables refused at load with file and line."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from pyginx.modules.empty_gif import GIF
from tests.integration.harness import Pyginx, http_get, pyginx_fixture  # noqa: F401


class _Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = f"origin {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _config(port: int, origin: int) -> str:
    return f"""
worker_processes: 1
error_log: logs/error.log info
http:
  access_log: off
  servers:
    - listen: 127.0.0.1:{port}
      root: html
      locations:
        - location: = /pixel.gif
          empty_gif: true
        - location: /loop/
          rewrite: "^/loop/(.*)$ /loop/$1 last"
        - location: /old/
          rewrite: "^/old/(.*)$ /new/$1 last"
        - location: /new/
          return: '200 "new $uri\\n"'
        - location: /tf/
          try_files: $uri @origin
          proxy_pass: http://127.0.0.1:{origin}
        - location: "@origin"
          return: 200 "named $uri"
        - location: /px/
          "if ($arg_local)": {{return: 200 local}}
          "if ($arg_up)": {{add_header: {{X-If: hit}}}}
          proxy_pass: http://127.0.0.1:{origin}
"""


def test_module_content_handler_and_rewrite_phases(pyginx: Pyginx, origin: int) -> None:
    (pyginx.prefix / "html" / "tf").mkdir(parents=True, exist_ok=True)
    (pyginx.prefix / "html" / "tf" / "here.txt").write_text("local file\n")
    pyginx.write_config(_config(pyginx.port, origin))
    pyginx.start()

    gif = pyginx.get("/pixel.gif")
    assert (gif.status, gif.headers["content-type"], gif.body) == (200, "image/gif", GIF)

    new = pyginx.get("/old/a/b")
    assert (new.status, new.body) == (200, b"new /new/a/b\n")  # `last` searched the location again

    loop = pyginx.get("/loop/x")
    assert loop.status == 500
    assert "rewrite or internal redirection cycle while processing" in pyginx.error_log()

    # try_files runs before the proxy: an existing file's URI is proxied, a missing one falls back
    assert pyginx.get("/tf/here.txt").body == b"origin /tf/here.txt"
    assert pyginx.get("/tf/missing").body == b"named /tf/missing"

    # an `if` block inherits the location's proxy_pass and adds its own headers
    assert pyginx.get("/px/a?local=1").body == b"local"
    up = pyginx.get("/px/a?up=1")
    assert (up.body, up.headers.get("x-if")) == (b"origin /px/a?up=1", "hit")
    plain = pyginx.get("/px/a")
    assert plain.body == b"origin /px/a" and "x-if" not in plain.headers
    pyginx.check_log(allow=("rewrite or internal redirection cycle",))


def test_unknown_variable_is_refused_with_file_and_line(pyginx: Pyginx) -> None:
    path = pyginx.write_config(
        f"""
http:
  servers:
    - listen: 127.0.0.1:{pyginx.port}
      locations:
        - location: /
          add_header: {{X-Client: $remote_adr}}
"""
    )
    result = pyginx.run_cli("-t")
    assert result.returncode == 1
    assert f'unknown "remote_adr" variable in {path}:7' in result.stderr
