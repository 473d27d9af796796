"""The command line as nginx's: -t, -T, -q, -v, -V, -s errors, prefix and configuration paths."""

from __future__ import annotations

import os

from tests.integration.harness import (
    Pyginx,
    basic_config,
    pyginx_fixture,  # noqa: F401  (the `pyginx` fixture)
)


def test_t_ok(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    result = pyginx.run_cli("-t")
    conf = pyginx.prefix / "conf" / "pyginx.yaml"
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        f"pyginx: the configuration file {conf} syntax is ok",
        f"pyginx: configuration file {conf} test is successful",
    ]
    assert result.stdout == ""


def test_t_quiet(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    result = pyginx.run_cli("-t", "-q")
    assert result.returncode == 0
    assert result.stderr == ""


def test_t_error_names_file_and_line(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port).replace("root: html", "rooot: html"))
    result = pyginx.run_cli("-t", "-q")
    conf = pyginx.prefix / "conf" / "pyginx.yaml"
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f'pyginx: [emerg] unknown directive "rooot" in {conf}:')
    assert lines[-1] == f"pyginx: configuration file {conf} test failed"


def test_t_missing_file(pyginx: Pyginx) -> None:
    result = pyginx.run_cli("-t")
    assert result.returncode == 1
    assert "[emerg]" in result.stderr and "No such file or directory" in result.stderr
    assert "test failed" in result.stderr


def test_T_dumps_after_the_ok_lines(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    result = pyginx.run_cli("-T")
    assert result.returncode == 0
    assert "test is successful" in result.stderr
    assert f"127.0.0.1:{pyginx.port}" in result.stdout


def test_relative_c_resolves_against_prefix_and_p_defaults_to_cwd(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port), name="conf/other.yaml")
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pyginx", "-c", "conf/other.yaml", "-t"],
        cwd=pyginx.prefix,
        env=pyginx.env(),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert f"{pyginx.prefix}{os.sep}conf{os.sep}other.yaml syntax is ok" in result.stderr


def test_version(pyginx: Pyginx) -> None:
    result = pyginx.run_cli("-v")
    assert result.returncode == 0
    assert result.stderr.startswith("pyginx version: pyginx/")
    full = pyginx.run_cli("-V")
    assert "configure arguments:" in full.stderr


def test_s_errors(pyginx: Pyginx) -> None:
    pyginx.write_config(basic_config(pyginx.port))
    pid_path = pyginx.pid_path
    result = pyginx.run_cli("-s", "reload")
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f'pyginx: [error] open() "{pid_path}" failed (2: No such file or directory)'
    )
    pid_path.write_text("")
    result = pyginx.run_cli("-s", "reload")
    assert result.returncode == 1
    assert result.stderr.strip() == f'pyginx: [error] invalid PID number "" in "{pid_path}"'
    pid_path.write_text("999999\n")
    result = pyginx.run_cli("-s", "quit")
    assert result.returncode == 1
    assert "pyginx: [alert] kill(999999, 3) failed (3: No such process)" in result.stderr
    result = pyginx.run_cli("-s", "restart")
    assert result.returncode == 1
    assert 'invalid option: "-s restart"' in result.stderr


def test_s_with_broken_config_is_emerg(pyginx: Pyginx) -> None:
    pyginx.write_config("worker_processes: [\n")
    result = pyginx.run_cli("-s", "reload")
    assert result.returncode == 1
    assert result.stderr.startswith("pyginx: [emerg] ")
