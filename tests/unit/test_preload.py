"""The master loads all of pyginx before workers drop privileges (pyginx/process/preload.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_preload_imports_the_lazily_loaded_runtime() -> None:
    # a fresh interpreter: in this one the test suite may have imported everything already
    code = (
        "import sys\n"
        "from pyginx.process.preload import preload_package\n"
        "assert 'pyginx.handlers.static' not in sys.modules\n"
        "n = preload_package()\n"
        "assert 'pyginx.handlers.static' in sys.modules and 'pyginx.handlers.proxy' in sys.modules\n"
        "assert 'pyginx.__main__' not in sys.modules\n"
        "print(n)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert int(out.stdout) > 100
