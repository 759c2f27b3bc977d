"""Creating a mailing from a CSV file: rate and peak memory, beside Python's csv module.

Writes an N-recipient CSV file (email, name, account), then in a child process creates the
mailing from it (encoding detection, the record splitter, validation, the SQLite store in
batches) and prints the rate and the peak RSS. In the same run, in its own child process,
the stock reference: ``csv.reader`` rows, ``json.dumps`` of the merge fields and
``executemany`` into the same SQLite store (same schema and indexes, same batches), with no
encoding detection and no validation: the floor of what any implementation on this store
can reach. A bare ``csv.reader`` pass shows the reading cost alone. Not a test.

    .venv/bin/python bench/create_rate.py [--letters 200000]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailfleet.mailings.mailing import BATCH, create_mailing
from mailfleet.store.base import MailingRecord
from mailfleet.store.sqlite import SqliteStore

sys.path.insert(0, str(Path(__file__).parent))
from send_rate import TEMPLATE  # the same ~5.3 KB letter


def child(path: Path, db: Path) -> None:
    store = SqliteStore(db)
    start, cpu = time.perf_counter(), time.process_time()
    created = create_mailing(store, TEMPLATE, path)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{created.letters} {took} {cpu} {peak}")


def stock(path: Path, db: Path) -> None:
    store = SqliteStore(db)
    start, cpu = time.perf_counter(), time.process_time()
    store.create_mailing(MailingRecord("mstock", "stock", 0.0, "draft", {}, "example.org",
                                       False))
    letters = 0
    batch: list[tuple[int, str, str]] = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for seq, (email, name, account) in enumerate(reader, 1):
            batch.append((seq, email, json.dumps({"name": name, "account": account},
                                                 ensure_ascii=False)))
            if len(batch) >= BATCH:
                letters += store.add_letters("mstock", batch)
                batch.clear()
    letters += store.add_letters("mstock", batch)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{letters} {took} {cpu} {peak}")


def run(mode: str, path: Path, db: Path) -> tuple[int, float, float, float]:
    out = subprocess.run([sys.executable, __file__, mode, str(path), str(db)], check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1]), float(out[2]), float(out[3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=200_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--stock", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
        return
    if args.stock:
        stock(Path(args.stock[0]), Path(args.stock[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipients.csv"
        with path.open("w") as out:
            out.write("email,name,account\n")
            for i in range(args.letters):
                out.write(f"user{i}@example.org,User {i},A-{i:07d}\n")
        start = time.perf_counter()
        with path.open(newline="") as handle:
            rows = sum(1 for _ in csv.reader(handle)) - 1
        reference = rows / (time.perf_counter() - start)
        base_letters, base_took, base_cpu, base_peak = run("--stock", path,
                                                           Path(tmp) / "stock.db")
        letters, took, cpu, peak = run("--child", path, Path(tmp) / "create.db")
    ours = letters / took
    print(f"create a {letters:,}-letter mailing from CSV: {took:.1f} s, {ours:,.0f} letters/s, "
          f"{cpu / letters * 1e6:.1f} us CPU per letter, peak RSS {peak:.0f} MiB")
    print(f"stock csv.reader + json.dumps + executemany into the same store: {base_took:.1f} s, "
          f"{base_letters / base_took:,.0f} letters/s, {base_cpu / base_letters * 1e6:.1f} us "
          f"CPU per letter, peak RSS {base_peak:.0f} MiB (create takes {took / base_took:.2f} x "
          f"its time)")
    print(f"csv.reader alone over the same file: {reference:,.0f} rows/s "
          f"(create runs at {ours / reference:.2f} x)")


if __name__ == "__main__":
    main()
