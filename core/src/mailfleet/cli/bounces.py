"""``mailfleet bounces``: parse report files, fetch the bounce mailbox, watch it."""

from __future__ import annotations

import itertools
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mailfleet.app import (
    BounceFetch,
    BounceReport,
    BounceTally,
    Handled,
    SetAsideMessage,
    parse_report_files,
)
from mailfleet.cli.output import EXIT_FAILURE, Context, json_option, print_table
from mailfleet.errors import MailboxError


def report_json(report: BounceReport, file: str | None = None) -> dict[str, Any]:
    """The documented JSON shape of one parsed report."""
    data: dict[str, Any] = {"file": file} if file is not None else {}
    data.update({
        "kind": report.kind,
        "recipients": [{"address": r.address, "action": r.action, "status": r.status,
                        "reply_code": r.reply_code, "reason": r.reason, "hard": r.hard,
                        "diagnostic": r.diagnostic} for r in report.recipients],
        "original_message_id": report.original_message_id,
        "letter_id": report.letter_id,
        "reporting_mta": report.reporting_mta,
    })
    return data


@click.group("bounces")
def bounces_group() -> None:
    """Parse bounce reports and read the bounce mailbox."""


@bounces_group.command("parse")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def bounces_parse(files: tuple[Path, ...], as_json: bool) -> None:
    """Parse report files as the mailbox reader does (the first 512 KiB, within the parse
    budget); with --json one object per file, one per line."""
    rows: list[tuple[str | None, ...]] = []
    for parsed in parse_report_files(files):
        path, report = parsed.path, parsed.report
        if report is None:
            if as_json:
                click.echo(json.dumps({"file": str(path), "error": parsed.set_aside},
                                      ensure_ascii=False))
            else:
                rows.append((path.name, "set aside", "-", "-", parsed.set_aside, "-"))
            continue
        if as_json:
            click.echo(json.dumps(report_json(report, str(path)), ensure_ascii=False))
        else:
            for r in report.recipients or (None,):
                rows.append((path.name, report.kind, *(
                    (r.address, r.status, r.reason, "yes" if r.hard else "no")
                    if r else ("-", "-", "-", "-"))))
    if not as_json:
        print_table(rows, ["file", "kind", "recipient", "status", "reason", "hard"])


def _handled_json(handled: Handled) -> dict[str, Any]:
    return dict(report_json(handled.report),
                matched_letter=handled.letter.letter_id if handled.letter else None)


def _set_aside_json(message: SetAsideMessage) -> dict[str, Any]:
    return {"id": message.id, "reason": message.reason}


def _error_json(exc: MailboxError) -> dict[str, Any]:
    return {"stage": exc.stage, "message": str(exc), "transient": exc.transient}


def summary_json(summary: BounceFetch) -> dict[str, Any]:
    return {"read": summary.read, "bounces": summary.bounces, "marked": summary.marked,
            "suppressed": sorted(summary.suppressed),
            "set_aside": [_set_aside_json(m) for m in summary.set_aside]}


def print_summary(summary: BounceFetch) -> None:
    aside = f", {len(summary.set_aside)} set aside" if summary.set_aside else ""
    click.echo(f"read {summary.read} message(s): {summary.bounces} bounce(s), "
               f"{summary.marked} letter(s) marked, {len(summary.suppressed)} address(es) "
               f"suppressed{aside}")
    for address in sorted(summary.suppressed):
        click.echo(f"  suppressed {address}")
    for message in summary.set_aside:
        click.echo(f"  set aside message {message.id}: {message.reason}")


class _JsonFetch:
    """``bounces fetch --json``: one object, its ``reports`` written as they come so a large
    mailbox needs no memory for them; counts, and any error, follow."""

    def __init__(self) -> None:
        self.first = True

    def add(self, result: Handled | SetAsideMessage) -> None:
        if isinstance(result, Handled):
            click.echo(("{\"reports\": [" if self.first else ", ")
                       + json.dumps(_handled_json(result), ensure_ascii=False), nl=False)
            self.first = False

    def finish(self, summary: BounceFetch, error: MailboxError | None) -> None:
        tail = {"ok": error is None, **summary_json(summary)}
        if error is not None:
            tail["error"] = _error_json(error)
        rest = json.dumps(tail, ensure_ascii=False)
        click.echo(("{\"reports\": [" if self.first else "") + "], " + rest[1:])


@bounces_group.command("fetch")
@json_option
@click.pass_obj
def bounces_fetch(obj: Context, as_json: bool) -> None:
    """Read the bounce mailbox once and apply every new report."""
    app = obj.app
    out = _JsonFetch() if as_json else None
    tally = BounceTally()

    def result(item: Handled | SetAsideMessage) -> None:
        tally.add(item)
        if out is not None:
            out.add(item)

    error = None
    try:
        app.fetch_bounces(result)
    except MailboxError as exc:
        error = exc
    if out is not None:
        out.finish(tally.result(), error)
    else:
        print_summary(tally.result())
    if error is not None:
        click.echo(f"mailfleet: {error}", err=True)
        sys.exit(EXIT_FAILURE)


def _line(event: str, **data: Any) -> None:
    """One line of ``bounces watch --json``: the time (UTC), the event, its data."""
    at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    click.echo(json.dumps({"at": at, "event": event, **data}, ensure_ascii=False))


@bounces_group.command("watch")
@click.option("--interval", default=60.0, show_default=True,
              help="Seconds between reads (IMAP: the longest IDLE wait).")
@click.option("--count", default=0, help="Stop after this many reads (0: never).")
@json_option
@click.pass_obj
def bounces_watch(obj: Context, interval: float, count: int, as_json: bool) -> None:
    """Keep reading the bounce mailbox: over IMAP it waits in IDLE and reads as soon as a
    report arrives. A dropped connection is retried; a refused login stops. With --json,
    one JSON line per report, message set aside, read and error, each with its time."""
    app = obj.app

    def result(item: Handled | SetAsideMessage) -> None:
        if not as_json:
            return
        if isinstance(item, Handled):
            _line("report", **_handled_json(item))
        else:
            _line("set-aside", **_set_aside_json(item))

    for rounds in itertools.count(1):
        try:
            summary = app.fetch_bounces(result)
        except MailboxError as exc:
            if as_json:
                _line("error", **_error_json(exc))
            else:
                click.echo(f"mailfleet: {exc}", err=True)
            if not exc.transient:
                sys.exit(EXIT_FAILURE)
        else:
            if as_json:
                data = summary_json(summary)
                data["set_aside"] = len(summary.set_aside)
                _line("read", **data)
            else:
                print_summary(summary)
        if count and rounds >= count:
            return
        app.wait_for_bounces(interval)


COMMANDS = (bounces_group,)
