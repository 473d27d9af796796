"""Access-log value escaping as nginx's escape=default: header values are bytes as sent (latin-1 in
pyginx's strings), URIs are UTF-8 with surrogate escapes; both are logged byte for byte."""

from __future__ import annotations

from pyginx.http.accesslog import _logged, _logged_field


def test_header_values_are_logged_as_the_bytes_sent() -> None:
    assert _logged_field("") == "-"
    assert _logged_field("curl/8") == "curl/8"
    assert _logged_field('a "q" \\ caf\xe9') == "a \\x22q\\x22 \\x5C caf\\xE9"  # one byte 0xE9, as sent
    assert _logged_field("caf\xc3\xa9") == "caf\\xC3\\xA9"


def test_uris_are_logged_as_their_utf8_bytes() -> None:
    assert _logged("/caf\xe9") == "/caf\\xC3\\xA9"  # decoded from %C3%A9 or raw UTF-8
    assert _logged("/a\udcff") == "/a\\xFF"  # an invalid byte kept by surrogateescape
    assert _logged("") == "-"
