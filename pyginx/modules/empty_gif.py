"""`empty_gif` (ngx_http_empty_gif_module): the location answers with a 1x1 transparent GIF.

The smallest complete module, and the worked example of docs/modules.md: one directive with its
own conf, and a content handler planned only for the locations that turn it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields
from pyginx.config.values import Env, Val
from pyginx.config.yamlload import YScalar
from pyginx.module import Level, Module, ModuleDirective, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request

# GIF89a, 1x1 pixel, one transparent colour: 43 bytes
GIF = bytes.fromhex(
    "474946383961"
    "0100"
    "0100"
    "80"
    "01"
    "00"  # header, logical screen: 1x1, 1-bit colour table
    "000000"
    "ffffff"  # colour table: black, white
    "21f904"
    "01"
    "0000"
    "01"
    "00"  # graphic control: colour #1 is transparent
    "2c"
    "00000000"
    "0100"
    "0100"
    "00"  # image descriptor: 1x1 at 0,0
    "02"
    "02"
    "4c01"
    "00"  # LZW data: clear, 1, end
    "3b"  # trailer
)
# nginx's fixed Last-Modified for it (23349600 s after the epoch)
LAST_MODIFIED = "Mon, 28 Sep 1970 06:00:00 GMT"


@dataclass(frozen=True)
class EmptyGifConf:
    on: bool = False


def _p_empty_gif(val: Val, env: Env) -> Fields:
    # nginx's directive takes no argument; in YAML it is a flag: `empty_gif: true`
    node = val.node
    if isinstance(node, YScalar) and node.value in (True, None, "on"):
        return {"on": True}
    if isinstance(node, YScalar) and node.value in (False, "off"):
        return {"on": False}
    raise val.invalid(val.one())


def _answer(req: Request) -> None:
    if req.method not in ("GET", "HEAD"):
        req.send_error(405)
        return
    req.respond(200, [("Content-Type", "image/gif"), ("Last-Modified", LAST_MODIFIED)], GIF, has_length=False)


def _plan(settings: HttpSettings, level: Level) -> list[tuple[Phase, PhaseHandler]]:
    conf: EmptyGifConf = settings.conf(MODULE.name)
    if level != "location" or not conf.on:
        return []  # nothing to do here: the location runs no code of this module
    return [(Phase.CONTENT, _answer)]


MODULE = Module(
    name="empty_gif",
    conf=EmptyGifConf,
    own=("on",),  # like nginx's content handlers, not inherited by nested locations
    directives=(ModuleDirective("empty_gif", frozenset({"location"}), _p_empty_gif),),
    plan=_plan,
)
