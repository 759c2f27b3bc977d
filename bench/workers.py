"""Send rate of ``mailfleet worker`` processes on SQLite and PostgreSQL vs smtp-source.

For each case (store x number of workers) a fresh store gets a paused mailing of N ~5 KB
letters; the workers start and register, the mailing is resumed (PostgreSQL workers wake on
the notification, SQLite workers poll every 0.1 s), and the clock runs until the last letter's
``sent_at``; meanwhile the machine's CPUs are sampled (``/proc/stat``): one worker that leaves
no CPU idle cannot be joined by a second one that runs faster. ``smtp-source -d -s 16 -l
5000`` then sends into the same ``smtp-sink`` in the same run. Not a test.

    .venv/bin/python bench/workers.py [--letters 20000] [--cases sqlite:1,sqlite:2,...]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from send_rate import TEMPLATE

from mailfleet.mailings.mailing import create_mailing
from mailfleet.store import open_store
from mailfleet_testing.chaos import mailfleet_command, write_config
from mailfleet_testing.postgres import PostgresServer
from mailfleet_testing.smtp_sink import SmtpSink, run_smtp_source

CASES = "sqlite:1,sqlite:2,postgres:1,postgres:2,postgres:4"


class Probe:
    """Reads a mailing's progress straight from the database, on one connection: cheap
    enough to poll (``Store.counts`` counts every row, and at 20,000 rows every 10 ms that
    cost a PostgreSQL backend half a core, taken from the workers)."""

    def __init__(self, kind: str, location: str, mailing: str) -> None:
        self.mark = "%s" if kind == "postgres" else "?"
        self.db: Any = (psycopg.connect(location, autocommit=True) if kind == "postgres"
                        else sqlite3.connect(location, isolation_level=None))
        self.mailing = mailing

    def _one(self, sql: str) -> Any:
        row = self.db.execute(sql.replace("?", self.mark), (self.mailing,)).fetchone()
        assert row is not None
        return row[0]

    def unfinished(self) -> bool:
        """Whether a letter is still to be sent (the first one found in the index will do:
        counting them read 50,000 index entries and cost PostgreSQL 13 ms a call)."""
        return bool(self._one("SELECT EXISTS (SELECT 1 FROM letters WHERE mailing_id = ? AND "
                              "state IN ('queued', 'claimed', 'sending'))"))

    def last_sent(self) -> float:
        """When the mailing's last letter was marked sent, on the store's clock."""
        return float(self._one("SELECT MAX(sent_at) FROM letters WHERE mailing_id = ?"))

    def close(self) -> None:
        self.db.close()


def cpu_times() -> tuple[float, float]:
    """The machine's busy and total CPU time so far (Linux ``/proc/stat``, in ticks)."""
    with open("/proc/stat") as stat:
        ticks = [float(t) for t in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def run_case(kind: str, workers: int, letters: int, connections: int, sink: SmtpSink,
             postgres: PostgresServer | None, tmp: Path, n: int) -> tuple[float, float]:
    """Letters per second, and how busy the machine's CPUs were meanwhile (0 to 1)."""
    if kind == "postgres":
        assert postgres is not None
        name = f"bench{n}"
        postgres.create_database(name)
        location = postgres.dsn(name)
    else:
        location = str(tmp / f"bench{n}.db")
    config = write_config(tmp / f"bench{n}.toml", location, [{
        "name": "sink", "sender": "news@example.com", "host": "127.0.0.1", "port": sink.port,
        "security": "none", "auth": "none", "connections": connections,
        "limits": {"per_hour": 10_000_000, "per_day": 100_000_000}}])
    store = open_store(location)
    rows = ({"email": f"user{i}@example.org", "name": f"User {i}", "account": f"A-{i:07d}"}
            for i in range(letters))
    mailing = create_mailing(store, TEMPLATE, rows).id
    store.set_mailing_state(mailing, "paused")
    children = [subprocess.Popen([*mailfleet_command(), "--config", str(config), "worker",
                                  "--poll", "0.1"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE) for _ in range(workers)]
    try:
        deadline = time.monotonic() + 60
        while len(store.workers(time.time())) < workers:
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                raise RuntimeError("the workers did not start: "
                                   + " | ".join(c.stderr.read().decode()[-500:]  # type: ignore[union-attr]
                                                for c in children if c.poll() is not None))
            time.sleep(0.05)
        time.sleep(0.3)  # every worker's first pass is over: they rest
        probe = Probe(kind, location, mailing)
        busy, total = cpu_times()
        start = store.clock().now()
        store.set_mailing_state(mailing, "active")
        while probe.unfinished():  # the end is the last letter's own sent_at
            if any(c.poll() is not None for c in children):
                raise RuntimeError("a worker ended early")
            time.sleep(0.05)
        elapsed = probe.last_sent() - start
        busy_after, total_after = cpu_times()
        probe.close()
        if store.counts(mailing) != {"sent": letters}:
            raise RuntimeError(f"not every letter was sent: {store.counts(mailing)}")
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(60)
        store.close()
    return letters / elapsed, (busy_after - busy) / (total_after - total)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16,
                        help="connections of the server, in each worker")
    parser.add_argument("--cases", default=CASES, help="store:workers, comma-separated")
    args = parser.parse_args()
    cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    postgres = (PostgresServer().start() if any(k == "postgres" for k, _ in cases) else None)
    rates: dict[tuple[str, int], float] = {}
    busy: dict[tuple[str, int], float] = {}
    try:
        with SmtpSink() as sink, tempfile.TemporaryDirectory() as tmp:
            for n, (kind, workers) in enumerate(cases):
                rates[kind, workers], busy[kind, workers] = run_case(
                    kind, workers, args.letters, args.connections, sink, postgres, Path(tmp), n)
            source = run_smtp_source(sink.port, messages=args.letters, sessions=16,
                                     size=5000, extra_args=["-d"])
    finally:
        if postgres is not None:
            postgres.stop()
    print(f"letters: {args.letters} per case, {args.connections} connections per worker, "
          f"into smtp-sink; smtp-source -d -s 16 -l 5000: {source.rate:,.0f} letters/s")
    print(f"{'store':<10} {'workers':>7} {'letters/s':>10} {'x smtp-source':>14} "
          f"{'CPUs busy':>10}")
    for (kind, workers), rate in rates.items():
        print(f"{kind:<10} {workers:>7} {rate:>10,.0f} {rate / source.rate:>14.2f} "
              f"{busy[kind, workers]:>10.0%}")
    pg1, sq1 = rates.get(("postgres", 1)), rates.get(("sqlite", 1))
    if pg1 and sq1:
        print(f"PostgreSQL x1 / SQLite x1: {pg1 / sq1:.2f} (target >= 0.9)")
    if pg1 and (pg2 := rates.get(("postgres", 2))):
        print(f"PostgreSQL x2 / PostgreSQL x1: {pg2 / pg1:.2f} (target >= 1.4)")
    if pg1 and (pg4 := rates.get(("postgres", 4))):
        print(f"PostgreSQL x4 / PostgreSQL x1: {pg4 / pg1:.2f}")


if __name__ == "__main__":
    main()
