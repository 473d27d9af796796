"""expires and add_header on static responses (issue 4, item 3), on the real daemon: nginx's values,
the statuses they apply to, `always`, and inheritance (an inner add_header replaces the outer ones)."""

from __future__ import annotations

import email.utils
import time

import pytest

from tests.integration.harness import Pyginx, pyginx_fixture  # noqa: F401
from tests.integration.test_static_files import request


@pytest.fixture
def site(pyginx: Pyginx) -> Pyginx:  # noqa: F811
    html = pyginx.prefix / "html"
    for sub in ("hour", "epoch", "max", "off", "neg", "inner", "always"):
        (html / sub).mkdir()
        (html / sub / "f.txt").write_bytes(b"x")
    (html / "f.txt").write_bytes(b"x")
    pyginx.write_config(
        f"""
worker_processes: 1
error_log: logs/error.log info
http:
  access_log: off
  servers:
    - listen: 127.0.0.1:{pyginx.port}
      root: html
      add_header: {{X-Server: s}}
      locations:
        - location: /
        - location: /hour/
          expires: 1h
        - location: /epoch/
          expires: epoch
        - location: /max/
          expires: max
        - location: /off/
          expires: "off"
        - location: /neg/
          expires: -1
        - location: /inner/
          add_header: {{X-Inner: i}}
        - location: /always/
          add_header: {{X-Always: "a always", X-Plain: p}}
"""
    )
    pyginx.start()
    return pyginx


def test_expires(site: Pyginx) -> None:
    status, h, _ = request(site.port, "/hour/f.txt")
    assert status == 200 and h["cache-control"] == "max-age=3600"
    expires = email.utils.parsedate_to_datetime(h["expires"]).timestamp()
    assert abs(expires - (time.time() + 3600)) < 5
    _, h, _ = request(site.port, "/epoch/f.txt")
    assert (h["expires"], h["cache-control"]) == ("Thu, 01 Jan 1970 00:00:01 GMT", "no-cache")
    _, h, _ = request(site.port, "/max/f.txt")
    assert (h["expires"], h["cache-control"]) == ("Thu, 31 Dec 2037 23:55:55 GMT", "max-age=315360000")
    _, h, _ = request(site.port, "/off/f.txt")
    assert "expires" not in h and "cache-control" not in h
    _, h, _ = request(site.port, "/neg/f.txt")
    assert h["cache-control"] == "no-cache"
    # a 304 keeps them; a 404 does not get them
    etag = request(site.port, "/hour/f.txt")[1]["etag"]
    status, h, _ = request(site.port, "/hour/f.txt", headers={"If-None-Match": etag})
    assert status == 304 and h["cache-control"] == "max-age=3600"
    status, h, _ = request(site.port, "/hour/missing")
    assert status == 404 and "cache-control" not in h


def test_add_header_inheritance_and_always(site: Pyginx) -> None:
    _, h, _ = request(site.port, "/f.txt")
    assert h["x-server"] == "s"
    _, h, _ = request(site.port, "/inner/f.txt")
    assert h["x-inner"] == "i" and "x-server" not in h  # the inner level replaces, not adds
    status, h, _ = request(site.port, "/always/f.txt", headers={"Range": "bytes=0-0"})
    assert status == 206 and h["x-always"] == "a" and h["x-plain"] == "p"
    status, h, _ = request(site.port, "/always/missing")
    assert status == 404 and h["x-always"] == "a" and "x-plain" not in h
    status, h, _ = request(site.port, "/always/f.txt", method="HEAD")
    assert status == 200 and h["x-plain"] == "p"
