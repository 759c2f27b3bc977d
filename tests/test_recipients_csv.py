"""CSV import as operators export it: encodings, separators, header names, quoted newlines,
merge fields in any script; bad files and rows give one line per problem, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailfleet.clock import FakeClock
from mailfleet.errors import TemplateError
from mailfleet.mailings.mailing import BadRowsError, create_mailing
from mailfleet.mailings.recipients import MAX_FIELD, read_rows
from mailfleet.mailings.template import Template
from mailfleet.store.sqlite import SqliteStore

RUSSIAN = "Email;Имя;Компания\r\nivan@dest.test;Иван;ООО \"Ромашка\"\r\nolga@dest.test;Ольга;\r\n"


def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "s.db")


def fields_of(db: SqliteStore, mailing_id: str) -> dict[str, dict[str, str]]:
    rows = db.db.execute("SELECT email, fields FROM letters WHERE mailing_id=?",
                         (mailing_id,)).fetchall()
    return {email: json.loads(fields) for email, fields in rows}


@pytest.mark.parametrize("encoding", ["cp1251", "utf-8", "utf-8-sig", "utf-16"])
def test_a_russian_excel_export_imports_in_any_common_encoding(tmp_path: Path,
                                                               encoding: str) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes(RUSSIAN.encode(encoding))
    db = store(tmp_path)
    template = Template(subject="{{ Имя }}, новости", text="Здравствуйте, {{ Имя }}!")
    created = create_mailing(db, template, path, clock=FakeClock())
    assert created.letters == 2
    assert fields_of(db, created.id) == {"ivan@dest.test": {"Имя": "Иван"},
                                         "olga@dest.test": {"Имя": "Ольга"}}


@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_the_separator_is_sniffed_and_header_names_match_ignoring_case_and_spaces(
        tmp_path: Path, separator: str) -> None:
    path = tmp_path / "r.csv"
    lines = [[" EMAIL ", " Name"], ["a@dest.test", '"Ann\nMarie"'], ["b@dest.test", "Bob"]]
    path.write_text("\n".join(separator.join(line) for line in lines) + "\n", encoding="utf-8")
    db = store(tmp_path)
    in_subject = create_mailing(db, Template(subject="Hi {{ name }}", text="x"), path,
                                skip_bad_rows=True)
    [refused] = in_subject.rejected  # a quoted newline cannot go into the Subject
    assert (refused.row, refused.column) == (2, "Name")
    text_only = create_mailing(db, Template(subject="Hi", text="{{ name }}"), path)
    assert fields_of(db, text_only.id) == {"a@dest.test": {"name": "Ann\nMarie"},
                                           "b@dest.test": {"name": "Bob"}}


def test_the_cp1251_encoding_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("email,Имя\na@dest.test,Аня\n".encode("cp1251"))
    rows = list(read_rows(path, encoding="cp1251"))
    assert rows == [(2, {"email": "a@dest.test", "Имя": "Аня"})]
    with pytest.raises(TemplateError, match="unknown encoding"):
        read_rows(path, encoding="klingon")


def test_an_unknown_template_field_is_one_error_naming_it_and_the_columns(
        tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email,name\n" + "".join(f"u{i}@dest.test,U{i}\n" for i in range(120)))
    with pytest.raises(TemplateError) as info:
        create_mailing(store(tmp_path), Template(subject="Hi {{ nmae }}", text="x"), path)
    message = str(info.value)
    assert message.count("nmae") == 1 and "\n" not in message
    assert "its columns: email, name" in message


def test_duplicates_are_reported_once_with_a_count(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("email\na@dest.test\na@dest.test\na@DEST.test\nb@dest.test\n")
    created = create_mailing(store(tmp_path), Template(subject="s", text="t"), path)
    assert (created.letters, created.duplicates) == (2, 2)


def test_each_problem_is_one_line_naming_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    raw = (b"email,name,code\nbad,A,1\nb@dest.test,B\n"
           + b"c@dest.test,\xff\xfe,3\n" + "d@dest.test,Ёжик Дмитриевич,4\n".encode())
    path.write_bytes(raw)
    with pytest.raises(BadRowsError) as info:
        create_mailing(store(tmp_path), Template(subject="{{ name }}", text="{{ code }}"), path)
    lines = str(info.value).splitlines()[1:]
    assert [line.strip().split(":")[0] for line in lines] == [
        "row 2, column 'email'", "row 3, column 'code'", "row 4, column 'name'"]
    assert "not valid utf-8 text" in lines[2]


def test_a_field_over_the_bound_is_a_row_error_and_the_rest_imports(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"email,name\na@dest.test,{'x' * 1_000_000}\nb@dest.test,B\n"
                    f"c@dest.test,\"{'y' * (MAX_FIELD + 10)}\"\n")
    created = create_mailing(store(tmp_path), Template(subject="s", text="{{ name }}"), path,
                             skip_bad_rows=True)
    assert created.letters == 1
    assert [(r.row, "longer than" in r.reason) for r in created.rejected] == [(2, True),
                                                                              (4, True)]


@pytest.mark.parametrize("skip", [False, True])
def test_an_unterminated_quote_refuses_the_file_naming_the_row(tmp_path: Path,
                                                               skip: bool) -> None:
    path = tmp_path / "r.csv"
    path.write_text('email,name\na@dest.test,A\nb@dest.test,"B\nc@dest.test,C\n')
    db = store(tmp_path)
    with pytest.raises(TemplateError, match=r"row 3: a quote .* is never closed"):
        create_mailing(db, Template(subject="s", text="{{ name }}"), path, skip_bad_rows=skip)
    assert db.list_mailings() == []


@pytest.mark.parametrize(("content", "reason"), [
    (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
    (bytes(range(256)) * 4, "NUL bytes"),
    (b"email,Email\na@dest.test,b@dest.test\n", "both named 'Email'"),
    (b"name;phone\nA;1\n", "must have an 'email' column"),
    (b"", "header row"),
])
def test_files_that_cannot_be_read_are_refused_with_the_reason(
        tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(content)
    with pytest.raises(TemplateError, match=reason):
        create_mailing(store(tmp_path), Template(subject="s", text="t"), path)


def test_a_stray_quote_inside_an_unquoted_field_is_kept_as_text(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('email;name\na@dest.test;ООО "Ромашка\nb@dest.test;B\n', encoding="utf-8")
    rows = list(read_rows(path))
    assert rows == [(2, {"email": "a@dest.test", "name": 'ООО "Ромашка'}),
                    (3, {"email": "b@dest.test", "name": "B"})]
