"""`readiness: true` (a pyginx extension, issue 16): the location answers 200 "ready" while the
worker serves, and 503 from the moment a graceful quit starts, so that a balancer's probe stops
sending new connections while the worker still accepts them for `shutdown_delay` and then drains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields, arg_flag
from pyginx.config.values import Env, Val
from pyginx.module import Level, Module, ModuleDirective, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request


@dataclass(frozen=True)
class ReadinessConf:
    on: bool = False


def _p_readiness(val: Val, env: Env) -> Fields:
    return {"on": arg_flag(val, val.one())}


def _answer(req: Request) -> None:
    from pyginx import lifecycle

    if req.expect_continue:
        req.send_continue()
    if lifecycle.ready():
        req.respond(200, [("Content-Type", "text/plain")], b"ready\n")
        return
    req.keep_alive = False
    req.respond(503, [("Content-Type", "text/plain")], b"shutting down\n")


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    conf: ReadinessConf = settings.conf(MODULE.name)
    return [(Phase.CONTENT, _answer)] if level == "location" and conf.on else []


MODULE = Module(
    name="readiness",
    conf=ReadinessConf,
    own=("on",),
    directives=(ModuleDirective("readiness", frozenset({"location"}), _p_readiness),),
    plan=_plan,
)
