"""htpasswd files as nginx reads them (ngx_http_auth_basic_module, ngx_crypt): the credentials of
an `Authorization: Basic` header, the password schemes, and a per-worker cache of parsed files.

Schemes, by the stored value's prefix: `$apr1$` (Apache's MD5, implemented here from the
algorithm), `{PLAIN}`, `{SHA}` (base64 of SHA-1), `{SSHA}` (salted SHA-1), bcrypt `$2y$`/`$2b$`/`$2a$`
(the `bcrypt` package), and anything else through the system's crypt(3) (DES, `$1$`, `$5$`, `$6$`;
Python's `crypt` module, deprecated but present in 3.11). A scheme that cannot be checked here is a
500, as nginx's failing ngx_crypt is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import warnings
from dataclasses import dataclass


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """ngx_http_auth_basic_user: (user, password) from `Basic <base64 user:password>`, else None."""
    if authorization is None or len(authorization) < 6 or authorization[:6].lower() != "basic ":
        return None
    encoded = authorization[6:].lstrip(" ")
    if not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=False)
    except (binascii.Error, ValueError):
        return None
    text = decoded.decode("latin-1")
    user, sep, password = text.partition(":")
    if not sep or not user:
        return None
    return user, password


# ---------------------------------------------------------------------------------------------------
# schemes

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _to64(value: int, n: int) -> str:
    out = []
    for _ in range(n):
        out.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(out)


def apr1(password: bytes, salt: bytes, magic: bytes = b"$apr1$") -> str:
    """Apache's MD5 crypt (the FreeBSD md5crypt with the `$apr1$` magic)."""
    salt = salt[:8]
    ctx = hashlib.md5(password + magic + salt)
    final = hashlib.md5(password + salt + password).digest()
    n = len(password)
    while n > 0:
        ctx.update(final[: min(16, n)])
        n -= 16
    n = len(password)
    while n:
        ctx.update(b"\0" if n & 1 else password[:1])
        n >>= 1
    final = ctx.digest()
    for i in range(1000):
        c = hashlib.md5(password if i & 1 else final)
        if i % 3:
            c.update(salt)
        if i % 7:
            c.update(password)
        c.update(final if i & 1 else password)
        final = c.digest()
    f = final
    out = "".join(
        _to64((f[a] << 16) | (f[b] << 8) | f[c], 4)
        for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))
    )
    out += _to64(f[11], 2)
    return f"{magic.decode()}{salt.decode('latin-1')}${out}"


class SchemeError(Exception):
    """The stored value's scheme cannot be checked (nginx: ngx_crypt failed, a 500)."""


def verify(password: str, stored: str) -> bool:
    """Whether `password` matches the stored htpasswd value (ngx_crypt, then a comparison)."""
    pw = password.encode("latin-1", "replace")
    if stored.startswith("$apr1$"):
        salt = stored[6:].split("$", 1)[0]
        computed = apr1(pw, salt.encode("latin-1"))
    elif stored.startswith("{PLAIN}"):
        computed = "{PLAIN}" + password
    elif stored.startswith("{SSHA}"):
        try:
            raw = base64.b64decode(stored[6:])
        except (binascii.Error, ValueError) as exc:
            raise SchemeError("invalid {SSHA} value") from exc
        salt_b = raw[20:]
        computed = "{SSHA}" + base64.b64encode(hashlib.sha1(pw + salt_b).digest() + salt_b).decode()
    elif stored.startswith("{SHA}"):
        computed = "{SHA}" + base64.b64encode(hashlib.sha1(pw).digest()).decode()
    elif stored.startswith(("$2y$", "$2b$", "$2a$")):
        try:
            import bcrypt
        except ImportError as exc:
            raise SchemeError("bcrypt is not installed") from exc
        try:
            return bool(bcrypt.checkpw(pw, stored.encode("latin-1")))
        except ValueError as exc:
            raise SchemeError(f"invalid bcrypt value: {exc}") from exc
    else:
        computed = _system_crypt(password, stored)
    return hmac.compare_digest(computed.encode("latin-1", "replace"), stored.encode("latin-1", "replace"))


def _system_crypt(password: str, stored: str) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError as exc:
        raise SchemeError("crypt(3) is not available") from exc
    result = crypt.crypt(password, stored)
    if result is None:
        raise SchemeError("crypt(3) rejected the salt")
    return result


# ---------------------------------------------------------------------------------------------------
# files


def parse(data: bytes) -> dict[str, str]:
    """user -> stored password, the first line of each user winning, as nginx's scan does: lines
    starting with `#` or CR are skipped, a password ends at CR, LF or `:`."""
    users: dict[str, str] = {}
    for raw in data.split(b"\n"):
        if not raw or raw[:1] in (b"#", b"\r"):
            continue
        user, sep, rest = raw.partition(b":")
        if not sep:
            continue
        stored = rest.split(b":", 1)[0].split(b"\r", 1)[0]
        name = user.decode("latin-1")
        if name not in users:
            users[name] = stored.decode("latin-1")
    return users


@dataclass
class _Cached:
    key: tuple[int, int, int]
    users: dict[str, str]


class UserFiles:
    """Parsed user files by path, re-read when their mtime, size or inode change (nginx reads the
    file on every request; a stat per request keeps that behaviour at a fraction of the cost)."""

    def __init__(self) -> None:
        self._files: dict[str, _Cached] = {}

    def users(self, path: str) -> dict[str, str]:
        """The users of `path`; raises OSError as opening it would."""
        st = os.stat(path)
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._files.get(path)
        if cached is not None and cached.key == key:
            return cached.users
        with open(path, "rb") as f:
            users = parse(f.read())
        if len(self._files) > 64:
            self._files.clear()
        self._files[path] = _Cached(key, users)
        return users


USER_FILES = UserFiles()
