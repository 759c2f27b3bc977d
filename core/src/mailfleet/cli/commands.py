"""Command groups added to the ``mailfleet`` CLI: ``mailing``, ``quota`` and ``suppress``."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import click

from mailfleet.addresses import normalize_address
from mailfleet.app import (
    WAITING_STATES,
    StoppedServer,
    breaker_state,
    letter_pages,
    mailing_counts,
    outlook,
    resume_time,
)
from mailfleet.cli.main import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Context,
    cli,
    emit,
    json_option,
    print_table,
)
from mailfleet.clock import SystemClock
from mailfleet.errors import AddressError, TemplateError
from mailfleet.mailings.mailing import BadRowsError, create_mailing
from mailfleet.mailings.recipients import BadRow, column_for, read_rows
from mailfleet.sending.dispatcher import Dispatcher, RunReport, iso
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.quota import WindowStatus
from mailfleet.store import Store
from mailfleet.store.base import LetterRecord


def _store(obj: Context) -> Store:
    return obj.fleet.open_store()


#: The letter states, disjoint: every letter of a mailing is in exactly one.
COUNTED = ("sent", "bounced", "failed", "skipped", "held", "waiting")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds")


def mailing_status(store: Store, mailing_id: str) -> dict[str, Any]:
    """``mailing status --json``: the counts of :func:`mailfleet.app.mailing_counts`
    (disjoint: ``sent + bounced + failed + skipped + held + waiting == letters``),
    ``rejected`` rows never queued, and letters sent (or bounced) by server."""
    try:
        c = mailing_counts(store, mailing_id)
    except LookupError:
        raise click.BadParameter(f"no mailing {mailing_id!r}", param_hint="ID") from None
    return {"id": c.id, "name": c.name, "state": c.state, "reason": c.reason,
            "letters": c.letters, "rejected": c.rejected, "sent": c.sent,
            "bounced": c.bounced, "failed": c.failed, "skipped": c.skipped, "held": c.held,
            "waiting": c.waiting, "resume_at": None, "servers": [],
            "by_server": dict(c.by_server)}


_WINDOW_NAMES = {"minute": "per-minute", "hour": "hourly", "day": "daily"}


def server_limits(fleet: Fleet, store: Store, now: float) -> tuple[list[dict[str, Any]],
                                                                    float | None]:
    """Each server that cannot send now and why, and when the first usable server frees
    (the application layer's :func:`mailfleet.app.outlook`)."""
    seen = outlook(fleet, store, now)
    return [_stopped(s) for s in seen.stopped], seen.frees_at


def _stopped(server: StoppedServer) -> dict[str, Any]:
    return {"server": server.server, "enabled": server.enabled,
            "spent": [{"window": w.window, "used": w.used, "limit": w.limit,
                       "frees_at": _iso(w.frees_at)} for w in server.spent],
            "blocked_until": _iso(server.blocked_until),
            "blocked_reason": server.blocked_reason, "until_unblocked": server.until_unblocked}


def limit_lines(servers: list[dict[str, Any]]) -> list[str]:
    """One line per server that cannot send now."""
    lines = []
    for entry in servers:
        name = entry["server"]
        if not entry["enabled"]:
            lines.append(f"server {name}: disabled in the config (enabled = false)")
            continue
        if entry["blocked_until"]:
            until = ("until you run `mailfleet servers unblock " + name + "`"
                     if entry["until_unblocked"] else f"until {entry['blocked_until']}")
            lines.append(f"server {name}: blocked {until}: {entry['blocked_reason']}")
        for window in entry["spent"]:
            lines.append(f"server {name}: {_WINDOW_NAMES[window['window']]} limit reached "
                         f"({window['used']}/{window['limit']}), frees at {window['frees_at']}")
    return lines


def outlook_lines(data: dict[str, Any], resume: float | None, now: float) -> list[str]:
    """Which servers cannot send and why, what waits and when it goes (``mailing status``
    and ``mailing run``)."""
    lines = limit_lines(data["servers"])
    waiting = data["waiting"]
    if not waiting:
        return lines
    if data["state"] == "paused":
        return [*lines, f"the mailing is paused ({data['reason'] or 'by the user'}); "
                        f"{waiting} letter(s) wait in the queue; `mailfleet mailing resume "
                        f"{data['id']}` sends them"]
    if data["state"] != "active":
        return lines
    if resume is None:
        lines.append(f"{waiting} letter(s) wait in the queue, but no enabled server frees by "
                     f"itself: unblock or enable one (see `mailfleet quota`)")
    elif resume <= now:
        lines.append(f"{waiting} letter(s) wait in the queue; a server can send now: run "
                     f"`mailfleet mailing run {data['id']}`")
    else:
        lines.append(f"{waiting} letter(s) wait in the queue; "
                     + ("" if data["can_send"] else "every server is at a limit or blocked; ")
                     + f"sending resumes at {iso(resume)}")
    return lines


def with_outlook(fleet: Fleet, store: Store, data: dict[str, Any], now: float
                 ) -> float | None:
    """Add ``servers`` (those that cannot send now, and why), ``can_send`` and
    ``resume_at`` (:func:`mailfleet.app.resume_time`) to a mailing's status; returns the
    resume time."""
    seen = outlook(fleet, store, now)
    counts = mailing_counts(store, data["id"])
    data["servers"] = [_stopped(s) for s in seen.stopped]
    data["can_send"] = seen.can_send
    resume = resume_time(store, counts, seen, now)
    data["resume_at"] = iso(resume)
    return resume


@cli.group("mailing")
def mailing_group() -> None:
    """Create, run and follow mass mailings."""


def _rejected(rows: Iterable[BadRow]) -> list[dict[str, Any]]:
    return [{"row": r.row, "column": r.column, "email": r.email, "reason": r.reason}
            for r in rows]


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
@json_option
@click.pass_obj
def mailing_create(obj: Context, template_path: str, recipients_path: str,
                   encoding: str | None, skip_bad_rows: bool, name: str, hold_in_data: bool,
                   as_json: bool) -> None:
    """Validate the template and every recipient and queue the mailing; prints its id."""
    store = _store(obj)
    try:
        result = create_mailing(store, template_path, recipients_path,
                                skip_bad_rows=skip_bad_rows, name=name,
                                hold_in_data=hold_in_data, encoding=encoding)
    except BadRowsError as exc:
        message = str(exc)
        bad: dict[str, Any] = {"ok": False, "id": None, "letters": 0, "error": message,
                               "rejected": _rejected(exc.rows)}
        emit(bad, as_json, lambda: click.echo(f"mailfleet: {message}", err=True))
        sys.exit(EXIT_USAGE)
    except TemplateError as exc:
        message = str(exc)
        emit({"ok": False, "id": None, "letters": 0, "rejected": [], "error": message},
             as_json, lambda: click.echo(f"mailfleet: {message}", err=True))
        sys.exit(EXIT_USAGE)
    rejected = _rejected(result.rejected)
    data: dict[str, Any] = {"id": result.id, "letters": result.letters, "rejected": rejected,
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
@json_option
@click.pass_obj
def mailing_list(obj: Context, states: tuple[str, ...], as_json: bool) -> None:
    """Every mailing: id, name, state, created, letters and how many wait."""
    store = _store(obj)
    data = []
    for mailing in store.list_mailings(list(states) or None):
        status = mailing_status(store, mailing.id)
        data.append({k: status[k] for k in ("id", "name", "state", "reason", "letters",
                                            *COUNTED)} | {"created_at": iso(mailing.created_at)})
    emit(data, as_json, lambda: print_table(
        [(d["id"], d["name"], d["state"], d["created_at"], d["letters"], d["sent"],
          d["bounced"], d["failed"], d["waiting"]) for d in data],
        ["id", "name", "state", "created", "letters", "sent", "bounced", "failed", "waiting"]))


_LETTER_STATES = ("queued", "claimed", "sending", "sent", "failed", "skipped", "bounced",
                  "held")
_LETTER_KEYS = ("letter_id", "email", "state", "server", "from", "attempts", "sent_at",
                "error")


def _letter(record: LetterRecord) -> dict[str, Any]:
    return {"letter_id": record.letter_id, "email": record.email, "state": record.state,
            "server": record.server, "from": record.from_addr, "attempts": record.attempts,
            "sent_at": iso(record.sent_at), "error": record.last_error}


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
    store = _store(obj)
    mailing_status(store, mailing_id)  # refuses an unknown id

    def pages() -> Iterator[dict[str, Any]]:
        return (_letter(r) for r in letter_pages(store, mailing_id, list(states) or None))

    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\r\n")
        writer.writerow(_LETTER_KEYS)
        for row in pages():
            writer.writerow(["" if row[k] is None else row[k] for k in _LETTER_KEYS])
        return
    if as_json:
        click.echo(json.dumps(list(pages()), ensure_ascii=False))
        return
    print_table([[row[k] for k in _LETTER_KEYS] for row in pages()], _LETTER_KEYS)


@mailing_group.command("run")
@click.argument("mailing_id", metavar="[ID]", required=False)
@click.option("--until-idle", is_flag=True,
              help="Return when nothing can be sent now; print when sending will resume.")
@json_option
@click.pass_obj
def mailing_run(obj: Context, mailing_id: str | None, until_idle: bool, as_json: bool) -> None:
    """Send the queued letters (of one mailing, or of every active one)."""
    store = _store(obj)
    fleet = obj.fleet
    if mailing_id is not None:
        found = store.get_mailing(mailing_id)
        if found is None:
            raise click.BadParameter(f"no mailing {mailing_id!r}", param_hint="ID")
        mailings = [found]
    else:
        mailings = store.list_mailings(["active"])
    bars: dict[str, Any] = {}
    if not as_json and sys.stderr.isatty():
        for m in mailings:
            counts = store.counts(m.id)
            bar = click.progressbar(length=max(1, m.total), label=m.name, file=sys.stderr)
            bar.update(m.total - sum(counts.get(s, 0) for s in WAITING_STATES))
            bars[m.id] = bar

    def progress(mid: str, count: int) -> None:
        if mid in bars:
            bars[mid].update(count)

    dispatcher = Dispatcher(fleet, store, clock=SystemClock(),
                            mailings=[m.id for m in mailings] if mailing_id else None,
                            on_progress=progress)
    report = RunReport()
    while True:  # the dispatcher's own loop, saying what it waits for before each sleep
        report = report + dispatcher.run(until_idle=True)
        if until_idle or report.waiting == 0 or report.resume_at is None:
            break
        now = SystemClock().now()
        if not as_json:
            servers, _ = server_limits(fleet, store, now)
            for line in limit_lines(servers):
                click.echo(line, err=True)
            click.echo(f"{report.waiting} letter(s) wait in the queue; sending resumes at "
                       f"{iso(report.resume_at)} (Ctrl-C stops; `mailfleet mailing run` "
                       f"goes on later)", err=True)
        time.sleep(max(1.0, report.resume_at - now))
    for bar in bars.values():
        bar.render_finish()
    data = report.as_dict()
    now = SystemClock().now()
    servers, _ = server_limits(fleet, store, now)
    data["servers"] = servers
    lines = limit_lines(servers)
    if mailing_id is not None:
        status = mailing_status(store, mailing_id)
        with_outlook(fleet, store, status, now)
        data["state"] = status["state"]
        data["reason"] = status["reason"]
        data["waiting"] = status["waiting"]
        lines = outlook_lines(status, report.resume_at if status["state"] == "active"
                              else None, now)
    else:
        if report.waiting:
            lines.append(f"{report.waiting} letter(s) wait in the queue; "
                         + (f"sending resumes at {iso(report.resume_at)}" if report.resume_at
                            else "no enabled server frees by itself (see `mailfleet quota`)"))
        paused = store.list_mailings(["paused"])
        if paused:
            held = sum(mailing_status(store, m.id)["waiting"] for m in paused)
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


@mailing_group.command("status")
@click.argument("mailing_id", metavar="ID")
@json_option
@click.pass_obj
def mailing_status_cmd(obj: Context, mailing_id: str, as_json: bool) -> None:
    """Letters by state, letters sent by each server, which servers hit which limit and when
    sending resumes, or why it is paused."""
    store = _store(obj)
    data = mailing_status(store, mailing_id)
    now = SystemClock().now()
    data["holders"] = [
        {"dispatcher": h.dispatcher, "host": h.host, "pid": h.pid, "alive": h.alive,
         "claimed": h.claimed, "in_data": h.sending, "taken_back_at": iso(h.takeback_at)}
        for h in store.holders(mailing_id, now,
                               lease=obj.fleet.config.deployment.lease_seconds)]
    resume = with_outlook(obj.fleet, store, data, now)

    def table() -> None:
        click.echo(f"mailing {data['id']} ({data['name']}): {data['state']}"
                   + (f" - {data['reason']}" if data["reason"] else ""))
        print_table([(k, data[k]) for k in ("letters", *COUNTED)], ["state", "letters"])
        click.echo(f"(sent + bounced + failed + skipped + held + waiting = letters; "
                   f"{data['rejected']} rejected row(s) were never queued)")
        if data["by_server"]:
            print_table(sorted(data["by_server"].items()), ["server", "sent"])
        for line in outlook_lines(data, resume, now):
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
    store = _store(obj)
    mailing = store.get_mailing(mailing_id)
    if mailing is None:
        raise click.BadParameter(f"no mailing {mailing_id!r}", param_hint="ID")
    released = 0
    if action == "pause":
        if mailing.state not in ("active", "paused"):
            click.echo(f"mailfleet: mailing {mailing_id} is {mailing.state}", err=True)
            sys.exit(EXIT_USAGE)
        store.set_mailing_state(mailing_id, "paused", "paused by the user")
    elif action == "resume":
        if mailing.state not in ("active", "paused", "done"):
            click.echo(f"mailfleet: mailing {mailing_id} is {mailing.state}", err=True)
            sys.exit(EXIT_USAGE)
        released = store.release_held(mailing_id)
        store.set_mailing_state(mailing_id, "active", "")
    else:
        store.cancel_mailing(mailing_id, SystemClock().now())
    data = mailing_status(store, mailing_id)
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


def _window(w: WindowStatus) -> dict[str, Any]:
    return {"used": w.used, "limit": w.limit, "remaining": w.remaining,
            "frees_at": iso(w.frees_at)}


def quota_rows(obj: Context, store: Store) -> list[dict[str, Any]]:
    """``quota --json``: per server, every window (minute, hour, day) with used, limit,
    remaining and when it frees, the block, and when the next letter may go."""
    now = SystemClock().now()
    out = []
    for server in obj.fleet.servers:
        q = store.quota(server.name, server.limits, now)
        out.append({"server": server.name, "priority": server.priority,
                    "enabled": server.enabled,
                    "minute": _window(q.minute), "hour": _window(q.hour), "day": _window(q.day),
                    "window": server.limits.window, "timezone": server.limits.timezone,
                    "blocked_until": iso(q.blocked_until), "blocked_reason": q.blocked_reason,
                    "next_letter_at": iso(max(now, q.next_free(now))),
                    "breaker": {"state": breaker_state(q.failures, q.blocked_until),
                                "failures": q.failures}})
    return out


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


@cli.command("quota")
@json_option
@click.pass_obj
def quota_cmd(obj: Context, as_json: bool) -> None:
    """Per server and window (minute, hour, day): used, limit, left and when it frees; when
    the next letter may go; blocked-until and why."""
    data = quota_rows(obj, _store(obj))
    emit(data, as_json, lambda: print_quota(data))


@cli.group("suppress")
def suppress_group() -> None:
    """The suppression list: addresses never sent to (hard bounces, unsubscribes, by hand)."""


@suppress_group.command("add")
@click.argument("emails", nargs=-1, required=True)
@click.option("--reason", default="added by hand")
@json_option
@click.pass_obj
def suppress_add(obj: Context, emails: tuple[str, ...], reason: str, as_json: bool) -> None:
    """Add addresses to the suppression list."""
    store = _store(obj)
    added = []
    for email in emails:
        try:
            address = normalize_address(email)
        except AddressError as exc:
            click.echo(f"mailfleet: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        store.suppress(address, reason, SystemClock().now())
        added.append(address.lower())
    emit({"added": added}, as_json, lambda: click.echo(f"suppressed {len(added)} address(es)"))


@suppress_group.command("list")
@json_option
@click.pass_obj
def suppress_list(obj: Context, as_json: bool) -> None:
    """Every suppressed address with its reason."""
    rows = _store(obj).suppressed()
    data = [{"email": e, "reason": r, "added_at": iso(at), "source": s} for e, r, at, s in rows]
    emit(data, as_json, lambda: print_table(
        [(d["email"], d["reason"], d["source"], d["added_at"]) for d in data],
        ["email", "reason", "source", "added"]))


@suppress_group.command("remove")
@click.argument("emails", nargs=-1, required=True)
@json_option
@click.pass_obj
def suppress_remove(obj: Context, emails: tuple[str, ...], as_json: bool) -> None:
    """Remove addresses from the suppression list."""
    store = _store(obj)
    removed = [e for e in emails if store.unsuppress(e.strip())]
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
    store = _store(obj)
    source = read_rows(path, encoding)
    email_column = column_for("email", source.columns or ("email",))
    reason_column = column_for("reason", source.columns or ())
    now = SystemClock().now()
    added, bad = 0, []
    for number, row in source:
        if "__error__" in row:
            bad.append(BadRow(number, "", str(row["__error__"]), row.get("__column__")))
            continue
        raw = str(row.get(email_column or "email") or "").strip()
        try:
            address = normalize_address(raw)
        except AddressError as exc:
            bad.append(BadRow(number, raw, f"invalid address: {exc}", email_column))
            continue
        why = str(row.get(reason_column) or "").strip() if reason_column else ""
        store.suppress(address, why or reason, now, source="import")
        added += 1
    data = {"added": added, "rejected": _rejected(bad)}

    def table() -> None:
        click.echo(f"suppressed {added} address(es)")
        for r in bad:
            click.echo(f"  skipped {r.line()}", err=True)

    emit(data, as_json, table)
    if bad:
        sys.exit(EXIT_FAILURE)


@suppress_group.command("export")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.pass_obj
def suppress_export(obj: Context, path: str | None) -> None:
    """Write the suppression list as CSV (email, reason, source, added_at) to PATH or
    standard output; `suppress import` reads it back."""
    rows = _store(obj).suppressed()
    with (open(path, "w", encoding="utf-8", newline="") if path
          else contextlib.nullcontext(sys.stdout)) as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["email", "reason", "source", "added_at"])
        for email, why, at, source in rows:
            writer.writerow([email, why, source, iso(at)])
    if path:
        click.echo(f"exported {len(rows)} address(es) to {path}", err=True)
