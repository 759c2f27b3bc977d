"""Recipients: read from CSV (header row, an ``email`` column), JSON lines or any iterable,
validated row by row against a template; streamed, never all held in memory."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from mailfleet.addresses import normalize_address
from mailfleet.errors import AddressError, TemplateError
from mailfleet.template import Template


@attrs.frozen
class Recipient:
    """One valid recipient: the normalised address and the merge values the template uses."""

    row: int
    email: str
    fields: dict[str, str]


@attrs.frozen
class BadRow:
    """A row refused at creation: where it is (line/row number), the address, and why."""

    row: int
    email: str
    reason: str


def read_rows(path: str | Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(row number, values)`` from a ``.csv`` file (row number = line in the file, the header
    is line 1) or a JSON-lines file (``.jsonl``/``.ndjson``/``.json``: one object per line)."""
    file = Path(path)
    if not file.exists():
        raise TemplateError(f"{file}: no such file")
    if file.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(file)
    return _read_csv(file)


def _read_csv(file: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle, restval=None)
        if reader.fieldnames is None or "email" not in [f.strip() for f in reader.fieldnames]:
            raise TemplateError(f"{file}: the header row must have an 'email' column "
                                f"(got {reader.fieldnames})")
        reader.fieldnames = [f.strip() for f in reader.fieldnames]
        line = 1
        for row in reader:
            line += 1
            yield line, row
            line = max(line, reader.line_num)


def _read_jsonl(file: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, {"__error__": f"not valid JSON: {exc.msg}"}
                continue
            if not isinstance(value, dict):
                yield number, {"__error__": "expected a JSON object"}
                continue
            yield number, value


def number_rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Rows from the API, numbered from 1."""
    return enumerate(rows, 1)


def validate(rows: Iterable[tuple[int, Mapping[str, Any]]], template: Template
             ) -> Iterator[Recipient | BadRow]:
    """Each row as a Recipient, or a BadRow naming every problem of that row."""
    needed = sorted(template.fields - {"email"})
    in_headers = template.header_fields
    for number, row in rows:
        problems: list[str] = []
        if "__error__" in row:
            yield BadRow(number, "", str(row["__error__"]))
            continue
        raw_email = row.get("email")
        email = str(raw_email or "").strip()
        try:
            email = normalize_address(email)
        except AddressError as exc:
            problems.append(f"invalid address: {exc}" if email else "the email is missing")
        values: dict[str, str] = {}
        for name in needed:
            value = row.get(name)
            if value is None:
                problems.append(f"missing field {name!r}")
                continue
            text = str(value)
            if name in in_headers and any(c in text for c in "\r\n\0"):
                problems.append(f"field {name!r} holds CR/LF/NUL and is used in a header")
            values[name] = text
        if problems:
            yield BadRow(number, email, "; ".join(problems))
        else:
            yield Recipient(number, email, values)
