"""Creating a mailing from a CSV file: rate and peak memory, beside Python's csv module.

Writes an N-recipient CSV file (email, name, account), then in a child process creates the
mailing from it (encoding detection, the record splitter, validation, the SQLite store in
batches) and prints the rate and the peak RSS; in the same run, a bare ``csv.reader`` pass
over the same file is the reference. Not a test.

    .venv/bin/python bench/create_rate.py [--letters 200000]
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailfleet.mailings.mailing import create_mailing
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--letters", type=int, default=200_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]))
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
        out = subprocess.run([sys.executable, __file__, "--child", str(path),
                              str(Path(tmp) / "create.db")], check=True, capture_output=True,
                             text=True).stdout.split()
        letters, took, cpu, peak = int(out[0]), float(out[1]), float(out[2]), float(out[3])
    ours = letters / took
    print(f"create a {letters:,}-letter mailing from CSV: {took:.1f} s, {ours:,.0f} letters/s, "
          f"{cpu / letters * 1e6:.1f} us CPU per letter, peak RSS {peak:.0f} MiB")
    print(f"csv.reader alone over the same file: {reference:,.0f} rows/s "
          f"(create runs at {ours / reference:.2f} x)")


if __name__ == "__main__":
    main()
