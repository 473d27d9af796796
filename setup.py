"""Optional compiled build: `make compiled` (PYGINX_COMPILE=1 python setup.py build_ext --inplace).

The package is pure Python and complete without it. With PYGINX_COMPILE=1, the modules of the request
hot path (pyginx/_compiled_modules.txt) are compiled by mypyc into extension modules placed beside their
sources; Python imports an extension module in preference to the .py of the same name, so the compiled
code is used as soon as it is built, and `make clean-compiled` goes back to the pure package. Without
the variable this file is an ordinary setuptools shim (the metadata is in pyproject.toml).
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def _compiled_extensions() -> list[object]:
    from mypyc.build import mypycify

    names = (HERE / "pyginx" / "_compiled_modules.txt").read_text().split()
    paths = [str(Path("pyginx", *name.split(".")[1:]).with_suffix(".py")) for name in names]
    # separate: one extension per module, so that the C compiles run in parallel (build_ext -j)
    return mypycify(paths, opt_level="3", separate=True)


if os.environ.get("PYGINX_COMPILE") == "1":
    setup(ext_modules=_compiled_extensions())
else:
    setup()
