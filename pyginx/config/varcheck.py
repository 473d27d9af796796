"""nginx's check that every variable a configuration uses exists (ngx_http_variables_init_vars):
`unknown "remote_adr" variable in FILE:LINE`.

A name is known when the core or a module declares it (exactly, or by a prefix such as `http_`), when
the configuration defines it (`set`, `map`, `geo`, `split_clients`, a named regex capture), or when it
is a numbered capture (`$1`).
"""

from __future__ import annotations

from pyginx import modules
from pyginx.config.values import Env
from pyginx.errors import ConfigError
from pyginx.http.variables import BUILTIN, PREFIXES, RUNTIME_NAMES


def known_names() -> tuple[set[str], tuple[str, ...]]:
    names = set(BUILTIN) | set(RUNTIME_NAMES)
    prefixes = list(PREFIXES)
    for m in modules.ALL:
        names.update(m.variables)
        prefixes.extend(m.prefixed)
    return names, tuple(prefixes)


def check(env: Env) -> None:
    names, prefixes = known_names()
    names |= env.defined_vars
    for name, file, line in env.used_vars:
        low = name.lower()
        if low.isdigit() or low in names or low.startswith(prefixes):
            continue
        raise ConfigError(f'unknown "{name}" variable', file, line)
