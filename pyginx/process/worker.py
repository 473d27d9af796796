"""A worker process: what runs in the child after the master forks.

Order matters: the master forks with its handled signals blocked and no event loop, so the child first
installs its own handlers (in a fresh uvloop loop), then unblocks — a signal sent in between stays pending
instead of killing the child with the default action. Privileges are dropped after the HttpServer has
opened its files (as nginx's master opens them as root) and before it accepts anything.

Exit status: 0 after a graceful or fast shutdown; 2 when the worker cannot start (the master must not
respawn it, or a broken setup would fork-loop); 1 for anything unexpected later (respawned).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING, NoReturn

from pyginx import lifecycle
from pyginx.log import error_log
from pyginx.process import heartbeat as hb
from pyginx.process.channel import Command, decode
from pyginx.process.cycle import Cycle, UserIds
from pyginx.process.proctitle import WORKER_EXITING_TITLE, WORKER_TITLE, set_title
from pyginx.process.signals import BY_SIGNUM, MASTER_SIGNALS, WORKER_IGNORED, describe

if TYPE_CHECKING:
    from pyginx.http.server import HttpServer

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_FATAL = 2  # "fatal at start": the master logs it and does not respawn


class WorkerStartError(Exception):
    pass


def preload() -> None:
    """Import the serving code once in the master, so that forking a worker costs no imports.
    (Importing creates no event loop; the master still never runs one.)"""
    import uvloop  # noqa: F401

    from pyginx.http import server, tls_listen  # noqa: F401

    try:
        from pyginx.http2 import connection  # noqa: F401  (hpack is an optional import until a client asks)
    except ImportError:
        pass


def run(
    cycle: Cycle,
    slot: int,
    channel: socket.socket | None,
    beat: hb.Heartbeat | None,
    inherited: Iterable[socket.socket],
) -> NoReturn:
    """Entry point in the forked child; never returns (os._exit: the master's atexit and buffered stdio
    belong to the master)."""
    code = EXIT_FATAL
    try:
        for sock in inherited:  # other workers' channels and reuseport clones: not ours to hold open
            sock.close()
        worker = Worker(cycle, slot, channel, beat)
        code = worker.main()
    except WorkerStartError as exc:
        error_log().emerg(str(exc))
        code = EXIT_FATAL
    except BaseException:
        error_log().alert("worker process failed:\n" + traceback.format_exc().rstrip())
    finally:
        os._exit(code)


def set_rlimit_nofile(limit: int | None) -> None:
    if limit is None:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    except (OSError, ValueError) as exc:
        error_log().alert(f"setrlimit(RLIMIT_NOFILE, {limit}) failed ({exc})")


def drop_privileges(user: UserIds | None) -> None:
    if user is None:
        return
    try:
        os.setgid(user.gid)
        os.initgroups(user.name, user.gid)
        os.setuid(user.uid)
    except OSError as exc:
        raise WorkerStartError(
            f'setuid({user.uid}) for user "{user.name}" failed ({exc.errno}: {exc.strerror})'
        ) from exc


class Worker:
    def __init__(
        self, cycle: Cycle, slot: int, channel: socket.socket | None, beat: hb.Heartbeat | None
    ) -> None:
        self.cycle = cycle
        self.slot = slot
        self.channel = channel
        self.beat = beat
        self.server: HttpServer | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.done: asyncio.Future[int] | None = None
        self.draining: asyncio.Task[None] | None = None
        self.close_idle = False

    # ---- start-up (any failure here is fatal: exit 2)

    def main(self) -> int:
        set_title(WORKER_TITLE)
        set_rlimit_nofile(self.cycle.config.worker_rlimit_nofile)
        try:
            import uvloop

            from pyginx.http.server import HttpServer
        except ImportError as exc:
            raise WorkerStartError(f"cannot load the HTTP server ({exc})") from exc
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.done = loop.create_future()
        try:
            sockets = self.cycle.listeners.for_worker(self.slot)
            self.server = HttpServer(self.cycle.config, sockets, self.cycle.tls)
            drop_privileges(self.cycle.user)
            loop.run_until_complete(self.server.start())
            # The server listens on its own dup()s and closes them when it stops accepting; our copies
            # would keep a socket the master has closed (quit, removed by a reload) alive, queueing
            # connections that nobody accepts.
            for sock in sockets.values():
                sock.close()
        except WorkerStartError:
            raise
        except Exception as exc:
            raise WorkerStartError(
                f"worker process cannot start: {exc!r}\n{traceback.format_exc().rstrip()}"
            ) from exc
        self._install_signals(loop)
        if self.channel is not None:
            loop.add_reader(self.channel.fileno(), self._on_channel)
        self._heartbeat()
        # Only now may signals arrive: pending ones (sent since the fork) are delivered then. Unblock
        # from inside the running loop: uvloop watches its wakeup fd only while it runs, and a signal
        # delivered between two runs would go unnoticed until the next one.
        loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, MASTER_SIGNALS)
        return loop.run_until_complete(self.done)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in MASTER_SIGNALS:
            if sig in WORKER_IGNORED:
                signal.signal(sig, signal.SIG_IGN)
            elif sig == signal.SIGCHLD:
                signal.signal(sig, signal.SIG_DFL)
            else:
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _heartbeat(self) -> None:
        if self.beat is None or self.loop is None:
            return
        self.beat.beat()
        self.loop.call_later(hb.INTERVAL, self._heartbeat)

    # ---- commands (signals and the master's channel mean the same)

    def _on_signal(self, sig: signal.Signals) -> None:
        # Runs in the loop (uvloop's wakeup fd), not in the C handler, so logging is safe here.
        error_log().notice(describe(int(sig), None, BY_SIGNUM[int(sig)].worker_action))
        if sig == signal.SIGQUIT:
            self.command(Command.QUIT)
        elif sig in (signal.SIGTERM, signal.SIGINT):
            self.command(Command.TERMINATE)
        elif sig == signal.SIGUSR1:
            self.command(Command.REOPEN)

    def _on_channel(self) -> None:
        assert self.channel is not None and self.loop is not None
        try:
            data = self.channel.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            # The master is gone (killed?): do not serve on as an orphan nobody manages.
            self.loop.remove_reader(self.channel.fileno())
            self.channel.close()
            self.channel = None
            error_log().alert("master process is gone, worker process is shutting down")
            self.command(Command.QUIT)
            return
        for command in decode(data):
            self.command(command)

    def command(self, command: Command) -> None:
        assert self.server is not None
        if command is Command.REOPEN:
            log = error_log()
            log.reopen()
            self.server.reopen_logs()
        elif command is Command.TERMINATE:
            lifecycle.mark_unready()
            self.server.close_all()
            self._finish(EXIT_OK)
        elif command is Command.QUIT:
            self._shutdown(close_idle=True)
        elif command is Command.RETIRE:
            self._shutdown(close_idle=False)

    # ---- graceful shutdown

    def _shutdown(self, close_idle: bool) -> None:
        assert self.server is not None and self.loop is not None
        if self.draining is not None:
            if close_idle and not self.close_idle:
                # A QUIT while retiring: stop waiting for idle keep-alive clients to come back.
                self.close_idle = True
                self.server.begin_graceful_shutdown(close_idle=True)
            return
        self.close_idle = close_idle
        set_title(WORKER_EXITING_TITLE)
        error_log().notice("gracefully shutting down")
        lifecycle.mark_unready()  # `readiness` locations answer 503 from now on
        self.draining = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        assert self.server is not None and self.loop is not None
        timeout = self.cycle.config.worker_shutdown_timeout
        started = self.loop.time()
        delay = self.cycle.config.shutdown_delay
        if timeout is not None:
            delay = min(delay, timeout)  # the whole quit stays within worker_shutdown_timeout
        if delay > 0 and self.close_idle:
            # pyginx extension: keep accepting, unready, so that a balancer probing the readiness
            # location stops sending before the listener closes.
            await asyncio.sleep(delay)
        self.server.begin_graceful_shutdown(close_idle=self.close_idle)
        try:
            remaining = None if timeout is None else max(0.0, timeout - (self.loop.time() - started))
            await asyncio.wait_for(self.server.wait_closed(), remaining)
        except TimeoutError:
            error_log().notice(
                f"worker_shutdown_timeout ({timeout:g}s) expired, closing {self.server.connection_count} connection(s)"
            )
            self.server.close_all()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            except TimeoutError:
                pass
        self._finish(EXIT_OK)

    def _finish(self, code: int) -> None:
        if self.done is not None and not self.done.done():
            error_log().notice("exiting")
            self.done.set_result(code)
