"""``mailfleet worker``: real worker processes on one store share every limit exactly, take
back each other's letters, stop cleanly on a signal, and wake when letters are queued."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import test_mailing_support as support
from test_mailing_crash import delivered, new_mailing, plain_entry

from mailfleet.clock import FakeClock
from mailfleet.config import parse_config
from mailfleet.mailings.mailing import create_mailing
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Limits
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.store import open_store
from mailfleet.store.base import LetterRow, Store, fair_share
from mailfleet.store.postgres import PostgresStore
from mailfleet_testing.chaos import copies, mailfleet_command, write_config
from mailfleet_testing.smtp_sink import SmtpSink
from mailfleet_testing.smtpd import FakeSMTP

certs = support.certs
servers = support.servers


def start_worker(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*mailfleet_command(), "--config", str(config), "worker", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


@contextmanager
def workers(config: Path, count: int, *extra: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    children = [start_worker(config, *extra) for _ in range(count)]
    try:
        yield children
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
            child.communicate(timeout=30)


def wait_for(done: Callable[[], bool], timeout: float, what: str,
             children: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        for child in children:
            if child.poll() is not None:
                _, err = child.communicate()
                raise AssertionError(f"a worker ended ({child.returncode}): {err.decode()}")
        if time.monotonic() > deadline:
            said = []
            for child in children:
                child.kill()
                said.append(child.communicate()[1].decode()[-3000:])
            raise AssertionError(f"{what}: not within {timeout:g} s; workers said: {said}")
        time.sleep(0.02)


def stop(children: Sequence[subprocess.Popen[bytes]], timeout: float = 30) -> list[int]:
    for child in children:
        child.send_signal(signal.SIGTERM)
    return [child.wait(timeout) for child in children]


def letter_times(store: Store, mailing: str) -> dict[str, list[float]]:
    """Claim times of the sent letters, per server (PostgreSQL only)."""
    assert isinstance(store, PostgresStore)
    with store._tx() as cur:
        rows = cur.execute("SELECT server, claimed_at FROM letters WHERE mailing_id=%s AND "
                           "state='sent'", (mailing,)).fetchall()
    found: dict[str, list[float]] = {}
    for server, at in rows:
        found.setdefault(server, []).append(float(at))
    return found


def sink_entry(name: str, sink: SmtpSink, **extra: object) -> dict[str, object]:
    return {"name": name, "sender": f"{name}@example.org", "host": "127.0.0.1",
            "port": sink.port, "security": "none", "auth": "none", "timeout": 10.0, **extra}


def test_four_workers_fill_5000_8000_then_the_rest_exactly_once_in_priority_order(
        tmp_path: Path, pg_dsn: str) -> None:
    with SmtpSink(dump=True) as a, SmtpSink(dump=True) as b, SmtpSink(dump=True) as c:
        config = write_config(tmp_path / "w.toml", pg_dsn, [
            sink_entry("a", a, priority=1, connections=2, limits={"per_hour": 5000}),
            sink_entry("b", b, priority=2, connections=2, limits={"per_hour": 8000}),
            sink_entry("c", c, priority=3, connections=2)])
        store = open_store(pg_dsn)
        created = new_mailing(store, 20_000, FakeClock(time.time()))  # type: ignore[arg-type]
        with workers(config, 4) as children:
            wait_for(lambda: store.counts(created.id) == {"sent": 20_000}, 240, "20,000 sent",
                     children)
            assert stop(children) == [0, 0, 0, 0]
        got = {name: sink.dumped() for name, sink in (("a", a), ("b", b), ("c", c))}
    kept = got["a"] + got["b"] + got["c"]
    assert set(kept) == {f"{created.id}-{i}" for i in range(1, 20_001)}
    assert max(kept.values()) == 1  # nobody twice
    assert {name: sum(n.values()) for name, n in got.items()} == {"a": 5000, "b": 8000,
                                                                  "c": 7000}
    assert store.by_server(created.id) == {"a": 5000, "b": 8000, "c": 7000}
    now = time.time()
    assert store.quota("a", Limits(per_hour=5000), now).hour.used == 5000
    assert store.quota("b", Limits(per_hour=8000), now).hour.used == 8000
    # fill-first across the workers: c was claimed only once a and b were spent (the clocks
    # of the four processes agree on the database's to well under 50 ms)
    times = letter_times(store, created.id)
    assert max(times["a"]) <= min(times["b"]) + 0.05
    assert max(times["a"] + times["b"]) <= min(times["c"]) + 0.05
    assert store.workers(now) == []  # every worker left the list
    store.close()


def test_four_dispatchers_keep_every_hour_exact_through_48_hours_of_windows(
        pg_dsn: str, servers: list[FakeSMTP]) -> None:
    """The limits per hour hold across four dispatchers in each of 48 simulated hours."""
    a, b, c = servers
    limits = {"a": 5, "b": 8, "c": 7}  # the proof's 5,000 / 8,000 / 7,000, a thousandth
    entries = [plain_entry(name, smtp, priority=i, connections=2,
                           limits={"per_hour": limits[name]})
               for i, (name, smtp) in enumerate(zip("abc", servers, strict=True), 1)]
    config = parse_config({"deployment": {"store": pg_dsn}, "servers": entries})
    t0 = 1_767_225_600.0
    store = PostgresStore(pg_dsn)
    mailing = create_mailing(store, support.TEMPLATE, support.people(48 * 20),
                             clock=FakeClock(t0)).id
    stores = [PostgresStore(pg_dsn) for _ in range(4)]
    fleets = [Fleet(config, load_plugins(entry_points=False)) for _ in range(4)]
    seen = {name: 0 for name in limits}
    for hour in range(48):
        now = t0 + hour * 3600.0
        errors: list[BaseException] = []

        def run(i: int, now: float = now, errors: list[BaseException] = errors) -> None:
            try:
                Dispatcher(fleets[i], stores[i], clock=FakeClock(now + i * 0.001),
                           batch_size=3, dispatcher_id=f"d{i}").run(until_idle=True)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors
        got = {"a": len(a.messages), "b": len(b.messages), "c": len(c.messages)}
        assert {k: got[k] - seen[k] for k in got} == limits, f"hour {hour}"
        seen = got
    assert store.counts(mailing) == {"sent": 48 * 20}
    kept = copies(servers)
    assert len(kept) == 48 * 20 and max(kept.values()) == 1
    for own in (*stores, store):
        own.close()


def test_a_killed_workers_letters_are_finished_by_the_others_within_the_lease(
        tmp_path: Path, servers: list[FakeSMTP], pg_dsn: str) -> None:
    smtp = servers[0]
    smtp.add_rule("DATA", "250 2.0.0 Ok: queued slowly", delay=0.005)
    lease = 3.0
    config = write_config(tmp_path / "k.toml", pg_dsn, [plain_entry("a", smtp, connections=2)],
                          deployment={"lease_seconds": lease})
    store = open_store(pg_dsn)
    with workers(config, 3) as children:
        wait_for(lambda: len(store.workers(time.time())) == 3, 30, "three workers listed",
                 children)
        created = new_mailing(store, 1500, FakeClock(time.time()))  # type: ignore[arg-type]
        wait_for(lambda: len(delivered(smtp)) >= 300, 60, "300 letters", children)
        victim, *others = children
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        held = [h for h in store.holders(created.id, time.time()) if h.pid == victim.pid]
        wait_for(lambda: not any(h.pid == victim.pid
                                 for h in store.holders(created.id, time.time())),
                 lease, "the victim's letters taken back", others)
        took = time.monotonic() - killed_at
        wait_for(lambda: store.counts(created.id) == {"sent": 1500}, 120, "all sent", others)
        assert stop(others) == [0, 0]
    assert took < lease
    kept = Counter(letter for letter, _ in delivered(smtp))
    assert set(kept) == {f"{created.id}-{i}" for i in range(1, 1501)}
    assert sum(kept.values()) - 1500 <= sum(h.sending for h in held)
    store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "w.db")
    return str(request.getfixturevalue("pg_dsn"))


def test_sigterm_finishes_the_letters_in_hand_exits_0_and_leaves_nothing_claimed_or_charged(
        tmp_path: Path, servers: list[FakeSMTP], location: str) -> None:
    smtp = servers[0]
    smtp.add_rule("DATA", "250 2.0.0 Ok: queued slowly", delay=0.01)
    config = write_config(tmp_path / "t.toml", location, [plain_entry("a", smtp, connections=2)])
    store = open_store(location)
    created = new_mailing(store, 2000, FakeClock(time.time()))  # type: ignore[arg-type]
    with workers(config, 1, "--grace", "20") as (child,):
        wait_for(lambda: len(delivered(smtp)) >= 50, 60, "50 letters", [child])
        child.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        assert child.wait(25) == 0
        took = time.monotonic() - stopped_at
        out, err = child.communicate()
    counts = store.counts(created.id)
    assert counts.get("claimed", 0) == counts.get("sending", 0) == 0
    assert 50 <= counts["sent"] < 2000 and counts["sent"] + counts["queued"] == 2000
    assert len(delivered(smtp)) == counts["sent"]  # each letter in hand finished, none cut off
    # the batches claimed ahead of the sends went back uncharged
    assert store.quota("a", Limits(), time.time()).day.used == counts["sent"]
    assert store.workers(time.time()) == []
    assert took < 20
    assert b"stopping: finishing the letters in hand" in err
    assert b"worker stopped:" in out
    store.close()


def test_a_second_signal_exits_at_once_and_the_letters_come_back_after(
        tmp_path: Path, servers: list[FakeSMTP]) -> None:
    smtp = servers[0]
    smtp.add_rule("DATA", "250 2.0.0 Ok: queued very slowly", delay=2.0)
    db = str(tmp_path / "s.db")
    config = write_config(tmp_path / "s.toml", db, [plain_entry("a", smtp, connections=1)])
    store = open_store(db)
    created = new_mailing(store, 20, FakeClock(time.time()))  # type: ignore[arg-type]
    with workers(config, 1, "--grace", "60") as (child,):
        wait_for(lambda: store.counts(created.id).get("sending", 0) > 0, 30, "a letter in DATA",
                 [child])
        child.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert child.poll() is None  # still finishing the letter in DATA
        child.send_signal(signal.SIGTERM)
        assert child.wait(5) == 128 + signal.SIGTERM
    assert store.counts(created.id).get("sending", 0) == 1  # left in doubt, as after a crash
    report = Dispatcher(support.make_fleet([plain_entry("a", smtp)], Path(db)), store,
                        batch_size=5).run(until_idle=True)
    assert report.recovered.resent == 1
    store.close()


def test_an_idle_worker_on_postgresql_wakes_when_a_mailing_is_queued(
        tmp_path: Path, servers: list[FakeSMTP], pg_dsn: str) -> None:
    smtp = servers[0]
    config = write_config(tmp_path / "n.toml", pg_dsn, [plain_entry("a", smtp)])
    store = open_store(pg_dsn)
    with workers(config, 1, "--poll", "120") as children:
        wait_for(lambda: len(store.workers(time.time())) == 1, 30, "the worker listed",
                 children)
        time.sleep(0.5)  # its first pass found nothing: it rests, listening
        queued = time.monotonic()
        created = new_mailing(store, 10, FakeClock(time.time()))  # type: ignore[arg-type]
        wait_for(lambda: store.counts(created.id) == {"sent": 10}, 10, "10 sent", children)
        assert time.monotonic() - queued < 5  # woken, not the 120 s poll
        assert stop(children) == [0]
    store.close()


def test_an_idle_worker_on_sqlite_polls_for_new_mailings(
        tmp_path: Path, servers: list[FakeSMTP]) -> None:
    smtp = servers[0]
    db = str(tmp_path / "p.db")
    config = write_config(tmp_path / "p.toml", db, [plain_entry("a", smtp)])
    store = open_store(db)
    with workers(config, 1, "--poll", "0.5") as children:
        wait_for(lambda: len(store.workers(time.time())) == 1, 30, "the worker listed",
                 children)
        created = new_mailing(store, 10, FakeClock(time.time()))  # type: ignore[arg-type]
        wait_for(lambda: store.counts(created.id) == {"sent": 10}, 10, "10 sent", children)
        assert stop(children) == [0]
    store.close()


def test_workers_lists_each_live_worker_with_host_pid_and_servers(
        tmp_path: Path, servers: list[FakeSMTP], location: str) -> None:
    a, b, _ = servers
    config = write_config(tmp_path / "l.toml", location, [plain_entry("a", a, priority=1),
                                                          plain_entry("b", b, priority=2)])
    store = open_store(location)
    with workers(config, 2) as children:
        wait_for(lambda: len(store.workers(time.time())) == 2, 30, "two workers", children)
        out = subprocess.run([*mailfleet_command(), "--config", str(config), "workers",
                              "--json"], capture_output=True, check=True).stdout
        listed: list[dict[str, Any]] = json.loads(out)
        assert sorted(w["pid"] for w in listed) == sorted(c.pid for c in children)
        assert all(w["servers"] == ["a", "b"] and w["alive"] is True for w in listed)
        assert all(w["claimed"] == w["sending"] == 0 for w in listed)
        table = subprocess.run([*mailfleet_command(), "--config", str(config), "workers"],
                               capture_output=True, check=True, text=True).stdout
        assert all(str(c.pid) in table for c in children)
        assert stop(children) == [0, 0]
    store.close()


def test_two_tenants_share_the_workers_fairly_the_small_mailing_goes_at_once(
        tmp_path: Path, smtp_sink: SmtpSink, pg_dsn: str) -> None:
    config = write_config(tmp_path / "t.toml", pg_dsn, [sink_entry("shared", smtp_sink,
                                                                   connections=4)])
    store = open_store(pg_dsn)
    big = create_mailing(store, support.TEMPLATE, support.people(100_000),
                         clock=FakeClock(time.time()), tenant="acme").id
    small = create_mailing(store, support.TEMPLATE, support.people(100),
                           clock=FakeClock(time.time()), tenant="globex").id
    with workers(config, 2) as children:
        started = time.monotonic()
        wait_for(lambda: store.counts(small) == {"sent": 100}, 5, "the small tenant's 100",
                 children)
        took = time.monotonic() - started
        sent_big = store.counts(big).get("sent", 0)
        assert stop(children) == [0, 0]
    assert took < 5
    assert sent_big < 100_000 - 10_000  # the big mailing was still going: they took turns
    store.close()


def test_a_tenants_server_sends_only_that_tenants_mailings(
        tmp_path: Path, servers: list[FakeSMTP]) -> None:
    a, g, _ = servers
    db = tmp_path / "t.db"
    fleet = support.make_fleet([plain_entry("acme", a, tenant="acme"),
                                plain_entry("globex", g, tenant="globex")], db)
    store = open_store(str(db))
    acme = create_mailing(store, support.TEMPLATE, support.people(10), tenant="acme").id
    globex = create_mailing(store, support.TEMPLATE, support.people(10, start=11),
                            tenant="globex").id
    Dispatcher(fleet, store, batch_size=3).run(until_idle=True)
    assert store.by_server(acme) == {"acme": 10} and store.by_server(globex) == {"globex": 10}
    assert {lid.split("-")[0] for lid in copies([a])} == {acme}
    assert {lid.split("-")[0] for lid in copies([g])} == {globex}
    store.close()


def test_fair_share_takes_turns_between_tenants_then_between_their_mailings() -> None:
    def row(tenant: str, mailing: str, n: int) -> tuple[str, LetterRow]:
        return tenant, LetterRow(n, mailing, n, f"u{n}@example.org", "{}", 0)

    rows = ([row("acme", "m1", i) for i in range(1, 5)]
            + [row("acme", "m2", i) for i in range(5, 7)]
            + [row("globex", "m3", i) for i in range(7, 9)])
    assert [r.id for r in fair_share(rows)] == [1, 7, 5, 8, 2, 6, 3, 4]


def test_a_worker_whose_database_connections_are_cut_mid_run_reconnects_and_finishes(
        tmp_path: Path, pg_dsn: str) -> None:
    with SmtpSink(dump=True) as sink:
        config = write_config(tmp_path / "cut.toml", pg_dsn, [sink_entry("a", sink,
                                                                          connections=4)])
        store = open_store(pg_dsn)
        created = new_mailing(store, 3000, FakeClock(time.time()))  # type: ignore[arg-type]
        killer = psycopg.connect(pg_dsn, autocommit=True, application_name="killer")
        with workers(config, 1) as (child,):
            wait_for(lambda: sum(sink.dumped().values()) >= 300, 60, "300 letters", [child])
            cut = killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "application_name = 'mailfleet' AND pid <> %s",
                (store.conn.info.backend_pid,)).fetchall()
            assert len(cut) >= 2  # the worker's claims and its journal, at least
            wait_for(lambda: store.counts(created.id) == {"sent": 3000}, 120, "3,000 sent",
                     [child])
            assert stop([child]) == [0]
            _, err = child.communicate()
        kept = sink.dumped()
    killer.close()
    assert b"Traceback" not in err, err.decode()[-3000:]
    assert b"lost the journal's connection" in err or b"failed: " in err  # said, in a line
    assert set(kept) == {f"{created.id}-{i}" for i in range(1, 3001)}  # none lost
    assert sum(kept.values()) - 3000 <= 4 * 100  # copies: at most the batches in hand
    store.close()


def test_wake_up_notifications_come_back_after_the_listening_connection_is_cut(
        tmp_path: Path, pg_dsn: str) -> None:
    with SmtpSink(dump=True) as sink:
        config = write_config(tmp_path / "listen.toml", pg_dsn, [sink_entry("a", sink)])
        store = open_store(pg_dsn)
        killer = psycopg.connect(pg_dsn, autocommit=True, application_name="killer")
        with workers(config, 1, "--poll", "120") as (child,):
            wait_for(lambda: len(store.workers(time.time())) == 1, 30, "the worker", [child])
            time.sleep(0.5)  # its first pass is over: it rests, listening
            cut = killer.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "application_name = 'mailfleet' AND pid <> %s",
                (store.conn.info.backend_pid,)).fetchall()
            assert cut  # the listening connection among them
            time.sleep(2.5)  # the listener is opened again after 1 s
            created = new_mailing(store, 10, FakeClock(time.time()))  # type: ignore[arg-type]
            # woken by the notification, long before the 120 s poll
            wait_for(lambda: store.counts(created.id) == {"sent": 10}, 20, "10 sent", [child])
            assert stop([child]) == [0]
            _, err = child.communicate()
    killer.close()
    assert b"wake-up notifications stopped" in err and b"Traceback" not in err
    store.close()
