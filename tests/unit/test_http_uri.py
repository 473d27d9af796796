"""URI normalisation as nginx's ngx_http_parse_complex_uri (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyginx.errors import HttpError
from pyginx.http.uri import normalize_path, split_target, validate_host


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("/", "/"),
        ("/a/b/", "/a/b/"),
        ("/a/./b", "/a/b"),
        ("/a/.", "/a/"),
        ("/a/..", "/"),
        ("/a/b/../c", "/a/c"),
        ("/a//b", "/a/b"),
        ("///a", "/a"),
        ("/a%20b", "/a b"),
        ("/a/%2e%2e/b", "/b"),
        ("/a%2Fb", "/a/b"),
        ("/%C3%A9", "/\u00e9"),
        ("/a/...", "/a/..."),
        ("/a/.b", "/a/.b"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


def test_merge_slashes_off_keeps_empty_segments() -> None:
    assert normalize_path("/a//b", merge_slashes=False) == "/a//b"
    assert normalize_path("/a//../b", merge_slashes=False) == "/a/b"


@pytest.mark.parametrize(
    "raw",
    ["/..", "/../a", "/a/../..", "/%2e%2e/", "/a/%2E%2E/%2e%2e/x", "/%00", "/a%zz", "/a%2", "/a%", "/a b", "/\x01", "a/b"],
)
def test_rejected(raw: str) -> None:
    with pytest.raises(HttpError) as info:
        normalize_path(raw)
    assert info.value.status == 400


def test_split_target() -> None:
    assert split_target("/p?q=1&r") == ("/p", "q=1&r", None)
    assert split_target("/p") == ("/p", "", None)
    assert split_target("http://Host:81/x?y") == ("/x", "y", "Host:81")
    assert split_target("http://host") == ("/", "", "host")
    assert split_target("http://host?a=b") == ("/", "a=b", "host")
    assert split_target("/p?q=1#f?g") == ("/p", "q=1", None)  # a fragment ends path and query
    assert split_target("/p#f?g") == ("/p", "", None)
    with pytest.raises(HttpError):
        split_target("*")


def test_validate_host() -> None:
    assert validate_host("Example.COM:8080") == "example.com"
    assert validate_host("example.com.") == "example.com"
    assert validate_host("[::1]:80") == "[::1]"
    # as ngx_http_validate_host: the port is not checked, an unclosed literal and a backslash pass
    assert validate_host("a:b") == "a"
    assert validate_host("[::1") == "[::1"
    assert validate_host("a\\b") == "a\\b"
    assert validate_host("A\xc0") == "a\xc0"  # ASCII letters only are lower-cased
    assert validate_host(".a") == ".a"
    for bad in ("a/b", "a..b", "", ".", ":80", "a b", "a\x7f", "a:1..2"):
        with pytest.raises(HttpError):
            validate_host(bad)


@given(st.lists(st.sampled_from(["a", "b", ".", "..", "", "%2e", "%2F", "%41"]), max_size=8))
def test_result_never_climbs_or_keeps_dot_segments(segments: list[str]) -> None:
    raw = "/" + "/".join(segments)
    try:
        out = normalize_path(raw)
    except HttpError as e:
        assert e.status == 400
        return
    assert out.startswith("/")
    parts = out.split("/")
    assert ".." not in parts and "." not in parts[:-1]
