"""The master's bookkeeping of the cache processes (no fork): what is respawned, and when."""

from __future__ import annotations

import os

from pyginx.process.cacheprocs import LOADER, MANAGER, CacheProc, CacheProcesses

KILLED = 9  # a wait status: killed by SIGKILL
CLEAN = 0  # exited with code 0
FAILED = 1 << 8  # exited with code 1


def procs(*kinds: str) -> CacheProcesses:
    cp = CacheProcesses()
    cp.generation = 1
    for pid, kind in enumerate(kinds, start=4_000_000):
        cp.procs[pid] = CacheProc(pid, kind, 1)
    return cp


def test_a_dead_manager_is_respawned_a_loader_only_if_it_failed() -> None:
    assert os.WIFSIGNALED(KILLED) and os.WEXITSTATUS(FAILED) == 1
    cp = procs(MANAGER, LOADER, LOADER)
    assert cp.reaped(4_000_000, KILLED, stopping=False) and MANAGER in cp.pending
    cp.pending.clear()
    assert cp.reaped(4_000_001, CLEAN, stopping=False) and not cp.pending  # the loader's work is done
    assert cp.reaped(4_000_002, FAILED, stopping=False) and LOADER in cp.pending
    assert not cp.reaped(123, CLEAN, stopping=False)  # not ours


def test_nothing_is_respawned_while_stopping_or_from_an_old_generation() -> None:
    cp = procs(MANAGER, MANAGER)
    assert cp.reaped(4_000_000, KILLED, stopping=True) and not cp.pending
    cp.generation = 2  # a reload replaced it
    assert cp.reaped(4_000_001, KILLED, stopping=False) and not cp.pending
    assert not cp
