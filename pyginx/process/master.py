"""The master process: spawn, reap, respawn, reload, upgrade, noaccept, shutdown — driven by flags.

As nginx's ngx_master_process_cycle, without an event loop or threads: the handled signals stay blocked
and are collected with sigtimedwait (the race-free sigsuspend, with a timeout for the master's timers).
Every collected signal is logged and turned into a flag outside any handler; after each wake-up the
flags are handled in nginx's order: reap, terminate, quit, reconfigure, restart, reopen, change_binary,
noaccept. Timers (TERM escalation, heartbeat checks, delayed respawns, deferred retirement) only need
the wait's timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass, field

from pyginx import zone
from pyginx.log import error_log
from pyginx.process import pidfile, reload, sdnotify, worker
from pyginx.process.cacheprocs import CacheProcesses
from pyginx.process.channel import Channel, Command
from pyginx.process.cycle import (
    Cycle,
    prepare_log_files,
    redirect_stderr,
    retire_zones,
)
from pyginx.process.heartbeat import INTERVAL as HEARTBEAT_INTERVAL
from pyginx.process.heartbeat import Heartbeat
from pyginx.process.proctitle import master_title, set_title
from pyginx.process.signals import BY_SIGNUM, MASTER_SIGNALS, describe
from pyginx.process.throttle import RespawnThrottle
from pyginx.process.upgrade import spawn_new_binary

TICK = 1.0  # the longest sleep: heartbeats are checked at least this often
TERM_FIRST_DELAY = 0.05  # nginx re-sends TERM after 50 ms, doubling ...
TERM_KILL_AFTER = 1.0  # ... and sends KILL once the delay has grown past a second (~1.5 s in all)
READY_WAIT = 3.0  # after a reload, old workers retire once the new ones serve, or after this long


@dataclass
class WorkerProc:
    pid: int
    slot: int
    generation: int
    channel: Channel
    beat: Heartbeat
    exiting: bool = False  # told to quit or retire: never respawned
    killed: bool = False  # SIGKILLed by the heartbeat check


@dataclass
class ExitStatus:
    """What a reaped child's wait status means to the master (pure: unit-tested)."""

    level: str
    message: str
    fatal: bool = False  # exit code 2: do not respawn
    extra: list[str] = field(default_factory=list)


def describe_exit(name: str, pid: int, status: int) -> ExitStatus:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        return ExitStatus("alert", f"{name} {pid} exited on signal {sig}{core}")
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    if code == 0:
        return ExitStatus("notice", f"{name} {pid} exited with code 0")
    out = ExitStatus("alert", f"{name} {pid} exited with code {code}")
    if code == worker.EXIT_FATAL:
        out.fatal = True
        out.extra.append(f"{name} {pid} exited with fatal code {code} and cannot be respawned")
    return out


class Master:
    def __init__(self, cycle: Cycle, upgrade_parent: int | None = None) -> None:
        self.cycle = cycle
        self.upgrade_parent = upgrade_parent  # pid of the old master that exec'd us, while it lives
        self.workers: dict[int, WorkerProc] = {}
        self.generation = 0
        self.flags: set[str] = set()
        self.terminating = False
        self.term_delay = TERM_FIRST_DELAY
        self.term_next = 0.0
        self.quitting = False
        self.noaccepting = False
        self.new_binary = 0
        self.vacant: list[int] = []  # slots of the current generation waiting for a respawn
        self.respawn_at = 0.0
        self.throttle = RespawnThrottle(burst=max(10, 2 * cycle.workers))
        self.retiring: list[WorkerProc] = []  # old generation, retired once the new one serves
        self.retire_deadline = 0.0
        self.last_check = time.monotonic()  # the previous heartbeat check
        self.heartbeat_grace = 0.0  # no heartbeat verdict before this time
        self.cache = CacheProcesses()  # the cache manager and loader, with a proxy_cache_path
        self.ready_pending = True  # systemd (sd_notify): READY=1 once the current workers all serve

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # never SIG_IGN: that would auto-reap workers
        set_title(master_title())
        try:
            worker.preload()
        except Exception as exc:  # workers report it properly; the master only loses the warm import
            error_log().warn(f"cannot preload the HTTP server: {exc!r}")
        self.start_workers()
        self.cache.start(self.cycle, loader=True)
        while True:
            self.wait(self.timeout())
            now = time.monotonic()
            if "reap" in self.flags:
                self.flags.discard("reap")
                self.reap()
            if not self.workers and not self.cache and (self.terminating or self.quitting):
                return self.exit()
            if "terminate" in self.flags or self.terminating:
                self.flags.discard("terminate")
                self.terminate(now)
                continue
            if "quit" in self.flags or self.quitting:
                self.flags.discard("quit")
                self.quit()
                self.check_heartbeats(now)
                continue
            if "reconfigure" in self.flags:
                self.flags.discard("reconfigure")
                self.reconfigure()
            if "restart" in self.flags:
                self.flags.discard("restart")
                self.start_workers()
            if "reopen" in self.flags:
                self.flags.discard("reopen")
                self.reopen()
            if "change_binary" in self.flags:
                self.flags.discard("change_binary")
                self.change_binary()
            if "noaccept" in self.flags:
                self.flags.discard("noaccept")
                self.noaccept()
            self.check_retiring(now)
            self.check_heartbeats(now)
            self.respawn_due(now)
            self.cache.spawn_due(now, self.inherited_by_children())
            if self.ready_pending:
                self.notify_ready()

    def notify_ready(self) -> None:
        current = self.current_workers()
        if current and all(p.beat.ready() for p in current):
            self.ready_pending = False
            sdnotify.ready(f"{len(current)} worker processes")

    def timeout(self) -> float:
        now = time.monotonic()
        deadlines = [now + TICK]
        if self.terminating:
            deadlines.append(self.term_next)
        if self.vacant:
            deadlines.append(self.respawn_at)
        if self.retiring:
            deadlines.append(min(self.retire_deadline, now + 0.05))  # poll readiness briefly
        elif self.ready_pending:
            deadlines.append(now + 0.05)  # systemd's READY=1 waits for the workers' first beat
        cache_due = self.cache.next_due()
        if cache_due is not None:
            deadlines.append(cache_due)
        return max(0.0, min(deadlines) - now)

    def wait(self, timeout: float) -> None:
        """Collect every pending signal (the first one waited for), log it, raise its flag."""
        info = signal.sigtimedwait(MASTER_SIGNALS, timeout)
        while info is not None:
            self.on_signal(info.si_signo, info.si_pid)
            info = signal.sigtimedwait(MASTER_SIGNALS, 0)

    def on_signal(self, signo: int, sender: int) -> None:
        spec = BY_SIGNUM.get(signo)
        if spec is None:
            return
        action = spec.master_action
        flag: str | None = spec.master_flag
        if flag == "change_binary" and (self.new_binary or self.upgrade_parent_alive()):
            action, flag = "ignoring", None  # one upgrade at a time (nginx's rule)
        error_log().notice(describe(signo, sender, action))
        if flag is not None:
            self.flags.add(flag)

    def upgrade_parent_alive(self) -> bool:
        if self.upgrade_parent is None:
            return False
        if os.getppid() != self.upgrade_parent:
            self.upgrade_parent = None  # the old master is gone: we may be upgraded in turn
            return False
        return True

    # ------------------------------------------------------------------ workers

    def start_workers(self) -> None:
        from pyginx.compiled import stale_modules

        stale = stale_modules()
        if stale:
            # Python prefers the built extension over the edited source: the old code would run
            error_log().warn(f"compiled modules older than their sources run old code: {', '.join(stale)}")
        error_log().notice("start worker processes")
        for slot in range(self.cycle.workers):
            self.spawn(slot)

    def spawn(self, slot: int) -> WorkerProc | None:
        channel = Channel()
        beat = Heartbeat()
        mine = {id(s) for s in self.cycle.listeners.for_worker(slot).values()}
        not_mine: list[socket.socket] = [s for s in self.cycle.listeners.sockets() if id(s) not in mine]
        not_mine += [w.channel.master_end for w in self.workers.values()]
        try:
            pid = os.fork()
        except OSError as exc:
            channel.close()
            beat.close()
            error_log().alert(f'fork() failed while spawning "worker process" ({exc.errno}: {exc.strerror})')
            self.schedule_respawn(slot)
            return None
        if pid == 0:
            try:
                worker.run(self.cycle, slot, channel.in_worker(), beat, not_mine)
            finally:
                os._exit(worker.EXIT_FATAL)
        channel.in_master()
        proc = WorkerProc(pid, slot, self.generation, channel, beat)
        self.workers[pid] = proc
        error_log().notice(f"start worker process {pid}")
        return proc

    def inherited_by_children(self) -> list[socket.socket]:
        """What a forked child inherits but must not keep: listening sockets, the workers' channels."""
        return [*self.cycle.listeners.sockets(), *(w.channel.master_end for w in self.workers.values())]

    def send(self, proc: WorkerProc, command: Command) -> None:
        """Through the channel; if it is broken, the nearest signal (nginx's fallback to kill())."""
        if proc.channel.send(command):
            return
        sig = {
            Command.QUIT: signal.SIGQUIT,
            Command.RETIRE: signal.SIGQUIT,
            Command.TERMINATE: signal.SIGTERM,
            Command.REOPEN: signal.SIGUSR1,
        }[command]
        self.kill(proc.pid, sig)

    def kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except OSError as exc:
            error_log().alert(f"kill({pid}, {sig}) failed ({exc.errno}: {exc.strerror})")

    def stop_workers(self, command: Command, procs: list[WorkerProc] | None = None) -> None:
        for proc in list(self.workers.values()) if procs is None else procs:
            if proc.pid in self.workers:
                proc.exiting = True
                self.send(proc, command)

    # ------------------------------------------------------------------ reap and respawn

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.workers.pop(pid, None)
            if proc is not None:
                self.worker_exited(proc, status)
            elif self.cache.reaped(pid, status, self.terminating or self.quitting):
                pass
            elif pid == self.new_binary:
                self.new_binary_exited(pid, status)
            else:
                # Not ours: as PID 1 of a container (or a child subreaper) the master inherits every
                # orphan of its namespace and must reap it, or zombies pile up. nginx's words.
                info = describe_exit("unknown process", pid, status)
                error_log().notice(info.message)

    def worker_exited(self, proc: WorkerProc, status: int) -> None:
        info = describe_exit("worker process", proc.pid, status)
        error_log().log(info.level, info.message)
        for line in info.extra:
            error_log().alert(line)
        proc.channel.close()
        proc.beat.close()
        if proc in self.retiring:
            self.retiring.remove(proc)
        respawn = not (
            proc.exiting
            or info.fatal
            or self.terminating
            or self.quitting
            or self.noaccepting
            or proc.generation != self.generation
        )
        if respawn:
            self.schedule_respawn(proc.slot)

    def schedule_respawn(self, slot: int) -> None:
        now = time.monotonic()
        when = self.throttle.next_allowed(now)
        if when > now and not self.vacant:
            error_log().alert(f"worker processes respawn too fast, next respawn in {when - now:.1f}s")
        self.vacant.append(slot)
        self.respawn_at = max(self.respawn_at, when) if len(self.vacant) > 1 else when

    def respawn_due(self, now: float) -> None:
        if not self.vacant or now < self.respawn_at:
            return
        slots, self.vacant = self.vacant, []
        for slot in slots:
            self.throttle.record(now)
            self.spawn(slot)

    def new_binary_exited(self, pid: int, status: int) -> None:
        info = describe_exit("new binary process", pid, status)
        error_log().log(info.level, info.message)
        path = self.cycle.config.pid
        try:
            pidfile.rename(pidfile.oldbin_path(path), path)
        except pidfile.PidFileError as exc:
            error_log().alert(str(exc))
        self.new_binary = 0
        if self.noaccepting:
            self.noaccepting = False
            self.flags.add("restart")

    def check_heartbeats(self, now: float) -> None:
        limit = self.cycle.config.worker_heartbeat_timeout
        gap, self.last_check = now - self.last_check, now
        if gap > 3 * TICK:
            # We did not run for a while ourselves (SIGSTOP of the whole group, a suspended VM): the
            # workers were frozen too, so their stale stamps prove nothing. Let them stamp again first.
            self.heartbeat_grace = now + 3 * HEARTBEAT_INTERVAL
        if not limit or limit <= 0 or now < self.heartbeat_grace:
            return
        for proc in self.workers.values():
            if proc.killed:
                continue
            silent = proc.beat.silent_for(now)
            if silent > limit:
                error_log().alert(
                    f"worker process {proc.pid} is stuck (no heartbeat for {limit:g}s), killing it"
                )
                proc.killed = True
                self.kill(proc.pid, signal.SIGKILL)

    # ------------------------------------------------------------------ terminate and quit

    def terminate(self, now: float) -> None:
        if not self.terminating:
            self.terminating = True
            sdnotify.stopping()
            self.vacant = []
            for proc in self.workers.values():
                proc.exiting = True
                self.kill(proc.pid, signal.SIGTERM)
            self.cache.stop(signal.SIGTERM)
            self.term_delay = TERM_FIRST_DELAY
            self.term_next = now + self.term_delay
            return
        if now < self.term_next:
            return
        sig = signal.SIGKILL if self.term_delay > TERM_KILL_AFTER else signal.SIGTERM
        for proc in self.workers.values():
            if sig == signal.SIGKILL:
                error_log().alert(f"worker process {proc.pid} did not exit on SIGTERM, sending SIGKILL")
            self.kill(proc.pid, sig)
        for pid in self.cache.procs:
            self.kill(pid, sig)
        self.term_delay *= 2
        self.term_next = now + self.term_delay

    def quit(self) -> None:
        if self.quitting:
            return
        self.quitting = True
        sdnotify.stopping()
        self.vacant = []
        self.stop_workers(Command.QUIT)
        self.cache.stop(signal.SIGQUIT)
        # Stop listening now: the kernel refuses new connections instead of queueing them for nobody
        # (a new binary has its own copies of the sockets).
        self.cycle.listeners.close(unlink_unix=not self.new_binary)

    def exit(self) -> int:
        path = self.cycle.config.pid
        if self.new_binary:
            pidfile.remove_if_ours(pidfile.oldbin_path(path))
        else:
            pidfile.remove_if_ours(path)
        self.cycle.listeners.close(unlink_unix=not self.new_binary)
        error_log().notice("exit")
        return 0

    # ------------------------------------------------------------------ reload

    def reconfigure(self) -> None:
        if self.new_binary:
            # nginx's rollback path: bring workers back from the current configuration, unread.
            if self.noaccepting or not self.current_workers():
                self.noaccepting = False
                self.start_workers()
            else:
                error_log().notice(
                    f"new binary process {self.new_binary} is running, configuration not re-read"
                )
            return
        sdnotify.reloading()
        self.ready_pending = True  # READY=1 again once the new workers serve (or the old ones go on)
        old = self.cycle
        fresh = reload.reread(old, master_process=True)
        if fresh is None:
            return
        cycle, leftovers = fresh
        reload.switch_logs_and_pid(old, cycle, leftovers)
        self.cycle = cycle
        zone.install(cycle.zones)
        retire_zones(old, cycle)
        self.noaccepting = False
        self.generation += 1
        self.vacant = []
        old_workers = [p for p in self.workers.values() if not p.exiting]
        self.start_workers()
        self.cache.start(cycle, loader=False)
        for proc in old_workers:
            proc.exiting = True
        self.retiring.extend(old_workers)
        self.retire_deadline = time.monotonic() + READY_WAIT

    def current_workers(self) -> list[WorkerProc]:
        return [p for p in self.workers.values() if p.generation == self.generation and not p.exiting]

    def check_retiring(self, now: float) -> None:
        """Retire the old generation once every new worker serves (or READY_WAIT passed): until then
        the old workers keep accepting, so a slow start of the new ones costs no latency."""
        if not self.retiring:
            return
        current = self.current_workers()
        if now < self.retire_deadline and (not current or not all(p.beat.ready() for p in current)):
            return
        procs, self.retiring = self.retiring, []
        for proc in procs:
            if proc.pid in self.workers:
                self.send(proc, Command.RETIRE)

    # ------------------------------------------------------------------ logs, upgrade, noaccept

    def reopen(self) -> None:
        log = error_log()
        log.reopen()
        redirect_stderr(log)
        prepare_log_files(self.cycle.config, self.cycle.user)  # new files, owned by the worker user
        for proc in self.workers.values():
            self.send(proc, Command.REOPEN)

    def change_binary(self) -> None:
        path = self.cycle.config.pid
        oldbin = pidfile.oldbin_path(path)
        try:
            pidfile.rename(path, oldbin)
        except pidfile.PidFileError as exc:
            error_log().alert(str(exc))
            return
        try:
            self.new_binary = spawn_new_binary(self.cycle.listeners.fds())
        except OSError as exc:
            error_log().alert(
                f'fork() failed while spawning "new binary process" ({exc.errno}: {exc.strerror})'
            )
            try:
                pidfile.rename(oldbin, path)
            except pidfile.PidFileError as exc2:
                error_log().alert(str(exc2))
            return
        error_log().notice(f"start new binary process {self.new_binary}")

    def noaccept(self) -> None:
        """WINCH: the workers stop accepting and drain; the master keeps the sockets (for the new binary).
        Beyond nginx, they drain as after a reload (RETIRE): an idle keep-alive connection gets its next
        request answered with `Connection: close` instead of being closed under its client, so the
        switch to a new binary loses no request either."""
        self.noaccepting = True
        self.vacant = []
        self.stop_workers(Command.RETIRE)
