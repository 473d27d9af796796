"""In-process micro-benchmark of the reverse proxy's hot path: no sockets, no event loop turns.

A client connection (pyginx.http.connection.HttpConnection on a fake transport) sends a keep-alive
GET for /proxy/small.bin; the proxy takes a pooled upstream connection whose fake transport records
the request; the benchmark then hands the upstream's 1 KiB Content-Length response to that
connection, which answers the client and goes back to the pool. Prints µs per request (best of
several rounds); `--profile` prints cProfile's top functions by call count and time.

    python3 bench/proxy_micro.py [--n 20000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyginx.config import load_config  # noqa: E402
from pyginx.http.connection import HttpConnection  # noqa: E402
from pyginx.http.server import ServerContext  # noqa: E402
from pyginx.upstream.pool import UpstreamConnection  # noqa: E402
from pyginx.upstream.runtime import runtime_for  # noqa: E402

CONFIG = """
error_log: logs/error.log warn
http:
  access_log: "off"
  keepalive_requests: 100000000
  upstreams:
    origin:
      servers:
        - 127.0.0.1:9
      keepalive: 32
      keepalive_requests: 100000000
  servers:
    - listen: 127.0.0.1:8080
      locations:
        - location: /proxy/
          proxy_pass: http://origin/
          proxy_http_version: "1.1"
          proxy_set_header: {Connection: ""}
"""

REQUEST = b"GET /proxy/small.bin HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 29 Nov 2026 00:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n"
    b"Last-Modified: Sun, 29 Nov 2026 00:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "6560-400"\r\nAccept-Ranges: bytes\r\n\r\n' + BODY
)


class Transport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.out: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, parts: Any) -> None:
        self.out.extend(parts)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def setup() -> tuple[HttpConnection, Transport, UpstreamConnection, Transport, asyncio.AbstractEventLoop]:
    prefix = Path(tempfile.mkdtemp(prefix="pyginx-micro-"))
    (prefix / "logs").mkdir()
    conf = prefix / "p.yaml"
    conf.write_text(CONFIG)
    cfg = load_config(str(conf), str(prefix))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ctx = ServerContext(cfg, loop)
    client = HttpConnection(ctx, ("127.0.0.1", 8080, None))
    ct = Transport(("127.0.0.1", 50000))
    client.connection_made(ct)  # type: ignore[arg-type]
    assert cfg.http is not None
    rt = runtime_for(cfg.http.upstreams["origin"], loop)
    assert rt.pool is not None
    peer_name = rt.peers.primary.peers[0].name
    upstream = UpstreamConnection(loop, peer_name)
    ut = Transport(("127.0.0.1", 9))
    upstream.connection_made(ut)  # type: ignore[arg-type]
    rt.pool.release(upstream)
    return client, ct, upstream, ut, loop


def feed(client: HttpConnection, data: bytes) -> None:
    """The client's bytes arrive, then the loop turn ends: what the connection holds is sent
    (HttpConnection.write holds small writes until then)."""
    client.data_received(data)
    client.ctx.flush_writes()


def one(client: HttpConnection, upstream: UpstreamConnection) -> None:
    client.data_received(REQUEST)
    upstream.data_received(RESPONSE)
    client.ctx.flush_writes()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("-v", action="store_true", help="print the first exchange")
    args = ap.parse_args()
    client, ct, upstream, ut, loop = setup()
    one(client, upstream)
    out = b"".join(ct.out)
    sent = b"".join(ut.out)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(BODY), out[:300]
    assert upstream.pool is not None, "the upstream connection did not go back to the pool"
    if args.v:
        print(sent.decode(), out[:-1024].decode(), sep="\n")
    n = args.n
    best = float("inf")
    for _ in range(args.rounds):
        ct.out.clear()
        ut.out.clear()
        t = time.perf_counter()
        for _ in range(n):
            one(client, upstream)
        best = min(best, time.perf_counter() - t)
        loop.run_until_complete(asyncio.sleep(0))
    assert len(ct.out) >= n and upstream.pool is not None and not ct.closed
    print(f"{best / n * 1e6:.2f} µs/request (best of {args.rounds} x {n})")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            one(client, upstream)
        prof.disable()
        st = pstats.Stats(prof)
        st.sort_stats("tottime").print_stats(35)


if __name__ == "__main__":
    main()
