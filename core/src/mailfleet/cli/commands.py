"""``mailing``, ``quota`` and ``suppress``: mass mailings, the servers' quotas and the
suppression list, each command a call into :mod:`mailfleet.app` and its output."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

import click

from mailfleet.app import (
    BadRow,
    BadRowsError,
    Holder,
    LetterResult,
    MailingCounts,
    MailingState,
    MailingStateError,
    MailingStatus,
    SendReport,
    ServerQuota,
    StoppedServer,
    Window,
)
from mailfleet.cli.output import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Context,
    emit,
    iso,
    json_option,
    no_mailing,
    print_table,
)
from mailfleet.errors import AddressError, TemplateError

#: The letter states, disjoint: every letter of a mailing is in exactly one.
COUNTED = ("sent", "bounced", "failed", "skipped", "held", "waiting")


def _epoch(at: float | None) -> str | None:
    return None if at is None else iso(datetime.fromtimestamp(at, UTC))


def counts_json(c: MailingCounts) -> dict[str, Any]:
    """``mailing status --json`` without the outlook: the counts (disjoint: ``sent +
    bounced + failed + skipped + held + waiting == letters``), ``rejected`` rows never
    queued, and letters sent (or bounced) by server."""
    return {"id": c.id, "name": c.name, "state": c.state, "reason": c.reason,
            "letters": c.letters, "rejected": c.rejected, "sent": c.sent,
            "bounced": c.bounced, "failed": c.failed, "skipped": c.skipped, "held": c.held,
            "waiting": c.waiting, "resume_at": None, "servers": [],
            "by_server": dict(c.by_server)} | ({"tenant": c.tenant} if c.tenant else {})


def _status(obj: Context, mailing_id: str) -> MailingStatus:
    try:
        return obj.app.status(mailing_id)
    except LookupError as exc:
        raise no_mailing(exc) from None


_WINDOW_NAMES = {"minute": "per-minute", "hour": "hourly", "day": "daily"}


def stopped_json(server: StoppedServer) -> dict[str, Any]:
    return {"server": server.server, "enabled": server.enabled,
            "spent": [{"window": w.window, "used": w.used, "limit": w.limit,
                       "frees_at": iso(w.frees_at)} for w in server.spent],
            "blocked_until": iso(server.blocked_until),
            "blocked_reason": server.blocked_reason, "until_unblocked": server.until_unblocked}


def limit_lines(servers: Iterable[StoppedServer]) -> list[str]:
    """One line per server that cannot send now."""
    lines = []
    for s in servers:
        if not s.enabled:
            lines.append(f"server {s.server}: disabled in the config (enabled = false)")
            continue
        if s.blocked_until:
            until = (f"until you run `mailfleet servers unblock {s.server}`"
                     if s.until_unblocked else f"until {iso(s.blocked_until)}")
            lines.append(f"server {s.server}: blocked {until}: {s.blocked_reason}")
        for w in s.spent:
            lines.append(f"server {s.server}: {_WINDOW_NAMES[w.window]} limit reached "
                         f"({w.used}/{w.limit}), frees at {iso(w.frees_at)}")
    return lines


def outlook_lines(status: MailingStatus, resume: datetime | None) -> list[str]:
    """Which servers cannot send and why, what waits and when it goes (``mailing status``
    and ``mailing run``)."""
    lines = limit_lines(status.stopped_servers)
    c = status.counts
    if not c.waiting:
        return lines
    if c.state == "paused":
        return [*lines, f"the mailing is paused ({c.reason or 'by the user'}); "
                        f"{c.waiting} letter(s) wait in the queue; `mailfleet mailing resume "
                        f"{c.id}` sends them"]
    if c.state != "active":
        return lines
    if resume is None:
        lines.append(f"{c.waiting} letter(s) wait in the queue, but no enabled server frees "
                     f"by itself: unblock or enable one (see `mailfleet quota`)")
    elif resume <= datetime.now(UTC):
        lines.append(f"{c.waiting} letter(s) wait in the queue; a server can send now: run "
                     f"`mailfleet mailing run {c.id}`")
    else:
        lines.append(f"{c.waiting} letter(s) wait in the queue; "
                     + ("" if status.can_send else "every server is at a limit or blocked; ")
                     + f"sending resumes at {iso(resume)}")
    return lines


@click.group("mailing")
def mailing_group() -> None:
    """Create, run and follow mass mailings."""


def _rejected(rows: Iterable[BadRow]) -> list[dict[str, Any]]:
    return [{"row": r.row, "column": r.column, "email": r.email, "reason": r.reason}
            for r in rows]


def _bad_rows(exc: BadRowsError) -> str:
    count = len({r.row for r in exc.rows})
    return (f"{count} bad recipient row(s), nothing was queued (use --skip-bad-rows to queue "
            f"the {exc.valid} good ones):\n  " + "\n  ".join(r.line() for r in exc.rows))


@mailing_group.command("create")
@click.option("--template", "template_path", required=True, type=click.Path(dir_okay=False),
              help="TOML template (subject, text, html, sender, ...).")
@click.option("--recipients", "recipients_path", required=True,
              type=click.Path(dir_okay=False), help="CSV with an email column, or JSON lines.")
@click.option("--encoding", default=None,
              help="Encoding of the CSV file (default: detected; utf-8, cp1251, utf-16).")
@click.option("--skip-bad-rows", is_flag=True, help="Queue the good rows, list the bad ones.")
@click.option("--name", default="", help="A name for the mailing (default: the file name).")
@click.option("--hold-in-data", is_flag=True,
              help="After a crash, hold letters caught inside DATA for review, not resend.")
@click.option("--tenant", default=None, metavar="ID",
              help="Whose mailing it is, where the store serves several tenants.")
@json_option
@click.pass_obj
def mailing_create(obj: Context, template_path: str, recipients_path: str,
                   encoding: str | None, skip_bad_rows: bool, name: str, hold_in_data: bool,
                   tenant: str | None, as_json: bool) -> None:
    """Validate the template and every recipient and queue the mailing; prints its id."""
    try:
        result = obj.app.create_mailing(template_path, recipients_path,
                                        skip_bad_rows=skip_bad_rows, name=name,
                                        hold_in_data=hold_in_data, encoding=encoding,
                                        tenant=tenant or "")
    except BadRowsError as exc:
        message = _bad_rows(exc)
        bad: dict[str, Any] = {"ok": False, "id": None, "letters": 0, "error": message,
                               "rejected": _rejected(exc.rows)}
        emit(bad, as_json, lambda: click.echo(f"mailfleet: {message}", err=True))
        sys.exit(EXIT_USAGE)
    except TemplateError as exc:
        text = str(exc)
        emit({"ok": False, "id": None, "letters": 0, "rejected": [], "error": text},
             as_json, lambda: click.echo(f"mailfleet: {text}", err=True))
        sys.exit(EXIT_USAGE)
    data: dict[str, Any] = {"id": result.id, "letters": result.letters,
                            "rejected": _rejected(result.rejected),
                            "duplicates": result.duplicates}

    def table() -> None:
        click.echo(result.id)
        click.echo(f"{result.letters} letters queued", err=True)
        for r in result.rejected:
            click.echo(f"  skipped {r.line()}", err=True)
        if result.duplicates:
            click.echo(f"  {result.duplicates} duplicate address(es) dropped (each address "
                       f"gets one letter)", err=True)

    emit(data, as_json, table)


@mailing_group.command("list")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["draft", "active", "paused", "done", "cancelled"]),
              help="Only mailings in this state (repeatable).")
@click.option("--tenant", default=None, metavar="ID",
              help="Only this tenant's mailings.")
@json_option
@click.pass_obj
def mailing_list(obj: Context, states: tuple[str, ...], tenant: str | None,
                 as_json: bool) -> None:
    """Every mailing: id, name, state, created, letters and how many wait."""
    data = []
    for counts in obj.app.mailings(cast(list[MailingState], list(states)) or None,
                                   tenant=tenant):
        status = counts_json(counts)
        data.append({k: status[k] for k in ("id", "name", "state", "reason", "letters",
                                            *COUNTED)} | {"created_at": iso(counts.created_at)}
                    | ({"tenant": counts.tenant} if counts.tenant else {}))
    emit(data, as_json, lambda: print_table(
        [(d["id"], d["name"], d["state"], d["created_at"], d["letters"], d["sent"],
          d["bounced"], d["failed"], d["waiting"]) for d in data],
        ["id", "name", "state", "created", "letters", "sent", "bounced", "failed", "waiting"]))


_LETTER_STATES = ("queued", "claimed", "sending", "sent", "failed", "skipped", "bounced",
                  "held")
_LETTER_KEYS = ("letter_id", "email", "state", "server", "from", "attempts", "sent_at",
                "error")


def _letter(r: LetterResult) -> dict[str, Any]:
    return {"letter_id": r.letter_id, "email": r.email, "state": r.state, "server": r.server,
            "from": r.from_addr, "attempts": r.attempts, "sent_at": iso(r.sent_at),
            "error": r.error}


@mailing_group.command("letters")
@click.argument("mailing_id", metavar="ID")
@click.option("--state", "states", multiple=True, type=click.Choice(_LETTER_STATES),
              help="Only letters in this state (repeatable), e.g. --state failed "
                   "--state bounced.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (for Excel) instead of a table.")
@json_option
@click.pass_obj
def mailing_letters(obj: Context, mailing_id: str, states: tuple[str, ...], as_csv: bool,
                    as_json: bool) -> None:
    """Who got what: each letter's address, state, server, From, and why it failed or
    bounced."""
    try:
        letters = obj.app.letters(mailing_id, list(states) or None)
    except LookupError as exc:
        raise no_mailing(exc) from None
    rows: Iterator[dict[str, Any]] = (_letter(r) for r in letters)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\r\n")
        writer.writerow(_LETTER_KEYS)
        for row in rows:
            writer.writerow(["" if row[k] is None else row[k] for k in _LETTER_KEYS])
        return
    if as_json:
        click.echo(json.dumps(list(rows), ensure_ascii=False))
        return
    print_table([[row[k] for k in _LETTER_KEYS] for row in rows], _LETTER_KEYS)


def _report_json(report: SendReport) -> dict[str, Any]:
    return {"sent": report.sent, "failed": report.failed, "skipped": report.skipped,
            "deferred": report.deferred, "waiting": report.waiting,
            "resume_at": iso(report.resume_at)}


@mailing_group.command("run")
@click.argument("mailing_id", metavar="[ID]", required=False)
@click.option("--until-idle", is_flag=True,
              help="Return when nothing can be sent now; print when sending will resume.")
@json_option
@click.pass_obj
def mailing_run(obj: Context, mailing_id: str | None, until_idle: bool, as_json: bool) -> None:
    """Send the queued letters (of one mailing, or of every active one)."""
    app = obj.app
    mailings = ([_status(obj, mailing_id).counts] if mailing_id is not None
                else app.mailings(["active"]))
    bars: dict[str, Any] = {}
    if not as_json and sys.stderr.isatty():
        for m in mailings:
            bar = click.progressbar(length=max(1, m.letters), label=m.name, file=sys.stderr)
            bar.update(m.letters - m.waiting)
            bars[m.id] = bar

    def progress(mid: str, count: int) -> None:
        if mid in bars:
            bars[mid].update(count)

    def waiting(so_far: SendReport) -> None:
        if as_json:
            return
        for line in limit_lines(app.stopped_servers()):
            click.echo(line, err=True)
        click.echo(f"{so_far.waiting} letter(s) wait in the queue; sending resumes at "
                   f"{iso(so_far.resume_at)} (Ctrl-C stops; `mailfleet mailing run` "
                   f"goes on later)", err=True)

    report = app.send_blocking([mailing_id] if mailing_id is not None else None,
                               until_idle=until_idle, on_progress=progress, on_wait=waiting)
    for bar in bars.values():
        bar.render_finish()
    data = _report_json(report)
    stopped = app.stopped_servers()
    data["servers"] = [stopped_json(s) for s in stopped]
    lines = limit_lines(stopped)
    if mailing_id is not None:
        status = app.status(mailing_id)
        data["state"] = status.counts.state
        data["reason"] = status.counts.reason
        data["waiting"] = status.counts.waiting
        lines = outlook_lines(status, report.resume_at if status.state == "active" else None)
    else:
        if report.waiting:
            lines.append(f"{report.waiting} letter(s) wait in the queue; "
                         + (f"sending resumes at {iso(report.resume_at)}" if report.resume_at
                            else "no enabled server frees by itself (see `mailfleet quota`)"))
        paused = app.mailings(["paused"])
        if paused:
            held = sum(m.waiting for m in paused)
            data["paused"] = [m.id for m in paused]
            lines.append(f"{len(paused)} paused mailing(s) with {held} letter(s) waiting were "
                         f"not sent (`mailfleet mailing list --state paused`)")

    def table() -> None:
        click.echo(f"sent {report.sent}, failed {report.failed}, skipped {report.skipped}, "
                   f"waiting {data['waiting']}"
                   + (f" ({report.deferred} deferred for a retry)" if report.deferred else ""))
        for line in lines:
            click.echo(line)

    emit(data, as_json, table)
    if report.failed and not report.sent:
        sys.exit(EXIT_FAILURE)


def _holder(h: Holder) -> dict[str, Any]:
    return {"dispatcher": h.dispatcher, "host": h.host, "pid": h.pid, "alive": h.alive,
            "claimed": h.claimed, "in_data": h.sending, "taken_back_at": _epoch(h.takeback_at)}


@mailing_group.command("status")
@click.argument("mailing_id", metavar="ID")
@json_option
@click.pass_obj
def mailing_status_cmd(obj: Context, mailing_id: str, as_json: bool) -> None:
    """Letters by state, letters sent by each server, which servers hit which limit and when
    sending resumes, or why it is paused."""
    status = _status(obj, mailing_id)
    data = counts_json(status.counts)
    data["holders"] = [_holder(h) for h in obj.app.holders(mailing_id)]
    data["servers"] = [stopped_json(s) for s in status.stopped_servers]
    data["can_send"] = status.can_send
    data["resume_at"] = iso(status.resume_at)

    def table() -> None:
        click.echo(f"mailing {data['id']} ({data['name']}): {data['state']}"
                   + (f" - {data['reason']}" if data["reason"] else ""))
        print_table([(k, data[k]) for k in ("letters", *COUNTED)], ["state", "letters"])
        click.echo(f"(sent + bounced + failed + skipped + held + waiting = letters; "
                   f"{data['rejected']} rejected row(s) were never queued)")
        if data["by_server"]:
            print_table(sorted(data["by_server"].items()), ["server", "sent"])
        for line in outlook_lines(status, status.resume_at):
            click.echo(line)
        for h in data["holders"]:
            who = f"dispatcher {h['dispatcher']} ({h['host'] or 'gone'}, pid {h['pid']})"
            state = {True: "running", False: "stopped", None: "on another host"}[h["alive"]]
            back = (f"taken back at {h['taken_back_at']} unless it renews its lease"
                    if h["alive"] is None else f"taken back at {h['taken_back_at']}"
                    if h["taken_back_at"] else "taken back as soon as it stops")
            click.echo(f"{h['claimed'] + h['in_data']} letters held by {who}, {state} "
                       f"({h['in_data']} inside DATA): {back}")

    emit(data, as_json, table)


def _set_state(obj: Context, mailing_id: str, as_json: bool, action: str) -> None:
    app = obj.app
    released = 0
    try:
        if action == "pause":
            app.pause(mailing_id, "paused by the user")
        elif action == "resume":
            released = app.resume(mailing_id, "resumed by the user")
        else:
            app.cancel(mailing_id)
    except LookupError as exc:
        raise no_mailing(exc) from None
    except MailingStateError as exc:
        click.echo(f"mailfleet: mailing {exc.mailing_id} is {exc.state}", err=True)
        sys.exit(EXIT_USAGE)
    data = counts_json(_status(obj, mailing_id).counts)
    data["released"] = released
    emit(data, as_json, lambda: click.echo(f"mailing {mailing_id}: {data['state']}"))


@mailing_group.command("pause")
@click.argument("mailing_id", metavar="ID")
@json_option
@click.pass_obj
def mailing_pause(obj: Context, mailing_id: str, as_json: bool) -> None:
    """Stop claiming letters of this mailing (letters in flight finish)."""
    _set_state(obj, mailing_id, as_json, "pause")


@mailing_group.command("resume")
@click.argument("mailing_id", metavar="ID")
@json_option
@click.pass_obj
def mailing_resume(obj: Context, mailing_id: str, as_json: bool) -> None:
    """Resume a paused mailing (and release letters held for review after a crash)."""
    _set_state(obj, mailing_id, as_json, "resume")


@mailing_group.command("cancel")
@click.argument("mailing_id", metavar="ID")
@json_option
@click.pass_obj
def mailing_cancel(obj: Context, mailing_id: str, as_json: bool) -> None:
    """Cancel: letters not yet sent are skipped."""
    _set_state(obj, mailing_id, as_json, "cancel")


def _window(w: Window) -> dict[str, Any]:
    return {"used": w.used, "limit": w.limit, "remaining": w.remaining,
            "frees_at": iso(w.frees_at)}


def quota_json(q: ServerQuota) -> dict[str, Any]:
    """``quota --json`` of one server: every window (minute, hour, day) with used, limit,
    remaining and when it frees, the block, and when the next letter may go."""
    return {"server": q.server, "priority": q.priority, "enabled": q.enabled,
            "minute": _window(q.minute), "hour": _window(q.hour), "day": _window(q.day),
            "window": q.limits.window, "timezone": q.limits.timezone,
            "blocked_until": iso(q.blocked_until), "blocked_reason": q.blocked_reason,
            "next_letter_at": iso(q.next_letter_at),
            "breaker": {"state": q.breaker, "failures": q.failures}}


def _short(at: str | None) -> str:
    return "-" if at is None else at[:19].replace("T", " ") + "Z"


def print_quota(data: list[dict[str, Any]]) -> None:
    def cell(w: dict[str, Any]) -> str:
        if w["limit"] is None:
            return f"{w['used']} (no limit)"
        text = f"{w['used']}/{w['limit']}, {w['remaining']} left"
        return text + (f", frees {_short(w['frees_at'])}" if w["frees_at"] else "")

    def breaker(b: dict[str, Any]) -> str:
        return str(b["state"]) + (f" ({b['failures']} failures)" if b["failures"] else "")

    print_table([(d["server"] + ("" if d["enabled"] else " (disabled)"), cell(d["minute"]),
                  cell(d["hour"]), cell(d["day"]), _short(d["next_letter_at"]),
                  breaker(d["breaker"]), d["blocked_until"] or "-", d["blocked_reason"] or "-")
                 for d in data],
                ["server", "minute", "hour", "day", "next letter", "breaker", "blocked until",
                 "why"])


@click.command("quota")
@click.option("--tenant", default=None, metavar="ID",
              help="Only the servers that send this tenant's mailings (its own, the shared).")
@json_option
@click.pass_obj
def quota_cmd(obj: Context, tenant: str | None, as_json: bool) -> None:
    """Per server and window (minute, hour, day): used, limit, left and when it frees; when
    the next letter may go; blocked-until and why."""
    data = [quota_json(q) for q in obj.app.quotas(tenant=tenant)]
    emit(data, as_json, lambda: print_quota(data))


@click.group("suppress")
def suppress_group() -> None:
    """The suppression list: addresses never sent to (hard bounces, unsubscribes, by hand)."""


@suppress_group.command("add")
@click.argument("emails", nargs=-1, required=True)
@click.option("--reason", default="added by hand")
@json_option
@click.pass_obj
def suppress_add(obj: Context, emails: tuple[str, ...], reason: str, as_json: bool) -> None:
    """Add addresses to the suppression list."""
    added = []
    for email in emails:
        try:
            added.append(obj.app.suppress(email, reason, source="manual"))
        except AddressError as exc:
            click.echo(f"mailfleet: {exc}", err=True)
            sys.exit(EXIT_USAGE)
    emit({"added": added}, as_json, lambda: click.echo(f"suppressed {len(added)} address(es)"))


@suppress_group.command("list")
@json_option
@click.pass_obj
def suppress_list(obj: Context, as_json: bool) -> None:
    """Every suppressed address with its reason."""
    data = [{"email": s.email, "reason": s.reason, "added_at": iso(s.added_at),
             "source": s.source} for s in obj.app.suppressed()]
    emit(data, as_json, lambda: print_table(
        [(d["email"], d["reason"], d["source"], d["added_at"]) for d in data],
        ["email", "reason", "source", "added"]))


@suppress_group.command("remove")
@click.argument("emails", nargs=-1, required=True)
@json_option
@click.pass_obj
def suppress_remove(obj: Context, emails: tuple[str, ...], as_json: bool) -> None:
    """Remove addresses from the suppression list."""
    removed = [e for e in emails if obj.app.unsuppress(e)]
    emit({"removed": removed}, as_json,
         lambda: click.echo(f"removed {len(removed)} of {len(emails)} address(es)"))
    if len(removed) != len(emails):
        sys.exit(EXIT_FAILURE)


@suppress_group.command("import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--reason", default="imported", help="Reason for rows without a reason column.")
@click.option("--encoding", default=None, help="Encoding of the CSV (default: detected).")
@json_option
@click.pass_obj
def suppress_import(obj: Context, path: str, reason: str, encoding: str | None,
                    as_json: bool) -> None:
    """Add the addresses of a CSV file (an ``email`` column, optionally ``reason``)."""
    result = obj.app.import_suppressions(path, reason, encoding=encoding)
    data = {"added": result.added, "rejected": _rejected(result.rejected)}

    def table() -> None:
        click.echo(f"suppressed {result.added} address(es)")
        for r in result.rejected:
            click.echo(f"  skipped {r.line()}", err=True)

    emit(data, as_json, table)
    if result.rejected:
        sys.exit(EXIT_FAILURE)


@suppress_group.command("export")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.pass_obj
def suppress_export(obj: Context, path: str | None) -> None:
    """Write the suppression list as CSV (email, reason, source, added_at) to PATH or
    standard output; `suppress import` reads it back."""
    rows = obj.app.suppressed()
    with (open(path, "w", encoding="utf-8", newline="") if path
          else contextlib.nullcontext(sys.stdout)) as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["email", "reason", "source", "added_at"])
        for s in rows:
            writer.writerow([s.email, s.reason, s.source, iso(s.added_at)])
    if path:
        click.echo(f"exported {len(rows)} address(es) to {path}", err=True)


COMMANDS = (mailing_group, quota_cmd, suppress_group)
