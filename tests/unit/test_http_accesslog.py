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


def _request(**fields: object) -> object:
    from types import SimpleNamespace

    conn = SimpleNamespace(client_addr="10.0.0.1", client_port=5, conn_id=1, requests=0, tls=None, scheme="http")
    base: dict[str, object] = {
        "conn": conn,
        "request_line": "GET / HTTP/1.1",
        "status": 200,
        "body_bytes_sent": 12,
        "headers": {},
        "uri": "/",
        "args": "",
        "vars": {},
        "upstream_vars": None,
        "captures": None,
    }
    base.update(fields)
    return SimpleNamespace(**base)


def test_combined_line_with_missing_and_unsafe_values() -> None:
    from pyginx.http.accesslog import COMBINED, compile_format

    render = compile_format(COMBINED)
    req = _request(headers={"user-agent": 'a "quoted"\\agent', "referer": ""})
    line = render(req).decode()  # type: ignore[arg-type]
    assert line.startswith("10.0.0.1 - - [")
    assert line.endswith('] "GET / HTTP/1.1" 200 12 "-" "a \\x22quoted\\x22\\x5Cagent"\n')


def test_custom_format_with_generic_variables() -> None:
    from pyginx.http.accesslog import compile_format

    render = compile_format("$status|$uri|$args|$arg_x|$upstream_addr|$http_x_custom|${status}x")
    req = _request(uri="/p\x01", args="x=1&y=2", vars={"upstream_addr": "127.0.0.1:9"}, status=404)
    req.headers["x-custom"] = "v"  # type: ignore[attr-defined]
    assert render(req) == b"404|/p\\x01|x=1&y=2|1|127.0.0.1:9|v|404x\n"  # type: ignore[arg-type]


def test_upstream_variables_computed_when_first_read() -> None:
    from pyginx.http.accesslog import compile_format

    calls: list[int] = []
    state = {"upstream_addr": "127.0.0.1:9", "upstream_status": "200"}

    def pending() -> dict[str, str]:
        calls.append(1)
        return dict(state)

    render = compile_format("$upstream_addr $upstream_status $upstream_header_time")
    req = _request(vars={"upstream_status": "502"}, upstream_vars=pending)
    assert render(req) == b"127.0.0.1:9 200 -\n"  # type: ignore[arg-type]
    assert len(calls) == 1 and req.upstream_vars is None  # type: ignore[attr-defined]
    assert render(req) == b"127.0.0.1:9 200 -\n"  # type: ignore[arg-type]
    state["upstream_status"] = "404"
    req.upstream_vars = pending  # type: ignore[attr-defined]  # set again: the newer values win
    assert render(req) == b"127.0.0.1:9 404 -\n"  # type: ignore[arg-type]
    assert len(calls) == 2


def test_found_empty_values_are_empty_not_dashes() -> None:
    """nginx writes `-` for a value "not found" ($arg_x without the argument, $upstream_addr without
    an upstream) but nothing for one found empty ($https on plain HTTP, $is_args without arguments,
    a map's or set's empty value)."""
    from types import SimpleNamespace

    from pyginx.http.accesslog import compile_format

    render = compile_format("[$https|$is_args|$arg_x|$upstream_addr|$mapped|$settled]")
    req = _request(vars={"settled": ""})
    req.conn.scheme = "http"  # type: ignore[attr-defined]
    req.conn.ctx = SimpleNamespace(variables={"mapped": lambda r: ""})  # type: ignore[attr-defined]
    assert render(req).decode() == "[||-|-||]\n"  # type: ignore[arg-type]


def test_sent_headers_of_a_cached_file_head() -> None:
    from pyginx.http.variables import getter

    req = _request(
        out_headers=(),
        sent_block=b'Content-Type: text/plain\r\nETag: "x"\r\n',
        sent_length=7,
        _chunked_out=False,
    )
    assert getter("sent_http_content_type")(req) == "text/plain"  # type: ignore[arg-type]
    assert getter("sent_http_etag")(req) == '"x"'  # type: ignore[arg-type]
    assert getter("sent_http_content_length")(req) == "7"  # type: ignore[arg-type]
    assert getter("sent_http_transfer_encoding")(req) == ""  # type: ignore[arg-type]
