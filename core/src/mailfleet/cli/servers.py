"""``mailfleet plugins``, ``plugin new``, ``servers`` and ``send``: the installed plugins,
the configured servers, and one letter through one server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import attrs
import click

from mailfleet.app import ServerBusyError, ServerQuota, SuppressedError, installed_plugins
from mailfleet.cli.output import (
    EXIT_FAILURE,
    EXIT_USAGE,
    Context,
    emit,
    iso,
    json_option,
    print_table,
    refuse,
)
from mailfleet.cli.scaffold import plugin_project
from mailfleet.errors import SmtpError


@click.command("plugins")
@json_option
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins: id, distribution, version, hooks, domains served."""
    records = installed_plugins()
    data = [{"id": r.id, "distribution": r.distribution, "version": r.version,
             "hooks": list(r.hooks), "domains": list(r.provider.domains) if r.provider else []}
            for r in records]
    emit(data, as_json, lambda: print_table(
        [(d["id"], d["distribution"], d["version"], ", ".join(d["domains"]) or "-",
          len(d["hooks"])) for d in data],
        ["id", "distribution", "version", "domains", "hooks"]))


@click.group("plugin")
def plugin_group() -> None:
    """Write provider plugins (see docs/plugins.md)."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False),
              help="Where to create the project (default: the current directory).")
def plugin_new(name: str, directory: str) -> None:
    """Create a ready provider-plugin project mailfleet-NAME (pyproject, hook stubs, tests)."""
    root = plugin_project(name, Path(directory))
    click.echo(f"created {root}: pip install -e \"{root}[test]\", then python -m pytest {root}")


@click.group("servers")
def servers_group() -> None:
    """Inspect and check the configured SMTP servers."""


@servers_group.command("list")
@json_option
@click.pass_obj
def servers_list(obj: Context, as_json: bool) -> None:
    """The servers in priority order, after provider presets are applied."""
    data: list[dict[str, Any]] = [
        {"name": s.name, "kind": s.kind, "provider": s.provider, "host": s.host,
             "port": s.port, "security": s.security.value, "login": s.login,
             "sender": s.sender, "priority": s.priority,
             "allow_sender_override": s.allow_sender_override, "timeout": s.timeout,
             "limits": attrs.asdict(s.limits)} for s in obj.app.servers()]
    emit(data, as_json, lambda: print_table(
        [(d["name"], d["kind"], d["provider"], f"{d['host']}:{d['port']}", d["security"],
          d["login"], d["sender"], d["limits"]["per_hour"], d["limits"]["per_day"])
         for d in data],
        ["name", "kind", "provider", "address", "security", "login", "sender", "per hour",
         "per day"]))


@servers_group.command("check")
@click.argument("name", required=False)
@click.option("--force", is_flag=True, help="Probe servers the store has blocked, too.")
@json_option
@click.pass_obj
def servers_check(obj: Context, name: str | None, force: bool, as_json: bool) -> None:
    """Connect, TLS, AUTH and a sender probe (MAIL FROM, RSET) per server; nothing is sent.

    A server blocked after a provider's limit or spam reply is reported, not contacted.
    """
    results = asyncio.run(obj.app.check([name] if name else None, force=force))
    data = [attrs.asdict(r) for r in results]

    def table() -> None:
        for r in results:
            if r.ok:
                click.echo(f"{r.name}: ok")
            else:
                code = " ".join(str(x) for x in (r.code, r.enhanced_status) if x)
                click.echo(f"{r.name}: FAILED at {r.stage} ({r.classification}) {code}".rstrip())
                click.echo(f"  server said: {r.reply}")
                if r.diagnosis:
                    click.echo(f"  diagnosis: {r.diagnosis}")

    emit(data, as_json, table)
    if not all(r.ok for r in results):
        sys.exit(EXIT_FAILURE)


@servers_group.command("unblock")
@click.argument("name")
@json_option
@click.pass_obj
def servers_unblock(obj: Context, name: str, as_json: bool) -> None:
    """Lift a block (after you solved the provider's captcha or re-enabled the account);
    then `mailfleet mailing resume ID` the mailings it paused."""
    server = obj.app.unblock(name)
    emit({"server": server, "blocked": False}, as_json,
         lambda: click.echo(f"{server}: unblocked"))


@click.command("send")
@click.option("--server", "server_name", required=True, help="Server name from the config.")
@click.option("--to", required=True, help="Recipient address.")
@click.option("--subject", required=True)
@click.option("--text", required=True, help="Plain-text body.")
@click.option("--html", default=None, help="HTML body (sent as multipart/alternative).")
@click.option("--from", "from_addr", default="", help="Wanted From (sender policy applies).")
@click.option("--from-name", default="")
@click.option("--skip-quota", is_flag=True,
              help="A test letter: neither checked against nor counted in the server's quota.")
@json_option
@click.pass_obj
def send_cmd(obj: Context, server_name: str, to: str, subject: str, text: str,
             html: str | None, from_addr: str, from_name: str, skip_quota: bool,
             as_json: bool) -> None:
    """Send one letter through one server. It counts against the server's quota (unless
    --skip-quota) and is refused for an address on the suppression list."""
    try:
        sent = asyncio.run(obj.app.send_one(
            server_name, to=to, subject=subject, text=text, html=html, from_addr=from_addr,
            from_name=from_name, count_in_quota=not skip_quota))
    except SuppressedError as exc:
        refuse(as_json, f"{exc.address} is on the suppression list (see `mailfleet suppress "
                        f"list`); remove it with `mailfleet suppress remove {exc.address}` "
                        f"to send anyway", code=EXIT_USAGE)
    except ServerBusyError as exc:
        refuse(as_json, f"server {exc.quota.server} cannot send now: "
                        f"{quota_reason(exc.quota)}; use another --server, wait, or "
                        f"--skip-quota for a test letter", code=EXIT_FAILURE)
    except SmtpError as err:
        data = {"ok": False, "server": server_name, "stage": err.stage.value, "code": err.code,
                "enhanced_status": err.enhanced_status, "reply": err.reply,
                "classification": err.classification.value,
                "diagnosis": err.diagnosis.summary if err.diagnosis else None,
                "next_step": err.diagnosis.next_step if err.diagnosis else None}
        message = f"not sent: {err}"
        emit(data, as_json, lambda: click.echo(message, err=True))
        sys.exit(EXIT_FAILURE)
    data = {"ok": True, "message_id": sent.message_id, "server": sent.server,
            "from": sent.sender.from_addr, "envelope_from": sent.sender.envelope_from,
            "sender_reason": sent.sender.reason, "counted_in_quota": not skip_quota}
    emit(data, as_json, lambda: click.echo(
        f"sent {sent.message_id} via {sent.server} from {sent.sender.from_addr}"
        + (f" ({sent.sender.reason})" if sent.sender.substituted else "")
        + ("; not counted in the quota (--skip-quota)" if skip_quota else "")))


def quota_reason(quota: ServerQuota) -> str:
    """Why a server cannot send now, in one clause."""
    if quota.blocked_until is not None:
        return f"blocked until {iso(quota.blocked_until)} ({quota.blocked_reason})"
    for kind, window in (("per-minute", quota.minute), ("hourly", quota.hour),
                         ("daily", quota.day)):
        if window.remaining == 0:
            return (f"its {kind} limit is reached ({window.used}/{window.limit}), frees at "
                    f"{iso(window.frees_at)}")
    return "no quota left"


COMMANDS = (plugins_cmd, plugin_group, servers_group, send_cmd)
