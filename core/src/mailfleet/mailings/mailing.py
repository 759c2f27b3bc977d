"""Creating a mailing: a template and recipients, validated and streamed into the store.

Every bad row (missing field, invalid address, CR/LF in a value that lands in a header) is
reported at creation with its row number and reason, before anything is queued. With
``skip_bad_rows`` the good rows are queued and the bad ones listed; without it nothing is
queued and :class:`BadRowsError` lists them. Recipients are read and inserted in batches, so
memory does not grow with the size of the mailing.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Iterator, Mapping
from json.encoder import encode_basestring as _json_text
from pathlib import Path
from typing import Any

import attrs

from mailfleet.clock import Clock, SystemClock
from mailfleet.errors import TemplateError
from mailfleet.mailings.recipients import (
    BadRow,
    Recipient,
    number_rows,
    read_rows,
    unknown_fields,
    validate,
)
from mailfleet.mailings.template import Template, load_template
from mailfleet.store.base import MailingRecord, Store

BATCH = 5000


def _to_json(fields: Mapping[str, str]) -> str:
    """``json.dumps(fields, ensure_ascii=False)`` for text values, ~3x faster (no encoder
    object per row)."""
    return "{" + ", ".join([_json_text(k) + ": " + _json_text(v)
                            for k, v in fields.items()]) + "}"


class BadRowsError(TemplateError):
    """Recipients rows were refused and the user did not ask to skip them."""

    def __init__(self, rows: list[BadRow], valid: int) -> None:
        self.rows = rows
        self.valid = valid
        lines = [r.line() for r in rows]
        count = len({r.row for r in rows})
        super().__init__(f"{count} bad recipient row(s), nothing was queued "
                         f"(skipping the bad rows queues the {valid} good ones):\n  "
                         + "\n  ".join(lines))


@attrs.frozen
class CreateResult:
    """A created mailing: its id, letters queued, rows refused, duplicate addresses dropped."""

    id: str
    letters: int
    rejected: tuple[BadRow, ...]
    duplicates: int = 0


def new_mailing_id() -> str:
    return "m" + secrets.token_hex(6)


def create_mailing(
    store: Store,
    template: Template | str | Path,
    recipients: Iterable[Mapping[str, Any]] | str | Path,
    *,
    skip_bad_rows: bool = False,
    name: str = "",
    hold_in_data: bool = False,
    message_id_domain: str | None = None,
    clock: Clock | None = None,
    batch_size: int = BATCH,
    encoding: str | None = None,
    tenant: str = "",
) -> CreateResult:
    """Validate every recipient and queue the mailing; raises BadRowsError (nothing queued)
    when rows are bad and ``skip_bad_rows`` is false, TemplateError for a bad template.

    ``recipients`` is a CSV or JSON-lines path, or any iterable of mappings with an ``email``
    key and one key per merge field. ``hold_in_data``: after a crash, hold letters that were
    inside DATA for review instead of resending them. ``message_id_domain``: the domain of
    every Message-ID (default: the template sender's domain, else ``mailfleet.invalid``).
    ``encoding`` forces the encoding of a CSV file (default: detected). ``tenant``: whose
    mailing it is (its letters go through that tenant's servers and the shared ones).

    The template is checked once, before anything is queued: a merge field that no column
    (of the CSV header, or of the first row given) provides is one TemplateError naming it
    and the columns there are.
    """
    template = (load_template(template) if not isinstance(template, Template)
                else template.checked())
    if isinstance(recipients, str | Path):
        source = read_rows(recipients, encoding)
        rows: Iterator[tuple[int, Mapping[str, Any]]] = iter(source)
        name = name or Path(recipients).stem
        columns = source.columns
        where = Path(recipients).name
    else:
        rows = number_rows(recipients)
        columns = None
        where = "the first recipient"
    first = next(rows, None)
    if columns is None and first is not None and "__error__" not in first[1]:
        columns = tuple(str(k) for k in first[1])
    if columns is not None and (error := unknown_fields(template, columns, where)):
        raise error
    if first is not None:
        rows = itertools.chain([first], rows)
    clock = clock or SystemClock()
    domain = message_id_domain or (template.sender.rpartition("@")[2] if template.sender
                                   else "mailfleet.invalid")
    mailing_id = new_mailing_id()
    store.create_mailing(MailingRecord(mailing_id, name or mailing_id, clock.now(), "draft",
                                       template.to_dict(), domain, hold_in_data,
                                       tenant=tenant))
    bad: list[BadRow] = []
    valid = inserted = 0
    batch: list[tuple[int, str, str]] = []
    try:
        for item in validate(rows, template):
            if isinstance(item, Recipient):
                valid += 1
                if bad and not skip_bad_rows:
                    continue  # keep reading to report every bad row, but queue nothing
                batch.append((valid, item.email, _to_json(item.fields)))
                if len(batch) >= batch_size:
                    inserted += store.add_letters(mailing_id, batch)
                    batch.clear()
            else:
                bad.append(item)
        if bad and not skip_bad_rows:
            raise BadRowsError(bad, valid)
        if batch:
            inserted += store.add_letters(mailing_id, batch)
        store.finish_creation(mailing_id, inserted, len({r.row for r in bad}))
    except BaseException:
        store.delete_mailing(mailing_id)
        raise
    return CreateResult(mailing_id, inserted, tuple(bad), valid - inserted)
