"""The cache manager and cache loader process bodies (nginx's ngx_cache_manager_process_cycle).

Both are forked by the master (pyginx/process/cacheprocs.py) after the zones exist, never serve requests, and
sleep with sigtimedwait on the master's blocked signals: QUIT, TERM or INT ends them at once between
two batches; any other signal is ignored. A master that disappears ends them too.

The loader walks each cache directory once and adds a node for every valid file to the keys zone, in
batches of loader_files, sleeping loader_sleep after each batch or once loader_threshold is spent;
damaged files and the temp files of dead processes are deleted; then it marks the zone loaded and exits.

The manager, every wake-up, for each cache: removes entries unused for `inactive` (ngx_http_file_cache_
expire), then, while the cache is over max_size, under min_free free disk space, or its zone is 7/8
full (nginx's watermark), removes the least recently used entries (ngx_http_file_cache_forced_expire),
at most manager_files per iteration and for at most manager_threshold, then sleeps manager_sleep (or,
with nothing to do, until the next entry expires, at most 1 s; nginx sleeps up to 10 s).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

from pyginx.cache import fileformat as ff
from pyginx.cache import store
from pyginx.cache.index import KeysIndex, index_for
from pyginx.config.model import CachePath
from pyginx.log import error_log
from pyginx.process.signals import MASTER_SIGNALS

STOP_SIGNALS = {signal.SIGQUIT, signal.SIGTERM, signal.SIGINT}
IDLE_WAIT = 1.0


class Stop(Exception):
    pass


class Sleeper:
    def __init__(self) -> None:
        self.parent = os.getppid()

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise Stop on a stop signal or when the master is gone."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if os.getppid() != self.parent:
                raise Stop
            left = deadline - time.monotonic()
            info = signal.sigtimedwait(MASTER_SIGNALS, max(0.0, min(left, 1.0)))
            if info is not None and info.si_signo in STOP_SIGNALS:
                raise Stop
            if left <= 0:
                return

    def check(self) -> None:
        self.sleep(0)


def _free_space(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 1 << 62
    return st.f_bavail * st.f_frsize


def _delete(cp: CachePath, gone: Iterable[tuple[bytes, object]]) -> int:
    n = 0
    for digest, _node in gone:
        store.delete(cp.path, cp.levels, digest)
        n += 1
    return n


def manage_once(cp: CachePath, idx: KeysIndex, sleeper: Sleeper | None = None) -> float:
    """One manager pass over one cache; the seconds until the next is due."""
    start = time.monotonic()
    files = 0
    while True:
        gone, more = idx.expire_inactive(time.time(), cp.manager_files - files)
        files += _delete(cp, gone)
        if not more or files >= cp.manager_files:
            break
        if time.monotonic() - start >= cp.manager_threshold:
            return cp.manager_sleep
    if files >= cp.manager_files:
        return cp.manager_sleep
    watermark = idx.capacity * 7 // 8
    while True:
        over = cp.max_size is not None and idx.size() >= cp.max_size
        full = idx.count() >= watermark
        low = cp.min_free > 0 and _free_space(cp.path) < cp.min_free
        if not (over or full or low):
            break
        gone = idx.forced_expire(1)
        if not gone:
            return 1.0  # everything left is being fetched right now
        files += _delete(cp, gone)
        if sleeper is not None:
            sleeper.check()
        if files >= cp.manager_files or time.monotonic() - start >= cp.manager_threshold:
            return cp.manager_sleep
    return IDLE_WAIT


def run_manager(paths: tuple[CachePath, ...]) -> int:
    sleeper = Sleeper()
    try:
        while True:
            wait = IDLE_WAIT
            for cp in paths:
                idx = index_for(cp.zone)
                if idx is not None:
                    wait = min(wait, manage_once(cp, idx, sleeper))
            sleeper.sleep(wait)
    except Stop:
        return 0


def load_cache(cp: CachePath, idx: KeysIndex, sleeper: Sleeper | None = None) -> int:
    """Fill the zone from the files of one cache; the number of entries added."""
    added = 0
    batch = 0
    start = time.monotonic()
    for path, hexname in store.walk(cp.path):
        try:
            entry = store.open_entry(path, None, None)
        except (ff.BadCacheFile, OSError, ValueError):
            entry = None
            try:
                os.unlink(path)
            except OSError:
                pass
        if entry is not None:
            try:
                h = entry.parsed.header
                if idx.add_loaded(
                    bytes.fromhex(hexname), entry.fs_size, entry.inode, h.body_start, h.valid_sec, cp.inactive
                ):
                    added += 1
            finally:
                entry.close()
        batch += 1
        if batch >= cp.loader_files or time.monotonic() - start >= cp.loader_threshold:
            if sleeper is not None:
                sleeper.sleep(cp.loader_sleep)
            batch = 0
            start = time.monotonic()
    return added


def run_loader(paths: tuple[CachePath, ...]) -> int:
    sleeper = Sleeper()
    try:
        for cp in paths:
            idx = index_for(cp.zone)
            if idx is None or idx.loaded():
                continue
            added = load_cache(cp, idx, sleeper)
            idx.set_loaded(True)
            error_log().notice(
                f"http file cache: {cp.path} {idx.size() / 1048576:.3f}M, bsize: 4096, loaded {added} entries"
            )
    except Stop:
        return 0
    return 0
