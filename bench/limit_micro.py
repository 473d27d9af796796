"""In-process micro-benchmark of limit_req in front of a static 1 KiB file (issue 15), beside
bench/static_micro.py: the same fake transport, the same file served from /plain/ (no limit) and from
/limited/ behind `limit_req zone=bench_req burst=1000 nodelay` at a rate no run reaches. Prints µs
per request for each (best of several rounds); `--profile` adds cProfile's top functions for /limited/.

    python3 bench/limit_micro.py [--n 20000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_micro import Transport, feed  # noqa: E402
from bench.static_micro import request  # noqa: E402
from pyginx import zone  # noqa: E402
from pyginx.config import load_config  # noqa: E402
from pyginx.http.connection import HttpConnection  # noqa: E402
from pyginx.http.server import ServerContext  # noqa: E402
from pyginx.process.cycle import zone_requests  # noqa: E402

CONFIG = """
error_log: logs/error.log warn
http:
  access_log: "off"
  keepalive_requests: 100000000
  limit_req_zone: "$binary_remote_addr zone=bench_req:10m rate=1000000r/s"
  servers:
    - listen: 127.0.0.1:8080
      root: {root}
      locations:
        - location: /limited/
          limit_req: "zone=bench_req burst=1000 nodelay"
        - location: /plain/
"""


def setup() -> tuple[HttpConnection, Transport]:
    prefix = Path(tempfile.mkdtemp(prefix="pyginx-limit-micro-"))
    (prefix / "logs").mkdir()
    www = prefix / "www"
    for sub in ("limited", "plain"):
        (www / sub).mkdir(parents=True)
        (www / sub / "small.bin").write_bytes(os.urandom(1024))
    conf = prefix / "p.yaml"
    conf.write_text(CONFIG.format(root=www))
    cfg = load_config(str(conf), str(prefix))
    zones, _ = zone.build(zone_requests(cfg))
    zone.install(zones)  # as the master does before it forks
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ctx = ServerContext(cfg, loop)
    client = HttpConnection(ctx, ("127.0.0.1", 8080, None))
    transport = Transport(("127.0.0.1", 50000))
    client.connection_made(transport)  # type: ignore[arg-type]
    return client, transport


def measure(client: HttpConnection, transport: Transport, paths: list[str], n: int, rounds: int) -> list[float]:
    """CPU µs per request (process time: the machine is shared) for each path, best of `rounds`; the
    paths take turns within each round, so that other people's load falls on all of them alike."""
    datas = [request(p) for p in paths]
    for data in datas:
        feed(client, data)
        out = b"".join(transport.out)
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and len(out) > 1024, out[:200]
    best = [float("inf")] * len(datas)
    for _ in range(rounds):
        for i, data in enumerate(datas):
            transport.out.clear()
            t = time.process_time()
            for _ in range(n):
                feed(client, data)
            best[i] = min(best[i], time.process_time() - t)
    assert not transport.closed
    return [b / n * 1e6 for b in best]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    client, transport = setup()
    gc.collect()  # as a worker does once it serves (pyginx/http/server.py)
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    names = ["plain", "limited"]
    for name, us in zip(names, measure(client, transport, [f"/{n}/small.bin" for n in names], args.n, args.rounds), strict=True):
        print(f"{name:7s} {us:.2f} µs/request (best of {args.rounds} x {args.n})")
    if args.profile:
        data = request("/limited/small.bin")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.n):
            feed(client, data)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
