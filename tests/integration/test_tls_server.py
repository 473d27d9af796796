"""TLS termination with real certificates (trustme, made at test time) and real clients (ssl, curl)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import textwrap
from pathlib import Path

import pytest
import trustme

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.tlstools import Pki, https_get, plain_get


def tls_config(port: int, servers: str, workers: int = 1, http: str = "") -> str:
    return (
        textwrap.dedent(
            f"""
        worker_processes: {workers}
        error_log: logs/error.log info
        pid: logs/pyginx.pid
        worker_shutdown_timeout: 5s
        events:
          worker_connections: 256
        http:
          access_log: logs/access.log
          keepalive_timeout: 5s
          client_header_timeout: 5s
        """
        )
        + textwrap.indent(http.strip() + "\n", "  ")
        + "  servers:\n"
        + textwrap.indent(textwrap.dedent(servers).strip() + "\n", "    ").replace("PORT", str(port))
    )


@pytest.fixture(name="pki")
def pki_fixture(pyginx: Pyginx) -> Pki:
    return Pki(pyginx.prefix / "conf")


ECHO = '"$scheme|$https|$ssl_protocol|$ssl_cipher|$ssl_server_name|$ssl_session_reused|$server_name|$pid"'


def test_https_answers_with_tls_variables_and_files_without_sendfile(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    big = bytes(range(256)) * 1200  # 300 KiB: past the small-file cache, read through the TLS transport
    (pyginx.prefix / "html" / "big.bin").write_bytes(big)
    pyginx.write_config(
        tls_config(
            pyginx.port,
            f"""
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              sendfile: true
              locations:
                - location: /
                - location: = /vars
                  return: 200 {ECHO}
                - location: = /redirect
                  return: 301 /elsewhere
            """,
        )
    )
    pyginx.start()
    ctx = pki.client_context()
    r = https_get(pyginx.port, ctx, "/vars")
    scheme, https, proto, cipher, sni, reused, name, _pid = r.body.decode().split("|")
    assert (r.status, scheme, https, proto, sni, reused, name) == (
        200,
        "https",
        "on",
        "TLSv1.3",
        "localhost",
        ".",
        "localhost",
    )
    assert cipher == r.cipher
    big_r = https_get(pyginx.port, ctx, "/big.bin")
    assert big_r.status == 200 and big_r.body == big
    moved = https_get(pyginx.port, ctx, "/redirect")
    assert moved.headers["location"] == f"https://localhost:{pyginx.port}/elsewhere"


def test_sni_chooses_the_server_and_unknown_names_get_the_default_certificate(
    pyginx: Pyginx, pki: Pki
) -> None:
    pki.issue("a", "a.test")
    pki.issue("b", "b.test", "*.b.test")
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl
              server_name: a.test
              ssl_certificate: conf/a.crt
              ssl_certificate_key: conf/a.key
              locations:
                - location: /
                  return: 200 "a $ssl_server_name"
            - listen: 127.0.0.1:PORT ssl
              server_name: b.test *.b.test
              ssl_certificate: conf/b.crt
              ssl_certificate_key: conf/b.key
              locations:
                - location: /
                  return: 200 "b $ssl_server_name"
            """,
        )
    )
    pyginx.start()
    ctx = pki.client_context()
    assert https_get(pyginx.port, ctx, server_name="a.test").body == b"a a.test"
    assert https_get(pyginx.port, ctx, server_name="b.test").body == b"b b.test"
    assert https_get(pyginx.port, ctx, server_name="www.b.test").body == b"b www.b.test"  # wildcard name
    # a name no server has: the default server's certificate (a.test), so a verifying client refuses it
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(pyginx.port, ctx, server_name="c.test")
    loose = pki.client_context()
    loose.check_hostname = False
    r = https_get(pyginx.port, loose, server_name="c.test", host="a.test")
    assert r.body == b"a c.test"


def test_rsa_and_ecdsa_certificates_side_by_side(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("rsa", "localhost", key_type=trustme.KeyType.RSA)
    pki.issue("ec", "localhost", key_type=trustme.KeyType.ECDSA)
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: [conf/rsa.crt, conf/ec.crt]
              ssl_certificate_key: [conf/rsa.key, conf/ec.key]
              ssl_protocols: TLSv1.2
              locations:
                - location: /
                  return: 200 "$ssl_protocol $ssl_cipher"
            """,
        )
    )
    pyginx.start()
    for suite, algo in (("ECDHE-RSA-AES128-GCM-SHA256", "RSA"), ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDSA")):
        ctx = pki.client_context()
        ctx.set_ciphers(suite)
        r = https_get(pyginx.port, ctx)
        assert r.body == f"TLSv1.2 {suite}".encode(), algo
    # TLS 1.3 offered to a TLSv1.2-only server: refused, logged at info without a traceback
    only13 = pki.client_context()
    only13.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises(ssl.SSLError):
        https_get(pyginx.port, only13)
    wait_for(lambda: "while SSL handshaking" in pyginx.error_log(), what="the handshake failure in the log")
    line = next(x for x in pyginx.error_log().splitlines() if "while SSL handshaking" in x)
    assert "[info]" in line and "client: 127.0.0.1" in line


def test_plain_http_on_the_tls_port_gets_nginx_400_and_error_page_497(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              locations:
                - location: /
                  return: 200 ok
            - listen: 127.0.0.1:PORT ssl
              server_name: redirecting.test
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              error_page: {497: "https://$host:$server_port$request_uri"}
            """,
        )
    )
    pyginx.start()
    status, headers, body = plain_get(pyginx.port, "/x")
    assert status == 400 and headers["connection"] == "close"
    assert b"<center>The plain HTTP request was sent to HTTPS port</center>" in body
    status, headers, _ = plain_get(pyginx.port, "/x?y=1", host="redirecting.test")
    assert status == 302 and headers["location"] == f"https://redirecting.test:{pyginx.port}/x?y=1"
    assert https_get(pyginx.port, pki.client_context(), "/").body == b"ok"
    access = (pyginx.prefix / "logs" / "access.log").read_text()
    assert '"GET /x HTTP/1.1" 400 ' in access


def test_session_tickets_resume_across_two_workers(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              ssl_session_cache: shared:SSL:1m
              ssl_session_timeout: 10m
              locations:
                - location: /
                  return: 200 "$pid $ssl_session_reused"
            """,
            workers=2,
        )
    )
    pyginx.start(workers=2)
    ctx = pki.client_context()
    first = https_get(pyginx.port, ctx)
    assert first.session is not None and not first.reused
    seen: dict[str, str] = {}
    for _ in range(60):  # the kernel hands connections to either worker: go on until both resumed one
        r = https_get(pyginx.port, ctx, session=first.session)
        pid, flag = r.body.decode().split()
        assert r.reused and flag == "r", r.body
        seen[pid] = flag
        if len(seen) == 2:
            break
    assert len(seen) == 2, f"only worker(s) {sorted(seen)} answered"


def test_session_tickets_off_means_no_resumption(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              ssl_session_tickets: false
              ssl_protocols: TLSv1.3
              locations:
                - location: /
                  return: 200 "$ssl_session_reused"
            """,
        )
    )
    pyginx.start()
    ctx = pki.client_context()
    first = https_get(pyginx.port, ctx)
    again = https_get(pyginx.port, ctx, session=first.session)
    assert not again.reused and again.body == b"."


def test_mutual_tls_accepted_and_refused(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    ca = pki.ca_file()
    pyginx.write_config(
        tls_config(
            pyginx.port,
            f"""
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              ssl_client_certificate: {ca}
              ssl_verify_client: true
              ssl_verify_depth: 2
              locations:
                - location: /
                  return: 200 "$ssl_client_verify $ssl_client_s_dn"
            """,
        )
    )
    pyginx.start()
    chain, key = pki.client_cert("alice")
    ctx = pki.client_context()
    ctx.load_cert_chain(str(chain), str(key))
    r = https_get(pyginx.port, ctx)
    assert r.status == 200 and r.body.startswith(b"SUCCESS ") and b"CN=alice" in r.body
    # no certificate: nginx's 400 "No required SSL certificate was sent"
    r = https_get(pyginx.port, pki.client_context())
    assert r.status == 400 and b"No required SSL certificate was sent" in r.body
    # a certificate from another CA: the handshake is refused
    other = Pki(pyginx.prefix / "conf" / "other")
    other.dir.mkdir()
    bad_chain, bad_key = other.client_cert("mallory")
    bad = pki.client_context()
    bad.load_cert_chain(str(bad_chain), str(bad_key))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(pyginx.port, bad)
    wait_for(
        lambda: (
            "certificate verify failed" in pyginx.error_log().lower()
            or "CERTIFICATE_VERIFY_FAILED" in pyginx.error_log()
        ),
        what="the refused client certificate in the log",
    )
    assert "Traceback" not in pyginx.error_log()


def test_silent_and_garbage_clients_are_closed_and_logged_at_info(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              ssl_handshake_timeout: 1s
              locations:
                - location: /
                  return: 200 ok
            """,
        )
    )
    pyginx.start()
    silent = socket.create_connection(("127.0.0.1", pyginx.port))
    garbage = socket.create_connection(("127.0.0.1", pyginx.port))
    garbage.sendall(b"\x16\x03\x01\x00\x05hello" + bytes(64))
    silent.settimeout(5)
    garbage.settimeout(5)
    assert silent.recv(10) == b""  # closed by the handshake timeout
    try:
        garbage.recv(100)
    except ConnectionResetError:
        pass
    silent.close()
    garbage.close()
    log = wait_for(
        lambda: pyginx.error_log() if pyginx.error_log().count("while SSL handshaking") >= 2 else "",
        what="two handshake failures",
    )
    lines = [x for x in log.splitlines() if "while SSL handshaking" in x]
    assert all("[info]" in x for x in lines), lines
    assert any("timed out" in x for x in lines)
    assert https_get(pyginx.port, pki.client_context()).body == b"ok"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_over_https(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(
        tls_config(
            pyginx.port,
            """
            - listen: 127.0.0.1:PORT ssl
              server_name: localhost
              ssl_certificate: conf/site.crt
              ssl_certificate_key: conf/site.key
              locations:
                - location: /
                  return: 200 "curl $ssl_protocol"
            """,
        )
    )
    pyginx.start()
    out = subprocess.run(
        ["curl", "-sS", "--cacert", str(pki.ca_file()), f"https://localhost:{pyginx.port}/"],
        capture_output=True,
        timeout=20,
        check=True,
    )
    assert out.stdout == b"curl TLSv1.3"


def test_dash_t_reports_certificate_problems_with_file_and_line(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("a", "localhost")
    pki.issue("b", "localhost")
    server = """
        - listen: 127.0.0.1:PORT ssl
          server_name: localhost
          ssl_certificate: CERT
          ssl_certificate_key: KEY
        """
    conf = pyginx.prefix / "conf" / "pyginx.yaml"

    def check(cert: str, key: str) -> subprocess.CompletedProcess[str]:
        pyginx.write_config(tls_config(pyginx.port, server.replace("CERT", cert).replace("KEY", key)))
        return pyginx.run_cli("-t")

    missing = check("conf/missing.crt", "conf/a.key")
    assert missing.returncode == 1
    assert 'cannot load certificate "' in missing.stderr and "missing.crt" in missing.stderr
    line = next(n for n, text in enumerate(conf.read_text().splitlines(), 1) if "ssl_certificate:" in text)
    assert f"{conf}:{line}" in missing.stderr
    mismatch = check("conf/a.crt", "conf/b.key")
    assert mismatch.returncode == 1 and "key values mismatch" in mismatch.stderr
    assert f"{conf}:{line + 1}" in mismatch.stderr
    expired = pki.ca.issue_cert("localhost", not_after=__import__("datetime").datetime(2001, 1, 1))
    Path(pyginx.prefix / "conf" / "old.crt").write_bytes(expired.cert_chain_pems[0].bytes())
    Path(pyginx.prefix / "conf" / "old.key").write_bytes(expired.private_key_pem.bytes())
    old = check("conf/old.crt", "conf/old.key")
    assert old.returncode == 0, old.stderr
    assert "[warn]" in old.stderr and "has expired" in old.stderr and f"{conf}:{line}" in old.stderr


def test_encrypted_key_with_ssl_password_file(pyginx: Pyginx, pki: Pki) -> None:
    chain, key = pki.issue("site", "localhost")
    encrypted = pyginx.prefix / "conf" / "site.enc.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:s3cret", "-out", str(encrypted)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    (pyginx.prefix / "conf" / "passwords").write_text("wrong\ns3cret\n")  # tried in turn, as nginx
    server = f"""
        - listen: 127.0.0.1:PORT ssl
          server_name: localhost
          ssl_certificate: {chain}
          ssl_certificate_key: {encrypted}
          PASSWORD
          locations:
            - location: /
              return: 200 unlocked
        """
    pyginx.write_config(tls_config(pyginx.port, server.replace("PASSWORD", "")))
    refused = pyginx.run_cli("-t")
    assert refused.returncode == 1 and "the key is encrypted" in refused.stderr
    pyginx.write_config(
        tls_config(pyginx.port, server.replace("PASSWORD", "ssl_password_file: conf/passwords"))
    )
    assert pyginx.run_cli("-t").returncode == 0
    pyginx.start()
    assert https_get(pyginx.port, pki.client_context()).body == b"unlocked"
