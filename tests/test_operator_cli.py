"""The operator's day on the command line: a Russian Excel export, one error for a typo'd
field, limits you can see in `quota`, `mailing status` and `mailing run`, `send` under the
quota and the suppression list, listings and CSV export, and JSON errors."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import test_mailing_support as support
from test_mailing_support import server_entry

from mailfleet.cli.main import main
from mailfleet.plugins.providers import Limits
from mailfleet.sending.dispatcher import iso
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

certs = support.certs
servers = support.servers

TEMPLATE = ('subject = "{{ Имя }}, новости магазина"\n'
            'text = "Здравствуйте, {{ Имя }}!{% if Город %} Ваш город: {{ Город }}.{% endif %}"\n'
            'sender = "a@example.org"\n')


def write_config(tmp_path: Path, *entries: dict[str, Any]) -> Path:
    lines = ['[deployment]', 'store = "mailfleet.db"']
    for entry in entries:
        lines.append("[[servers]]")
        limits = entry.pop("limits", None)
        lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
        if limits:
            lines.append("[servers.limits]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in limits.items()]
    path = tmp_path / "mailfleet.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], config: Path) -> None:
        self.capsys = capsys
        self.config = config

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        try:
            main(["--config", str(self.config), *args])
            got = 0
        except SystemExit as exit_:
            got = int(exit_.code or 0)
        out, err = self.capsys.readouterr()
        assert got == code, (out, err)
        assert "Traceback" not in out + err
        return out, err

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code)[0])


@pytest.fixture
def two_servers(tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
                capsys: pytest.CaptureFixture[str]) -> Cli:
    config = write_config(tmp_path,
                          server_entry("a", servers[0], certs, limits={"per_hour": 2}),
                          server_entry("b", servers[1], certs, limits={"per_hour": 1}))
    (tmp_path / "t.toml").write_text(TEMPLATE, encoding="utf-8")
    rows = "Email;Имя;Город\r\n" + "".join(f"c{i}@dest.test;Клиент{i};{'Тула' if i % 2 else ''}"
                                          f"\r\n" for i in range(5))
    (tmp_path / "clients.csv").write_bytes(rows.encode("cp1251"))
    return Cli(capsys, config)


def create(cli: Cli, tmp_path: Path, template: str = "t.toml") -> str:
    created = cli.json("mailing", "create", "--template", str(tmp_path / template),
                       "--recipients", str(tmp_path / "clients.csv"))
    return str(created["id"])


def test_a_cp1251_semicolon_export_personalises_every_letter_and_limits_are_named(
        tmp_path: Path, two_servers: Cli, servers: list[FakeSMTP]) -> None:
    cli = two_servers
    mailing = create(cli, tmp_path)
    out, _ = cli("mailing", "run", mailing, "--until-idle")
    assert "server a: hourly limit reached (2/2), frees at " in out
    assert "server b: hourly limit reached (1/1), frees at " in out
    assert "2 letter(s) wait in the queue; every server is at a limit or blocked; sending " \
           "resumes at " in out
    received = servers[0].messages + servers[1].messages
    assert len(received) == 3
    for message in received:
        number = message.rcpt_tos[0][1]
        assert message.message["Subject"] == f"Клиент{number}, новости магазина"
        body = message.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"Здравствуйте, Клиент{number}!" in body
        assert ("Ваш город: Тула." in body) == (int(number) % 2 == 1)
    status = cli.json("mailing", "status", mailing)
    assert {s["server"]: [w["window"] for w in s["spent"]] for s in status["servers"]} == {
        "a": ["hour"], "b": ["hour"]}
    store = SqliteStore(tmp_path / "mailfleet.db")
    now = time.time()
    first_free = min(store.quota(name, Limits(per_hour=hourly), now).next_free(now)
                     for name, hourly in (("a", 2), ("b", 1)))
    assert status["resume_at"] == _iso(first_free)
    text, _ = cli("mailing", "status", mailing)
    assert "server b: hourly limit reached (1/1)" in text
    assert f"sending resumes at {status['resume_at']}" in text


def _iso(at: float) -> str:
    return str(iso(at))


def test_a_typo_in_a_field_is_one_error_naming_the_field_and_the_columns(
        tmp_path: Path, two_servers: Cli) -> None:
    (tmp_path / "typo.toml").write_text('subject = "Hi {{ nmae }}"\ntext = "x"\n')
    _, err = two_servers("mailing", "create", "--template", str(tmp_path / "typo.toml"),
                           "--recipients", str(tmp_path / "clients.csv"), code=2)
    assert err.count("nmae") == 1 and len(err.strip().splitlines()) == 1
    assert "its columns: Email, Имя, Город" in err
    data = two_servers.json("mailing", "create", "--template", str(tmp_path / "typo.toml"),
                            "--recipients", str(tmp_path / "clients.csv"), code=2)
    assert data["ok"] is False and "nmae" in data["error"]


def test_status_skips_a_disabled_server_with_quota_left_and_says_so(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str]) -> None:
    entries = [server_entry("a", servers[0], certs, limits={"per_hour": 1}),
               server_entry("b", servers[1], certs, enabled=False)]
    cli = Cli(capsys, write_config(tmp_path, *entries))
    (tmp_path / "t.toml").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "clients.csv").write_text("email,Имя\nx@dest.test,X\ny@dest.test,Y\n")
    mailing = create(cli, tmp_path)
    cli("mailing", "run", mailing, "--until-idle")
    status = cli.json("mailing", "status", mailing)
    assert status["resume_at"] > _iso(time.time() + 3000)  # a's hour, not "now" from b
    text, _ = cli("mailing", "status", mailing)
    assert "server b: disabled in the config" in text


def test_a_paused_mailing_says_it_is_paused_and_what_waits(tmp_path: Path,
                                                          two_servers: Cli) -> None:
    mailing = create(two_servers, tmp_path)
    two_servers("mailing", "pause", mailing)
    out, _ = two_servers("mailing", "run", mailing, "--until-idle")
    assert f"the mailing is paused (paused by the user); 5 letter(s) wait in the queue; " \
           f"`mailfleet mailing resume {mailing}` sends them" in out
    ran = two_servers.json("mailing", "run", mailing, "--until-idle")
    assert (ran["state"], ran["waiting"]) == ("paused", 5)


def test_counts_are_disjoint_and_add_up_to_the_letters(tmp_path: Path,
                                                       two_servers: Cli) -> None:
    mailing = create(two_servers, tmp_path)
    two_servers("mailing", "run", mailing, "--until-idle")
    store = SqliteStore(tmp_path / "mailfleet.db")
    assert store.mark_bounced(f"{mailing}-1", hard=True, reason="userunknown", status="5.1.1",
                              diagnostic=None, now=time.time())
    status = two_servers.json("mailing", "status", mailing)
    assert (status["sent"], status["bounced"], status["waiting"]) == (2, 1, 2)
    assert sum(status[k] for k in ("sent", "bounced", "failed", "skipped", "held",
                                   "waiting")) == status["letters"] == 5


def test_quota_shows_every_window_with_used_limit_left_and_when_it_frees(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(capsys, write_config(tmp_path, server_entry(
        "a", servers[0], certs, limits={"per_minute": 1, "per_hour": 5, "per_day": 9})))
    cli("send", "--server", "a", "--to", "r@dest.test", "--subject", "s", "--text", "t")
    [row] = cli.json("quota")
    assert {k: (row[k]["used"], row[k]["limit"], row[k]["remaining"]) for k in
            ("minute", "hour", "day")} == {"minute": (1, 1, 0), "hour": (1, 5, 4),
                                           "day": (1, 9, 8)}
    assert row["minute"]["frees_at"] is not None and row["next_letter_at"] is not None
    text, _ = cli("quota")
    assert "MINUTE" in text and "1/1, 0 left, frees " in text and "1/5, 4 left" in text


def test_send_counts_against_the_quota_and_skip_quota_says_so(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(capsys, write_config(tmp_path, server_entry("a", servers[0], certs,
                                                          limits={"per_hour": 1})))
    args = ("send", "--server", "a", "--to", "r@dest.test", "--subject", "s", "--text", "t")
    assert cli.json(*args)["counted_in_quota"] is True
    refused = cli.json(*args, code=1)
    assert "server a cannot send now: its hourly limit is reached (1/1)" in refused["error"]
    out, _ = cli(*args, "--skip-quota")
    assert "not counted in the quota (--skip-quota)" in out
    assert len(servers[0].messages) == 2


def test_send_to_a_suppressed_address_is_refused(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(capsys, write_config(tmp_path, server_entry("a", servers[0], certs)))
    cli("suppress", "add", "gone@dest.test")
    _, err = cli("send", "--server", "a", "--to", "Gone@DEST.test", "--subject", "s",
                 "--text", "t", code=2)
    assert "is on the suppression list" in err
    assert servers[0].messages == []


@pytest.mark.parametrize("char", ["\u2028", "\x0b", "\x1e"])
def test_send_refuses_line_separators_in_subject_and_from_name(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str], char: str) -> None:
    cli = Cli(capsys, write_config(tmp_path, server_entry("a", servers[0], certs)))
    for option in ("--subject", "--from-name"):
        args = {"--subject": "s", "--from-name": "n", option: f"x{char}y"}
        _, err = cli("send", "--server", "a", "--to", "r@dest.test", "--text", "t",
                     *[part for item in args.items() for part in item], code=2)
        assert f"U+{ord(char):04X}" in err


def test_mailing_list_and_letters_show_who_got_what(tmp_path: Path, two_servers: Cli,
                                                    servers: list[FakeSMTP]) -> None:
    servers[1].add_rule("RCPT", "550 5.1.1 user unknown")
    mailing = create(two_servers, tmp_path)
    two_servers("mailing", "run", mailing, "--until-idle")
    [listed] = two_servers.json("mailing", "list")
    assert (listed["id"], listed["letters"]) == (mailing, 5)
    assert listed["sent"] + listed["failed"] + listed["waiting"] == 5
    letters = two_servers.json("mailing", "letters", mailing)
    assert [row["state"] for row in letters].count("sent") == 2
    failed = two_servers.json("mailing", "letters", mailing, "--state", "failed")
    assert failed and all(r["state"] == "failed" and "user unknown" in r["error"]
                          and r["server"] == "b" for r in failed)
    out, _ = two_servers("mailing", "letters", mailing, "--state", "sent", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["server"] for r in rows} == {"a"} and rows[0]["from"] == "a@example.org"


def test_suppress_import_and_export_round_trip_through_csv(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str]) -> None:
    cli = Cli(capsys, write_config(tmp_path, server_entry("a", servers[0], certs)))
    source = tmp_path / "unsub.csv"
    source.write_bytes("E-mail ;Причина\r\n".replace("E-mail ", "Email").encode("cp1251")
                       + "x@dest.test;отписался\r\nbad;\r\ny@dest.test;\r\n".encode("cp1251"))
    imported = cli.json("suppress", "import", str(source), code=1)
    assert imported["added"] == 2 and [r["row"] for r in imported["rejected"]] == [3]
    out, _ = cli("suppress", "export")
    rows = {r["email"]: r["reason"] for r in csv.DictReader(io.StringIO(out))}
    assert rows == {"x@dest.test": "imported", "y@dest.test": "imported"} or rows == {
        "x@dest.test": "отписался", "y@dest.test": "imported"}
    target = tmp_path / "out.csv"
    cli("suppress", "export", str(target))
    cli("suppress", "remove", "x@dest.test", "y@dest.test")
    assert cli.json("suppress", "import", str(target))["added"] == 2


def test_config_errors_and_unknown_ids_are_json_with_json(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[servers]]\nname = "x"\nsender = "x@example.com"\nport = "25"\n')
    cli = Cli(capsys, config)
    for args in (("servers", "list"), ("quota",), ("mailing", "list"),
                 ("send", "--server", "x", "--to", "a@b.example", "--subject", "s",
                  "--text", "t")):
        data = cli.json(*args, code=2)
        assert data["ok"] is False and data["error"] == "config"
        assert any("servers[0].port" in p for p in data["problems"])
    good = write_config(tmp_path, {"name": "e", "sender": "e@example.com",
                                   "host": "smtp.example.com"})
    data = Cli(capsys, good).json("mailing", "status", "nope", code=2)
    assert data["error"] == "usage" and "no mailing 'nope'" in data["message"]


@pytest.mark.parametrize("content", [
    bytes(range(256)) * 8,                                    # binary
    "email,name\na@dest.test,Анна\n".encode("utf-16-le"),     # UTF-16 without a BOM
    "email,name\na@dest.test,Анна\n".encode() + b"b@dest.test,\xff\xfe\n",  # a bad row
    ("email,name\na@dest.test," + "x" * 1_000_000 + "\n").encode(),  # a 1 MB field
    b'email,name\na@dest.test,"open\nb@dest.test,B\n',        # unterminated quote
    b"email,email\na@dest.test,b@dest.test\n",                # duplicate column
])
@pytest.mark.parametrize("skip", [False, True])
def test_no_bad_csv_prints_a_traceback(tmp_path: Path, servers: list[FakeSMTP],
                                       certs: TLSCerts, capsys: pytest.CaptureFixture[str],
                                       content: bytes, skip: bool) -> None:
    cli = Cli(capsys, write_config(tmp_path, server_entry("a", servers[0], certs)))
    (tmp_path / "t.toml").write_text('subject = "s"\ntext = "{{ name }}"\n')
    (tmp_path / "bad.csv").write_bytes(content)
    args = ["mailing", "create", "--template", str(tmp_path / "t.toml"), "--recipients",
            str(tmp_path / "bad.csv"), *(["--skip-bad-rows"] if skip else [])]
    try:
        main(["--config", str(cli.config), *args, "--json"])
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    data = json.loads(out)
    if code == 0:
        assert skip and data["rejected"] and all(r["row"] for r in data["rejected"])
    else:
        assert code == 2 and data["ok"] is False and data["error"]


def test_a_blocking_run_says_what_it_waits_for_before_it_sleeps(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, server_entry("a", servers[0], certs))
    config.write_text(config.read_text() + "[retry]\nbackoff_initial = 1.0\n")
    servers[0].add_rule("RCPT", "451 4.3.0 try again later", times=1)
    cli = Cli(capsys, config)
    (tmp_path / "t.toml").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "clients.csv").write_text("email,Имя\nx@dest.test,X\n")
    mailing = create(cli, tmp_path)
    out, err = cli("mailing", "run", mailing)
    assert "1 letter(s) wait in the queue; sending resumes at " in err
    assert out.startswith("sent 1, failed 0") and len(servers[0].messages) == 1


def test_status_of_a_mailing_not_yet_run_says_a_server_can_send_now(tmp_path: Path,
                                                                    two_servers: Cli) -> None:
    mailing = create(two_servers, tmp_path)
    status = two_servers.json("mailing", "status", mailing)
    assert status["can_send"] is True and status["servers"] == []
    assert status["resume_at"] <= _iso(time.time() + 1)
    text, _ = two_servers("mailing", "status", mailing)
    assert f"5 letter(s) wait in the queue; a server can send now: run `mailfleet mailing " \
           f"run {mailing}`" in text
    assert "resumes at" not in text


def test_a_mailbox_failure_of_bounces_fetch_is_json_with_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, {"name": "e", "sender": "e@example.com",
                                     "host": "smtp.example.com"})
    config.write_text(config.read_text() + f'[bounces]\nprotocol = "pop3"\nhost = "127.0.0.1"\n'
                      f'port = {port}\nsecurity = "ssl"\nlogin = "b@example.com"\n'
                      f'password = "pw"\ntimeout = 2.0\n')
    data = Cli(capsys, config).json("bounces", "fetch", code=1)
    assert data["ok"] is False and data["reports"] == []
    assert "bounce mailbox connect" in data["error"]["message"]


def test_a_run_of_every_mailing_names_the_paused_ones_it_did_not_send(
        tmp_path: Path, two_servers: Cli) -> None:
    mailing = create(two_servers, tmp_path)
    two_servers("mailing", "pause", mailing)
    out, _ = two_servers("mailing", "run", "--until-idle")
    assert "1 paused mailing(s) with 5 letter(s) waiting were not sent" in out
    assert two_servers.json("mailing", "run", "--until-idle")["paused"] == [mailing]
