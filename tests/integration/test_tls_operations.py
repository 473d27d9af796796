"""TLS operations: the certbot flow (renewed certificate files, then a reload) without a failed request,
and a reload with a broken certificate that leaves the old one serving."""

from __future__ import annotations

import signal
import threading
import time

from tests.integration.harness import Pyginx, pyginx_fixture, wait_for  # noqa: F401
from tests.integration.test_tls_server import pki_fixture, tls_config  # noqa: F401
from tests.integration.tlstools import Pki, https_get

SERVER = """
- listen: 127.0.0.1:PORT ssl
  server_name: localhost
  ssl_certificate: conf/site.crt
  ssl_certificate_key: conf/site.key
  locations:
    - location: /
      return: 200 ok
"""


def _serial(pki: Pki, port: int) -> str:
    return https_get(port, pki.client_context()).peer_subject


def test_reload_picks_up_renewed_certificates_with_zero_failed_requests(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(tls_config(pyginx.port, SERVER, workers=2))
    master = pyginx.start(workers=2)
    before = _serial(pki, pyginx.port)
    failures: list[str] = []
    subjects: set[str] = set()
    done = threading.Event()
    ctx = pki.client_context()

    def load() -> None:
        deadline = time.monotonic() + 20
        while not done.is_set() and time.monotonic() < deadline:
            try:
                r = https_get(pyginx.port, ctx)
                if r.status != 200 or r.body != b"ok":
                    failures.append(f"{r.status} {r.body!r}")
                subjects.add(r.peer_subject)
            except Exception as exc:  # any failed request fails the test
                failures.append(repr(exc))

    clients = [threading.Thread(target=load) for _ in range(3)]
    for t in clients:
        t.start()
    try:
        wait_for(lambda: len(subjects) >= 1, what="requests before the renewal")
        pki.issue("site", "localhost")  # certbot writes the renewed files in place
        pyginx.signal(signal.SIGHUP, master)
        after = wait_for(
            lambda: (s := _serial(pki, pyginx.port)) != before and s,
            timeout=10,
            what="the renewed certificate",
        )
        wait_for(lambda: after in subjects, what="the load to see the renewed certificate")
    finally:
        done.set()
        for t in clients:
            t.join(30)
    assert not failures, failures[:5]
    assert before in subjects and after in subjects


def test_reload_with_a_broken_certificate_keeps_the_old_one(pyginx: Pyginx, pki: Pki) -> None:
    pki.issue("site", "localhost")
    pyginx.write_config(tls_config(pyginx.port, SERVER))
    master = pyginx.start(workers=1)
    before = _serial(pki, pyginx.port)
    (pyginx.prefix / "conf" / "site.key").write_text("not a key\n")
    pyginx.allow = ("cannot load certificate key",)
    pyginx.signal(signal.SIGHUP, master)
    wait_for(lambda: "cannot load certificate key" in pyginx.error_log(), what="the reload error")
    line = next(x for x in pyginx.error_log().splitlines() if "cannot load certificate key" in x)
    assert "[emerg]" in line and "pyginx.yaml:" in line
    assert _serial(pki, pyginx.port) == before
