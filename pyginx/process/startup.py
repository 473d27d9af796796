"""Running the server: from a loaded configuration to a master (or single) process that serves.

nginx's order: sockets and logs are opened while the terminal still sees errors; then the process
detaches (daemon), writes its pid file, sends stderr to the error log, and enters its cycle.
Start-up errors are printed as `pyginx: [emerg] ...` and give exit status 1.
"""

from __future__ import annotations

import os
import platform
import resource
import signal
import sys

from pyginx import __version__, zone
from pyginx.config.model import MainConfig
from pyginx.log import error_log, set_error_log
from pyginx.process import pidfile
from pyginx.process.cycle import StartupError, build_cycle, open_error_log, redirect_stderr
from pyginx.process.daemon import daemonize
from pyginx.process.listeners import close_sockets
from pyginx.process.signals import MASTER_SIGNALS
from pyginx.process.upgrade import take_inherited

STARTUP_BIND_TRIES = 5  # nginx retries bind() on EADDRINUSE 5 times, 500 ms apart


def emerg(message: str) -> None:
    sys.stderr.write(f"pyginx: [emerg] {message}\n")
    sys.stderr.flush()


def serving_notice(config: MainConfig, pid: int) -> str:
    """The one line a foreground start prints (a pyginx extension: nginx says nothing): where it listens."""
    urls: list[str] = []
    if config.http is not None:
        for server in config.http.servers:
            for addr in server.listen:
                scheme = "https" if addr.ssl else "http"
                urls.append(str(addr) if addr.unix is not None else f"{scheme}://{addr}/")
    urls = list(dict.fromkeys(urls))
    if not urls:
        return f"pyginx: no server is configured, listening nowhere (pid {pid})"
    return f"pyginx: serving on {' '.join(urls)} (pid {pid})"


def say_where(config: MainConfig) -> None:
    try:
        sys.stderr.write(serving_notice(config, os.getpid()) + "\n")
        sys.stderr.flush()
    except OSError:
        pass  # no terminal to tell


def log_startup_error(config: MainConfig, message: str) -> None:
    """nginx writes a start-up emerg (`bind() ... failed (98: Address already in use)`) to its error log
    as well as to the terminal: the log is where an operator looks once the terminal is gone."""
    if config.error_log.path is None:
        return  # stderr: already said
    try:
        log = open_error_log(config)
    except StartupError:
        return  # the error log itself cannot be opened: that is the message the terminal has
    try:
        log.emerg(message)
    finally:
        log.close()


def log_banner() -> None:
    log = error_log()
    log.notice(f"pyginx/{__version__}")
    log.notice(f"built with Python {platform.python_version()}")
    log.notice(f"OS: {platform.system()} {platform.release()}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    log.notice(f"getrlimit(RLIMIT_NOFILE): {soft}:{hard}")


def run_server(config: MainConfig) -> int:
    # From here on the signals of the table are blocked: one that arrives while we start (say a reload
    # right after the pid file appears) stays pending for the master's (or single process's) own loop,
    # instead of killing us with its default action.
    signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
    running = pidfile.running_pid(config.pid)
    if running is not None:
        emerg(f'pyginx is already running (pid {running} in "{config.pid}")')
        return 1
    inherited, inherited_env, problems = take_inherited()
    upgrade_parent = os.getppid() if inherited_env is not None else None
    try:
        cycle, leftovers = build_cycle(config, inherited, tries=STARTUP_BIND_TRIES)
    except StartupError as exc:
        emerg(str(exc))
        log_startup_error(config, str(exc))
        close_sockets(inherited, unlink_unix=False)
        return 1
    zone.install(cycle.zones)  # before any fork: workers and cache processes inherit the zones
    # Inherited sockets we do not listen on any more; the old master may still serve unix ones: keep files.
    close_sockets(leftovers, unlink_unix=False)
    set_error_log(cycle.error_log).close()
    log = error_log()
    for problem in problems:
        log.alert(problem)
    if inherited_env is not None:
        log.notice(f'using inherited sockets from "{inherited_env}"')
    for warning in cycle.warnings:
        log.warn(warning)
    if config.daemon and inherited_env is None:  # a new binary stays the old master's child
        try:
            daemonize()
        except OSError as exc:
            emerg(f"daemon() failed ({exc.errno}: {exc.strerror})")
            return 1
    try:
        pidfile.write_pid(config.pid)
    except pidfile.PidFileError as exc:
        emerg(str(exc))
        log.emerg(str(exc))
        cycle.listeners.close(unlink_unix=inherited_env is None)
        return 1
    if not config.daemon and inherited_env is None:
        say_where(config)
    redirect_stderr(cycle.error_log)
    log_banner()
    if cycle.user is not None:  # the workers will not necessarily be able to read the code
        from pyginx.process.preload import preload_package

        preload_package()
    if config.master_process:
        from pyginx.process.master import Master

        return Master(cycle, upgrade_parent).run()
    from pyginx.process.single import SingleProcess

    return SingleProcess(cycle).run()
