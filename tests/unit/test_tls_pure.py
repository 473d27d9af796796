"""The pure pieces of TLS and HTTP/2: ssl directive parsing and merging, protocol ranges, DN format,
handshake log levels, and the HTTP/2 stream's reading of the core's response head."""

from __future__ import annotations

import ssl
import textwrap
from pathlib import Path

import pytest

from pyginx.config import load_config
from pyginx.config.model import TlsFile
from pyginx.errors import ConfigError
from pyginx.http2.stream import _unchunk, parse_head
from pyginx.tls.options import handshake_log_level, protocol_range, rfc2253
from pyginx.tls.upstream import ssl_name


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    conf = tmp_path / "p.yaml"
    conf.write_text(textwrap.dedent(text))
    return load_config(str(conf), str(tmp_path))


def test_ssl_directives_parse_and_inherit(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          ssl_protocols: TLSv1.3
          ssl_session_timeout: 10m
          servers:
            - listen: 127.0.0.1:8443 ssl http2 default_server
              ssl_certificate: [rsa.crt, ec.crt]
              ssl_certificate_key: [rsa.key, ec.key]
              ssl_verify_client: optional
              http2: true
              locations:
                - location: /
                  proxy_pass: https://127.0.0.1:9443
                  proxy_ssl_verify: true
        """,
    )
    server = cfg.http.servers[0]
    la = server.listen[0]
    assert (la.ssl, la.http2, la.default_server) == (True, True, True)
    s = server.settings
    assert [f.path for f in s.ssl_certificate] == [str(tmp_path / "rsa.crt"), str(tmp_path / "ec.crt")]
    assert s.ssl_certificate[1].pos is not None and s.ssl_certificate[1].pos.line == 7
    assert (s.ssl_protocols, s.ssl_session_timeout, s.ssl_verify_client, s.http2) == (
        ("TLSv1.3",),
        600.0,
        "optional",
        True,
    )
    loc = server.locations[0].settings
    assert loc.proxy_pass is not None and loc.proxy_pass.scheme == "https" and loc.proxy_pass.port == 9443
    assert loc.proxy_ssl_verify and loc.ssl_protocols == ("TLSv1.3",)
    assert any("listen ... http2" in w for w in cfg.warnings)


def test_https_proxy_pass_defaults_to_443_and_proxy_host_omits_it(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        http:
          servers:
            - locations:
                - location: /
                  proxy_pass: https://127.0.0.1
        """,
    )
    pp = cfg.http.servers[0].locations[0].settings.proxy_pass
    assert pp is not None and (pp.port, pp.proxy_host) == (443, "127.0.0.1")


def test_the_default_server_of_a_tls_address_needs_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match='no "ssl_certificate" is defined for the "listen ... ssl" directive'
    ):
        load(
            tmp_path,
            """
            http:
              servers:
                - listen: 127.0.0.1:8443
                  server_name: a
                - listen: 127.0.0.1:8443 ssl
                  server_name: b
                  ssl_certificate: b.crt
                  ssl_certificate_key: b.key
            """,
        )


def test_protocol_ranges() -> None:
    assert protocol_range(("TLSv1.2", "TLSv1.3")) == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3, 0)
    low, high, gaps = protocol_range(("TLSv1", "TLSv1.3"))
    assert (low, high) == (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3)
    assert gaps == ssl.OP_NO_TLSv1_1 | ssl.OP_NO_TLSv1_2
    with pytest.raises(ValueError):
        protocol_range(("SSLv3",))


def test_rfc2253_subject() -> None:
    subject = ((("countryName", "DE"),), (("organizationName", "Acme, Inc"),), (("commonName", "alice"),))
    assert rfc2253(subject) == "CN=alice,O=Acme\\, Inc,C=DE"
    assert rfc2253(None) == ""


def test_handshake_log_levels() -> None:
    alert = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    alert.reason = "TLSV1_ALERT_UNKNOWN_CA"  # type: ignore[misc]
    assert handshake_log_level(alert) == "info"
    assert handshake_log_level(ConnectionResetError()) == "info"
    odd = ssl.SSLError(1, "internal")
    odd.reason = "INTERNAL_ERROR"  # type: ignore[misc]
    assert handshake_log_level(odd) == "crit"


def test_ssl_name_drops_the_port() -> None:
    assert ssl_name("origin.test:8443") == "origin.test"
    assert ssl_name("[::1]:443") == "::1"
    assert ssl_name("origin.test") == "origin.test"


def test_http2_head_from_the_core() -> None:
    head = b"HTTP/1.1 200 OK\r\nServer: pyginx\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n"
    status, headers, chunked = parse_head(head)
    assert status == b"200" and not chunked
    assert headers == [
        (b":status", b"200"),
        (b"server", b"pyginx"),
        (b"content-length", b"5"),
        (b"x-a", b"b"),
    ]
    _, headers, chunked = parse_head(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n")
    assert chunked and headers == [(b":status", b"404")]
    assert _unchunk(b"5\r\nhello\r\n") == b"hello"
    assert _unchunk(b"not chunked") == b"not chunked"


def test_tls_file_keeps_where_it_was_named() -> None:
    f = TlsFile("/x/a.crt")
    assert f.pos is None and f.path == "/x/a.crt"
