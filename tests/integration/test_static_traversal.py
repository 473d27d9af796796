"""A traversal corpus against the real daemon (issue 4): hundreds of encodings of "climb out of the
root and read the canary" under root, prefix alias, the alias-without-trailing-slash trap, regex alias
and try_files locations, and symlinks pointing out. Every answer must be 400, 403 or 404, and no
response may ever carry the canary's bytes."""

from __future__ import annotations

import itertools
import socket

import pytest

from tests.integration.harness import Pyginx, pyginx_fixture  # noqa: F401

CANARY = b"CANARY-7f3a9c-OUTSIDE-THE-ROOT"


def _raw_get(port: int, target: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else 0
    return status, out


def corpus() -> list[bytes]:
    dots = [
        b"..",
        b"%2e%2e",
        b"%2E%2E",
        b".%2e",
        b"%2e.",
        b"%252e%252e",  # double encoding: decodes once to a literal "%2e%2e" name
        b"%c0%ae%c0%ae",  # overlong UTF-8 for "."
        b"%e0%80%ae%e0%80%ae",
        b"\xc0\xae\xc0\xae",
        b"%u002e%u002e",
        b"..%00",
        b"%2e%2e%00",
        b"...",
        b"....",
    ]
    seps = [b"/", b"%2f", b"%2F", b"\\", b"%5c", b"%5C", b"%252f", b"//", b"/./", b"%c0%af", b"/%2e/"]
    prefixes = [b"/", b"/sub/", b"/img", b"/img/", b"/files/", b"/re/", b"/tf/", b"/files/sub/"]
    targets = [b"canary.txt", b"secret/canary.txt", b"canary%2etxt"]
    out: set[bytes] = set()
    for prefix, dot, sep, depth in itertools.product(prefixes, dots, seps, (1, 3)):
        out.add(prefix + (dot + sep) * depth + targets[depth % 2])
    for prefix, target in itertools.product(prefixes, targets):
        out.add(prefix + b"../" + target)
        out.add(prefix + b"..;/" + target)
        out.add(prefix + b"%2e%2e%2f" + target)
    out.update(
        [
            b"/img../canary.txt",
            b"/img../secret/canary.txt",
            b"/img..%2fcanary.txt",
            b"/img%2e%2e/canary.txt",
            b"/img%2e%2e%2fsecret%2fcanary.txt",
            b"/imgx/../canary.txt",
            b"/link_out",
            b"/sub/link_up/canary.txt",
            b"/sub/link_up/secret/canary.txt",
            b"/files/link_out",
            b"/re/link_out",
            b"/tf/link_out",
            b"/canary.txt%00.html",
            b"/%00/canary.txt",
            b"/canary.txt",
        ]
    )
    return sorted(out)


@pytest.fixture
def site(pyginx: Pyginx) -> Pyginx:  # noqa: F811
    prefix = pyginx.prefix
    (prefix / "canary.txt").write_bytes(CANARY)
    (prefix / "secret").mkdir()
    (prefix / "secret" / "canary.txt").write_bytes(CANARY)
    html = prefix / "html"
    (html / "sub").mkdir()
    (html / "sub" / "inside.txt").write_bytes(b"inside")
    (html / "link_out").symlink_to(prefix / "canary.txt")
    (html / "sub" / "link_up").symlink_to(prefix)
    pyginx.write_config(
        f"""
worker_processes: 2
error_log: logs/error.log info
http:
  access_log: off
  log_not_found: false
  servers:
    - listen: 127.0.0.1:{pyginx.port}
      server_name: localhost
      root: html
      locations:
        - location: /
        - location: /img
          alias: {html}/sub/
        - location: /files/
          alias: {html}/
          autoindex: true
        - location: ~ ^/re/(.*)$
          alias: {html}/$1
        - location: /tf/
          try_files: $uri $uri/ =404
"""
    )
    pyginx.start()
    return pyginx


def test_sanity_inside_files_are_served(site: Pyginx) -> None:
    assert _raw_get(site.port, b"/sub/inside.txt")[0] == 200
    assert _raw_get(site.port, b"/img/inside.txt")[0] == 200
    assert _raw_get(site.port, b"/files/sub/inside.txt")[0] == 200
    assert _raw_get(site.port, b"/re/sub/inside.txt")[0] == 200


def test_traversal_corpus(site: Pyginx) -> None:
    variants = corpus()
    assert len(variants) >= 500
    seen: dict[int, int] = {}
    for target in variants:
        status, out = _raw_get(site.port, target)
        assert CANARY not in out, target
        assert status in (400, 403, 404), (target, status, out[:300])
        seen[status] = seen.get(status, 0) + 1
    print("traversal corpus statuses:", seen)
    # the corpus exercises every line of defence
    assert seen.get(400, 0) > 50 and seen.get(404, 0) > 50 and seen.get(403, 0) > 3, seen
    site.check_log()
