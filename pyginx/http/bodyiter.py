"""A request body read as it arrives: an async generator (kept out of request.py, which mypyc compiles
and whose compiler has no async generators)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyginx.http.request import Request


async def body_chunks(req: Request) -> AsyncIterator[bytes]:
    body = req.body
    if not req.has_body:
        return
    limit = req.settings.client_max_body_size
    if limit and body.size > limit and body.error is None:
        # what came before the location was known is judged by the location's limit
        req.conn.body_too_large(req, body.size, 0)
    req.conn.body_wanted(req)
    while True:
        if body.error is not None:
            raise body.error
        if body.chunks:
            chunks, body.chunks = body.chunks, []
            req.conn.body_consumed()
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
