"""Pid file: nginx's messages, atomic writes, removal only while it holds our pid."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyginx.process import pidfile


def test_read_errors_in_nginx_words(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "pyginx.pid"
    with pytest.raises(pidfile.PidFileError) as missing:
        pidfile.read_pid(str(path))
    assert str(missing.value) == f'open() "{path}" failed (2: No such file or directory)'
    path.parent.mkdir()
    for content, shown in (("", ""), ("abc\n", "abc"), ("0\n", "0"), ("-5", "-5")):
        path.write_text(content)
        with pytest.raises(pidfile.PidFileError) as bad:
            pidfile.read_pid(str(path))
        assert str(bad.value) == f'invalid PID number "{shown}" in "{path}"'
    path.write_text("1234\r\n")
    assert pidfile.read_pid(str(path)) == 1234


def test_write_creates_directory_and_remove_only_if_ours(tmp_path: Path) -> None:
    path = str(tmp_path / "run" / "p.pid")
    pidfile.write_pid(path)
    assert pidfile.read_pid(path) == os.getpid()
    assert os.listdir(tmp_path / "run") == ["p.pid"]  # no temp file left behind
    pidfile.write_pid(path, 424242)
    assert not pidfile.remove_if_ours(path)
    assert os.path.exists(path)
    pidfile.write_pid(path)
    assert pidfile.remove_if_ours(path)
    assert not os.path.exists(path)
    assert not pidfile.remove_if_ours(path)


def test_running_pid_ignores_stale_and_self(tmp_path: Path) -> None:
    path = str(tmp_path / "p.pid")
    assert pidfile.running_pid(path) is None
    pidfile.write_pid(path, os.getpid())
    assert pidfile.running_pid(path) is None  # a file naming us is stale by definition
    pidfile.write_pid(path, 2**22 + 7)  # above pid_max defaults: no such process
    assert pidfile.running_pid(path) is None


def test_oldbin_rename(tmp_path: Path) -> None:
    path = str(tmp_path / "p.pid")
    pidfile.write_pid(path)
    pidfile.rename(path, pidfile.oldbin_path(path))
    assert pidfile.read_pid(path + ".oldbin") == os.getpid()
    with pytest.raises(pidfile.PidFileError) as exc:
        pidfile.rename(path, path + ".x")
    assert str(exc.value).startswith(f'rename() "{path}" to "{path}.x" failed (2: ')
