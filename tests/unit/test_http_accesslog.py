"""Access-log value escaping as nginx's escape=default: header values are bytes as sent (latin-1 in
pyginx's strings), URIs are UTF-8 with surrogate escapes; both are logged byte for byte."""

from __future__ import annotations

from pathlib import Path

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

    conn = SimpleNamespace(
        client_addr="10.0.0.1", client_port=5, conn_id=1, requests=0, tls=None, scheme="http"
    )
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


# ---------------------------------------------------------------------------------------------------
# log_format NAME escape=json|default|none


def test_json_escaping_as_ngx_escape_json() -> None:
    from pyginx.http.accesslog import _json, _json_field

    assert _json("") == ""  # no `-`
    assert _json('a"b\\c') == 'a\\"b\\\\c'
    assert _json("\n\r\t\b\f") == "\\n\\r\\t\\b\\f"
    assert _json("\x01\x1f\x7f") == "\\u0001\\u001F\x7f"  # DEL and bytes >= 0x80 stay as they are
    assert _json("/caf\xe9") == "/caf\xe9"  # a URI's UTF-8 is written as UTF-8
    assert (
        _json_field("caf\xc3\xa9").encode("utf-8", "surrogateescape") == b"caf\xc3\xa9"
    )  # header bytes as sent
    assert _json_field("\xff\x00").encode("utf-8", "surrogateescape") == b"\xff\\u0000"


def test_none_escaping_keeps_every_byte() -> None:
    from pyginx.http.accesslog import _none, _none_field

    assert _none("") == ""
    assert _none('a"\\\n') == 'a"\\\n'
    assert _none_field("\xff\x01").encode("utf-8", "surrogateescape") == b"\xff\x01"


def test_formats_by_escape_mode() -> None:
    from pyginx.http.accesslog import compile_format

    req = _request(uri='/a"\n', headers={"user-agent": "caf\xc3\xa9\t", "referer": ""})
    fmt = '{"u":"$uri","a":"$http_user_agent","r":"$http_referer","s":$status}'
    json_line = compile_format("escape=json " + fmt)(req)  # type: ignore[arg-type]
    assert json_line == b'{"u":"/a\\"\\n","a":"caf\xc3\xa9\\t","r":"","s":200}\n'
    none_line = compile_format("escape=none " + fmt)(req)  # type: ignore[arg-type]
    assert none_line == b'{"u":"/a"\n","a":"caf\xc3\xa9\t","r":"","s":200}\n'
    default_line = compile_format("escape=default " + fmt)(req)  # type: ignore[arg-type]
    assert default_line == b'{"u":"/a\\x22\\x0A","a":"caf\\xC3\\xA9\\x09","r":"-","s":200}\n'
    assert compile_format(fmt)(req) == default_line  # type: ignore[arg-type]


def test_log_format_escape_parameter_in_the_config(tmp_path: Path) -> None:
    import pytest

    from pyginx.config import load_config
    from pyginx.errors import ConfigError

    def formats(value: str) -> dict[str, str]:
        conf = tmp_path / "pyginx.yaml"
        conf.write_text(f"http:\n  log_format:\n    f: {value}\n  servers:\n    - listen: 127.0.0.1:8080\n")
        cfg = load_config(str(conf), str(tmp_path))
        assert cfg.http is not None
        return cfg.http.log_formats

    assert formats("""'escape=json {"u":"$uri"}'""")["f"] == 'escape=json {"u":"$uri"}'
    assert formats("""[escape=none, '$uri ', $status]""")["f"] == "escape=none $uri $status"
    assert formats("""'escape=default $uri'""")["f"] == "escape=default $uri"
    assert formats("'$uri'")["f"] == "$uri"
    with pytest.raises(ConfigError, match='unknown log format escaping "xml"') as err:
        formats("'escape=xml $uri'")
    assert err.value.line == 3


_VALUES = ["", "-", "curl/8", 'a "q"', "back\\slash", "caf\xe9", "tab\there", "nl\n", "/x\udcff", "ok value"]


def test_whole_line_check_writes_what_per_value_escaping_writes() -> None:
    """A line is first assembled from the raw values and checked whole; whatever the values, the
    result must be the line each value escaped on its own gives, in every escape= mode."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pyginx.http.accesslog import (
        _json,
        _json_field,
        _logged,
        _logged_field,
        _none,
        _none_field,
        compile_format,
    )

    template = '$remote_addr "$request" $status [$http_user_agent] \\ "$uri" $http_referer'
    escapes = {
        "default": (_logged, _logged_field),
        "json": (_json, _json_field),
        "none": (_none, _none_field),
    }
    renders = {mode: compile_format(f"escape={mode} {template}") for mode in escapes}

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(_VALUES) | st.text(max_size=6), min_size=4, max_size=4))
    def check(values: list[str]) -> None:
        line, ua, uri, referer = values
        req = _request(request_line=line, uri=uri, headers={"user-agent": ua, "referer": referer})
        for mode, (value, field) in escapes.items():
            expected = (
                f'10.0.0.1 "{value(line)}" 200 [{field(ua)}] \\ "{value(uri)}" {field(referer)}\n'
            ).encode("utf-8", "surrogateescape")
            assert renders[mode](req) == expected, mode  # type: ignore[arg-type]

    check()
