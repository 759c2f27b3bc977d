"""``mailfleet worker`` (send until stopped, on any number of machines) and ``mailfleet
workers`` (who is sending now)."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import datetime

import attrs
import click

from mailfleet import aio
from mailfleet.app import SendReport, WorkerStatus
from mailfleet.cli.main import Context, cli, emit, json_option, print_table
from mailfleet.sending.worker import Worker


@cli.command("worker")
@click.option("--concurrency", type=click.IntRange(1), default=None, metavar="N",
              help="Connections per server at once (default: each server's `connections`).")
@click.option("--grace", type=click.FloatRange(0), default=30.0, show_default=True,
              metavar="SECONDS", help="How long the letters in hand may take after a stop.")
@click.option("--poll", type=click.FloatRange(0.1), default=5.0, show_default=True,
              metavar="SECONDS", help="The longest rest without a notification of new "
              "letters (SQLite has none: it polls).")
@json_option
@click.pass_obj
def worker_cmd(obj: Context, concurrency: int | None, grace: float, poll: float,
               as_json: bool) -> None:
    """Send every active mailing's letters until stopped, waking when letters are queued.

    Run as many as you like, on as many machines as share the store: every limit holds
    across them. SIGTERM or Ctrl-C finishes the letters in hand, releases the rest and exits
    0; a second signal exits at once (the others take its letters back after the lease).
    """
    app = obj.app

    def started(worker: Worker) -> None:
        servers = ", ".join(s.name for s in app.fleet.servers if s.enabled) or "none"
        click.echo(f"mailfleet worker {worker.id} started (pid {os.getpid()}; servers: "
                   f"{servers}); stop with SIGTERM or Ctrl-C", err=True)

    async def work() -> SendReport:
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(signum: int) -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(128 + signum)  # at once: the letters go back after the lease
            click.echo(f"stopping: finishing the letters in hand (up to {grace:.0f} s); "
                       f"signal again to exit at once", err=True)
            app.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await app.work(concurrency=concurrency, poll_seconds=poll, grace=grace,
                                  started=started)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    report = aio.run(work())
    data = {k: (v.isoformat() if isinstance(v, datetime) else v)
            for k, v in attrs.asdict(report).items()}
    emit(data, as_json, lambda: click.echo(
        f"worker stopped: {report.sent} sent, {report.failed} failed, {report.deferred} "
        f"deferred, {report.skipped} skipped; {report.waiting} letter(s) wait in the queue"))


def _row(w: WorkerStatus) -> dict[str, object]:
    return {"id": w.id, "host": w.host, "pid": w.pid, "since": w.started_at.isoformat(),
            "seen": w.seen_at.isoformat(), "alive": w.alive, "claimed": w.claimed,
            "sending": w.sending, "servers": list(w.servers)}


_ALIVE = {True: "yes", False: "no", None: "lease"}


@cli.command("workers")
@json_option
@click.pass_obj
def workers_cmd(obj: Context, as_json: bool) -> None:
    """The workers registered in the store: host, pid, since, letters held, servers
    (alive: ``lease`` for another host's worker whose lease is fresh)."""
    workers = obj.app.workers()
    emit([_row(w) for w in workers], as_json, lambda: print_table(
        [(w.id, w.host, w.pid, w.started_at.isoformat(timespec="seconds"), _ALIVE[w.alive],
          w.claimed, w.sending, ", ".join(w.servers) or "-") for w in workers],
        ["id", "host", "pid", "since", "alive", "claimed", "in data", "servers"]))
