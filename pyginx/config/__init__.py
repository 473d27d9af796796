"""pyginx's configuration: YAML in nginx's terms -> the frozen model in model.py.

    load_config(path, prefix) -> MainConfig   parse, validate, resolve, merge; raises ConfigError
    config_dump(cfg) -> str                   the text `-T` prints after a successful test

Pure: reads the file and resolves host names, nothing else (no sockets are opened).

The names are loaded on first use: importing any part of the configuration code (the model, the
parsers a module declares its directives with) must not pull in the loader, which reads the module
registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyginx.config.loader import dump as config_dump
    from pyginx.config.loader import load as load_config
    from pyginx.config.model import MainConfig

__all__ = ["MainConfig", "config_dump", "load_config"]


def __getattr__(name: str) -> Any:
    if name in ("load_config", "config_dump"):
        from pyginx.config import loader

        return loader.load if name == "load_config" else loader.dump
    if name == "MainConfig":
        from pyginx.config.model import MainConfig

        return MainConfig
    raise AttributeError(name)
