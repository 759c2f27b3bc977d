"""``mailfleet worker`` (send until stopped, on any number of machines) and ``mailfleet
workers`` (who is sending now)."""

from __future__ import annotations

import os

import attrs
import click

from mailfleet.app import WorkerStatus
from mailfleet.cli.output import Context, emit, iso, json_option, print_table


@click.command("worker")
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

    def started(worker_id: str) -> None:
        servers = ", ".join(s.name for s in app.servers() if s.enabled) or "none"
        click.echo(f"mailfleet worker {worker_id} started (pid {os.getpid()}; servers: "
                   f"{servers}); stop with SIGTERM or Ctrl-C", err=True)

    def stopping() -> None:
        click.echo(f"stopping: finishing the letters in hand (up to {grace:g} s); signal "
                   f"again to exit at once", err=True)

    report = app.work_blocking(concurrency=concurrency, poll_seconds=poll, grace=grace,
                               started=started, stopping=stopping)
    data = attrs.asdict(report)
    data["resume_at"] = iso(report.resume_at)
    emit(data, as_json, lambda: click.echo(
        f"worker stopped: {report.sent} sent, {report.failed} failed, {report.deferred} "
        f"deferred, {report.skipped} skipped; {report.waiting} letter(s) wait in the queue"))


def _row(w: WorkerStatus) -> dict[str, object]:
    return {"id": w.id, "host": w.host, "pid": w.pid, "since": iso(w.started_at),
            "seen": iso(w.seen_at), "alive": w.alive, "claimed": w.claimed,
            "sending": w.sending, "servers": list(w.servers)}


_ALIVE = {True: "yes", False: "no", None: "lease"}


@click.command("workers")
@json_option
@click.pass_obj
def workers_cmd(obj: Context, as_json: bool) -> None:
    """The workers registered in the store: host, pid, since, letters held, servers
    (alive: ``lease`` for another host's worker whose lease is fresh)."""
    workers = obj.app.workers()
    emit([_row(w) for w in workers], as_json, lambda: print_table(
        [(w.id, w.host, w.pid, iso(w.started_at), _ALIVE[w.alive], w.claimed, w.sending,
          ", ".join(w.servers) or "-") for w in workers],
        ["id", "host", "pid", "since", "alive", "claimed", "in data", "servers"]))


COMMANDS = (worker_cmd, workers_cmd)
