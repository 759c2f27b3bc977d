"""Load the mailfleet fixtures unless the installed ``pytest11`` entry point already did."""

import importlib.metadata
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfleet.store.base import Store
from mailfleet.store.sqlite import SqliteStore

_PLUGIN = "mailfleet_testing.pytest_plugin"


def _autoloaded() -> bool:
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    return any(ep.value == _PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))


pytest_plugins = [] if _autoloaded() else [_PLUGIN]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind: the store contract holds for both."""
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path / "store.db")
    else:
        from mailfleet.store.postgres import PostgresStore
        opened = PostgresStore(request.getfixturevalue("pg_dsn"))
    try:
        yield opened
    finally:
        opened.close()
