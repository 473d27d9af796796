"""From a request URI to an open file, never outside the location's root or alias.

Two layers:

* pure mapping (`map_uri`, `try_files_path`): nginx's ngx_http_map_uri_to_path for `root`, `alias`
  in prefix locations (the location's prefix is cut from the URI) and `alias` in regex locations
  (the expanded alias *is* the path), plus the containment rules pyginx adds on top of nginx: a path
  component `..` (the "alias without trailing slash" trap: `location /img { alias /srv/img/; }` and
  `/img../secret`) is refused with 403, and a mapped path that is not the alias/root itself or below it
  (`location /img { alias /srv/img; }` and `/imgx` -> `/srv/imgx`) is answered 404. nginx would open
  both; pyginx never does.
* opening (`open_file`, `stat_file`): the syscalls nginx's ngx_open_file_wrapper makes for
  `disable_symlinks off | on | if_not_owner` (so the errno, hence the status, is nginx's), then the
  pyginx extension `symlinks_outside_root off` (the default): a file or directory whose real path,
  read back from the opened descriptor, lies outside the real path of the root or alias is refused
  with 403 (ELOOP's status), whatever symlinks led there.

OS errors map to statuses as nginx's static module maps them: ENOENT, ENOTDIR, ENAMETOOLONG -> 404;
EACCES, ELOOP, EMLINK -> 403; anything else -> 500.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import Literal

SymlinkMode = Literal["off", "on", "if_not_owner"]

_NOT_FOUND = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG})
_FORBIDDEN = frozenset({errno.EACCES, errno.ELOOP, errno.EMLINK})

_O_PATH = getattr(os, "O_PATH", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# NGX_FILE_SEARCH on Linux: a directory handle good only for *at() lookups, needing just search rights.
_SEARCH = (_O_PATH or os.O_RDONLY) | os.O_DIRECTORY | _O_CLOEXEC
# Non-blocking so that opening a FIFO never hangs the worker (nginx does the same).
_READ = os.O_RDONLY | os.O_NONBLOCK | _O_CLOEXEC
_PROC_FD = "/proc/self/fd/"
_HAVE_PROC = os.path.isdir(_PROC_FD)


class PathError(Exception):
    """A request path that cannot be served: `status` is the answer, the rest is for the error log."""

    def __init__(
        self, status: int, path: str, err: int = 0, failed: str = "open()", reason: str = ""
    ) -> None:
        self.status = status
        self.path = path
        self.errno = err
        self.failed = failed
        self.reason = reason
        super().__init__(self.log_message())

    def log_message(self) -> str:
        """nginx's wording: `open() "/srv/x" failed (2: No such file or directory)`."""
        if self.reason:
            return f'"{self.path}" {self.reason}'
        if self.errno:
            return f'{self.failed} "{self.path}" failed ({self.errno}: {os.strerror(self.errno)})'
        return f'{self.failed} "{self.path}" failed'


def status_for_errno(err: int) -> int:
    """ngx_http_static_handler's mapping of open() errors to a response status."""
    if err in _NOT_FOUND:
        return 404
    if err in _FORBIDDEN:
        return 403
    return 500


# ---------------------------------------------------------------------------------------------------
# pure mapping


@dataclass(init=False)  # __init__ written out: compiled, it is native (a dataclass's generated one is not)
class Mapped:
    """A file-system path for a URI and the directory it must stay in (`base`, no trailing slash).
    Treated as immutable (not frozen: a frozen dataclass's attribute writes cost a call each)."""

    path: str
    base: str

    def __init__(self, path: str, base: str) -> None:
        self.path = path
        self.base = base


def _base_of(directory: str) -> str:
    stripped = directory.rstrip("/")
    return stripped or "/"


def alias_base(alias_template: str) -> str:
    """The fixed directory a regex-location alias can never leave: its text before the first `$`,
    cut back to a directory boundary (`/srv/d/$1` -> `/srv/d`, `/srv/x$1` -> `/srv`)."""
    literal = alias_template.split("$", 1)[0]
    if literal.endswith("/"):
        return _base_of(literal)
    return _base_of(literal.rsplit("/", 1)[0] or "/")


def check_contained(path: str, base: str) -> None:
    """Refuse NUL bytes (400), `..` components below `base` (403) and paths beside `base` (404)."""
    if "\0" in path:
        raise PathError(400, path.replace("\0", "\\0"), reason="contains a NUL byte")
    if base == "/":
        rest = path
    elif path == base or path.startswith(base + "/"):
        rest = path[len(base) :]
    else:
        raise PathError(404, path, reason=f'is outside of "{base}"')
    if "/.." in rest and ".." in rest.split("/"):
        raise PathError(403, path, reason='contains a ".." component')


def map_uri(
    uri: str,
    root: str,
    alias: str | None = None,
    location_prefix: str | None = None,
    regex_alias_base: str | None = None,
) -> Mapped:
    """ngx_http_map_uri_to_path, then the containment check.

    * root: `root + uri` (a trailing slash of root was dropped by nginx at load time).
    * alias in a prefix or exact location: `alias + uri[len(location_prefix):]`.
    * alias in a regex location (`regex_alias_base` given, see `alias_base`): `alias` is already
      expanded with the captures and is the whole path.
    """
    if alias is None:
        base = _base_of(root)
        mapped = Mapped(base + uri if base != "/" else uri, base)
    elif regex_alias_base is not None:
        mapped = Mapped(alias, regex_alias_base)
    else:
        cut = len(location_prefix or "")
        mapped = Mapped(alias + uri[cut:], _base_of(alias))
    check_contained(mapped.path, mapped.base)
    return mapped


def try_files_path(
    name: str,
    uri: str,
    root: str,
    alias: str | None = None,
    location_prefix: str | None = None,
    regex_alias_base: str | None = None,
) -> Mapped:
    """The file a `try_files` candidate names (ngx_http_try_files_handler's path building).

    With root: `root + name`. With a prefix alias: `alias + name`, minus the location prefix when the
    name starts with the URI's own prefix. With a regex alias: `expanded_alias + name`.
    """
    if alias is None:
        return map_uri(name, root)
    if regex_alias_base is not None:
        mapped = Mapped(alias + name, regex_alias_base)
    else:
        cut = len(location_prefix or "")
        if cut and name.startswith(uri[:cut]):
            name = name[cut:]
        mapped = Mapped(alias + name, _base_of(alias))
    check_contained(mapped.path, mapped.base)
    return mapped


_URI_ESCAPE = (0xFFFFFFFF, 0xD000002D, 0x50000000, 0xB8000001, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)


def escape_uri(uri: str) -> str:
    """ngx_escape_uri(NGX_ESCAPE_URI): %XX for controls, space, `"#%<>?\\^`{|}`, DEL and non-ASCII.

    Used for the Location of a directory redirect, which nginx builds from the decoded URI.
    """
    raw = uri.encode("utf-8", "surrogateescape")
    if not any(_URI_ESCAPE[b >> 5] & (1 << (b & 0x1F)) for b in raw):
        return uri
    out = []
    for b in raw:
        if _URI_ESCAPE[b >> 5] & (1 << (b & 0x1F)):
            out.append(f"%{b:02X}")
        else:
            out.append(chr(b))
    return "".join(out)


# ---------------------------------------------------------------------------------------------------
# opening, with nginx's symlink policies and pyginx's "never outside the root"


def symlinks_from(path: str, from_prefix: str | None) -> int:
    """ngx_http_set_disable_symlinks' `from=`: how many leading bytes of `path` are not checked.

    Returns -1 when the checks are off for this path (it *is* the `from` directory), 0 when every
    component is checked.
    """
    if not from_prefix or len(from_prefix) > len(path) or not path.startswith(from_prefix):
        return 0
    if len(from_prefix) == len(path):
        return -1
    if path[len(from_prefix)] == "/":
        return len(from_prefix)
    if path[len(from_prefix) - 1] == "/":
        return len(from_prefix) - 1
    return 0


def _openat_owner(at_fd: int | None, name: str, flags: int) -> int:
    """ngx_openat_file_owner: open following symlinks, but only if link and target share an owner."""
    fd = os.open(name, flags, dir_fd=at_fd)
    try:
        link_st = os.stat(name, dir_fd=at_fd, follow_symlinks=False)
        target_st = os.fstat(fd)
    except OSError:
        os.close(fd)
        raise
    if link_st.st_uid != target_st.st_uid:
        os.close(fd)
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), name)
    return fd


def _open_nofollow(path: str, flags: int, mode: SymlinkMode, from_len: int) -> int:
    """ngx_open_file_wrapper with disable_symlinks on/if_not_owner: one openat() per component."""
    if from_len > 0:
        at_fd: int | None = os.open(path[:from_len] or "/", _SEARCH)
        p = from_len + 1
    elif path.startswith("/"):
        at_fd = os.open("/", _SEARCH)
        p = 1
    else:
        at_fd = None
        p = 0
    end = len(path)
    try:
        while True:
            cp = path.find("/", p)
            if cp < 0:
                break
            if cp == p:
                p += 1
                continue
            name = path[p:cp]
            if mode == "if_not_owner":
                fd = _openat_owner(at_fd, name, _SEARCH)
            else:
                fd = os.open(name, _SEARCH | os.O_NOFOLLOW, dir_fd=at_fd)
            if at_fd is not None:
                os.close(at_fd)
            at_fd = fd
            p = cp + 1
        if p == end:
            # A trailing slash: the last component was a directory; reopen it with the caller's flags.
            return os.open(".", flags, dir_fd=at_fd)
        if mode == "if_not_owner":
            return _openat_owner(at_fd, path[p:], flags)
        return os.open(path[p:], flags | os.O_NOFOLLOW, dir_fd=at_fd)
    finally:
        if at_fd is not None:
            os.close(at_fd)


class _RealBase:
    """realpath() of roots and aliases, re-resolved at most once a second.

    A root that is itself a symlink (`current -> releases/42`, switched at deploy) must follow the
    switch quickly, but resolving it on every request would cost a syscall per path component.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, str]] = {}

    def get(self, base: str) -> str:
        now = time.monotonic()
        hit = self._cache.get(base)
        if hit is not None and now - hit[0] < 1.0:
            return hit[1]
        real = os.path.realpath(base)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[base] = (now, real)
        return real


_real_bases = _RealBase()


# (st_dev, st_ino, real base) of files whose real path was found inside that base (bounded, per worker)
_inside: set[tuple[int, int, str]] = set()
_INSIDE_MAX = 16384


def _real_path_of_fd(fd: int, path: str) -> str:
    if _HAVE_PROC:
        try:
            return os.readlink(f"{_PROC_FD}{fd}")
        except OSError:
            pass
    return os.path.realpath(path)


def is_inside(real: str, real_base: str) -> bool:
    """Is the resolved path `real` the directory `real_base` or below it?"""
    if real_base == "/":
        return True
    return real == real_base or real.startswith(real_base + "/")


@dataclass(frozen=True)
class Policy:
    """The symlink rules in effect for a location."""

    disable_symlinks: SymlinkMode = "off"
    disable_symlinks_from: str | None = None  # already expanded ($document_root -> the root)
    symlinks_outside_root: bool = False


def _open(path: str, flags: int, policy: Policy) -> int:
    mode = policy.disable_symlinks
    from_len = 0
    if mode != "off":
        from_len = symlinks_from(path, policy.disable_symlinks_from)
        if from_len < 0:
            mode = "off"
    if mode == "off":
        return os.open(path, flags)
    return _open_nofollow(path, flags, mode, from_len)


def open_file(path: str, base: str, policy: Policy, test_only: bool = False) -> tuple[int, os.stat_result]:
    """Open `path` (read-only, non-blocking; O_PATH when `test_only`) and fstat it.

    Returns (fd, stat); the caller owns the fd. Raises PathError with nginx's status for OS errors,
    and 403 for a path that resolves outside `base` while `symlinks_outside_root` is off.
    """
    # A test with symlinks allowed is nginx's stat(): O_PATH needs no read permission. With
    # disable_symlinks nginx opens the file for reading, and O_PATH|O_NOFOLLOW would open a final
    # symlink itself instead of failing with ELOOP, so read flags are kept then.
    if test_only and _O_PATH and policy.disable_symlinks == "off":
        flags = _SEARCH & ~os.O_DIRECTORY
    else:
        flags = _READ
    try:
        fd = _open(path, flags, policy)
    except OSError as e:
        err = e.errno or 0
        raise PathError(status_for_errno(err), path, err, "open()") from None
    except ValueError:  # an embedded NUL: the core should have answered 400 already
        raise PathError(400, path.replace("\0", "\\0"), reason="contains a NUL byte") from None
    try:
        st = os.fstat(fd)
        if not policy.symlinks_outside_root:
            # The descriptor's real path is asked once per file: an inode already found inside this
            # base is that same file again (a symlink swapped in would bring another inode).
            real_base = _real_bases.get(base)
            known = (st.st_dev, st.st_ino, real_base)
            if known not in _inside:
                real = _real_path_of_fd(fd, path)
                if not is_inside(real, real_base):
                    raise PathError(
                        403, path, errno.ELOOP, reason=f'resolves to "{real}", outside of "{real_base}"'
                    )
                if len(_inside) >= _INSIDE_MAX:
                    _inside.clear()
                _inside.add(known)
    except OSError as e:
        os.close(fd)
        err = e.errno or 0
        raise PathError(status_for_errno(err), path, err, "fstat()") from None
    except PathError:
        os.close(fd)
        raise
    return fd, st


def stat_file(path: str, base: str, policy: Policy) -> os.stat_result:
    """Existence test (index, try_files): like open_file but only the stat result is kept."""
    fd, st = open_file(path, base, policy, test_only=True)
    os.close(fd)
    return st
