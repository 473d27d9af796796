"""The static module: the default content handler (files, directories, index, autoindex,
gzip_static; see pyginx/handlers/static.py). Its directives are the core's (root, alias, index, ...),
as in nginx, where they belong to ngx_http_core_module."""

from __future__ import annotations

from pyginx.config.model import HttpSettings
from pyginx.module import Level, Module, Phase, PhaseHandler


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    from pyginx.handlers import static

    return [(Phase.CONTENT, static.handle)]


def _exit_worker(ctx: object) -> None:
    from pyginx.handlers import static

    static.forget_configurations()


MODULE = Module(name="static", plan=_plan, exit_worker=_exit_worker)
