"""A request body read as it arrives: an async generator (kept out of request.py, which mypyc compiles
and whose compiler has no async generators)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyginx.http.request import Request


async def body_chunks(self: Request) -> AsyncIterator[bytes]:
    body = self.body
    if not self.has_body:
        return
    limit = self.settings.client_max_body_size
    if limit and body.size > limit and body.error is None:
        # what came before the location was known is judged by the location's limit
        self.conn.body_too_large(self, body.size, 0)
    self.conn.body_wanted(self)
    while True:
        if body.error is not None:
            raise body.error
        if body.chunks:
            chunks, body.chunks = body.chunks, []
            self.conn.body_consumed()
            for c in chunks:
                yield c
            continue
        if body.complete:
            return
        loop = asyncio.get_running_loop()
        body.waiter = loop.create_future()
        try:
            await body.waiter
        finally:
            body.waiter = None

