"""Delivery under faults, at scale (``make chaos``). Not a test: it prints figures.

1. ``kill``: 100 ``kill -9`` of a real ``mailfleet mailing run`` during a 3,000-letter mailing
   (4 connections to a priority-1 server limited to 2,000 letters an hour, a priority-2 server
   behind it), on SQLite and on PostgreSQL: letters lost, copies beyond the first against the
   letters the store had inside DATA at each kill, letters failed, quota used against copies
   the servers kept, and fill-first (the first server spent exactly).
2. ``survivor``: two ``mailing run`` processes share a mailing, one is killed; how long until
   the survivor takes back the dead one's letters, against the lease.
3. ``drop``: 1,000 letters; the priority-1 server drops the connection inside DATA for 2 % of
   the letters (after it kept the message), and (``421``) answers 421 to 0.2 % of commands;
   a healthy priority-2 server behind it.

    .venv/bin/python bench/chaos.py [--kills 100] [--letters 3000] [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from mailfleet.clock import FakeClock, SystemClock
from mailfleet.config import parse_config
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import Template
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.store import open_store
from mailfleet.store.base import Store
from mailfleet_testing._util import make_server_dir, remove_tree
from mailfleet_testing.certs import make_certs
from mailfleet_testing.chaos import copies, kill_loop, quota_used, start_run, write_config
from mailfleet_testing.postgres import PostgresServer
from mailfleet_testing.smtpd import FakeSMTP

TEMPLATE = Template(subject="News for {{ name }}", text="Dear {{ name }},\nnews.\n" * 20,
                    sender="news@example.com", sender_name="Example News")


def entry(name: str, smtp: FakeSMTP, **extra: Any) -> dict[str, Any]:
    return {"name": name, "sender": f"{name}@example.org", "host": "127.0.0.1",
            "port": smtp.port, "security": "none", "auth": "none", "timeout": 10.0, **extra}


def mailing(store: Store, letters: int) -> str:
    rows = ({"email": f"user{i}@example.org", "name": f"User {i}"} for i in range(letters))
    return create_mailing(store, TEMPLATE, rows, clock=FakeClock()).id


def kill_run(kind: str, location: str, tmp: Path, certs: Any, kills: int, letters: int) -> None:
    with FakeSMTP(certs.trusted) as a, FakeSMTP(certs.trusted) as b:
        limit = letters * 2 // 3
        config = write_config(tmp / f"kill-{kind}.toml", location, [
            entry("a", a, connections=4, priority=1, limits={"per_hour": limit}),
            entry("b", b, connections=4, priority=2)], deployment={"lease_seconds": 5.0})
        store = open_store(location)
        mid = mailing(store, letters)
        report = kill_loop(config, store, mid, [a, b], ["a", "b"], kills=kills,
                           letters=letters, rng=random.Random(kills), most_between=50)
        used_a = quota_used(store, ["a"])
        print(f"kill -9 [{kind}]: {report.kills} kills in {report.seconds} s, "
              f"{report.letters} letters: lost {report.lost}, duplicates "
              f"{report.duplicates} (letters in DATA at the kills: {report.in_data_at_kills}; "
              f"most copies of one letter {report.most_copies}), failed {report.failed}, "
              f"quota used {report.quota_used} vs copies kept {report.copies} (drift "
              f"{report.quota_used - report.copies}); server a {used_a}/{limit} used, "
              f"{len(a.messages)} kept; server b {len(b.messages)} kept")
        store.close()


def survivor_run(kind: str, location: str, tmp: Path, certs: Any, lease: float) -> None:
    with FakeSMTP(certs.trusted) as smtp:
        smtp.add_rule("DATA", "250 2.0.0 Ok: queued slowly", delay=0.005)
        config = write_config(tmp / f"survivor-{kind}.toml", location,
                              [entry("a", smtp, connections=2)],
                              deployment={"lease_seconds": lease})
        store = open_store(location)
        mid = mailing(store, 1000)
        victim, survivor = start_run(config, mid), start_run(config, mid)
        try:
            while sum(e.stage == "DATA" for e in smtp.events) < 100:
                time.sleep(0.005)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            killed = time.monotonic()
            held = [h for h in store.holders(mid, time.time()) if h.pid == victim.pid]
            while any(h.pid == victim.pid for h in store.holders(mid, time.time())):
                time.sleep(0.01)
            back = time.monotonic() - killed
            survivor.wait(300)
        finally:
            for child in (victim, survivor):
                if child.poll() is None:
                    child.kill()
                    child.wait(10)
        kept = sum(e.stage == "DATA" and e.reply.startswith("250") for e in smtp.events)
        counts = store.counts(mid)
        print(f"survivor [{kind}]: the killed dispatcher held "
              f"{sum(h.claimed + h.sending for h in held)} letters "
              f"({sum(h.sending for h in held)} in DATA); the survivor took them back after "
              f"{back:.2f} s (lease {lease:g} s) and finished: {counts}; copies kept {kept} "
              f"for 1000 letters")
        store.close()


def drop_run(kind: str, location: str, tmp: Path, certs: Any, letters: int,
             fault: str) -> None:
    with FakeSMTP(certs.trusted) as a, FakeSMTP(certs.trusted) as b:
        if fault == "drop":
            a.add_rule("DATA", "250 never sent", drop=True, chance=0.02)
        else:
            for stage in ("MAIL", "RCPT", "DATA"):
                a.add_rule(stage, "421 4.7.0 Too busy, closing connection", chance=0.002)
        config = parse_config({
            "deployment": {"store": location},
            "retry": {"breaker_seconds": 0.5, "connect_attempts": 1},
            "servers": [entry("a", a, connections=4, priority=1),
                        entry("b", b, connections=4, priority=2)]})
        fleet = Fleet(config, load_plugins(entry_points=False))
        store = open_store(location)
        mid = mailing(store, letters)
        start = time.monotonic()
        report = Dispatcher(fleet, store, clock=SystemClock()).run()
        took = time.monotonic() - start
        kept = copies([a, b])
        faults = sum(e.reply == "DROPPED" for e in a.events)
        refusals = sum(e.reply.startswith("421") for e in a.events)
        ids = {f"{mid}-{i}" for i in range(1, letters + 1)}
        counts = store.counts(mid)
        print(f"{fault} [{kind}]: {letters} letters in {took:.1f} s: sent {report.sent}, "
              f"failed {counts.get('failed', 0)}, lost {len(ids - set(kept))}, duplicates "
              f"{sum(kept.values()) - len(kept)} (letters in DATA at the {faults} drops: "
              f"{faults}; 421 replies: {refusals}); server a kept {len(a.messages)}, healthy "
              f"server b kept {len(b.messages)}; quota used {quota_used(store, ['a', 'b'])} "
              f"vs copies kept {sum(kept.values())}")
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--letters", type=int, default=3000)
    parser.add_argument("--drop-letters", type=int, default=1000)
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--parts", default="kill,survivor,drop,421")
    args = parser.parse_args()
    parts = args.parts.split(",")
    directory = make_server_dir("mailfleet-chaos-")
    postgres: PostgresServer | None = None
    try:
        certs = make_certs(directory / "certs")
        for kind in args.stores.split(","):
            if kind == "postgres" and postgres is None:
                postgres = PostgresServer().start()

            def location(name: str, kind: str = kind,
                         server: PostgresServer | None = postgres) -> str:
                if kind == "sqlite":
                    return str(directory / f"{name}.db")
                assert server is not None
                return server.create_database()

            if "kill" in parts:
                kill_run(kind, location("kill"), directory, certs, args.kills, args.letters)
            if "survivor" in parts:
                survivor_run(kind, location("survivor"), directory, certs, lease=5.0)
            for fault in ("drop", "421"):
                if fault in parts:
                    drop_run(kind, location(fault), directory, certs, args.drop_letters, fault)
    finally:
        if postgres is not None:
            postgres.stop()
        remove_tree(directory)


if __name__ == "__main__":
    main()
