"""What a static response needs to know about a file, and nginx's `open_file_cache` of it.

`probe()` opens a path under the location's symlink rules (paths.open_file), fstat()s it and, for a
small regular file, reads the whole body. The body and its length always come from the same read, and
the read is only trusted when an fstat() of the same descriptor afterwards shows the file unchanged
(same size, mtime, inode); a file that keeps changing under us is served from one consistent read but
not cached. So a response can be stale but never torn: its Content-Length always matches its body.

`OpenFileCache` keeps `FileInfo`s (stat results, validators, pre-built 200 headers per content type,
small bodies) and errors (with `open_file_cache_errors`), as nginx's open_file_cache:

* an entry is trusted without any syscall for `open_file_cache_valid` seconds, then re-checked with one
  open()+fstat(): unchanged (mtime, size, inode) keeps it, anything else drops and reloads it;
* bodies are kept only once a path has been asked for `open_file_cache_min_uses` times;
* entries unused for `inactive` seconds are dropped, and at most `max` are kept (least recently used
  go first).

No descriptor is kept open: a descriptor cached and closed at eviction while a sendfile() still uses it
could be reused by the kernel for another file and send that file's bytes. Large files are re-opened
per response (one open(), cheap next to the transfer) and streamed from that descriptor.

Why 64 KiB for in-memory bodies: up to there a file is cheaper to copy from memory in one write than to
open/fstat/sendfile/close per request (four syscalls and several Python calls), and such a write fits
the usual socket send buffer, so it leaves in one go. Beyond it the copy cost grows with the size while
sendfile stays zero-copy. Bodies are further bounded per cache (`BODY_BUDGET`, 64 MiB per worker) so a
`max=100000` cache of 64 KiB files cannot take gigabytes.
"""

from __future__ import annotations

import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from pyginx.handlers.conditional import http_date, make_etag
from pyginx.handlers.paths import PathError, Policy, open_file

SMALL_FILE_MAX = 64 * 1024
BODY_BUDGET = 64 * 1024 * 1024
_READ_ATTEMPTS = 3

Kind = Literal["file", "dir", "other"]


@dataclass(eq=False)
class FileInfo:
    """A file as a response sees it. `body` is the whole content for small files (else None)."""

    path: str
    kind: Kind
    size: int
    mtime: int
    ino: int
    dev: int
    body: bytes | None = None
    etag: str = ""
    last_modified: str = ""
    # pre-encoded entity header blocks of 200 responses, keyed by what else goes into them
    blocks: dict[tuple[str, bool, str, bool, bool], bytes] = field(default_factory=dict)

    def with_body(self, body: bytes) -> FileInfo:
        """A copy holding `body`, sharing the header blocks (cheaper than dataclasses.replace)."""
        return FileInfo(
            self.path,
            self.kind,
            self.size,
            self.mtime,
            self.ino,
            self.dev,
            body,
            self.etag,
            self.last_modified,
            self.blocks,
        )

    @property
    def identity(self) -> tuple[int, int, int, int]:
        """What must stay equal for cached knowledge of the file to remain true."""
        return (self.mtime, self.size, self.ino, self.dev)

    def header_block(
        self, content_type: str, etag: bool, encoding: str = "", vary: bool = False, ranges: bool = True
    ) -> bytes:
        """The encoded entity headers of a full 200 (Content-Length and the rest come from the core):
        Content-Type, Last-Modified, ETag (`etag on`), Content-Encoding, Vary, Accept-Ranges.
        Built once per combination and kept with the file, so a cached response formats nothing."""
        key = (content_type, etag, encoding, vary, ranges)
        block = self.blocks.get(key)
        if block is None:
            lines = [f"Content-Type: {content_type}\r\n", f"Last-Modified: {self.last_modified}\r\n"]
            if etag:
                lines.append(f"ETag: {self.etag}\r\n")
            if encoding:
                lines.append(f"Content-Encoding: {encoding}\r\n")
            if vary:
                lines.append("Vary: Accept-Encoding\r\n")
            if ranges:
                lines.append("Accept-Ranges: bytes\r\n")
            block = "".join(lines).encode("latin-1", "replace")
            if len(self.blocks) < 16:
                self.blocks[key] = block
        return block


@lru_cache(maxsize=4096)
def _last_modified(mtime: int) -> str:
    """Last-Modified text per mtime: most requests hit a handful of mtimes, gmtime() each time costs."""
    return http_date(mtime)


def info_from_stat(path: str, st: os.stat_result, body: bytes | None = None) -> FileInfo:
    if stat.S_ISREG(st.st_mode):
        kind: Kind = "file"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    else:
        kind = "other"
    mtime = int(st.st_mtime)
    return FileInfo(
        path=path,
        kind=kind,
        size=st.st_size,
        mtime=mtime,
        ino=st.st_ino,
        dev=st.st_dev,
        body=body,
        etag=make_etag(mtime, st.st_size),
        last_modified=_last_modified(mtime),
    )


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino, a.st_dev) == (b.st_size, b.st_mtime_ns, b.st_ino, b.st_dev)


def read_consistent(fd: int, st: os.stat_result) -> tuple[bytes, os.stat_result, bool]:
    """Read a whole (small) file from `fd`; (body, stat describing it, stable).

    `stable` is False when the file changed during every attempt: the body is still one read's
    bytes and the stat the latest, so length and body agree, but it must not be cached. Reading
    stops past SMALL_FILE_MAX even if the file keeps growing (a log being written, say).
    """
    body = b""
    for _ in range(_READ_ATTEMPTS):
        chunks: list[bytes] = []
        offset = 0
        while offset <= SMALL_FILE_MAX:
            # pread: independent of the descriptor's position, so a retry needs no lseek. Asking
            # for one byte more than expected makes a short read mean end of file: usually one call.
            want = max(st.st_size - offset, 0) + 1
            chunk = os.pread(fd, want, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            if len(chunk) < want and offset >= st.st_size:
                break  # short at the expected end: end of file (a short read before it is retried)
        body = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        after = os.fstat(fd)
        if _same(st, after) and len(body) == after.st_size:
            return body, after, True
        st = after
    return body, st, False


def probe(path: str, base: str, policy: Policy, test_only: bool = False) -> tuple[FileInfo, bool]:
    """Open and describe `path`; for a small regular file also read it (unless `test_only`).

    Returns (info, cacheable). Raises PathError with the status nginx would answer.
    """
    fd, st = open_file(path, base, policy, test_only=test_only)
    try:
        if test_only or not stat.S_ISREG(st.st_mode) or st.st_size > SMALL_FILE_MAX:
            return info_from_stat(path, st), True
        try:
            body, st, stable = read_consistent(fd, st)
        except OSError as e:
            raise PathError(500, path, e.errno or 0, "read()") from None
        if not stable or len(body) > SMALL_FILE_MAX:
            # Still one consistent read: serve it, but do not remember a moving target.
            info = info_from_stat(path, st, body)
            info.size = len(body)
            info.etag = make_etag(info.mtime, info.size)
            return info, False
        return info_from_stat(path, st, body), True
    finally:
        os.close(fd)


# What a file's stat says about it (validators, pre-built header blocks), by path and stat identity:
# with open_file_cache off the file is still opened and read per request, but what follows from an
# unchanged stat is not worked out again. Bounded; any change of the file changes the key.
_described: dict[tuple[str, int, int, int, int, int], FileInfo] = {}
_DESCRIBED_MAX = 4096


def _described_info(path: str, st: os.stat_result) -> FileInfo:
    key = (path, st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev, st.st_mode)
    info = _described.get(key)
    if info is None:
        if len(_described) >= _DESCRIBED_MAX:
            _described.clear()
        info = _described[key] = info_from_stat(path, st)
    return info


def probe_uncached(path: str, base: str, policy: Policy, test_only: bool = False) -> FileInfo:
    """probe() for a location without open_file_cache: the file is opened, fstat()ed and (small)
    read on every request, as nginx does, with one pread: a body read at the expected size is the
    body, whatever the file does next (its length is the body's). Only a file that changed size
    under the read takes probe()'s checked reads."""
    fd, st = open_file(path, base, policy, test_only=test_only)
    try:
        if test_only or not stat.S_ISREG(st.st_mode) or st.st_size > SMALL_FILE_MAX:
            return _described_info(path, st)
        try:
            body = os.pread(fd, st.st_size + 1, 0)
        except OSError as e:
            raise PathError(500, path, e.errno or 0, "read()") from None
    finally:
        os.close(fd)
    if len(body) != st.st_size:
        return probe(path, base, policy)[0]
    return _described_info(path, st).with_body(body)


@dataclass(eq=False)
class _Entry:
    info: FileInfo | None
    error: PathError | None
    validated: float
    used: float
    uses: int = 1


Key = tuple[str, str, Policy]


class OpenFileCache:
    """nginx's open_file_cache for one `max=N inactive=T` setting, per worker process."""

    def __init__(self, max_entries: int, inactive: float, body_budget: int = BODY_BUDGET) -> None:
        self.max = max_entries
        self.inactive = inactive
        self.body_budget = body_budget
        self.body_bytes = 0
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        # When the entry returned by the last get() must be checked again (monotonic seconds):
        # lets the static handler's answer cache expire no later than this cache would re-stat.
        self.last_valid_until = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self,
        path: str,
        base: str,
        policy: Policy,
        *,
        valid: float = 60.0,
        min_uses: int = 1,
        errors: bool = False,
        test_only: bool = False,
        now: float | None = None,
    ) -> FileInfo:
        """The FileInfo for `path` (body loaded for small files unless `test_only`), or PathError."""
        if now is None:
            now = time.monotonic()
        self._expire(now)
        key = (path, base, policy)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            entry.used = now
            entry.uses += 1
            if now - entry.validated < valid:
                if entry.error is not None:
                    raise entry.error
                info = entry.info
                assert info is not None
                if test_only or info.body is not None or info.kind != "file" or info.size > SMALL_FILE_MAX:
                    self.last_valid_until = entry.validated + valid
                    return info
                # Known from a test; the body is wanted now.
            return self._refresh(key, entry, base, policy, min_uses, errors, test_only, now, valid)
        return self._load(key, base, policy, min_uses, errors, test_only, now, uses=1, valid=valid)

    def _refresh(
        self,
        key: Key,
        entry: _Entry,
        base: str,
        policy: Policy,
        min_uses: int,
        errors: bool,
        test_only: bool,
        now: float,
        valid: float = 60.0,
    ) -> FileInfo:
        """Re-check a stale (or body-less) entry: keep it if the file is the same, else reload."""
        old = entry.info
        if old is not None and (test_only or old.body is not None):
            try:
                fd, st = open_file(key[0], base, policy, test_only=True)
                os.close(fd)
            except PathError:
                st = None
            if st is not None and info_from_stat(key[0], st).identity == old.identity:
                entry.validated = now
                self.last_valid_until = now + valid
                return old
        self._drop(key)
        return self._load(key, base, policy, min_uses, errors, test_only, now, uses=entry.uses, valid=valid)

    def _load(
        self,
        key: Key,
        base: str,
        policy: Policy,
        min_uses: int,
        errors: bool,
        test_only: bool,
        now: float,
        uses: int,
        valid: float = 60.0,
    ) -> FileInfo:
        path = key[0]
        self.last_valid_until = 0.0  # set again below only when the result is cached
        try:
            info, cacheable = probe(path, base, policy, test_only=test_only)
        except PathError as e:
            if errors and self.max > 0 and e.status != 500:
                self._store(key, _Entry(None, e, now, now, uses))
            raise
        if cacheable and self.max > 0:
            if info.body is not None and uses < min_uses:
                # Not yet popular enough to hold its bytes: remember the stat only.
                light = replace(info, body=None, blocks={})
                self._store(key, _Entry(light, None, now, now, uses))
            else:
                self._store(key, _Entry(info, None, now, now, uses))
                self.last_valid_until = now + valid
        return info

    def _store(self, key: Key, entry: _Entry) -> None:
        self._entries[key] = entry
        if entry.info is not None and entry.info.body is not None:
            self.body_bytes += len(entry.info.body)
        while len(self._entries) > self.max or self.body_bytes > self.body_budget:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry.info is not None and entry.info.body is not None:
            self.body_bytes -= len(entry.info.body)

    def _expire(self, now: float) -> None:
        """Drop entries not used for `inactive` seconds (oldest first, so this stops early)."""
        limit = now - self.inactive
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.used >= limit:
                break
            self._drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self.body_bytes = 0


_caches: dict[tuple[int, float], OpenFileCache] = {}


def cache_for(max_entries: int, inactive: float) -> OpenFileCache | None:
    """The worker's cache for an `open_file_cache max=N inactive=T` setting; None when it is off."""
    if max_entries <= 0:
        return None
    key = (max_entries, inactive)
    cache = _caches.get(key)
    if cache is None:
        cache = _caches[key] = OpenFileCache(max_entries, inactive)
    return cache
