"""In-process micro-benchmark of a proxy_cache HIT (no sockets), beside bench/proxy_micro.py.

The proxy_micro setup (a client connection on a fake transport, a pooled fake upstream) with the
location cached: one MISS fills the cache from the fake upstream, then every request is a HIT answered
from the worker's copy of the entry. Prints µs per request (best of several rounds); `--profile`
prints cProfile's top functions by cumulative time.

    python3 bench/cache_micro.py [--n 20000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import proxy_micro as pm  # noqa: E402

from pyginx import zone  # noqa: E402
from pyginx.process.cycle import zone_requests  # noqa: E402


def setup() -> tuple[Any, Any, Any]:
    cache = Path(tempfile.mkdtemp(prefix="pyginx-cache-micro-")) / "cache"
    os.makedirs(cache)
    pm.CONFIG = pm.CONFIG.replace(
        "\n  servers:\n", f'\n  proxy_cache_path: "{cache} levels=1:2 keys_zone=c:1m"\n  servers:\n', 1
    ).replace(
        '          proxy_set_header: {Connection: ""}\n',
        '          proxy_set_header: {Connection: ""}\n          proxy_cache: c\n          proxy_cache_valid: 200 10m\n',
    )
    load = pm.load_config

    def load_with_zones(*args: Any) -> Any:
        cfg = load(*args)
        zones, _ = zone.build(zone_requests(cfg))
        zone.install(zones)  # as the master does before it forks
        return cfg

    pm.load_config = load_with_zones
    client, ct, upstream, _ut, _loop = pm.setup()
    pm.one(client, upstream)  # MISS: stored
    pm.feed(client, pm.REQUEST)  # HIT from the file: the worker keeps a copy
    return client, ct, upstream


def run(client: Any, ct: Any, n: int) -> float:
    start = time.process_time()  # CPU time: the machine is shared
    for _ in range(n):
        pm.feed(client, pm.REQUEST)
        if len(ct.out) > 1000:
            ct.out.clear()
    return (time.process_time() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    client, ct, _ = setup()
    gc.collect()  # as a worker does once it serves (pyginx/http/server.py)
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    ct.out.clear()
    pm.feed(client, pm.REQUEST)
    assert b"".join(ct.out).startswith(b"HTTP/1.1 200 OK"), ct.out
    best = min(run(client, ct, args.n) for _ in range(args.rounds))
    print(f"{best * 1e6:.2f} µs/request (HIT, best of {args.rounds} x {args.n})")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(client, ct, args.n)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumtime").print_stats(30)


if __name__ == "__main__":
    main()
