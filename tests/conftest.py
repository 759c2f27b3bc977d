"""Load the mailfleet fixtures unless the installed ``pytest11`` entry point already did."""

import importlib.metadata
import os

_PLUGIN = "mailfleet_testing.pytest_plugin"


def _autoloaded() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == _PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))


pytest_plugins = [] if _autoloaded() else [_PLUGIN]
