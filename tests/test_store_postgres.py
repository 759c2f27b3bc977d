"""The PostgreSQL store: dispatchers in parallel threads share quotas exactly; no password shows."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import test_mailing_support as support
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mailing_support import people, recipients_of, server_entry

from mailfleet.clock import FakeClock
from mailfleet.config import parse_config
from mailfleet.errors import ConfigError, MailfleetError, StoreUnavailable
from mailfleet.mailings.mailing import create_mailing
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Limits
from mailfleet.sending.dispatcher import Dispatcher, RunReport
from mailfleet.sending.fleet import Fleet
from mailfleet.store import open_store
from mailfleet.store.base import LetterRow, Outcome, Recovery
from mailfleet.store.postgres import PostgresStore, mask_dsn
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.postgres import PostgresServer
from mailfleet_testing.smtpd import FakeSMTP

certs = support.certs
T0 = 1_767_225_600.0
SECRET = "pg-S3cret-pw"


def run_in_threads(dsn: str, entries: list[dict[str, Any]], dispatchers: int,
                   letters: int) -> tuple[list[RunReport], PostgresStore, str]:
    """Queue one mailing, then run ``dispatchers`` dispatchers at once, each in its own thread
    with its own PostgresStore (own connection) and its own fleet, until idle."""
    store = PostgresStore(dsn)
    mailing = create_mailing(store, support.TEMPLATE, people(letters), clock=FakeClock(T0)).id
    config = parse_config({"deployment": {"store": dsn}, "servers": entries,
                           "retry": {"connect_attempts": 1}})
    start = threading.Barrier(dispatchers)
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def work() -> None:
        own = PostgresStore(dsn)
        try:
            fleet = Fleet(config, load_plugins(entry_points=False))
            start.wait(10)
            reports.append(Dispatcher(fleet, own, clock=FakeClock(T0),
                                      batch_size=2).run(until_idle=True))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=work) for _ in range(dispatchers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(reports) == dispatchers
    return reports, store, mailing


@pytest.fixture
def server(smtp_factory: Callable[..., FakeSMTP]) -> FakeSMTP:
    return smtp_factory(users={"a@example.org": support.PASSWORD})


def test_four_dispatchers_in_threads_never_exceed_the_hour_limit(
        pg_dsn: str, server: FakeSMTP, certs: TLSCerts) -> None:
    entries = [server_entry("a", server, certs, limits={"per_hour": 7}, connections=2)]
    reports, store, mailing = run_in_threads(pg_dsn, entries, 4, 30)
    assert sum(r.sent for r in reports) == 7
    assert len(server.messages) == 7
    assert len(set(recipients_of(server))) == 7
    quota = store.quota("a", Limits(per_hour=7), T0)
    assert (quota.hour.used, quota.hour.remaining) == (7, 0)
    assert store.counts(mailing) == {"sent": 7, "queued": 23}
    # each saw the 23 left (plus letters still in flight elsewhere) and the hour reopening
    assert all(r.waiting >= 23 and r.resume_at == T0 + 3600 for r in reports), reports
    store.close()


def test_four_dispatchers_send_every_letter_exactly_once(
        pg_dsn: str, server: FakeSMTP, certs: TLSCerts) -> None:
    entries = [server_entry("a", server, certs, limits={"per_hour": 1000}, connections=2)]
    reports, store, mailing = run_in_threads(pg_dsn, entries, 4, 60)
    got = Counter(recipients_of(server))
    assert got == Counter(p["email"] for p in people(60))  # each once, none missing
    assert sum(r.sent for r in reports) == 60
    assert store.counts(mailing) == {"sent": 60}
    assert store.by_server(mailing) == {"a": 60}
    assert store.quota("a", Limits(per_hour=1000), T0).hour.used == 60
    assert store.get_mailing(mailing).state == "done"  # type: ignore[union-attr]
    store.close()


def test_open_store_and_the_fleet_open_a_postgres_store(pg_dsn: str) -> None:
    for url in (pg_dsn, pg_dsn.replace("postgresql://", "postgres://", 1)):
        opened = open_store(url)
        assert isinstance(opened, PostgresStore)
        opened.kv_set("k", url)
        assert opened.kv_get("k") == url
        opened.close()
    config = parse_config({"deployment": {"store": pg_dsn}, "servers": []})
    from_fleet = Fleet(config, load_plugins(entry_points=False)).open_store()
    assert isinstance(from_fleet, PostgresStore)
    from_fleet.close()


def test_open_store_without_psycopg_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "mailfleet.store.postgres")
    with pytest.raises(ConfigError, match=r"mailfleet\[postgresql\]") as info:
        open_store(f"postgresql://u:{SECRET}@db.example/mail")
    assert SECRET not in str(info.value)


def test_a_libpq_without_pipeline_mode_is_refused_saying_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    with pytest.raises(StoreUnavailable, match=r"libpq 14 or later.*psycopg\[binary\]") as info:
        PostgresStore(f"postgresql://u:{SECRET}@127.0.0.1:1/mail")
    assert SECRET not in str(info.value)


def test_the_password_never_shows(postgres: PostgresServer, pg_dsn: str) -> None:
    with_password = pg_dsn.replace("postgres@", f"postgres:{SECRET}@", 1)  # trust auth
    store = PostgresStore(with_password)
    assert SECRET not in repr(store) and SECRET not in store.location
    assert "postgres:***@" in repr(store)
    store.close()
    assert mask_dsn(f"host=h user=u password={SECRET} dbname=d") == (
        "host=h user=u password=*** dbname=d")
    assert SECRET not in mask_dsn(f"postgresql://u@h/d?password={SECRET}")
    assert SECRET not in mask_dsn("postgresql://u:pg%2DS3cret%2Dpw@h/d")
    dead_port = f"postgresql://u:{SECRET}@127.0.0.1:1/d?connect_timeout=2"
    malformed = f"postgresql://u:{SECRET}@127.0.0.1:notaport/d"
    for dsn, kind in ((dead_port, MailfleetError), (malformed, MailfleetError)):
        with pytest.raises(kind) as info:
            PostgresStore(dsn)
        text = str(info.value)
        assert SECRET not in text and "***" in text
        assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_broken_connection_is_replaced_on_the_next_call(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    store.kv_set("k", "1")
    killer = PostgresStore(pg_dsn)
    pid = store.conn.info.backend_pid
    with killer.conn.transaction():
        killer.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(Exception):  # noqa: B017, PT011 - the call in flight fails
        store.kv_get("k")
    assert store.kv_get("k") == "1"
    store.close()
    killer.close()


operations = st.lists(st.tuples(
    st.sampled_from(["charge", "refund", "move"]), st.sampled_from(["a", "b"]),
    st.floats(min_value=0, max_value=3 * 86_400, allow_nan=False)), max_size=40)


def test_ledger_minute_counts_equal_a_full_count(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    conn = store.conn

    @settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(ops=operations, starts=st.lists(st.floats(min_value=-3600, max_value=3 * 86_400,
                                                     allow_nan=False), min_size=1, max_size=4))
    def check(ops: list[tuple[str, str, float]], starts: list[float]) -> None:
        with conn.transaction():
            conn.execute("TRUNCATE ledger, ledger_minutes")
            for op, server, offset in ops:
                at = T0 + offset
                if op == "charge":
                    conn.execute("INSERT INTO ledger (server, at, letter_id) VALUES (%s,%s,1)",
                                 (server, at))
                    continue
                row = conn.execute("SELECT id FROM ledger WHERE server=%s ORDER BY id LIMIT 1",
                                   (server,)).fetchone()
                if row is None:
                    continue
                if op == "refund":
                    conn.execute("DELETE FROM ledger WHERE id=%s", row)
                else:
                    conn.execute("UPDATE ledger SET at=%s, settled=TRUE WHERE id=%s",
                                 (at, row[0]))
            for server in ("a", "b"):
                for start in (T0 + s for s in starts):
                    naive = conn.execute("SELECT COUNT(*) FROM ledger WHERE server=%s AND "
                                         "at>%s", (server, start)).fetchone()
                    assert naive is not None
                    with conn.cursor() as cur:
                        assert store._used(cur, server, start) == naive[0]

    check()
    store.close()


def test_a_claim_re_registers_a_dispatcher_dropped_while_it_slept(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    create_mailing(store, support.TEMPLATE, people(3), clock=FakeClock(T0))
    store.host = "machine-b"  # a dispatcher on another machine
    store.register_dispatcher("b", T0)
    store.host = "machine-a"
    assert store.recover(T0 + 3600) == Recovery()  # b slept past its lease: dropped
    store.host = "machine-b"
    assert len(store.claim("b", "a", Limits(), 2, T0 + 3600).letters) == 2  # b wakes
    store.host = "machine-a"
    assert store.recover(T0 + 3601).requeued == 0  # b is alive again: its claims stay
    store.close()


def claimed_letters(store: PostgresStore, count: int) -> tuple[str, tuple[LetterRow, ...]]:
    mailing = create_mailing(store, support.TEMPLATE, people(count), clock=FakeClock(T0)).id
    store.register_dispatcher("d1", T0)
    return mailing, store.claim("d1", "a", Limits(), count, T0).letters


def outcomes(letters: tuple[LetterRow, ...], state: str, **extra: Any) -> list[Outcome]:
    return [Outcome(r.id, state, "a", None, None, None, 1, charged=True,  # type: ignore[arg-type]
                    **extra) for r in letters]


def test_journal_commits_sent_back_to_back_apply_in_the_order_they_were_made(
        pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    assert store.journal_depth > 1
    mailing, letters = claimed_letters(store, 3)

    async def commits() -> None:
        # into DATA, a temporary failure, then sent: all three in flight at once
        await asyncio.gather(store.record_async([r.id for r in letters], [], T0),
                             store.record_async([], outcomes(letters, "queued"), T0 + 1),
                             store.record_async([], outcomes(letters, "sent"), T0 + 2))

    asyncio.run(commits())
    assert store.counts(mailing) == {"sent": 3}
    assert store.quota("a", Limits(), T0 + 3).hour.used == 3
    store.close()


def test_a_failed_journal_commit_changes_nothing_and_the_next_one_commits(
        pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn.replace("postgres@", f"postgres:{SECRET}@", 1))
    mailing, letters = claimed_letters(store, 2)
    first, second = letters
    # an attempt count PostgreSQL cannot hold fails the whole commit, on the server
    bad = [*outcomes((first,), "sent"),
           Outcome(second.id, "sent", "a", None, None, None, 2**31, charged=True)]

    async def commits() -> None:
        with pytest.raises(MailfleetError) as info:  # not transient: never retried
            await store.record_async([], bad, T0)
        assert not isinstance(info.value, StoreUnavailable)
        assert SECRET not in str(info.value) and "out of range" in str(info.value)
        assert store.counts(mailing) == {"claimed": 2}  # neither letter changed
        await store.record_async([], outcomes(letters, "sent"), T0 + 1)

    asyncio.run(commits())
    assert store.counts(mailing) == {"sent": 2}
    store.close()


def test_a_journal_connection_dropped_while_idle_is_replaced_before_the_next_commit(
        pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    mailing, letters = claimed_letters(store, 2)
    first, second = letters
    killer = psycopg.connect(pg_dsn, autocommit=True)

    async def commits() -> None:
        await store.record_async([], outcomes((first,), "sent"), T0)
        killed = killer.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
            "application_name = 'mailfleet' AND pid <> %s",
            (store.conn.info.backend_pid,)).fetchall()
        assert killed == [(True,)]  # the journal's own connection
        await asyncio.sleep(0.5)  # the loop sees the connection close
        await store.record_async([], outcomes((second,), "sent"), T0 + 1)

    asyncio.run(commits())
    assert store.counts(mailing) == {"sent": 2}
    killer.close()
    store.close()
