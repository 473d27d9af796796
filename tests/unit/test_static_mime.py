"""The built-in mime.types table, `types` additions, default_type and nginx's extension rule."""

from __future__ import annotations

import pytest

from pyginx.config.model import HttpSettings
from pyginx.handlers.mime import MIME_TYPES, content_type_for, exten, lookup


@pytest.mark.parametrize(
    ("ext", "mime"),
    [
        ("html", "text/html"),
        ("htm", "text/html"),
        ("shtml", "text/html"),
        ("css", "text/css"),
        ("js", "application/javascript"),
        ("json", "application/json"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("jpeg", "image/jpeg"),
        ("svg", "image/svg+xml"),
        ("svgz", "image/svg+xml"),
        ("avif", "image/avif"),
        ("webp", "image/webp"),
        ("woff", "font/woff"),
        ("woff2", "font/woff2"),
        ("wasm", "application/wasm"),
        ("txt", "text/plain"),
        ("pdf", "application/pdf"),
        ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("exe", "application/octet-stream"),
        ("iso", "application/octet-stream"),
        ("mp4", "video/mp4"),
        ("ts", "video/mp2t"),
        ("m3u8", "application/vnd.apple.mpegurl"),
        ("mp3", "audio/mpeg"),
        ("7z", "application/x-7z-compressed"),
        ("crt", "application/x-x509-ca-cert"),
        ("avi", "video/x-msvideo"),
    ],
)
def test_builtin_table(ext: str, mime: str) -> None:
    assert lookup(ext) == mime


def test_table_size_matches_nginx() -> None:
    # nginx 1.31's conf/mime.types names 110 extensions.
    assert len(MIME_TYPES) == 110


def test_case_insensitive_and_default() -> None:
    assert lookup("PNG") == "image/png"
    assert lookup("Html") == "text/html"
    assert lookup("nope") == "text/plain"
    assert lookup("nope", default_type="application/octet-stream") == "application/octet-stream"
    assert lookup("") == "text/plain"


def test_types_add_and_override() -> None:
    extra = (("md", "text/markdown"), ("js", "text/javascript"))
    assert lookup("md", extra) == "text/markdown"
    assert lookup("MD", extra) == "text/markdown"
    assert lookup("js", extra) == "text/javascript"
    assert lookup("css", extra) == "text/css"
    assert lookup("js") == "application/javascript"  # the built-in table is not modified


@pytest.mark.parametrize(
    ("uri", "ext"),
    [
        ("/a.html", "html"),
        ("/a/b.tar.GZ", "GZ"),
        ("/.htaccess", ""),
        ("/dir/.hidden", ""),
        ("/a.b/c", ""),
        ("/a.b/", ""),
        ("/noext", ""),
        ("/x.", ""),
        ("/", ""),
        ("/a.", ""),
        ("/.a.b", "b"),
        ("/a..b", "b"),
    ],
)
def test_exten(uri: str, ext: str) -> None:
    assert exten(uri) == ext


def test_content_type_for_settings() -> None:
    s = HttpSettings(default_type="application/octet-stream", types=(("yaml", "text/yaml"),))
    assert content_type_for("/conf/a.yaml", s) == "text/yaml"
    assert content_type_for("/a.unknown", s) == "application/octet-stream"
    assert content_type_for("/index.HTML", s) == "text/html"
