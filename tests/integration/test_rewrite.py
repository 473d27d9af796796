"""The rewrite module on the real daemon: each rewrite flag, the query-string rules, captures,
`return` in every form, `set`, each `if` condition and what an `if` block inherits, `break`,
`rewrite_log`, the redirect-cycle limit, named locations, `internal`, server-level rewrites (also
after an internal redirect) and try_files with proxy_pass. The configuration is the one the
differential test (test_rewrite_vs_nginx.py) serves with nginx; the answers here are nginx's, written
out, so this file runs without nginx."""

from __future__ import annotations

from tests.integration.harness import Pyginx, free_port, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_rewrite_vs_nginx import IF_CASES, _get, _pyginx_conf, _site

# (target, headers, status, Location (after the port) or None, body or None for an error page)
EXPECTED: list[tuple[str, dict[str, str], int, str | None, bytes | None]] = [
    ("/flags/last/x?q=1", {}, 200, None, b"target /target/x args=q=1\n"),
    ("/flags/break/x.txt", {}, 200, None, b"target file\n"),
    ("/flags/redirect/x?q=1", {}, 302, "/target/x?q=1", None),
    ("/flags/permanent/x", {}, 301, "/target/x", None),
    ("/flags/none/x?q=1", {}, 200, None, b"none /target/x q=1\n"),
    ("/chg/x", {}, 200, None, b"target /target/x args=\n"),
    ("/qs/a?q=1", {}, 200, None, b"target /target/a args=x=1&q=1\n"),
    ("/qs/b?q=1", {}, 200, None, b"target /target/b args=\n"),
    ("/qs/c?q=1", {}, 302, "/target/c?q=1", None),
    ("/qs/d?q=1", {}, 302, "/target/d?y=2&q=1", None),
    ("/qs/e?q=1", {}, 302, "/target/e", None),
    ("/esc/a%20b?c=d%20e", {}, 302, "/target/a%20b?c=d%20e", None),
    ("/escl/a%20b", {}, 200, None, b"target /target/a b args=\n"),
    ("/cap/abc/42", {}, 200, None, b"target /target/abc-42 args=\n"),
    ("/many/a/b/c/d/e/f/g/h/i/j/k", {}, 200, None, b"target /target/ia0a1 args=\n"),
    ("/ret/204", {}, 204, None, b""),
    ("/ret/404", {}, 404, None, None),
    ("/ret/403t", {}, 403, None, b"denied\n"),
    ("/ret/rel", {}, 301, "/target/rel", None),
    ("/ret/ok", {}, 200, None, b"ok\n"),
    ("/ret/unq", {}, 200, None, b"a\tb\n"),
    ("/ret/empty", {}, 200, None, b""),
    ("/ret/302", {}, 302, "/target/x", None),
    ("/ret/var?a=1", {}, 200, None, b"/ret/var?a=1 GET\n"),
    ("/set/?a=zz", {}, 200, None, b"bar-zz\n"),
    ("/ifset/?v=7", {}, 200, None, b"got=v7\n"),
    ("/ifset/", {}, 200, None, b"got=\n"),
    ("/ifproxy/a?p=1", {}, 200, None, b"origin /ifproxy/a?p=1\n"),
    ("/ifproxy/a", {}, 404, None, None),
    ("/brk/?b=1", {}, 404, None, None),
    ("/brk/", {}, 200, None, b"nobreak\n"),
    ("/loop/x", {}, 500, None, None),
    ("/tfloop/x", {}, 500, None, None),
    ("/nloop/x", {}, 500, None, None),
    ("/named/nothing", {}, 200, None, b"fallback /named/nothing\n"),
    ("/named2/nothing", {}, 404, None, b"fallback /named2/nothing\n"),
    ("/tfn/nothing", {}, 200, None, b"fallback /tfn/nothing\n"),
    ("/int/x", {}, 404, None, None),
    ("/toint", {}, 200, None, b"internal /int/y\n"),
    ("/epint/nothing", {}, 404, None, b"internal /int/e\n"),
    ("/srv/abc", {}, 200, None, b"target /target/srv-abc args=\n"),
    ("/srvlast/abc", {}, 200, None, b"target /target/sl-abc args=\n"),
    ("/flags/last/x?srvret=1", {}, 410, None, None),
    ("/eps/nothing", {}, 404, None, b"target /target/srv-e args=\n"),
    ("/tfp/anything?z=1", {}, 200, None, b"origin /tfp/anything?z=1\n"),
    ("/tfp2/nothing", {}, 200, None, b"fallback /tfp2/nothing\n"),
    ("/qs2/a%3Fb?c=1", {}, 200, None, b"target /target/a?b args=x=a%3Fb&c=1\n"),
    ("/srvset/", {}, 200, None, b"srv=s1\n"),
    ("/ifua/", {"User-Agent": "Mozilla GoogleBot/2"}, 403, None, None),
    ("/ifua/", {"User-Agent": "curl"}, 200, None, b"human\n"),
    ("/ep200/nothing", {}, 200, None, b"target /target/ep args=\n"),
    ("/iflast/?go=1", {}, 200, None, b"target /target/from-if args=go=1\n"),
    ("/iflast/", {}, 200, None, b"stayed\n"),
    ("/setcap/abc", {}, 200, None, b"<abc> /x/abc\n"),
    ("/caploc/abc/def", {}, 200, None, b"abc abc def\n"),
]

# per IF_CASES entry: what each of its requests answers (yes with $1 and $w, or no)
IF_EXPECTED: list[list[bytes]] = [
    [b"yes  \n", b"no\n", b"no\n", b"no\n"],
    [b"yes  \n", b"no\n"],
    [b"no\n", b"yes  \n"],
    [b"yes 12 ab\n", b"no\n"],
    [b"yes  \n", b"no\n"],
    [b"no\n", b"yes  \n"],
    [b"no\n", b"yes  \n"],
    [b"yes  \n"],
    [b"no\n"],
    [b"no\n"],
    [b"yes  \n"],
    [b"yes  \n"],
    [b"yes  \n"],
    [b"yes  \n"],
    [b"yes  \n"],
    [b"yes  \n"],
    [b"no\n", b""],
]


def _start(pyginx: Pyginx) -> int:
    _site(pyginx.prefix)
    origin = free_port()
    pyginx.write_config(_pyginx_conf(pyginx.prefix, pyginx.port, origin))
    pyginx.start()
    return origin


def test_rewrite_answers(pyginx: Pyginx) -> None:  # noqa: F811
    _start(pyginx)
    wrong = []
    for target, headers, status, location, body in EXPECTED:
        line, got_headers, got_body = _get(pyginx.port, target, headers)
        got_status = int(line.split()[1])
        got_location = got_headers.get("location")
        if location is not None:
            location = f"http://localhost:{pyginx.port}{location}"
        if (got_status, got_location) != (status, location) or (body is not None and got_body != body):
            wrong.append(f"{target}: {got_status} {got_location} {got_body!r}")
    assert not wrong, "\n".join(wrong)


def test_if_conditions(pyginx: Pyginx) -> None:  # noqa: F811
    _start(pyginx)
    wrong = []
    for n, ((cond, queries), answers) in enumerate(zip(IF_CASES, IF_EXPECTED, strict=True)):
        for query, answer in zip(queries, answers, strict=True):
            line, _, body = _get(pyginx.port, f"/if/{n}/{query}", {})
            if answer and body != answer:
                wrong.append(f"if ({cond}) with {query!r}: {line} {body!r}, want {answer!r}")
    assert not wrong, "\n".join(wrong)


def test_headers_inside_if_replace_the_locations(pyginx: Pyginx) -> None:  # noqa: F811
    _start(pyginx)
    _, with_if, _ = _get(pyginx.port, "/ifhdr/?h=1", {})
    _, without, _ = _get(pyginx.port, "/ifhdr/", {})
    assert with_if.get("x-if") == "inner" and "x-loc" not in with_if
    assert without.get("x-loc") == "outer" and "x-if" not in without


def test_return_444_closes_without_an_answer(pyginx: Pyginx) -> None:  # noqa: F811
    _start(pyginx)
    assert _get(pyginx.port, "/ret/444", {}) == ("closed", {}, b"")


def test_rewrite_log_and_the_cycle_limit(pyginx: Pyginx) -> None:  # noqa: F811
    _start(pyginx)
    _get(pyginx.port, "/rl/x", {})
    _get(pyginx.port, "/loop/x", {})
    _get(pyginx.port, "/tfloop/x", {})
    _get(pyginx.port, "/nloop/x", {})

    def logged() -> bool:
        text = pyginx.error_log()
        return 'rewrite or internal redirection cycle while processing "/loop/x"' in text and (
            '"^/rl/(.*)$" matches "/rl/x"' in text
        )

    wait_for(logged, 10, "the rewrite_log and cycle lines")
    text = pyginx.error_log()
    assert "[notice]" in next(line for line in text.splitlines() if '"^/rl/(.*)$" matches' in line)
    assert 'rewritten data: "/target/rl-x", args: ""' in text
    cycle = next(line for line in text.splitlines() if "redirection cycle" in line)
    assert "[error]" in cycle and 'request: "GET /loop/x HTTP/1.1"' in cycle
    wait_for(lambda: 'while redirect to named location "@nl"' in pyginx.error_log(), 10, "the named cycle")
    assert 'cycle while internally redirecting to "/tfloop/x"' in pyginx.error_log()


def test_upstream_header_variable(pyginx: Pyginx) -> None:  # noqa: F811
    _start(pyginx)
    _, headers, body = _get(pyginx.port, "/uph/", {})
    assert body == b"hdr\n"
    up, status, addr = headers["x-foo"].split("|")
    assert (up, status) == ("upval", "200") and addr.startswith("127.0.0.1:")
