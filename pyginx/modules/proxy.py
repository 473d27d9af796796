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
    key = name.replace("_", "-")

    def get(req: Request) -> str:
        if req.upstream_vars is not None:  # the proxy's variables wait there until first read
            req.vars.update(req.upstream_vars())
            req.upstream_vars = None
        headers = req.vars.get("upstream_headers_raw")
        if not headers:
            return ""
        for line in headers.split("\r\n"):
            k, _, v = line.partition(":")
            if k.strip().lower() == key:
                return v.strip()
        return ""

    return get


MODULE = Module(name="proxy", plan=_plan, prefixed={"upstream_http_": _upstream_header})
