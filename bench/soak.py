"""Soak test (issue 12): minutes of mixed load with reloads and log reopens, against pyginx (default)
or nginx configured alike; fds and RSS of every worker (and the master) at start, middle and end.

    python bench/soak.py [--server pyginx|nginx] [--seconds 180] [--clients 6]
                         [--reload-every 6] [--reopen-every 10] [--max-requests 2000000]

The load: keep-alive GETs of a small and a 64 KiB file, proxied GETs and POSTs (an origin in this
process, upstream keepalive on), HEADs, malformed requests (400) and clients that give up halfway
through a head. Every `--reload-every` seconds the master gets HUP (0: never, to soak one generation
of workers), every `--reopen-every` seconds the access log is renamed and USR1 sent (logrotate's way). Every loop is bounded by the deadline and
by --max-requests.

It fails (exit 1) when, from start to end:
  * a worker's open descriptors grow by more than FD_BOUND (leaked sockets or files),
  * a worker's RSS grows by more than RSS_BOUND_MB (leaked memory),
  * the master's descriptors grow by more than MASTER_FD_BOUND (reloads leaking listeners or logs),
  * more workers than configured remain once the old ones had time to exit,
  * for pyginx: any request failed (pyginx's reloads are meant to lose nothing; nginx's failures
    are reported, not judged).
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FD_BOUND = 64  # per worker, start -> end
RSS_BOUND_MB = 48.0  # per worker, start -> end
MASTER_FD_BOUND = 8
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- origin


class _Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(b"origin " + self.path.encode() + b"\n")

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n)
        self._answer(b"got %d\n" % len(data))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def start_origin() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------- servers

PYGINX_CONF = """
worker_processes: 2
error_log: logs/error.log notice
pid: logs/server.pid
worker_shutdown_timeout: 10s
events:
  worker_connections: 1024
http:
  access_log: logs/access.log combined buffer=32k flush=1s
  keepalive_timeout: 5s
  client_header_timeout: 3s
  client_body_timeout: 3s
  upstreams:
    origin:
      servers: [127.0.0.1:{origin}]
      keepalive: 8
  servers:
    - listen: 127.0.0.1:{port}
      server_name: localhost
      root: html
      locations:
        - location: /
        - location: /proxy/
          proxy_pass: http://origin
"""

NGINX_CONF = """
{user}
worker_processes 2;
error_log {root}/logs/error.log notice;
pid {root}/logs/server.pid;
worker_shutdown_timeout 10s;
events {{ worker_connections 1024; }}
http {{
  access_log {root}/logs/access.log combined buffer=32k flush=1s;
  keepalive_timeout 5s; client_header_timeout 3s; client_body_timeout 3s;
  client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
  upstream origin {{ server 127.0.0.1:{origin}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    root {root}/html;
    location /proxy/ {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(kind: str, root: Path, port: int, origin: int) -> int:
    (root / "logs").mkdir()
    (root / "tmp").mkdir()
    html = root / "html"
    html.mkdir()
    (html / "small.html").write_bytes(b"<p>small</p>\n" * 40)
    (html / "big.bin").write_bytes(os.urandom(64 * 1024))
    if kind == "nginx":
        user = "user root;" if os.geteuid() == 0 else ""
        conf = root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, root=root, port=port, origin=origin))
        subprocess.run([NGINX, "-p", str(root), "-c", str(conf)], check=True)
    else:
        conf = root / "pyginx.yaml"
        conf.write_text(PYGINX_CONF.format(port=port, origin=origin))
        env = dict(os.environ, PYTHONPATH=str(REPO))
        subprocess.Popen(
            [sys.executable, "-m", "pyginx", "-p", str(root), "-c", str(conf)],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(root / "stderr.txt", "wb"),  # noqa: SIM115 (lives as long as the server)
        )
    pid_file = root / "logs" / "server.pid"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            pid = int(pid_file.read_text().strip())
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return pid
        except (OSError, ValueError):
            time.sleep(0.1)
    raise SystemExit(f"{kind} did not start")


def workers(master: int) -> list[int]:
    """The master's children (workers, retiring ones included)."""
    try:
        out = (Path("/proc") / str(master) / "task" / str(master) / "children").read_text()
    except OSError:
        return []
    return sorted(int(p) for p in out.split())


def sample(pid: int) -> tuple[int, float]:
    """(open descriptors, RSS in MB) of a process; (0, 0.0) when it is gone."""
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return fds, int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0, 0.0


# ---------------------------------------------------------------------------------------------- load


class Load:
    def __init__(self, port: int, deadline: float, max_requests: int) -> None:
        self.port = port
        self.deadline = deadline
        self.max_requests = max_requests
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.failures: list[str] = []

    def _count(self, ok: bool, what: str) -> bool:
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.failed += 1
                if len(self.failures) < 20:
                    self.failures.append(what)
            return self.ok + self.failed < self.max_requests

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < self.deadline:
            kind = rng.choice(
                ["small", "small", "small", "big", "proxy", "proxy", "post", "head", "bad", "abandon"]
            )
            if kind in ("bad", "abandon"):
                more = self._raw(kind)
            else:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                more, conn = self._http(conn, kind, rng)
            if not more:
                break
        if conn is not None:
            conn.close()

    def _http(
        self, conn: http.client.HTTPConnection, kind: str, rng: random.Random
    ) -> tuple[bool, http.client.HTTPConnection | None]:
        path = {"small": "/small.html", "big": "/big.bin", "head": "/small.html"}.get(
            kind, f"/proxy/{rng.randrange(1000)}"
        )
        method = {"post": "POST", "head": "HEAD"}.get(kind, "GET")
        body = os.urandom(rng.randrange(1, 20000)) if kind == "post" else None
        for attempt in (1, 2):
            try:
                conn.request(method, path, body=body)
                resp = conn.getresponse()
                data = resp.read()
                ok = resp.status == 200 and (kind != "post" or data == b"got %d\n" % len(body or b""))
                if resp.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                return self._count(ok, f"{method} {path} -> {resp.status}"), conn
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                # a keep-alive connection the server closed while idle may be retried once, as
                # browsers and http.client users do (RFC 9112 9.3.1); a second failure counts
                if attempt == 2 or not isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                ):
                    return self._count(False, f"{method} {path}: {exc!r}"), conn
        return True, conn

    def _raw(self, kind: str) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                if kind == "bad":
                    s.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
                    data = s.recv(4096)
                    return self._count(data.startswith(b"HTTP/1.1 400"), f"bad -> {data[:20]!r}")
                s.sendall(b"GET /small.html HTTP/1.1\r\nHost: localhost\r\nX-Half: ")
                return self._count(True, "abandon")
        except OSError as exc:
            return self._count(False, f"{kind}: {exc!r}")


# ---------------------------------------------------------------------------------------------- main


def report(label: str, master: int) -> dict[int, tuple[int, float]]:
    pids = workers(master)
    got = {pid: sample(pid) for pid in pids}
    mfds, mrss = sample(master)
    cells = "  ".join(f"{pid}: {fds} fds {rss:.1f} MB" for pid, (fds, rss) in got.items())
    print(f"{label:>6}: master {mfds} fds {mrss:.1f} MB | workers {cells}", flush=True)
    return got


def main(argv: list[str] | None = None) -> int:  # noqa: C901 (one run, step by step)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", choices=["pyginx", "nginx"], default="pyginx")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--reload-every", type=float, default=6.0)
    ap.add_argument("--reopen-every", type=float, default=10.0)
    ap.add_argument("--max-requests", type=int, default=2_000_000)
    args = ap.parse_args(argv)

    origin = start_origin()
    root = Path(tempfile.mkdtemp(prefix=f"soak-{args.server}-"))
    port = free_port()
    master = start_server(args.server, root, port, origin.server_address[1])
    print(
        f"soak: {args.server} on 127.0.0.1:{port}, {args.seconds:g} s, {args.clients} clients, "
        f"HUP every {args.reload_every:g} s, USR1 every {args.reopen_every:g} s ({root})",
        flush=True,
    )
    reloads = reopens = 0
    try:
        warm = Load(port, time.monotonic() + 3, 10_000)
        for i in range(args.clients):
            threading.Thread(target=warm.client, args=(i,), daemon=True).start()
        time.sleep(3.5)
        start = report("start", master)
        start_master = sample(master)[0]
        begin = time.monotonic()
        load = Load(port, begin + args.seconds, args.max_requests)
        threads = [
            threading.Thread(target=load.client, args=(100 + i,), daemon=True) for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        next_reload = begin + args.reload_every
        next_reopen = begin + args.reopen_every
        middle_done = False
        middle: dict[int, tuple[int, float]] = {}
        while time.monotonic() < load.deadline:
            now = time.monotonic()
            if args.reload_every > 0 and now >= next_reload:
                os.kill(master, signal.SIGHUP)
                reloads += 1
                next_reload = now + args.reload_every
            if now >= next_reopen:
                log = root / "logs" / "access.log"
                if log.exists():
                    log.rename(root / "logs" / f"access.log.{reopens}")
                os.kill(master, signal.SIGUSR1)
                reopens += 1
                next_reopen = now + args.reopen_every
            if not middle_done and now >= begin + args.seconds / 2:
                middle = report("middle", master)
                middle_done = True
            time.sleep(0.1)
        for t in threads:
            t.join(15)
        # the retiring workers of the last reload get time to finish (worker_shutdown_timeout)
        settle = time.monotonic() + 15
        while len(workers(master)) > 2 and time.monotonic() < settle:
            time.sleep(0.2)
        time.sleep(1.0)
        end = report("end", master)
        end_master = sample(master)[0]
    finally:
        try:
            os.kill(master, signal.SIGQUIT)
        except OSError:
            pass
        deadline = time.monotonic() + 15
        while os.path.exists(f"/proc/{master}") and time.monotonic() < deadline:
            time.sleep(0.1)
        origin.shutdown()

    problems: list[str] = []
    fds0 = max(f for f, _ in start.values())
    rss0 = max(r for _, r in start.values())
    del middle
    for pid, (fds, rss) in end.items():
        if fds - fds0 > FD_BOUND:
            problems.append(
                f"worker {pid}: {fds} fds, {fds - fds0} more than at the start (bound {FD_BOUND})"
            )
        if rss - rss0 > RSS_BOUND_MB:
            problems.append(
                f"worker {pid}: RSS {rss:.1f} MB, {rss - rss0:.1f} MB more (bound {RSS_BOUND_MB:g} MB)"
            )
    if end_master - start_master > MASTER_FD_BOUND:
        problems.append(
            f"master: {end_master} fds, {end_master - start_master} more (bound {MASTER_FD_BOUND})"
        )
    if len(end) > 2:
        problems.append(f"{len(end)} workers left after the soak (2 configured)")
    if args.server == "pyginx" and load.failed:
        problems.append(f"{load.failed} failed requests")
    print(f"requests: {load.ok} ok, {load.failed} failed; {reloads} reloads, {reopens} reopens")
    for f in load.failures[:10]:
        print(f"  failure: {f}")
    for p in problems:
        print(f"FAIL: {p}")
    if not problems:
        print(
            f"soak: ok (bounds: fds +{FD_BOUND} and RSS +{RSS_BOUND_MB:g} MB per worker, master fds +{MASTER_FD_BOUND})"
        )
    shutil.rmtree(root, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
