"""The request behind proxy_cache_background_update: a copy of the client's, answered to nobody."""

from __future__ import annotations

from pyginx.http.request import Request


class BackgroundRequest(Request):
    """A copy of a request whose answer is discarded (nginx's background subrequest)."""

    def __init__(self, original: Request) -> None:
        super().__init__(original.conn, original.method, original.request_uri, original.http_minor)
        self.headers = dict(original.headers)
        self.header_list = list(original.header_list)
        self.server = original.server
        self.settings = original.settings
        self.location = original.location
        self.uri = original.uri
        self.args = original.args
        self.host = original.host
        self.vars = dict(original.vars)
        self.head_only = True

    def respond(
        self,
        status: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        has_length: bool | None = None,
        encoded: bytes | None = None,
    ) -> None:
        self.status = status
        self.finished = True

    def start(
        self,
        status: int,
        headers: list[tuple[str, str]],
        content_length: int | None,
        encoded: bytes | None = None,
    ) -> None:
        self.status = status
        self.head_sent = True

    def write(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.finished = True

    def send_error(self, status: int) -> None:
        self.status = status
        self.finished = True

    async def drain(self) -> None:
        return None
