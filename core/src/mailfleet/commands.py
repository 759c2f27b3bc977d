"""Command groups added to the ``mailfleet`` CLI: ``mailing``, ``quota`` and ``suppress``."""

from __future__ import annotations

import sys
from typing import Any

import click

from mailfleet.addresses import normalize_address
from mailfleet.cli import EXIT_FAILURE, EXIT_USAGE, Context, cli, emit, json_option, print_table
from mailfleet.clock import SystemClock
from mailfleet.dispatcher import Dispatcher, iso
from mailfleet.errors import AddressError, TemplateError
from mailfleet.mailing import BadRowsError, create_mailing
from mailfleet.quota import WindowStatus
from mailfleet.store import Store


def _store(obj: Context) -> Store:
    return obj.fleet.open_store()


def mailing_status(store: Store, mailing_id: str) -> dict[str, Any]:
    """``mailing status --json``: counts by state, waiting letters and letters by server."""
    mailing = store.get_mailing(mailing_id)
    if mailing is None:
        raise click.BadParameter(f"no mailing {mailing_id!r}", param_hint="ID")
    counts = store.counts(mailing_id)
    waiting = sum(counts.get(s, 0) for s in ("queued", "claimed", "sending"))
    return {"id": mailing.id, "name": mailing.name, "state": mailing.state,
            "reason": mailing.state_reason or None, "letters": mailing.total,
            "rejected": mailing.rejected, "sent": counts.get("sent", 0) + counts.get(
                "bounced", 0), "failed": counts.get("failed", 0),
            "skipped": counts.get("skipped", 0), "bounced": counts.get("bounced", 0),
            "held": counts.get("held", 0), "waiting": waiting, "resume_at": None,
            "by_server": store.by_server(mailing_id)}


@cli.group("mailing")
def mailing_group() -> None:
    """Create, run and follow mass mailings."""


@mailing_group.command("create")
@click.option("--template", "template_path", required=True, type=click.Path(dir_okay=False),
              help="TOML template (subject, text, html, sender, ...).")
@click.option("--recipients", "recipients_path", required=True,
              type=click.Path(dir_okay=False), help="CSV with an email column, or JSON lines.")
@click.option("--skip-bad-rows", is_flag=True, help="Queue the good rows, list the bad ones.")
@click.option("--name", default="", help="A name for the mailing (default: the file name).")
@click.option("--hold-in-data", is_flag=True,
              help="After a crash, hold letters caught inside DATA for review, not resend.")
@json_option
@click.pass_obj
def mailing_create(obj: Context, template_path: str, recipients_path: str,
                   skip_bad_rows: bool, name: str, hold_in_data: bool, as_json: bool) -> None:
    """Validate every recipient and queue the mailing; prints its id."""
    store = _store(obj)
    try:
        result = create_mailing(store, template_path, recipients_path,
                                skip_bad_rows=skip_bad_rows, name=name,
                                hold_in_data=hold_in_data)
    except BadRowsError as exc:
        message = str(exc)
        bad: dict[str, Any] = {"id": None, "letters": 0, "rejected": [
            {"row": r.row, "email": r.email, "reason": r.reason} for r in exc.rows]}
        emit(bad, as_json, lambda: click.echo(f"mailfleet: {message}", err=True))
        sys.exit(EXIT_USAGE)
    except TemplateError as exc:
        message = str(exc)
        emit({"id": None, "letters": 0, "rejected": [], "error": message}, as_json,
             lambda: click.echo(f"mailfleet: {message}", err=True))
        sys.exit(EXIT_USAGE)
    rejected = [{"row": r.row, "email": r.email, "reason": r.reason} for r in result.rejected]
    data: dict[str, Any] = {"id": result.id, "letters": result.letters, "rejected": rejected,
            "duplicates": result.duplicates}

    def table() -> None:
        click.echo(result.id)
        click.echo(f"{result.letters} letters queued", err=True)
        for r in rejected:
            click.echo(f"  skipped row {r['row']}: {r['email'] or '-'}: {r['reason']}", err=True)
        if result.duplicates:
            click.echo(f"  {result.duplicates} duplicate addresses dropped", err=True)

    emit(data, as_json, table)


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
            bar.update(m.total - sum(counts.get(s, 0) for s in ("queued", "claimed", "sending")))
            bars[m.id] = bar

    def progress(mid: str, count: int) -> None:
        if mid in bars:
            bars[mid].update(count)

    dispatcher = Dispatcher(fleet, store, clock=SystemClock(),
                            mailings=[m.id for m in mailings] if mailing_id else None,
                            on_progress=progress)
    report = dispatcher.run(until_idle=until_idle)
    for bar in bars.values():
        bar.render_finish()
    data = report.as_dict()
    if mailing_id is not None:
        data["state"] = mailing_status(store, mailing_id)["state"]

    def table() -> None:
        click.echo(f"sent {report.sent}, failed {report.failed}, skipped {report.skipped}, "
                   f"waiting {report.waiting}")
        if report.waiting:
            if report.resume_at is not None:
                click.echo(f"sending will resume at {iso(report.resume_at)}")
            else:
                click.echo("no server can send now; see `mailfleet quota`")

    emit(data, as_json, table)
    if report.failed and not report.sent:
        sys.exit(EXIT_FAILURE)


@mailing_group.command("status")
@click.argument("mailing_id", metavar="ID")
@json_option
@click.pass_obj
def mailing_status_cmd(obj: Context, mailing_id: str, as_json: bool) -> None:
    """Counts by state, letters sent by each server, why it is paused."""
    store = _store(obj)
    data = mailing_status(store, mailing_id)
    now = SystemClock().now()
    data["holders"] = [
        {"dispatcher": h.dispatcher, "host": h.host, "pid": h.pid, "alive": h.alive,
         "claimed": h.claimed, "in_data": h.sending, "taken_back_at": iso(h.takeback_at)}
        for h in store.holders(mailing_id, now,
                               lease=obj.fleet.config.deployment.lease_seconds)]
    if data["waiting"]:
        fleet = obj.fleet
        times = []
        for server in fleet.servers:
            q = store.quota(server.name, server.limits, now)
            times.append(q.next_free(now))
        data["resume_at"] = iso(min(times)) if times else None

    def table() -> None:
        click.echo(f"mailing {data['id']} ({data['name']}): {data['state']}"
                   + (f" - {data['reason']}" if data["reason"] else ""))
        print_table([(k, data[k]) for k in ("letters", "sent", "failed", "skipped", "bounced",
                                             "held", "waiting", "rejected")],
                    ["state", "letters"])
        if data["by_server"]:
            print_table(sorted(data["by_server"].items()), ["server", "sent"])
        if data["waiting"] and data["resume_at"]:
            click.echo(f"next letter can go at {data['resume_at']}")
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
    now = SystemClock().now()
    out = []
    for server in obj.fleet.servers:
        q = store.quota(server.name, server.limits, now)
        out.append({"server": server.name, "priority": server.priority,
                    "minute": _window(q.minute), "hour": _window(q.hour), "day": _window(q.day),
                    "window": server.limits.window, "timezone": server.limits.timezone,
                    "blocked_until": iso(q.blocked_until), "blocked_reason": q.blocked_reason,
                    "breaker": {"state": breaker_state(q.failures, q.blocked_until),
                                "failures": q.failures}})
    return out


def breaker_state(failures: int, blocked_until: float | None) -> str:
    """The circuit breaker of a server: ``closed`` (healthy), ``open`` (resting after
    consecutive failures), ``half-open`` (rest over: the next connection is the probe)."""
    if not failures:
        return "closed"
    return "open" if blocked_until is not None else "half-open"


def print_quota(data: list[dict[str, Any]]) -> None:
    def cell(w: dict[str, Any]) -> str:
        if w["limit"] is None:
            return f"{w['used']}/-"
        text = f"{w['used']}/{w['limit']} ({w['remaining']} left)"
        return text + (f" frees {w['frees_at'][11:19]}" if w["frees_at"] else "")

    def breaker(b: dict[str, Any]) -> str:
        return str(b["state"]) + (f" ({b['failures']} failures)" if b["failures"] else "")

    print_table([(d["server"], cell(d["hour"]), cell(d["day"]), breaker(d["breaker"]),
                  d["blocked_until"] or "-", d["blocked_reason"] or "-") for d in data],
                ["server", "hour", "day", "breaker", "blocked until", "why"])


@cli.command("quota")
@json_option
@click.pass_obj
def quota_cmd(obj: Context, as_json: bool) -> None:
    """Per server: used, limit and remaining this hour and day, when the next letter frees,
    blocked-until and why."""
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
