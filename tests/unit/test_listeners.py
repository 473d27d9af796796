"""Listening sockets: bind from the configuration, keep by address across reloads, adopt inherited fds."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from pyginx.config.model import Http, HttpSettings, ListenAddr, MainConfig, Server
from pyginx.process.listeners import (
    ListenError,
    close_sockets,
    config_addrs,
    env_value,
    inherited_sockets,
    open_listeners,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(*addrs: ListenAddr) -> MainConfig:
    server = Server(listen=tuple(addrs), server_names=("",), settings=HttpSettings(), locations=())
    http = Http(settings=HttpSettings(), servers=(server,), upstreams={}, log_formats={})
    return MainConfig(file="/x.yaml", prefix="/", http=http)


def test_bind_keep_add_remove() -> None:
    a, b = ListenAddr("127.0.0.1", free_port()), ListenAddr("127.0.0.1", free_port())
    first, leftovers = open_listeners(config(a), [], workers=2)
    assert leftovers == []
    sock_a = first.for_worker(0)[a.key]
    assert sock_a.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    assert first.for_worker(1)[a.key] is sock_a  # shared by every worker
    second, leftovers = open_listeners(config(a, b), first.sockets(), workers=2)
    assert second.for_worker(0)[a.key] is sock_a  # same address, same socket
    assert b.key in second.for_worker(0) and leftovers == []
    third, leftovers = open_listeners(config(b), second.sockets(), workers=2)
    assert leftovers == [sock_a]
    close_sockets(leftovers, unlink_unix=True)
    third.close(unlink_unix=True)


def test_failed_bind_closes_only_what_it_created() -> None:
    a = ListenAddr("127.0.0.1", free_port())
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    b = ListenAddr("127.0.0.1", busy.getsockname()[1])
    c = ListenAddr("127.0.0.1", free_port())
    try:
        first, _ = open_listeners(config(a), [], workers=1)
        with pytest.raises(ListenError) as exc:
            open_listeners(config(a, c, b), first.sockets(), workers=1)
        assert str(exc.value) == f"bind() to {b} failed (98: Address already in use)"
        assert first.for_worker(0)[a.key].fileno() >= 0  # the running set is untouched
        probe = socket.socket()  # c was bound by the failed attempt and released again
        probe.bind(("127.0.0.1", c.port))
        probe.close()
        first.close(unlink_unix=False)
    finally:
        busy.close()


def test_reuseport_gives_one_socket_per_worker() -> None:
    a = ListenAddr("127.0.0.1", free_port(), reuseport=True)
    first, _ = open_listeners(config(a), [], workers=3)
    socks = [first.for_worker(i)[a.key] for i in range(3)]
    assert len({id(s) for s in socks}) == 3
    assert first.for_worker(3)[a.key] is socks[0]
    smaller, leftovers = open_listeners(config(a), first.sockets(), workers=2)
    assert [smaller.for_worker(i)[a.key] for i in range(2)] == socks[:2]
    assert leftovers == [socks[2]]
    close_sockets(leftovers, unlink_unix=False)
    smaller.close(unlink_unix=False)


def test_unix_socket_stale_file_and_unlink(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays: a server that died
    u = ListenAddr("", 0, unix=path)
    ls, _ = open_listeners(config(u), [], workers=1)
    assert os.path.exists(path)
    ls.close(unlink_unix=True)
    assert not os.path.exists(path)


def test_inherited_fds_are_adopted_by_address() -> None:
    a, b = ListenAddr("127.0.0.1", free_port()), ListenAddr("127.0.0.1", free_port())
    old, _ = open_listeners(config(a, b), [], workers=1)
    fds = [os.dup(fd) for fd in old.fds()]  # what a new binary finds in its fd table
    value = env_value(fds) + "x;"
    adopted, problems = inherited_sockets(value)
    assert len(adopted) == 2 and problems and "invalid socket number" in problems[0]
    new, leftovers = open_listeners(config(b), adopted, workers=1)
    assert new.for_worker(0)[b.key].fileno() in fds
    assert [s.fileno() for s in leftovers] == [fds[0]]
    close_sockets(leftovers, unlink_unix=False)
    new.close(unlink_unix=False)
    old.close(unlink_unix=False)


def test_config_addrs_merges_repeats() -> None:
    a = ListenAddr("127.0.0.1", 8080)
    a2 = ListenAddr("127.0.0.1", 8080, reuseport=True)
    assert config_addrs(config(a, a2))[a.key].reuseport


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_only_follows_the_listen_option() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    v6 = ListenAddr("::1", free_port(), ipv6only=True)
    dual = ListenAddr("::", free_port(), ipv6only=False)
    ls, _ = open_listeners(config(v6, dual), [], workers=1)
    socks = ls.for_worker(0)
    assert socks[v6.key].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    assert socks[dual.key].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
    assert str(v6) == f"[::1]:{v6.port}"
    ls.close(unlink_unix=False)
