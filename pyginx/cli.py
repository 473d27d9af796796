"""The command line, nginx's flags: `pyginx [-p PREFIX] [-c FILE] [-t | -T] [-s SIGNAL] [-q] [-v | -V]`.

Only argument handling and nginx's wording live here; the server itself is pyginx.process.startup.
Messages go to stderr as nginx's do (`pyginx: [emerg] ...`); only -T's dump goes to stdout.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

import click

from pyginx import __version__
from pyginx.config.model import MainConfig
from pyginx.errors import ConfigError
from pyginx.process import pidfile
from pyginx.process.signals import command_names, signal_for_command

DEFAULT_CONF = "conf/pyginx.yaml"


def say(message: str) -> None:
    click.echo(f"pyginx: {message}", err=True)


def resolve_paths(prefix: str | None, conf: str | None) -> tuple[str, str]:
    """-p defaults to the current directory; a relative -c is under the prefix (as nginx's)."""
    prefix_abs = os.path.abspath(prefix if prefix else os.getcwd())
    conf_path = conf if conf else DEFAULT_CONF
    if not os.path.isabs(conf_path):
        conf_path = os.path.join(prefix_abs, conf_path)
    return prefix_abs, os.path.normpath(conf_path)


def load(conf: str, prefix: str) -> MainConfig:
    """load_config with file-system errors in nginx's words too; raises ConfigError."""
    from pyginx.config import load_config

    try:
        return load_config(conf, prefix)
    except OSError as exc:
        raise ConfigError(f'open() "{exc.filename or conf}" failed ({exc.errno}: {exc.strerror})') from exc


def show_version(full: bool) -> None:
    click.echo(f"pyginx version: pyginx/{__version__}", err=True)
    if not full:
        return
    click.echo(f"built with {platform.python_implementation()} {platform.python_version()}", err=True)
    parts = []
    for dist in ("uvloop", "httptools", "PyYAML", "click", "setproctitle"):
        try:
            parts.append(f"{dist}/{metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    click.echo("with " + " ".join(parts), err=True)
    click.echo(f"configure arguments: --prefix={os.getcwd()}/ --conf-path={DEFAULT_CONF}", err=True)
    from pyginx.compiled import describe

    click.echo(describe(), err=True)


def test_config(conf: str, prefix: str, quiet: bool, dump: bool) -> int:
    from pyginx.process.cycle import StartupError, check_files, resolve_user
    from pyginx.tls.contexts import check_tls

    try:
        config = load(conf, prefix)
        check_files(config)
        resolve_user(config)
        for warning in (*config.warnings, *check_tls(config)):  # check_tls loads every certificate
            say(f"[warn] {warning}")
    except (ConfigError, StartupError) as exc:
        say(f"[emerg] {exc}")
        say(f"configuration file {conf} test failed")
        return 1
    if not quiet:
        say(f"the configuration file {conf} syntax is ok")
        say(f"configuration file {conf} test is successful")
    if dump:
        from pyginx.config import config_dump

        text = config_dump(config)
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    return 0


def send_signal(conf: str, prefix: str, command: str) -> int:
    """-s: signal the master named by the configuration's pid file."""
    try:
        config = load(conf, prefix)
    except ConfigError as exc:
        say(f"[emerg] {exc}")
        return 1
    try:
        pid = pidfile.read_pid(config.pid)
    except pidfile.PidFileError as exc:
        say(f"[error] {exc}")
        return 1
    sig = signal_for_command(command)
    try:
        os.kill(pid, sig)
    except OSError as exc:
        say(f"[alert] kill({pid}, {int(sig)}) failed ({exc.errno}: {exc.strerror})")
        return 1
    return 0


def run(conf: str, prefix: str) -> int:
    try:
        config = load(conf, prefix)
    except ConfigError as exc:
        say(f"[emerg] {exc}")
        return 1
    from pyginx.process.startup import run_server

    return run_server(config)


@click.command(
    context_settings={"help_option_names": ["-h", "-?"]},
    options_metavar="[-?hvVtTq] [-s SIGNAL] [-p PREFIX] [-c FILE]",
    help="pyginx: nginx's core re-made in Python. Without -s, -t or -T: run the server.",
)
@click.option("-p", "prefix", metavar="PREFIX", help="set the prefix path (default: the current directory)")
@click.option("-c", "conf", metavar="FILE", help=f"set the configuration file (default: {DEFAULT_CONF})")
@click.option("-t", "test", is_flag=True, help="test the configuration and exit")
@click.option("-T", "dump", is_flag=True, help="test the configuration, dump it and exit")
@click.option(
    "-s", "sig", metavar="SIGNAL", help="send a signal to the master process: " + ", ".join(command_names())
)
@click.option("-q", "quiet", is_flag=True, help="suppress non-error messages during configuration testing")
@click.option("-v", "version", is_flag=True, help="show version and exit")
@click.option("-V", "version_full", is_flag=True, help="show version and build information and exit")
def cli(
    prefix: str | None,
    conf: str | None,
    test: bool,
    dump: bool,
    sig: str | None,
    quiet: bool,
    version: bool,
    version_full: bool,
) -> None:
    if sig is not None and sig not in command_names():
        say(f'invalid option: "-s {sig}"')
        sys.exit(1)
    if version or version_full:
        show_version(version_full)
        if not (test or dump):
            sys.exit(0)
    prefix_abs, conf_path = resolve_paths(prefix, conf)
    if test or dump:
        sys.exit(test_config(conf_path, prefix_abs, quiet, dump))
    if sig is not None:
        sys.exit(send_signal(conf_path, prefix_abs, sig))
    sys.exit(run(conf_path, prefix_abs))


def main() -> None:
    cli(prog_name="pyginx")
