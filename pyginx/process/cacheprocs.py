"""The master's cache processes: the cache manager and the cache loader, as nginx's master runs them.

Started after the workers when the configuration has a proxy_cache_path. The manager runs for the life
of its configuration and is respawned if it dies; the loader runs once (nginx starts it 60 s after the
workers; pyginx after LOADER_DELAY, its work being batched by loader_* anyway) and is respawned only if
it dies abnormally. On reload the manager is replaced (nginx always replaces it) and a loader runs
again only for zones not yet loaded (a zone created by the reload). QUIT, TERM and the master's exit
stop both. They never serve requests: every listening socket and worker channel is closed in them.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass

from pyginx.log import error_log
from pyginx.process.cycle import Cycle
from pyginx.process.proctitle import set_title

MANAGER = "cache manager process"
LOADER = "cache loader process"
LOADER_DELAY = 1.0
RESPAWN_DELAY = 0.5


@dataclass
class CacheProc:
    pid: int
    kind: str
    generation: int
    exiting: bool = False


class CacheProcesses:
    def __init__(self) -> None:
        self.procs: dict[int, CacheProc] = {}
        self.generation = 0
        self.pending: dict[str, float] = {}  # kind -> when to (re)spawn it
        self.cycle: Cycle | None = None

    def __bool__(self) -> bool:
        return bool(self.procs)

    @staticmethod
    def wanted(cycle: Cycle) -> bool:
        http = cycle.config.http
        return http is not None and bool(http.proxy_cache_paths)

    def start(self, cycle: Cycle, loader: bool) -> None:
        """For a new cycle (start-up, reload): replace the manager; maybe run the loader."""
        self.generation += 1
        self.cycle = cycle
        self.stop(signal.SIGQUIT)
        self.pending = {}
        if not self.wanted(cycle):
            return
        now = time.monotonic()
        self.pending[MANAGER] = now
        if loader or self._unloaded(cycle):
            self.pending[LOADER] = now + LOADER_DELAY

    def _unloaded(self, cycle: Cycle) -> bool:
        from pyginx.cache.index import index_for

        http = cycle.config.http
        assert http is not None
        for cp in http.proxy_cache_paths:
            idx = index_for(cp.zone)
            if idx is not None and not idx.loaded():
                return True
        return False

    def stop(self, sig: int) -> None:
        self.pending = {}
        for proc in self.procs.values():
            proc.exiting = True
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass

    def next_due(self) -> float | None:
        return min(self.pending.values()) if self.pending else None

    def spawn_due(self, now: float, close: Iterable[socket.socket]) -> None:
        for kind, when in list(self.pending.items()):
            if when <= now:
                del self.pending[kind]
                self._spawn(kind, list(close))

    def _spawn(self, kind: str, close: list[socket.socket]) -> None:
        cycle = self.cycle
        assert cycle is not None and cycle.config.http is not None
        paths = cycle.config.http.proxy_cache_paths
        try:
            pid = os.fork()
        except OSError as exc:
            error_log().alert(f'fork() failed while spawning "{kind}" ({exc.errno}: {exc.strerror})')
            self.pending[kind] = time.monotonic() + RESPAWN_DELAY
            return
        if pid == 0:
            code = 1
            try:
                for sock in close:
                    sock.close()
                set_title(f"pyginx: {kind}")
                from pyginx.cache import processes

                code = processes.run_manager(paths) if kind == MANAGER else processes.run_loader(paths)
            except BaseException:
                error_log().alert(f"{kind} failed:\n" + traceback.format_exc().rstrip())
            finally:
                os._exit(code)
        self.procs[pid] = CacheProc(pid, kind, self.generation)
        error_log().notice(f"start {kind} {pid}")

    def reaped(self, pid: int, status: int, stopping: bool) -> bool:
        """A child exited: True if it was one of ours (then logged, and respawned if it should be)."""
        proc = self.procs.pop(pid, None)
        if proc is None:
            return False
        from pyginx.process.master import describe_exit

        info = describe_exit(proc.kind, pid, status)
        error_log().log(info.level, info.message)
        clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if stopping or proc.exiting or proc.generation != self.generation:
            return True
        if proc.kind == MANAGER or not clean:
            self.pending[proc.kind] = time.monotonic() + RESPAWN_DELAY
        return True
