"""The cache key, its md5 and where its file lives (pure; ngx_http_file_cache_create_key/_name).

The file is named by the md5 of the key in hex; `levels=1:2` puts it in directories named by the last
character and the two before it: key md5 b7f54b2df7773722d382f4809d65029c -> c/29/b7f5...029c.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Mapping, Sequence

DIGESTS_MAX = 4096  # a process's memo of key -> md5: a cache is asked for the same keys again and again
_digests: dict[str, bytes] = {}


def digest(key: str) -> bytes:
    """The md5 of the key (memoised: an md5 costs ~1 µs in a busy worker, a dict lookup ~0.05)."""
    d = _digests.get(key)
    if d is None:
        if len(_digests) >= DIGESTS_MAX:
            _digests.clear()
        d = _digests[key] = hashlib.md5(key.encode("utf-8", "surrogateescape")).digest()
    return d


def crc32(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogateescape"))


def relative_path(hexname: str, levels: Sequence[int]) -> str:
    parts: list[str] = []
    end = len(hexname)
    for n in levels:
        parts.append(hexname[end - n : end])
        end -= n
    parts.append(hexname)
    return os.path.join(*parts)


def file_path(root: str, hexname: str, levels: Sequence[int]) -> str:
    return os.path.join(root, relative_path(hexname, levels))


def is_cache_name(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def variant(main: bytes, vary: str, headers: Mapping[str, str]) -> bytes:
    """The md5 of the request headers a `Vary` names (ngx_http_file_cache_vary): the key's digest,
    then each named header's name and value, lower-cased names, in the order Vary lists them."""
    md5 = hashlib.md5(main)
    for name in vary.split(","):
        lname = name.strip().lower()
        if not lname:
            continue
        md5.update(lname.encode("latin-1", "replace") + b":")
        md5.update(headers.get(lname, "").encode("latin-1", "replace") + b"\r\n")
    return md5.digest()


def variant_digest(main: bytes, variant_md5: bytes) -> bytes:
    """The key an entry for a non-primary variant is stored under (ngx_http_file_cache_reopen)."""
    return hashlib.md5(main + variant_md5).digest()
