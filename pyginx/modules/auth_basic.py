"""HTTP Basic authentication (ngx_http_auth_basic_module): `auth_basic` (a realm, with variables,
or `off`) and `auth_basic_user_file` (htpasswd; relative to the configuration file's directory, as
nginx's conf prefix; may hold variables). The file is checked on every request, re-read only when
it changed (pyginx/modules/htpasswd.py). Also `$remote_user`, from any request's Basic credentials,
as nginx's variable is.

Answers as nginx's: no or unusable credentials -> 401 with `WWW-Authenticate: Basic realm="..."`
(logged at info); an unknown user or a wrong password -> 401, logged at error; a user file that does
not exist -> 403 (`open() "..." failed (2: No such file or directory)`), one that cannot be read ->
500 (crit); a password scheme that cannot be checked -> 500.

The check itself runs in the access phase (pyginx/modules/access.py combines it with allow/deny
under `satisfy`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields
from pyginx.config.units import split_args
from pyginx.config.values import Context, Env, Val
from pyginx.module import Module, ModuleDirective
from pyginx.modules import htpasswd

if TYPE_CHECKING:
    from pyginx.http.request import Request
    from pyginx.modules.access import Check, Verdict

_ALL: frozenset[Context] = frozenset({"http", "server", "location"})


@dataclass(frozen=True)
class AuthBasicConf:
    realm: str | None = None  # None: not set; "off" disables (a template otherwise)
    user_file: str | None = None  # a template; relative paths resolved at load


def _p_auth_basic(val: Val, env: Env) -> Fields:
    """One realm: the YAML string as a whole (`auth_basic: Restricted area`), or `off`."""
    arg = val.raw_string()
    text = arg.text
    try:
        parts = split_args(text)
    except ValueError:
        parts = []
    if len(parts) == 1:
        text = parts[0]  # nginx's own quoting, `'"Zone 1"'`
    env.use_vars(text, arg.line)
    return {"realm": text}


def _p_user_file(val: Val, env: Env) -> Fields:
    arg = val.one()
    path = arg.text
    env.use_vars(path, arg.line)
    if not path.startswith("$") and not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(env.file)), path)
    return {"user_file": path}


def remote_user(req: Request) -> str:
    """$remote_user: the user of any Basic credentials, checked or not (nginx's variable)."""
    authorization = req.headers.get("authorization")
    if authorization is None:  # the usual case, for every line of the combined log format
        return ""
    creds = htpasswd.basic_credentials(authorization)
    return creds[0] if creds is not None else ""


def _loggable(user: str) -> str:
    """A client-chosen name in the error log: control characters as \\xHH (no forged log lines)."""
    if user.isprintable():
        return user
    return "".join(c if c.isprintable() else f"\\x{ord(c):02X}" for c in user)


def check_for(settings: HttpSettings) -> Check | None:
    """The location's auth_basic check, or None when it has none."""
    conf: AuthBasicConf = settings.conf(MODULE.name)
    if conf.realm is None or conf.user_file is None or conf.realm == "off":
        return None
    from pyginx.http.variables import compile_template

    realm_of = compile_template(conf.realm)
    file_of = compile_template(conf.user_file)
    conf_dir = os.path.dirname(conf.user_file) if "$" not in conf.user_file else ""

    def check(req: Request) -> Verdict:
        realm = realm_of(req)
        if realm == "off":
            return (-1, ())
        challenge = (401, (("WWW-Authenticate", f'Basic realm="{realm}"'),))
        creds = htpasswd.basic_credentials(req.headers.get("authorization"))
        if creds is None:
            req.log_error("info", "no user/password was provided for basic authentication")
            return challenge
        user, password = creds
        shown = _loggable(user)
        path = file_of(req)
        if not os.path.isabs(path):
            path = os.path.join(conf_dir or os.getcwd(), path)
        try:
            users = htpasswd.USER_FILES.users(path)
        except OSError as exc:
            code = exc.errno or 0
            reason = os.strerror(code) if code else str(exc)
            if code == errno.ENOENT:
                req.log_error("error", f'open() "{path}" failed ({code}: {reason})')
                return (403, ())
            req.log_error("crit", f'open() "{path}" failed ({code}: {reason})')
            return (500, ())
        stored = users.get(user)
        if stored is None:
            req.log_error("error", f'user "{shown}" was not found in "{path}"')
            return challenge
        try:
            ok = htpasswd.verify(password, stored)
        except htpasswd.SchemeError as exc:
            req.log_error("error", f'cannot check the password of user "{shown}": {exc}')
            return (500, ())
        if ok:
            return (0, ())
        req.log_error("error", f'user "{shown}": password mismatch')
        return challenge

    return check


MODULE = Module(
    name="auth_basic",
    conf=AuthBasicConf,
    directives=(
        # ---- auth_basic (ngx_http_auth_basic_module)
        ModuleDirective("auth_basic", _ALL, _p_auth_basic),
        ModuleDirective("auth_basic_user_file", _ALL, _p_user_file),
    ),
    variables={"remote_user": remote_user},
)
