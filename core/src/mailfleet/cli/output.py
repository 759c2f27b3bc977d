"""What every command shares: the context that builds the application layer, JSON or table
output, refusals and exit codes (0 success, 1 a delivery or server failure, 2 bad usage or
configuration)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn, TypeVar

import click

from mailfleet.app import Mailfleet

F = TypeVar("F", bound=Callable[..., Any])
EXIT_FAILURE, EXIT_USAGE = 1, 2


class Context:
    """The ``--config`` of the command line and the :class:`~mailfleet.app.Mailfleet` over
    it, built on first use and closed when the command ends."""

    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._app: Mailfleet | None = None

    @property
    def app(self) -> Mailfleet:
        if self._app is None:
            self._app = Mailfleet.from_file(self.config_path)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


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


def iso(at: datetime | None) -> str | None:
    """A time as ISO 8601 to the second (``None`` stays ``None``)."""
    return None if at is None else at.isoformat(timespec="seconds")


def refuse(as_json: bool, message: str, *, code: int) -> NoReturn:
    """Print an error (JSON on standard output with ``--json``) and exit with ``code``."""
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    else:
        click.echo(f"mailfleet: {message}", err=True)
    sys.exit(code)


def no_mailing(exc: LookupError) -> click.BadParameter:
    """An unknown mailing id, as a usage error naming the argument."""
    return click.BadParameter(str(exc), param_hint="ID")
