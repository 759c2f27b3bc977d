"""The whole bounce loop over real servers: a mailing goes out through a private Postfix, the
provider refuses one address, Postfix writes a real DSN into Dovecot, and `bounces fetch`
marks the letter and suppresses the address."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailfleet.cli.main import main
from mailfleet.clock import FakeClock
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import Template
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.dovecot import Mailbox
from mailfleet_testing.postfix import PostfixServer
from mailfleet_testing.smtpd import FakeSMTP

DEAD = "gone@dest.test"


def write_config(path: Path, postfix: PostfixServer, box: Mailbox, store: Path) -> Path:
    path.write_text(f'''
[deployment]
store = "{store}"

[[servers]]
name = "local-mta"
kind = "internal"
sender = "{box.address}"
host = "127.0.0.1"
port = {postfix.port}

[bounces]
protocol = "imap"
host = "127.0.0.1"
port = {box.imaps_port}
security = "ssl"
login = "{box.login}"
password = "{box.password}"
ca_file = "{box.ca_file}"
''', encoding="utf-8")
    return path


def test_bounce_of_a_mailing_letter_marks_it_and_suppresses_the_address(
        tmp_path: Path, postfix: PostfixServer, smtp_server: FakeSMTP, mailbox: Mailbox,
        capsys: pytest.CaptureFixture[str]) -> None:
    smtp_server.reset()
    smtp_server.add_rule("RCPT", f"550 5.1.1 <{DEAD}>: Recipient address rejected: "
                                 "User unknown in virtual mailbox table", match=DEAD)
    store_path = tmp_path / "mailfleet.db"
    config = write_config(tmp_path / "mailfleet.toml", postfix, mailbox, store_path)
    fleet = Fleet.from_file(config)
    store = SqliteStore(store_path)
    clock = FakeClock()
    template = Template(subject="News for {{ name }}", text="Hello {{ name }}",
                        sender=mailbox.address)
    created = create_mailing(store, template, [
        {"email": "alive@dest.test", "name": "Ann"}, {"email": DEAD, "name": "Bob"}],
        clock=clock)
    report = Dispatcher(fleet, store, clock=clock).run(until_idle=True)
    assert report.sent == 2  # Postfix accepted both; the refusal comes later, as a DSN

    [dsn] = mailbox.wait_for_messages(1, timeout=15)
    assert b"multipart/report" in dsn and DEAD.encode() in dsn
    smtp_server.wait_for_messages(1)

    main(["--config", str(config), "bounces", "fetch", "--json"])  # exits only on failure
    summary = json.loads(capsys.readouterr().out)
    assert (summary["read"], summary["bounces"], summary["marked"]) == (1, 1, 1)
    assert summary["suppressed"] == [DEAD]
    [parsed] = summary["reports"]
    assert parsed["recipients"][0]["status"] == "5.1.1"
    assert parsed["recipients"][0]["reason"] == "userunknown"
    assert parsed["matched_letter"] == parsed["letter_id"]

    letter = store.find_letter(parsed["letter_id"])
    assert letter is not None and letter.email == DEAD and letter.state == "bounced"
    assert letter.mailing_id == created.id
    assert store.is_suppressed(DEAD) and not store.is_suppressed("alive@dest.test")

    main(["--config", str(config), "bounces", "fetch", "--json"])  # reads nothing new
    assert json.loads(capsys.readouterr().out)["read"] == 0
    store.close()


def test_soft_bounces_suppress_only_after_the_configured_count(tmp_path: Path) -> None:
    from mailfleet.bounces.handling import BounceHandler
    from mailfleet.config import BouncesConfig
    from mailfleet.plugins.manager import load_plugins

    store = SqliteStore(tmp_path / "s.db")
    clock = FakeClock()
    template = Template(subject="s", text="t", sender="news@example.com")
    handler = BounceHandler(store, load_plugins(), BouncesConfig(soft_bounce_limit=2),
                            clock)
    mailing_ids = [create_mailing(store, template, [{"email": "full@dest.test"}],
                                  clock=clock).id for _ in range(2)]
    dsn = ("From: MAILER-DAEMON@mx.dest.test\r\nTo: news@example.com\r\n"
           "Subject: Undelivered Mail Returned to Sender\r\n"
           "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain\r\n\r\nMailbox full\r\n"
           "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
           "Final-Recipient: rfc822; full@dest.test\r\nAction: failed\r\nStatus: 4.2.2\r\n"
           "Diagnostic-Code: smtp; 452 4.2.2 Mailbox full\r\n"
           "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
           "X-Mailfleet-Letter-Id: {lid}\r\nSubject: s\r\n--b--\r\n")
    first = handler.handle(dsn.format(lid=f"{mailing_ids[0]}-1").encode())
    assert first.marked and not first.suppressed
    second = handler.handle(dsn.format(lid=f"{mailing_ids[1]}-1").encode())
    assert second.marked and second.suppressed == ("full@dest.test",)
    again = handler.handle(dsn.format(lid=f"{mailing_ids[1]}-1").encode())
    assert not again.marked and not again.suppressed  # handling twice changes nothing more
    store.close()


def test_verp_envelope_sender_carries_the_letter_id_back_in_the_bounce(
        tmp_path: Path, postfix: PostfixServer, smtp_server: FakeSMTP, mailbox: Mailbox) -> None:
    smtp_server.reset()
    smtp_server.add_rule("RCPT", f"550 5.1.1 <{DEAD}>: user unknown", match=DEAD)
    store_path = tmp_path / "mailfleet.db"
    config = write_config(tmp_path / "mailfleet.toml", postfix, mailbox, store_path)
    config.write_text(config.read_text() + "verp = true\n")
    fleet = Fleet.from_file(config)
    store = SqliteStore(store_path)
    clock = FakeClock()
    created = create_mailing(store, Template(subject="s", text="t", sender=mailbox.address),
                             [{"email": DEAD}], clock=clock)
    assert Dispatcher(fleet, store, clock=clock).run(until_idle=True).sent == 1
    local, domain = mailbox.address.split("@")
    letter_id = f"{created.id}-1"
    [dsn] = mailbox.wait_for_messages(1, timeout=15)  # plus-addressed, same mailbox
    assert f"{local}+mf-{letter_id}@{domain}".encode() in dsn

    from mailfleet.bounces.handling import BounceHandler
    header = f"X-Mailfleet-Letter-Id: {letter_id}".encode()
    assert header in dsn
    only_verp = dsn.replace(header, b"X-Other: y")  # the returned headers no longer name it
    assert fleet.plugins.parse_bounce(only_verp).letter_id == letter_id
    handled = BounceHandler(store, fleet.plugins, fleet.config.bounces, clock).handle(only_verp)
    assert handled.letter is not None and handled.letter.letter_id == letter_id
    assert handled.marked
    store.close()


def test_verp_is_dropped_where_the_provider_refuses_foreign_envelope_senders() -> None:
    from mailfleet.config import parse_config
    from mailfleet.sending.sender import SenderRequest, envelope_for, verp_template

    fleet = Fleet(parse_config({"servers": [
        {"name": "ya", "sender": "news@yandex.ru", "password_env": "X"},
        {"name": "own", "sender": "news@example.com", "host": "smtp.example.com"}]}))
    wanted = SenderRequest("news@yandex.ru", "", verp_template("bounces@example.com"))
    yandex = fleet.plugins.sender_policy(fleet.server("ya"), wanted)
    assert envelope_for(yandex.envelope_from, "m1-7") == "news@yandex.ru"
    assert "VERP" in yandex.reason
    own = fleet.plugins.sender_policy(fleet.server("own"), SenderRequest(
        "news@example.com", "", verp_template("bounces@example.com")))
    assert envelope_for(own.envelope_from, "m1-7") == "bounces+mf-m1-7@example.com"


def test_bounces_watch_reads_the_mailbox_each_round(
        tmp_path: Path, postfix: PostfixServer, mailbox: Mailbox,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "mailfleet.toml", postfix, mailbox, tmp_path / "m.db")
    mailbox.append(b"From: MAILER-DAEMON@x.test\r\nTo: x@test.local\r\n"
                   b"Subject: hello\r\n\r\nhi\r\n")
    main(["--config", str(config), "bounces", "watch", "--count", "2", "--interval", "0.2"])
    out = capsys.readouterr().out
    assert out.count("read 1 message(s)") == 1 and out.count("read 0 message(s)") == 1


def test_bounces_watch_json_prints_one_timestamped_line_per_report_and_per_read(
        tmp_path: Path, postfix: PostfixServer, mailbox: Mailbox,
        capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime, timedelta

    config = write_config(tmp_path / "mailfleet.toml", postfix, mailbox, tmp_path / "m.db")
    mailbox.append(b"From: MAILER-DAEMON@x.test\r\nTo: x@test.local\r\n"
                   b"Subject: hello\r\n\r\nhi\r\n")
    before = datetime.now(UTC)
    main(["--config", str(config), "bounces", "watch", "--json", "--count", "2",
          "--interval", "0.2"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line.get("read")) for line in lines] == [
        ("report", None), ("read", 1), ("read", 0)]
    assert lines[0]["kind"] == "not-bounce" and lines[0]["matched_letter"] is None
    stamps = [datetime.fromisoformat(line["at"].replace("Z", "+00:00")) for line in lines]
    assert all(line["at"].endswith("Z") for line in lines)
    assert before - timedelta(seconds=1) <= stamps[0] <= stamps[1] <= stamps[2]
    assert stamps[2] - before < timedelta(minutes=2)


def test_bounces_fetch_json_reports_a_mailbox_error_in_the_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailfleet_testing.hostile import HostilePop3

    with HostilePop3([], echo_password=True) as server:
        config = tmp_path / "mailfleet.toml"
        config.write_text(f'[deployment]\nstore = "{tmp_path / "m.db"}"\n\n'
                          f'[bounces]\nprotocol = "pop3"\nhost = "127.0.0.1"\n'
                          f'port = {server.port}\nsecurity = "none"\n'
                          f'allow_insecure_auth = true\nlogin = "b@example.org"\n'
                          f'password = "s3cret-pw"\n', encoding="utf-8")
        with pytest.raises(SystemExit) as exit_:
            main(["--config", str(config), "bounces", "fetch", "--json"])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    summary = json.loads(out)
    assert (summary["read"], summary["reports"], summary["error"]["stage"],
            summary["error"]["transient"]) == (0, [], "auth", False)
    assert "s3cret-pw" not in out and "wrong password ***" in summary["error"]["message"]


def test_bounces_fetch_lists_the_messages_set_aside_and_handles_the_others(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mailfleet_testing.hostile import HostilePop3

    hello = b"From: a@example.org\r\nSubject: hello\r\n\r\nhi\r\n"
    with HostilePop3([hello, hello, hello], password="pw",
                     refuse_retr=frozenset({2})) as server:
        config = tmp_path / "mailfleet.toml"
        config.write_text(f'[deployment]\nstore = "{tmp_path / "m.db"}"\n\n'
                          f'[bounces]\nprotocol = "pop3"\nhost = "127.0.0.1"\n'
                          f'port = {server.port}\nsecurity = "none"\n'
                          f'allow_insecure_auth = true\nlogin = "b@example.org"\n'
                          f'password = "pw"\n', encoding="utf-8")
        main(["--config", str(config), "bounces", "fetch", "--json"])
        summary = json.loads(capsys.readouterr().out)
        main(["--config", str(config), "bounces", "fetch"])
        text = capsys.readouterr().out
    assert (summary["read"], len(summary["reports"])) == (2, 2)
    [aside] = summary["set_aside"]
    assert aside["id"] == "uid-2" and "no such message" in aside["reason"]
    assert text.startswith("read 0 message(s)") and "1 set aside" in text
    assert "set aside message uid-2: the server would not give the message" in text
