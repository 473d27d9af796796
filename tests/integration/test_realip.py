"""realip and the PROXY protocol with the real daemon: the address limits and logs see, v1/v2 headers,
a broken header closing the connection as nginx does."""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
import time

from tests.integration.harness import Pyginx, basic_config, pyginx_fixture, wait_for  # noqa: F401


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _serves_pp(port: int) -> bool:
    try:
        return b"200" in _raw(port, b"PROXY UNKNOWN\r\n" + GET)
    except OSError:
        return False


def _body(resp: bytes) -> bytes:
    return resp.split(b"\r\n\r\n", 1)[1]


def _config(pyginx: Pyginx) -> str:
    text = basic_config(
        pyginx.port,
        workers=1,
        http="""
log_format: {rl: '$remote_addr $realip_remote_addr $status'}
limit_req_zone: $binary_remote_addr zone=one:1m rate=1r/m
""",
        server="""
set_real_ip_from: [127.0.0.1, "10.0.0.0/8"]
real_ip_header: X-Forwarded-For
real_ip_recursive: "on"
access_log: logs/realip.log rl
""",
    )
    return text.replace(
        "          return: 200 ok\n",
        '          return: 200 "$remote_addr|$remote_port|$realip_remote_addr"\n'
        "        - location: /limited\n"
        "          limit_req: zone=one\n"
        "          alias: html/index.html\n",
    )


def test_x_forwarded_for_recursive(pyginx: Pyginx) -> None:
    pyginx.write_config(_config(pyginx))
    pyginx.start()
    got = pyginx.get("/", {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"})
    assert got.body == b"203.0.113.7||127.0.0.1"
    got = pyginx.get("/", {"X-Forwarded-For": "192.0.2.1, 203.0.113.7:8080"})
    assert got.body == b"203.0.113.7|8080|127.0.0.1"  # stops at the first untrusted address
    got = pyginx.get("/", {"X-Forwarded-For": "junk, 10.0.0.5"})
    assert got.body == b"10.0.0.5||127.0.0.1"  # an unparsable entry ends the walk
    got = pyginx.get("/")
    assert got.body.startswith(b"127.0.0.1|") and got.body.endswith(b"|127.0.0.1")
    # keep-alive: the next request on the connection starts from the connection's own address
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.9\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert b"198.51.100.9||127.0.0.1" in data and b"\r\n\r\n127.0.0.1|" in data
    log = wait_for(lambda: (pyginx.prefix / "logs" / "realip.log").read_text(), 5, "log")
    assert "203.0.113.7 127.0.0.1 200" in log


def test_limits_see_the_real_address(pyginx: Pyginx) -> None:
    pyginx.write_config(_config(pyginx))
    pyginx.start()
    a = pyginx.get("/limited", {"X-Forwarded-For": "203.0.113.1"}).status
    b = pyginx.get("/limited", {"X-Forwarded-For": "203.0.113.2"}).status
    c = pyginx.get("/limited", {"X-Forwarded-For": "203.0.113.1"}).status
    assert (a, b, c) == (200, 200, 503)
    assert re.search(r'limiting requests, excess: (0\.99\d|1\.000) by zone "one", client: 203\.0\.113\.1,', pyginx.error_log())


def _pp_config(pyginx: Pyginx, trust: str) -> str:
    text = basic_config(pyginx.port, workers=1, server=f"set_real_ip_from: {trust}\nreal_ip_header: proxy_protocol")
    text = text.replace(f"listen: 127.0.0.1:{pyginx.port}", f"listen: 127.0.0.1:{pyginx.port} proxy_protocol")
    return text.replace(
        "          return: 200 ok\n",
        '          return: 200 "$remote_addr $proxy_protocol_addr:$proxy_protocol_port '
        '$proxy_protocol_server_addr:$proxy_protocol_server_port $realip_remote_addr"\n',
    )


def _v2(src: str, dst: str, sport: int, dport: int, command: int = 1) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if a.version == 4 else 0x21
    body = a.packed + b.packed + struct.pack("!HH", sport, dport) + b"\x04\x00\x01x"  # + a NOOP TLV
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def test_proxy_protocol_v1_v2_and_broken(pyginx: Pyginx) -> None:
    pyginx.write_config(_pp_config(pyginx, "127.0.0.1"))
    # the harness probes with plain HTTP: that is a broken header here, so wait for the port itself
    pyginx.spawn()
    wait_for(lambda: _serves_pp(pyginx.port), 15, "pyginx to serve")
    got = _body(_raw(pyginx.port, b"PROXY TCP4 192.0.2.10 192.0.2.1 4321 443\r\n" + GET))
    assert got == b"192.0.2.10 192.0.2.10:4321 192.0.2.1:443 127.0.0.1"
    got = _body(_raw(pyginx.port, _v2("2001:db8::7", "2001:db8::1", 5555, 80) + GET))
    assert got == b"2001:db8::7 2001:db8::7:5555 2001:db8::1:80 127.0.0.1"
    # LOCAL (a balancer's health check) and UNKNOWN keep the connection's address
    got = _body(_raw(pyginx.port, _v2("192.0.2.3", "192.0.2.1", 1, 2, command=0) + GET))
    assert got == b"127.0.0.1 : : 127.0.0.1"
    # the header in pieces
    with socket.create_connection(("127.0.0.1", pyginx.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"PROXY TCP4 192.0")
        time.sleep(0.05)  # not a wait for a condition: makes the header arrive in two reads
        s.sendall(b".2.44 192.0.2.1 1 2\r\n" + GET)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert _body(data).startswith(b"192.0.2.44 ")
    # broken headers: the connection is closed without an answer, and the log says why
    assert _raw(pyginx.port, GET) == b""
    assert _raw(pyginx.port, b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n" + GET) == b""
    log = pyginx.error_log()
    assert 'broken header: "GET / HTTP/1.1" while reading PROXY protocol, client: 127.0.0.1' in log, log
    assert 'broken header: "PROXY TCP4 1.2.3 4.5.6.7 1 2"' in log


def test_proxy_protocol_untrusted_source_keeps_the_address(pyginx: Pyginx) -> None:
    pyginx.write_config(_pp_config(pyginx, "10.0.0.0/8"))
    pyginx.spawn()
    wait_for(lambda: _serves_pp(pyginx.port), 15, "pyginx to serve")
    got = _body(_raw(pyginx.port, b"PROXY TCP4 192.0.2.10 192.0.2.1 4321 443\r\n" + GET))
    assert got == b"127.0.0.1 192.0.2.10:4321 192.0.2.1:443 127.0.0.1"


def test_bad_realip_configs(pyginx: Pyginx) -> None:
    conf = pyginx.write_config(basic_config(pyginx.port, server="set_real_ip_from: not-an-address"))
    done = pyginx.run_cli("-t")
    assert done.returncode == 1
    assert f'host not found in set_real_ip_from "not-an-address" in {conf}:' in done.stderr, done.stderr
    pyginx.write_config(basic_config(pyginx.port).replace(f":{pyginx.port}", f":{pyginx.port} proxy_protocol=1"))
    done = pyginx.run_cli("-t")
    assert done.returncode == 1 and 'invalid parameter "proxy_protocol=1"' in done.stderr
