"""Suite-wide checks."""

from __future__ import annotations

import pytest

from pyginx.compiled import compiled_modules, stale_modules


def pytest_configure(config: pytest.Config) -> None:
    stale = stale_modules()
    if stale:
        # the extension modules would be imported instead of the edited sources: the tests would
        # check old code. `make compiled` rebuilds them, `make clean-compiled` removes them.
        raise pytest.UsageError(f"compiled modules older than their sources: {', '.join(stale)}")


def pytest_report_header(config: pytest.Config) -> str:
    built = compiled_modules()
    return f"pyginx: {len(built)} compiled modules" if built else "pyginx: pure Python"
