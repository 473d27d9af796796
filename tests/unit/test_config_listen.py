"""`listen` and `server_name`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pyginx.config import load_config, resolve
from pyginx.config.model import ListenAddr, Server


@pytest.fixture(autouse=True)
def _fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {"localhost": [("127.0.0.1", 0), ("::1", 0)], "multi.test": [("10.0.0.1", 0), ("10.0.0.2", 0)]}

    def lookup(host: str, port: int) -> list[tuple[str, int]]:
        if host not in names:
            raise OSError("not found")
        return [(h, port) for h, _ in names[host]]

    monkeypatch.setattr(resolve, "lookup", lookup)


def server(tmp_path: Path, body: str) -> Server:
    conf = tmp_path / "p.yaml"
    conf.write_text(
        "http:\n  servers:\n    - " + textwrap.indent(textwrap.dedent(body).strip(), "      ")[6:] + "\n"
    )
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None
    return cfg.http.servers[0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8080", [("0.0.0.0", 8080)]),
        ("'*:8080'", [("0.0.0.0", 8080)]),
        ("'*'", [("0.0.0.0", 80)]),
        ("127.0.0.1:8080", [("127.0.0.1", 8080)]),
        ("127.0.0.1", [("127.0.0.1", 80)]),
        ("'[::1]:8080'", [("::1", 8080)]),
        ("'[::]'", [("::", 80)]),
        ("localhost:8080", [("127.0.0.1", 8080), ("::1", 8080)]),
        ("multi.test", [("10.0.0.1", 80), ("10.0.0.2", 80)]),
        ("[8080, 127.0.0.1:8081]", [("0.0.0.0", 8080), ("127.0.0.1", 8081)]),
    ],
)
def test_addresses(tmp_path: Path, value: str, expected: list[tuple[str, int]]) -> None:
    s = server(tmp_path, f"listen: {value}")
    assert [(la.host, la.port) for la in s.listen] == expected


def test_parameters(tmp_path: Path) -> None:
    s = server(tmp_path, "listen: '[::1]:8080 default_server reuseport backlog=1024 ipv6only=off'")
    (la,) = s.listen
    assert la == ListenAddr(
        host="::1", port=8080, default_server=True, reuseport=True, backlog=1024, ipv6only=False, pos=la.pos
    )
    assert la.pos is not None and la.pos.line == 3
    assert str(la) == "[::1]:8080"
    assert server(tmp_path, "listen: 80 default").listen[0].default_server  # nginx's old spelling
    assert server(tmp_path, "listen: 80 bind deferred").listen[0].port == 80


def test_unix_socket(tmp_path: Path) -> None:
    (la,) = server(tmp_path, "listen: unix:/run/p.sock default_server").listen
    assert la.unix == "/run/p.sock" and la.default_server and str(la) == "unix:/run/p.sock"
    assert la.key == ("", 0, "/run/p.sock")


def test_each_list_entry_has_its_own_line(tmp_path: Path) -> None:
    s = server(tmp_path, "listen:\n  - 8080\n  - 8081 default_server\n")
    assert [(la.port, la.pos.line if la.pos else 0, la.default_server) for la in s.listen] == [
        (8080, 4, False),
        (8081, 5, True),
    ]


def test_default_server_on_different_addresses_is_fine(tmp_path: Path) -> None:
    conf = tmp_path / "p.yaml"
    conf.write_text(
        "http:\n  servers:\n    - listen: 127.0.0.1:8080 default_server\n"
        "    - listen: 127.0.0.1:8081 default_server\n"
    )
    cfg = load_config(str(conf), str(tmp_path))
    assert cfg.http is not None and len(cfg.http.servers) == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", ("example.com",)),
        ("Example.COM www.example.com", ("example.com", "www.example.com")),
        ("[a.test, '*.b.test', 'c.*']", ("a.test", "*.b.test", "c.*")),
        ("'~^(?<sub>.+)\\.Example\\.com$'", ("~^(?<sub>.+)\\.Example\\.com$",)),
        ("'\"\"'", ("",)),
        ("''", ("",)),
        ("'_ \"\"'", ("_", "")),
        (".example.com", (".example.com",)),
    ],
)
def test_server_names(tmp_path: Path, value: str, expected: tuple[str, ...]) -> None:
    s = server(tmp_path, f"server_name: {value}")
    assert s.server_names == expected
    assert s.primary_name == expected[0]
