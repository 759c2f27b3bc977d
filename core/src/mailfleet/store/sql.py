"""The SQL core of both stores: every statement whose meaning is the same on SQLite and
PostgreSQL, written once.

Statements are spelled the way SQLite reads them (``?`` placeholders) and only in SQL that
PostgreSQL reads the same way (upserts, ``RETURNING`` and ``FILTER``: SQLite 3.35 or later,
which the SQLite store needed already); the PostgreSQL store swaps the placeholders once per
statement. Text is ordered in Python (code point order, which is SQLite's ``BINARY`` and
PostgreSQL's ``"C"``), so every listing comes out the same on both. A backend supplies its
connection (:meth:`SqlStore._read`, :meth:`SqlStore._write`) and what really differs per
dialect: the bulk insert of letters, the claim and its locking, recovery, the journal's commit
(:meth:`SqlStore._record`), the heartbeat and the quota windows its ledger triggers keep.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from mailfleet.sending import identity
from mailfleet.store.base import (
    Holder,
    LetterRecord,
    MailingRecord,
    Outcome,
    Store,
    WorkerInfo,
    holder,
    worker_info,
)
from mailfleet.store.leases import LEASE_SECONDS


class Rows(Protocol):
    """What an executed statement gives back."""

    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Executor(Protocol):
    """Runs a statement of the core's spelling (``?`` placeholders)."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Rows: ...


_MAILING_COLS = ("id, name, created_at, state, template, message_id_domain, hold_in_data, "
                 "state_reason, total, rejected, tenant")
_LETTER_COLS = "seq, email, state, server, from_addr, attempts, last_error, sent_at"


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _mailing(row: Sequence[Any]) -> MailingRecord:
    mid, name, created, state, template, domain, hold, reason, total, rejected, tenant = row
    return MailingRecord(str(mid), str(name), float(created), str(state), json.loads(template),
                         str(domain), bool(hold), str(reason), int(total), int(rejected),
                         str(tenant))


def _domain(db: Executor, mailing_id: str) -> str:
    """The Message-ID domain of a mailing (``invalid`` once it is gone)."""
    found = db.execute("SELECT message_id_domain FROM mailings WHERE id=?",
                       (mailing_id,)).fetchone()
    return "invalid" if found is None else str(found[0])


def _letter(mailing_id: str, domain: str, row: Sequence[Any]) -> LetterRecord:
    """A :class:`LetterRecord` from a row of :data:`_LETTER_COLS`."""
    seq, email, state, server, from_addr, attempts, error, sent_at = row
    letter = identity.letter_id(mailing_id, int(seq))
    return LetterRecord(letter, mailing_id, str(email), str(state), _text(server),
                        _text(from_addr), identity.message_id(letter, domain), int(attempts),
                        _text(error), None if sent_at is None else float(sent_at))


class SqlStore(Store):
    """The methods both stores share; a backend subclasses it with its dialect's part."""

    host: str

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Executor]:
        """Statements that only read (no write lock taken)."""

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Executor]:
        """One write transaction: committed on exit, rolled back on an error."""

    @abc.abstractmethod
    def _record(self, sending: Sequence[int], outcomes: Sequence[Outcome], now: float,
                settled: Sequence[int], committed: Callable[[], None] | None) -> None:
        """The commit of :meth:`record` when it has something to write; ``committed`` runs
        the moment the dialect can tell the commit is no longer undone by this process dying."""

    def record(self, sending: Sequence[int], outcomes: Sequence[Outcome], now: float, *,
               settled: Sequence[int] = (),
               committed: Callable[[], None] | None = None) -> None:
        if sending or outcomes or settled:
            self._record(sending, outcomes, now, settled, committed)
        elif committed is not None:
            committed()

    # -- mailings -----------------------------------------------------------------------
    def create_mailing(self, mailing: MailingRecord) -> None:
        with self._write() as db:
            db.execute(f"INSERT INTO mailings ({_MAILING_COLS}) "  # noqa: S608
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (mailing.id, mailing.name, mailing.created_at, mailing.state,
                        json.dumps(mailing.template), mailing.message_id_domain,
                        mailing.hold_in_data, mailing.state_reason, mailing.total,
                        mailing.rejected, mailing.tenant))

    def finish_creation(self, mailing_id: str, total: int, rejected: int) -> None:
        with self._write() as db:
            db.execute("UPDATE mailings SET state='active', total=?, rejected=? WHERE id=?",
                       (total, rejected, mailing_id))

    def delete_mailing(self, mailing_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM letters WHERE mailing_id=?", (mailing_id,))
            db.execute("DELETE FROM mailings WHERE id=?", (mailing_id,))

    def get_mailing(self, mailing_id: str) -> MailingRecord | None:
        with self._read() as db:
            row = db.execute(f"SELECT {_MAILING_COLS} FROM mailings WHERE id=?",  # noqa: S608
                             (mailing_id,)).fetchone()
        return _mailing(row) if row else None

    def list_mailings(self, states: Sequence[str] | None = None) -> list[MailingRecord]:
        with self._read() as db:
            rows = db.execute(f"SELECT {_MAILING_COLS} FROM mailings").fetchall()  # noqa: S608
        found = sorted((_mailing(r) for r in rows), key=lambda m: (m.created_at, m.id))
        return [m for m in found if states is None or m.state in states]

    def set_mailing_state(self, mailing_id: str, state: str, reason: str = "") -> None:
        with self._write() as db:
            db.execute("UPDATE mailings SET state=?, state_reason=? WHERE id=?",
                       (state, reason, mailing_id))

    def cancel_mailing(self, mailing_id: str, now: float) -> None:
        with self._write() as db:
            db.execute("UPDATE mailings SET state='cancelled', state_reason='cancelled' "
                       "WHERE id=?", (mailing_id,))
            db.execute("UPDATE letters SET state='skipped', last_error='mailing cancelled' "
                       "WHERE mailing_id=? AND state IN ('queued','held')", (mailing_id,))

    def release_held(self, mailing_id: str) -> int:
        with self._write() as db:
            return db.execute("UPDATE letters SET state='queued' WHERE mailing_id=? AND "
                              "state='held'", (mailing_id,)).rowcount

    def counts(self, mailing_id: str) -> dict[str, int]:
        with self._read() as db:
            rows = db.execute("SELECT state, COUNT(*) FROM letters WHERE mailing_id=? "
                              "GROUP BY state", (mailing_id,)).fetchall()
        return {str(state): int(n) for state, n in rows}

    def by_server(self, mailing_id: str) -> dict[str, int]:
        with self._read() as db:
            rows = db.execute("SELECT server, COUNT(*) FROM letters WHERE mailing_id=? AND "
                              "state IN ('sent','bounced') GROUP BY server",
                              (mailing_id,)).fetchall()
        return dict(sorted((str(server), int(n)) for server, n in rows))

    def complete_finished(self) -> list[str]:
        """Mark active mailings with nothing left to send as done."""
        with self._write() as db:
            rows = db.execute(
                "UPDATE mailings SET state='done' WHERE state='active' AND NOT EXISTS (SELECT 1 "
                "FROM letters l WHERE l.mailing_id=mailings.id AND l.state IN "
                "('queued','claimed','sending','held')) RETURNING id, created_at").fetchall()
        return [mid for _, mid in sorted((float(at), str(mid)) for mid, at in rows)]

    # -- dispatching ----------------------------------------------------------------------
    def register_dispatcher(self, dispatcher_id: str, now: float,
                            servers: Sequence[str] = ()) -> None:
        with self._write() as db:
            db.execute(*self._registration(dispatcher_id, now, servers))

    def _registration(self, dispatcher_id: str, now: float, servers: Sequence[str]
                      ) -> tuple[str, tuple[Any, ...]]:
        """The statement that registers (or renews) a dispatcher of this process."""
        return ("INSERT INTO dispatchers (id, host, pid, seen_at, started_at, servers) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET host=excluded.host, "
                "pid=excluded.pid, seen_at=excluded.seen_at, servers=excluded.servers",
                (dispatcher_id, self.host, os.getpid(), now, now, ",".join(servers)))

    def unregister_dispatcher(self, dispatcher_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM dispatchers WHERE id=?", (dispatcher_id,))

    def workers(self, now: float, *, lease: float = LEASE_SECONDS) -> list[WorkerInfo]:
        with self._read() as db:
            rows = db.execute(
                "SELECT d.id, d.host, d.pid, d.started_at, d.seen_at, d.servers, "
                "(SELECT COUNT(*) FROM letters l WHERE l.claimed_by=d.id AND "
                "l.state='claimed'), (SELECT COUNT(*) FROM letters l WHERE l.claimed_by=d.id "
                "AND l.state='sending') FROM dispatchers d").fetchall()
        return sorted((worker_info(row, self.host, lease, now) for row in rows),
                      key=lambda w: (w.started_at, w.id))

    def holders(self, mailing_id: str | None, now: float, *,
                lease: float = LEASE_SECONDS) -> list[Holder]:
        with self._read() as db:
            rows = db.execute(
                "SELECT l.claimed_by, d.host, d.pid, d.seen_at, "
                "COUNT(*) FILTER (WHERE l.state='claimed'), "
                "COUNT(*) FILTER (WHERE l.state='sending') FROM letters l LEFT JOIN "
                "dispatchers d ON d.id=l.claimed_by WHERE l.claimed_by IS NOT NULL AND "
                "(CAST(? AS TEXT) IS NULL OR l.mailing_id=?) "
                "GROUP BY l.claimed_by, d.host, d.pid, d.seen_at",
                (mailing_id, mailing_id)).fetchall()
        return sorted((holder(row, self.host, lease, now) for row in rows),
                      key=lambda h: h.dispatcher)

    # -- quota ----------------------------------------------------------------------------
    def block_server(self, server: str, until: float, reason: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO server_blocks (server, until, reason) VALUES (?,?,?) "
                       "ON CONFLICT (server) DO UPDATE SET until=excluded.until, "
                       "reason=excluded.reason", (server, until, reason))

    def unblock_server(self, server: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM server_blocks WHERE server=?", (server,))
            db.execute("DELETE FROM server_breakers WHERE server=?", (server,))

    def server_failed(self, server: str, now: float, reason: str,
                      rest: Callable[[int], float]) -> tuple[int, float]:
        with self._write() as db:
            failures = int(db.execute(
                "INSERT INTO server_breakers (server, failures, last_at) VALUES (?, 1, ?) "
                "ON CONFLICT (server) DO UPDATE SET failures=server_breakers.failures+1, "
                "last_at=excluded.last_at RETURNING failures", (server, now)).fetchone()[0])
            until = now + rest(failures)
            db.execute(
                "INSERT INTO server_blocks (server, until, reason) VALUES (?,?,?) ON CONFLICT "
                "(server) DO UPDATE SET until=CASE WHEN excluded.until > server_blocks.until "
                "THEN excluded.until ELSE server_blocks.until END, reason=excluded.reason",
                (server, until, reason))
        return failures, until

    def server_recovered(self, server: str) -> None:
        with self._read() as db:
            if db.execute("SELECT 1 FROM server_breakers WHERE server=?",
                          (server,)).fetchone() is None:
                return  # the usual case: no failures to forget, no write lock taken
        with self._write() as db:
            db.execute("DELETE FROM server_breakers WHERE server=?", (server,))

    # -- suppression ----------------------------------------------------------------------
    def suppress(self, email: str, reason: str, now: float, source: str = "manual") -> None:
        with self._write() as db:
            db.execute("INSERT INTO suppression (email, reason, added_at, source) "
                       "VALUES (?,?,?,?) ON CONFLICT (email) DO UPDATE SET "
                       "reason=excluded.reason, added_at=excluded.added_at, "
                       "source=excluded.source", (email.lower(), reason, now, source))

    def unsuppress(self, email: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM suppression WHERE email=?",
                              (email.lower(),)).rowcount > 0

    def is_suppressed(self, email: str) -> bool:
        with self._read() as db:
            return db.execute("SELECT 1 FROM suppression WHERE email=?",
                              (email.lower(),)).fetchone() is not None

    def suppressed(self) -> list[tuple[str, str, float, str]]:
        with self._read() as db:
            rows = db.execute("SELECT email, reason, added_at, source FROM suppression"
                              ).fetchall()
        return sorted((str(a), str(b), float(c), str(d)) for a, b, c, d in rows)

    # -- bounces --------------------------------------------------------------------------
    def find_letter(self, letter_id: str) -> LetterRecord | None:
        key = identity.parse_letter_id(letter_id)
        if key is None:
            return None
        with self._read() as db:
            row = db.execute(f"SELECT {_LETTER_COLS} FROM letters WHERE mailing_id=? AND "  # noqa: S608
                             "seq=?", key).fetchone()
            domain = _domain(db, key[0])
        return None if row is None else _letter(key[0], domain, row)

    def mark_bounced(self, letter_id: str, *, hard: bool, reason: str, status: str | None,
                     diagnostic: str | None, now: float) -> bool:
        key = identity.parse_letter_id(letter_id)
        if key is None:
            return False
        error = f"bounced ({'hard' if hard else 'soft'}): {reason}" + (
            f" {status}" if status else "")
        with self._write() as db:
            row = db.execute("UPDATE letters SET state='bounced', last_error=? WHERE "
                             "mailing_id=? AND seq=? RETURNING id, email",
                             (error, *key)).fetchone()
            if row is None:
                return False
            db.execute("INSERT INTO bounces (letter_id, email, hard, reason, status, "
                       "diagnostic, at) VALUES (?,?,?,?,?,?,?)",
                       (row[0], row[1], hard, reason, status, diagnostic, now))
        return True

    def count_soft_bounces(self, email: str, since: float) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM bounces WHERE email=? AND hard=FALSE "
                                  "AND at>=?", (email.lower(), since)).fetchone()[0])

    def kv_get(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def kv_set(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT INTO kv (key, value) VALUES (?,?) "
                       "ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))

    # -- one-off letters and listings -------------------------------------------------------
    def charge(self, server: str, now: float) -> None:
        with self._write() as db:
            db.execute("INSERT INTO ledger (server, at, letter_id, settled) VALUES "
                       "(?, ?, NULL, TRUE)", (server, now))

    def letters(self, mailing_id: str, states: Sequence[str] | None = None, after: int = 0,
                limit: int = 1000) -> list[LetterRecord]:
        wanted = tuple(states or ())
        among = f" AND state IN ({', '.join('?' * len(wanted))})" if wanted else ""
        with self._read() as db:
            domain = _domain(db, mailing_id)
            rows = db.execute(f"SELECT {_LETTER_COLS} FROM letters WHERE mailing_id=? AND "  # noqa: S608
                              f"seq>?{among} ORDER BY seq LIMIT ?",
                              (mailing_id, after, *wanted, limit)).fetchall()
        return [_letter(mailing_id, domain, row) for row in rows]
