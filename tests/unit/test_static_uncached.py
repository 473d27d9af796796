"""The uncached static path (open_file_cache off): every request sees the file as it is now, and the
per-inode memory of "inside the root" never lets a swapped-in symlink out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyginx.handlers.filecache import probe_uncached
from pyginx.handlers.paths import PathError, Policy


def test_each_probe_reads_the_file_as_it_is_now(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_bytes(b"one")
    first = probe_uncached(str(f), str(tmp_path), Policy())
    assert first.body == b"one" and first.size == 3
    f.write_bytes(b"second")
    os.utime(f, (1_000_000, 1_000_000))
    second = probe_uncached(str(f), str(tmp_path), Policy())
    assert second.body == b"second" and second.size == 6 and second.etag != first.etag
    assert first.body == b"one"  # a probe's answer is its own


def test_a_symlink_swapped_in_after_a_verified_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    f = root / "f.txt"
    f.write_bytes(b"public")
    assert probe_uncached(str(f), str(root), Policy()).body == b"public"
    f.unlink()
    f.symlink_to(outside)
    with pytest.raises(PathError) as err:
        probe_uncached(str(f), str(root), Policy())
    assert err.value.status == 403
