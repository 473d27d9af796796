"""Upstream request heads, URI rules, response header filtering and proxy_redirect."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyginx.config.model import HeaderValue, HttpSettings, Location, ProxyPass, ProxyRedirect
from pyginx.handlers.proxy_headers import (
    NO_BODY,
    Framing,
    HeadTemplate,
    add_x_forwarded_for,
    build_request_head,
    escape_uri,
    hidden_headers,
    is_upgrade_request,
    plan_set_headers,
    proxy_port,
    redirect_rules,
    request_framing,
    response_headers,
    rewrite_redirect,
    upstream_uri,
)


def loc(match: str, modifier: str = "") -> Location:
    return Location(modifier=modifier, match=match, settings=HttpSettings())  # type: ignore[arg-type]


def pp(uri: str | None, host: str = "backend", port: int | None = None) -> ProxyPass:
    return ProxyPass(scheme="http", host=host, port=port, uri=uri, upstream=host)


def target(
    p: ProxyPass, location: Location | None, request_uri: str, *, internal: bool = False, uri: str = ""
) -> str:
    path, _, args = request_uri.partition("?")
    return upstream_uri(p, location, uri=uri or path, args=args, request_uri=request_uri, internal=internal)


# ------------------------------------------------------------------------------------------ URI rules


def test_without_uri_part_the_client_uri_goes_unchanged() -> None:
    assert target(pp(None), loc("/api/"), "/api/a%20b//c?x=1&y") == "/api/a%20b//c?x=1&y"


def test_with_uri_part_the_prefix_is_replaced() -> None:
    assert target(pp("/v2/"), loc("/api/"), "/api/users?id=3") == "/v2/users?id=3"
    assert target(pp("/"), loc("/api/"), "/api/users") == "/users"
    assert target(pp("/x"), loc("/api"), "/api/users") == "/x/users"
    assert target(pp("/v2/"), loc("/api/", "^~"), "/api/") == "/v2/"


def test_exact_location() -> None:
    assert target(pp("/target"), loc("/exact", "="), "/exact?q") == "/target?q"


def test_quoted_uri_is_reescaped() -> None:
    # the decoded URI "/api/a b" is re-escaped when the client had percent-encoded it
    assert target(pp("/v2/"), loc("/api/"), "/api/a%20b", uri="/api/a b") == "/v2/a%20b"
    assert target(pp("/v2/"), loc("/api/"), "/api/%C3%A9", uri="/api/é") == "/v2/%C3%A9"


def test_internal_redirect_uses_the_current_uri() -> None:
    got = upstream_uri(
        pp(None), loc("/fallback/"), uri="/fallback/x y", args="a=1", request_uri="/orig?z", internal=True
    )
    assert got == "/fallback/x%20y?a=1"


def test_named_location_keeps_the_original_request_uri() -> None:
    got = upstream_uri(
        pp(None), loc("backend", "@"), uri="/orig", args="z", request_uri="/orig?z", internal=True
    )
    assert got == "/orig?z"


def test_regex_location_without_uri_part() -> None:
    assert target(pp(None), loc(r"\.php$", "~"), "/a/b.php?x") == "/a/b.php?x"


def test_escape_uri_table() -> None:
    assert escape_uri("/plain/path-_.~!$&'()*+,;=:@") == "/plain/path-_.~!$&'()*+,;=:@"
    assert escape_uri('/a b"#%<>?\\^`{|}') == "/a%20b%22%23%25%3C%3E%3F%5C%5E%60%7B%7C%7D"
    assert escape_uri("/\x7f\x01") == "/%7F%01"


# ------------------------------------------------------------------------------------------ variables


def test_proxy_add_x_forwarded_for() -> None:
    assert add_x_forwarded_for(None, "10.0.0.1") == "10.0.0.1"
    assert add_x_forwarded_for("1.1.1.1, 2.2.2.2", "10.0.0.1") == "1.1.1.1, 2.2.2.2, 10.0.0.1"


def test_proxy_host_and_port() -> None:
    assert pp(None, "backend").proxy_host == "backend"
    assert pp(None, "127.0.0.1", 8080).proxy_host == "127.0.0.1:8080"
    assert pp(None, "example.com", 80).proxy_host == "example.com"
    assert proxy_port(pp(None, "127.0.0.1", 8080)) == "8080"
    assert proxy_port(pp(None, "backend")) == "80"


# ------------------------------------------------------------------------------------------ request head


def head(**kw: object) -> str:
    args: dict[str, object] = {
        "method": "GET",
        "target": "/x",
        "http_version": "1.1",
        "host": "backend",
        "set_values": [],
        "set_names": frozenset(),
        "client_headers": [],
        "connection": None,
        "upgrade": None,
        "framing": NO_BODY,
    }
    args.update(kw)
    return build_request_head(**args).decode("latin-1")  # type: ignore[arg-type]


def test_request_line_and_host_first() -> None:
    assert head() == "GET /x HTTP/1.1\r\nHost: backend\r\n\r\n"


def test_hop_by_hop_headers_are_not_forwarded() -> None:
    client = [
        ("Host", "client.example"),
        ("Connection", "keep-alive, X-Secret"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "X-T"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "12"),
        ("Expect", "100-continue"),
        ("Upgrade", "websocket"),
        ("X-Secret", "named in Connection"),
        ("Accept", "*/*"),
        ("X-Multi", "1"),
        ("X-Multi", "2"),
    ]
    out = head(client_headers=client, connection="close")
    assert out == (
        "GET /x HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n"
        "Accept: */*\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n"
    )


def test_set_headers_replace_client_ones_and_empty_removes() -> None:
    plan = plan_set_headers(
        (
            HeaderValue("X-Real-IP", "$remote_addr"),
            HeaderValue("Accept-Encoding", ""),
            HeaderValue("Host", "$host"),
            HeaderValue("Content-Length", "999"),
        )
    )
    assert plan.host is not None and plan.host.value == "$host"
    assert [h.name for h in plan.others] == ["X-Real-IP", "Accept-Encoding"]
    assert "accept-encoding" in plan.names and "host" in plan.names
    out = head(
        host="client.example",
        set_values=[("X-Real-IP", "10.0.0.1"), ("Accept-Encoding", "")],
        set_names=plan.names,
        client_headers=[("Accept-Encoding", "gzip"), ("X-Real-IP", "spoofed"), ("User-Agent", "t")],
        framing=Framing("length", 3),
    )
    assert out == (
        "GET /x HTTP/1.1\r\nHost: client.example\r\nX-Real-IP: 10.0.0.1\r\nContent-Length: 3\r\nUser-Agent: t\r\n\r\n"
    )


def test_proxy_pass_request_headers_off() -> None:
    assert head(client_headers=None) == "GET /x HTTP/1.1\r\nHost: backend\r\n\r\n"


def test_upgrade_request_forwards_upgrade() -> None:
    out = head(
        connection="upgrade",
        upgrade="websocket",
        client_headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")],
    )
    assert out == "GET /x HTTP/1.1\r\nHost: backend\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert is_upgrade_request({"upgrade": "websocket", "connection": "keep-alive, Upgrade"})
    assert not is_upgrade_request({"upgrade": "websocket"})


def test_user_set_connection_wins() -> None:
    out = head(
        set_values=[("Connection", "upgrade")], set_names=frozenset({"connection"}), connection="close"
    )
    assert out == "GET /x HTTP/1.1\r\nHost: backend\r\nConnection: upgrade\r\n\r\n"


def test_no_header_injection_through_variables() -> None:
    out = head(set_values=[("X-A", "a\r\nEvil: 1")])
    assert "\r\nEvil" not in out


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"has_body": False, "content_length": None, "buffered_length": 0, "streamed": False}, NO_BODY),
        (
            {"has_body": False, "content_length": 0, "buffered_length": 0, "streamed": False},
            Framing("length", 0),
        ),
        (
            {"has_body": True, "content_length": None, "buffered_length": 11, "streamed": False},
            Framing("length", 11),
        ),
        (
            {"has_body": True, "content_length": 5, "buffered_length": None, "streamed": True},
            Framing("length", 5),
        ),
        (
            {"has_body": True, "content_length": None, "buffered_length": None, "streamed": True},
            Framing("chunked"),
        ),
        ({"has_body": False, "content_length": None, "buffered_length": None, "streamed": True}, NO_BODY),
    ],
)
def test_request_framing(kw: dict[str, object], expected: Framing) -> None:
    assert request_framing(**kw) == expected  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ response side


def test_response_hides_and_drops() -> None:
    hide = hidden_headers(("X-Internal",), ("X-Accel-Buffering",))
    upstream = [
        ("Date", "x"),
        ("Server", "origin"),
        ("X-Pad", "avoid browser bug"),
        ("X-Accel-Redirect", "/internal"),
        ("X-Accel-Buffering", "no"),
        ("X-Internal", "1"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "5"),
        ("Upgrade", "h2c"),
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]
    assert response_headers(upstream, hide=hide) == [
        ("X-Accel-Buffering", "no"),
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
    ]


def test_switching_protocols_keeps_upgrade() -> None:
    out = response_headers(
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", "x")],
        hide=hidden_headers((), ()),
        upgrade=True,
    )
    assert out == [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", "x"), ("Connection", "upgrade")]


def test_proxy_redirect_default_with_uri() -> None:
    rules = redirect_rules(pp("/app/"), loc("/one/"), ProxyRedirect())
    assert rewrite_redirect("http://backend/app/page?x", rules) == "/one/page?x"
    assert rewrite_redirect("http://elsewhere/app/page", rules) is None


def test_proxy_redirect_default_without_uri() -> None:
    rules = redirect_rules(pp(None, "127.0.0.1", 9001), loc("/"), ProxyRedirect())
    assert rewrite_redirect("http://127.0.0.1:9001/login", rules) == "/login"


def test_proxy_redirect_off_and_explicit_rules() -> None:
    assert redirect_rules(pp("/"), loc("/"), ProxyRedirect(default=False, off=True)) == ()
    rules = redirect_rules(
        pp("/"), loc("/"), ProxyRedirect(default=False, rules=(("http://a/", "http://b/"),))
    )
    assert rewrite_redirect("http://a/x", rules) == "http://b/x"
    rx = redirect_rules(
        pp("/"), loc("/"), ProxyRedirect(default=False, rules=((r"~^http://(\w+)/(.*)$", "/$1/$2"),))
    )
    assert rewrite_redirect("http://host/p/q", rx) == "/host/p/q"


def test_location_and_refresh_rewritten_and_made_absolute() -> None:
    rules = redirect_rules(pp("/app/"), loc("/one/"), ProxyRedirect())
    out = response_headers(
        [
            ("Location", "http://backend/app/x"),
            ("Refresh", "5; url=http://backend/app/y"),
            ("Location2", "z"),
        ],
        hide=hidden_headers((), ()),
        rules=rules,
        absolute=lambda p: "http://front:8080" + p,
    )
    assert out == [
        ("Location", "http://front:8080/one/x"),
        ("Refresh", "5; url=/one/y"),
        ("Location2", "z"),
    ]


_NAMES = st.sampled_from(
    ["Host", "X-A", "x-b", "Connection", "Keep-Alive", "Upgrade", "TE", "Content-Length", "Cookie", "X-Hop"]
)
_VALUES = st.sampled_from(["", "v", "close, X-Hop", "keep-alive", "a\r\nInjected: 1", "$var", "upgrade"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, _VALUES, st.booleans()), max_size=5),
    st.lists(st.tuples(_NAMES, _VALUES), max_size=8),
    st.sampled_from([None, "close", "keep-alive", "upgrade"]),
    st.sampled_from([None, "websocket"]),
    st.sampled_from([NO_BODY, Framing("length", 12), Framing("chunked")]),
    st.booleans(),
)
def test_head_template_renders_what_build_request_head_builds(
    set_specs: list[tuple[str, str, bool]],
    client: list[tuple[str, str]],
    connection: str | None,
    upgrade: str | None,
    framing: Framing,
    pass_headers: bool,
) -> None:
    """The compiled template and the reference function agree, whatever is set, constant or not."""
    sh = plan_set_headers(tuple(HeaderValue(n, v) for n, v, _ in set_specs))
    fixed = {(n, v): f for n, v, f in set_specs}
    constant = tuple(fixed[(hv.name, hv.value)] for hv in sh.others)
    rendered = {"v": "v", "$var": "rendered"}  # what a variable value becomes for this request
    values = [rendered.get(hv.value, hv.value) for hv, c in zip(sh.others, constant, strict=True) if not c]
    effective = [
        (hv.name, hv.value if c else rendered.get(hv.value, hv.value))
        for hv, c in zip(sh.others, constant, strict=True)
    ]
    common = dict(
        method="GET",
        target="/t",
        host="up:8080",
        client_headers=client if pass_headers else None,
        connection=connection,
        upgrade=upgrade,
        framing=framing,
    )
    reference = build_request_head(
        http_version="1.1",
        set_values=effective,
        set_names=sh.names,
        **common,  # type: ignore[arg-type]
    )
    template = HeadTemplate("1.1", sh, constant)
    assert template.render(values=values, **common) == reference  # type: ignore[arg-type]
