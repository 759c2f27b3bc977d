"""``mailfleet bounces``: parse report files, fetch the bounce mailbox, watch it."""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from mailfleet.bounce_handling import BounceHandler, Handled, fetch_bounces
from mailfleet.bounces.report import BounceReport
from mailfleet.cli import EXIT_FAILURE, Context, cli, json_option, print_table
from mailfleet.errors import ConfigError, MailboxError
from mailfleet.mailbox.imap import ImapReader, idle_wait
from mailfleet.mailbox.settings import MailboxSettings, resolve_mailbox
from mailfleet.plugins import load_plugins
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
    """Parse report files; with --json one object per file, one per line."""
    plugins = load_plugins()
    rows = []
    for path in files:
        report = plugins.parse_bounce(path.read_bytes())
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


def _summary(handled: list[Handled]) -> dict[str, Any]:
    return {
        "read": len(handled),
        "bounces": sum(h.report.kind == "bounce" for h in handled),
        "marked": sum(h.marked for h in handled),
        "suppressed": sorted({a for h in handled for a in h.suppressed}),
        "reports": [dict(report_json(h.report),
                         matched_letter=h.letter.letter_id if h.letter else None)
                    for h in handled],
    }


def _print_summary(summary: dict[str, Any]) -> None:
    click.echo(f"read {summary['read']} message(s): {summary['bounces']} bounce(s), "
               f"{summary['marked']} letter(s) marked, {len(summary['suppressed'])} "
               f"address(es) suppressed")
    for address in summary["suppressed"]:
        click.echo(f"  suppressed {address}")


@bounces_group.command("fetch")
@json_option
@click.pass_obj
def bounces_fetch(obj: Context, as_json: bool) -> None:
    """Read the bounce mailbox once and apply every new report."""
    settings = _settings(obj)
    store = obj.fleet.open_store()
    try:
        summary = _summary(fetch_bounces(settings, _handler(obj, store)))
    finally:  # a MailboxError exits 1 through main (as JSON with --json)
        store.close()
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        _print_summary(summary)


@bounces_group.command("watch")
@click.option("--interval", default=60.0, show_default=True,
              help="Seconds between reads (IMAP: the longest IDLE wait).")
@click.option("--count", default=0, help="Stop after this many reads (0: never).")
@click.pass_obj
def bounces_watch(obj: Context, interval: float, count: int) -> None:
    """Keep reading the bounce mailbox: over IMAP it waits in IDLE and reads as soon as a
    report arrives. A dropped connection is retried; a refused login stops."""
    settings = _settings(obj)
    store = obj.fleet.open_store()
    handler = _handler(obj, store)
    try:
        for rounds in itertools.count(1):
            try:
                _print_summary(_summary(fetch_bounces(settings, handler)))
            except MailboxError as exc:
                click.echo(f"mailfleet: {exc}", err=True)
                if not exc.transient:
                    sys.exit(EXIT_FAILURE)
            if count and rounds >= count:
                return
            if settings.protocol == "imap":
                idle_wait(ImapReader(settings, store), interval)
            else:
                time.sleep(interval)
    finally:
        store.close()
