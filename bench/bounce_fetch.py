"""`bounces fetch` over a large Dovecot mailbox: rate and peak memory, beside references.

Starts the project's private Dovecot (mailfleet_testing.dovecot), writes N reports straight
into a fresh user's Maildir (the public bounce corpus, cycled), then in the same run:

- reference 1: a bare imapclient download of the whole mailbox (batches of 50, no parse);
- reference 2: the production parse (``Plugins.parse_bounce``, in-process) of a sample;
- ``mailfleet bounces fetch`` in its own process (SQLite store, flags, progress per
  message, the parse in its budgeted worker), with its peak RSS and the worker's.

The fetch runs for ``--small`` reports too, in another mailbox, to show that memory does not
grow with the mailbox. Not a test.

    .venv/bin/python bench/bounce_fetch.py [--reports 20000] [--small 2000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailfleet_testing.certs import make_certs
from mailfleet_testing.dovecot import DovecotServer, Mailbox

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounce-corpus" / "eml"


def fill(server: DovecotServer, box: Mailbox, count: int) -> int:
    """Write ``count`` corpus reports into ``box``'s Maildir ``new/``; return their bytes."""
    domain, user = box.login.split("@")[1], box.login.split("@")[0]
    home = server.mail_dir / domain / user
    maildir = home / "Maildir"
    uid, gid = server.mail_uid_gid
    for sub in (home.parent, home, maildir, *(maildir / d for d in ("cur", "new", "tmp"))):
        sub.mkdir(exist_ok=True)
        os.chown(sub, uid, gid)
    sources = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    total, now = 0, int(time.time())
    for n, raw in zip(range(count), itertools.cycle(sources), strict=False):
        path = maildir / "new" / f"{now}.M{n}P{os.getpid()}.bench,S={len(raw)}"
        path.write_bytes(raw)
        os.chown(path, uid, gid)
        total += len(raw)
    return total


def download(box: Mailbox) -> tuple[float, list[bytes]]:
    """Reference 1: read the whole mailbox read-only in batches of 50; (seconds, sample)."""
    sample: list[bytes] = []
    start = time.perf_counter()
    with box.imap(timeout=120) as client:
        client.select_folder("INBOX", readonly=True)
        uids = client.search("ALL")
        for i in range(0, len(uids), 50):
            data = client.fetch(uids[i:i + 50], [b"BODY.PEEK[]"])
            if len(sample) < 2000:
                sample += [data[u][b"BODY[]"] for u in sorted(data)][:2000 - len(sample)]
    return time.perf_counter() - start, sample


def parse_rate(sample: list[bytes]) -> tuple[float, float]:
    """Reference 2: the production parse in this process: (reports/s, CPU ms per report)."""
    from mailfleet.bounces.mime import MAX_BYTES
    from mailfleet.plugins.manager import load_plugins

    parse = load_plugins().parse_bounce
    start, cpu = time.perf_counter(), time.process_time()
    for raw in sample:
        parse(raw[:MAX_BYTES])
    return (len(sample) / (time.perf_counter() - start),
            (time.process_time() - cpu) / len(sample) * 1000)


def fetch(box: Mailbox, tmp: Path) -> dict[str, float]:
    """``mailfleet bounces fetch --json`` in a child process: counts, seconds, peak RSS."""
    config = tmp / f"{box.login}.toml"
    config.write_text(f'''
[deployment]
store = "{tmp / (box.login + '.db')}"

[[servers]]
name = "unused"
sender = "{box.address}"
host = "127.0.0.1"

[bounces]
protocol = "imap"
host = "127.0.0.1"
port = {box.imaps_port}
security = "ssl"
login = "{box.login}"
password = "{box.password}"
ca_file = "{box.ca_file}"
timeout = 120
''', encoding="utf-8")
    out = subprocess.run([sys.executable, __file__, "--child", str(config)], check=True,
                         capture_output=True, text=True).stdout
    return dict(json.loads(out.splitlines()[-1]))


def child(config: str) -> None:
    """Run the command as an operator would; print one JSON line of figures."""
    import contextlib

    from mailfleet.cli.main import main

    output = Path(config).with_suffix(".json")
    start = time.perf_counter()
    with output.open("w", encoding="utf-8") as file, contextlib.redirect_stdout(file), \
            contextlib.suppress(SystemExit):
        main(["--config", config, "bounces", "fetch", "--json"])
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF)
    worker = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(output.read_text(encoding="utf-8"))
    print(json.dumps({
        "read": summary["read"], "set_aside": len(summary["set_aside"]),
        "bounces": summary["bounces"], "seconds": seconds, "rss_mib": own.ru_maxrss / 1024,
        "worker_rss_mib": worker.ru_maxrss / 1024,
        "reader_cpu": own.ru_utime + own.ru_stime,
        "worker_cpu": worker.ru_utime + worker.ru_stime}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)
        certs = make_certs(tmp / "certs")
        with DovecotServer(certs.trusted) as server:
            for count in (args.small, args.reports):
                box = server.mailbox()
                size = fill(server, box, count)
                seconds, sample = download(box)
                rate, parse_cpu = parse_rate(sample)
                got = fetch(box, tmp)
                fetched = got["read"] / got["seconds"]
                per = 1000 / got["read"]
                print(f"{count:,} reports ({size / count / 1024:.1f} KiB average) in Dovecot")
                print(f"  reference, bare IMAP download: {count / seconds:,.0f} messages/s")
                print(f"  reference, production parse in-process ({len(sample):,} reports): "
                      f"{rate:,.0f} reports/s, {parse_cpu:.1f} ms CPU per report")
                print(f"  bounces fetch: {got['read']:,.0f} read ({got['set_aside']:.0f} set "
                      f"aside, {got['bounces']:,.0f} bounces) in {got['seconds']:.1f} s = "
                      f"{fetched:,.0f} reports/s = {fetched / rate:.2f} x the parse alone")
                print(f"  CPU per report: reader {got['reader_cpu'] * per:.1f} ms + parse worker "
                      f"{got['worker_cpu'] * per:.1f} ms")
                print(f"  peak RSS: fetch process {got['rss_mib']:.0f} MiB, parse worker "
                      f"{got['worker_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
