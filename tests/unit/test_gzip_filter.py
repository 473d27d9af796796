"""The gzip module: nginx's gzip_ok rules, Accept-Encoding negotiation, the streaming encoders, the
header filter's decisions, and its configuration errors."""

from __future__ import annotations

import gzip as gzip_lib
import re
import textwrap
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import brotli
import pytest
import zstandard

from pyginx.config import load_config
from pyginx.config.model import HttpSettings
from pyginx.errors import ConfigError
from pyginx.modules import compression
from pyginx.modules import gzip as gzip_module

# ---------------------------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)", True),
        ("Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)", False),
        ("Mozilla/4.0 (compatible; MSIE 5.5; Windows 98)", True),
        ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.0)", False),
        ("curl/8.0", False),
        ("MSIE 6", False),  # too short for nginx's test
    ],
)
def test_msie6(agent: str, expected: bool) -> None:
    assert compression.msie6(agent) is expected


NOW = 1_800_000_000.0
PAST = "Thu, 01 Jan 1970 00:00:01 GMT"
FUTURE = "Fri, 31 Dec 2037 23:55:55 GMT"


@pytest.mark.parametrize(
    ("flags", "request_headers", "response", "expected"),
    [
        ({"off"}, {}, [], False),
        ({"any"}, {}, [("Cache-Control", "public")], True),
        ({"auth"}, {"authorization": "Basic x"}, [], True),
        ({"auth"}, {}, [], True),  # nothing to refuse on: nginx's fall-through
        ({"expired"}, {}, [("Expires", PAST)], True),
        ({"expired"}, {}, [("Expires", FUTURE)], False),
        ({"no-cache"}, {}, [("Expires", PAST)], False),  # Expires present, `expired` not set
        ({"expired"}, {}, [("Expires", "garbage")], False),
        ({"no-cache"}, {}, [("Cache-Control", "private, no-cache")], True),
        ({"no-store"}, {}, [("Cache-Control", "no-cache")], False),
        ({"private"}, {}, [("Cache-Control", "Private")], True),
        ({"private"}, {}, [("Cache-Control", "max-age=10"), ("Cache-Control", "private")], True),
        ({"no_last_modified"}, {}, [("Last-Modified", PAST)], False),
        ({"no_last_modified"}, {}, [], True),
        ({"no_etag"}, {}, [("ETag", '"x"')], False),
        ({"no_etag"}, {}, [], True),
    ],
)
def test_gzip_proxied(
    flags: set[str], request_headers: dict[str, str], response: list[tuple[str, str]], expected: bool
) -> None:
    assert compression.proxied_ok(frozenset(flags), request_headers, response, NOW) is expected


def test_request_ok_version_disable_and_via() -> None:
    kw: dict[str, Any] = {
        "min_minor": 1,
        "proxied": frozenset({"off"}),
        "disable": (re.compile("bot", re.I),),
        "disable_msie6": True,
        "now": NOW,
    }
    assert compression.request_ok(1, {}, [], **kw)
    assert not compression.request_ok(0, {}, [], **kw)
    assert compression.request_ok(0, {}, [], **{**kw, "min_minor": 0})
    assert not compression.request_ok(1, {"via": "1.1 cdn"}, [], **kw)
    assert not compression.request_ok(1, {"user-agent": "GoodBOT/1"}, [], **kw)
    assert not compression.request_ok(1, {"user-agent": "Mozilla/4.0 (compatible; MSIE 6.0; X)"}, [], **kw)


@pytest.mark.parametrize(
    ("accept", "offered", "expected"),
    [
        ("gzip, deflate, br, zstd", ("br", "zstd", "gzip"), "br"),
        ("gzip, zstd", ("br", "zstd", "gzip"), "zstd"),
        ("gzip;q=1, br;q=0.5", ("br", "zstd", "gzip"), "gzip"),
        ("br;q=0, gzip;q=0.1", ("br", "gzip"), "gzip"),
        ("*", ("br", "gzip"), "br"),
        ("*;q=0.5, br;q=0", ("br", "gzip"), "gzip"),
        ("identity", ("br", "gzip"), None),
        ("BR", ("br",), "br"),
        ("br;q=abc", ("br",), None),
        ("x-gzip", ("gzip",), "gzip"),
        ("br", ("gzip",), None),
    ],
)
def test_negotiation(accept: str, offered: tuple[str, ...], expected: str | None) -> None:
    assert compression.choose(accept, offered) == expected


DATA = b"".join(b"line %d of some compressible text\n" % i for i in range(3000))


def _stream(coding: str, level: int) -> bytes:
    f = compression.encoder(coding, level)
    out = b"".join(f(DATA[i : i + 4096], False) for i in range(0, len(DATA), 4096))
    return out + f(b"", True)


def test_encoders_round_trip_in_pieces() -> None:
    gz = _stream("gzip", 6)
    assert gz[:2] == b"\x1f\x8b" and gzip_lib.decompress(gz) == DATA
    assert brotli.decompress(_stream("br", 5)) == DATA
    z = _stream("zstd", 3)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(z) == DATA
    # level matters
    assert len(_stream("gzip", 9)) <= len(_stream("gzip", 1))


# ---------------------------------------------------------------------------------------------- config


def _load(tmp_path: Path, location: str, http: str = "") -> HttpSettings:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    text = f"""
http:
{textwrap.indent(textwrap.dedent(http).strip(), "  ") if http.strip() else ""}
  servers:
    - listen: 127.0.0.1:8080
      locations:
        - location: /
{textwrap.indent(textwrap.dedent(location).strip(), " " * 10)}
"""
    conf.write_text(text.lstrip("\n"))
    config = load_config(str(conf), str(tmp_path))
    assert config.http is not None
    return config.http.servers[0].locations[0].settings


def _error(tmp_path: Path, location: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, location)
    return str(info.value)


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("gzip_comp_level: 10", "value must be between 1 and 9"),
        ("gzip_comp_level: x", '"gzip_comp_level" directive invalid number'),
        ("gzip_http_version: '2.0'", 'invalid value "2.0"'),
        ("gzip_proxied: foo", 'invalid value "foo"'),
        (
            "gzip_disable: '('",
            'pcre2_compile() failed: missing ), unterminated subpattern at position 0 in "("',
        ),
        ("gzip_buffers: 4", 'invalid number of arguments in "gzip_buffers" directive'),
        ("gzip_min_length: abc", 'invalid value "abc" in "gzip_min_length" directive'),
        ("gzip: maybe", 'invalid value "maybe" in "gzip" directive, it must be "on" or "off"'),
        ("brotli_comp_level: 12", "value must be between 0 and 11"),
        ("zstd_comp_level: 0", "value must be between 1 and 22"),
    ],
)
def test_config_errors_name_file_and_line(tmp_path: Path, directive: str, message: str) -> None:
    got = _error(tmp_path, directive)
    assert got == f"{message} in {tmp_path / 'conf' / 'pyginx.yaml'}:7"


def test_settings_inherit_and_parse(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        "gzip_types: text/css application/json\ngzip_proxied: expired no-cache\n"
        "gzip_disable: msie6 '^Lynx'\ngzip_http_version: '1.0'\ngzip_buffers: 16 8k",
        http="gzip: true\ngzip_comp_level: 5\ngzip_min_length: 1k",
    )
    conf: gzip_module.GzipConf = s.conf("gzip")
    assert conf.gzip and conf.comp_level == 5 and conf.min_length == 1024
    assert conf.types == {"text/html", "text/css", "application/json"}
    assert conf.proxied == {"expired", "no-cache"}
    assert conf.disable_msie6 and conf.disable[0].search("lynx/2.8")  # case-insensitive, as nginx
    assert conf.http_version == 0 and conf.buffers == (16, 8192)


# ---------------------------------------------------------------------------------------------- the filter


def _req(**kw: Any) -> Any:
    base: dict[str, Any] = {
        "error_status": 0,
        "headers": {"accept-encoding": "gzip"},
        "http_minor": 1,
        "head_only": False,
        "body_filter": None,
    }
    base.update(kw)
    return SimpleNamespace(**base)


def _filter(tmp_path: Path, location: str) -> Any:
    s = _load(tmp_path, location)
    assert gzip_module.MODULE.header_filter is not None
    return gzip_module.MODULE.header_filter(s)


def test_no_filter_when_nothing_is_enabled(tmp_path: Path) -> None:
    assert _filter(tmp_path, "gzip: false\ngzip_comp_level: 3") is None


def test_filter_compresses_and_rewrites_the_head(tmp_path: Path) -> None:
    f = _filter(tmp_path, "gzip: true\ngzip_vary: true")
    req = _req()
    headers = [("Content-Type", "text/html; charset=utf-8"), ("ETag", '"abc"'), ("Accept-Ranges", "bytes")]
    status, out, length = f.head(req, 200, headers, 5000)
    assert status == 200 and length is None
    assert dict(out) == {
        "Content-Type": "text/html; charset=utf-8",
        "ETag": 'W/"abc"',
        "Vary": "Accept-Encoding",
        "Content-Encoding": "gzip",
    }
    body = req.body_filter(b"<p>hello</p>" * 100, True)
    assert zlib.decompress(body, 31) == b"<p>hello</p>" * 100


@pytest.mark.parametrize(
    ("status", "headers", "length", "req_kw"),
    [
        (206, [("Content-Type", "text/html")], 5000, {}),
        (304, [("Content-Type", "text/html")], None, {}),
        (204, [("Content-Type", "text/html")], None, {}),
        (500, [("Content-Type", "text/html")], 5000, {}),
        (200, [("Content-Type", "text/html"), ("Content-Encoding", "br")], 5000, {}),
        (200, [("Content-Type", "text/html")], 10, {}),  # under gzip_min_length 20
        (200, [("Content-Type", "image/png")], 5000, {}),
        (200, [("Content-Type", "text/html")], 5000, {"headers": {}}),
        (200, [("Content-Type", "text/html")], 5000, {"headers": {"accept-encoding": "gzip;q=0"}}),
        (200, [("Content-Type", "text/html")], 5000, {"http_minor": 0}),
        (
            200,
            [("Content-Type", "text/html")],
            5000,
            {"headers": {"accept-encoding": "gzip", "via": "1.1 x"}},
        ),
        (200, [("Content-Type", "text/html")], 5000, {"error_status": 502}),  # error_page to a file
    ],
)
def test_filter_leaves_alone(
    tmp_path: Path, status: int, headers: list[tuple[str, str]], length: int | None, req_kw: dict[str, Any]
) -> None:
    f = _filter(tmp_path, "gzip: true")
    req = _req(**req_kw)
    got = f.head(req, status, headers, length)
    assert got == (status, headers, length) and req.body_filter is None


def test_unquoted_etag_is_dropped_and_weak_kept(tmp_path: Path) -> None:
    f = _filter(tmp_path, "gzip: true")
    _, out, _ = f.head(_req(), 200, [("Content-Type", "text/html"), ("ETag", "abc")], None)
    assert "ETag" not in dict(out)
    _, out, _ = f.head(_req(), 200, [("Content-Type", "text/html"), ("ETag", 'W/"a"')], None)
    assert dict(out)["ETag"] == 'W/"a"'


def test_types_star_and_extensions(tmp_path: Path) -> None:
    f = _filter(tmp_path, "gzip: true\ngzip_types: '*'\nbrotli: true\nzstd: true")
    req = _req(headers={"accept-encoding": "gzip, zstd"})
    _, out, _ = f.head(req, 404, [("Content-Type", "image/svg+xml")], None)
    assert dict(out)["Content-Encoding"] == "zstd"
    req = _req(headers={"accept-encoding": "br;q=0.9, gzip"})
    _, out, _ = f.head(req, 200, [("Content-Type", "x/y")], None)
    assert dict(out)["Content-Encoding"] == "gzip"


def test_vary_even_when_the_client_takes_no_gzip(tmp_path: Path) -> None:
    f = _filter(tmp_path, "gzip: true\ngzip_vary: true")
    _, out, length = f.head(_req(headers={}), 200, [("Content-Type", "text/html")], 100)
    assert out == [("Content-Type", "text/html"), ("Vary", "Accept-Encoding")] and length == 100
