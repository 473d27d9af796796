"""The modules' exit_worker hooks drop the per-configuration memos of their handlers (issue 10: the
state that lives as long as one configuration in one worker goes with it)."""

from __future__ import annotations

from typing import Any

from pyginx.handlers import proxy_cache, proxy_plan, static
from pyginx.modules import proxy as proxy_module
from pyginx.modules import static as static_module


def test_static_exit_worker_forgets_the_answers() -> None:
    memos: list[dict[Any, Any]] = [static._answers, static._answerable, static._uncached]
    for i, memo in enumerate(memos):
        memo[("probe", i)] = object()
    assert static_module.MODULE.exit_worker is not None
    static_module.MODULE.exit_worker(None)
    assert all(("probe", i) not in memo for i, memo in enumerate(memos))


def test_proxy_exit_worker_forgets_the_plans() -> None:
    memos: list[dict[Any, Any]] = [proxy_plan._plans, proxy_plan._hash_keys, proxy_cache._plans]
    for i, memo in enumerate(memos):
        memo[("probe", i)] = object()
    assert proxy_module.MODULE.exit_worker is not None
    proxy_module.MODULE.exit_worker(None)
    assert all(("probe", i) not in memo for i, memo in enumerate(memos))
