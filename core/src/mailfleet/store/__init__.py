"""Stores of the mailing engine: open one from ``deployment.store`` (a path or a URL).

``base`` holds the interface and the records it passes, ``sql`` the SQL both stores share
(written once), ``sqlite`` and ``postgres`` only what differs per database (the bulk insert,
the claim and its locking, recovery, the heartbeat, the journal's commit, the quota windows
their ledger triggers keep), ``leases`` when a dispatcher counts as gone.
"""

from __future__ import annotations

import os
import re

from mailfleet.errors import ConfigError
from mailfleet.store.base import Store
from mailfleet.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "open_store"]

_URL_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")


def open_store(location: str | os.PathLike[str]) -> Store:
    """The store at ``location``: a ``postgresql://`` (or ``postgres://``) URL opens a
    :class:`~mailfleet.store.postgres.PostgresStore` (needs ``mailfleet[postgresql]``),
    anything else is a SQLite file path."""
    text = os.fspath(location)
    if text.startswith(("postgresql://", "postgres://")):
        try:
            from mailfleet.store.postgres import PostgresStore
        except ImportError as exc:
            if exc.name and not exc.name.startswith("psycopg"):
                raise  # a real bug, not a missing driver (psycopg without libpq has no name)
            shown = _URL_PASSWORD.sub(r"\1***@", text)
            raise ConfigError(f"deployment.store: {shown!r}: the PostgreSQL store needs psycopg;"
                              f" install it with: pip install 'mailfleet[postgresql]'") from None
        return PostgresStore(text)
    return SqliteStore(text)
