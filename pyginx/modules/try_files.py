"""try_files as its own phase (nginx's NGX_HTTP_PRECONTENT_PHASE) for locations whose content
handler is not the static one: with `proxy_pass`, the first candidate file that exists becomes the
URI that is proxied, and when none exists the fallback runs (internal redirect, @named, or =code), as
in nginx. The static handler runs try_files itself, with the file it found still in hand."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.module import DECLINED, DONE, Level, Module, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    if settings.try_files is None or settings.proxy_pass is None or level != "location":
        return []
    from pyginx.handlers import static

    def try_files(req: Request) -> bool | None:
        return DECLINED if static.try_files_phase(req) else DONE

    return [(Phase.PRECONTENT, try_files)]


MODULE = Module(name="try_files", plan=_plan)
