"""The gzip module (ngx_http_gzip_filter_module, with the gzip_* directives nginx keeps in its core
module): an output filter that compresses responses as they stream, and, beyond nginx, brotli and
zstd with the same rules (`brotli`, `brotli_comp_level`, `zstd`, `zstd_comp_level`: extensions, the
codings chosen by the client's Accept-Encoding q-values, ties going br > zstd > gzip).

A response is compressed as nginx's ngx_http_gzip_header_filter decides: status 200, 403 or 404; no
Content-Encoding yet; a known length of at least gzip_min_length (an unknown one passes); a type in
gzip_types (text/html always); then ngx_http_gzip_ok (Accept-Encoding, gzip_http_version,
gzip_disable, gzip_proxied for requests with Via). Its Content-Length and Accept-Ranges go, its ETag
turns weak (W/) or goes, and the body length becomes unknown (chunked for HTTP/1.1, close-delimited
for 1.0). Ranges never reach it (the static handler answers 206 before), nor do 204/304. HEAD gets
the headers GET would, without compressing anything. `gzip_vary` (a core setting, shared with
gzip_static) adds `Vary: Accept-Encoding` to every response that was a candidate.

The filter exists only for locations that enable a coding: others pay nothing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.config.parsers import Fields, arg_flag, arg_size, count_and_size
from pyginx.config.units import compile_regex
from pyginx.config.values import Context, Env, Val
from pyginx.module import HeaderFilter, Module, ModuleDirective
from pyginx.modules import compression

if TYPE_CHECKING:
    from pyginx.http.request import Request

_ALL: frozenset[Context] = frozenset({"http", "server", "location"})
_WITH_IF: frozenset[Context] = _ALL | {"if"}
_STATUSES = (200, 403, 404)


@dataclass(frozen=True)
class GzipConf:
    gzip: bool = False
    types: frozenset[str] = frozenset({"text/html"})
    types_any: bool = False  # gzip_types *
    min_length: int = 20
    comp_level: int = 1
    http_version: int = 1  # the minor version required: gzip_http_version 1.1
    proxied: frozenset[str] = frozenset({"off"})
    disable: tuple[re.Pattern[str], ...] = ()
    disable_msie6: bool = False
    buffers: tuple[int, int] = (32, 4096)  # accepted; the compressor sizes its own buffers
    # extensions
    brotli: bool = False
    brotli_comp_level: int = 6
    zstd: bool = False
    zstd_comp_level: int = 1


def _flag(field: str) -> ModuleDirective:
    def parse(val: Val, env: Env) -> Fields:
        return {field: arg_flag(val, val.one())}

    return ModuleDirective(field, _WITH_IF if field == "gzip" else _ALL, parse)


def _level(name: str, field: str, low: int, high: int) -> ModuleDirective:
    def parse(val: Val, env: Env) -> Fields:
        arg = val.one()
        if not arg.text.isdigit():
            raise val.error(f'"{name}" directive invalid number', arg.line)
        n = int(arg.text)
        if not low <= n <= high:
            raise val.error(f"value must be between {low} and {high}", arg.line)
        return {field: n}

    return ModuleDirective(name, _ALL, parse)


def _p_types(val: Val, env: Env) -> Fields:
    types = {"text/html"}
    any_type = False
    for arg in val.args():
        if arg.text == "*":
            any_type = True
        else:
            types.add(arg.text.lower())
    return {"types": frozenset(types), "types_any": any_type}


def _p_min_length(val: Val, env: Env) -> Fields:
    return {"min_length": arg_size(val, val.one())}


def _p_http_version(val: Val, env: Env) -> Fields:
    arg = val.one()
    if arg.text not in ("1.0", "1.1"):
        raise val.error(f'invalid value "{arg.text}"', arg.line)
    return {"http_version": 1 if arg.text == "1.1" else 0}


def _p_proxied(val: Val, env: Env) -> Fields:
    flags: set[str] = set()
    for arg in val.args():
        if arg.text not in compression.PROXIED_FLAGS:
            raise val.error(f'invalid value "{arg.text}"', arg.line)
        flags.add(arg.text)
    return {"proxied": frozenset(flags)}


def _p_disable(val: Val, env: Env) -> Fields:
    patterns: list[re.Pattern[str]] = []
    msie = False
    for arg in val.args():
        if arg.text == "msie6":
            msie = True
            continue
        try:
            patterns.append(compile_regex(arg.text, ignore_case=True))
        except re.error as exc:
            raise val.error(f'pcre2_compile() failed: {exc} in "{arg.text}"', arg.line) from exc
    return {"disable": tuple(patterns), "disable_msie6": msie}


def _p_buffers(val: Val, env: Env) -> Fields:
    return {"buffers": count_and_size("buffers")(val, env)["buffers"]}


def request_ok(req: Request, conf: GzipConf, response: list[tuple[str, str]]) -> bool:
    """ngx_http_gzip_ok without the Accept-Encoding test (also used by gzip_static)."""
    return compression.request_ok(
        req.http_minor,
        req.headers,
        response,
        min_minor=conf.http_version,
        proxied=conf.proxied,
        disable=conf.disable,
        disable_msie6=conf.disable_msie6,
        now=time.time(),
    )


def _header_filter(settings: HttpSettings) -> HeaderFilter | None:
    conf: GzipConf = settings.conf(MODULE.name)
    offered = tuple(
        coding
        for coding, on in (("br", conf.brotli), ("zstd", conf.zstd), ("gzip", conf.gzip))
        if on and compression.available(coding)
    )
    if not offered:
        return None
    from pyginx.handlers.static import gzip_accepted
    from pyginx.http.subrequest import SubRequest

    levels = {"br": conf.brotli_comp_level, "zstd": conf.zstd_comp_level, "gzip": conf.comp_level}
    only_gzip = offered == ("gzip",)
    vary = settings.gzip_vary
    types, types_any, min_length = conf.types, conf.types_any, conf.min_length

    def eligible(req: Request, status: int, headers: list[tuple[str, str]], length: int | None) -> bool:
        """Whether the response may be compressed at all (then gzip_vary marks it)."""
        effective = req.error_status if req.error_status and status == 200 else status
        if effective not in _STATUSES or (length is not None and length < min_length):
            return False
        if isinstance(req, SubRequest):  # nginx's gzip_ok: r != r->main
            return False
        content_type = ""
        for name, value in headers:
            lower = name.lower()
            if lower == "content-encoding" and value:
                return False
            if lower == "content-type":
                content_type = value
        return types_any or content_type.partition(";")[0].strip().lower() in types

    def coding_for(req: Request, headers: list[tuple[str, str]]) -> str | None:
        """The coding the client takes, or None."""
        ae = req.headers.get("accept-encoding")
        if ae is None:
            return None
        coding = ("gzip" if gzip_accepted(ae) else None) if only_gzip else compression.choose(ae, offered)
        if coding is None or not request_ok(req, conf, headers):
            return None
        return coding

    def recodes(req: Request, status: int, headers: list[tuple[str, str]], length: int | None) -> bool:
        """This response would be compressed: its length is unknown in advance, so the static
        handler serves no range of it (nginx's range filter skips a response whose length the gzip
        filter cleared: a Range request gets the whole compressed 200)."""
        return eligible(req, status, headers, length) and coding_for(req, headers) is not None

    def head(
        req: Request, status: int, headers: list[tuple[str, str]], length: int | None
    ) -> tuple[int, list[tuple[str, str]], int | None]:
        # a 206 was a 200 when nginx's gzip filter saw it (the range filter comes after): it is
        # marked by gzip_vary like one, and never compressed (the handler asked `recodes` first)
        if not eligible(req, 200 if status == 206 else status, headers, length):
            return status, headers, length
        if vary and ("Vary", "Accept-Encoding") not in headers:  # gzip_static may have marked it
            headers = [*headers, ("Vary", "Accept-Encoding")]
        if status == 206:
            return status, headers, length
        coding = coding_for(req, headers)
        if coding is None:
            return status, headers, length
        out: list[tuple[str, str]] = []
        for name, value in headers:
            lower = name.lower()
            if lower in ("content-length", "accept-ranges"):
                continue
            if lower == "etag":
                if value.startswith("W/") and len(value) > 2:
                    pass
                elif value.startswith('"'):
                    value = "W/" + value
                else:
                    continue  # nginx drops an ETag it cannot weaken
            out.append((name, value))
        out.append(("Content-Encoding", coding))
        # HEAD too: a whole response's Content-Length is then the compressed one, as for GET
        req.body_filter = compression.encoder(coding, levels[coding])
        return status, out, None

    return HeaderFilter("gzip", head, recodes)


MODULE = Module(
    name="gzip",
    conf=GzipConf,
    directives=(
        # ---- gzip (ngx_http_gzip_filter_module and the core's gzip_* directives)
        _flag("gzip"),
        ModuleDirective("gzip_types", _ALL, _p_types),
        ModuleDirective("gzip_min_length", _ALL, _p_min_length),
        _level("gzip_comp_level", "comp_level", 1, 9),
        ModuleDirective("gzip_http_version", _ALL, _p_http_version),
        ModuleDirective("gzip_proxied", _ALL, _p_proxied),
        ModuleDirective("gzip_disable", _ALL, _p_disable),
        ModuleDirective("gzip_buffers", _ALL, _p_buffers),
        # ---- extensions: brotli and zstd (the `compress` extra)
        _flag("brotli"),
        _level("brotli_comp_level", "brotli_comp_level", 0, 11),
        _flag("zstd"),
        _level("zstd_comp_level", "zstd_comp_level", 1, 22),
    ),
    header_filter=_header_filter,
)

__all__ = ["MODULE", "GzipConf", "request_ok"]
