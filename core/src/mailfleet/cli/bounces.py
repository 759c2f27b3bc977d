"""``mailfleet bounces``: parse report files, fetch the bounce mailbox, watch it."""

from __future__ import annotations

import itertools
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from mailfleet.bounces.handling import BounceHandler, Handled, fetch_bounces
from mailfleet.bounces.mime import MAX_BYTES
from mailfleet.bounces.report import BounceReport
from mailfleet.cli.main import EXIT_FAILURE, Context, cli, json_option, print_table
from mailfleet.errors import ConfigError, MailboxError
from mailfleet.mailbox.budget import ParseWorker, SetAside, SetAsideMessage
from mailfleet.mailbox.imap import ImapReader, idle_wait
from mailfleet.mailbox.settings import MailboxSettings, resolve_mailbox
from mailfleet.plugins.manager import load_plugins
from mailfleet.store import Store


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


@cli.group("bounces")
def bounces_group() -> None:
    """Parse bounce reports and read the bounce mailbox."""


@bounces_group.command("parse")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def bounces_parse(files: tuple[Path, ...], as_json: bool) -> None:
    """Parse report files as the mailbox reader does (the first 512 KiB, within the parse
    budget); with --json one object per file, one per line."""
    plugins = load_plugins()
    rows: list[tuple[str | None, ...]] = []
    with ParseWorker(plugins.parse_bounce) as worker:
        for path in files:
            with path.open("rb") as file:
                raw = file.read(MAX_BYTES)
            try:
                report = worker.parse(raw)
            except SetAside as exc:
                if as_json:
                    click.echo(json.dumps({"file": str(path), "error": exc.reason},
                                          ensure_ascii=False))
                else:
                    rows.append((path.name, "set aside", "-", "-", exc.reason, "-"))
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


def _settings(obj: Context) -> MailboxSettings:
    fleet = obj.fleet
    if fleet.config.bounces is None:
        raise ConfigError(f"{fleet.config.source}: no [bounces] section; add the bounce "
                          f"mailbox (protocol, host, login, password_env)")
    return resolve_mailbox(fleet.config.bounces, fleet.plugins)


def _handler(obj: Context, store: Store) -> BounceHandler:
    fleet = obj.fleet
    assert fleet.config.bounces is not None
    return BounceHandler(store, fleet.plugins, fleet.config.bounces)


def _handled_json(handled: Handled) -> dict[str, Any]:
    return dict(report_json(handled.report),
                matched_letter=handled.letter.letter_id if handled.letter else None)


def _set_aside_json(message: SetAsideMessage) -> dict[str, Any]:
    return {"id": message.id, "reason": message.reason}


def _error_json(exc: MailboxError) -> dict[str, Any]:
    return {"stage": exc.stage, "message": str(exc), "transient": exc.transient}


class _Summary:
    """What one read of the mailbox did, counted as the messages come (nothing per message
    is kept but the suppressed addresses and the messages set aside)."""

    def __init__(self) -> None:
        self.read = self.bounces = self.marked = 0
        self.suppressed: dict[str, None] = {}
        self.set_aside: list[SetAsideMessage] = []

    def add(self, result: Handled | SetAsideMessage) -> None:
        if isinstance(result, SetAsideMessage):
            self.set_aside.append(result)
            return
        self.read += 1
        self.bounces += result.report.kind == "bounce"
        self.marked += result.marked
        self.suppressed.update(dict.fromkeys(result.suppressed))

    def as_json(self) -> dict[str, Any]:
        return {"read": self.read, "bounces": self.bounces, "marked": self.marked,
                "suppressed": sorted(self.suppressed),
                "set_aside": [_set_aside_json(m) for m in self.set_aside]}

    def print(self) -> None:
        aside = f", {len(self.set_aside)} set aside" if self.set_aside else ""
        click.echo(f"read {self.read} message(s): {self.bounces} bounce(s), {self.marked} "
                   f"letter(s) marked, {len(self.suppressed)} address(es) suppressed{aside}")
        for address in sorted(self.suppressed):
            click.echo(f"  suppressed {address}")
        for message in self.set_aside:
            click.echo(f"  set aside message {message.id}: {message.reason}")


class _JsonFetch:
    """``bounces fetch --json``: one object, its ``reports`` written as they come so a large
    mailbox needs no memory for them; counts, and any error, follow."""

    def __init__(self) -> None:
        self.summary = _Summary()
        self.first = True

    def add(self, result: Handled | SetAsideMessage) -> None:
        self.summary.add(result)
        if isinstance(result, Handled):
            click.echo(("{\"reports\": [" if self.first else ", ")
                       + json.dumps(_handled_json(result), ensure_ascii=False), nl=False)
            self.first = False

    def finish(self, error: MailboxError | None) -> None:
        tail = {"ok": error is None, **self.summary.as_json()}
        if error is not None:
            tail["error"] = _error_json(error)
        rest = json.dumps(tail, ensure_ascii=False)
        click.echo(("{\"reports\": [" if self.first else "") + "], " + rest[1:])


@bounces_group.command("fetch")
@json_option
@click.pass_obj
def bounces_fetch(obj: Context, as_json: bool) -> None:
    """Read the bounce mailbox once and apply every new report."""
    settings = _settings(obj)
    store = obj.fleet.open_store()
    out = _JsonFetch() if as_json else None
    summary = _Summary()
    error = None
    try:
        fetch_bounces(settings, _handler(obj, store), out.add if out else summary.add)
    except MailboxError as exc:
        error = exc
    finally:
        store.close()
    if out is not None:
        out.finish(error)
    else:
        summary.print()
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
    settings = _settings(obj)
    store = obj.fleet.open_store()
    handler = _handler(obj, store)

    def result(item: Handled | SetAsideMessage) -> None:
        summary.add(item)
        if not as_json:
            return
        if isinstance(item, Handled):
            _line("report", **_handled_json(item))
        else:
            _line("set-aside", **_set_aside_json(item))

    try:
        for rounds in itertools.count(1):
            summary = _Summary()
            try:
                fetch_bounces(settings, handler, result)
            except MailboxError as exc:
                if as_json:
                    _line("error", **_error_json(exc))
                else:
                    click.echo(f"mailfleet: {exc}", err=True)
                if not exc.transient:
                    sys.exit(EXIT_FAILURE)
            else:
                if as_json:
                    data = summary.as_json()
                    data["set_aside"] = len(summary.set_aside)
                    _line("read", **data)
                else:
                    summary.print()
            if count and rounds >= count:
                return
            if settings.protocol == "imap":
                idle_wait(ImapReader(settings, store), interval)
            else:
                time.sleep(interval)
    finally:
        store.close()
