"""Single-process mode (`master_process: false`): the whole server in one process, for debugging.

As nginx's ngx_single_process_cycle: HUP reloads in place, USR1 reopens logs, TERM/INT exit at once.
QUIT drains gracefully (as a worker does), bounded by worker_shutdown_timeout. USR2 and WINCH need a
master and are ignored.

A reload starts a second HttpServer on the new configuration before the old one retires. Each server
listens on its own dup() of the sockets (HttpServer makes them), so the retiring one closes only its
copies: the kernel socket and its accept queue live on in the new server's.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

from pyginx import pidfile, zone
from pyginx.cycle import Cycle, StartupError, build_cycle, redirect_stderr, retire_zones
from pyginx.errors import ConfigError
from pyginx.listeners import close_sockets
from pyginx.log import error_log, set_error_log
from pyginx.signals import BY_SIGNUM, MASTER_SIGNALS, describe

if TYPE_CHECKING:
    from pyginx.http.server import HttpServer


class SingleProcess:
    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self.server: HttpServer | None = None
        self.retired: set[HttpServer] = set()
        self.done: asyncio.Future[int] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.quitting = False

    def run(self) -> int:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self.done = loop.create_future()
        # Signals are blocked since start-up (pyginx.startup); they are taken only once the server runs,
        # so a reload never races the first start.
        for sig in MASTER_SIGNALS:
            if sig != signal.SIGCHLD:
                loop.add_signal_handler(sig, self.on_signal, sig)
        try:
            self.server = loop.run_until_complete(self.start_server(self.cycle))
        except Exception as exc:
            error_log().emerg(f"cannot start the HTTP server: {exc!r}")
            self.cleanup()
            return 1
        # Unblock from inside the running loop: uvloop watches its wakeup fd only while it runs, and a
        # pending signal delivered between two runs would wait for the next signal to be noticed.
        loop.call_soon(signal.pthread_sigmask, signal.SIG_UNBLOCK, MASTER_SIGNALS)
        code = loop.run_until_complete(self.done)
        self.cleanup()
        return code

    async def start_server(self, cycle: Cycle) -> HttpServer:
        from pyginx.http.server import HttpServer

        server = HttpServer(cycle.config, cycle.listeners.for_worker(0))  # it listens on its own dup()s
        await server.start()
        return server

    def on_signal(self, sig: signal.Signals) -> None:
        spec = BY_SIGNUM[int(sig)]
        if sig in (signal.SIGUSR2, signal.SIGWINCH):
            error_log().notice(describe(int(sig), None, "ignoring"))
            return
        error_log().notice(describe(int(sig), None, spec.master_action))
        assert self.loop is not None
        if sig == signal.SIGHUP:
            self.loop.create_task(self.reload())
        elif sig == signal.SIGUSR1:
            self.reopen()
        elif sig == signal.SIGQUIT:
            self.loop.create_task(self.quit())
        else:
            self.terminate()

    def reopen(self) -> None:
        log = error_log()
        log.reopen()
        redirect_stderr(log)
        for server in [self.server, *self.retired]:
            if server is not None:
                server.reopen_logs()

    async def reload(self) -> None:
        if self.quitting:
            return
        from pyginx.config import load_config

        old = self.cycle
        try:
            config = load_config(old.config.file, old.config.prefix)
            cycle, leftovers = build_cycle(config, old.listeners.sockets(), workers=1, old_zones=old.zones)
        except (ConfigError, StartupError, OSError) as exc:
            error_log().emerg(str(exc))
            return
        if config.master_process:
            error_log().warn('changing "master_process" requires a restart, ignored')
        kept = {id(s) for s in old.listeners.sockets()}
        zone.install(cycle.zones)  # the new server binds its zones when it is built
        try:
            server = await self.start_server(cycle)
        except Exception as exc:
            error_log().emerg(f"cannot start the HTTP server: {exc!r}")
            close_sockets([s for s in cycle.listeners.sockets() if id(s) not in kept], unlink_unix=False)
            cycle.error_log.close()
            zone.install(old.zones)
            cycle.zones.close(keep=cycle.reused_zones)
            return
        close_sockets(leftovers, unlink_unix=True)
        previous_log = set_error_log(cycle.error_log)
        redirect_stderr(cycle.error_log)
        previous_log.close()
        for warning in cycle.warnings:
            error_log().warn(warning)
        if config.pid != old.config.pid:
            try:
                pidfile.write_pid(config.pid)
                pidfile.remove_if_ours(old.config.pid)
            except pidfile.PidFileError as exc:
                error_log().emerg(str(exc))
        self.cycle = cycle
        previous, self.server = self.server, server
        if previous is not None:
            self.retired.add(previous)
            previous.begin_graceful_shutdown(close_idle=False)
            await self.drain(previous)
            self.retired.discard(previous)
        retire_zones(old, cycle)  # the old server is gone: its zones the new cycle did not take over

    async def drain(self, server: HttpServer) -> None:
        timeout = self.cycle.config.worker_shutdown_timeout
        try:
            await asyncio.wait_for(server.wait_closed(), timeout)
        except TimeoutError:
            server.close_all()

    async def quit(self) -> None:
        if self.quitting:
            return
        self.quitting = True
        servers = [s for s in [self.server, *self.retired] if s is not None]
        for server in servers:
            server.begin_graceful_shutdown(close_idle=True)
        await asyncio.gather(*(self.drain(s) for s in servers))
        self.finish(0)

    def terminate(self) -> None:
        for server in [self.server, *self.retired]:
            if server is not None:
                server.close_all()
        self.finish(0)

    def finish(self, code: int) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(code)

    def cleanup(self) -> None:
        pidfile.remove_if_ours(self.cycle.config.pid)
        self.cycle.listeners.close(unlink_unix=True)
        error_log().notice("exit")
