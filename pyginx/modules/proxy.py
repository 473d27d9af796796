"""The proxy module: `proxy_pass` makes pyginx/handlers/proxy.py the location's content handler.
Its directives are in the core table (pyginx/config/directives.py); its variables are declared here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.module import Getter, Level, Module, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    if settings.proxy_pass is None:
        return []
    from pyginx.handlers import proxy

    return [(Phase.CONTENT, proxy.handle)]


def _upstream_header(name: str) -> Getter:
    """$upstream_http_NAME: a header of the upstream's response (the first of that name, as nginx
    1.22), read from the parsed head the proxy keeps on the request; "" before one arrived."""
    key = name.replace("_", "-")

    def get(req: Request) -> str:
        head = req.upstream_head
        if head is None:
            return ""
        found: str | None = head.get(key)
        return found or ""

    return get


def _exit_worker(ctx: object) -> None:
    from pyginx.handlers import proxy_cache, proxy_plan

    proxy_plan.forget_configurations()
    proxy_cache.forget_configurations()


MODULE = Module(
    name="proxy", plan=_plan, prefixed={"upstream_http_": _upstream_header}, exit_worker=_exit_worker
)
