"""From a parsed request to the handler that answers it: location choice, the checks nginx makes
before content handlers (internal locations, client_max_body_size), `return`, and running the handler
(synchronously, or as a task when it is a coroutine), with every exception contained to its request.
"""

from __future__ import annotations

import asyncio
import importlib
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pyginx.config.model import Location
from pyginx.errors import HttpError
from pyginx.http.variables import compile_template

if TYPE_CHECKING:
    from pyginx.http.request import Request
    from pyginx.http.router import LocationTable

Handler = Callable[["Request"], "Awaitable[None] | None"]

_REDIRECT_CODES = (301, 302, 303, 307, 308)


def _static_handler() -> Handler:
    module = importlib.import_module("pyginx.handlers.static")
    handle: Handler = module.handle
    return handle


def _proxy_handler() -> Handler:
    module = importlib.import_module("pyginx.handlers.proxy")
    handle: Handler = module.handle
    return handle


class Dispatcher:
    """Holds the handler functions (imported once) and routes requests to them."""

    def __init__(self) -> None:
        self.static: Handler | None = None  # imported on first use (keeps start-up light)
        self.proxy: Handler | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def route(self, req: Request, table: LocationTable) -> bool:
        """Choose the location for req.uri; False when the request was answered (an error)."""
        if table.auto_redirect and req.uri in table.auto_redirect:
            # ngx_http_core_find_location's NGX_DONE: before regexes, whatever the method
            target = table.auto_redirect[req.uri].match
            self.apply_location(req, None)
            req.redirect(301, target + "?" + req.args if req.args else target)
            return False
        loc = table.find(req.uri)
        self.apply_location(req, loc)
        if loc is not None and loc.settings.internal and not req.internal:
            req.send_error(404)
            return False
        return True

    @staticmethod
    def apply_location(req: Request, loc: Location | None) -> None:
        req.location = loc
        req.settings = loc.settings if loc is not None else req.server.settings
        if loc is not None and loc.regex is not None:
            m = loc.regex.search(req.uri)
            if m is not None:
                req.captures = (m.group(0),) + m.groups()

    def run(self, req: Request) -> None:
        """Run the content phase for the request's current location."""
        settings = req.settings
        try:
            if settings.return_ is not None:
                self.do_return(req)
                return
            if settings.proxy_pass is not None:
                if self.proxy is None:
                    self.proxy = _proxy_handler()
                result = self.proxy(req)
            else:
                if self.static is None:
                    self.static = _static_handler()
                result = self.static(req)
        except HttpError as exc:
            self.fail(req, exc.status, None)
            return
        except Exception as exc:  # a handler bug must never reach the client or other connections
            self.fail(req, 500, exc)
            return
        if result is not None:
            task = asyncio.ensure_future(self._guard(req, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guard(self, req: Request, result: Awaitable[None]) -> None:
        # A handler may pass the request on (error_page, X-Accel-Redirect, named location); the run
        # it started then owns the request, and this one must not answer it again.
        redirects = req.redirects
        try:
            await result
        except HttpError as exc:
            if req.redirects == redirects:
                self.fail(req, exc.status, None)
            return
        except (ConnectionError, asyncio.CancelledError):
            if req.redirects == redirects:
                req.abort()
            return
        except Exception as exc:
            if req.redirects == redirects:
                self.fail(req, 500, exc)
            else:
                req.log_error("alert", f"unexpected error in handler after a redirect: {exc!r}")
            return
        if req.redirects != redirects:
            return
        if not req.finished:
            if req.head_sent:
                req.end()
            else:
                self.fail(req, 500, RuntimeError("handler returned without a response"))

    @staticmethod
    def fail(req: Request, status: int, exc: BaseException | None) -> None:
        if exc is not None:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
            req.log_error("alert", f"unexpected error in handler: {exc!r}\n{tb}")
        if req.finished:
            return
        if req.head_sent:
            req.abort()
        else:
            req.send_error(status)

    def do_return(self, req: Request) -> None:
        """nginx's ngx_http_script_return_code: a code >= 400 without text is an error page (or a
        close for 444/408/499); anything else is ngx_http_send_response, which discards the body
        first (so `100 Continue` goes out), then sends a redirect page with Location (even empty,
        for `return 302;`) or the text with the type by extension (also for `return 200;`)."""
        ret = req.settings.return_
        assert ret is not None
        code = ret.code
        if ret.text is None and code >= 400:
            req.send_error(code)
            return
        if req.expect_continue:
            req.send_continue()
        text = ret.text or ""
        if "$" in text:
            text = _template(text)(req)
        if code in _REDIRECT_CODES:
            req.redirect(code, text)
            return
        headers = [("Content-Type", _content_type(req))]
        if code == 304:
            headers.append(("Content-Length", "0"))  # the header filter keeps it for a 304 it did not make
        req.respond(code, headers, text.encode("utf-8", "surrogateescape"))



_templates: dict[str, Callable[[Request], str]] = {}


def _template(text: str) -> Callable[[Request], str]:
    """Compiled once per distinct template text (configurations hold few)."""
    found = _templates.get(text)
    if found is None:
        found = _templates[text] = compile_template(text)
    return found


def _content_type(req: Request) -> str:
    """nginx's ngx_http_set_content_type: by the URI's extension, else default_type."""
    try:
        from pyginx.handlers import mime

        lookup: Any = getattr(mime, "content_type_for", None)
        if lookup is not None:
            return str(lookup(req.uri, req.settings))
    except ImportError:
        pass
    return req.settings.default_type
