"""In-process micro-benchmark of the static hot path: no sockets, no event loop turns.

A client connection (HttpConnection on the fake transport of proxy_micro.py) sends keep-alive GETs
for a 1 KiB file, once to a location with open_file_cache on and once with it off (nginx's default:
open, fstat, read and close per request). Prints µs per request for each (best of several rounds),
which is the worker's Python and file-syscall time without the socket's; `--profile` adds cProfile's
top functions for the uncached path.

    python3 bench/static_micro.py [--n 20000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_micro import Transport, feed  # noqa: E402
from pyginx.config import load_config  # noqa: E402
from pyginx.http.connection import HttpConnection  # noqa: E402
from pyginx.http.server import ServerContext  # noqa: E402

CONFIG = """
error_log: logs/error.log warn
http:
  access_log: "off"
  keepalive_requests: 100000000
  servers:
    - listen: 127.0.0.1:8080
      root: {root}
      locations:
        - location: /cached/
          open_file_cache: max=1000 inactive=20s
          open_file_cache_valid: 60s
        - location: /plain/
"""


def request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n".encode()


def setup() -> tuple[HttpConnection, Transport]:
    prefix = Path(tempfile.mkdtemp(prefix="pyginx-micro-"))
    (prefix / "logs").mkdir()
    www = prefix / "www"
    for sub in ("cached", "plain"):
        (www / sub).mkdir(parents=True)
        (www / sub / "small.bin").write_bytes(os.urandom(1024))
    conf = prefix / "p.yaml"
    conf.write_text(CONFIG.format(root=www))
    cfg = load_config(str(conf), str(prefix))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ctx = ServerContext(cfg, loop)
    client = HttpConnection(ctx, ("127.0.0.1", 8080, None))
    transport = Transport(("127.0.0.1", 50000))
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport


def measure(client: HttpConnection, transport: Transport, data: bytes, n: int, rounds: int) -> float:
    feed(client, data)
    out = b"".join(transport.out)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and len(out) > 1024, out[:200]
    best = float("inf")
    for _ in range(rounds):
        transport.out.clear()
        t = time.perf_counter()
        for _ in range(n):
            feed(client, data)
        best = min(best, time.perf_counter() - t)
    assert len(transport.out) >= n and not transport.closed
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    client, transport = setup()
    for name in ("cached", "plain"):
        us = measure(client, transport, request(f"/{name}/small.bin"), args.n, args.rounds)
        print(f"{name:7s} {us:.2f} µs/request (best of {args.rounds} x {args.n})")
    if args.profile:
        data = request("/plain/small.bin")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.n):
            feed(client, data)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
