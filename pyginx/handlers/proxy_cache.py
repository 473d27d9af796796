"""proxy_cache for the proxy handler: look up before proxying, answer from the cache, tee into a file.

The flow of ngx_http_upstream_cache + ngx_http_file_cache_open, for a location with `proxy_cache`:

  * methods outside proxy_cache_methods go upstream untouched; proxy_cache_bypass sends the request
    upstream (BYPASS) and may still store the answer;
  * the keys zone counts the use (min_uses: SCARCE entries are fetched, not stored);
  * a node that says a file exists — or any key while the zone is still cold (the loader has not
    finished) — opens the file: fresh -> HIT; expired -> one request refreshes it (EXPIRED, or STALE at
    once with background_update), others are served the stale entry when use_stale has `updating`
    (UPDATING) or go upstream; a Vary mismatch looks up the variant's own key; a damaged file is deleted
    and refetched;
  * no file: with proxy_cache_lock one request fetches, the others wait (polling the zone: across
    workers) until it stored the entry (then HIT), its lock_age passed (then one of them fetches), or
    their lock_timeout passed (then they go upstream and do not store);
  * upstream: HEAD becomes GET (convert_head), the client's conditional and Range headers are not
    passed, revalidation adds If-Modified-Since / If-None-Match (a 304 -> REVALIDATED);
  * the response is stored when policy.decide_store says so and proxy_no_cache does not forbid it:
    teed into a temp file as it streams to the client, renamed into place when complete;
  * a failed upstream (error, timeout, invalid_header, http_5xx per use_stale, or stale-if-error) with
    an expired entry: the entry is served (STALE).
Answers from the cache honour the client's conditional requests and ranges, as nginx's not_modified
and range filters do for cached responses.

`CacheCtx` is the per-request state the proxy (pyginx/handlers/proxy.py) calls at a handful of points;
every decision is in pyginx.cache.policy, the files in pyginx.cache.store, the zone in pyginx.cache.index.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyginx.cache import fileformat as ff
from pyginx.cache import hot, policy, store
from pyginx.cache import key as ck
from pyginx.cache.index import FOUND, NEW, Evicted, KeysIndex, Node, index_for
from pyginx.config.model import CachePath, HttpSettings
from pyginx.handlers import cache_answer, conditional
from pyginx.handlers import proxy_headers as ph
from pyginx.handlers.cache_answer import IN_MEMORY_MAX, CachedBody
from pyginx.handlers.cache_background import BackgroundRequest
from pyginx.http.headers import encode_lines
from pyginx.http.request import Request
from pyginx.http.variables import Getter, compile_template
from pyginx.log import error_log

if TYPE_CHECKING:
    from pyginx.handlers.proxy_plan import Plan
    from pyginx.upstream.response import ResponseHead

# Request headers a cached request does not pass upstream (ngx_http_proxy_cache_headers)
NOT_PASSED = frozenset(
    {"if-modified-since", "if-unmodified-since", "if-none-match", "if-match", "range", "if-range", "expect"}
)
# Response headers not stored: framing and hop-by-hop (recomputed when the entry is served)
NOT_STORED = frozenset({"transfer-encoding", "content-length", "connection", "keep-alive"})
# request headers that make a cached 200 more than a plain answer (validators, ranges)
_PLAIN_GET = frozenset({"if-modified-since", "if-none-match", "if-match", "if-unmodified-since", "range"})
LOCK_POLL_FIRST = 0.005
LOCK_POLL_MAX = 0.1  # nginx polls a cache lock every 500 ms; pyginx sooner, up to every 100 ms

# proxy.start_proxy: (request, plan, cache context, wait) -> the proxy's pending work; wait=True: an
# awaitable that lasts until the request is over (for coroutines that start the proxy late)
Start = Callable[[Request, "Plan", "CacheCtx | None", bool], Awaitable[None] | None]


@dataclass
class CachePlan:
    """What a location's proxy_cache settings need per request, made once per settings object."""

    cp: CachePath
    settings: HttpSettings
    key: Getter
    bypass: list[Getter]
    no_cache: list[Getter]
    methods: frozenset[str]
    use_stale: frozenset[str]


_plans: dict[int, tuple[HttpSettings, CachePlan | None]] = {}
_logged: set[tuple[str, int | None]] = set()  # cache write failures already logged by this process


def cache_plan(req: Request) -> CachePlan | None:
    s = req.settings
    hit = _plans.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1]
    plan: CachePlan | None = None
    http = req.conn.ctx.config.http
    ref = s.proxy_cache
    if ref is not None and http is not None:
        cp = next((p for p in http.proxy_cache_paths if p.zone == ref.zone), None)
        if cp is not None:
            plan = CachePlan(
                cp=cp,
                settings=s,
                key=compile_template(s.proxy_cache_key),
                bypass=[compile_template(t) for t in s.proxy_cache_bypass],
                no_cache=[compile_template(t) for t in s.proxy_no_cache],
                methods=frozenset(s.proxy_cache_methods),
                use_stale=frozenset(s.proxy_cache_use_stale),
            )
    _plans[id(s)] = (s, plan)
    return plan


def _log_write_failure(cp: CachePath, what: str, exc: OSError) -> None:
    """A cache that cannot be written serves uncached; the first failure of a kind is logged."""
    mark = (cp.path, exc.errno)
    if mark in _logged:
        return
    _logged.add(mark)
    error_log().crit(
        f'{what} failed ({exc.errno}: {exc.strerror}), the response is not cached in "{cp.path}"'
    )


def _delete_evicted(cp: CachePath, evicted: Evicted) -> None:
    for digest, _node in evicted:
        store.delete(cp.path, cp.levels, digest)


# --------------------------------------------------------------------------------------------------------
# the entry point (from proxy.handle)


def handle(req: Request, plan: Plan, start: Start) -> Awaitable[None] | None:
    cplan = cache_plan(req)
    if cplan is None or req.method not in cplan.methods or req.upgrade:
        return start(req, plan, None, False)
    idx = index_for(cplan.cp.zone)
    if idx is None:
        return start(req, plan, None, False)
    if not plan.pp.has_variables:  # the key's $proxy_host (the proxy sets it again when it starts)
        req.vars["proxy_host"] = plan.proxy_host
        req.vars["proxy_port"] = plan.proxy_port
    key = cplan.key(req)
    digest = ck.digest(key)
    if cplan.bypass:
        return CacheCtx(req, plan, cplan, idx, start, key, digest).begin()
    # the usual HIT, answered before any per-request cache state is made: the node says the file
    # this worker copied is still the one on disk and fresh, and the request is a plain GET
    looked = idx.lookup(digest, cplan.cp.inactive, cplan.settings.proxy_cache_min_uses)
    rc, node, evicted = looked
    if rc == FOUND and node.exists and not evicted:
        copy = hot.copies.get(digest)
        if copy is not None and copy.matches(node) and node.valid_sec >= time.time():
            req.vars["upstream_cache_status"] = "HIT"
            if answer_plain(req, plan, cplan.settings, copy):
                return None
    return CacheCtx(req, plan, cplan, idx, start, key, digest)._lookup(reopened=False, looked=looked)


def answer_plain(req: Request, plan: Plan, s: HttpSettings, copy: hot.HotCopy) -> bool:
    """The usual HIT: a 200 copy, a plain GET (no validators, no Range), no proxy_redirect: its
    headers filtered and encoded once per location, one write."""
    if copy.parsed.status != 200 or req.error_status or req.head_only:
        return False
    if not _PLAIN_GET.isdisjoint(req.headers):
        return False
    prepared = copy.prepared.get(id(plan.drop))
    if prepared is None or prepared[0] is not plan.drop:
        names = [n.lower() for n, _ in copy.parsed.headers]
        if "location" in names or "refresh" in names:
            return False  # proxy_redirect may rewrite them, per request
        headers = ph.filter_response(copy.parsed.headers, names, plan.drop)
        if s.max_ranges != 0 and "accept-ranges" in names:  # as cache_answer.answer_200
            headers = [h for h in headers if h[0].lower() != "accept-ranges"] + [("Accept-Ranges", "bytes")]
        prepared = (plan.drop, headers, encode_lines(headers))
        copy.prepared[id(plan.drop)] = prepared
    req.respond(200, prepared[1], copy.body, False, prepared[2])
    return True


class CacheCtx:
    """One request's cache state; the proxy calls upstream_headers, instead_of, begin_store, data,
    stale_on_failure and close."""

    def __init__(
        self, req: Request, plan: Plan, cplan: CachePlan, idx: KeysIndex, start: Start, key: str, main: bytes
    ) -> None:
        self.req = req
        self.plan = plan
        self.cplan = cplan
        self.cp = cplan.cp
        self.s = cplan.settings
        self.idx = idx
        self.start = start
        self.key = key  # the rendered proxy_cache_key, and its md5
        self._crc: int | None = None
        self.main = main
        self.digest = self.main
        self.status = "MISS"
        self.store_ok = True  # False: SCARCE, lock timeout — fetch, do not store
        self.locked = False  # this request holds the key's updating lock
        self.entry: store.OpenEntry | None = None  # an expired entry (stale, revalidation)
        self.variant = b"\0" * 16
        self.writer: store.Writer | None = None
        self.header: ff.FileHeader | None = None
        self.decision: policy.StoreDecision | None = None
        self.closed = False
        self.background = False
        convert = self.s.proxy_cache_convert_head and req.method == "HEAD"
        self.method = "GET" if convert else req.method

    @property
    def crc(self) -> int:
        """The key's crc32 (checked against a file's header; computed only when a file is read)."""
        if self._crc is None:
            self._crc = ck.crc32(self.key)
        return self._crc

    def _set_status(self, status: str) -> None:
        self.status = status
        self.req.vars["upstream_cache_status"] = status

    # ---- lookup

    def begin(self) -> Awaitable[None] | None:
        req, cplan = self.req, self.cplan
        if cplan.bypass and policy.predicate_true(g(req) for g in cplan.bypass):
            self._set_status("BYPASS")
            return self.start(req, self.plan, self, False)
        return self._lookup(reopened=False)

    def _lookup(
        self, reopened: bool, wait: bool = False, looked: tuple[str, Node, Evicted] | None = None
    ) -> Awaitable[None] | None:
        """wait: called from a coroutine, which must last as long as the request (start_proxy's wait).
        looked: the zone's answer for this digest when handle() already asked (a use is counted once)."""
        cp, s = self.cp, self.s
        if looked is None:
            looked = self.idx.lookup(self.digest, cp.inactive, s.proxy_cache_min_uses)
        rc, node, evicted = looked
        if evicted:
            _delete_evicted(cp, evicted)
        if rc != FOUND and rc != NEW:
            self.store_ok = False  # SCARCE
        if rc == FOUND and node.exists:
            copy = hot.copies.get(self.digest)
            if copy is not None and copy.matches(node) and node.valid_sec >= time.time():
                self._set_status("HIT")  # the worker's copy of this very file: no open, no parse
                if answer_plain(self.req, self.plan, self.s, copy):
                    return None
                return self._answer(copy.parsed, CachedBody(len(copy.body), copy.body))
        test_file = rc == FOUND or not self.idx.loaded()
        entry = self._open() if test_file else None
        if entry is not None:
            h = entry.parsed.header
            if h.vary and not reopened:
                variant = ck.variant(self.main, h.vary, self.req.headers)
                if variant != h.variant:
                    entry.close()
                    self.variant = variant
                    self.digest = ck.variant_digest(self.main, variant)
                    return self._lookup(reopened=True, wait=wait)
            if not node.exists:
                # found on disk before the loader got to it (a cold zone), or a stale node
                self.idx.stored(
                    self.digest, entry.fs_size, entry.inode, h.body_start, h.valid_sec, cp.inactive
                )
            now = int(time.time())
            if h.valid_sec >= now:
                self._set_status("HIT")
                return self.serve(entry)
            return self._expired(entry, now, wait)
        self._set_status("MISS")
        if self.store_ok and s.proxy_cache_lock:  # nginx locks a found node without a file too
            if not self.idx.try_lock(self.digest, s.proxy_cache_lock_age):
                return self._wait_for_lock()
            self.locked = True
        return self.start(self.req, self.plan, self, wait)

    def _open(self) -> store.OpenEntry | None:
        path = ck.file_path(self.cp.path, self.digest.hex(), self.cp.levels)
        try:
            return store.open_entry(path, self.key, self.crc)
        except (ff.BadCacheFile, ValueError) as exc:
            self.req.log_error("crit", f'cache file "{path}" {exc}')
        except OSError as exc:
            self.req.log_error("crit", f'open() "{path}" failed ({exc.errno}: {exc.strerror})')
            return None  # not the file's fault: leave it
        # damaged: forget it; the fetch stores a new one
        self.idx.remove(self.digest)
        try:
            os.unlink(path)
        except OSError:
            pass
        return None

    def _expired(self, entry: store.OpenEntry, now: int, wait: bool) -> Awaitable[None] | None:
        s, h = self.s, entry.parsed.header
        stale_updating = h.valid_sec + h.updating_sec >= now
        use_updating = "updating" in self.cplan.use_stale or stale_updating
        if self.idx.start_update(self.digest, s.proxy_cache_lock_age):
            self.locked = True
            if use_updating and s.proxy_cache_background_update:
                self._set_status("STALE")
                self._background_refresh(entry)
                return self.serve(entry)
        elif use_updating:
            self._set_status("UPDATING")
            return self.serve(entry)
        self.entry = entry
        self._set_status("EXPIRED")
        return self.start(self.req, self.plan, self, wait)

    async def _wait_for_lock(self) -> None:
        s = self.s
        deadline = time.monotonic() + s.proxy_cache_lock_timeout
        delay = LOCK_POLL_FIRST
        while self.idx.is_locked(self.digest):
            if self.req.client_closed:
                self.req.abort()
                return
            left = deadline - time.monotonic()
            if left <= 0:
                self.req.log_error("info", "cache lock timeout")
                self.store_ok = False
                self._set_status("MISS")
                await _to_end(self.start(self.req, self.plan, self, True))
                return
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, LOCK_POLL_MAX)
        # the fetch ended: the entry is there (HIT), or the fetch failed and this request takes over
        self.digest = self.main
        await _to_end(self._lookup(reopened=False, wait=True))

    def _background_refresh(self, entry: store.OpenEntry) -> None:
        """proxy_cache_background_update: refresh the expired entry in a request of our own whose
        answer goes nowhere, while this one is served the stale entry."""
        bg = BackgroundRequest(self.req)
        ctx = CacheCtx(bg, self.plan, self.cplan, self.idx, self.start, self.key, self.main)
        ctx.digest = self.digest
        ctx.variant = self.variant
        ctx.locked = True
        self.locked = False  # the lock is the background request's now
        ctx.background = True
        ctx._set_status("EXPIRED")
        try:
            ctx.entry = store.open_entry(
                ck.file_path(self.cp.path, self.digest.hex(), self.cp.levels), self.key, self.crc
            )
        except (ff.BadCacheFile, OSError):
            ctx.entry = None
        task = asyncio.ensure_future(_to_end(self.start(bg, self.plan, ctx, True)))
        _background.add(task)
        task.add_done_callback(_background.discard)

    # ---- answering from the cache

    def serve(self, entry: store.OpenEntry) -> Awaitable[None] | None:
        """Answer the client with `entry` (HIT, STALE, UPDATING, REVALIDATED); a coroutine when the body
        goes out from the file with sendfile."""
        try:
            if self.background:
                return None
            if entry.body_len > IN_MEMORY_MAX and not self.req.head_only:
                body = CachedBody(entry.body_len, None, entry.fd, entry.body_start)
                entry.fd = -1  # the body owns the file now
                return self._answer(entry.parsed, body)
            data = entry.body()
            if self.status == "HIT":
                hot.keep(self.digest, entry, data)
            return self._answer(entry.parsed, CachedBody(len(data), data))
        finally:
            entry.close()

    def _answer(self, parsed: ff.Parsed, body: CachedBody) -> Awaitable[None] | None:
        req, plan = self.req, self.plan
        names = [n.lower() for n, _ in parsed.headers]
        headers = ph.filter_response(
            parsed.headers,
            names,
            plan.drop,
            rules=plan.redirects,
            render=lambda t: compile_template(t)(req),
            absolute=req.absolute_location,
        )
        status = parsed.status
        if status != 200 or req.error_status:
            return cache_answer.respond(req, status, headers, body)
        return cache_answer.answer_200(req, self.s, headers, body, parsed.header)

    # ---- the proxy's hooks

    def upstream_headers(self, client: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
        """The client's headers as passed upstream: without conditionals and Range; with the
        revalidation validators of an expired entry (proxy_cache_revalidate)."""
        out = [(n, v) for n, v in (client or ()) if n.lower() not in NOT_PASSED]
        entry = self.entry
        if entry is not None and self.s.proxy_cache_revalidate:
            h = entry.parsed.header
            if h.last_modified >= 0:
                out.append(("If-Modified-Since", conditional.http_date(h.last_modified)))
            if h.etag:
                out.append(("If-None-Match", h.etag))
        return out

    def instead_of(self, status: int, head: ResponseHead) -> Callable[[], None] | None:
        """Before the upstream's answer goes out: a 304 to our revalidation (REVALIDATED), or a status
        use_stale covers (STALE), is answered from the entry instead. Returns the call that answers
        (the proxy makes it once it is done with the upstream)."""
        entry = self.entry
        if entry is None:
            return None
        if status == 304 and self.s.proxy_cache_revalidate:
            self._refresh_validity(entry, head)
            self._set_status("REVALIDATED")
            return self._take_entry()
        cond = policy.STATUS_CONDITIONS.get(status)
        if cond is not None and cond in self.cplan.use_stale:
            self._set_status("STALE")
            return self._take_entry()
        return None

    def stale_on_failure(self, condition: str) -> Callable[[], None] | None:
        """The upstream failed for good: the call that serves the expired entry, if use_stale (or the
        entry's stale-if-error period) allows it."""
        entry = self.entry
        if entry is None:
            return None
        h = entry.parsed.header
        stale_error = h.valid_sec + h.error_sec >= int(time.time())
        if not policy.stale_allowed(tuple(self.cplan.use_stale), condition, stale_error):
            return None
        self._set_status("STALE")
        return self._take_entry()

    def _take_entry(self) -> Callable[[], None]:
        entry, self.entry = self.entry, None
        assert entry is not None
        return lambda: _detached(self.serve(entry))

    def _refresh_validity(self, entry: store.OpenEntry, head: ResponseHead) -> None:
        now = int(time.time())
        verdict = policy.from_headers(head.headers, self.s.proxy_ignore_headers, now)
        h = entry.parsed.header
        valid = verdict.valid_sec if not (verdict.no_cache or verdict.expired) else 0
        if valid == 0:
            seconds = policy.valid_for(self.s.proxy_cache_valid, entry.parsed.status)
            valid = now + seconds if seconds else 0
        if not valid:
            return
        h.valid_sec, h.date = valid, now
        h.updating_sec, h.error_sec = verdict.updating_sec or h.updating_sec, verdict.error_sec or h.error_sec
        path = ck.file_path(self.cp.path, self.digest.hex(), self.cp.levels)
        if store.rewrite_header(path, h, entry.inode):
            self.idx.refreshed(self.digest, valid)

    def begin_store(self, status: int, head: ResponseHead) -> None:
        """The upstream's head, about to go to the client: decide whether to store it, and if so open
        the temp file with the entry's header, key and head."""
        if not self.store_ok or self.closed:
            return
        req, s = self.req, self.s
        if self.cplan.no_cache and policy.predicate_true(g(req) for g in self.cplan.no_cache):
            return
        now = int(time.time())
        verdict = policy.from_headers(head.headers, s.proxy_ignore_headers, now)
        decision = policy.decide_store(status, verdict, s.proxy_cache_valid, now)
        if decision is None:
            return
        if decision.vary and self.digest == self.main:
            self.variant = ck.variant(self.main, decision.vary, req.headers)
        kept = [(n, v) for n, v in head.headers if n.lower() not in NOT_STORED]
        header = ff.FileHeader(
            valid_sec=decision.valid_sec,
            updating_sec=decision.updating_sec,
            error_sec=decision.error_sec,
            last_modified=decision.last_modified,
            date=now,
            crc32=self.crc,
            header_start=0,
            body_start=0,
            body_len=0,
            etag=decision.etag,
            vary=decision.vary,
            variant=self.variant,
        )
        prefix = ff.build(header, self.key, ff.encode_head(status, head.reason, kept))
        try:
            self.writer = store.Writer(self.cp.path, self.cp.levels, self.digest.hex(), prefix)
        except OSError as exc:
            _log_write_failure(self.cp, f'open() "{self.cp.path}/{store.TEMP_PREFIX}..."', exc)
            return
        self.header = header
        self.decision = decision

    @property
    def storing(self) -> bool:
        """A response is being written into the cache."""
        return self.writer is not None

    def data(self, piece: bytes) -> None:
        writer = self.writer
        if writer is None or not piece:
            return
        try:
            writer.write(piece)
        except OSError as exc:
            _log_write_failure(self.cp, f'write() "{writer.temp}"', exc)
            writer.abort()
            self.writer = None

    def close(self, complete: bool) -> None:
        """The proxy is done with the request: commit a complete entry, or drop what was written;
        release the key's lock either way."""
        if self.closed:
            return
        self.closed = True
        writer, self.writer = self.writer, None
        if writer is not None:
            if complete and self.header is not None and self.decision is not None:
                try:
                    fs_size, inode = writer.commit(self.header)
                except OSError as exc:
                    _log_write_failure(self.cp, f'rename() "{writer.temp}" to "{writer.final}"', exc)
                else:
                    evicted = self.idx.stored(
                        self.digest,
                        fs_size,
                        inode,
                        self.header.body_start,
                        self.header.valid_sec,
                        self.cp.inactive,
                    )
                    _delete_evicted(self.cp, evicted)
                    self.locked = False
            else:
                writer.abort()
        self._unlock()
        if self.entry is not None:
            self.entry.close()
            self.entry = None

    def _unlock(self) -> None:
        if self.locked:
            self.locked = False
            self.idx.unlock(self.digest)


_background: set[asyncio.Future[None]] = set()


def _detached(pending: Awaitable[None] | None) -> None:
    """An answer started from the proxy's callbacks that must still send a file: run it as a task."""
    if pending is not None:
        task = asyncio.ensure_future(pending)
        _background.add(task)
        task.add_done_callback(_background.discard)


async def _to_end(pending: Awaitable[None] | None) -> None:
    """Run a proxied request to its end from a coroutine (the proxy may drive it by callbacks)."""
    if pending is not None:
        await pending


def forget_configurations() -> None:
    """The proxy module's exit_worker: the cache plans computed for a configuration's locations."""
    _plans.clear()
