"""Delivery under faults, in one process: servers that drop in DATA, answer 421 or 451 at
random, hang, or break the protocol; a dispatcher that died holding letters.

Every test counts on the server side (the X-Mailfleet-Letter-Id of every message a server
kept): letters lost (must be 0), copies beyond the first (at most the letters that were in DATA
at a fault), letters failed without being tried (0), and quota used against copies kept.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import test_mailing_support as support
from test_mailing_support import Recorder, make_fleet, new_mailing, server_entry

from mailfleet.clock import FakeClock, SystemClock
from mailfleet.plugins.providers import Limits
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP, HostileSMTP

certs = support.certs
servers = support.servers

LETTER_ID = re.compile(rb"X-Mailfleet-Letter-Id: (\S+)")


def copies(*smtps: FakeSMTP) -> Counter[str]:
    """Copies of each letter kept by the servers (a message dropped in DATA was kept too)."""
    found: Counter[str] = Counter()
    for smtp in smtps:
        for message in smtp.messages:
            match = LETTER_ID.search(message.data)
            assert match is not None
            found[match.group(1).decode()] += 1
    return found


def in_data_faults(*smtps: FakeSMTP) -> int:
    """Connections a server dropped after it had the message (one letter in DATA each)."""
    return sum(e.stage == "DATA" and e.reply == "DROPPED" for s in smtps for e in s.events)


def used(store: SqliteStore, *names: str, now: float | None = None) -> int:
    at = (SystemClock().now() if now is None else now) + 1
    return sum(store.quota(n, Limits(), at).day.used for n in names)


def check(store: SqliteStore, mailing_id: str, count: int, kept: Counter[str],
          doubtful: int) -> None:
    """0 lost, duplicates at most the letters in DATA at a fault, 0 failed, quota exact."""
    assert store.counts(mailing_id) == {"sent": count}
    assert set(kept) == {f"{mailing_id}-{i}" for i in range(1, count + 1)}  # 0 lost
    duplicates = sum(kept.values()) - count
    assert duplicates <= doubtful, (duplicates, doubtful)


def fleet_on(tmp_path: Path, entries: list[dict[str, Any]], recorder: Recorder | None = None,
             **retry: Any) -> tuple[SqliteStore, Any]:
    db = tmp_path / "faults.db"
    return SqliteStore(db), make_fleet(entries, db, recorder, retry={
        "backoff_initial": 0.01, "backoff_max": 0.05, "breaker_seconds": 0.2, **retry})


def test_a_1mb_greeting_at_priority_1_does_not_stop_the_mailing_going_through_priority_2(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    good = servers[1]
    with HostileSMTP("huge_greeting") as hostile:
        store, fleet = fleet_on(tmp_path, [
            {"name": "a", "sender": "a@example.org", "host": "127.0.0.1", "port": hostile.port,
             "security": "none", "auth": "none", "timeout": 2.0, "priority": 1},
            server_entry("b", good, certs, priority=2)])
        created = new_mailing(store, 6, FakeClock())
        clock = FakeClock()
        report = Dispatcher(fleet, store, clock=clock, batch_size=3).run(until_idle=True)
    assert report.sent == 6 and report.failed == 0
    assert store.counts(created.id) == {"sent": 6}  # nothing left claimed
    assert store.by_server(created.id) == {"b": 6}
    quota = store.quota("a", Limits(), clock.now())
    assert quota.failures >= 1 and "connection broke" in (quota.blocked_reason or "")
    assert used(store, "a", now=clock.now()) == 0  # never reached DATA: refunded


def test_a_connection_dropped_in_data_keeps_accepted_letters_and_fails_none(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("DATA", "250 never sent", match="-3\r\n", drop=True, times=1)
    recorder = Recorder()
    store, fleet = fleet_on(tmp_path, [server_entry("a", a, certs),
                                       server_entry("b", b, certs)], recorder)
    created = new_mailing(store, 10, FakeClock())
    clock = FakeClock()
    report = Dispatcher(fleet, store, clock=clock, batch_size=10).run(until_idle=True)
    assert report.failed == 0
    kept = copies(a, b)
    check(store, created.id, 10, kept, in_data_faults(a, b))
    assert [lid for lid, n in kept.items() if n > 1] == [f"{created.id}-3"]  # only the one
    assert sorted(kept[f"{created.id}-{i}"] for i in (1, 2)) == [1, 1]  # accepted: never again
    for seq in range(4, 11):  # never attempted on a: their attempts are intact
        letter = store.find_letter(f"{created.id}-{seq}")
        assert letter is not None and letter.attempts == 1 and letter.server == "b"
    assert used(store, "a", "b", now=clock.now()) == sum(kept.values())  # = copies kept
    assert "server_down" in recorder.types()


def test_421_and_451_at_random_lose_nothing_and_only_451_uses_an_attempt(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("MAIL", "421 4.7.0 Too busy, closing connection", chance=0.03)
    a.add_rule("RCPT", "451 4.3.0 Try again later", chance=0.05)
    b.add_rule("RCPT", "451 4.3.0 Try again later", chance=0.05)
    store, fleet = fleet_on(tmp_path, [server_entry("a", a, certs, connections=2),
                                       server_entry("b", b, certs, connections=2)],
                            max_attempts=10)
    created = new_mailing(store, 120, FakeClock())
    report = Dispatcher(fleet, store, clock=SystemClock(), batch_size=10).run()
    assert report.failed == 0
    kept = copies(a, b)
    check(store, created.id, 120, kept, 0)  # no fault inside DATA: not one duplicate
    refusals = sum(e.reply.startswith("451") for s in (a, b) for e in s.events)
    attempts = sum(store.find_letter(f"{created.id}-{i}").attempts  # type: ignore[union-attr]
                   for i in range(1, 121))
    assert attempts == 120 + refusals  # a 421 costs no letter an attempt
    assert sum(e.reply.startswith("421") for e in a.events) >= 1
    assert used(store, "a", "b") == 120


def test_a_server_hanging_in_data_rests_and_its_letter_in_doubt_is_resent_not_failed(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("DATA", "250 2.0.0 too late", match="-2\r\n", delay=3.0, times=1)
    store, fleet = fleet_on(tmp_path, [server_entry("a", a, certs, timeout=0.5),
                                       server_entry("b", b, certs)])
    created = new_mailing(store, 5, FakeClock())
    report = Dispatcher(fleet, store, clock=FakeClock(), batch_size=5).run(until_idle=True)
    assert report.failed == 0 and store.counts(created.id) == {"sent": 5}
    letter = store.find_letter(f"{created.id}-2")
    assert letter is not None and letter.attempts == 2 and letter.server == "b"


def test_the_breaker_sends_to_the_next_server_and_back_once_the_first_recovers(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("MAIL", "421 4.7.0 Too busy, closing connection", times=1)
    b.add_rule("DATA", "250 2.0.0 Ok: queued slowly", delay=0.05)
    store, fleet = fleet_on(tmp_path, [server_entry("a", a, certs),
                                       server_entry("b", b, certs)], breaker_seconds=0.3)
    created = new_mailing(store, 60, FakeClock())
    report = Dispatcher(fleet, store, clock=SystemClock(), batch_size=5).run()
    assert report.sent == 60 and report.failed == 0
    spread = store.by_server(created.id)
    assert spread.get("b", 0) >= 1 and spread.get("a", 0) >= 30  # b helped, a took back over
    assert store.quota("a", Limits(), SystemClock().now()).failures == 0  # closed again


def test_a_live_dispatcher_takes_back_the_letters_of_a_dead_one_while_it_runs(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    a.add_rule("DATA", "250 2.0.0 Ok: queued slowly", delay=0.02)
    store, fleet = fleet_on(tmp_path, [server_entry("a", a, certs)])
    created = new_mailing(store, 30, FakeClock())
    now = SystemClock().now()
    # a dispatcher of this host whose process is gone holds 10 letters, 2 of them in DATA
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    store.db.execute("INSERT INTO dispatchers (id, host, pid, seen_at) VALUES "
                     "('gone', ?, ?, ?)", (store.host, int(dead), now))
    held = store.claim("gone", "a", Limits(), 10, now).letters
    store.mark_sending([held[0].id, held[1].id], now)
    [holder] = store.holders(created.id, now)
    assert (holder.dispatcher, holder.alive, holder.claimed, holder.sending) == (
        "gone", False, 8, 2)
    assert holder.takeback_at == now  # a dead local process: taken back at once
    live = Dispatcher(fleet, store, clock=SystemClock(), batch_size=5)
    live._registered = True  # already running: only the heartbeat can recover
    store.register_dispatcher(live.id, now)
    live.heartbeat_seconds = 0.2
    report = live.run()
    assert report.sent == 30 and store.counts(created.id) == {"sent": 30}
    assert (report.recovered.requeued, report.recovered.resent) == (8, 2)
    assert store.holders(created.id, SystemClock().now()) == []


def test_status_says_who_holds_letters_and_quota_shows_the_open_breaker(
        tmp_path: Path, servers: list[FakeSMTP], capsys: Any) -> None:
    import json

    from mailfleet.cli.main import main
    from mailfleet_testing.chaos import write_config

    a = servers[0]
    db = tmp_path / "status.db"
    config = write_config(tmp_path / "c.toml", str(db), [
        {"name": "a", "sender": "a@example.org", "host": "127.0.0.1", "port": a.port,
         "security": "none", "auth": "none"}], deployment={"lease_seconds": 20.0})
    store = SqliteStore(db)
    created = new_mailing(store, 4, FakeClock())
    now = SystemClock().now()
    store.host, host = "another-machine", store.host
    store.register_dispatcher("far", now)
    store.host = host
    store.claim("far", "a", Limits(), 3, now)
    store.server_failed("a", now, "connection broke: dropped in DATA", lambda n: 60.0)

    def run(*args: str) -> Any:
        code = 0
        try:
            main(["--config", str(config), *args, "--json"])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        assert code == 0
        return json.loads(capsys.readouterr().out)

    [holder] = run("mailing", "status", created.id)["holders"]
    assert (holder["dispatcher"], holder["alive"], holder["claimed"]) == ("far", None, 3)
    assert holder["taken_back_at"] is not None  # when its 20 s lease runs out
    [row] = run("quota")
    assert row["breaker"] == {"state": "open", "failures": 1}
    assert "dropped in DATA" in row["blocked_reason"]


def test_a_lease_that_is_not_a_sane_number_of_seconds_is_refused_naming_the_key() -> None:
    import pytest

    from mailfleet.config import parse_config
    from mailfleet.errors import ConfigError

    for bad in (0, -1, float("nan"), 1e9):
        with pytest.raises(ConfigError, match="lease_seconds"):
            parse_config({"deployment": {"lease_seconds": bad}})
    assert parse_config({"deployment": {"lease_seconds": 5}}).deployment.lease_seconds == 5
    with pytest.raises(ConfigError, match="in_doubt"):
        parse_config({"deployment": {"in_doubt": "maybe"}})


def test_with_in_doubt_hold_a_letter_caught_in_data_is_held_not_resent(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("DATA", "250 never sent", match="-2\r\n", drop=True, times=1)
    db = tmp_path / "hold.db"
    fleet = make_fleet([server_entry("a", a, certs), server_entry("b", b, certs)], db)
    fleet = type(fleet)(attrs.evolve(fleet.config, deployment=attrs.evolve(
        fleet.config.deployment, in_doubt="hold")), fleet.plugins)
    store = SqliteStore(db)
    created = new_mailing(store, 4, FakeClock())
    clock = FakeClock()
    report = Dispatcher(fleet, store, clock=clock, batch_size=4).run(until_idle=True)
    assert report.failed == 0
    assert store.counts(created.id) == {"sent": 3, "held": 1}
    kept = copies(a, b)
    assert kept[f"{created.id}-2"] == 1  # held: the copy a kept is the only one
    assert used(store, "a", "b", now=clock.now()) == sum(kept.values())


def test_mailing_run_with_a_1mb_greeting_at_priority_1_exits_cleanly_through_priority_2(
        tmp_path: Path, servers: list[FakeSMTP]) -> None:
    from mailfleet_testing.chaos import start_run, write_config

    good = servers[1]
    db = tmp_path / "cli.db"
    with HostileSMTP("huge_greeting") as hostile:
        config = write_config(tmp_path / "c.toml", str(db), [
            {"name": "a", "sender": "a@example.org", "host": "127.0.0.1",
             "port": hostile.port, "security": "none", "auth": "none", "timeout": 2.0,
             "priority": 1},
            {"name": "b", "sender": "b@example.org", "host": "127.0.0.1", "port": good.port,
             "security": "none", "auth": "none", "priority": 2}])
        store = SqliteStore(db)
        created = new_mailing(store, 5, FakeClock())
        child = start_run(config, created.id)
        _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    assert b"Traceback" not in err
    assert store.counts(created.id) == {"sent": 5} and len(good.messages) == 5
