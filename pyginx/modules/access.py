"""The access phase: `allow` / `deny` (ngx_http_access_module) and `satisfy`, which combines them
with the other access checks (auth_basic, auth_request) as nginx's ngx_http_core_access_phase does.

Rules run in the order written (`allow: [...]` then `deny: all` in key order, or the ordered form
`access: ["deny 10.0.0.1", "allow 10.0.0.0/8", "deny all"]`); the first that matches the client
address decides; none matching lets the request through. A level that writes rules replaces the
rules it would inherit.

The checks run in nginx's module order: rules, auth_basic, auth_request. Each answers ALLOW,
DECLINE (nothing to say) or a status. `satisfy all` (the default): the first status ends the request.
`satisfy any`: the first ALLOW lets the request through; 401 and 403 are remembered (a 401 is kept
over a later 403) and sent if nothing allows; any other status (500) ends the request at once.
A location without rules or auth has no access handler at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields
from pyginx.config.values import Arg, Context, Env, Val
from pyginx.module import DECLINED, DONE, Level, Module, ModuleDirective, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request

_ALL: frozenset[Context] = frozenset({"http", "server", "location"})

# ---------------------------------------------------------------------------------------------------
# verdicts of one access check

Verdict = tuple[int, tuple[tuple[str, str], ...]]  # (status, headers for the answer)
ALLOW: Verdict = (0, ())
DECLINE: Verdict = (-1, ())
Check = Callable[["Request"], "Verdict | Awaitable[Verdict]"]


@dataclass(frozen=True)
class Rule:
    deny: bool
    kind: str  # all | unix | ip
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    text: str = ""


@dataclass(frozen=True)
class AccessConf:
    rules: tuple[Rule, ...] = ()
    satisfy: str = "all"


def parse_rule(deny: bool, arg: Arg, val: Val) -> Rule:
    """One `allow`/`deny` argument: all, unix:, an address or a CIDR (host bits are masked off, as
    nginx does after its warning)."""
    text = arg.text
    if text == "all":
        return Rule(deny, "all", text=text)
    if text == "unix:":
        return Rule(deny, "unix", text=text)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise val.error(f'invalid parameter "{text}"', arg.line) from None
    return Rule(deny, "ip", network, text)


def _rules_of(val: Val, deny: bool) -> list[Rule]:
    rules: list[Rule] = []
    for entry in val.entries():
        args = entry.args()
        if len(args) != 1:
            raise entry.nargs()
        rules.append(parse_rule(deny, args[0], val))
    return rules


def _p_allow(val: Val, env: Env) -> Fields:
    return {"rules": tuple(_rules_of(val, False))}


def _p_deny(val: Val, env: Env) -> Fields:
    return {"rules": tuple(_rules_of(val, True))}


def _p_access(val: Val, env: Env) -> Fields:
    """The ordered form: each element `allow X` or `deny X`."""
    rules: list[Rule] = []
    for entry in val.entries():
        args = entry.args()
        if len(args) != 2 or args[0].text not in ("allow", "deny"):
            raise entry.error(
                'invalid rule in "access" directive: expected "allow X" or "deny X"', entry.line
            )
        rules.append(parse_rule(args[0].text == "deny", args[1], val))
    return {"rules": tuple(rules)}


def _p_satisfy(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text not in ("all", "any"):
        raise val.error(f'invalid value "{arg.text}"', arg.line)
    return {"satisfy": arg.text}


# ---------------------------------------------------------------------------------------------------
# matching


@lru_cache(maxsize=4096)
def _client_ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # nginx tests IPv4-mapped addresses against the IPv4 rules
    return ip


def first_match(rules: tuple[Rule, ...], client_addr: str) -> Rule | None:
    """The first rule matching the client address (`unix:` for connections over a UNIX socket)."""
    unix = client_addr.startswith("unix:")
    ip = None if unix else _client_ip(client_addr)
    for rule in rules:
        if rule.kind == "all":
            return rule
        if rule.kind == "unix":
            if unix:
                return rule
        elif ip is not None and rule.network is not None and ip.version == rule.network.version:
            if ip in rule.network:
                return rule
    return None


def _rules_check(settings: HttpSettings, satisfy_all: bool) -> Check | None:
    conf: AccessConf = settings.conf(MODULE.name)
    rules = conf.rules
    if not rules:
        return None

    def check(req: Request) -> Verdict:
        rule = first_match(rules, req.conn.client_addr)
        if rule is None:
            return DECLINE
        if not rule.deny:
            return ALLOW
        if satisfy_all:
            req.log_error("error", "access forbidden by rule")
        return (403, ())

    return check


# ---------------------------------------------------------------------------------------------------
# the phase handler


def deny(req: Request, verdict: Verdict) -> None:
    """Answer with the verdict's status: a 401 carries its WWW-Authenticate lines on the built-in
    page (an error_page for 401 takes over the answer, without them)."""
    status, headers = verdict
    if headers and not any(code == status for code, _, _ in req.settings.error_page):
        from pyginx.http.status import error_page_body

        req.expect_continue = False
        req.out_headers = []
        body = error_page_body(status, req.settings.server_tokens)
        req.respond(status, [("Content-Type", "text/html"), *headers], body)
        return
    req.send_error(status)


def _handler(checks: tuple[Check, ...], satisfy_any: bool) -> PhaseHandler:
    from pyginx.http.subrequest import SubRequest

    def step(req: Request, verdict: Verdict, remembered: Verdict | None) -> tuple[str, Verdict | None]:
        """("next", what to remember), ("allow", None): access granted, or ("done", None): answered."""
        status = verdict[0]
        if status < 0:
            return "next", remembered
        if status == 0:
            return ("allow", None) if satisfy_any else ("next", remembered)
        if satisfy_any and status in (401, 403):
            keep = remembered if remembered is not None and remembered[0] == 401 else verdict
            return "next", keep
        deny(req, verdict)
        return "done", None

    def end(req: Request, remembered: Verdict | None) -> bool | None:
        if remembered is None:
            return DECLINED
        if remembered[0] == 403:
            req.log_error("error", "access forbidden by rule")
        deny(req, remembered)
        return DONE

    async def rest(
        req: Request, pending: Awaitable[Verdict], i: int, remembered: Verdict | None
    ) -> bool | None:
        got: Verdict | Awaitable[Verdict] = pending
        while True:
            verdict = got if isinstance(got, tuple) else await got
            if req.finished:
                return DONE
            what, remembered = step(req, verdict, remembered)
            if what == "allow":
                return DECLINED
            if what == "done":
                return DONE
            if i == len(checks):
                return end(req, remembered)
            got = checks[i](req)
            i += 1

    def access(req: Request) -> bool | None | Awaitable[bool | None]:
        if isinstance(req, SubRequest):
            return DECLINED  # nginx: subrequests skip the access phase
        remembered: Verdict | None = None
        for i, check in enumerate(checks):
            got = check(req)
            if not isinstance(got, tuple):
                return rest(req, got, i + 1, remembered)
            what, remembered = step(req, got, remembered)
            if what == "allow":
                return DECLINED
            if what == "done":
                return DONE
        return end(req, remembered)

    return access


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    if level != "location":
        return []
    from pyginx.modules import auth_basic, auth_request

    conf: AccessConf = settings.conf(MODULE.name)
    satisfy_any = conf.satisfy == "any"
    found = (
        _rules_check(settings, not satisfy_any),
        auth_basic.check_for(settings),
        auth_request.check_for(settings),
    )
    checks = tuple(c for c in found if c is not None)
    if not checks:
        return []
    return [(Phase.ACCESS, _handler(checks, satisfy_any))]


MODULE = Module(
    name="access",
    conf=AccessConf,
    directives=(
        # ---- access: allow / deny (ngx_http_access_module), the ordered form, satisfy
        ModuleDirective("allow", _ALL, _p_allow, ordered=True),
        ModuleDirective("deny", _ALL, _p_deny, ordered=True),
        ModuleDirective("access", _ALL, _p_access, ordered=True),
        ModuleDirective("satisfy", _ALL, _p_satisfy),
    ),
    plan=_plan,
)
