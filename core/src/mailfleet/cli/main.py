"""The ``mailfleet`` command line: every command prints a table, or JSON with ``--json``.

The command groups live in their modules and are registered here, explicitly; errors the
commands let through become one line (or one JSON object) and an exit code: 0 success, 1 a
delivery or server failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from mailfleet.cli import bounces, commands, servers, worker
from mailfleet.cli.output import EXIT_FAILURE, EXIT_USAGE, Context
from mailfleet.errors import (
    AddressError,
    ConfigError,
    ConfigFileError,
    HeaderError,
    MailfleetError,
    PluginError,
    TemplateError,
)


@click.group()
@click.option("--config", "-c", metavar="PATH", envvar="MAILFLEET_CONFIG",
              help="Config file (default: $MAILFLEET_CONFIG, else ./mailfleet.toml).")
@click.version_option(package_name="mailfleet")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Send mass mailings through a fleet of SMTP servers and read the bounces back."""
    ctx.obj = Context(config)
    ctx.call_on_close(ctx.obj.close)


for _command in (*servers.COMMANDS, *commands.COMMANDS, *bounces.COMMANDS, *worker.COMMANDS):
    cli.add_command(_command)


def _json_error(kind: str, message: str, problems: Sequence[str] = ()) -> None:
    click.echo(json.dumps({"ok": False, "error": kind, "message": message,
                           "problems": list(problems)}, ensure_ascii=False))


def config_file_problem(exc: ConfigFileError) -> str:
    """A config file that cannot be read, and the option that names the right one."""
    if exc.reason == "missing":
        return f"{exc.path}: no such file; pass --config PATH or set MAILFLEET_CONFIG"
    return (f"{exc.path}: is a directory; pass the config file itself, such as "
            f"--config {Path(exc.path) / 'mailfleet.toml'}")


def report_usage_error(exc: MailfleetError, as_json: bool) -> None:
    """A bad config or input: one line per problem on stderr, or one JSON object on stdout."""
    if isinstance(exc, ConfigFileError):
        exc = ConfigError(config_file_problem(exc))
    problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
    if as_json:
        _json_error("config" if isinstance(exc, ConfigError) else "input", str(exc), problems)
        return
    for problem in problems:
        click.echo(f"mailfleet: {' '.join(problem.splitlines())}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; configuration and usage errors exit with 2."""
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
