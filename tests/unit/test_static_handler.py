"""The static handler end to end through the HTTP core, without sockets (a fake transport): try_files,
index, autoindex, redirects, methods, conditionals, ranges, gzip_static, error pages, alias."""

from __future__ import annotations

import asyncio
import gzip
import os
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyginx.config.loader import load
from pyginx.handlers.static import gzip_accepted
from pyginx.log import ErrorLog, set_error_log
from tests.unit.fake_http import Exchange

MTIME = 1795993593 - 86400  # Sat, 28 Nov 2026 23:06:33 GMT
BIG = bytes(range(256)) * 1024  # 256 KiB: above the in-memory threshold, streamed


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes
    raw_head: str


def parse(out: bytes, head_only: bool = False) -> list[Resp]:
    resps = []
    while out:
        head, sep, rest = out.partition(b"\r\n\r\n")
        assert sep, out
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(": ")
            headers[k.lower()] = v
        n = 0 if head_only or status == 304 else int(headers.get("content-length", "0"))
        resps.append(Resp(status, headers, rest[:n], head.decode("latin-1")))
        out = rest[n:]
    return resps


class Site:
    """A prefix with html/ and a loaded configuration, and a way to send it requests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.html = root / "html"
        self.html.mkdir(parents=True, exist_ok=True)
        (root / "conf").mkdir(exist_ok=True)
        (root / "logs").mkdir(exist_ok=True)
        self.ex: Exchange | None = None

    def file(self, rel: str, data: bytes | str, mtime: int = MTIME) -> Path:
        path = self.html / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        os.utime(path, (mtime, mtime))
        return path

    def config(self, server: str = "", http: str = "") -> None:
        text = f"""
error_log: logs/error.log info
http:
  access_log: off
{textwrap.indent(textwrap.dedent(http).strip(), "  ")}
  servers:
    - listen: 127.0.0.1:8080
      server_name: localhost
      root: html
{textwrap.indent(textwrap.dedent(server).strip(), "      ")}
"""
        (self.root / "conf" / "x.yaml").write_text(text)
        if self.ex is not None:
            self.ex.close()
        self.ex = Exchange(load("conf/x.yaml", str(self.root)))

    def request(self, target: str, method: str = "GET", headers: dict[str, str] | None = None) -> Resp:
        raw = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n"
        for k, v in (headers or {}).items():
            raw += f"{k}: {v}\r\n"
        assert self.ex is not None
        before = len(self.ex.transport.out)
        self.ex.feed(raw.encode("latin-1") + b"\r\n")
        loop = self.ex.loop
        stable = 0
        while stable < 3:  # async handlers (streamed files) need a few loop turns
            size = len(self.ex.transport.out)
            loop.run_until_complete(asyncio.sleep(0.001))
            stable = stable + 1 if len(self.ex.transport.out) == size else 0
        got = parse(bytes(self.ex.transport.out[before:]), head_only=method == "HEAD")
        assert len(got) == 1, got
        return got[0]

    def get(self, target: str, **headers: str) -> Resp:
        return self.request(target, headers={k.replace("_", "-"): v for k, v in headers.items()})

    def log(self) -> str:
        path = self.root / "logs" / "test-error.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    previous = set_error_log(ErrorLog(str(tmp_path / "logs" / "test-error.log"), "info"))
    try:
        yield s
    finally:
        set_error_log(previous)
        if s.ex is not None:
            s.ex.close()


# ------------------------------------------------------------------ files


def test_small_file(site: Site) -> None:
    site.file("a.txt", "hello\n")
    site.config()
    r = site.get("/a.txt")
    assert r.status == 200 and r.body == b"hello\n"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["content-length"] == "6"
    assert r.headers["last-modified"] == "Sat, 28 Nov 2026 23:06:33 GMT"
    assert r.headers["etag"] == f'"{MTIME:x}-6"'
    assert r.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("cache", ["", "open_file_cache: max=10 inactive=20s"])
@pytest.mark.parametrize("sendfile", ["sendfile: false"])
def test_large_file_streamed(site: Site, cache: str, sendfile: str) -> None:
    site.file("big.bin", BIG)
    site.config(http=f"{cache}\n{sendfile}")
    r = site.get("/big.bin")
    assert r.status == 200 and r.body == BIG
    assert r.headers["content-type"] == "application/octet-stream"
    r = site.get("/big.bin", range="bytes=1000-1999")
    assert r.status == 206 and r.body == BIG[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(BIG)}"
    r = site.get("/big.bin", range="bytes=0-1,-2")
    assert r.status == 206
    boundary = r.headers["content-type"].split("boundary=")[1]
    assert r.body == (
        f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/{len(BIG)}\r\n\r\n".encode()
        + BIG[:2]
        + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {len(BIG) - 2}-{len(BIG) - 1}/{len(BIG)}\r\n\r\n".encode()
        + BIG[-2:]
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_head(site: Site) -> None:
    site.file("a.txt", "hello\n")
    site.file("big.bin", BIG)
    site.config(http="sendfile: false")
    r = site.request("/a.txt", "HEAD")
    assert r.status == 200 and r.headers["content-length"] == "6" and r.body == b""
    r = site.request("/big.bin", "HEAD")
    assert r.status == 200 and r.headers["content-length"] == str(len(BIG))
    assert site.ex is not None and site.ex.transport.out.endswith(b"\r\n\r\n")


def test_methods(site: Site) -> None:
    site.file("a.txt", "x")
    site.file("d/index.html", "i")
    site.config()
    assert site.request("/a.txt", "POST").status == 405
    assert site.request("/a.txt", "PUT").status == 405
    assert site.request("/a.txt", "DELETE").status == 405
    assert site.request("/missing", "POST").status == 404
    assert site.request("/d", "POST").status == 301  # the directory check comes before POST's 405
    assert site.request("/d/", "PUT").status == 405


def test_not_found_and_log(site: Site) -> None:
    site.config()
    assert site.get("/nope").status == 404
    assert 'open() "' + str(site.html / "nope") + '" failed (2: No such file or directory)' in site.log()


def test_log_not_found_off(site: Site) -> None:
    site.config(http="log_not_found: false")
    assert site.get("/nope").status == 404
    assert "nope" not in site.log()


def test_not_regular_file(site: Site) -> None:
    os.mkfifo(site.html / "fifo")
    site.config()
    assert site.get("/fifo").status == 404
    assert "is not a regular file" in site.log()


def test_content_types(site: Site) -> None:
    for name in ("a.html", "a.css", "a.JS", "a.unknownext", "noext", "a.md"):
        site.file(name, "x")
    site.config(http="default_type: application/octet-stream\ntypes: {text/markdown: md}")
    assert site.get("/a.html").headers["content-type"] == "text/html"
    assert site.get("/a.css").headers["content-type"] == "text/css"
    assert site.get("/a.JS").headers["content-type"] == "application/javascript"
    assert site.get("/a.unknownext").headers["content-type"] == "application/octet-stream"
    assert site.get("/noext").headers["content-type"] == "application/octet-stream"
    assert site.get("/a.md").headers["content-type"] == "text/markdown"


def test_etag_off(site: Site) -> None:
    site.file("a.txt", "x")
    site.config(http="etag: false")
    r = site.get("/a.txt")
    assert r.status == 200 and "etag" not in r.headers


# ------------------------------------------------------------------ directories


def test_directory_redirect(site: Site) -> None:
    (site.html / "dir").mkdir()
    (site.html / "a b").mkdir()
    site.config()
    r = site.get("/dir")
    assert r.status == 301 and r.headers["location"] == "http://localhost:8080/dir/"
    r = site.get("/dir?x=1&y")
    assert r.headers["location"] == "http://localhost:8080/dir/?x=1&y"
    r = site.get("/a%20b")
    assert r.headers["location"] == "http://localhost:8080/a%20b/"


def test_index(site: Site) -> None:
    site.file("index.html", "root index")
    site.file("d/index.htm", "htm index")
    site.config(server="index: index.html index.htm")
    r = site.get("/")
    assert r.status == 200 and r.body == b"root index" and r.headers["content-type"] == "text/html"
    assert site.get("/d/").body == b"htm index"


def test_directory_without_index(site: Site) -> None:
    (site.html / "empty").mkdir()
    site.config()
    assert site.get("/empty/").status == 403
    assert "directory index of" in site.log() and "is forbidden" in site.log()
    assert site.get("/missing-dir/").status == 404


def test_absolute_index(site: Site) -> None:
    site.file("fallback.html", "fb")
    (site.html / "d").mkdir()
    site.config(server="index: missing.html /fallback.html")
    assert site.get("/d/").body == b"fb"


def test_autoindex(site: Site) -> None:
    site.file("list/a.txt", "12345")
    site.file("list/.hidden", "h")
    (site.html / "list" / "sub").mkdir()
    site.config(server="autoindex: true")
    r = site.get("/list/")
    assert r.status == 200 and r.headers["content-type"] == "text/html"
    assert b"<title>Index of /list/</title>" in r.body
    assert b'<a href="sub/">sub/</a>' in r.body and b'<a href="a.txt">a.txt</a>' in r.body
    assert b"hidden" not in r.body
    assert r.body.index(b"sub/") < r.body.index(b"a.txt")
    site.config(server="autoindex: true\nautoindex_format: json")
    r = site.get("/list/")
    assert r.headers["content-type"] == "application/json"
    assert b'"name":"a.txt", "type":"file"' in r.body and b'"size":5' in r.body
    site.config(server="autoindex: true\nautoindex_format: jsonp")
    assert site.get("/list/?callback=cb").body.startswith(b"/* callback */\r\ncb([")
    assert site.request("/list/", "POST").status == 403  # autoindex answers GET and HEAD only
    assert site.get("/list/?callback=c-b").status == 400


def test_autoindex_index_wins(site: Site) -> None:
    site.file("d/index.html", "idx")
    site.config(server="autoindex: true")
    assert site.get("/d/").body == b"idx"


# ------------------------------------------------------------------ try_files


def test_try_files(site: Site) -> None:
    site.file("a.txt", "a")
    site.file("dir/index.html", "dir index")
    site.file("fallback.html", "fallback")
    site.config(
        server="""
        locations:
          - location: /
            try_files: $uri $uri/ /fallback.html
          - location: /code/
            try_files: $uri =418
          - location: /named/
            try_files: $uri @back
          - location: "@back"
            return: 200 named $uri $args
          - location: /args/
            try_files: $uri /fallback.html?from=$uri
        """
    )
    assert site.get("/a.txt").body == b"a"
    assert site.get("/dir").status == 301  # "$uri/" finds the directory: the URI stays /dir
    assert site.get("/dir/").body == b"dir index"
    assert site.get("/nope").body == b"fallback"
    assert site.get("/code/nope").status == 418
    assert site.get("/named/nope?q=1").body == b"named /named/nope q=1"
    r = site.get("/args/nope?keep=1")
    assert r.body == b"fallback"


def test_try_files_drops_args_without_question_mark(site: Site) -> None:
    site.config(
        server="""
        locations:
          - location: /
            try_files: $uri /echo
          - location: = /echo
            return: 200 args=[$args]
        """
    )
    assert site.get("/x?a=1").body == b"args=[]"


# ------------------------------------------------------------------ alias


def test_alias_prefix_and_regex(site: Site) -> None:
    images = site.root / "images"
    images.mkdir()
    (images / "x.png").write_bytes(b"PNG")
    (site.root / "secret.txt").write_bytes(b"SECRET")
    site.config(
        server=f"""
        locations:
          - location: /img/
            alias: {images}/
          - location: /trap
            alias: {images}/
          - location: ~ ^/re/(.+)\\.jpg$
            alias: {images}/$1.png
        """
    )
    r = site.get("/img/x.png")
    assert r.status == 200 and r.body == b"PNG" and r.headers["content-type"] == "image/png"
    assert site.get("/re/x.jpg").body == b"PNG"
    assert site.get("/trap../secret.txt").status == 403
    assert site.get("/re/..%2fsecret.jpg").status in (400, 403, 404)


# ------------------------------------------------------------------ conditionals and ranges


def test_conditionals(site: Site) -> None:
    site.file("a.txt", "hello\n")
    site.config(server="expires: 1h\nadd_header: {X-A: b}")
    etag = f'"{MTIME:x}-6"'
    r = site.get("/a.txt", if_none_match=etag)
    assert r.status == 304 and r.body == b""
    assert r.headers["etag"] == etag and r.headers["last-modified"] == "Sat, 28 Nov 2026 23:06:33 GMT"
    for dropped in ("content-type", "content-length", "accept-ranges"):
        assert dropped not in r.headers
    assert r.headers["cache-control"] == "max-age=3600" and r.headers["x-a"] == "b"
    assert site.get("/a.txt", if_modified_since="Sat, 28 Nov 2026 23:06:33 GMT").status == 304
    assert site.get("/a.txt", if_modified_since="Sat, 28 Nov 2026 23:06:34 GMT").status == 200
    assert site.get("/a.txt", if_match='"nope"').status == 412
    assert site.get("/a.txt", if_unmodified_since="Sat, 28 Nov 2026 23:06:32 GMT").status == 412
    assert site.get("/a.txt", if_match=etag).status == 200


def test_ranges_small(site: Site) -> None:
    site.file("d.txt", "0123456789")
    site.config()
    r = site.get("/d.txt", range="bytes=2-4")
    assert r.status == 206 and r.body == b"234" and r.headers["content-range"] == "bytes 2-4/10"
    assert "accept-ranges" not in r.headers
    r = site.get("/d.txt", range="bytes=-3")
    assert r.body == b"789"
    r = site.get("/d.txt", range="bytes=20-")
    assert r.status == 416 and r.headers["content-range"] == "bytes */10"
    assert b"416 Requested Range Not Satisfiable" in r.body
    r = site.get("/d.txt", range="bytes=0-5,3-9")
    assert r.status == 200 and r.body == b"0123456789"
    r = site.get("/d.txt", range="bytes=0-0,9-9")
    assert r.status == 206 and r.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert (
        b"Content-Range: bytes 0-0/10\r\n\r\n0" in r.body
        and b"Content-Range: bytes 9-9/10\r\n\r\n9" in r.body
    )
    r = site.get("/d.txt", range="bytes=2-4", if_range='"stale"')
    assert r.status == 200
    r = site.get("/d.txt", range="bytes=2-4", if_range=f'"{MTIME:x}-a"')
    assert r.status == 206


def test_max_ranges(site: Site) -> None:
    site.file("d.txt", "0123456789")
    site.config(http="max_ranges: 0")
    r = site.get("/d.txt", range="bytes=2-4")
    assert r.status == 200 and "accept-ranges" not in r.headers
    site.config(http="max_ranges: 1")
    assert site.get("/d.txt", range="bytes=0-0,2-2").status == 200
    assert site.get("/d.txt", range="bytes=2-2").status == 206


# ------------------------------------------------------------------ gzip_static


def test_gzip_static(site: Site) -> None:
    site.file("app.js", "plain")
    gz = gzip.compress(b"plain")
    site.file("app.js.gz", gz, mtime=MTIME + 1)
    site.file("only.txt", "only plain")
    site.config(http="gzip_static: on\ngzip_vary: true")
    r = site.get("/app.js", accept_encoding="gzip, deflate")
    assert r.status == 200 and r.body == gz
    assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
    assert r.headers["content-type"] == "application/javascript"
    assert r.headers["etag"] == f'"{MTIME + 1:x}-{len(gz):x}"'
    r = site.get("/app.js")
    assert (
        r.body == b"plain" and "content-encoding" not in r.headers and r.headers["vary"] == "Accept-Encoding"
    )
    r = site.get("/app.js", accept_encoding="gzip;q=0")
    assert r.body == b"plain"
    r = site.get("/only.txt", accept_encoding="gzip")
    assert r.body == b"only plain" and "vary" not in r.headers
    site.config(http="gzip_static: always")
    r = site.get("/app.js")
    assert r.body == gz and "vary" not in r.headers


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("gzip", True),
        ("gzip, deflate", True),
        ("deflate, gzip", True),
        ("GZIP", True),
        ("br,gzip", True),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("gzip;q=0.5", True),
        ("gzip;q=1", True),
        ("gzip;q=1.0", True),
        ("gzip;q=2", False),
        ("x-gzip", False),
        ("gzipped", False),
        ("deflate", False),
        ("gz", False),
        ("", False),
    ],
)
def test_gzip_accepted(value: str, ok: bool) -> None:
    assert gzip_accepted(value) is ok


# ------------------------------------------------------------------ error pages


def test_error_page_served_from_file(site: Site) -> None:
    site.file("404.html", "custom not found")
    site.config(server="error_page: {404: /404.html}")
    r = site.get("/nope", range="bytes=0-1", if_none_match="*")
    assert r.status == 404 and r.body == b"custom not found"
    assert "last-modified" not in r.headers and "accept-ranges" not in r.headers
    assert r.headers["content-type"] == "text/html"


def test_open_file_cache_serves_consistent_bodies(site: Site) -> None:
    path = site.file("c.txt", "version-1")
    site.config(http="open_file_cache: max=10 inactive=20s\nopen_file_cache_valid: 0s")
    assert site.get("/c.txt").body == b"version-1"
    path.write_bytes(b"version-two")
    r = site.get("/c.txt")
    assert r.body == b"version-two" and r.headers["content-length"] == "11"


def test_index_from_a_variable_stays_inside(site: Site) -> None:
    (site.root / "canary.txt").write_bytes(b"CANARY")
    (site.html / "d").mkdir()
    site.file("d/ok.html", "ok")
    site.config(server="index: $arg_i")
    assert site.get("/d/?i=ok.html").body == b"ok"
    r = site.get("/d/?i=../../canary.txt")
    assert r.status == 403 and b"CANARY" not in r.body
