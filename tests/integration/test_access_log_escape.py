"""log_format ... escape=json with the real daemon: a request with quotes, a backslash, a tab, a
newline (decoded from the URI) and UTF-8 is logged as one line that parses as JSON with the values
the client sent; escape=none and default formats on the same request side by side."""

from __future__ import annotations

import json
import socket

from tests.integration.harness import Pyginx, basic_config, pyginx_fixture, wait_for  # noqa: F401


def test_json_none_and_default_escaping(pyginx: Pyginx) -> None:
    http = """
log_format:
  j: 'escape=json {"uri":"$uri","ua":"$http_user_agent","ref":"$http_referer","status":$status}'
  n: [escape=none, '$uri|', '$http_user_agent']
  d: 'escape=default $uri|$http_user_agent|$http_referer'
"""
    text = basic_config(pyginx.port, workers=1, http=http).replace(
        "      locations:\n",
        """      locations:
        - location: /a
          access_log: [logs/j.log j, logs/n.log n, logs/d.log d]
          return: 200 ok
""",
    )  # only our request is logged there (not the harness's readiness GET /)
    pyginx.write_config(text)
    pyginx.start()
    agent = 'say "hi"\\\tcaf\xc3\xa9'.encode("latin-1")
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.sendall(
            b"GET /a%22b%0Ac HTTP/1.1\r\nHost: x\r\nUser-Agent: " + agent + b"\r\nConnection: close\r\n\r\n"
        )
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply
    logs = pyginx.prefix / "logs"

    def last(name: str) -> bytes:
        path = logs / name
        return path.read_bytes() if path.exists() else b""

    wait_for(lambda: all(last(f) for f in ("j.log", "n.log", "d.log")), 5, "the three log lines")
    line = last("j.log")
    assert line.count(b"\n") == 1  # the newline in the URI is escaped: one line
    entry = json.loads(line)
    assert entry == {"uri": '/a"b\nc', "ua": 'say "hi"\\\tcafé', "ref": "", "status": 200}
    assert last("n.log") == b'/a"b\nc|' + agent + b"\n"
    assert last("d.log") == b"/a\\x22b\\x0Ac|say \\x22hi\\x22\\x5C\\x09caf\\xC3\\xA9|-\n"
    pyginx.check_log()
