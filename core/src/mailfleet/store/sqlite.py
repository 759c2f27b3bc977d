"""The SQLite store: WAL mode, short transactions, batched state updates.

Claims run in ``BEGIN IMMEDIATE`` transactions that check the quota and charge the ledger in
the same step, so every dispatcher sharing the file counts exactly. ``synchronous=NORMAL``
with WAL survives a killed process (kill -9); a power loss may lose the last commits. The
statements it shares with the PostgreSQL store are in :mod:`mailfleet.store.sql`.
"""

from __future__ import annotations

import functools
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from mailfleet.plugins.providers import Limits
from mailfleet.sending.quota import QuotaStatus, remaining_now, window_status
from mailfleet.store.base import Claim, LetterRow, Outcome, Recovery, fair_share, take
from mailfleet.store.leases import HELD_IN_DATA, LEASE_SECONDS, RESENT_IN_DATA, dead_dispatchers
from mailfleet.store.sql import SqlStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailings (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL, state TEXT NOT NULL,
    template TEXT NOT NULL, message_id_domain TEXT NOT NULL, hold_in_data INTEGER NOT NULL,
    state_reason TEXT NOT NULL DEFAULT '', total INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0, tenant TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS letters (
    id INTEGER PRIMARY KEY, mailing_id TEXT NOT NULL, seq INTEGER NOT NULL,
    email TEXT NOT NULL, fields TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, server TEXT, from_addr TEXT,
    claimed_by TEXT, claimed_at REAL, sent_at REAL, not_before REAL);
CREATE UNIQUE INDEX IF NOT EXISTS letters_address ON letters (mailing_id, email);
CREATE INDEX IF NOT EXISTS letters_state ON letters (mailing_id, state, id);
CREATE INDEX IF NOT EXISTS letters_seq ON letters (mailing_id, seq);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY, server TEXT NOT NULL, at REAL NOT NULL, letter_id INTEGER,
    settled INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS ledger_window ON ledger (server, at);
CREATE INDEX IF NOT EXISTS ledger_open ON ledger (letter_id) WHERE settled = 0;
-- Charges per server and minute, kept by triggers: counting a window sums at most 1,440 of
-- these plus the ledger rows of one partial minute, however many letters went that day.
CREATE TABLE IF NOT EXISTS ledger_minutes (
    server TEXT NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (server, minute)) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS ledger_charged AFTER INSERT ON ledger BEGIN
    INSERT INTO ledger_minutes VALUES (NEW.server, CAST(NEW.at / 60 AS INTEGER), 1)
    ON CONFLICT (server, minute) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS ledger_refunded AFTER DELETE ON ledger BEGIN
    UPDATE ledger_minutes SET n = n - 1
    WHERE server = OLD.server AND minute = CAST(OLD.at / 60 AS INTEGER);
END;
CREATE TRIGGER IF NOT EXISTS ledger_moved AFTER UPDATE OF server, at ON ledger BEGIN
    UPDATE ledger_minutes SET n = n - 1
    WHERE server = OLD.server AND minute = CAST(OLD.at / 60 AS INTEGER);
    INSERT INTO ledger_minutes VALUES (NEW.server, CAST(NEW.at / 60 AS INTEGER), 1)
    ON CONFLICT (server, minute) DO UPDATE SET n = n + 1;
END;
CREATE TABLE IF NOT EXISTS server_blocks (
    server TEXT PRIMARY KEY, until REAL NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS suppression (
    email TEXT PRIMARY KEY, reason TEXT NOT NULL, added_at REAL NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bounces (
    id INTEGER PRIMARY KEY, letter_id INTEGER NOT NULL, email TEXT NOT NULL,
    hard INTEGER NOT NULL, reason TEXT NOT NULL, status TEXT, diagnostic TEXT, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS bounces_email ON bounces (email, hard, at);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dispatchers (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, seen_at REAL NOT NULL,
    started_at REAL NOT NULL DEFAULT 0, servers TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS letters_owner ON letters (claimed_by) WHERE claimed_by IS NOT NULL;
-- The circuit breaker of each server: consecutive failures (the block is in server_blocks).
CREATE TABLE IF NOT EXISTS server_breakers (
    server TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_at REAL NOT NULL);
"""


class SqliteStore(SqlStore):
    """The default store, one SQLite file (``deployment.store``)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # a bounded 16 MiB page cache and checkpoints every ~40 MB of WAL: a large mailing's
        # index pages stay cached while it is created (faster inserts), memory stays flat
        self.db.execute("PRAGMA cache_size=-16384")
        self.db.execute("PRAGMA wal_autocheckpoint=10000")
        self.db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self.db.executescript(SCHEMA)
        for table, column in (("dispatchers", "started_at REAL NOT NULL DEFAULT 0"),
                              ("dispatchers", "servers TEXT NOT NULL DEFAULT ''"),
                              ("mailings", "tenant TEXT NOT NULL DEFAULT ''")):
            found = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
            if column.split()[0] not in found:  # a store made before workers and tenants
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        self.host = socket.gethostname()

    @contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return nullcontext(self.db)  # autocommit: a read takes no lock and opens no transaction

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._tx()

    def close(self) -> None:
        self.db.close()

    # -- mailings -----------------------------------------------------------------------
    def add_letters(self, mailing_id: str, rows: Sequence[tuple[int, str, str]]) -> int:
        with self._tx():
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO letters (mailing_id, seq, email, fields) VALUES (?,?,?,?)",
                [(mailing_id, seq, email, fields) for seq, email, fields in rows])
            return self.db.total_changes - before

    # -- dispatching ----------------------------------------------------------------------
    def recover(self, now: float, *, lease: float = LEASE_SECONDS,
                hold_in_doubt: bool = False) -> Recovery:
        with self._tx():
            rows = self.db.execute("SELECT id, host, pid, seen_at FROM dispatchers").fetchall()
            dead = set(dead_dispatchers(rows, self.host, now, lease))
            live = {r[0] for r in rows}
            dead |= {str(r[0]) for r in self.db.execute(
                "SELECT DISTINCT claimed_by FROM letters WHERE claimed_by IS NOT NULL"
            ).fetchall() if r[0] not in live}
            requeued = resent = held = 0
            for did in sorted(dead):
                self.db.execute(
                    "DELETE FROM ledger WHERE settled=0 AND letter_id IN (SELECT id FROM letters"
                    " WHERE claimed_by=? AND state='claimed')", (did,))
                requeued += self.db.execute(
                    "UPDATE letters SET state='queued', claimed_by=NULL WHERE claimed_by=? AND "
                    "state='claimed'", (did,)).rowcount
                self.db.execute(
                    "UPDATE ledger SET settled=1 WHERE settled=0 AND letter_id IN (SELECT id "
                    "FROM letters WHERE claimed_by=? AND state='sending')", (did,))
                held += self.db.execute(
                    "UPDATE letters SET state='held', claimed_by=NULL, attempts=attempts+1, "
                    "last_error=? WHERE claimed_by=? AND state='sending' AND (? OR mailing_id IN"
                    " (SELECT id FROM mailings WHERE hold_in_data=1))",
                    (HELD_IN_DATA, did, int(hold_in_doubt))).rowcount
                resent += self.db.execute(
                    "UPDATE letters SET state='queued', claimed_by=NULL, attempts=attempts+1, "
                    "not_before=NULL, last_error=? WHERE claimed_by=? AND state='sending'",
                    (RESENT_IN_DATA, did)).rowcount
                self.db.execute("DELETE FROM dispatchers WHERE id=?", (did,))
        return Recovery(requeued, resent, held)

    def _active_mailings(self, mailing_ids: Sequence[str] | None,
                         tenant: str | None = None) -> list[tuple[str, str]]:
        """``(id, tenant)`` of the active mailings, oldest first."""
        rows = self.db.execute("SELECT id, tenant FROM mailings WHERE state='active' AND "
                               "(? IS NULL OR tenant=?) ORDER BY created_at, id",
                               (tenant, tenant)).fetchall()
        return [(str(m), str(t)) for m, t in rows if mailing_ids is None or m in mailing_ids]

    def _block(self, server: str, now: float) -> tuple[float, str] | None:
        row = self.db.execute("SELECT until, reason FROM server_blocks WHERE server=?",
                              (server,)).fetchone()
        if row is None or row[0] <= now:
            return None
        return float(row[0]), str(row[1])

    def _used(self, server: str, start: float) -> int:
        """Charges of ``server`` later than ``start``: whole minutes from ``ledger_minutes``,
        the partial first minute from the ledger. The minute of a time is computed in SQL
        exactly as the triggers compute it, so the two parts never overlap or leave a gap."""
        row = self.db.execute(
            "SELECT (SELECT COALESCE(SUM(n), 0) FROM ledger_minutes WHERE server=:s AND "
            "minute > CAST(:t / 60 AS INTEGER)) + (SELECT COUNT(*) FROM ledger WHERE "
            "server=:s AND at > :t AND at < :t + 120 AND "
            "CAST(at / 60 AS INTEGER) <= CAST(:t / 60 AS INTEGER))",
            {"s": server, "t": start}).fetchone()
        return int(row[0])

    def _nth(self, server: str, start: float, k: int) -> float | None:
        row = self.db.execute("SELECT at FROM ledger WHERE server=? AND at>? ORDER BY at "
                              "LIMIT 1 OFFSET ?", (server, start, k - 1)).fetchone()
        return float(row[0]) if row else None

    def claim(self, dispatcher_id: str, server: str, limits: Limits, count: int, now: float,
              mailing_ids: Sequence[str] | None = None, *, tenant: str | None = None
              ) -> Claim:
        with self._tx():
            # the heartbeat; re-registers a dispatcher whose row a recover() removed meanwhile
            self.db.execute("INSERT INTO dispatchers (id, host, pid, seen_at, started_at) "
                            "VALUES (?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                            "seen_at = excluded.seen_at",
                            (dispatcher_id, self.host, os.getpid(), now, now))
            block = self._block(server, now)
            if block is not None:
                return Claim(reason="blocked", until=block[0])
            remaining, frees = remaining_now(limits, now,
                                               functools.partial(self._used, server),
                                               functools.partial(self._nth, server))
            if remaining is not None and remaining <= 0:
                return Claim(reason="spent", until=frees)
            want = count if remaining is None else min(count, remaining)
            found: list[tuple[str, LetterRow]] = []
            suppressed: set[int] = set()
            for mailing, owner in self._active_mailings(mailing_ids, tenant):
                for lid, seq, email, fields, attempts, dead in self.db.execute(
                        "SELECT l.id, l.seq, l.email, l.fields, l.attempts, EXISTS (SELECT 1 "
                        "FROM suppression s WHERE s.email = lower(l.email)) FROM letters l "
                        "WHERE l.mailing_id=? AND l.state='queued' AND (l.not_before IS NULL "
                        "OR l.not_before <= ?) ORDER BY l.id LIMIT ?", (mailing, now, want)):
                    found.append((owner, LetterRow(lid, mailing, seq, email, fields,
                                                   attempts)))
                    if dead:
                        suppressed.add(lid)
            letters, skipped = take(fair_share(found), suppressed, want)
            if skipped:
                self.db.executemany(
                    "UPDATE letters SET state='skipped', last_error='suppressed' WHERE id=?",
                    [(r.id,) for r in skipped])
            if letters:
                self.db.executemany(
                    "UPDATE letters SET state='claimed', claimed_by=?, claimed_at=?, server=? "
                    "WHERE id=?", [(dispatcher_id, now, server, r.id) for r in letters])
                self.db.executemany(
                    "INSERT INTO ledger (server, at, letter_id) VALUES (?,?,?)",
                    [(server, now, r.id) for r in letters])
            return Claim(tuple(letters), tuple(skipped), "" if letters or skipped else "empty")

    def _record(self, sending: Sequence[int], outcomes: Sequence[Outcome], now: float,
                settled: Sequence[int], committed: Callable[[], None] | None) -> None:
        with self._tx():
            if sending:
                self.db.executemany("UPDATE letters SET state='sending' WHERE id=? AND "
                                    "state='claimed'", [(i,) for i in sending])
            if outcomes:
                self.db.executemany(
                    "UPDATE letters SET state=?, server=?, from_addr=COALESCE(?, from_addr), "
                    "last_error=?, not_before=?, attempts=?, claimed_by=NULL, "
                    "sent_at=CASE WHEN ?='sent' THEN ? ELSE sent_at END WHERE id=?",
                    [(o.state, o.server, o.from_addr, o.error, o.not_before, o.attempts,
                      o.state, now, o.letter) for o in outcomes])
            kept = [(now, o.letter) for o in outcomes if o.charged and o.settle]
            kept += [(now, letter) for letter in settled]
            if kept:
                self.db.executemany("UPDATE ledger SET settled=1, at=? WHERE settled=0 AND "
                                    "letter_id=?", kept)
            refunds = [(o.letter,) for o in outcomes if not o.charged]
            if refunds:
                self.db.executemany("DELETE FROM ledger WHERE settled=0 AND letter_id=?",
                                    refunds)
        if committed is not None:
            committed()  # after COMMIT returned: SQLite's commit is the call itself

    def waiting(self, mailing_ids: Sequence[str] | None, now: float) -> tuple[int, float | None]:
        total = 0
        earliest: float | None = None
        for mailing, _ in self._active_mailings(mailing_ids):
            n, first = self.db.execute(
                "SELECT COUNT(*), MIN(CASE WHEN not_before > ? THEN not_before END) FROM "
                "letters WHERE mailing_id=? AND state IN ('queued','claimed','sending')",
                (now, mailing)).fetchone()
            total += int(n)
            if first is not None:
                earliest = float(first) if earliest is None else min(earliest, float(first))
        return total, earliest

    # -- quota ----------------------------------------------------------------------------
    def quota(self, server: str, limits: Limits, now: float) -> QuotaStatus:
        status = window_status(limits, now, functools.partial(self._used, server),
                                     functools.partial(self._nth, server))
        block = self._block(server, now)
        return QuotaStatus(server, status["minute"], status["hour"], status["day"],
                           block[0] if block else None, block[1] if block else None,
                           self._failures(server))

    def _failures(self, server: str) -> int:
        row = self.db.execute("SELECT failures FROM server_breakers WHERE server=?",
                              (server,)).fetchone()
        return 0 if row is None else int(row[0])
