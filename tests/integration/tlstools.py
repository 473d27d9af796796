"""TLS helpers for integration tests: certificates made at test time with trustme, clients from ssl."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from tests.integration.rawhttp import read_response, read_until_close


@dataclass
class Pki:
    """A test CA and the files of the certificates it issued, under `dir`."""

    dir: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def issue(
        self, name: str, *hosts: str, key_type: trustme.KeyType = trustme.KeyType.ECDSA
    ) -> tuple[Path, Path]:
        """(chain file, key file) for a server certificate valid for `hosts` (default: `name`)."""
        cert = self.ca.issue_cert(*(hosts or (name,)), key_type=key_type)
        chain = self.dir / f"{name}.crt"
        key = self.dir / f"{name}.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key.write_bytes(cert.private_key_pem.bytes())
        return chain, key

    def client_cert(self, name: str) -> tuple[Path, Path]:
        cert = self.ca.issue_cert(f"{name}@example.test", common_name=name)
        chain = self.dir / f"client-{name}.pem"
        chain.write_bytes(cert.private_key_and_cert_chain_pem.bytes())
        return chain, chain

    def ca_file(self) -> Path:
        path = self.dir / "ca.crt"
        if not path.exists():
            self.ca.cert_pem.write_to_path(str(path))
        return path

    def client_context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx


@dataclass
class TlsResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    version: str
    cipher: str
    reused: bool
    session: ssl.SSLSession | None
    peer_subject: str


def https_get(
    port: int,
    ctx: ssl.SSLContext,
    path: str = "/",
    server_name: str = "localhost",
    host: str | None = None,
    session: ssl.SSLSession | None = None,
    timeout: float = 5.0,
) -> TlsResponse:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name, session=session) as s:
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host or server_name}\r\nConnection: close\r\n\r\n".encode()
            )
            status, headers, body = read_response(s, timeout)
            cert = s.getpeercert() or {}
            subject = ",".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
            return TlsResponse(
                status,
                headers,
                body,
                s.version() or "",
                (s.cipher() or ("",))[0],
                s.session_reused,
                s.session,
                subject,
            )


def plain_get(port: int, path: str = "/", host: str = "localhost") -> tuple[int, dict[str, str], bytes]:
    """A plain-HTTP request (to a TLS port, say): the response read to the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        data = read_until_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body
