"""Differential test: the rewrite module, map, geo and split_clients as pyginx and the system's nginx
answer them (skipped when there is no nginx), compared request by request: status, Location and the
headers the configuration adds, and the body; then the error-log lines of rewrite_log and the
redirect-cycle limit."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Pyginx, free_port, pyginx_fixture, wait_for  # noqa: F401

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary to compare with")

KEEP_HEADERS = ("location", "x-foo", "x-if", "x-loc", "content-type")

# (condition as nginx writes it, requests that should say yes or no): one location each
IF_CASES: list[tuple[str, list[str]]] = [
    ("$arg_v", ["?v=1", "?v=0", "?v=", ""]),
    ("$arg_v = abc", ["?v=abc", "?v=abd"]),
    ("$arg_v != abc", ["?v=abc", "?v=x"]),
    ("$arg_v ~ ^(\\d+)-(?<w>\\w+)$", ["?v=12-ab", "?v=x-1"]),
    ("$arg_v ~* ^ABC", ["?v=abcd", "?v=xabc"]),
    ("$arg_v !~ ^a", ["?v=abc", "?v=b"]),
    ("$arg_v !~* ^A", ["?v=abc", "?v=b"]),
    ("-f $document_root/a.txt", [""]),
    ("-f $document_root/dir", [""]),
    ("!-f $document_root/a.txt", [""]),
    ("-d $document_root/dir", [""]),
    ("!-d $document_root/a.txt", [""]),
    ("-e $document_root/dir", [""]),
    ("!-e $document_root/nothing", [""]),
    ("-x $document_root/run.sh", [""]),
    ("!-x $document_root/a.txt", [""]),
    ("-f $request_filename", ["", "/../a.txt"]),
]

CASES: list[tuple[str, dict[str, str]]] = [
    ("/flags/last/x", {}),
    ("/flags/last/x?q=1", {}),
    ("/flags/break/x.txt", {}),
    ("/flags/redirect/x?q=1", {}),
    ("/flags/permanent/x", {}),
    ("/flags/none/x?q=1", {}),
    ("/qs/a?q=1", {}),
    ("/qs/b?q=1", {}),
    ("/qs/c?q=1", {}),
    ("/qs/d?q=1", {}),
    ("/qs/e?q=1", {}),
    ("/qs/f?q=1", {}),
    ("/cap/abc/42", {}),
    ("/ret/204", {}),
    ("/ret/404", {}),
    ("/ret/403t", {}),
    ("/ret/rel", {}),
    ("/ret/url", {}),
    ("/ret/ok", {}),
    ("/ret/empty", {}),
    ("/ret/var?a=1", {}),
    ("/ret/302", {}),
    ("/ret/307t", {}),
    ("/set/?a=zz", {}),
    ("/ifproxy/a?p=1", {}),
    ("/ifproxy/a", {}),
    ("/ifhdr/?h=1", {}),
    ("/ifhdr/", {}),
    ("/brk/?b=1", {}),
    ("/brk/", {}),
    ("/loop/x", {}),
    ("/named/nothing", {}),
    ("/named2/nothing", {}),
    ("/tfn/nothing", {}),
    ("/int/x", {}),
    ("/toint", {}),
    ("/srv/abc", {}),
    ("/eps/nothing", {}),
    ("/tfp/anything?z=1", {}),
    ("/tfp2/nothing", {}),
    ("/rl/x", {}),
    ("/ret/444", {}),
    ("/ret/302bare", {}),
    ("/ret/unq", {}),
    ("/chg/x", {}),
    ("/scheme/x?a=1", {}),
    ("/esc/a%20b?c=d%20e", {}),
    ("/escl/a%20b", {}),
    ("/srvlast/abc", {}),
    ("/flags/last/x?srvret=1", {}),
    ("/ifset/?v=7", {}),
    ("/epint/nothing", {}),
    ("/uph/", {}),
    ("/many/a/b/c/d/e/f/g/h/i/j/k", {}),
    ("/qs2/a%3Fb", {}),
    ("/tfloop/x", {}),
    ("/ifroot/f.txt?r=1", {}),
    ("/ifroot/f.txt", {}),
    ("/ret/ok", {"_method": "HEAD"}),
    ("/ret/ok", {"_method": "POST", "Content-Length": "5", "_body": "hello"}),
    ("/ret/403t", {"_method": "POST", "Content-Length": "5", "Expect": "100-continue", "_body": "hello"}),
    ("/noabs/ret", {}),
    ("/noabs/rw/x", {}),
    ("/ret/rel", {"Host": "other.test:8080"}),
    ("/ret/rel", {"Host": ""}),
    ("/nloop/x", {}),
    ("/qs2/a%3Fb?c=1", {}),
    ("/srvset/", {}),
    ("/ifq/?v=a%20b", {}),
    ("/ifua/", {"User-Agent": "Mozilla GoogleBot/2"}),
    ("/ifua/", {"User-Agent": "curl"}),
    ("/ep200/nothing", {}),
    ("/iflast/?go=1", {}),
    ("/setcap/abc", {}),
    ("/caploc/abc/def", {}),
    ("/encret/a%20b?x=%41", {}),
    ("/map/u/bob", {"Upgrade": "websocket"}),
    ("/map/ADMIN/x", {"Host": "a.example.com."}),
    ("/map/x", {"Host": "example.com"}),
    ("/map/x", {"Host": "deep.sub.foo.org"}),
    ("/map/x", {"Host": "foo.org"}),
    ("/map/x", {"Host": "www.bar.co.uk"}),
    ("/map/x", {"Host": "EXACT.test"}),
    ("/map/x", {"Host": "www.exact.test"}),
    ("/map/x?ip=10.0.1.7", {}),
    ("/map/x?ip=10.0.2.7", {}),
    ("/map/x?ip=10.1.0.0", {}),
    ("/map/x?ip=garbage", {}),
    ("/map/x?ip=::ffff:10.0.1.1", {}),
    ("/map/x?ip=192.168.7.1", {}),
    ("/map/x?ip=2001:db8::5", {}),
    ("/map/x?ip=2001:db9::5", {}),
    ("/fwd/", {"X-Forwarded-For": "10.1.1.1, 192.168.0.9"}),
    ("/fwd/", {"X-Forwarded-For": "10.1.1.1, 127.0.0.1"}),
    ("/fwd/", {"X-Forwarded-For": "garbage"}),
    ("/fwd/", {}),
    ("/vars/?a=1&B=2", {"Cookie": "c1=v1; c2=v2", "X-My-Header": "hv"}),
    *[(f"/split/?k={k}", {}) for k in range(60)],
    *[(f"/if/{n}/{q}", {}) for n, (_c, qs) in enumerate(IF_CASES) for q in qs],
]


def _site(root: Path) -> None:
    html = root / "html"
    (html / "ifroot").mkdir(parents=True, exist_ok=True)
    (html / "ifroot" / "f.txt").write_text("from the if's root\n")
    for sub in ("dir", "target", "flags/break", "tfp"):
        (html / sub).mkdir(parents=True, exist_ok=True)
    (html / "a.txt").write_text("hello\n")
    (html / "target" / "x.txt").write_text("target file\n")
    (html / "run.sh").write_text("#!/bin/sh\n")
    (html / "run.sh").chmod(0o755)


def _if_locations_nginx() -> str:
    return "\n".join(
        f'    location /if/{n}/ {{ if ({cond}) {{ return 200 "yes $1 $w\\n"; }} return 200 "no\\n"; }}'
        for n, (cond, _qs) in enumerate(IF_CASES)
    )


def _if_locations_yaml() -> str:
    out = []
    for n, (cond, _qs) in enumerate(IF_CASES):
        out.append(f"        - location: /if/{n}/")
        out.append(f"          'if ({cond})': {{return: '200 \"yes $1 $w\\n\"'}}")
        out.append("          return: '200 \"no\\n\"'")
    return "\n".join(out)


def _nginx_conf(root: Path, port: int, origin: int) -> str:
    html = root / "html"
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
error_log {root}/logs/nginx-error.log notice;
pid {root}/logs/nginx.pid;
daemon on;
events {{ worker_connections 256; }}
http {{
  access_log off;
  default_type text/plain;
  map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
  map $uri $user {{
    ~^/map/u/(?<name>[^/]+)$ user-$name;
    ~*^/map/admin(.*)$ admin$1;
    default none;
  }}
  map $http_host $site {{
    hostnames;
    .example.com ex;
    *.foo.org foo;
    www.bar.* bar;
    exact.test exact;
    default other;
  }}
  geo $arg_ip $zone {{ ranges; default none; 10.0.0.0-10.0.255.255 a; 10.0.1.0-10.0.1.255 b; }}
  geo $arg_ip $net {{
    default world; 10.0.0.0/8 ten; 192.168.0.0/16 lan; 192.168.7.0/24 lan7; 2001:db8::/32 v6;
    delete 192.168.7.0/24;
  }}
  geo $fwd {{ proxy 127.0.0.1; proxy 192.168.0.0/16; proxy_recursive; default none; 10.0.0.0/8 ten; }}
  split_clients "${{arg_k}}AAA" $variant {{ 0.5% .one; 20% .two; 33.33% .three; * other; }}
  server {{
    listen 127.0.0.1:{origin};
    location / {{ return 200 "origin $request_uri\\n"; }}
    location /hdr/ {{ add_header X-Up upval; return 200 "hdr\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{port};
    server_name localhost;
    root {html};
    rewrite ^/srv/(.*)$ /target/srv-$1;
    rewrite ^/srvlast/(.*)$ /target/sl-$1 last;
    rewrite ^/target/sl-(.*)$ /target/NOPE;
    if ($arg_srvret) {{ return 410; }}
    set $srv s1;
    location /target/ {{ return 200 "target $uri args=$args\\n"; }}
    location /flags/last/ {{ rewrite ^/flags/last/(.*)$ /target/$1 last; return 200 "not here\\n"; }}
    location /flags/break/ {{ rewrite ^/flags/break/(.*)$ /target/$1 break; return 200 "not here\\n"; }}
    location /flags/redirect/ {{ rewrite ^/flags/redirect/(.*)$ /target/$1 redirect; }}
    location /flags/permanent/ {{ rewrite ^/flags/permanent/(.*)$ /target/$1 permanent; }}
    location /flags/none/ {{ rewrite ^/flags/none/(.*)$ /target/$1; return 200 "none $uri $args\\n"; }}
    location /qs/ {{
      rewrite ^/qs/a$ /target/a?x=1 last;
      rewrite ^/qs/b$ /target/b? last;
      rewrite ^/qs/c$ /target/c redirect;
      rewrite ^/qs/d$ /target/d?y=2 redirect;
      rewrite ^/qs/e$ /target/e? redirect;
      rewrite ^/qs/f$ http://example.com/f;
    }}
    location /cap/ {{ rewrite "^/cap/(?<a>\\w+)/(\\d+)$" /target/$a-$2 last; }}
    location = /ret/204 {{ return 204; }}
    location = /ret/404 {{ return 404; }}
    location = /ret/403t {{ return 403 "denied\\n"; }}
    location = /ret/rel {{ return 301 /target/rel; }}
    location = /ret/url {{ return http://example.com/u; }}
    location = /ret/ok {{ return 200 "ok\\n"; }}
    location = /ret/empty {{ return 200; }}
    location = /ret/var {{ return 200 "$uri?$args $request_method\\n"; }}
    location = /ret/302 {{ return 302 /target/x; }}
    location = /ret/307t {{ return 307 "/target/$uri"; }}
    location /set/ {{ set $foo "bar-$arg_a"; add_header X-Foo $foo; return 200 "$foo\\n"; }}
    location /ifproxy/ {{
      add_header X-Loc outer;
      if ($arg_p) {{ proxy_pass http://127.0.0.1:{origin}; }}
    }}
    location /ifhdr/ {{
      add_header X-Loc outer;
      if ($arg_h) {{ add_header X-If inner; }}
      return 200 "ifhdr\\n";
    }}
    location /brk/ {{ set $x 1; if ($arg_b) {{ break; }} return 200 "nobreak\\n"; }}
    location /loop/ {{ rewrite ^/loop/(.*)$ /loop/$1 last; }}
    location /named/ {{ error_page 404 = @fb; }}
    location /named2/ {{ error_page 404 @fb; }}
    location /tfn/ {{ try_files $uri @fb; }}
    location @fb {{ return 200 "fallback $uri\\n"; }}
    location /int/ {{ internal; return 200 "internal $uri\\n"; }}
    location = /toint {{ rewrite ^ /int/y last; }}
    location /eps/ {{ error_page 404 /srv/e; }}
    location /tfp/ {{ try_files /target/x.txt @fb; proxy_pass http://127.0.0.1:{origin}; }}
    location /tfp2/ {{ try_files $uri @fb; proxy_pass http://127.0.0.1:{origin}; }}
    location /rl/ {{ rewrite_log on; rewrite ^/rl/(.*)$ /target/rl-$1 last; }}
    location = /ret/444 {{ return 444; }}
    location = /ret/302bare {{ return 302; }}
    location = /ret/unq {{ return 200 a\\tb\\n; }}
    location /chg/ {{ rewrite ^/chg/(.*)$ /target/$1; }}
    location /scheme/ {{ rewrite ^/scheme/(.*)$ $scheme://$host/s/$1; }}
    location /esc/ {{ rewrite ^/esc/(.*)$ /target/$1 redirect; }}
    location /escl/ {{ rewrite ^/escl/(.*)$ /target/$1 last; }}
    location /ifset/ {{ if ($arg_v) {{ set $got "v$arg_v"; }} return 200 "got=$got\\n"; }}
    location /epint/ {{ error_page 404 /int/e; }}
    location /uph/ {{
      proxy_pass http://127.0.0.1:{origin}/hdr/;
      add_header X-Foo "$upstream_http_x_up|$upstream_status|$upstream_addr";
    }}
    location /noabs/ {{
      absolute_redirect off;
      location /noabs/ret {{ return 301 /target/noabs; }}
      location /noabs/rw/ {{ rewrite ^ /target/rw redirect; }}
    }}
    location /ifroot/ {{ root {html}/dir; if ($arg_r) {{ root {html}; }} }}
    location /tfloop/ {{ try_files /nope /tfloop/x; }}
    location /nloop/ {{ try_files /nope @nl; }}
    location @nl {{ try_files /nope @nl; }}
    location /qs2/ {{ rewrite ^/qs2/(.*)$ /target/$1?x=$1 last; }}
    location /srvset/ {{ return 200 "srv=$srv\\n"; }}
    location /ifq/ {{ if ($arg_v = "a%20b") {{ return 200 "quoted\\n"; }} return 200 "plain\\n"; }}
    location /ifua/ {{ if ($http_user_agent ~* "(bot|crawl)") {{ return 403; }} return 200 "human\\n"; }}
    location /ep200/ {{ error_page 404 =200 /target/ep; }}
    location /iflast/ {{ if ($arg_go) {{ rewrite ^ /target/from-if last; }} return 200 "stayed\\n"; }}
    location /setcap/ {{ rewrite ^/setcap/(.*)$ /x/$1; set $c "<$1>"; return 200 "$c $uri\\n"; }}
    location ~ ^/caploc/(?<first>\\w+)/(\\w+)$ {{ return 200 "$first $1 $2\\n"; }}
    location /encret/ {{ return 200 "$uri|$request_uri|$args\\n"; }}
    location /many/ {{ rewrite ^/many/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)$ /target/$9$10$11 last; }}
    location /map/ {{ return 200 "$connection_upgrade|$user|$name|$site|$zone|$net\\n"; }}
    location /fwd/ {{ return 200 "$fwd\\n"; }}
    location /split/ {{ return 200 "$variant\\n"; }}
    location /vars/ {{
      return 200 "$arg_a|$arg_b|$cookie_c2|$http_x_my_header|$server_port|$server_addr|$is_args|$args\\n";
    }}
{_if_locations_nginx()}
  }}
}}
"""


def _pyginx_conf(root: Path, port: int, origin: int) -> str:
    html = root / "html"
    return f"""
worker_processes: 1
error_log: logs/error.log notice
http:
  access_log: off
  default_type: text/plain
  map:
    "$http_upgrade $connection_upgrade": {{default: upgrade, "": close}}
    "$uri $user":
      "~^/map/u/(?<name>[^/]+)$": user-$name
      "~*^/map/admin(.*)$": admin$1
      default: none
    "$http_host $site":
      hostnames: true
      .example.com: ex
      "*.foo.org": foo
      www.bar.*: bar
      exact.test: exact
      default: other
  geo:
    "$arg_ip $zone": {{ranges: true, default: none, 10.0.0.0-10.0.255.255: a, 10.0.1.0-10.0.1.255: b}}
    "$arg_ip $net":
      default: world
      10.0.0.0/8: ten
      192.168.0.0/16: lan
      192.168.7.0/24: lan7
      2001:db8::/32: v6
      delete: 192.168.7.0/24
    "$fwd":
      proxy: [127.0.0.1, 192.168.0.0/16]
      proxy_recursive: true
      default: none
      10.0.0.0/8: ten
  split_clients:
    "${{arg_k}}AAA $variant": {{"0.5%": .one, "20%": .two, "33.33%": .three, "*": other}}
  servers:
    - listen: 127.0.0.1:{origin}
      locations:
        - location: /
          return: '200 "origin $request_uri\\n"'
        - location: /hdr/
          add_header: X-Up upval
          return: '200 "hdr\\n"'
    - listen: 127.0.0.1:{port}
      server_name: localhost
      root: {html}
      rewrite:
        - ^/srv/(.*)$ /target/srv-$1
        - ^/srvlast/(.*)$ /target/sl-$1 last
        - ^/target/sl-(.*)$ /target/NOPE
      'if ($arg_srvret)': {{return: 410}}
      set: $srv s1
      locations:
        - location: /target/
          return: '200 "target $uri args=$args\\n"'
        - location: /flags/last/
          rewrite: ^/flags/last/(.*)$ /target/$1 last
          return: '200 "not here\\n"'
        - location: /flags/break/
          rewrite: ^/flags/break/(.*)$ /target/$1 break
          return: '200 "not here\\n"'
        - location: /flags/redirect/
          rewrite: ^/flags/redirect/(.*)$ /target/$1 redirect
        - location: /flags/permanent/
          rewrite: ^/flags/permanent/(.*)$ /target/$1 permanent
        - location: /flags/none/
          rewrite: ^/flags/none/(.*)$ /target/$1
          return: '200 "none $uri $args\\n"'
        - location: /qs/
          rewrite:
            - ^/qs/a$ /target/a?x=1 last
            - ^/qs/b$ /target/b? last
            - ^/qs/c$ /target/c redirect
            - ^/qs/d$ /target/d?y=2 redirect
            - ^/qs/e$ /target/e? redirect
            - ^/qs/f$ http://example.com/f
        - location: /cap/
          rewrite: '"^/cap/(?<a>\\w+)/(\\d+)$" /target/$a-$2 last'
        - location: = /ret/204
          return: 204
        - location: = /ret/404
          return: 404
        - location: = /ret/403t
          return: '403 "denied\\n"'
        - location: = /ret/rel
          return: 301 /target/rel
        - location: = /ret/url
          return: http://example.com/u
        - location: = /ret/ok
          return: '200 "ok\\n"'
        - location: = /ret/empty
          return: 200
        - location: = /ret/var
          return: '200 "$uri?$args $request_method\\n"'
        - location: = /ret/302
          return: 302 /target/x
        - location: = /ret/307t
          return: '307 "/target/$uri"'
        - location: /set/
          set: '$foo "bar-$arg_a"'
          add_header: X-Foo $foo
          return: '200 "$foo\\n"'
        - location: /ifproxy/
          add_header: X-Loc outer
          'if ($arg_p)': {{proxy_pass: "http://127.0.0.1:{origin}"}}
        - location: /ifhdr/
          add_header: X-Loc outer
          'if ($arg_h)': {{add_header: X-If inner}}
          return: '200 "ifhdr\\n"'
        - location: /brk/
          set: $x 1
          'if ($arg_b)': {{break: true}}
          return: '200 "nobreak\\n"'
        - location: /loop/
          rewrite: ^/loop/(.*)$ /loop/$1 last
        - location: /named/
          error_page: 404 = @fb
        - location: /named2/
          error_page: 404 @fb
        - location: /tfn/
          try_files: $uri @fb
        - location: "@fb"
          return: '200 "fallback $uri\\n"'
        - location: /int/
          internal: true
          return: '200 "internal $uri\\n"'
        - location: = /toint
          rewrite: ^ /int/y last
        - location: /eps/
          error_page: 404 /srv/e
        - location: /tfp/
          try_files: /target/x.txt @fb
          proxy_pass: http://127.0.0.1:{origin}
        - location: /tfp2/
          try_files: $uri @fb
          proxy_pass: http://127.0.0.1:{origin}
        - location: /rl/
          rewrite_log: true
          rewrite: ^/rl/(.*)$ /target/rl-$1 last
        - location: = /ret/444
          return: 444
        - location: = /ret/302bare
          return: 302
        - location: = /ret/unq
          return: 200 a\\tb\\n
        - location: /chg/
          rewrite: ^/chg/(.*)$ /target/$1
        - location: /scheme/
          rewrite: ^/scheme/(.*)$ $scheme://$host/s/$1
        - location: /esc/
          rewrite: ^/esc/(.*)$ /target/$1 redirect
        - location: /escl/
          rewrite: ^/escl/(.*)$ /target/$1 last
        - location: /ifset/
          'if ($arg_v)': {{set: '$got "v$arg_v"'}}
          return: '200 "got=$got\\n"'
        - location: /epint/
          error_page: 404 /int/e
        - location: /uph/
          proxy_pass: http://127.0.0.1:{origin}/hdr/
          add_header: X-Foo "$upstream_http_x_up|$upstream_status|$upstream_addr"
        - location: /noabs/
          absolute_redirect: false
          locations:
            - location: /noabs/ret
              return: 301 /target/noabs
            - location: /noabs/rw/
              rewrite: ^ /target/rw redirect
        - location: /ifroot/
          root: {html}/dir
          'if ($arg_r)': {{root: "{html}"}}
        - location: /tfloop/
          try_files: /nope /tfloop/x
        - location: /nloop/
          try_files: /nope @nl
        - location: "@nl"
          try_files: /nope @nl
        - location: /qs2/
          rewrite: ^/qs2/(.*)$ /target/$1?x=$1 last
        - location: /srvset/
          return: '200 "srv=$srv\\n"'
        - location: /ifq/
          'if ($arg_v = "a%20b")': {{return: '200 "quoted\\n"'}}
          return: '200 "plain\\n"'
        - location: /ifua/
          'if ($http_user_agent ~* "(bot|crawl)")': {{return: 403}}
          return: '200 "human\\n"'
        - location: /ep200/
          error_page: 404 =200 /target/ep
        - location: /iflast/
          'if ($arg_go)': {{rewrite: ^ /target/from-if last}}
          return: '200 "stayed\\n"'
        - location: /setcap/
          rewrite: ^/setcap/(.*)$ /x/$1
          set: '$c "<$1>"'
          return: '200 "$c $uri\\n"'
        - location: ~ ^/caploc/(?<first>\\w+)/(\\w+)$
          return: '200 "$first $1 $2\\n"'
        - location: /encret/
          return: '200 "$uri|$request_uri|$args\\n"'
        - location: /many/
          rewrite: ^/many/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)/(.)$ /target/$9$10$11 last
        - location: /map/
          return: '200 "$connection_upgrade|$user|$name|$site|$zone|$net\\n"'
        - location: /fwd/
          return: '200 "$fwd\\n"'
        - location: /split/
          return: '200 "$variant\\n"'
        - location: /vars/
          return: '200 "$arg_a|$arg_b|$cookie_c2|$http_x_my_header|$server_port|$server_addr|$is_args|$args\\n"'
{_if_locations_yaml()}
"""


def _get(port: int, target: str, headers: dict[str, str]) -> tuple[str, dict[str, str], bytes]:
    headers = dict(headers)
    method = headers.pop("_method", "GET")
    body = headers.pop("_body", "")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        hs = {"Host": "localhost", **headers, "Connection": "close"}
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items() if v)
        s.sendall(head.encode("latin-1") + b"\r\n" + body.encode())
        out = b""
        while chunk := s.recv(1 << 20):
            out += chunk
    if not out:
        return "closed", {}, b""
    raw_head, _, body = out.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    got = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    if got.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return lines[0], {k: v for k, v in got.items() if k in KEEP_HEADERS}, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out += rest[:n]
        data = rest[n + 2 :]
    return out


def _normalise(
    resp: tuple[str, dict[str, str], bytes], ports: tuple[int, int]
) -> tuple[str, dict[str, str], bytes]:
    status, headers, body = resp
    port, origin = ports
    headers = {
        k: v.replace(f":{port}/", ":PORT/").replace(f":{origin}", ":ORIGIN") for k, v in headers.items()
    }
    body = body.replace(str(port).encode(), b"PORT").replace(str(origin).encode(), b"ORIGIN")
    body = re.sub(rb"<center>(nginx|pyginx)/[\d.]+</center>", b"<center>SERVER</center>", body)
    body = re.sub(rb"Server: \S+\r\nDate: [^\r]+\r\n", b"", body)  # the head after a 100 Continue
    body = re.sub(rb"<a href=\"[^\"]*\">", b"<a>", body)  # the redirect page's link (absolute in nginx)
    return status, headers, body


@pytest.fixture
def nginx_ports(pyginx: Pyginx) -> Iterator[tuple[int, int]]:  # noqa: F811
    root = pyginx.prefix
    _site(root)
    port, origin = free_port(), free_port()
    (root / "conf" / "nginx.conf").write_text(_nginx_conf(root, port, origin))
    assert NGINX is not None
    subprocess.run([NGINX, "-p", str(root), "-c", str(root / "conf" / "nginx.conf")], check=True)
    pid_file = root / "logs" / "nginx.pid"
    pid = wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx to start")
    try:
        wait_for(lambda: _answers(port), 10, "nginx to answer")
        yield port, origin
    finally:
        os.kill(int(pid), 15)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.02)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _log_lines(text: str, needle: str) -> list[str]:
    """The messages of the error-log lines holding `needle`, without time, pid and the request
    context's varying parts."""
    out = []
    for line in text.splitlines():
        if needle in line:
            message = re.sub(r"^\S+ \S+ \[(\w+)\] \d+#\d+: (\*\d+ )?", r"[\1] ", line)
            out.append(message.split(", client:")[0])
    return out


def test_same_answers_as_nginx(pyginx: Pyginx, nginx_ports: tuple[int, int]) -> None:  # noqa: F811
    nginx_port, nginx_origin = nginx_ports
    origin = free_port()
    pyginx.write_config(_pyginx_conf(pyginx.prefix, pyginx.port, origin))
    pyginx.start()
    wait_for(lambda: _answers(origin), 10, "the origin server")
    differences = []
    for target, headers in CASES:
        want = _normalise(_get(nginx_port, target, headers), (nginx_port, nginx_origin))
        got = _normalise(_get(pyginx.port, target, headers), (pyginx.port, origin))
        if os.environ.get("SHOWALL"):
            print(target, headers, want, got)
        if want != got:
            differences.append(f"GET {target} {headers}:\n  nginx : {want}\n  pyginx: {got}")
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences)
    nginx_log = (pyginx.prefix / "logs" / "nginx-error.log").read_text()
    ours = pyginx.error_log()
    for needle in ("/rl/x", "rewrite or internal redirection cycle"):  # rewrite, try_files, @named
        want = _log_lines(nginx_log, needle)
        assert want, f"nginx logged nothing with {needle!r}"
        assert _log_lines(ours, needle) == want, needle


# ------------------------------------------------------------------------------ variables in logs

LOG_VARS = (
    "request_id msec connection connection_requests request_length request_time upstream_addr "
    "upstream_status upstream_response_time upstream_connect_time upstream_header_time cookie_c2 "
    "arg_a http_x_my_header sent_http_content_type sent_http_x_up upstream_http_x_up hostname pid "
    "time_iso8601 server_addr server_port realpath_root binary_remote_addr status bytes_sent "
    "body_bytes_sent request_uri uri args is_args sent_http_server sent_http_location "
    "sent_http_content_length sent_http_transfer_encoding sent_http_etag sent_http_accept_ranges "
    "sent_http_last_modified request_completion server_protocol request_method scheme https remote_port"
).split()
# values that differ between two servers by nature: compared by shape
SHAPES = {
    "request_id": r"[0-9a-f]{32}",
    "msec": r"\d{10}\.\d{3}",
    "connection": r"\d+",  # nginx counts the harness's probes too
    "request_time": r"\d+\.\d{3}",
    "upstream_addr": r"127\.0\.0\.1:\d+",
    "upstream_response_time": r"\d+\.\d{3}",
    "upstream_connect_time": r"\d+\.\d{3}",
    "upstream_header_time": r"\d+\.\d{3}",
    "pid": r"\d+",
    "time_iso8601": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d",
    "bytes_sent": r"\d+",  # the Server header's length differs
    "realpath_root": r"/.+",
    "remote_port": r"\d+",
}


def _start_nginx(root: Path, text: str, port: int) -> int:
    (root / "conf" / "nginx-vars.conf").write_text(text)
    assert NGINX is not None
    subprocess.run([NGINX, "-p", str(root), "-c", str(root / "conf" / "nginx-vars.conf")], check=True)
    pid_file = root / "logs" / "nginx-vars.pid"
    pid = wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "nginx to start")
    wait_for(lambda: _answers(port), 10, "nginx to answer")
    return int(pid)


def _stop(pid: int) -> None:
    os.kill(pid, 15)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.02)


def test_log_variables_as_nginx(pyginx: Pyginx) -> None:  # noqa: F811
    root = pyginx.prefix
    fmt = "|".join(f"{v}=${v}" for v in LOG_VARS)
    port, origin = free_port(), free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    nginx_conf = f"""
{user}
worker_processes 1;
error_log {root}/logs/nginx-vars-error.log;
pid {root}/logs/nginx-vars.pid;
daemon on;
events {{ worker_connections 64; }}
http {{
  log_format vars '{fmt}';
  access_log off;
  server {{
    listen 127.0.0.1:{origin};
    location / {{ add_header X-Up upval; return 200 "up\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{port};
    root {root}/html;
    location / {{ access_log {root}/logs/nginx-vars.log vars; proxy_pass http://127.0.0.1:{origin}; }}
    location /s/ {{ access_log {root}/logs/nginx-vars.log vars; }}
  }}
}}
"""
    pid = _start_nginx(root, nginx_conf, port)
    try:
        ours_origin = free_port()
        pyginx.write_config(
            f"""
worker_processes: 1
error_log: logs/error.log info
http:
  log_format: {{vars: '{fmt}'}}
  access_log: off
  servers:
    - listen: 127.0.0.1:{ours_origin}
      locations:
        - location: /
          add_header: X-Up upval
          return: '200 "up\\n"'
    - listen: 127.0.0.1:{pyginx.port}
      root: {root}/html
      locations:
        - location: /
          access_log: logs/vars.log vars
          proxy_pass: http://127.0.0.1:{ours_origin}
        - location: /s/
          access_log: logs/vars.log vars
"""
        )
        pyginx.start()
        (root / "html" / "s").mkdir(parents=True, exist_ok=True)
        (root / "html" / "s" / "a.txt").write_text("static\n")
        headers = {"Cookie": "c1=v1; c2=v2", "X-My-Header": "hv"}
        for p in (port, pyginx.port):
            with socket.create_connection(("127.0.0.1", p), timeout=10) as s:
                one = "GET /p?a=1 HTTP/1.1\r\nHost: localhost\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in headers.items()
                )
                static = "GET /s/a.txt HTTP/1.1\r\nHost: localhost\r\n"
                s.sendall((one + "\r\n" + static + "\r\n" + one + "Connection: close\r\n\r\n").encode())
                while s.recv(65536):
                    pass
        nginx_log = root / "logs" / "nginx-vars.log"
        ours_log = root / "logs" / "vars.log"
        wait_for(lambda: len(_lines_of(nginx_log)) == 3, 10, "nginx's log lines")
        wait_for(lambda: len(_lines_of(ours_log)) == 3, 10, "our log lines")
    finally:
        _stop(pid)
    differences = []
    for want_line, got_line in zip(_lines_of(nginx_log), _lines_of(ours_log), strict=True):
        want = dict(f.split("=", 1) for f in want_line.split("|"))
        got = dict(f.split("=", 1) for f in got_line.split("|"))
        assert list(got) == LOG_VARS
        for name in LOG_VARS:
            shape = SHAPES.get(name)
            same = got[name] == want[name].replace(str(port), str(pyginx.port))
            if same or (shape and re.fullmatch(shape, want[name]) and re.fullmatch(shape, got[name])):
                continue
            differences.append(f"${name}: nginx {want[name]!r}, pyginx {got[name]!r}")
    assert not differences, "\n".join(differences)


def _lines_of(log: Path) -> list[str]:
    """The log's lines of the test's requests (not the harness's readiness probes)."""
    text = log.read_text() if log.exists() else ""
    return [
        line for line in text.splitlines() if "|request_uri=/p?a=1|" in line or "|request_uri=/s/" in line
    ]
