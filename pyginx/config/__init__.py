"""pyginx's configuration: YAML in nginx's terms -> the frozen model in model.py.

    load_config(path, prefix) -> MainConfig   parse, validate, resolve, merge; raises ConfigError
    config_dump(cfg) -> str                   the text `-T` prints after a successful test

Pure: reads the file and resolves host names, nothing else (no sockets are opened).
"""

from __future__ import annotations

from pyginx.config.loader import dump as config_dump
from pyginx.config.loader import load as load_config
from pyginx.config.model import MainConfig

__all__ = ["MainConfig", "config_dump", "load_config"]
