"""Hold N idle keep-alive connections to a server: `python idleconns.py PORT PATH N HOLD_SECONDS`.

Opens N connections, sends one GET on each and reads the whole response (so the server has gone through
a full request and parked the connection as idle keep-alive), then prints `HELD <ok> <failed>` and keeps
them all open until a line (or EOF) arrives on stdin or HOLD_SECONDS pass, whichever is first. It is a
separate process so that its own file descriptors and memory stay out of the bench's way.
"""

from __future__ import annotations

import asyncio
import resource
import sys

CONCURRENT_OPENS = 200  # stay well under the listen backlog: a SYN dropped costs a 1 s retransmit
REQUEST_TIMEOUT = 15.0


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    try:  # raising the hard limit needs CAP_SYS_RESOURCE, which a container may withhold even from root
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
    except (OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def open_one(
    port: int, request: bytes, gate: asyncio.Semaphore
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), REQUEST_TIMEOUT
            )
        except (OSError, TimeoutError):
            return None
        try:
            writer.write(request)
            await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            writer.close()
            return None
        return reader, writer


async def read_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ValueError(head[:40])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def wait_for_release(hold: float) -> None:
    """Until a line or EOF on stdin, or `hold` seconds: the bench says when it has measured."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        await asyncio.wait_for(reader.readline(), hold)
    except TimeoutError:
        pass


async def main(port: int, path: str, count: int, hold: float) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    gate = asyncio.Semaphore(CONCURRENT_OPENS)
    held = await asyncio.gather(*(open_one(port, request, gate) for _ in range(count)))
    alive = [conn for conn in held if conn is not None]
    print(f"HELD {len(alive)} {count - len(alive)}", flush=True)
    await wait_for_release(hold)
    for _, writer in alive:
        writer.close()


if __name__ == "__main__":
    port_arg, path_arg, count_arg, hold_arg = sys.argv[1:5]
    raise_nofile(int(count_arg) + 256)
    asyncio.run(main(int(port_arg), path_arg, int(count_arg), float(hold_arg)))
