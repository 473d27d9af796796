"""The rewrite module's parsing (nginx's errors, with file and line) and its pure decisions: the
replacement's captures and their escaping, `$10`, the query-string flags, `if` conditions."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pyginx.config import load_config  # first: the configuration package loads the module registry
from pyginx.config.model import MainConfig
from pyginx.errors import ConfigError
from pyginx.http.variables import compile_template
from pyginx.modules.rewrite import IfOp, RewriteConf, RewriteOp, compile_replacement, escape_args


def load(tmp_path: Path, location: str) -> MainConfig:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    body = textwrap.indent(textwrap.dedent(location).strip(), " " * 10)
    conf.write_text(
        "http:\n  servers:\n    - listen: 127.0.0.1:8080\n      locations:\n        - location: /\n" + body + "\n"
    )
    return load_config(str(conf), str(tmp_path))


def ops(cfg: MainConfig) -> tuple[Any, ...]:
    assert cfg.http is not None
    conf: RewriteConf = cfg.http.servers[0].locations[0].settings.conf("rewrite")
    return conf.ops


def req(uri: str = "/", request_uri: str | None = None, captures: tuple[str, ...] | None = None) -> Any:
    return SimpleNamespace(
        uri=uri, request_uri=request_uri or uri, captures=captures, vars={}, args="", conn=SimpleNamespace()
    )


def test_flags_and_redirect_kinds(tmp_path: Path) -> None:
    got = ops(
        load(
            tmp_path,
            """
            rewrite:
              - ^/a /b last
              - ^/a /b break
              - ^/a /b redirect
              - ^/a /b permanent
              - ^/a http://x/b
              - ^/a $scheme://x/b
              - ^/a /b?x=1
              - ^/a /b?
            """,
        )
    )
    assert all(isinstance(op, RewriteOp) for op in got)
    assert [(op.flag, op.redirect) for op in got] == [
        ("last", 0),
        ("break", 0),
        ("redirect", 302),
        ("permanent", 301),
        ("", 302),
        ("", 302),
        ("", 0),
        ("", 0),
    ]
    assert (got[6].has_args, got[6].add_args) == (True, True)
    assert (got[7].replacement, got[7].add_args) == ("/b", False)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("rewrite: ^/a /b sideways", 'invalid parameter "sideways"'),
        ("rewrite: ^/a", 'invalid number of arguments in "rewrite" directive'),
        ("rewrite: (/a /b", "pcre2_compile() failed"),
        ("rewrite: ^/a /$nope", 'unknown "nope" variable'),
        ("set: foo bar", 'invalid variable name "foo"'),
        ("'if ($a ~ ())': {return: 403}", 'unknown "a" variable'),
        ("'if ($uri ~ (x)': {return: 403}", "pcre2_compile() failed"),
        ("'if ($uri <> x)': {return: 403}", 'unexpected "<>" in condition'),
        ("'if (-q $uri)': {return: 403}", 'invalid condition "-q"'),
        ("rewrite_log: maybe", 'it must be "on" or "off"'),
        ("'if ($arg_a)': {'if ($arg_b)': {return: 403}}", '"if" directive is not allowed here'),
    ],
)
def test_errors(tmp_path: Path, location: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, location)
    assert message in str(info.value)
    assert str(info.value).endswith("pyginx.yaml:6")


def test_if_block_settings_inherit_and_replace(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        add_header: X-Outer 1
        proxy_pass: http://127.0.0.1:9
        'if ($arg_a)': {add_header: X-Inner 1}
        """,
    )
    (op,) = ops(cfg)
    assert isinstance(op, IfOp) and op.settings is not None
    assert [h.name for h in op.settings.add_header] == ["X-Inner"]  # add_header replaces the list
    assert op.settings.proxy_pass is not None  # the content handler is the location's


def test_escape_args_as_ngx_escape_uri() -> None:
    assert escape_args("a b?c&d#e%f+g;h") == "a%20b%3Fc%26d%23e%25f%2Bg%3Bh"
    assert escape_args("plain/-._~") == "plain/-._~"
    assert escape_args("é") == "%C3%A9"


def test_captures_escaped_in_redirects_when_the_uri_was_escaped() -> None:
    redirect = compile_replacement("/to/$1", True)
    internal = compile_replacement("/to/$1", False)
    escaped = req("/a b", "/a%20b", ("/a b", "a b"))
    plain = req("/a b", "/a b", ("/a b", "a b"))  # as nginx: no %XX in the request, no escaping
    assert redirect(escaped) == "/to/a%20b"
    assert redirect(plain) == "/to/a b"
    assert internal(escaped) == "/to/a b"
    assert compile_replacement("x=$1", True)(escaped) == "x=a%20b"  # an argument part


def test_ten_is_capture_one_then_zero() -> None:
    r = req(captures=("all", "one", "two"))
    assert compile_template("$10")(r) == "one0"
    assert compile_replacement("$1$2$3", False)(r) == "onetwo"
