"""The one line a foreground start prints: every distinct listening address, as a URL where it is one."""

from __future__ import annotations

from pathlib import Path

from pyginx.config import load_config
from pyginx.process.startup import serving_notice


def notice(tmp_path: Path, text: str) -> str:
    conf = tmp_path / "pyginx.yaml"
    conf.write_text(text)
    return serving_notice(load_config(str(conf), str(tmp_path)), 42)


def test_addresses_once_each_in_order(tmp_path: Path) -> None:
    text = (
        "http:\n  servers:\n"
        "    - listen: [127.0.0.1:8080, '[::1]:8081']\n"
        "    - listen: 127.0.0.1:8080\n      server_name: b\n"
        f"    - listen: unix:{tmp_path}/p.sock\n"
    )
    assert notice(tmp_path, text) == (
        f"pyginx: serving on http://127.0.0.1:8080/ http://[::1]:8081/ unix:{tmp_path}/p.sock (pid 42)"
    )


def test_nothing_to_serve(tmp_path: Path) -> None:
    assert notice(tmp_path, "http:\n") == "pyginx: no server is configured, listening nowhere (pid 42)"


def test_a_tls_address_is_an_https_url(tmp_path: Path) -> None:
    text = (
        "http:\n  servers:\n"
        "    - listen: '127.0.0.1:8443 ssl'\n"
        "      ssl_certificate: c.pem\n      ssl_certificate_key: k.pem\n"
        "    - listen: 127.0.0.1:8080\n"
    )
    assert notice(tmp_path, text) == "pyginx: serving on https://127.0.0.1:8443/ http://127.0.0.1:8080/ (pid 42)"
