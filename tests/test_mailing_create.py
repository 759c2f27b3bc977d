"""Creating mailings (bad rows at creation), template rendering, and the CLI's JSON."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
import test_mailing_support as support
from click.testing import CliRunner
from test_mailing_support import server_entry

from mailfleet.cli.main import cli
from mailfleet.clock import FakeClock
from mailfleet.mailings.mailing import BadRowsError, create_mailing
from mailfleet.mailings.template import CompiledTemplate, DateCache, Template
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

TEMPLATE_TOML = """
subject = "Hello {{ name }}"
text = "Dear {{ name }}, your code is {{ code }}."
sender = "news@example.net"
unsubscribe_url = "https://example.net/u?e={{ email }}"
"""

certs = support.certs
servers = support.servers



def test_every_bad_row_is_reported_at_creation_and_nothing_is_queued(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    template = Template(subject="Hi {{ name }}", text="{{ code }}")
    rows = [{"email": "ok@dest.test", "name": "A", "code": "1"},
            {"email": "not-an-address", "name": "B", "code": "2"},
            {"email": "c@dest.test", "code": "3"},
            {"email": "d@dest.test", "name": "Evil\r\nBcc: x@y.z", "code": "4"}]
    with pytest.raises(BadRowsError) as caught:
        create_mailing(store, template, rows, clock=FakeClock())
    bad = {r.row: r.reason for r in caught.value.rows}
    assert set(bad) == {2, 3, 4}
    assert "invalid address" in bad[2]
    assert "missing field 'name'" in bad[3]
    assert "CR, LF" in bad[4]
    assert store.list_mailings() == []  # nothing queued
    created = create_mailing(store, template, rows, clock=FakeClock(), skip_bad_rows=True)
    assert created.letters == 1 and len(created.rejected) == 3


def test_recipients_are_read_from_csv_and_json_lines_with_row_numbers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    template = Template(subject="Hi {{ name }}", text="x")
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("email,name\na@dest.test,A\nbad,B\na@dest.test,dup\n")
    created = create_mailing(store, template, csv_file, skip_bad_rows=True)
    assert created.letters == 1 and created.duplicates == 1
    assert [(r.row, r.email) for r in created.rejected] == [(3, "bad")]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text('{"email": "x@dest.test", "name": "X"}\n{"email": "y@dest.test"}\n')
    with pytest.raises(BadRowsError) as caught:
        create_mailing(store, template, jsonl)
    assert [r.row for r in caught.value.rows] == [2]


def render(template: Template, fields: dict[str, str]) -> email.message.EmailMessage:
    compiled = CompiledTemplate(template, from_addr="news@example.net",
                                from_name=template.sender_name)
    raw = compiled.render(to="to@dest.test", fields={**fields, "email": "to@dest.test"},
                          letter_id="m1-7", message_id="<m1-7@example.net>",
                          date=DateCache()(1_700_000_000))
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert raw.isascii()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    for part in message.walk():
        assert not part.defects
    return message


def test_template_escapes_html_and_encodes_non_ascii_subject_and_name() -> None:
    template = Template(subject="Привет, {{ name }}!", text="Здравствуйте, {{ name }}.\n",
                        html="<p>Hi {{ name }}</p>", sender="news@example.net",
                        sender_name="Рассылка")
    message = render(template, {"name": "Иван <b>&"})
    assert message["Subject"] == "Привет, Иван <b>&!"
    assert str(message["From"]) == "Рассылка <news@example.net>"
    assert message["Message-ID"] == "<m1-7@example.net>"
    assert message["X-Mailfleet-Letter-Id"] == "m1-7"
    assert message["Date"] is not None
    text = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    assert text is not None and html_part is not None
    assert text.get_content().replace("\r\n", "\n") == "Здравствуйте, Иван <b>&.\n"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Hi Иван &lt;b&gt;&amp;" in html_part.get_content()


def test_long_non_ascii_values_keep_quoted_printable_lines_short() -> None:
    template = Template(subject="{{ name }}", text="A {{ name }} B " + "x" * 100)
    message = render(template, {"name": "Ж" * 300})
    assert message["Subject"] == "Ж" * 300
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n").rstrip() == (
        "A " + "Ж" * 300 + " B " + "x" * 100)


def test_list_unsubscribe_is_personalised_with_one_click_post() -> None:
    template = Template(subject="s", text="t", unsubscribe_url="https://ex.net/u?e={{ email }}",
                        unsubscribe_mailto="unsub@ex.net")
    message = render(template, {})
    assert message["List-Unsubscribe"] == ("<https://ex.net/u?e=to%40dest.test>, "
                                           "<mailto:unsub@ex.net?subject=unsubscribe>")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def cli_env(tmp_path: Path, smtp: FakeSMTP, certs: TLSCerts) -> dict[str, str]:
    entry = server_entry("a", smtp, certs, limits={"per_hour": 2})
    lines = ['[deployment]', 'store = "mailfleet.db"', '[[servers]]']
    for key, value in entry.items():
        if key != "limits":
            lines.append(f"{key} = {json.dumps(value)}")
    lines += ["[servers.limits]", "per_hour = 2", "per_day = 10"]
    config = tmp_path / "mailfleet.toml"
    config.write_text("\n".join(lines) + "\n")
    return {"MAILFLEET_CONFIG": str(config)}


def test_cli_create_run_status_quota_and_suppress_print_the_documented_json(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    env = cli_env(tmp_path, servers[0], certs)
    (tmp_path / "t.toml").write_text(TEMPLATE_TOML)
    (tmp_path / "r.csv").write_text("email,name,code\na@dest.test,A,1\nb@dest.test,B,2\n"
                                    "c@dest.test,C,3\nd@dest.test,D,4\n")
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> object:
        result = runner.invoke(cli, [*args, "--json"], env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return json.loads(result.stdout)

    suppressed = run("suppress", "add", "d@dest.test")
    assert suppressed == {"added": ["d@dest.test"]}
    created = run("mailing", "create", "--template", str(tmp_path / "t.toml"),
                  "--recipients", str(tmp_path / "r.csv"))
    assert isinstance(created, dict) and {"id", "letters", "rejected"} <= set(created)
    assert created["letters"] == 4
    ran = run("mailing", "run", created["id"], "--until-idle")
    assert isinstance(ran, dict)
    assert {"sent", "failed", "skipped", "waiting", "resume_at"} <= set(ran)
    assert (ran["sent"], ran["skipped"], ran["waiting"]) == (2, 0, 2)
    assert ran["resume_at"] is not None
    status = run("mailing", "status", created["id"])
    assert isinstance(status, dict)
    assert {"id", "state", "by_server", "sent", "failed", "skipped", "waiting",
            "resume_at"} <= set(status)
    assert status["by_server"] == {"a": 2} and status["state"] == "active"
    quota = run("quota")
    assert isinstance(quota, list)
    [row] = quota
    assert row["server"] == "a" and row["hour"]["used"] == 2 and row["hour"]["remaining"] == 0
    assert row["hour"]["frees_at"] is not None and row["day"]["remaining"] == 8
    assert {"blocked_until", "blocked_reason"} <= set(row)
    paused = run("mailing", "pause", created["id"])
    assert isinstance(paused, dict) and paused["state"] == "paused"
    listed = run("suppress", "list")
    assert isinstance(listed, list) and listed[0]["email"] == "d@dest.test"


def test_cli_bad_rows_without_skip_exit_2_listing_every_bad_row(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    env = cli_env(tmp_path, servers[0], certs)
    (tmp_path / "t.toml").write_text(TEMPLATE_TOML)
    (tmp_path / "r.csv").write_text("email,name,code\nbad,A,1\nb@dest.test,B\nc@dest.test,C,3\n")
    result = CliRunner().invoke(cli, ["mailing", "create", "--template",
                                      str(tmp_path / "t.toml"), "--recipients",
                                      str(tmp_path / "r.csv")], env=env)
    assert result.exit_code == 2
    assert "row 2" in result.output and "row 3" in result.output
    assert "missing field 'code'" in result.output
