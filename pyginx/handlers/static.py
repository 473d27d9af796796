"""The static content handler: nginx's try_files, index, autoindex, gzip_static and static modules.

`handle(req)` runs what nginx runs for a location without `return` or `proxy_pass`:

1. try_files (its own phase in nginx, before any content handler): the first candidate that exists
   (a file, or a directory for `name/`) becomes the URI, still in this location; else the last item
   is an internal redirect, a named location or `=code`.
2. a URI ending in `/`: index (the first existing name is an internal redirect), then autoindex,
   else 403.
3. any other URI: gzip_static (`file.gz` for clients accepting gzip), then the file itself: 301 for
   a directory, 404 for anything not regular, 405 for POST; conditionals, ranges, then the body.

Decisions come from the pure modules (paths, conditional, ranges, mime, autoindex); this module does
the file-system calls and talks to the Request. Small files are answered from memory in one write
(filecache); large ones are streamed from a fresh descriptor with sendfile (or pread + write).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from pyginx.config.model import HttpSettings
from pyginx.handlers import autoindex, conditional, mime, ranges
from pyginx.handlers.filecache import FileInfo, cache_for, info_from_stat, probe_uncached
from pyginx.handlers.paths import (
    Mapped,
    PathError,
    Policy,
    alias_base,
    check_contained,
    escape_uri,
    map_uri,
    open_file,
    try_files_path,
)
from pyginx.http.status import error_page_body
from pyginx.http.variables import Getter, compile_template

if TYPE_CHECKING:
    from pyginx.http.request import Request

_METHODS = ("GET", "HEAD", "POST")
_READ_CHUNK = 256 * 1024  # pread size when sendfile is off
_templates: dict[str, Getter] = {}


def _expand(template: str, req: Request) -> str:
    """A configuration string with nginx variables ($uri, $1, ...) rendered for this request."""
    if "$" not in template:
        return template
    get = _templates.get(template)
    if get is None:
        get = _templates[template] = compile_template(template)
    return get(req)


class _Ctx:
    """What one pass of the handler knows: the request, its settings and the URI being served."""

    __slots__ = ("req", "s", "uri", "add_uri_to_alias", "policy", "answer_key")

    def __init__(self, req: Request) -> None:
        s = req.settings
        self.req = req
        self.s = s
        self.uri = req.uri
        self.add_uri_to_alias = False  # try_files in a regex alias location: alias + URI
        self.answer_key: tuple[int, str] | None = None  # set when the answer may be remembered
        from_ = s.disable_symlinks_from
        if from_ is not None and s.disable_symlinks != "off":
            from_ = _expand(from_, req)
        self.policy = Policy(s.disable_symlinks, from_, s.symlinks_outside_root)

    # -------------------------------------------------------------- mapping

    def regex_alias(self) -> tuple[str, str] | None:
        """(expanded alias, its fixed base) when the alias belongs to a regex location."""
        alias = self.s.alias
        loc = self.req.location
        if alias is None or loc is None or loc.regex is None:
            return None
        return _expand(alias, self.req), alias_base(alias)

    def map(self, uri: str) -> Mapped:
        """ngx_http_map_uri_to_path for this location (PathError when the path is refused)."""
        s = self.s
        if s.alias is None:
            return map_uri(uri, _expand(s.root, self.req))
        regex = self.regex_alias()
        if regex is not None:
            alias, base = regex
            return map_uri(
                uri, s.root, alias + uri if self.add_uri_to_alias else alias, regex_alias_base=base
            )
        loc = self.req.location
        prefix = loc.match if loc is not None else ""
        return map_uri(uri, s.root, _expand(s.alias, self.req), location_prefix=prefix)

    def map_candidate(self, name: str) -> Mapped:
        """The path of a try_files candidate."""
        s = self.s
        regex = self.regex_alias()
        if regex is not None:
            return try_files_path(name, self.uri, s.root, regex[0], regex_alias_base=regex[1])
        if s.alias is None:
            return try_files_path(name, self.uri, _expand(s.root, self.req))
        loc = self.req.location
        prefix = loc.match if loc is not None else None
        return try_files_path(name, self.uri, s.root, _expand(s.alias, self.req), location_prefix=prefix)

    # -------------------------------------------------------------- file lookups

    def lookup(self, mapped: Mapped, test_only: bool = False) -> FileInfo:
        """FileInfo for a path, through open_file_cache when it is on (PathError on failure)."""
        s = self.s
        cache = cache_for(s.open_file_cache.max, s.open_file_cache.inactive)
        if cache is None:
            return probe_uncached(mapped.path, mapped.base, self.policy, test_only=test_only)
        return cache.get(
            mapped.path,
            mapped.base,
            self.policy,
            valid=s.open_file_cache_valid,
            min_uses=s.open_file_cache_min_uses,
            errors=s.open_file_cache_errors,
            test_only=test_only,
        )

    def fail(self, e: PathError, level: str | None = None) -> None:
        """Answer with the status of a refused path, logging as nginx does for that status."""
        if e.status != 404 or self.s.log_not_found:
            self.req.log_error(level or ("crit" if e.status == 500 else "error"), e.log_message())
        self.req.send_error(e.status)


# ------------------------------------------------------------------ the answer cache
#
# A full 200 for a small cached file depends only on the location's settings and the URI when the
# request is a plain GET/HEAD (no conditional or Range header, no error page being served, no
# internal redirect) and the location's paths hold no variable other than $uri. Such answers are
# kept here, keyed by (settings, URI), until the open_file_cache entry they came from is due to be
# checked again, so a repeated request skips path mapping and cache lookups and costs one write.
# This is the open_file_cache itself, consulted one step earlier: nothing a request needs is skipped.

_CONDITIONAL_HEADERS = ("range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since")
_ANSWERS_MAX = 4096


class _Answer:
    __slots__ = ("block", "body", "until")

    def __init__(self, block: bytes, body: bytes, until: float) -> None:
        self.block = block
        self.body = body
        self.until = until


_answers: dict[tuple[int, str], _Answer] = {}
_answerable: dict[int, tuple[HttpSettings, bool]] = {}


def _settings_answerable(s: HttpSettings) -> bool:
    """True when nothing but the URI feeds this location's file choice (see above)."""
    found = _answerable.get(id(s))
    if found is not None and found[0] is s:
        return found[1]
    texts = [s.root, s.alias or "", s.disable_symlinks_from or ""]
    if s.try_files is not None:
        texts.extend(s.try_files.files)
        texts.append(s.try_files.fallback)
    ok = s.gzip_static == "off" and all("$" not in t.replace("$uri", "") for t in texts)
    if len(_answerable) > 1024:
        _answerable.clear()
        _answers.clear()  # their keys hold ids of settings no longer kept alive here
        _uncached.clear()
    _answerable[id(s)] = (s, ok)  # the settings object is kept, so its id cannot be reused
    return ok


def _plain(req: Request) -> bool:
    if req.method != "GET" and req.method != "HEAD":
        return False
    if req.error_status or req.redirects or req.internal:
        return False
    h = req.headers
    for name in _CONDITIONAL_HEADERS:
        if name in h:
            return False
    return True


def _remember(ctx: _Ctx, block: bytes, body: bytes) -> None:
    req = ctx.req
    if ctx.answer_key is None or req.settings is not ctx.s or not _plain(req):
        return
    cache = cache_for(ctx.s.open_file_cache.max, ctx.s.open_file_cache.inactive)
    if cache is None or cache.last_valid_until <= 0.0:
        return
    if len(_answers) >= _ANSWERS_MAX:
        _answers.clear()
    _answers[ctx.answer_key] = _Answer(block, body, cache.last_valid_until)


# ------------------------------------------------------------------ the uncached answer
#
# With open_file_cache off, nginx opens, fstat()s and reads the file on every request, and so does
# pyginx; but for the same answerable (settings, URI) the path, the content type and the entity
# headers come out the same as long as the fstat says the same file (mtime, size, inode, device):
# they are remembered with that identity, and a repeated plain request costs open + fstat + pread +
# close and one write. Any difference (or any error) takes the full path, which logs and answers.


class _Uncached:
    __slots__ = ("block", "identity", "path")

    def __init__(self, path: str, identity: tuple[int, int, int, int], block: bytes) -> None:
        self.path = path
        self.identity = identity
        self.block = block


_uncached: dict[tuple[int, str], _Uncached] = {}
_O_READ = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _remember_uncached(ctx: _Ctx, mapped: Mapped, info: FileInfo, block: bytes) -> None:
    s = ctx.s
    req = ctx.req
    if (
        s.open_file_cache.max > 0
        or s.disable_symlinks != "off"
        or s.try_files is not None
        or ctx.uri != req.uri
        or req.settings is not s
        or not _plain(req)
        or not _settings_answerable(s)
    ):
        return
    if len(_uncached) >= _ANSWERS_MAX:
        _uncached.clear()
    _uncached[(id(s), req.uri)] = _Uncached(mapped.path, (info.mtime, info.size, info.ino, info.dev), block)


def _answer_uncached(req: Request, memo: _Uncached) -> bool:
    """The remembered answer with this request's own read of the file; False: take the full path."""
    try:
        fd = os.open(memo.path, _O_READ)
    except (OSError, ValueError):
        return False
    try:
        st = os.fstat(fd)
        size = st.st_size
        if (int(st.st_mtime), size, st.st_ino, st.st_dev) != memo.identity or not stat.S_ISREG(st.st_mode):
            return False
        body = os.pread(fd, size + 1, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    if len(body) != size:
        return False
    req.respond_prebuilt(200, memo.block, body, size)
    return True


def handle(req: Request) -> Awaitable[None] | None:
    """The content handler for a static location (see the module docstring for the order)."""
    s = req.settings
    lookup = (id(s), req.uri)
    # An answer is only ever stored for answerable settings (kept alive in _answerable, so the id
    # names the same settings): look it up first, the common case of a repeated request.
    answer = _answers.get(lookup)
    if answer is not None and _plain(req):
        if answer.until > time.monotonic():
            req.respond_prebuilt(200, answer.block, answer.body, len(answer.body))
            return None
        del _answers[lookup]
    memo = _uncached.get(lookup)
    if memo is not None and _plain(req):
        if _answer_uncached(req, memo):
            return None
        del _uncached[lookup]
    answerable = s.open_file_cache.max > 0 and _plain(req) and _settings_answerable(s)
    ctx = _Ctx(req)
    ctx.answer_key = lookup if answerable else None
    if ctx.s.try_files is not None and not _try_files(ctx):
        return None
    if ctx.uri.endswith("/"):
        _directory(ctx)
        return None
    return _file(ctx)


# ------------------------------------------------------------------ try_files


def try_files_phase(req: Request) -> bool:
    """try_files for a location another handler serves (proxy_pass): True = go on with req.uri."""
    return _try_files(_Ctx(req))


def _try_files(ctx: _Ctx) -> bool:
    """nginx's try_files phase. True: go on with ctx.uri; False: the request is answered/redirected."""
    req = ctx.req
    tf = ctx.s.try_files
    assert tf is not None
    for item in tf.files:
        test_dir = item.endswith("/")
        name = _expand(item[:-1] if test_dir else item, req)
        try:
            mapped = ctx.map_candidate(name)
            info = ctx.lookup(mapped, test_only=True)
        except PathError as e:
            if e.errno not in (0, errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
                req.log_error("crit", e.log_message())
            continue
        if (info.kind == "dir") != test_dir:
            continue
        regex = ctx.regex_alias()
        if regex is None:
            if ctx.s.alias is not None and req.location is not None:
                prefix = req.location.match
                if name.startswith(ctx.uri[: len(prefix)]):
                    name = name[len(prefix) :]
                ctx.uri = ctx.uri[: len(prefix)] + name
            else:
                ctx.uri = name
        elif not test_dir:
            ctx.uri = name
            ctx.add_uri_to_alias = True
        req.uri = ctx.uri
        return True

    if tf.fallback_code is not None:
        req.send_error(tf.fallback_code)
        return False
    target = _expand(tf.fallback, req)
    if target.startswith("@"):
        req.conn.ctx.dispatch_named(req, target[1:])
        return False
    # ngx_http_split_args: without "?" the arguments are dropped, as nginx does.
    uri, _, args = target.partition("?")
    req.internal_redirect(uri, args)
    return False


# ------------------------------------------------------------------ directories


def _directory(ctx: _Ctx) -> None:
    """A URI ending in "/": index names, then autoindex, else 403 (nginx's module order)."""
    req = ctx.req
    if req.method not in _METHODS:
        req.send_error(405)
        return
    try:
        mapped = ctx.map(ctx.uri)
    except PathError as e:
        ctx.fail(e)
        return
    dir_tested = False
    for index in ctx.s.index:
        name = _expand(index, req)
        if name.startswith("/"):
            req.internal_redirect(name)
            return
        try:
            # an index name may come from a variable ($arg_x): it gets the containment check too
            check_contained(mapped.path + name, mapped.base)
            ctx.lookup(Mapped(mapped.path + name, mapped.base), test_only=True)
        except PathError as e:
            err = e.errno
            if err in (errno.ELOOP, errno.EMLINK) or (not err and e.status != 500):
                ctx.fail(e)
                return
            if err in (errno.ENOTDIR, errno.ENAMETOOLONG, errno.EACCES):
                _index_error(ctx, e)
                return
            if not dir_tested:
                if not _index_test_dir(ctx, mapped):
                    return
                dir_tested = True
            if err == errno.ENOENT:
                continue
            ctx.fail(e, "crit")
            return
        req.internal_redirect(ctx.uri + name)
        return

    if ctx.s.autoindex and req.method != "POST":
        _autoindex(ctx, mapped)
        return
    req.log_error("error", f'directory index of "{mapped.path}" is forbidden')
    req.send_error(403)


def _index_error(ctx: _Ctx, e: PathError) -> None:
    """ngx_http_index_error: EACCES -> 403 "is forbidden", else 404 "is not found"."""
    req = ctx.req
    if e.errno == errno.EACCES:
        req.log_error("error", f'"{e.path}" is forbidden ({e.errno}: {os.strerror(e.errno)})')
        req.send_error(403)
        return
    if ctx.s.log_not_found:
        req.log_error("error", f'"{e.path}" is not found ({e.errno}: {os.strerror(e.errno)})')
    req.send_error(404)


def _index_test_dir(ctx: _Ctx, mapped: Mapped) -> bool:
    """After an index name is missing, make sure the directory itself exists (else 404)."""
    path = mapped.path.rstrip("/") or "/"
    try:
        info = ctx.lookup(Mapped(path, mapped.base), test_only=True)
    except PathError as e:
        if e.errno == errno.EACCES:
            return True  # searching the directory was allowed, nginx goes on
        if e.errno == errno.ENOENT:
            _index_error(ctx, e)
        else:
            ctx.fail(e, "crit")
        return False
    if info.kind != "dir":
        ctx.req.log_error("alert", f'"{path}" is not a directory')
        ctx.req.send_error(500)
        return False
    return True


def _autoindex(ctx: _Ctx, mapped: Mapped) -> None:
    req = ctx.req
    s = ctx.s
    if s.autoindex_format == "jsonp":
        try:
            autoindex.jsonp_callback(req.args)
        except ValueError as e:
            req.log_error("info", str(e))
            req.send_error(400)
            return
    path = mapped.path[:-1] if len(mapped.path) > 1 else mapped.path
    try:
        fd, st = open_file(path, mapped.base, ctx.policy)
    except PathError as e:
        e.failed = "opendir()"
        ctx.fail(e)
        return
    try:
        if not stat.S_ISDIR(st.st_mode):
            ctx.fail(PathError(404, path, errno.ENOTDIR, "opendir()"))
            return
        try:
            entries = autoindex.scan(fd)
        except OSError as e:
            req.log_error("crit", f'readdir() "{path}" failed ({e.errno}: {e.strerror})')
            req.send_error(500)
            return
    finally:
        os.close(fd)
    content_type, body = autoindex.render(
        s.autoindex_format, ctx.uri, entries, req.args, s.autoindex_exact_size, s.autoindex_localtime
    )
    req.respond(200, [("Content-Type", content_type)], body)


# ------------------------------------------------------------------ files


def gzip_accepted(accept_encoding: str) -> bool:
    """ngx_http_gzip_accept_encoding: is "gzip" listed without q=0?

    A token "gzip" (any case) at the start or after "," or " ", followed by the end, a comma, or
    ";q=" with a non-zero value. nginx's quirk is kept: "q=0.5" counts its digits as 0+5, so any
    non-zero digit accepts and only q=0, q=0.0 ... refuse.
    """
    value = accept_encoding
    if len(value) < 4:
        return False
    if value.startswith("gzip,"):
        return True
    lower = value.lower()
    start = 0
    while True:
        p = lower.find("gzip", start)
        if p < 0:
            return False
        if p == 0 or value[p - 1] in ", ":
            break
        start = p + 4
    p += 4
    last = len(value)
    while p < last:
        c = value[p]
        p += 1
        if c == ",":
            return True
        if c == ";":
            break
        if c != " ":
            return False
    else:
        return True
    while p < last:
        c = value[p]
        p += 1
        if c in "qQ":
            break
        if c != " ":
            return False
    else:
        return True
    if p + 2 > last or value[p] != "=":
        return False
    return _gzip_quantity(value[p + 1 :]) != 0


def _gzip_quantity(q: str) -> int:
    """ngx_http_gzip_quantity, quirks included (returns 0 for "refused" and for malformed)."""
    if not q or q[0] not in "01":
        return 0
    value = (ord(q[0]) - 48) * 100
    if len(q) == 1 or q[1] in ", ":
        return value
    if q[1] != ".":
        return 0
    n = 0
    for c in q[2:]:
        if c in ", ":
            break
        if not "0" <= c <= "9":
            return 0
        value += ord(c) - 48
        n += 1
    if value > 100 or n > 3:
        return 0
    return value


def _gzip_ok(req: Request) -> bool:
    """ngx_http_gzip_ok: Accept-Encoding, then gzip_http_version, gzip_disable and gzip_proxied as
    the gzip module's settings for the location say (pyginx/modules/gzip.py)."""
    ae = req.headers.get("accept-encoding")
    if ae is None or not gzip_accepted(ae):
        return False
    from pyginx.modules import gzip

    return gzip.request_ok(req, req.settings.conf(gzip.MODULE.name), [])


def _file(ctx: _Ctx) -> Awaitable[None] | None:
    """A URI not ending in "/": gzip_static, then the static module."""
    req = ctx.req
    s = ctx.s
    vary = False
    if s.gzip_static != "off" and req.method in ("GET", "HEAD"):
        ok = s.gzip_static == "always" or _gzip_ok(req)
        if ok or s.gzip_vary:
            served, vary, result = _gzip_static(ctx, ok)
            if served:
                return result
    if req.method not in _METHODS:
        req.send_error(405)
        return None
    try:
        mapped = ctx.map(ctx.uri)
        info = ctx.lookup(mapped)
    except PathError as e:
        ctx.fail(e)
        return None
    if info.kind == "dir":
        location = escape_uri(ctx.uri) + "/"
        if req.args:
            location += "?" + req.args
        req.redirect(301, location)
        return None
    if info.kind != "file":
        req.log_error("crit", f'"{mapped.path}" is not a regular file')
        req.send_error(404)
        return None
    if req.method == "POST":
        req.send_error(405)
        return None
    content_type = mime.content_type_for(ctx.uri, s)
    return _serve(ctx, mapped, info, content_type, "", vary and s.gzip_vary)


def _gzip_static(ctx: _Ctx, ok: bool) -> tuple[bool, bool, Awaitable[None] | None]:
    """(answered, vary, coroutine): try `file.gz`. `vary` is True when the .gz exists under
    `gzip_static on` (nginx then marks the response for "Vary: Accept-Encoding")."""
    req = ctx.req
    s = ctx.s
    try:
        mapped = ctx.map(ctx.uri)
        gz = Mapped(mapped.path + ".gz", mapped.base)
        info = ctx.lookup(gz, test_only=not ok)  # only its existence matters for Vary
    except PathError as e:
        if e.errno not in (0, errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
            req.log_error("crit" if e.status == 500 else "error", e.log_message())
        return False, False, None
    vary = s.gzip_static == "on"
    if not ok or info.kind == "dir":
        return False, vary, None
    if info.kind != "file":
        req.log_error("crit", f'"{gz.path}" is not a regular file')
        req.send_error(404)
        return True, vary, None
    content_type = mime.content_type_for(ctx.uri, s)
    return True, vary, _serve(ctx, gz, info, content_type, "gzip", vary and s.gzip_vary)


# ------------------------------------------------------------------ responses


def _entity_headers(
    info: FileInfo, content_type: str, s: HttpSettings, encoding: str, vary: bool, last_modified: bool
) -> list[tuple[str, str]]:
    headers = [("Content-Type", content_type)]
    if last_modified:
        headers.append(("Last-Modified", info.last_modified))
    if s.etag:
        headers.append(("ETag", info.etag))
    if encoding:
        headers.append(("Content-Encoding", encoding))
    if vary:
        headers.append(("Vary", "Accept-Encoding"))
    return headers


def _serve(
    ctx: _Ctx, mapped: Mapped, info: FileInfo, content_type: str, encoding: str, vary: bool
) -> Awaitable[None] | None:
    """Send a regular file: 200/206/304/412/416 decided first, then the bytes.

    A small file whose bytes are in `info` is answered now, in one write. A large one is served by
    a coroutine that opens, decides and streams: the descriptor is opened inside it and closed in
    its one `finally`, so no path (a task cancelled before it starts included) can leak it.
    """
    if info.body is not None:
        return _respond_file(ctx, mapped, info, -1, content_type, encoding, vary)
    return _serve_large(ctx, mapped, content_type, encoding, vary)


async def _serve_large(ctx: _Ctx, mapped: Mapped, content_type: str, encoding: str, vary: bool) -> None:
    req = ctx.req
    try:
        fd, st = open_file(mapped.path, mapped.base, ctx.policy)
    except PathError as e:
        ctx.fail(e)
        return
    try:
        # Headers come from this descriptor's own fstat, so that they describe the very bytes sent
        # even if the file was replaced since it was looked up (or cached).
        info = info_from_stat(mapped.path, st)
        if info.kind != "file":
            req.send_error(404)
            return
        result = _respond_file(ctx, mapped, info, fd, content_type, encoding, vary)
        if result is not None:
            await result
    finally:
        os.close(fd)


def _respond_file(
    ctx: _Ctx, mapped: Mapped, info: FileInfo, fd: int, content_type: str, encoding: str, vary: bool
) -> Awaitable[None] | None:
    req = ctx.req
    s = ctx.s
    size = info.size
    body: bytes | None = info.body
    ranges_on = s.max_ranges != 0

    if req.error_status and req.error_status != 200:
        # Serving an error_page: nginx's filters see the error status, so no conditionals, no
        # ranges, no Accept-Ranges and no Last-Modified (the header filter drops it), ETag kept.
        # (`error_page 404 =200 /page` makes it a plain 200, filters and all.)
        headers = _entity_headers(info, content_type, s, encoding, vary, last_modified=False)
        return _send(ctx, mapped, fd, body, 200, headers, ((0, size),), size)

    etag = info.etag if s.etag else None
    decision = conditional.evaluate(req.headers, etag, info.mtime, s.if_modified_since)
    if decision == 412:
        req.send_error(412)
        return None
    if decision == 304:
        full = _entity_headers(info, content_type, s, encoding, vary, last_modified=True)
        req.respond(304, [h for h in full if h[0].lower() not in conditional.NOT_MODIFIED_DROPS])
        return None

    rd = ranges.decide(req.headers, size, etag, info.mtime, s.max_ranges) if ranges_on else ranges.FULL
    if rd.kind != "full" and req.filters is not None:
        probe = _entity_headers(info, content_type, s, encoding, vary, last_modified=True)
        if req.filters_recode(200, probe, size):
            rd = ranges.FULL  # gzip will compress it: the whole response, as nginx sends it
    if rd.kind == "full":
        if body is not None:
            block = info.header_block(content_type, s.etag, encoding, vary, ranges_on)
            _remember(ctx, block, body)
            if fd < 0 and not encoding:
                _remember_uncached(ctx, mapped, info, block)
            req.respond_prebuilt(200, block, body, len(body))
            return None
        headers = _entity_headers(info, content_type, s, encoding, vary, last_modified=True)
        if ranges_on:
            headers.append(("Accept-Ranges", "bytes"))
        return _send(ctx, mapped, fd, body, 200, headers, ((0, size),), size)

    if rd.kind == "unsatisfiable":
        _send_416(req, s, size)
        return None

    headers = _entity_headers(info, content_type, s, encoding, vary, last_modified=True)
    if len(rd.ranges) == 1:
        start, end = rd.ranges[0]
        headers.append(("Content-Range", ranges.content_range(start, end, size)))
        return _send(ctx, mapped, fd, body, 206, headers, rd.ranges, end - start)

    plan = ranges.multipart(rd.ranges, size, content_type)
    headers[0] = ("Content-Type", plan.content_type)
    if body is not None:
        req.respond(206, headers, b"".join(plan.segments(body)))
        return None
    return _stream_multipart(ctx, mapped, fd, headers, plan)


def _send_416(req: Request, s: HttpSettings, size: int) -> None:
    """416 with `Content-Range: bytes */LEN` and nginx's error page body.

    req.send_error() cannot carry the Content-Range header, so the built-in page is sent here;
    a configured `error_page 416` still goes through send_error (and loses Content-Range, as the
    header would not survive nginx's internal redirect either).
    """
    if any(code == 416 for code, _uri, _override in s.error_page):
        req.send_error(416)
        return
    req.respond(
        416,
        [("Content-Type", "text/html"), ("Content-Range", ranges.unsatisfied_range(size))],
        error_page_body(416, s.server_tokens),
    )


def _send(
    ctx: _Ctx,
    mapped: Mapped,
    fd: int,
    body: bytes | None,
    status: int,
    headers: list[tuple[str, str]],
    spans: tuple[tuple[int, int], ...],
    length: int,
) -> Awaitable[None] | None:
    """One span of the file (the whole file or a single range): from memory, or streamed."""
    req = ctx.req
    if body is not None:
        start, end = spans[0]
        req.respond(status, headers, body[start:end] if (start, end) != (0, len(body)) else body)
        return None
    return _stream(ctx, mapped, fd, status, headers, spans[0], length)


async def _stream(
    ctx: _Ctx,
    mapped: Mapped,
    fd: int,
    status: int,
    headers: list[tuple[str, str]],
    span: tuple[int, int],
    length: int,
) -> None:
    req = ctx.req
    req.start(status, headers, length)
    if not req.head_only:
        await _send_span(ctx, mapped, fd, span[0], span[1])
    req.end()


async def _stream_multipart(
    ctx: _Ctx, mapped: Mapped, fd: int, headers: list[tuple[str, str]], plan: ranges.MultipartPlan
) -> None:
    req = ctx.req
    req.start(206, headers, plan.length)
    if not req.head_only:
        for head, start, end in plan.parts:
            req.write(head)
            await _send_span(ctx, mapped, fd, start, end)
        req.write(plan.trailer)
    req.end()


async def _send_span(ctx: _Ctx, mapped: Mapped, fd: int, start: int, end: int) -> None:
    """file[start:end] to the client: zero-copy sendfile, or pread + write with backpressure.

    A file that shrinks under us cannot fill the promised Content-Length: the response is cut by
    closing the connection (ConnectionError, which the dispatcher turns into abort), never padded
    or left short on a kept-alive connection.
    """
    req = ctx.req
    if ctx.s.sendfile:
        try:
            await req.sendfile(fd, start, end - start)
        except ConnectionError:
            _log_truncation(ctx, mapped, fd, end)
            raise
        return
    offset = start
    while offset < end:
        chunk = os.pread(fd, min(_READ_CHUNK, end - offset), offset)
        if not chunk:
            _log_truncation(ctx, mapped, fd, end)
            raise ConnectionAbortedError(f'"{mapped.path}" was truncated')
        req.write(chunk)
        offset += len(chunk)
        await req.drain()


def _log_truncation(ctx: _Ctx, mapped: Mapped, fd: int, end: int) -> None:
    """Say so in the error log when the cut came from the file rather than from the client."""
    if ctx.req.client_closed:
        return
    try:
        size = os.fstat(fd).st_size
    except OSError:
        return
    if size < end:
        ctx.req.log_error("alert", f'"{mapped.path}" was truncated to {size} while sending')


def forget_configurations() -> None:
    """The static module's exit_worker: drop every answer and memo kept for a configuration (they
    hold its settings objects), so a replaced configuration is not kept alive by them."""
    _answers.clear()
    _answerable.clear()
    _uncached.clear()
