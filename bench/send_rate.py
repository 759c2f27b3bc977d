"""Send rate of the full path (store, quota, dispatcher, pipelined SMTP) vs Postfix smtp-source.

Sends N personalised ~5 KB letters into Postfix's ``smtp-sink`` on 127.0.0.1, then runs
``smtp-source -d -s 16 -l 5000`` into the same sink in the same run, and prints both rates and
their ratio. ``--memory N`` instead measures the peak memory of creating an N-recipient
mailing from a CSV file (in a child process per size). Not a test.

    .venv/bin/python bench/send_rate.py [--letters 20000] [--memory 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailfleet import aio
from mailfleet.config import parse_config
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import Template
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.smtp_sink import SmtpSink, run_smtp_source

PARAGRAPH = ("Dear {{ name }}, this month we have news about your account {{ account }}. "
             "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
             "incididunt ut labore et dolore magna aliqua.\n")
TEMPLATE = Template(subject="News for {{ name }}", text=PARAGRAPH * 14,
                    html="<html><body>" + "<p>" + PARAGRAPH * 10 + "</p></body></html>",
                    sender="news@example.com", sender_name="Example News",
                    unsubscribe_url="https://example.com/unsub?e={{ email }}")


def send_rate(letters: int, connections: int, batch: int, loop: str) -> None:
    with SmtpSink() as sink, tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        store = SqliteStore(db)
        rows = ({"email": f"user{i}@example.org", "name": f"User {i}", "account": f"A-{i:07d}"}
                for i in range(letters))
        created = create_mailing(store, TEMPLATE, rows)
        fleet = sink_fleet(db, sink.port, connections)
        dispatcher = Dispatcher(fleet, store, batch_size=batch)
        os.environ["MAILFLEET_EVENT_LOOP"] = loop
        if aio.loop_name() != loop:
            print(f"event loop {loop}: not installed, skipped")
            return
        cpu0, start = time.process_time(), time.perf_counter()
        report = dispatcher.run(until_idle=True)  # the blocking API, on the loop it picks
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        assert report.sent == letters, report
        size = len(dispatcher._prepared(created.id, fleet.servers[0])[0].render(
            to="user1@example.org", fields={"name": "User 1", "account": "A-0000001",
                                            "email": "user1@example.org"},
            letter_id="x-1", message_id="<x-1@example.com>", date=b"now"))
        ours = letters / elapsed
        source = run_smtp_source(sink.port, messages=letters, sessions=16, size=5000,
                                 extra_args=["-d"])
        print(f"letters: {letters}, ~{size} bytes each, {connections} connections, "
              f"batch {batch}, event loop {aio.loop_name()}")
        print(f"mailfleet full path: {ours:,.0f} letters/s ({elapsed:.2f} s, "
              f"{cpu / letters * 1e6:.0f} us CPU per letter)")
        print(f"smtp-source -d -s 16 -l 5000: {source.rate:,.0f} letters/s "
              f"({source.seconds:.2f} s, rc {source.returncode})")
        print(f"ratio: {ours / source.rate:.2f} x smtp-source")


def memory_child(count: int) -> None:
    """Create a ``count``-recipient mailing from a CSV file, then send it all into smtp-sink;
    print the peak RSS after each step (it must not grow with ``count``)."""
    with SmtpSink() as sink, tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "r.csv"
        with csv.open("w") as out:
            out.write("email,name,account\n")
            for i in range(count):
                out.write(f"user{i}@example.org,User {i},A-{i:07d}\n")
        db = Path(tmp) / "m.db"
        store = SqliteStore(db)
        start = time.perf_counter()
        created = create_mailing(store, TEMPLATE, csv)
        took = time.perf_counter() - start
        peak_create = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        report = Dispatcher(sink_fleet(db, sink.port, 16), store).run(until_idle=True)
        sent_in = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{count:>9,} recipients: created {created.letters:,} in {took:.1f} s "
              f"(peak RSS {peak_create:.0f} MiB), sent {report.sent:,} in {sent_in:.1f} s "
              f"(peak RSS {peak:.0f} MiB)")


def sink_fleet(db: Path, port: int, connections: int) -> Fleet:
    config = parse_config({"deployment": {"store": str(db)}, "servers": [{
        "name": "sink", "sender": "news@example.com", "host": "127.0.0.1", "port": port,
        "security": "none", "auth": "none", "connections": connections,
        "limits": {"per_hour": 10_000_000, "per_day": 100_000_000}}]})
    return Fleet(config, load_plugins(entry_points=False))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--loops", default="asyncio,uvloop",
                        help="event loops to measure, in turn (uvloop only if installed)")
    parser.add_argument("--memory", type=int, default=0,
                        help="measure peak memory creating this many recipients (and 1,000)")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
    elif args.memory:
        for count in (1_000, args.memory):
            subprocess.run([sys.executable, __file__, "--memory-child", str(count)], check=True)
    else:
        for loop in args.loops.split(","):
            send_rate(args.letters, args.connections, args.batch, loop)


if __name__ == "__main__":
    main()
