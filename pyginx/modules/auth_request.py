"""Authorization by subrequest (ngx_http_auth_request_module): `auth_request URI` (or `off`) and
`auth_request_set $variable value`.

In the access phase the request waits for a header-only subrequest to URI (pyginx/http/subrequest.py:
the original headers, no body; typically an internal location proxied to an auth service such as
oauth2-proxy). Its status decides: 2xx allows, 401 is passed to the client with the subrequest's
WWW-Authenticate, 403 is passed on, anything else is a 500 (`auth request unexpected status: N`).
`auth_request_set` values are evaluated against the subrequest once it is done (so
`$upstream_http_x_user` is the auth service's X-User header) and set on the request, whatever the
outcome, as nginx does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields
from pyginx.config.values import Context, Env, Val
from pyginx.config.yamlload import YMap, YScalar
from pyginx.errors import ConfigError
from pyginx.module import Module, ModuleDirective

if TYPE_CHECKING:
    from pyginx.http.request import Request
    from pyginx.modules.access import Check, Verdict

_ALL: frozenset[Context] = frozenset({"http", "server", "location"})


@dataclass(frozen=True)
class AuthRequestConf:
    uri: str | None = None  # None: not set; "" after `off`
    sets: tuple[tuple[str, str], ...] = ()  # (variable name without $, value template)


def _p_auth_request(val: Val, env: Env) -> Fields:
    arg = val.one()
    return {"uri": "" if arg.text == "off" else arg.text}


def _p_auth_request_set(val: Val, env: Env) -> Fields:
    pairs: list[tuple[str, str, int]] = []
    if isinstance(val.node, YMap):
        for k, v in val.mapping():
            text = v.text if isinstance(v, YScalar) and v.value is not None else ""
            pairs.append((k.raw, text, k.line))
    else:
        for entry in val.entries():
            args = entry.args()
            if len(args) != 2:
                raise entry.nargs()
            pairs.append((args[0].text, args[1].text, args[0].line))
    out: list[tuple[str, str]] = []
    for name, value, line in pairs:
        if not name.startswith("$") or len(name) < 2:
            raise ConfigError(f'invalid variable name "{name}"', val.file, line)
        env.defined_vars.add(name[1:].lower())
        env.use_vars(value, line)
        out.append((name[1:].lower(), value))
    return {"sets": tuple(out)}


def check_for(settings: HttpSettings) -> Check | None:
    """The location's auth_request check, or None when it has none."""
    conf: AuthRequestConf = settings.conf(MODULE.name)
    if not conf.uri:
        return None
    from pyginx.http import subrequest
    from pyginx.http.variables import compile_template

    path, _, args = conf.uri.partition("?")
    sets = tuple((name, compile_template(value)) for name, value in conf.sets)

    async def check(req: Request) -> Verdict:
        sub = await subrequest.run(req, path, args)
        for name, get in sets:
            req.vars[name] = get(sub)
        status = sub.status
        if status == 403:
            return (403, ())
        if status == 401:
            challenge = tuple((n, v) for n, v in sub.out_headers if n.lower() == "www-authenticate")
            return (401, challenge)
        if 200 <= status < 300:
            return (0, ())
        req.log_error("error", f"auth request unexpected status: {status}")
        return (500, ())

    return check


MODULE = Module(
    name="auth_request",
    conf=AuthRequestConf,
    directives=(
        # ---- auth_request (ngx_http_auth_request_module)
        ModuleDirective("auth_request", _ALL, _p_auth_request),
        ModuleDirective("auth_request_set", _ALL, _p_auth_request_set, ordered=True),
    ),
)
