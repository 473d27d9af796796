"""htpasswd: Basic credentials as nginx parses them, every password scheme it accepts, the file
format's quirks, and the cache that re-reads a changed file."""

from __future__ import annotations

import base64
import hashlib
import os
import warnings
from pathlib import Path

import bcrypt
import pytest

import pyginx.config  # noqa: F401  (the configuration package first: it imports the module registry)
from pyginx.modules import htpasswd


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (_basic(b"alice:wonder"), ("alice", "wonder")),
        (_basic(b"alice:a:b"), ("alice", "a:b")),
        (_basic(b"alice:"), ("alice", "")),
        ("basic   " + base64.b64encode(b"u:p").decode(), ("u", "p")),
        (_basic(b":nouser"), None),
        (_basic(b"nocolon"), None),
        ("Bearer abc", None),
        ("Basic ", None),
        ("Basic !!!!", None),
        (None, None),
    ],
)
def test_basic_credentials(header: str | None, expected: tuple[str, str] | None) -> None:
    assert htpasswd.basic_credentials(header) == expected


def test_apr1_matches_known_values() -> None:
    # `openssl passwd -apr1 -salt abcdefgh builder` and Apache's documented example
    assert htpasswd.apr1(b"builder", b"abcdefgh") == "$apr1$abcdefgh$LIQepOrDnCPxfpon9ueYt0"
    assert htpasswd.verify("builder", "$apr1$abcdefgh$LIQepOrDnCPxfpon9ueYt0")
    assert not htpasswd.verify("Builder", "$apr1$abcdefgh$LIQepOrDnCPxfpon9ueYt0")


def test_schemes() -> None:
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw").digest()).decode()
    ssha = "{SSHA}" + base64.b64encode(hashlib.sha1(b"pwSALT").digest() + b"SALT").decode()
    y = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    des = crypt.crypt("pw", "ab")
    md5 = crypt.crypt("pw", "$1$saltsalt$")
    for stored in ("{PLAIN}pw", sha, ssha, y, y.replace("$2y$", "$2b$", 1), des, md5):
        assert htpasswd.verify("pw", stored), stored
        assert not htpasswd.verify("px", stored), stored


def test_bad_bcrypt_value_is_a_scheme_error() -> None:
    with pytest.raises(htpasswd.SchemeError):
        htpasswd.verify("pw", "$2y$05$short")


def test_file_format() -> None:
    data = b"# comment\n\r\nalice:{PLAIN}one:extra\nbob:{PLAIN}two\r\nalice:{PLAIN}later\nnocolon\n\n"
    assert htpasswd.parse(data) == {"alice": "{PLAIN}one", "bob": "{PLAIN}two"}


def test_user_files_reread_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("a:{PLAIN}1\n")
    files = htpasswd.UserFiles()
    assert files.users(str(path)) == {"a": "{PLAIN}1"}
    path.write_text("a:{PLAIN}22\nb:{PLAIN}3\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert files.users(str(path)) == {"a": "{PLAIN}22", "b": "{PLAIN}3"}
    path.unlink()
    with pytest.raises(FileNotFoundError):
        files.users(str(path))
