"""Process titles as nginx shows them in ps: `pyginx: master process ...`, `pyginx: worker process`.

setproctitle is a dependency, but a missing or broken module must never stop the server: titles are
cosmetic, so the import is guarded and failures are ignored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

_setter: Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _setter
except Exception:  # ImportError, or a broken build of the C extension
    _setter = None


def set_title(title: str) -> None:
    if _setter is None:
        return
    try:
        _setter(title)
    except Exception:
        pass


def command_line() -> str:
    """The command line as the user typed it, `python -m pyginx` form included."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        argv[0] = f"{sys.executable} -m pyginx"
    return " ".join(argv)


def master_title() -> str:
    return f"pyginx: master process {command_line()}"


WORKER_TITLE = "pyginx: worker process"
WORKER_EXITING_TITLE = "pyginx: worker process is shutting down"
