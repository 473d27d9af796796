"""The bench's work directory: the files served and equivalent configurations for pyginx and nginx.

Both servers get the same settings, written out explicitly rather than left to defaults that could
differ: one worker, sendfile on, open_file_cache on, access log off except on the second ("logged")
server block, the same listen backlog, keep-alive at nginx's defaults, and an upstream `origin` with
`keepalive 32` for /proxy/. The origin is a third server (nginx) that both proxies share.
"""

from __future__ import annotations

import os
import resource
import socket
from dataclasses import dataclass
from pathlib import Path

SMALL = "small.bin"  # 1 KiB
MID = "mid.bin"  # 64 KiB
LARGE = "large.bin"  # 1 MiB
SMALL_SIZE = 1024
MID_SIZE = 64 * 1024
LARGE_SIZE = 1024 * 1024
GZIP_TEXT = "gz/text64k.txt"  # 64 KiB of compressible text, served gzipped at level 1 (the gzip scenario)
GZIP_TEXT_SIZE = 64 * 1024
GZIP_LEVEL = 1  # nginx's default gzip_comp_level
NOCACHE = "nocache"  # a location (and folder) with open_file_cache off, in both servers
LIMITED = "limited"  # a location (and folder) behind limit_req at a rate no run reaches (issue 15)
LIMIT_RATE = "1000000r/s"

MAX_NOFILE = 65536  # worker_rlimit_nofile, unless the hard limit is lower (a container may forbid more)
MAX_WORKER_CONNECTIONS = 16384  # room for the 10,000 idle connections plus the rest
BACKLOG = 4096  # explicit and equal: nginx's default (511) and pyginx's need not be the same
ACCESS_LOG_BUFFER = "buffer=32k flush=1s"
OPEN_FILE_CACHE = "max=1000 inactive=20s"
OPEN_FILE_CACHE_VALID = "60s"


@dataclass(frozen=True)
class Ports:
    main: int  # static files and /proxy/, access log off
    logged: int  # the same files with the access log on


@dataclass(frozen=True)
class Limits:
    nofile: int
    worker_connections: int


def limits() -> Limits:
    """What the servers can have: even root cannot raise RLIMIT_NOFILE past the hard limit without
    CAP_SYS_RESOURCE, and a worker_connections above the fd limit would make nginx warn."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = MAX_NOFILE if hard == resource.RLIM_INFINITY else min(MAX_NOFILE, hard)
    return Limits(nofile, min(MAX_WORKER_CONNECTIONS, nofile))


@dataclass(frozen=True)
class Layout:
    root: Path  # the temporary work directory
    www: Path
    origin_www: Path
    pyginx: Path  # pyginx's prefix
    nginx: Path  # nginx's prefix
    origin: Path  # the origin nginx's prefix


def free_port() -> int:
    """A port nobody listens on now: other people's servers may run on this machine, so none is fixed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_layout(root: Path) -> Layout:
    # Not "pyginx": run from the work directory, `python -m pyginx` would import that folder instead.
    layout = Layout(
        root, root / "www", root / "origin-www", root / "srv-pyginx", root / "srv-nginx", root / "srv-origin"
    )
    for directory in (layout.www, layout.origin_www, layout.pyginx / "logs", layout.pyginx / "conf"):
        directory.mkdir(parents=True, exist_ok=True)
    for prefix in (layout.nginx, layout.origin):
        for sub in ("logs", "conf", "tmp"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
    # mkdtemp makes the root 0700; keep it traversable in case a worker drops privileges.
    os.chmod(root, 0o755)
    write_files(layout)
    return layout


def write_files(layout: Layout) -> None:
    # Random bytes: incompressible and the same for both servers, which read the very same files.
    small, large = os.urandom(SMALL_SIZE), os.urandom(LARGE_SIZE)
    (layout.www / SMALL).write_bytes(small)
    (layout.www / MID).write_bytes(os.urandom(MID_SIZE))
    (layout.www / LARGE).write_bytes(large)
    (layout.www / NOCACHE).mkdir(exist_ok=True)
    (layout.www / NOCACHE / SMALL).write_bytes(small)
    (layout.www / LIMITED).mkdir(exist_ok=True)
    (layout.www / LIMITED / SMALL).write_bytes(small)
    (layout.origin_www / SMALL).write_bytes(small)
    (layout.www / "gz").mkdir(exist_ok=True)
    (layout.www / GZIP_TEXT).write_bytes(gzip_text())


def gzip_text() -> bytes:
    """Deterministic text that compresses like prose and markup do (about 4:1), not like a repeat."""
    words = [w.encode() for w in "the server answers each request with headers a body and a status line".split()]
    out, state = bytearray(), 12345
    while len(out) < GZIP_TEXT_SIZE:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out += words[state % len(words)] + (b"\n" if state % 11 == 0 else b" ")
        if state % 97 == 0:
            out += b"%d " % (state % 100000)
    return bytes(out[:GZIP_TEXT_SIZE])


def conf_name(server: str, workers: int) -> str:
    """The configuration file of `server` ("pyginx" or "nginx") with `workers` workers."""
    suffix = "" if workers == 1 else f"-{workers}w"
    return f"pyginx{suffix}.yaml" if server == "pyginx" else f"nginx{suffix}.conf"


def pyginx_config(layout: Layout, ports: Ports, origin_port: int, lim: Limits, workers: int = 1) -> Path:
    text = f"""\
# Written by bench/run.py; nginx's equivalent is {layout.nginx / "conf" / conf_name("nginx", workers)}
worker_processes: {workers}
master_process: true
daemon: false
pid: logs/pyginx.pid
error_log: logs/error.log warn
worker_rlimit_nofile: {lim.nofile}

events:
  worker_connections: {lim.worker_connections}

http:
  default_type: application/octet-stream
  access_log: "off"
  sendfile: true
  open_file_cache: {OPEN_FILE_CACHE}
  open_file_cache_valid: {OPEN_FILE_CACHE_VALID}

  proxy_cache_path: "cache levels=1:2 keys_zone=bench:10m"
  limit_req_zone: "$binary_remote_addr zone=bench_req:10m rate={LIMIT_RATE}"

  upstreams:
    origin:
      servers:
        - 127.0.0.1:{origin_port}
      keepalive: 32

  servers:
    - listen: 127.0.0.1:{ports.main} backlog={BACKLOG}
      root: {layout.www}
      locations:
        - location: /
        - location: /{NOCACHE}/
          open_file_cache: "off"
        - location: /proxy/
          proxy_pass: http://origin/
          proxy_http_version: "1.1"
          proxy_set_header: {{Connection: ""}}
        - location: /cached/
          proxy_pass: http://origin/
          proxy_http_version: "1.1"
          proxy_set_header: {{Connection: ""}}
          proxy_cache: bench
          proxy_cache_valid: 200 10m
        - location: /miss/
          proxy_pass: http://origin/
          proxy_http_version: "1.1"
          proxy_set_header: {{Connection: ""}}
          proxy_cache: bench
          proxy_cache_valid: 200 10m
          proxy_cache_bypass: "1"
        - location: /{LIMITED}/
          limit_req: "zone=bench_req burst=1000 nodelay"
        - location: /gz/
          gzip: true
          gzip_comp_level: {GZIP_LEVEL}
          gzip_types: application/octet-stream text/plain

    - listen: 127.0.0.1:{ports.logged} backlog={BACKLOG}
      root: {layout.www}
      access_log: logs/access.log combined {ACCESS_LOG_BUFFER}
"""
    path = layout.pyginx / "conf" / conf_name("pyginx", workers)
    path.write_text(text)
    return path


def nginx_common(prefix: Path, lim: Limits, workers: int = 1) -> str:
    """Main-context lines shared by the nginx under test and the origin; every path stays in `prefix`."""
    return f"""\
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {lim.nofile};
user root;
pid {prefix}/logs/nginx.pid;
error_log {prefix}/logs/error.log warn;

events {{
    worker_connections {lim.worker_connections};
}}
"""


def temp_paths(prefix: Path) -> str:
    # Debian's build points these at /var/lib/nginx; the bench keeps out of the system's directories.
    return "".join(
        f"    {name}_temp_path {prefix}/tmp/{name};\n"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def nginx_config(layout: Layout, ports: Ports, origin_port: int, lim: Limits, workers: int = 1) -> Path:
    prefix = layout.nginx
    text = f"""\
# Written by bench/run.py; pyginx's equivalent is {layout.pyginx / "conf" / conf_name("pyginx", workers)}
{nginx_common(prefix, lim, workers)}
http {{
{temp_paths(prefix)}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    open_file_cache {OPEN_FILE_CACHE};
    open_file_cache_valid {OPEN_FILE_CACHE_VALID};

    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:10m;
    limit_req_zone $binary_remote_addr zone=bench_req:10m rate={LIMIT_RATE};

    upstream origin {{
        server 127.0.0.1:{origin_port};
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{ports.main} backlog={BACKLOG};
        root {layout.www};
        location / {{
        }}
        location /{NOCACHE}/ {{
            open_file_cache off;
        }}
        location /proxy/ {{
            proxy_pass http://origin/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /cached/ {{
            proxy_pass http://origin/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 10m;
        }}
        location /miss/ {{
            proxy_pass http://origin/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 10m;
            proxy_cache_bypass 1;
        }}
        location /{LIMITED}/ {{
            limit_req zone=bench_req burst=1000 nodelay;
        }}
        location /gz/ {{
            gzip on;
            gzip_comp_level {GZIP_LEVEL};
            gzip_types application/octet-stream text/plain;
        }}
    }}

    server {{
        listen 127.0.0.1:{ports.logged} backlog={BACKLOG};
        root {layout.www};
        access_log {prefix}/logs/access.log combined {ACCESS_LOG_BUFFER};
    }}
}}
"""
    path = prefix / "conf" / conf_name("nginx", workers)
    path.write_text(text)
    return path


def origin_config(layout: Layout, port: int, lim: Limits) -> Path:
    """The shared origin: nginx serving the 1 KiB file with keep-alive (nginx's defaults)."""
    prefix = layout.origin
    text = f"""\
# Written by bench/run.py: the origin both proxies pass /proxy/ to.
{nginx_common(prefix, lim)}
http {{
{temp_paths(prefix)}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    open_file_cache {OPEN_FILE_CACHE};

    server {{
        listen 127.0.0.1:{port} backlog={BACKLOG};
        root {layout.origin_www};
    }}
}}
"""
    path = prefix / "conf" / "nginx.conf"
    path.write_text(text)
    return path
