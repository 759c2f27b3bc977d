"""The bounded step inside a job system: each job sends for a short while, then returns.

A plain loop stands in for Celery or RQ: every iteration is one job run, in a fresh
:class:`mailfleet.Mailfleet` (as a worker process would build it), calling the blocking
``step_blocking(max_seconds=..., max_letters=...)``. The store keeps the progress between
jobs; the loop stops when a step reports ``"done"``, or sleeps until ``resume_at`` when the
servers' quotas are spent. At the end one JSON line says what each step did::

    python examples/job_step.py --smtp 127.0.0.1:2525   # through that server (plain SMTP)
    python examples/job_step.py                         # through a loopback server
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mailfleet

LETTERS = 25
PER_STEP = 10


def fleet_data(host: str, port: int, store: Path, login: str | None) -> dict[str, Any]:
    server: dict[str, Any] = {"name": "relay", "kind": "internal", "sender": "jobs@example.com",
                              "host": host, "port": port, "security": "none"}
    if login is not None:
        server |= {"login": login, "allow_insecure_auth": True}
    return {"deployment": {"store": str(store)}, "servers": [server]}


def send_job(data: dict[str, Any], password: str) -> mailfleet.SendReport:
    """One job run (the body of a Celery/RQ task): at most PER_STEP letters, 30 seconds."""
    with mailfleet.Mailfleet.from_data(data, source="job", passwords={"relay": password}) as app:
        return app.step_blocking(max_letters=PER_STEP, max_seconds=30)


def run(host: str, port: int, store: Path, login: str | None, password: str
        ) -> dict[str, Any]:
    data = fleet_data(host, port, store, login)
    with mailfleet.Mailfleet.from_data(data, source="job", passwords={"relay": password}) as app:
        rows = ({"email": f"member{i}@example.net", "n": str(i)} for i in range(LETTERS))
        created = app.create_mailing({"subject": "Notice {{ n }}", "text": "Hello.\n",
                                      "sender": "jobs@example.com"}, rows)
    steps: list[dict[str, Any]] = []
    while len(steps) < 20:  # a job system's retry limit
        report = send_job(data, password)
        steps.append({"sent": report.sent, "failed": report.failed,
                      "waiting": report.waiting, "stopped": report.stopped})
        if report.stopped == "done" or (report.waiting and report.resume_at is None):
            break
        if report.resume_at is not None:  # a quota is spent: schedule the next job then
            time.sleep(max(0.0, (report.resume_at - datetime.now(UTC)).total_seconds()))
    with mailfleet.Mailfleet.from_data(data, source="job", passwords={"relay": password}) as app:
        status = app.status(created.id)
    return {"sent": sum(s["sent"] for s in steps), "steps": steps,
            "state": status.state, "waiting": status.counts.waiting}


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smtp", metavar="HOST:PORT",
                        help="send through this plain SMTP server (no AUTH)")
    args = parser.parse_args()
    controller = None
    password = "job-secret"  # noqa: S105  (a job system reads it from its secret store)
    if args.smtp:
        host, _, port_text = args.smtp.rpartition(":")
        if not host or not port_text.isdigit():
            parser.error("--smtp takes HOST:PORT, such as 127.0.0.1:2525")
        port, login = int(port_text), None
    else:
        from host_app import loopback_server  # the other example's loopback server

        controller, port = loopback_server("jobs@example.com", password)
        host, login = "127.0.0.1", "jobs@example.com"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(host, port, Path(tmp) / "jobs.db", login, password)
    except mailfleet.MailfleetError as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    finally:
        if controller is not None:
            controller.stop()
    print(json.dumps(result))
    return 0 if result["sent"] == LETTERS else 1


if __name__ == "__main__":
    sys.exit(cli())
