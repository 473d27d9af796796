"""proxy_pass https://: verification, names, client certificates, keep-alive and session reuse, against a
real TLS origin (a threaded http.server behind ssl) with certificates made at test time."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_proxy_basic import request
from tests.integration.test_tls_server import pki_fixture, tls_config  # noqa: F401
from tests.integration.tlstools import Pki


class TlsOrigin:
    def __init__(self, pki: Pki, require_client_cert: bool = False) -> None:
        chain, key = pki.issue("origin", "origin.test", "127.0.0.1")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(chain), str(key))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(pki.ca_file()))
        self.names: list[str | None] = []
        self.connections = 0
        self.resumed = 0
        self.clients: list[str] = []
        origin = self

        def on_sni(sslobj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            origin.names.append(name)

        ctx.sni_callback = on_sni

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                origin.connections += 1
                if self.connection.session_reused:  # type: ignore[attr-defined]
                    origin.resumed += 1
                cert = self.connection.getpeercert()  # type: ignore[attr-defined]
                if cert:
                    origin.clients.append(dict(x[0] for x in cert["subject"]).get("commonName", ""))

            def do_GET(self) -> None:
                body = json.dumps({"path": self.path, "host": self.headers.get("Host")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, object]:
                sock, addr = self.socket.accept()
                sock.settimeout(5)
                try:
                    return ctx.wrap_socket(sock, server_side=True), addr
                except (ssl.SSLError, OSError):
                    sock.close()
                    raise

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        """Forget what the harness's readiness probe (a GET through the proxy) left behind."""
        self.names, self.connections, self.resumed, self.clients = [], 0, 0, []

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(name="origin")
def origin_fixture(pki: Pki) -> Iterator[TlsOrigin]:
    o = TlsOrigin(pki)
    yield o
    o.close()


def _front(pyginx: Pyginx, location: str, upstreams: str = "") -> None:
    http = f"upstreams:\n{upstreams}" if upstreams else ""
    pyginx.write_config(
        tls_config(
            pyginx.port,
            f"""
            - listen: 127.0.0.1:PORT
              server_name: localhost
              locations:
{location}
            """.replace("PORT", str(pyginx.port)),
            http=http,
        ).replace("ssl\n", "\n")
    )


def test_proxy_to_https_with_verification_sni_and_keepalive(
    pyginx: Pyginx, pki: Pki, origin: TlsOrigin
) -> None:
    _front(
        pyginx,
        f"""                - location: /
                  proxy_pass: https://origin
                  proxy_ssl_verify: true
                  proxy_ssl_trusted_certificate: {pki.ca_file()}
                  proxy_ssl_name: origin.test
                  proxy_ssl_server_name: true
                  proxy_set_header: {{Host: origin.test}}""",
        upstreams=f"  origin:\n    servers: [127.0.0.1:{origin.port}]\n    keepalive: 4\n",
    )
    pyginx.start()
    wait_for(lambda: origin.connections, what="the probe's request")
    assert origin.names == ["origin.test"]  # proxy_ssl_server_name on: the name went out as SNI
    origin.reset()
    for i in range(3):
        status, _, body = request(pyginx.port, f"/p{i}")
        assert status == 200, body
        assert json.loads(body) == {"path": f"/p{i}", "host": "origin.test"}
    assert origin.names == []  # the connection of the probe's request is reused
    assert origin.connections == 0  # kept alive: one TLS connection for every request


def test_failing_upstream_certificate_is_502_with_the_reason_logged(
    pyginx: Pyginx, pki: Pki, origin: TlsOrigin
) -> None:
    _front(
        pyginx,
        f"""                - location: /
                  proxy_pass: https://127.0.0.1:{origin.port}
                  proxy_ssl_verify: true
                  proxy_ssl_trusted_certificate: {pki.ca_file()}
                  proxy_ssl_name: wrong.test""",
    )
    pyginx.start()
    status, _, _ = request(pyginx.port, "/")
    assert status == 502
    log = wait_for(
        lambda: "upstream SSL certificate verify error" in pyginx.error_log() and pyginx.error_log(),
        what="the reason",
    )
    assert "while SSL handshaking to upstream" in log and "Hostname mismatch" in log


def test_unverified_by_default_and_session_reuse(pyginx: Pyginx, pki: Pki, origin: TlsOrigin) -> None:
    _front(
        pyginx,
        f"""                - location: /
                  proxy_pass: https://127.0.0.1:{origin.port}""",
        upstreams="",
    )
    # no keep-alive to the origin: every request makes a new TLS connection, resumed from the last
    text = (
        (pyginx.prefix / "conf" / "pyginx.yaml").read_text()
        if (pyginx.prefix / "conf" / "pyginx.yaml").exists()
        else ""
    )
    pyginx.write_config(
        text.replace(
            "  access_log: logs/access.log\n",
            "  access_log: logs/access.log\n  proxy_set_header: {Connection: close}\n",
        )
    )
    pyginx.start()
    wait_for(lambda: origin.connections, what="the probe's request")
    origin.reset()
    for i in range(3):
        status, _, body = request(pyginx.port, f"/r{i}")
        assert status == 200, body
    assert origin.names == [None, None, None]  # proxy_ssl_server_name off: no SNI, as nginx
    assert origin.connections == 3 and origin.resumed == 3


def test_client_certificate_to_the_upstream(pyginx: Pyginx, pki: Pki) -> None:
    origin = TlsOrigin(pki, require_client_cert=True)
    try:
        chain, key = pki.client_cert("proxy")
        _front(
            pyginx,
            f"""                - location: /
                  proxy_pass: https://127.0.0.1:{origin.port}
                  proxy_ssl_certificate: {chain}
                  proxy_ssl_certificate_key: {key}""",
        )
        pyginx.start()
        status, _, body = request(pyginx.port, "/")
        assert status == 200, body
        assert origin.clients and set(origin.clients) == {"proxy"}
    finally:
        origin.close()
