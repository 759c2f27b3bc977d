"""Recipients: read from CSV (a header row with an ``email`` column), JSON lines or any
iterable, validated row by row against a template; streamed, never all held in memory.

CSV files are read as operators export them: the encoding is detected (UTF-8 with or without
a BOM, UTF-16 with a BOM, else CP1251, the Russian Excel default) unless one is forced; the
separator is sniffed from the header line (``,``, ``;`` or tab); header names match without
regard to case and surrounding spaces; quoted fields may hold newlines. Fields are bounded
(:data:`MAX_FIELD` characters); a bad row is reported with its row and column, never a
traceback. A file that cannot be read safely as a whole (binary, an Excel workbook, a quote
that never closes, two columns of the same name) is refused with the reason.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from mailfleet.addresses import header_problem, normalize_address
from mailfleet.errors import AddressError, TemplateError
from mailfleet.mailings.template import Template

#: The longest field read from a CSV file, in characters.
MAX_FIELD = 65_536
#: The longest record (all fields of one row), in characters.
MAX_RECORD = 4 * MAX_FIELD
_SAMPLE = 256 * 1024
_SEPARATORS = (",", ";", "\t")


def _undecoded(text: str) -> bool:
    """Whether ``text`` holds bytes the encoding could not decode (surrogateescape marks)."""
    return not text.isascii() and any("\udc80" <= c <= "\udcff" for c in text)


@attrs.frozen
class Recipient:
    """One valid recipient: the normalised address and the merge values the template uses."""

    row: int
    email: str
    fields: dict[str, str]


@attrs.frozen
class BadRow:
    """A problem of one row refused at creation: where it is (line/row number, and the
    column when it concerns one), the address, and why."""

    row: int
    email: str
    reason: str
    column: str | None = None

    def line(self) -> str:
        where = f"row {self.row}" + (f", column {self.column!r}" if self.column else "")
        return f"{where}: {self.email or '-'}: {self.reason}"


@attrs.frozen
class CsvFormat:
    """How a CSV file was read: its encoding, separator and header names."""

    encoding: str
    separator: str
    columns: tuple[str, ...]


class RecipientFile:
    """The rows of a recipients file; ``columns`` is the CSV header (``None`` for JSON
    lines). Iterating yields ``(row number, values)``; a row that cannot be read yields
    ``{"__error__": reason, "__column__": column}``."""

    def __init__(self, path: str | Path, encoding: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise TemplateError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise TemplateError(f"{self.path}: is a directory; give the CSV file")
        self.jsonl = self.path.suffix.lower() in (".jsonl", ".ndjson", ".json")
        self.format: CsvFormat | None = None
        if not self.jsonl:
            self.format = _csv_format(self.path, encoding)

    @property
    def columns(self) -> tuple[str, ...] | None:
        return self.format.columns if self.format else None

    def __iter__(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        if self.format is None:
            return _read_jsonl(self.path)
        return _read_csv(self.path, self.format)


def read_rows(path: str | Path, encoding: str | None = None) -> RecipientFile:
    """``(row number, values)`` from a CSV file (row number = line in the file, the header
    is line 1) or a JSON-lines file (``.jsonl``/``.ndjson``/``.json``: one object per line)."""
    return RecipientFile(path, encoding)


# -- CSV ------------------------------------------------------------------------------------
def _sample(path: Path) -> bytes:
    """The start of the file, extended until it holds a non-ASCII byte (which decides the
    encoding) or the file ends; bounded in memory."""
    with path.open("rb") as handle:
        head = handle.read(_SAMPLE)
        if not head.isascii():
            return head
        while chunk := handle.read(_SAMPLE):
            if not chunk.isascii():
                return head + chunk
    return head


def _detect(path: Path, head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise TemplateError(f"{path}: this is an Excel workbook, not a CSV file; in Excel use "
                            f"File > Save As > \"CSV UTF-8\"")
    if b"\0" in head:
        raise TemplateError(f"{path}: not a text CSV file (it holds NUL bytes); export it as "
                            f"CSV UTF-8, or give its encoding, utf-16, if it is UTF-16 text")
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for c in text if not c.isascii()) - bad
    if bad <= 1 or good >= bad:  # CP1251 text read as UTF-8 is almost all invalid
        return "utf-8"  # a cut last character or a few broken rows; those rows say so
    return "cp1251"


def _csv_format(path: Path, encoding: str | None) -> CsvFormat:
    head = _sample(path)
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise TemplateError(f"encoding {encoding}: unknown encoding; use utf-8, "
                                f"cp1251 or utf-16") from None
    else:
        encoding = _detect(path, head)
    if encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    with _open(path, encoding) as handle:
        first = handle.readline(MAX_RECORD)
    header_line = first.rstrip("\r\n")
    if not header_line.strip():
        raise TemplateError(f"{path}: the first line must be the header row with an 'email' "
                            f"column (the file is empty or starts with a blank line)")
    if _undecoded(header_line):
        raise TemplateError(f"{path}: the header row is not valid {encoding} text; give "
                            f"the file's encoding (utf-8, cp1251, utf-16)")
    separator = max(_SEPARATORS, key=header_line.count)
    if not header_line.count(separator):
        separator = ","
    columns = tuple(c.strip() for c in next(csv.reader([header_line], delimiter=separator)))
    seen: dict[str, int] = {}
    for index, name in enumerate(columns, 1):
        key = name.casefold()
        if not key:
            continue
        if key in seen:
            raise TemplateError(f"{path}: columns {seen[key]} and {index} are both named "
                                f"{name!r} (names match ignoring case); rename or remove one")
        seen[key] = index
    if "email" not in seen:
        shown = ", ".join(repr(c) for c in columns)
        raise TemplateError(f"{path}: the header row must have an 'email' column (got "
                            f"{shown}; separator {separator!r}, encoding {encoding})")
    return CsvFormat(encoding, separator, columns)


def _open(path: Path, encoding: str) -> IO[str]:
    return path.open(encoding=encoding, errors="surrogateescape", newline="")


def _still_quoted(line: str, separator: str, quoted: bool) -> bool:
    """Whether a quoted field is still open at the end of ``line``, read as the csv module
    reads it: a quote opens a field only at its start, a doubled quote inside is a quote."""
    start = not quoted
    i = 0
    while i < len(line):
        char = line[i]
        if quoted:
            if char == '"':
                if line[i + 1:i + 2] == '"':
                    i += 1
                else:
                    quoted = False
        elif char == '"' and start:
            quoted = True
        start = not quoted and char == separator
        i += 1
    return quoted


def _records(handle: IO[str], separator: str) -> Iterator[tuple[int, str | None, str]]:
    """``(first line number, record text or None when too long, reason)``: physical lines
    joined while a quote is open; bounded by MAX_RECORD."""
    line_no = 0
    while True:
        start = line_no + 1
        parts: list[str] = []
        size = 0
        quoted = False
        while True:
            line = handle.readline(MAX_RECORD + 1)
            if not line:
                if quoted:
                    yield start, None, "unterminated"
                elif parts:
                    yield start, "".join(parts), ""
                return
            complete = line.endswith(("\n", "\r"))
            line_no += complete
            size += len(line)
            if size > MAX_RECORD:
                if quoted:
                    yield start, None, "unterminated"
                    return
                while not complete and line:  # drop the rest of the long line
                    line = handle.readline(MAX_RECORD + 1)
                    complete = line.endswith(("\n", "\r"))
                    line_no += complete
                yield start, None, "long"
                break
            parts.append(line)
            if '"' in line and (quoted or line.count('"') % 2 == 1):  # else balanced
                quoted = _still_quoted(line, separator, quoted)
            if not quoted and complete:
                yield start, "".join(parts), ""
                break


def _read_csv(path: Path, fmt: CsvFormat) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with _open(path, fmt.encoding) as handle:
        handle.readline(MAX_RECORD)
        for number, text, trouble in _records(handle, fmt.separator):
            number += 1  # the header is line 1
            if trouble == "unterminated":
                raise TemplateError(
                    f"{path}: row {number}: a quote (\") opened in this row is never closed, "
                    f"so the rest of the file cannot be read; close or remove it (rows "
                    f"before it are fine)")
            if trouble == "long":
                yield number, {"__error__": f"the row is longer than {MAX_RECORD} characters "
                                            f"(fields are limited to {MAX_FIELD})"}
                continue
            assert text is not None
            if not text.strip():
                continue
            if '"' not in text and "\0" not in text:  # nothing quoted: the csv module's
                yield number, _row(text.rstrip("\r\n").split(fmt.separator), fmt, text)
                continue  # split, without a reader per row
            try:
                values = next(csv.reader([text], delimiter=fmt.separator))
            except csv.Error as exc:
                reason = (f"a field is longer than {MAX_FIELD} characters"
                          if "field limit" in str(exc) else f"not valid CSV: {exc}")
                yield number, {"__error__": reason}
                continue
            yield number, _row(values, fmt, text)


def _row(values: list[str], fmt: CsvFormat, text: str) -> Mapping[str, Any]:
    if len(values) > len(fmt.columns) and any(v.strip() for v in values[len(fmt.columns):]):
        return {"__error__": f"{len(values)} values but the header has {len(fmt.columns)} "
                             f"columns (separator {fmt.separator!r}); quote values that "
                             f"hold the separator"}
    if len(text) <= MAX_FIELD and text.isascii():  # no field too long, none undecoded
        return {name: value for name, value in zip(fmt.columns, values, strict=False)
                if name}
    row: dict[str, Any] = {}
    for name, value in zip(fmt.columns, values, strict=False):
        if not name:
            continue
        if len(value) > MAX_FIELD:
            return {"__error__": f"longer than {MAX_FIELD} characters", "__column__": name}
        if _undecoded(value):
            return {"__error__": f"not valid {fmt.encoding} text; save the file as CSV UTF-8 "
                                 f"or give its encoding (utf-8, cp1251)", "__column__": name}
        row[name] = value
    return row


def _read_jsonl(file: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    with file.open(encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeError) as exc:
                yield number, {"__error__": f"not valid JSON: {getattr(exc, 'msg', exc)}"}
                continue
            if not isinstance(value, dict):
                yield number, {"__error__": "expected a JSON object"}
                continue
            yield number, value


def number_rows(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Rows from the API, numbered from 1."""
    return enumerate(rows, 1)


# -- validation -----------------------------------------------------------------------------
def column_for(name: str, columns: Iterable[str]) -> str | None:
    """The column a merge field or ``email`` reads: the same name, else one that matches
    ignoring case and surrounding spaces."""
    columns = list(columns)
    if name in columns:
        return name
    key = name.strip().casefold()
    return next((c for c in columns if isinstance(c, str) and c.strip().casefold() == key),
                None)


def unknown_fields(template: Template, columns: Iterable[str], source: str) -> TemplateError | None:
    """One error naming every field the template needs that no column provides."""
    columns = [c for c in columns if c]
    missing = sorted(f for f in template.required_fields - {"email"}
                     if column_for(f, columns) is None)
    if not missing:
        return None
    names = ", ".join(f"{{{{ {f} }}}}" for f in missing)
    shown = ", ".join(columns) or "none"
    return TemplateError(f"the template uses {names}, but {source} has no such column; its "
                         f"columns: {shown} (names match ignoring case; use "
                         f"{{{{ field | default(\"...\") }}}} for an optional one)")


def validate(rows: Iterable[tuple[int, Mapping[str, Any]]], template: Template
             ) -> Iterator[Recipient | BadRow]:
    """Each row as a Recipient, or one BadRow per problem of that row."""
    used = sorted(template.fields - {"email"})
    trial = any(part.jinja is not None for _, part in template.parts())
    required = template.required_fields
    in_headers = template.header_fields
    lookup: dict[tuple[str, ...], dict[str, str | None]] = {}
    for number, row in rows:
        if "__error__" in row:
            column = row.get("__column__")
            yield BadRow(number, "", str(row["__error__"]),
                         None if column is None else str(column))
            continue
        keys = tuple(row)
        names = lookup.get(keys)
        if names is None:
            names = {n: column_for(n, keys) for n in ["email", *used]}
            if len(lookup) < 64:
                lookup[keys] = names
        email_column = names["email"]
        email = str(row.get(email_column) or "").strip() if email_column else ""
        problems: list[tuple[str | None, str]] = []
        try:
            email = normalize_address(email)
        except AddressError as exc:
            problems.append((email_column or "email",
                             f"invalid address: {exc}" if email else "the email is missing"))
        values: dict[str, str] = {}
        for name in used:
            column = names[name]
            value = row.get(column) if column is not None else None
            if value is None:
                if name in required:
                    problems.append((name, f"missing field {name!r}"))
                continue
            text = value if type(value) is str else str(value)
            if name in in_headers and not text.isprintable() \
                    and (problem := header_problem(text)) is not None:
                problems.append((column, f"field {name!r} is used in a header: {problem}"))
            values[name] = text
        if trial and not problems and (
                problem := template.render_problem({**values, "email": email})) is not None:
            problems.append((None, problem))
        if problems:
            for column, reason in problems:
                yield BadRow(number, email, reason, column)
        else:
            yield Recipient(number, email, values)
