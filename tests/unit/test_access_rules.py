"""allow/deny rules: parsing (YAML shapes, file order across keys, nginx's errors) and matching."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyginx.config import load_config
from pyginx.config.model import HttpSettings
from pyginx.errors import ConfigError
from pyginx.modules import access
from pyginx.modules.auth_request import AuthRequestConf


def _load(tmp_path: Path, location: str, http: str = "") -> list[HttpSettings]:
    conf = tmp_path / "conf" / "pyginx.yaml"
    conf.parent.mkdir(exist_ok=True)
    text = f"""http:
{textwrap.indent(textwrap.dedent(http).strip(), "  ") if http.strip() else ""}
  servers:
    - listen: 127.0.0.1:8080
      locations:
        - location: /
{textwrap.indent(textwrap.dedent(location).strip(), " " * 10)}
        - location: /other
"""
    conf.write_text(text)
    config = load_config(str(conf), str(tmp_path))
    assert config.http is not None
    return [loc.settings for loc in config.http.servers[0].locations]


def _rules(s: HttpSettings) -> list[str]:
    conf: access.AccessConf = s.conf("access")
    return [("deny " if r.deny else "allow ") + r.text for r in conf.rules]


def test_key_order_and_lists(tmp_path: Path) -> None:
    loc, _ = _load(tmp_path, "allow: [127.0.0.1, 10.0.0.0/8]\ndeny: all")
    assert _rules(loc) == ["allow 127.0.0.1", "allow 10.0.0.0/8", "deny all"]
    loc, _ = _load(tmp_path, "deny: 10.0.0.1\nallow: 10.0.0.0/8")
    assert _rules(loc) == ["deny 10.0.0.1", "allow 10.0.0.0/8"]


def test_ordered_form_and_inheritance(tmp_path: Path) -> None:
    loc, other = _load(
        tmp_path, 'access: ["deny 10.0.0.1", "allow 10.0.0.0/8", "deny all"]', http="deny: 192.0.2.1"
    )
    assert _rules(loc) == ["deny 10.0.0.1", "allow 10.0.0.0/8", "deny all"]  # replaces the inherited
    assert _rules(other) == ["deny 192.0.2.1"]


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("allow: 10.0.0.0/33", 'invalid parameter "10.0.0.0/33"'),
        ("deny: foo", 'invalid parameter "foo"'),
        ("allow: ::1/129", 'invalid parameter "::1/129"'),
        ("allow: 10.0.0.1 10.0.0.2", 'invalid number of arguments in "allow" directive'),
        ("access: ['permit 10.0.0.1']", 'invalid rule in "access" directive: expected "allow X" or "deny X"'),
        ("satisfy: some", 'invalid value "some"'),
        ("auth_request_set: {user: $http_x}", 'invalid variable name "user"'),
        ("auth_request_set: $x", 'invalid number of arguments in "auth_request_set" directive'),
        ("auth_basic_user_file: [a, b]", 'invalid number of arguments in "auth_basic_user_file" directive'),
        ("auth_basic: 'x $nosuchvar'", 'unknown "nosuchvar" variable'),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, directive: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, directive)
    assert str(info.value) == f"{message} in {tmp_path / 'conf' / 'pyginx.yaml'}:7"


def test_missing_user_file_is_not_a_load_error(tmp_path: Path) -> None:
    loc, _ = _load(tmp_path, "auth_basic: closed\nauth_basic_user_file: htpasswd")
    assert loc.conf("auth_basic").user_file == str(tmp_path / "conf" / "htpasswd")  # the conf dir, as nginx


def test_auth_request_set_defines_its_variable(tmp_path: Path) -> None:
    loc, _ = _load(
        tmp_path,
        "auth_request: /auth\nauth_request_set: {$user: $upstream_http_x_user}\nadd_header: {X-U: $user}",
    )
    conf: AuthRequestConf = loc.conf("auth_request")
    assert conf.uri == "/auth" and conf.sets == (("user", "$upstream_http_x_user"),)


def _rule_list(*texts: str) -> tuple[access.Rule, ...]:
    import ipaddress

    out = []
    for t in texts:
        verb, _, what = t.partition(" ")
        if what in ("all", "unix:"):
            out.append(access.Rule(verb == "deny", "all" if what == "all" else "unix", text=what))
        else:
            out.append(access.Rule(verb == "deny", "ip", ipaddress.ip_network(what, strict=False), what))
    return tuple(out)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("10.0.0.1", "deny 10.0.0.1"),
        ("10.1.2.3", "allow 10.0.0.0/8"),
        ("::ffff:10.1.2.3", "allow 10.0.0.0/8"),  # IPv4-mapped: tested as IPv4, as nginx
        ("2001:db8::5", "allow 2001:db8::/32"),
        ("2001:db9::5", "deny all"),
        ("unix:", "allow unix:"),
        ("192.0.2.1", "deny all"),
    ],
)
def test_first_match(addr: str, expected: str) -> None:
    rules = _rule_list("deny 10.0.0.1", "allow 10.0.0.0/8", "allow 2001:db8::/32", "allow unix:", "deny all")
    rule = access.first_match(rules, addr)
    assert rule is not None and ("deny " if rule.deny else "allow ") + rule.text == expected


def test_no_match_declines_and_host_bits_are_masked() -> None:
    assert access.first_match(_rule_list("allow 10.0.0.1/8"), "10.9.9.9") is not None
    assert access.first_match(_rule_list("deny 10.0.0.0/8"), "192.0.2.1") is None
    assert access.first_match(_rule_list("deny 10.0.0.0/8"), "unix:") is None


def test_user_names_are_logged_without_control_characters() -> None:
    from pyginx.modules.auth_basic import _loggable

    assert _loggable("été") == "été"
    assert _loggable('a\nb"') == 'a\\x0Ab"'


def test_a_location_without_access_or_compression_runs_nothing_of_them(tmp_path: Path) -> None:
    from pyginx.http.phases import Plan

    guarded, plain = _load(tmp_path, "allow: 127.0.0.1\ngzip: true\nauth_basic: x\nauth_basic_user_file: f")
    plan = Plan(plain, "location")
    assert plan.after == () and plan.filters is None  # the static content handler alone
    plan = Plan(guarded, "location")
    assert len(plan.after) == 1 and plan.filters is not None and [f.name for f in plan.filters] == ["gzip"]
    off, _ = _load(tmp_path, "auth_basic: 'off'\nauth_basic_user_file: f\nauth_request: 'off'")
    assert Plan(off, "location").after == ()
