"""``mailfleet bounces``: parse report files, fetch the bounce mailbox, watch it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mailfleet.bounces.report import BounceReport
from mailfleet.cli import cli, json_option, print_table
from mailfleet.plugins import load_plugins


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

