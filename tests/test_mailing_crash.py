"""Crash safety: a sending process is killed with SIGKILL mid-run, then a restart finishes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import test_mailing_support as support
from test_mailing_support import dispatcher, make_fleet, new_mailing, server_entry

from mailfleet.clock import FakeClock
from mailfleet.store import open_store
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.chaos import kill_loop, quota_used, start_run, write_config
from mailfleet_testing.smtpd import FakeSMTP

CHILD = """
import json, sys
from mailfleet.config import parse_config
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.plugins.manager import load_plugins
from mailfleet.store.sqlite import SqliteStore
entries, db = json.loads(sys.argv[1]), sys.argv[2]
fleet = Fleet(parse_config({"servers": entries}), load_plugins(entry_points=False))
print("started", flush=True)
Dispatcher(fleet, SqliteStore(db), batch_size=5).run()
"""
LETTER_ID = re.compile(r"X-Mailfleet-Letter-Id: (\S+)")
MESSAGE_ID = re.compile(r"Message-ID: (\S+)")

certs = support.certs
servers = support.servers



def delivered(smtp: FakeSMTP) -> list[tuple[str, str]]:
    """(letter id, Message-ID) of every DATA the server accepted (the rule's events)."""
    out = []
    for event in smtp.events:
        if event.stage == "DATA" and event.reply.startswith("250"):
            letter, mid = LETTER_ID.search(event.argument), MESSAGE_ID.search(event.argument)
            assert letter is not None and mid is not None
            out.append((letter.group(1), mid.group(1)))
    return out


def kill_mid_run(tmp_path: Path, smtp: FakeSMTP, certs: TLSCerts, hold: bool
                 ) -> tuple[SqliteStore, str, list[dict[str, object]]]:
    smtp.add_rule("DATA", "250 2.0.0 Ok: queued slowly", delay=0.03)
    db = tmp_path / "crash.db"
    store = SqliteStore(db)
    created = new_mailing(store, 60, FakeClock(), hold_in_data=hold)
    entries = [server_entry("a", smtp, certs, connections=2)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(entries), str(db)],
                             stdout=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 30
        while len(delivered(smtp)) < 12:
            assert child.poll() is None, "the sending process ended early"
            assert time.monotonic() < deadline, "the sending process sent nothing"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    return store, created.id, entries


@pytest.mark.parametrize("hold", [False])
def test_killed_sender_restarts_and_every_letter_goes_at_least_once(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts, hold: bool) -> None:
    smtp = servers[0]
    store, mailing_id, entries = kill_mid_run(tmp_path, smtp, certs, hold)
    counts = store.counts(mailing_id)
    in_flight = counts.get("claimed", 0) + counts.get("sending", 0)
    assert in_flight > 0 and counts.get("sent", 0) < 60
    before = len(delivered(smtp))
    report = dispatcher(make_fleet(entries, tmp_path / "crash.db"), store, FakeClock(),
                        batch_size=5).run()
    assert report.recovered.requeued + report.recovered.resent == in_flight
    assert store.counts(mailing_id) == {"sent": 60}
    seen = delivered(smtp)
    by_letter = Counter(letter for letter, _ in seen)
    assert set(by_letter) == {f"{mailing_id}-{i}" for i in range(1, 61)}
    duplicates = len(seen) - 60
    assert duplicates <= 2 * 5  # bounded by letters in flight: connections x batch size
    assert duplicates <= in_flight and len(seen) >= before
    message_ids = {letter: {m for lid, m in seen if lid == letter} for letter in by_letter}
    assert all(len(ids) == 1 for ids in message_ids.values())  # resent with the same ID


def test_letters_caught_inside_data_are_held_for_review_when_the_mailing_says_so(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    smtp = servers[0]
    store, mailing_id, entries = kill_mid_run(tmp_path, smtp, certs, hold=True)
    sending = store.counts(mailing_id).get("sending", 0)
    report = dispatcher(make_fleet(entries, tmp_path / "crash.db"), store, FakeClock(),
                        batch_size=5).run()
    counts = store.counts(mailing_id)
    assert report.recovered.held == sending == counts.get("held", 0)
    assert counts.get("sent", 0) + counts.get("held", 0) == 60
    assert store.release_held(mailing_id) == sending


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "chaos.db")
    return str(request.getfixturevalue("pg_dsn"))


def plain_entry(name: str, smtp: FakeSMTP, **extra: object) -> dict[str, object]:
    return {"name": name, "sender": f"{name}@example.org", "host": "127.0.0.1",
            "port": smtp.port, "security": "none", "auth": "none", "timeout": 10.0, **extra}


def test_kill_9_in_a_loop_loses_nothing_duplicates_only_letters_in_data_and_keeps_quota_exact(
        tmp_path: Path, servers: list[FakeSMTP], store_location: str) -> None:
    a, b, _ = servers
    count, limit = 240, 100
    config = write_config(tmp_path / "chaos.toml", store_location, [
        plain_entry("a", a, connections=4, priority=1, limits={"per_hour": limit}),
        plain_entry("b", b, connections=2, priority=2)], deployment={"lease_seconds": 3.0})
    store = open_store(store_location)
    created = new_mailing(store, count, FakeClock())  # type: ignore[arg-type]
    report = kill_loop(config, store, created.id, [a, b], ["a", "b"], kills=10, letters=count,
                       most_between=15)
    assert report.kills == 10
    assert report.lost == 0 and report.failed == 0
    assert report.duplicates <= report.in_data_at_kills
    assert store.counts(created.id) == {"sent": count}
    # fill-first held through every crash: a is spent exactly, never beyond
    used_a = quota_used(store, ["a"])
    assert used_a == limit and len(a.messages) <= limit
    # every charge is a letter a server was handed (one in doubt may not have arrived)
    assert report.copies <= report.quota_used <= report.copies + report.in_data_at_kills
    store.close()


def test_a_survivor_finishes_a_killed_dispatchers_letters_within_the_lease(
        tmp_path: Path, servers: list[FakeSMTP]) -> None:
    smtp = servers[0]
    smtp.add_rule("DATA", "250 2.0.0 Ok: queued slowly", delay=0.01)
    db = str(tmp_path / "two.db")
    lease = 3.0
    config = write_config(tmp_path / "two.toml", db, [plain_entry("a", smtp, connections=2)],
                          deployment={"lease_seconds": lease})
    store = open_store(db)
    created = new_mailing(store, 200, FakeClock())  # type: ignore[arg-type]
    victim, survivor = start_run(config, created.id), start_run(config, created.id)
    try:
        deadline = time.monotonic() + 60
        while len(delivered(smtp)) < 20:
            assert time.monotonic() < deadline and victim.poll() is None
            time.sleep(0.005)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        killed_at = time.monotonic()
        held = [h for h in store.holders(created.id, time.time())
                if h.pid == victim.pid]
        # the victim's letters come back without any restart, at the survivor's next beat
        while any(h.pid == victim.pid for h in store.holders(created.id, time.time())):
            assert time.monotonic() - killed_at < lease, "not taken back within the lease"
            time.sleep(0.02)
        survivor.wait(60)
    finally:
        for child in (victim, survivor):
            if child.poll() is None:
                child.kill()
                child.wait(10)
    assert survivor.returncode == 0
    assert store.counts(created.id) == {"sent": 200}
    assert all(h.alive is False for h in held)  # status sees a stopped holder
    kept = Counter(letter for letter, _ in delivered(smtp))
    assert set(kept) == {f"{created.id}-{i}" for i in range(1, 201)}
    assert sum(kept.values()) - 200 <= sum(h.sending for h in held)
    store.close()
