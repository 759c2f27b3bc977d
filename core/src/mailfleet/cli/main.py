"""The ``mailfleet`` command line: every command prints a table, or JSON with ``--json``.

Exit codes: 0 success, 1 a delivery or server failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import attrs
import click

from mailfleet.addresses import check_header, normalize_address
from mailfleet.app import Mailfleet
from mailfleet.errors import (
    AddressError,
    ConfigError,
    HeaderError,
    MailfleetError,
    PluginError,
    SmtpError,
    TemplateError,
)
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.quota import QuotaStatus

F = TypeVar("F", bound=Callable[..., Any])
EXIT_FAILURE, EXIT_USAGE = 1, 2


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def emit(data: Any, as_json: bool, table: Callable[[], None]) -> None:
    """Print ``data`` as JSON, or call ``table`` for people."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))
    else:
        table()


def print_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


class Context:
    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._app: Mailfleet | None = None

    @property
    def app(self) -> Mailfleet:
        """The application layer over the config file, built on first use."""
        if self._app is None:
            self._app = Mailfleet.from_file(self.config_path)
        return self._app

    @property
    def fleet(self) -> Fleet:
        return self.app.fleet


@click.group()
@click.option("--config", "-c", metavar="PATH", envvar="MAILFLEET_CONFIG",
              help="Config file (default: $MAILFLEET_CONFIG, else ./mailfleet.toml).")
@click.version_option(package_name="mailfleet")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Send mass mailings through a fleet of SMTP servers and read the bounces back."""
    ctx.obj = Context(config)


@cli.command("plugins")
@json_option
def plugins_cmd(as_json: bool) -> None:
    """List installed plugins: id, distribution, version, hooks, domains served."""
    records = load_plugins().records()
    data = [{"id": r.id, "distribution": r.distribution, "version": r.version,
             "hooks": list(r.hooks), "domains": list(r.provider.domains) if r.provider else []}
            for r in records]
    emit(data, as_json, lambda: print_table(
        [(d["id"], d["distribution"], d["version"], ", ".join(d["domains"]) or "-",
          len(d["hooks"])) for d in data],
        ["id", "distribution", "version", "domains", "hooks"]))


@cli.group("plugin")
def plugin_group() -> None:
    """Write provider plugins (see docs/plugins.md)."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False),
              help="Where to create the project (default: the current directory).")
def plugin_new(name: str, directory: str) -> None:
    """Create a ready provider-plugin project mailfleet-NAME (pyproject, hook stubs, tests)."""
    from mailfleet.cli.scaffold import plugin_project

    root = plugin_project(name, Path(directory))
    click.echo(f"created {root}: pip install -e \"{root}[test]\", then python -m pytest {root}")


@cli.group("servers")
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
             "limits": attrs.asdict(s.limits)} for s in obj.fleet.servers]
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
    app = obj.app
    try:
        results = asyncio.run(app.check([name] if name else None, force=force))
    finally:
        app.close()
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
    server = obj.fleet.server(name)
    store = obj.fleet.open_store()
    try:
        store.unblock_server(server.name)
    finally:
        store.close()
    emit({"server": server.name, "blocked": False}, as_json,
         lambda: click.echo(f"{server.name}: unblocked"))


@cli.command("send")
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
    fleet = obj.fleet
    server = fleet.server(server_name)
    check_header("Subject", subject)
    check_header("display name", from_name)
    address = normalize_address(to)
    store = fleet.open_store()
    failure: SmtpError | None = None
    try:
        if store.is_suppressed(address):
            refuse(as_json, f"{address} is on the suppression list (see `mailfleet suppress "
                            f"list`); remove it with `mailfleet suppress remove {address}` "
                            f"to send anyway", code=EXIT_USAGE)
        if not skip_quota:
            quota = store.quota(server.name, server.limits, time.time())
            if not quota.available:
                refuse(as_json, f"server {server.name} cannot send now: {quota_reason(quota)}; "
                                f"use another --server, wait, or --skip-quota for a test "
                                f"letter", code=EXIT_FAILURE)
        try:
            sent = asyncio.run(fleet.send_one(server, to=address, subject=subject, text=text,
                                              html=html, from_addr=from_addr,
                                              from_name=from_name))
        except SmtpError as exc:
            failure = exc
            sent = None
        if failure is None and not skip_quota:
            store.charge(server.name, time.time())
    finally:
        store.close()
    if failure is not None:
        err = failure
        data = {"ok": False, "server": server.name, "stage": err.stage.value, "code": err.code,
                "enhanced_status": err.enhanced_status, "reply": err.reply,
                "classification": err.classification.value,
                "diagnosis": err.diagnosis.summary if err.diagnosis else None,
                "next_step": err.diagnosis.next_step if err.diagnosis else None}
        message = f"not sent: {err}"
        emit(data, as_json, lambda: click.echo(message, err=True))
        sys.exit(EXIT_FAILURE)
    assert sent is not None
    data = {"ok": True, "message_id": sent.message_id, "server": sent.server,
            "from": sent.sender.from_addr, "envelope_from": sent.sender.envelope_from,
            "sender_reason": sent.sender.reason, "counted_in_quota": not skip_quota}
    emit(data, as_json, lambda: click.echo(
        f"sent {sent.message_id} via {sent.server} from {sent.sender.from_addr}"
        + (f" ({sent.sender.reason})" if sent.sender.substituted else "")
        + ("; not counted in the quota (--skip-quota)" if skip_quota else "")))


def quota_reason(quota: QuotaStatus) -> str:
    """Why a server cannot send now, in one clause."""
    if quota.blocked_until is not None:
        return f"blocked until {_iso(quota.blocked_until)} ({quota.blocked_reason})"
    for kind, window in (("per-minute", quota.minute), ("hourly", quota.hour),
                         ("daily", quota.day)):
        if window.remaining == 0:
            return (f"its {kind} limit is reached ({window.used}/{window.limit}), frees at "
                    f"{_iso(window.frees_at)}")
    return "no quota left"


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def refuse(as_json: bool, message: str, *, code: int) -> NoReturn:
    """Print an error (JSON on standard output with ``--json``) and exit with ``code``."""
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    else:
        click.echo(f"mailfleet: {message}", err=True)
    sys.exit(code)


def _json_error(kind: str, message: str, problems: Sequence[str] = ()) -> None:
    click.echo(json.dumps({"ok": False, "error": kind, "message": message,
                           "problems": list(problems)}, ensure_ascii=False))


def report_usage_error(exc: MailfleetError, as_json: bool) -> None:
    """A bad config or input: one line per problem on stderr, or one JSON object on stdout."""
    problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
    if as_json:
        _json_error("config" if isinstance(exc, ConfigError) else "input", str(exc), problems)
        return
    for problem in problems:
        click.echo(f"mailfleet: {' '.join(problem.splitlines())}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; configuration and usage errors exit with 2."""
    import mailfleet.cli.bounces
    import mailfleet.cli.commands
    import mailfleet.cli.worker  # noqa: F401  (registers the worker commands)

    args = list(argv) if argv is not None else sys.argv[1:]
    as_json = "--json" in args  # errors of a --json command are JSON too
    try:
        cli.main(args=args, prog_name="mailfleet", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        if as_json:
            _json_error("usage", exc.format_message())
        else:
            exc.show()
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_FAILURE)
    except (ConfigError, PluginError, AddressError, HeaderError, TemplateError) as exc:
        report_usage_error(exc, as_json)
        sys.exit(EXIT_USAGE)
    except MailfleetError as exc:
        if as_json:
            _json_error("failure", str(exc))
        else:
            click.echo(f"mailfleet: {exc}", err=True)
        sys.exit(EXIT_FAILURE)
    except OSError as exc:  # a store or file the command needs cannot be opened
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        if as_json:
            _json_error("os", message)
        else:
            click.echo(f"mailfleet: {message}", err=True)
        sys.exit(EXIT_FAILURE)
