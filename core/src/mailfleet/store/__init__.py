"""Stores of the mailing engine: open one from ``deployment.store`` (a path or a URL)."""

from __future__ import annotations

import os

from mailfleet.errors import ConfigError
from mailfleet.store.base import Store
from mailfleet.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "open_store"]


def open_store(location: str | os.PathLike[str]) -> Store:
    """The store at ``location``: a SQLite file path (PostgreSQL URLs are not supported yet)."""
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"deployment.store: {text.split('@')[-1]!r}: the PostgreSQL store is "
                          f"not available yet; use a SQLite file path")
    return SqliteStore(text)
