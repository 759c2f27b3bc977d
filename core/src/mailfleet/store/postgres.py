"""The PostgreSQL store: many dispatchers on many machines share one database.

Same tables and semantics as the SQLite store. A claim serializes the quota check and the
charge per server with a transaction-scoped advisory lock, so the count is exact for every
dispatcher everywhere; letters are picked with ``FOR UPDATE SKIP LOCKED``, so dispatchers never
wait for each other's letters. One connection per store object, autocommit off, one short
transaction per method, never open across SMTP. The DSN's password is never shown.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hashlib
import os
import re
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar
from urllib.parse import unquote

import psycopg
import psycopg.adapt
from psycopg.conninfo import conninfo_to_dict

from mailfleet.clock import Clock, SystemClock
from mailfleet.errors import ConfigError, MailfleetError, StoreUnavailable
from mailfleet.plugins.providers import Limits
from mailfleet.sending.quota import QuotaStatus, remaining_now, window_status, windows
from mailfleet.store.base import (
    Claim,
    LetterRow,
    Outcome,
    Recovery,
    Wakeups,
    fair_share,
    take,
)
from mailfleet.store.leases import HELD_IN_DATA, LEASE_SECONDS, RESENT_IN_DATA, dead_dispatchers
from mailfleet.store.sql import SqlStore

T = TypeVar("T")
#: Marks a transaction's last statement: the event-loop driver sends COMMIT with it (the
#: row locks it takes are then held for its execution only, not a round trip more).
_LAST = "/* last */ "
#: A claim's last statement: skip the suppressed, hand over the letters, charge the quota.
_CHARGE = (_LAST + "WITH sk AS (UPDATE letters SET state='skipped', last_error='suppressed' "  # noqa: S608
           "WHERE id = ANY(%(skipped)s)), c AS (UPDATE letters SET state='claimed', "
           "claimed_by=%(d)s, claimed_at=%(now)s, server=%(s)s WHERE id = ANY(%(ids)s)) "
           "INSERT INTO ledger (server, at, letter_id) SELECT %(s)s, %(now)s, "
           "unnest(%(ids)s::bigint[])")
#: A transaction written once for the blocking and the event-loop drivers: it yields each
#: statement with its parameters and is sent back the rows and the row count.
Steps = Generator[tuple[str, Any], tuple[list[tuple[Any, ...]], int], T]

# Advisory lock namespaces (first key of the two-key form).
_LOCK_SCHEMA = 0x6D66_0001
_LOCK_QUOTA = 0x6D66_0002
_LOCK_RECOVER = 0x6D66_0003

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mailings (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL, template TEXT NOT NULL, message_id_domain TEXT NOT NULL,
    hold_in_data BOOLEAN NOT NULL, state_reason TEXT NOT NULL DEFAULT '',
    total BIGINT NOT NULL DEFAULT 0, rejected BIGINT NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS letters (
    id BIGSERIAL PRIMARY KEY, mailing_id TEXT NOT NULL, seq BIGINT NOT NULL,
    email TEXT NOT NULL, fields TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, server TEXT, from_addr TEXT,
    claimed_by TEXT, claimed_at DOUBLE PRECISION, sent_at DOUBLE PRECISION,
    not_before DOUBLE PRECISION);
CREATE UNIQUE INDEX IF NOT EXISTS letters_address ON letters (mailing_id, email);
CREATE INDEX IF NOT EXISTS letters_state ON letters (mailing_id, state, id);
CREATE INDEX IF NOT EXISTS letters_seq ON letters (mailing_id, seq);
CREATE INDEX IF NOT EXISTS letters_owner ON letters (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE TABLE IF NOT EXISTS ledger (
    id BIGSERIAL PRIMARY KEY, server TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
    letter_id BIGINT, settled BOOLEAN NOT NULL DEFAULT FALSE);
CREATE INDEX IF NOT EXISTS ledger_window ON ledger (server, at);
CREATE INDEX IF NOT EXISTS ledger_open ON ledger (letter_id) WHERE NOT settled;
-- Charges per server and minute (floor(at / 60)), kept by a trigger: counting a window sums
-- at most 1,440 of these plus the ledger rows of one partial minute.
CREATE TABLE IF NOT EXISTS ledger_minutes (
    server TEXT NOT NULL, minute BIGINT NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (server, minute));
-- Kept by statement-level triggers (one grouped write per statement, not one per charge).
CREATE OR REPLACE FUNCTION mailfleet_ledger_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_minutes
    SELECT server, floor(at / 60)::bigint, COUNT(*) FROM ledger_new GROUP BY 1, 2
    ON CONFLICT (server, minute) DO UPDATE SET n = ledger_minutes.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION mailfleet_ledger_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledger_minutes m SET n = m.n - d.n
    FROM (SELECT server, floor(at / 60)::bigint AS minute, COUNT(*) AS n FROM ledger_old
          GROUP BY 1, 2) d
    WHERE m.server = d.server AND m.minute = d.minute;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS ledger_minutes_kept ON ledger;
DROP FUNCTION IF EXISTS mailfleet_ledger_minutes();
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'ledger_minutes_added'
                   AND tgrelid = 'ledger'::regclass) THEN
        CREATE TRIGGER ledger_minutes_added AFTER INSERT ON ledger
        REFERENCING NEW TABLE AS ledger_new
        FOR EACH STATEMENT EXECUTE FUNCTION mailfleet_ledger_added();
        CREATE TRIGGER ledger_minutes_removed AFTER DELETE ON ledger
        REFERENCING OLD TABLE AS ledger_old
        FOR EACH STATEMENT EXECUTE FUNCTION mailfleet_ledger_removed();
        -- an update (a charge settled at its sending time) moves it between minutes
        CREATE TRIGGER ledger_minutes_moved_in AFTER UPDATE ON ledger
        REFERENCING NEW TABLE AS ledger_new
        FOR EACH STATEMENT EXECUTE FUNCTION mailfleet_ledger_added();
        CREATE TRIGGER ledger_minutes_moved_out AFTER UPDATE ON ledger
        REFERENCING OLD TABLE AS ledger_old
        FOR EACH STATEMENT EXECUTE FUNCTION mailfleet_ledger_removed();
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS server_blocks (
    server TEXT PRIMARY KEY, until DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS suppression (
    email TEXT PRIMARY KEY, reason TEXT NOT NULL, added_at DOUBLE PRECISION NOT NULL,
    source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bounces (
    id BIGSERIAL PRIMARY KEY, letter_id BIGINT NOT NULL, email TEXT NOT NULL,
    hard BOOLEAN NOT NULL, reason TEXT NOT NULL, status TEXT, diagnostic TEXT,
    at DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS bounces_email ON bounces (email, hard, at);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dispatchers (
    id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL);
ALTER TABLE dispatchers ADD COLUMN IF NOT EXISTS started_at DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE dispatchers ADD COLUMN IF NOT EXISTS servers TEXT NOT NULL DEFAULT '';
ALTER TABLE mailings ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT '';
-- Wake-ups for idle workers (LISTEN mailfleet): a mailing becomes active (created, resumed)
-- or a server's block ends early (unblocked). A notification is sent at commit.
CREATE OR REPLACE FUNCTION mailfleet_wake() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mailfleet', TG_TABLE_NAME);
    RETURN NULL;
END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'mailings_wake'
                   AND tgrelid = 'mailings'::regclass) THEN
        CREATE TRIGGER mailings_wake AFTER INSERT OR UPDATE OF state ON mailings
        FOR EACH ROW WHEN (NEW.state = 'active') EXECUTE FUNCTION mailfleet_wake();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'server_blocks_wake'
                   AND tgrelid = 'server_blocks'::regclass) THEN
        CREATE TRIGGER server_blocks_wake AFTER DELETE ON server_blocks
        FOR EACH STATEMENT EXECUTE FUNCTION mailfleet_wake();
    END IF;
END $$;
-- The circuit breaker of each server: consecutive failures (the block is in server_blocks).
CREATE TABLE IF NOT EXISTS server_breakers (
    server TEXT PRIMARY KEY, failures INTEGER NOT NULL, last_at DOUBLE PRECISION NOT NULL);
"""

#: Charges of server ``{s}`` later than time ``{t}`` (SQL expressions): whole minutes from
#: ``ledger_minutes``, the partial first minute from the ledger. The minute of a time is
#: computed exactly as the trigger computes it, so the two parts never overlap or leave a gap.
_USED = ("((SELECT COALESCE(SUM(n), 0) FROM ledger_minutes WHERE server={s} AND "
         "minute > floor({t} / 60)::bigint) + (SELECT COUNT(*) FROM ledger WHERE server={s} "
         "AND at > {t} AND at < (floor({t} / 60) + 2) * 60 AND "
         "floor(at / 60)::bigint <= floor({t} / 60)::bigint))")

#: A server's block and its charges after each of several window starts, in one statement.
_BLOCK_AND_USED = (
    "SELECT (SELECT until FROM server_blocks WHERE server=%(s)s), ARRAY(SELECT "  # noqa: S608
    + _USED.format(s="%(s)s", t="t.start")
    + " FROM unnest(%(starts)s::float8[]) WITH ORDINALITY AS t(start, o) ORDER BY o)")

#: The version of SCHEMA this code needs (kept in the ``meta`` table).
_SCHEMA_VERSION = hashlib.sha256(SCHEMA.encode()).hexdigest()[:16]

_URL_PASSWORD = re.compile(r"^[a-z]+://[^:/@?#]*:([^@/?#]*)@", re.IGNORECASE)
MASK = "***"


def _passwords(dsn: str) -> set[str]:
    """Every spelling of the password in ``dsn`` (raw and decoded), to be masked."""
    found: set[str] = set()
    match = _URL_PASSWORD.match(dsn)
    if match and match.group(1):
        found |= {match.group(1), unquote(match.group(1))}
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        found.add(str(password))
    for raw in re.findall(r"password=([^&\s]+)", dsn):
        found |= {raw.strip("'"), unquote(raw.strip("'"))}
    return {p for p in found if p}


def mask_dsn(dsn: str, text: str | None = None) -> str:
    """``text`` (default: the DSN itself) with the DSN's password replaced by ``***``."""
    out = dsn if text is None else text
    for password in sorted(_passwords(dsn), key=len, reverse=True):
        out = out.replace(password, MASK)
    return out


def _said(dsn: str, said: object) -> str:
    """What psycopg or the server said, on one line, without the DSN's password."""
    return " ".join(mask_dsn(dsn, str(said)).split())


class DatabaseClock(SystemClock):
    """This machine's clock moved onto the database's (the offset measured when the store
    opened): every worker on every machine counts quota windows on one clock."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


async def _ready(fd: int, *, write: bool = False) -> None:
    """Wait on the event loop until ``fd`` can be read (or written)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    if write:
        loop.add_writer(fd, ready.set_result, None)
    else:
        loop.add_reader(fd, ready.set_result, None)
    try:
        await ready
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class _Listener:
    """``LISTEN mailfleet`` on a connection of its own, read by the event loop."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]], location: str,
                 dsn: str) -> None:
        self.conn = conn
        self.location = location
        self.dsn = dsn
        conn.execute("LISTEN mailfleet")

    async def wait(self) -> None:
        pg = self.conn.pgconn
        while True:
            try:
                pg.consume_input()
            except psycopg.Error as exc:
                raise StoreUnavailable(f"the PostgreSQL store {self.location!r} lost the "
                                       f"connection that listened for new letters: "
                                       f"{_said(self.dsn, exc)}") from None
            if pg.notifies() is not None:
                while pg.notifies() is not None:  # the ones that came meanwhile count too
                    pass
                return
            if pg.status != psycopg.pq.ConnStatus.OK:
                raise StoreUnavailable(f"the PostgreSQL store {self.location!r} closed the "
                                       "connection that listened for new letters")
            await _ready(pg.socket)

    def close(self) -> None:
        self.conn.close()


#: The journal's commit, in parts (each only when it has rows: an empty part would still
#: fire the ledger's statement triggers): letters entering DATA (``s``), outcomes (``o``),
#: charges kept and settled at the commit's time (``k``), charges refunded (``r``).
_RECORD_PARTS = {
    "s": "s AS (UPDATE letters SET state='sending' WHERE id = ANY({sending}::bigint[]) AND "
         "state='claimed')",
    "o": "o AS (UPDATE letters l SET state=o.state, server=o.server, "
         "from_addr=COALESCE(o.from_addr, l.from_addr), last_error=o.error, "
         "not_before=o.not_before, attempts=o.attempts, claimed_by=NULL, "
         "sent_at=CASE WHEN o.state='sent' THEN {now}::float8 ELSE l.sent_at END "
         "FROM unnest({ids}::bigint[], {states}::text[], {servers}::text[], {froms}::text[], "
         "{errors}::text[], {later}::float8[], {attempts}::int[]) AS o(id, state, server, "
         "from_addr, error, not_before, attempts) WHERE l.id = o.id)",
    "k": "k AS (UPDATE ledger SET settled=TRUE, at={now}::float8 WHERE NOT settled AND "
         "letter_id = ANY({kept}::bigint[]))",
    "r": "r AS (DELETE FROM ledger WHERE NOT settled AND letter_id = ANY({refunds}::bigint[]))",
}
#: Its parameters, in the order of a prepared statement's ``$n``, with their type OIDs.
_RECORD_PARAMS = {"sending": 1016, "now": 701, "ids": 1016, "states": 1009, "servers": 1009,
                  "froms": 1009, "errors": 1009, "later": 1022, "attempts": 1007,
                  "kept": 1016, "refunds": 1016}


@functools.cache
def _record_sql(parts: str, *, numbered: bool) -> str:
    """The statement of these parts, with ``$n`` (a prepared statement) or ``%(name)s``."""
    marks = {name: f"${n}" if numbered else f"%({name})s"
             for n, name in enumerate(_RECORD_PARAMS, 1)}
    return ("WITH " + ", ".join(_RECORD_PARTS[p].format(**marks) for p in parts)
            + " SELECT 1")


class _Pipe:
    """The journal's connection in pipeline mode. Each commit goes out the moment it is
    made: one prepared statement (a generic plan, planned once per connection) and a sync,
    so it is a transaction of its own; replies are read in order by the event loop. The
    next commit never waits for the last one's reply, and they never wait on each other's
    locks: one server process runs them one after the other."""

    def __init__(self, conn: psycopg.AsyncConnection[tuple[Any, ...]], location: str,
                 dsn: str) -> None:
        self.conn = conn
        self.location = location
        self.dsn = dsn
        self.pg = conn.pgconn
        self.fd = self.pg.socket  # kept: a lost connection no longer says its socket
        self.dump = psycopg.adapt.Transformer(conn)
        self.prepared: set[str] = set()
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.errors: list[tuple[bytes, bytes]] = []  # (SQLSTATE, message) of a commit
        self.broken: StoreUnavailable | None = None
        self._writable: asyncio.Future[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.pg.enter_pipeline_mode()
        self.loop.add_reader(self.fd, self._read)

    async def commit(self, parts: str, params: dict[str, Any],
                     committed: Callable[[], None] | None) -> None:
        if self.broken is not None:
            raise self.broken
        name = f"mailfleet_record_{parts}".encode()
        pg = self.pg
        try:
            if parts not in self.prepared:
                pg.send_prepare(name, _record_sql(parts, numbered=True).encode(),
                                param_types=list(_RECORD_PARAMS.values()))
                self.prepared.add(parts)
            values = self.dump.dump_sequence([params[p] for p in _RECORD_PARAMS],
                                             [psycopg.adapt.PyFormat.TEXT] * len(params))
            pg.send_query_prepared(name, values)
            pg.pipeline_sync()
        except psycopg.Error as exc:
            raise self._fail(exc) from None
        done = self.loop.create_future()
        self.waiting.append(done)
        try:
            await self._flush()
        except BaseException:
            if done.done() and not done.cancelled():
                done.exception()  # failed with the connection: the caller hears it here
            raise
        if committed is not None:
            committed()
        await done

    async def _flush(self) -> None:
        """Wait until everything sent is out (the connection does not block)."""
        while True:
            if self.broken is not None:
                raise self.broken
            try:
                if not self.pg.flush():
                    return
            except psycopg.Error as exc:
                raise self._fail(exc) from None
            if self._writable is None:
                self._writable = self.loop.create_future()
                self.loop.add_writer(self.fd, self._can_write)
            await asyncio.shield(self._writable)

    def _can_write(self) -> None:
        self.loop.remove_writer(self.fd)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _read(self) -> None:
        """Every reply that has come: a commit is done at its sync, failed if any of its
        statements failed."""
        pg = self.pg
        try:
            pg.consume_input()
            while self.waiting and not pg.is_busy():
                result = pg.get_result()
                if result is None:  # the end of one statement's results
                    continue
                if result.status == psycopg.pq.ExecStatus.PIPELINE_SYNC:
                    done = self.waiting.popleft()
                    errors, self.errors = self.errors, []
                    if not done.done():
                        if errors:
                            done.set_exception(self._refused(errors))
                        else:
                            done.set_result(None)
                elif result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
                    self.errors.append((
                        result.error_field(psycopg.pq.DiagnosticField.SQLSTATE) or b"",
                        result.error_message or b"failed"))
        except psycopg.Error as exc:
            self._fail(exc)

    def _refused(self, errors: list[tuple[bytes, bytes]]) -> MailfleetError:
        """A commit the server refused: :class:`StoreUnavailable` when it may go through
        later (a deadlock, a serialization failure, the server shutting down or short of
        resources: SQLSTATE classes 40, 53, 57, 58), else the error it is (retrying would
        not help)."""
        said = "; ".join(message.decode(errors="replace") for _, message in errors)
        text = f"the PostgreSQL store {self.location!r} did not commit: {_said(self.dsn, said)}"
        if any(state[:2] in (b"40", b"53", b"57", b"58") for state, _ in errors):
            return StoreUnavailable(text)
        return MailfleetError(text)

    def _fail(self, exc: BaseException) -> StoreUnavailable:
        self.broken = StoreUnavailable(
            f"the PostgreSQL store {self.location!r} lost the journal's connection: "
            f"{_said(self.dsn, exc)}")
        while self.waiting:
            done = self.waiting.popleft()
            if not done.done():
                done.set_exception(self.broken)
        self.close()
        return self.broken

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.fd)
        with contextlib.suppress(Exception):
            self.loop.remove_writer(self.fd)
        if self.broken is None:
            self.broken = StoreUnavailable(f"the PostgreSQL store {self.location!r}: closed")
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # a commit waiting to be sent sees it broken
        self._writable = None
        if not self.conn.closed:  # no await here: close the socket alone
            self.pg.finish()


@functools.cache
def _spelled(sql: str) -> str:
    """A statement of the SQL core as psycopg reads it (``%s`` placeholders)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _CoreCursor:
    """Runs the SQL core's statements on a psycopg cursor."""

    def __init__(self, cur: psycopg.Cursor[tuple[Any, ...]]) -> None:
        self._cur = cur

    def execute(self, sql: str, parameters: Sequence[Any] = (), /
                ) -> psycopg.Cursor[tuple[Any, ...]]:
        return self._cur.execute(_spelled(sql), parameters)


class PostgresStore(SqlStore):
    """The store in a PostgreSQL database (``deployment.store = "postgresql://..."``)."""

    journal_depth = 4  # commits in flight on the pipeline, run back to back (see _Pipe)

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self.location = mask_dsn(dsn)
        if not psycopg.Pipeline.is_supported():  # the journal's connection is pipelined
            raise StoreUnavailable(
                f"the PostgreSQL store {self.location!r} needs libpq 14 or later, and psycopg "
                f"uses libpq {psycopg.pq.version()}; install the bundled one with "
                f"pip install 'psycopg[binary]', or upgrade the system's libpq")
        self.connect_timeout = connect_timeout
        self.host = socket.gethostname()
        self._lock = threading.RLock()
        self._async_conns: dict[str, psycopg.AsyncConnection[tuple[Any, ...]]] = {}
        self._async_locks: dict[str, asyncio.Lock] = {}
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._pipe: _Pipe | None = None
        self._pipe_opening: asyncio.Future[_Pipe] | None = None
        self.conn = self._connect()
        self._create_schema()
        self._clock = DatabaseClock(self._database_offset())

    def _create_schema(self) -> None:
        """Create or update the tables, once per schema version: the DDL takes table locks
        that would wait on (and deadlock with) running workers, so a store whose schema is
        current runs none of it."""
        with self._tx() as cur:
            if self._schema_current(cur):
                return
            cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_SCHEMA,))
            if self._schema_current(cur):  # another process made it meanwhile
                return
            cur.execute(SCHEMA.encode())
            cur.execute("INSERT INTO meta (key, value) VALUES ('schema', %s) ON CONFLICT (key) "
                        "DO UPDATE SET value=EXCLUDED.value", (_SCHEMA_VERSION,))

    @staticmethod
    def _schema_current(cur: psycopg.Cursor[tuple[Any, ...]]) -> bool:
        row = cur.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
        if not (row and row[0]):
            return False
        found = cur.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        return found is not None and found[0] == _SCHEMA_VERSION

    def _database_offset(self) -> float:
        """The database's clock minus this machine's, read at the middle of a round trip."""
        with self._tx() as cur:
            before = time.time()
            row = cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
            after = time.time()
        assert row is not None
        return float(row[0]) - (before + after) / 2

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    def _connect(self, *, autocommit: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return psycopg.connect(self._dsn, autocommit=autocommit,
                                   connect_timeout=max(1, int(self.connect_timeout)),
                                   application_name="mailfleet")
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"deployment.store: {self.location!r}: "
                              f"{_said(self._dsn, exc)}") from None
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the PostgreSQL store {self.location!r}: "
                                   f"{_said(self._dsn, exc)}") from None

    @contextmanager
    def _tx(self, committed: Callable[[], None] | None = None
            ) -> Iterator[psycopg.Cursor[tuple[Any, ...]]]:
        """One transaction (committed on exit, rolled back on error); reconnects a broken
        connection before starting. ``committed`` runs once COMMIT is on the wire, before its
        reply (see :meth:`Store.record`). The hot path's thread has a connection of its
        own on the event loop (:meth:`_async_tx`)."""
        with self._lock, self._reaching():
            conn = self.conn
            if conn.closed or conn.broken:
                conn = self.conn = self._connect()
            if committed is None:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
                return
            try:
                with conn.cursor() as cur:
                    yield cur
            except BaseException:
                conn.rollback()
                raise
            self._commit_then(conn, committed)

    def _commit_then(self, conn: psycopg.Connection[tuple[Any, ...]],
                     committed: Callable[[], None]) -> None:
        """COMMIT, run ``committed`` the moment the command has left (the server commits
        even if this process dies now), then wait for the reply."""
        pg = conn.pgconn
        pg.send_query(b"COMMIT")
        while pg.flush():  # a non-blocking connection: wait until the command is out
            select.select([], [pg.socket], [], 1.0)
        try:
            committed()
        finally:
            status: list[object] = []
            while (result := pg.get_result()) is not None:
                status.append((result.status, result.error_message))
        if (status != [(psycopg.pq.ExecStatus.COMMAND_OK, b"")]
                or pg.transaction_status != psycopg.pq.TransactionStatus.IDLE):
            raise StoreUnavailable(f"the PostgreSQL store {self.location!r} did not commit: "
                                   f"{mask_dsn(self._dsn, repr(status))}")

    @contextlib.asynccontextmanager
    async def _async_tx(self, lane: str
                        ) -> AsyncIterator[psycopg.AsyncCursor[tuple[Any, ...]]]:
        """:meth:`_tx` on the event loop, on the connection of ``lane``: the loop serves the
        SMTP sessions while the database works."""
        async with self._lane_lock(lane):
            with self._reaching():
                conn = await self._lane(lane)
                try:
                    async with conn.cursor() as cur:
                        yield cur
                except BaseException:
                    if not conn.broken and not conn.closed:
                        await conn.rollback()
                    raise
                await conn.commit()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """A connection-level failure (connection lost, the server shutting down, a
        deadlock or a cancelled statement) as :class:`StoreUnavailable`: the call may be
        made again; the next one reconnects."""
        try:
            yield
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"the PostgreSQL store {self.location!r} failed: "
                                   f"{_said(self._dsn, exc)}") from None

    async def _lane(self, lane: str) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """The connection of ``lane`` (``claim``: claims, heartbeats and recoveries; the
        journal's commits have a pipeline of their own, :class:`_Pipe`), so a claim never
        waits for a commit; the caller holds the lane's lock."""
        conn = self._async_conns.get(lane)
        if conn is None or conn.closed or conn.broken:
            conn = self._async_conns[lane] = await self._aconnect()
        return conn

    async def _commit_in_one(self, conn: psycopg.AsyncConnection[tuple[Any, ...]], sql: str,
                             params: Any,
                             committed: Callable[[], None] | None = None) -> None:
        """Send ``sql`` (bound on this side) and COMMIT as one message; run ``committed``
        once it is on the wire (as :meth:`_commit_then`); check that every statement
        succeeded."""
        statement = psycopg.AsyncClientCursor(conn).mogrify(sql, params).encode()
        message = statement + b"; COMMIT"
        pg = conn.pgconn
        pg.send_query(message)
        while pg.flush():
            await _ready(pg.socket, write=True)
        try:
            if committed is not None:
                committed()
        finally:
            status = await self._results(pg)
        if pg.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await conn.rollback()
        if any(error for _, error in status) or len(status) != 2:
            raise StoreUnavailable(f"the PostgreSQL store {self.location!r} did not "
                                   f"commit: {mask_dsn(self._dsn, repr(status))}")

    def _lane_lock(self, lane: str) -> asyncio.Lock:
        """The lock of a lane's connection on the running loop (see :meth:`_on_loop`)."""
        self._on_loop()
        return self._async_locks.setdefault(lane, asyncio.Lock())

    def _on_loop(self) -> None:
        """A new event loop (a later blocking ``run``) gets new connections: the old ones
        belonged to the loop gone."""
        loop = asyncio.get_running_loop()
        if loop is not self._async_loop:
            self._drop_async()
            self._async_loop = loop

    def _drop_async(self) -> None:
        for conn in self._async_conns.values():
            if not conn.closed:  # no loop to say goodbye on: close the socket alone
                conn.pgconn.finish()
        self._async_conns.clear()
        self._async_locks.clear()
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        self._pipe_opening = None

    async def _aconnect(self, *, autocommit: bool = False
                        ) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        try:
            return await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=autocommit,
                connect_timeout=max(1, int(self.connect_timeout)), application_name="mailfleet")
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot connect to the PostgreSQL store {self.location!r}: "
                                   f"{_said(self._dsn, exc)}") from None

    async def record_async(self, sending: Sequence[int], outcomes: Sequence[Outcome],
                           now: float, *, settled: Sequence[int] = (),
                           committed: Callable[[], None] | None = None) -> None:
        """The journal's commit on the journal's pipeline (:class:`_Pipe`): sent at once,
        before any await, as one prepared statement that is its own transaction, so up to
        :attr:`journal_depth` commits run back to back; ``committed`` runs once it is on the
        wire."""
        parts, params = self._record_parts(sending, outcomes, now, settled)
        if not parts:
            if committed is not None:
                committed()
            return
        self._on_loop()
        pipe = self._pipe
        if pipe is None or pipe.broken:
            if self._pipe_opening is None:
                self._pipe_opening = asyncio.ensure_future(self._open_pipe())
            opening = self._pipe_opening
            try:
                pipe = await opening  # callers resume in their order: the sends keep it
            finally:
                if self._pipe_opening is opening:
                    self._pipe_opening = None
        await pipe.commit(parts, params, committed)

    async def _open_pipe(self) -> _Pipe:
        conn = await self._aconnect(autocommit=True)
        try:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
        except psycopg.Error as exc:
            await conn.close()
            raise StoreUnavailable(f"the PostgreSQL store {self.location!r}: "
                                   f"{_said(self._dsn, exc)}") from None
        self._pipe = _Pipe(conn, self.location, self._dsn)
        return self._pipe

    async def _results(self, pg: psycopg.pq.abc.PGconn) -> list[tuple[object, bytes]]:
        """Every result of the query sent on ``pg``, read on the event loop."""
        status: list[tuple[object, bytes]] = []
        while True:
            pg.consume_input()
            while not pg.is_busy():
                result = pg.get_result()
                if result is None:
                    return status
                status.append((result.status, result.error_message))
            await _ready(pg.socket)

    @contextmanager
    def _write(self) -> Iterator[_CoreCursor]:
        with self._tx() as cur:
            yield _CoreCursor(cur)

    def _read(self) -> AbstractContextManager[_CoreCursor]:
        return self._write()  # autocommit is off: a read is a transaction too

    def close(self) -> None:
        self._drop_async()
        with self._lock:
            self.conn.close()

    # -- mailings -----------------------------------------------------------------------
    def add_letters(self, mailing_id: str, rows: Sequence[tuple[int, str, str]]) -> int:
        if not rows:
            return 0
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO letters (mailing_id, seq, email, fields) "
                "SELECT %s, s, e, f FROM unnest(%s::bigint[], %s::text[], %s::text[]) "
                "WITH ORDINALITY AS r(s, e, f, o) ORDER BY o "
                "ON CONFLICT (mailing_id, email) DO NOTHING",
                (mailing_id, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))
            return cur.rowcount

    # -- dispatching ----------------------------------------------------------------------
    async def register_dispatcher_async(self, dispatcher_id: str, now: float,
                                        servers: Sequence[str] = ()) -> None:
        await self._drive_async(self._register_steps(dispatcher_id, now, servers))

    def _register_steps(self, dispatcher_id: str, now: float,
                        servers: Sequence[str]) -> Steps[None]:
        sql, params = self._registration(dispatcher_id, now, servers)
        yield _spelled(sql), params

    def recover(self, now: float, *, lease: float = LEASE_SECONDS,
                hold_in_doubt: bool = False) -> Recovery:
        return self._drive(self._recover_steps(now, lease, hold_in_doubt))

    async def recover_async(self, now: float, *, lease: float = LEASE_SECONDS,
                            hold_in_doubt: bool = False) -> Recovery:
        return await self._drive_async(self._recover_steps(now, lease, hold_in_doubt))

    def _recover_steps(self, now: float, lease: float, hold_in_doubt: bool
                       ) -> Steps[Recovery]:
        ((locked,),), _ = yield ("SELECT pg_try_advisory_xact_lock(%s, 0)", (_LOCK_RECOVER,))
        if not locked:
            return Recovery()  # another dispatcher is recovering right now
        rows, _ = yield ("SELECT id, host, pid, seen_at FROM dispatchers", ())
        dead = set(dead_dispatchers(rows, self.host, now, lease))
        rows, _ = yield ("SELECT DISTINCT l.claimed_by FROM letters l WHERE l.claimed_by IS NOT "
                         "NULL AND NOT EXISTS (SELECT 1 FROM dispatchers d WHERE "
                         "d.id = l.claimed_by)", ())
        dead |= {str(r[0]) for r in rows}
        if not dead:
            return Recovery()
        ids = sorted(dead)
        yield ("DELETE FROM ledger WHERE NOT settled AND letter_id IN (SELECT id FROM "
               "letters WHERE claimed_by = ANY(%s) AND state='claimed')", (ids,))
        _, requeued = yield ("UPDATE letters SET state='queued', claimed_by=NULL WHERE "
                             "claimed_by = ANY(%s) AND state='claimed'", (ids,))
        yield ("UPDATE ledger SET settled=TRUE WHERE NOT settled AND letter_id IN "
               "(SELECT id FROM letters WHERE claimed_by = ANY(%s) AND "
               "state='sending')", (ids,))
        _, held = yield (
            "UPDATE letters SET state='held', claimed_by=NULL, attempts=attempts+1, "
            "last_error=%s WHERE claimed_by = ANY(%s) AND state='sending' AND (%s OR "
            "mailing_id IN (SELECT id FROM mailings WHERE hold_in_data))",
            (HELD_IN_DATA, ids, hold_in_doubt))
        _, resent = yield (
            "UPDATE letters SET state='queued', claimed_by=NULL, attempts=attempts+1, "
            "not_before=NULL, last_error=%s WHERE claimed_by = ANY(%s) AND "
            "state='sending'", (RESENT_IN_DATA, ids))
        yield ("DELETE FROM dispatchers WHERE id = ANY(%s)", (ids,))
        return Recovery(requeued, resent, held)

    def wakeups(self) -> Wakeups:
        return _Listener(self._connect(autocommit=True), self.location, self._dsn)

    def clock(self) -> Clock:
        return self._clock

    @staticmethod
    def _active_mailings(cur: psycopg.Cursor[tuple[Any, ...]],
                         mailing_ids: Sequence[str] | None) -> list[str]:
        rows = cur.execute("SELECT id FROM mailings WHERE state='active' "
                           "ORDER BY created_at, id COLLATE \"C\"").fetchall()
        ids = [str(r[0]) for r in rows]
        return ids if mailing_ids is None else [i for i in ids if i in mailing_ids]

    @staticmethod
    def _block(cur: psycopg.Cursor[tuple[Any, ...]], server: str,
               now: float) -> tuple[float, str] | None:
        row = cur.execute("SELECT until, reason FROM server_blocks WHERE server=%s",
                          (server,)).fetchone()
        if row is None or row[0] <= now:
            return None
        return float(row[0]), str(row[1])

    @staticmethod
    def _used(cur: psycopg.Cursor[tuple[Any, ...]], server: str, start: float) -> int:
        row = cur.execute(f"SELECT {_USED.format(s='%(s)s', t='%(t)s::float8')}",
                          {"s": server, "t": start}).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _nth(cur: psycopg.Cursor[tuple[Any, ...]], server: str, start: float,
             k: int) -> float | None:
        row = cur.execute("SELECT at FROM ledger WHERE server=%s AND at>%s ORDER BY at "
                          "LIMIT 1 OFFSET %s", (server, start, k - 1)).fetchone()
        return float(row[0]) if row else None

    def claim(self, dispatcher_id: str, server: str, limits: Limits, count: int, now: float,
              mailing_ids: Sequence[str] | None = None, *, tenant: str | None = None
              ) -> Claim:
        """Check the quota and charge it under a per-server advisory lock (exact across every
        dispatcher on the database); take queued letters no other claim holds."""
        return self._drive(self._claim_steps(dispatcher_id, server, limits, count, now,
                                             mailing_ids, tenant))

    async def claim_async(self, dispatcher_id: str, server: str, limits: Limits, count: int,
                          now: float, mailing_ids: Sequence[str] | None = None, *,
                          tenant: str | None = None) -> Claim:
        return await self._drive_async(self._claim_steps(
            dispatcher_id, server, limits, count, now, mailing_ids, tenant))

    def _drive(self, steps: Steps[T]) -> T:
        """Run a transaction written as steps (:data:`Steps`) on this thread's connection."""
        with self._tx() as cur:
            sql, params = next(steps)
            while True:
                cur.execute(sql, params)
                try:
                    sql, params = steps.send(
                        (cur.fetchall() if cur.description else [], cur.rowcount))
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    async def _drive_async(self, steps: Steps[T]) -> T:
        """The same on the event loop, on the ``claim`` lane: a dispatcher's claims,
        heartbeats and recoveries take their turns on one connection, so none of them
        waits for a lock another of its own transactions holds."""
        async with self._async_tx("claim") as cur:
            sql, params = next(steps)
            while True:
                if sql.startswith(_LAST):  # the COMMIT goes with it: no round trip more
                    # the claim's locks go with its COMMIT
                    await self._commit_in_one(cur.connection, sql, params)
                    result: tuple[list[tuple[Any, ...]], int] = ([], -1)
                else:
                    await cur.execute(sql, params)
                    result = (await cur.fetchall() if cur.description else [], cur.rowcount)
                try:
                    sql, params = steps.send(result)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]

    def _claim_steps(self, dispatcher_id: str, server: str, limits: Limits, count: int,
                     now: float, mailing_ids: Sequence[str] | None, tenant: str | None
                     ) -> Steps[Claim]:
        """The claim as statements (each yielded, its rows sent back), so the blocking and
        the event-loop drivers share it: four round trips, the lock held only here."""
        # the heartbeat rides along; it re-registers a dispatcher that another host's
        # recover() dropped while it slept through a spent window
        yield ("WITH beat AS (INSERT INTO dispatchers (id, host, pid, seen_at, started_at) "
               "VALUES (%(d)s,%(h)s,%(p)s,%(now)s,%(now)s) ON CONFLICT (id) DO UPDATE SET "
               "seen_at=EXCLUDED.seen_at RETURNING 1) SELECT pg_advisory_xact_lock(%(lock)s, "
               "hashtext(%(s)s)), (SELECT COUNT(*) FROM beat)",
               {"d": dispatcher_id, "h": self.host, "p": os.getpid(), "now": now,
                "lock": _LOCK_QUOTA, "s": server})
        starts = [w.start(now) for w in windows(limits)]
        ((until, used),), _ = yield (_BLOCK_AND_USED, {"s": server, "starts": starts})
        if until is not None and until > now:
            return Claim(reason="blocked", until=float(until))
        counts = dict(zip(starts, used, strict=True))
        oldest: dict[tuple[float, int], float | None] = {}
        for window, start in zip(windows(limits), starts, strict=True):
            k = counts[start] - window.limit + 1
            if k > 0 and not window.calendar:  # full: when does its k-th oldest charge leave
                found, _ = yield ("SELECT at FROM ledger WHERE server=%s AND at>%s ORDER BY "
                                  "at LIMIT 1 OFFSET %s", (server, start, k - 1))
                oldest[start, k] = float(found[0][0]) if found else None
        remaining, frees = remaining_now(limits, now, counts.__getitem__,
                                         lambda start, k: oldest.get((start, k)))
        if remaining is not None and remaining <= 0:
            return Claim(reason="spent", until=frees)
        want = count if remaining is None else min(count, remaining)
        rows, _ = yield (
            "SELECT m.tenant, l.id, l.mailing_id, l.seq, l.email, l.fields, l.attempts, EXISTS "
            "(SELECT 1 FROM suppression s WHERE s.email = lower(l.email)) FROM mailings m "
            "CROSS JOIN LATERAL (SELECT * FROM letters l WHERE l.mailing_id = m.id AND "
            "l.state='queued' AND (l.not_before IS NULL OR l.not_before <= %(now)s) ORDER BY l.id "
            "LIMIT %(want)s FOR UPDATE OF l SKIP LOCKED) l WHERE m.state='active' AND "
            "(%(only)s::text[] IS NULL OR m.id = ANY(%(only)s::text[])) AND "
            "(%(tenant)s::text IS NULL OR m.tenant = %(tenant)s::text) "
            "ORDER BY m.created_at, m.id COLLATE \"C\", l.id",
            {"now": now, "want": want, "tenant": tenant,
             "only": None if mailing_ids is None else list(mailing_ids)})
        letters, skipped = take(fair_share([
            (str(owner), LetterRow(int(lid), str(mailing), int(seq), email, fields,
                                   int(attempts)))
            for owner, lid, mailing, seq, email, fields, attempts, _ in rows]),
            {int(r[1]) for r in rows if r[7]}, want)
        ids = [r.id for r in letters]
        if letters or skipped:
            yield (_CHARGE, {"skipped": [r.id for r in skipped], "d": dispatcher_id, "now": now,
                    "s": server, "ids": ids})
        return Claim(tuple(letters), tuple(skipped), "" if letters or skipped else "empty")

    def _record(self, sending: Sequence[int], outcomes: Sequence[Outcome], now: float,
                settled: Sequence[int], committed: Callable[[], None] | None) -> None:
        parts, params = self._record_parts(sending, outcomes, now, settled)
        with self._tx(committed) as cur:
            if parts:
                cur.execute(_record_sql(parts, numbered=False), params)

    @staticmethod
    def _record_parts(sending: Sequence[int], outcomes: Sequence[Outcome], now: float,
                      settled: Sequence[int]) -> tuple[str, dict[str, Any]]:
        """The journal's commit as one statement: the parts it needs (a letter is never
        both entering DATA and finished in one commit: its outcome comes after its message,
        which waits for this commit) and every parameter (see :data:`_RECORD_PARAMS`)."""
        ordered = sorted(outcomes, key=lambda o: o.letter)  # row locks in one order
        kept = [o.letter for o in ordered if o.charged and o.settle] + sorted(settled)
        refunds = [o.letter for o in ordered if not o.charged]
        parts = "".join(part for part, rows in (("s", sending), ("o", ordered), ("k", kept),
                                                 ("r", refunds)) if rows)
        return parts, {
            "sending": sorted(sending), "now": now,
            "ids": [o.letter for o in ordered], "states": [o.state for o in ordered],
            "servers": [o.server for o in ordered], "froms": [o.from_addr for o in ordered],
            "errors": [o.error for o in ordered], "later": [o.not_before for o in ordered],
            "attempts": [o.attempts for o in ordered], "kept": kept, "refunds": refunds}

    def waiting(self, mailing_ids: Sequence[str] | None, now: float) -> tuple[int, float | None]:
        total = 0
        earliest: float | None = None
        with self._tx() as cur:
            for mailing in self._active_mailings(cur, mailing_ids):
                row = cur.execute(
                    "SELECT COUNT(*), MIN(CASE WHEN not_before > %s THEN not_before END) FROM "
                    "letters WHERE mailing_id=%s AND state IN ('queued','claimed','sending')",
                    (now, mailing)).fetchone()
                assert row is not None
                n, first = row
                total += int(n)
                if first is not None:
                    earliest = float(first) if earliest is None else min(earliest, float(first))
        return total, earliest

    # -- quota ----------------------------------------------------------------------------
    def quota(self, server: str, limits: Limits, now: float) -> QuotaStatus:
        with self._tx() as cur:
            status = window_status(limits, now, functools.partial(self._used, cur, server),
                                         functools.partial(self._nth, cur, server))
            block = self._block(cur, server, now)
            row = cur.execute("SELECT failures FROM server_breakers WHERE server=%s",
                              (server,)).fetchone()
        return QuotaStatus(server, status["minute"], status["hour"], status["day"],
                           block[0] if block else None, block[1] if block else None,
                           int(row[0]) if row else 0)
