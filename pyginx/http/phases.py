"""The phase engine (nginx's ngx_http_core_run_phases): one entry path for a request and for every
internal redirect.

    start(req)           (post-read: new requests only), server-rewrite, then find-config
    find_config(req)     location search, then the location's phases (also after `rewrite ... last`)
    run_location(req)    rewrite -> preaccess/access/post-access -> precontent (try_files) -> content
                         (a named location starts here, as ngx_http_named_location does)

Each location's handlers are a Plan, computed once per settings object from the modules' `plan`
declarations (pyginx/module.py), so a request runs only what its location uses: a plain static
location's plan is just its content handler. A handler returning an awaitable suspends the walk
until it resolves; a handler that raises is contained to its request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pyginx import modules
from pyginx.config.model import HttpSettings, Location
from pyginx.errors import HttpError
from pyginx.module import HeaderFilter, Level, Phase, PhaseHandler

if TYPE_CHECKING:
    from pyginx.http.request import Request
    from pyginx.http.router import LocationTable


class Plan:
    """One level's handlers, by phase group, in module order."""

    __slots__ = ("post_read", "server_rewrite", "rewrite", "after", "content", "filters")

    def __init__(self, settings: HttpSettings, level: Level) -> None:
        by_phase: dict[Phase, list[PhaseHandler]] = {}
        for m in modules.ALL:
            if m.plan is None:
                continue
            for phase, handler in m.plan(settings, level):
                by_phase.setdefault(phase, []).append(handler)
        self.post_read: tuple[PhaseHandler, ...] = tuple(by_phase.get(Phase.POST_READ, ()))  # realip
        self.server_rewrite: tuple[PhaseHandler, ...] = tuple(by_phase.get(Phase.SERVER_REWRITE, ()))
        self.rewrite: tuple[PhaseHandler, ...] = tuple(by_phase.get(Phase.REWRITE, ()))
        self.after: tuple[PhaseHandler, ...] = tuple(
            h
            for phase in (Phase.PREACCESS, Phase.ACCESS, Phase.POST_ACCESS, Phase.PRECONTENT)
            for h in by_phase.get(phase, ())
        )
        contents = by_phase.get(Phase.CONTENT, [])
        self.content: PhaseHandler | None = contents[0] if contents else None
        filters: list[HeaderFilter] = []
        for m in modules.ALL:
            if m.header_filter is not None:
                f = m.header_filter(settings)
                if f is not None:
                    filters.append(f)
        self.filters: tuple[HeaderFilter, ...] | None = tuple(filters) or None


class PhaseEngine:
    """The phases of one configuration in one worker (plans are kept as long as the configuration)."""

    def __init__(self, tables: dict[int, LocationTable]) -> None:
        self.tables = tables  # id(server) -> its location table (the servers live as long as we do)
        self._plans: dict[int, tuple[HttpSettings, Plan]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def plan(self, settings: HttpSettings, level: Level = "location") -> Plan:
        found = self._plans.get(id(settings))
        if found is not None:
            return found[1]
        plan = Plan(settings, level)
        self._plans[id(settings)] = (settings, plan)  # the settings are kept: the id stays theirs
        return plan

    # ------------------------------------------------------------------ entry points

    def start(self, req: Request, first: bool = False) -> None:
        """A new request or an internal redirect: (post-read, for a new request only), server
        rewrite, then the location search."""
        splan = self.plan(req.server.settings, "server")
        if first and splan.post_read:
            req.settings = req.server.settings
            self._walk(req, splan.post_read, 0, lambda r: self._server_rewrite(r, splan, first))
            return
        self._server_rewrite(req, splan, first)

    def _server_rewrite(self, req: Request, splan: Plan, first: bool) -> None:
        if splan.server_rewrite:
            req.settings = req.server.settings
            self._walk(req, splan.server_rewrite, 0, lambda r: self.find_config(r, first))
            return
        self.find_config(req, first)

    def find_config(self, req: Request, first: bool = False) -> None:
        table = self.tables.get(id(req.server))
        if table is None:
            req.send_error(500)
            return
        if table.auto_redirect and req.uri in table.auto_redirect:
            # ngx_http_core_find_location's NGX_DONE: before regexes, whatever the method
            target = table.auto_redirect[req.uri].match
            apply_location(req, None)
            req.redirect(301, target + "?" + req.args if req.args else target)
            return
        loc = table.find(req.uri)
        apply_location(req, loc)
        if loc is not None and loc.settings.internal and not req.internal:
            req.send_error(404)
            return
        if first and req.content_length is not None:
            limit = req.settings.client_max_body_size
            if limit and req.content_length > limit:
                req.log_error("error", f"client intended to send too large body: {req.content_length} bytes")
                req.keep_alive = False
                req.send_error(413)
                return
        self.run_location(req)

    def run_location(self, req: Request) -> None:
        plan = self.plan(req.settings)
        req.filters = plan.filters
        if plan.rewrite:
            self._walk(req, plan.rewrite, 0, self._after_rewrite)
        elif plan.after:
            self._walk(req, plan.after, 0, self._content)
        else:
            self._content(req, plan)

    def search_again(self, req: Request) -> None:
        """nginx's post-rewrite phase: the URI changed, search the location again (bounded)."""
        req.redirects += 1
        if req.redirects > MAX_URI_CHANGES:
            req.log_error("error", f'rewrite or internal redirection cycle while processing "{req.uri}"')
            req.fail(500, None)
            return
        self.find_config(req)

    # ------------------------------------------------------------------ walking

    def _after_rewrite(self, req: Request) -> None:
        plan = self.plan(req.settings)  # an `if` may have switched the settings
        req.filters = plan.filters
        if plan.after:
            self._walk(req, plan.after, 0, self._content)
        else:
            self._content(req, plan)

    def _walk(
        self, req: Request, handlers: tuple[PhaseHandler, ...], i: int, then: Callable[[Request], None]
    ) -> None:
        redirects = req.redirects
        n = len(handlers)
        while i < n:
            try:
                result = handlers[i](req)
            except HttpError as exc:
                req.fail(exc.status, None)
                return
            except Exception as exc:  # a module bug must never reach the client or other requests
                req.fail(500, exc)
                return
            if result is None:
                i += 1
                continue
            if result is True or req.finished or req.redirects != redirects:
                return
            self._spawn(self._resume(req, result, handlers, i + 1, then, redirects))
            return
        then(req)

    async def _resume(
        self,
        req: Request,
        pending: Awaitable[Any],
        handlers: tuple[PhaseHandler, ...],
        i: int,
        then: Callable[[Request], None],
        redirects: int,
    ) -> None:
        ok, result = await _settled(req, pending, redirects)
        if not ok:
            return
        if result is True or req.finished or req.redirects != redirects:
            return
        self._walk(req, handlers, i, then)

    def _content(self, req: Request, plan: Plan | None = None) -> None:
        if plan is None:
            plan = self.plan(req.settings)
        handler = plan.content
        if handler is None:
            req.send_error(404)
            return
        try:
            result = handler(req)
        except HttpError as exc:
            req.fail(exc.status, None)
            return
        except Exception as exc:  # a handler bug must never reach the client or other connections
            req.fail(500, exc)
            return
        if result is not None:
            self._spawn(self._guard(req, result))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, req: Request, result: Awaitable[None]) -> None:
        # A handler may pass the request on (error_page, X-Accel-Redirect, named location); the run
        # it started then owns the request, and this one must not answer it again.
        redirects = req.redirects
        ok, _ = await _settled(req, result, redirects)
        if not ok:
            return
        if req.redirects != redirects:
            return
        if not req.finished:
            if req.head_sent:
                req.end()
            else:
                req.fail(500, RuntimeError("handler returned without a response"))


async def _settled(req: Request, pending: Awaitable[Any], redirects: int) -> tuple[bool, Any]:
    """Await a handler's work: (True, its result), or (False, None) once its failure was answered
    (an HttpError's status, 500 for a bug, an abort when the client went away). A handler that
    passed the request on first (`req.redirects` moved) no longer owns it: its failure is not
    answered again, only a bug is logged."""
    try:
        return True, await pending
    except HttpError as exc:
        if req.redirects == redirects:
            req.fail(exc.status, None)
    except (ConnectionError, asyncio.CancelledError):
        if req.redirects == redirects:
            req.abort()
    except Exception as exc:
        if req.redirects == redirects:
            req.fail(500, exc)
        else:
            req.log_error("alert", f"unexpected error in handler after a redirect: {exc!r}")
    return False, None


MAX_URI_CHANGES = 10  # nginx's NGX_HTTP_MAX_URI_CHANGES


def apply_location(req: Request, loc: Location | None) -> None:
    req.location = loc
    req.settings = loc.settings if loc is not None else req.server.settings
    if loc is not None and loc.regex is not None:
        m = loc.regex.search(req.uri)
        if m is not None:
            req.captures = (m.group(0), *m.groups())
            if m.re.groupindex:
                for name, value in m.groupdict().items():
                    req.vars[name.lower()] = value or ""
