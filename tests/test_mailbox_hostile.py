"""Hostile input on the mailbox path: a message that stalls or kills the parser, lines of any
length, servers that echo the password or send endless lines. Real Dovecot for the normal
path, scripted servers (mailfleet_testing.hostile) for the misbehaving ones."""

from __future__ import annotations

import os
import resource
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from test_mailbox_readers import MemoryState, collect, report, settings_for

from mailfleet.bounces.handling import BounceHandler, Handled, fetch_bounces
from mailfleet.bounces.mime import MAX_BYTES
from mailfleet.bounces.report import BounceReport
from mailfleet.cli.main import main
from mailfleet.config import BouncesConfig
from mailfleet.errors import MailboxError
from mailfleet.hookspecs import hookimpl
from mailfleet.mailbox.budget import ParseWorker, SetAside, SetAsideMessage
from mailfleet.mailbox.imap import Fetched, ImapReader
from mailfleet.mailbox.pop3 import Pop3Reader
from mailfleet.mailbox.settings import resolve_mailbox
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.dovecot import Mailbox
from mailfleet_testing.hostile import HostileImap, HostilePop3

SECRET = 'hunter2-"Пароль"'


def dsn(n: int) -> bytes:
    """A real RFC 3464 report for gone<n>@dest.test."""
    return (f"From: MAILER-DAEMON@mx.dest.test\r\nTo: news@example.com\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <d{n}@mx>\r\n"
            f"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
            f"--b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
            f"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
            f"Final-Recipient: rfc822; gone{n}@dest.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            f"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n--b--\r\n").encode()


STALL = b"X-Test-Parser: stall"
DIE = b"X-Test-Parser: die"
GREEDY = b"X-Test-Parser: greedy"


class HostileParser:
    """A parse hook that never returns on one message and kills its process on another:
    whatever a parser does, one message must not hold up the mailbox."""

    @hookimpl(tryfirst=True)
    def mailfleet_parse_bounce(self, message: EmailMessage, raw: bytes) -> None:
        if STALL in raw:
            while True:
                pass
        if DIE in raw:
            os._exit(3)
        if GREEDY in raw:  # more than the worker may have: refused at once, nothing touched
            limit = resource.getrlimit(resource.RLIMIT_AS)[0]
            if limit == resource.RLIM_INFINITY:
                os._exit(4)  # not capped: fail the test rather than fill the machine
            bytearray(limit)


def hostile(marker: bytes) -> bytes:
    return (b"From: attacker@example.org\r\nSubject: report\r\n" + marker + b"\r\n\r\nx\r\n")


@pytest.fixture
def handler(tmp_path: Path) -> Any:
    store = SqliteStore(tmp_path / "s.db")
    yield BounceHandler(store, load_plugins(extra=[("hostile", HostileParser())]),
                        BouncesConfig())
    store.close()


def fetch(settings: Any, handler: BounceHandler, budget: float = 1.0
          ) -> tuple[list[Handled], list[SetAsideMessage]]:
    results: list[Handled | SetAsideMessage] = []
    fetch_bounces(settings, handler, results.append, budget=budget)
    return ([r for r in results if isinstance(r, Handled)],
            [r for r in results if isinstance(r, SetAsideMessage)])


def recipients(handled: list[Handled]) -> list[str]:
    return [r.address for h in handled for r in h.report.recipients]


def test_imap_message_that_stalls_the_parser_is_set_aside_and_the_next_one_processed(
        mailbox: Mailbox, handler: BounceHandler) -> None:
    for raw in (dsn(1), hostile(STALL), dsn(2), hostile(DIE), dsn(3)):
        mailbox.append(raw)
    started = time.monotonic()
    handled, aside = fetch(settings_for(mailbox), handler)
    assert time.monotonic() - started < 20  # one budget of 1 s, not forever
    assert recipients(handled) == ["gone1@dest.test", "gone2@dest.test", "gone3@dest.test"]
    assert [m.id for m in aside] == ["2", "4"]
    assert "longer than 1 s" in aside[0].reason and "died" in aside[1].reason
    assert "exit code 3" in aside[1].reason
    with mailbox.imap() as client:
        client.select_folder("INBOX")
        flags = client.get_flags(client.search("ALL"))
    assert [b"$MailfleetSetAside" in flags[uid] for uid in sorted(flags)] == [
        False, True, False, True, False]
    assert [b"$MailfleetProcessed" in flags[uid] for uid in sorted(flags)] == [
        True, False, True, False, True]
    started = time.monotonic()
    assert fetch(settings_for(mailbox), handler) == ([], [])  # the rerun never hangs again
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("processed", ["move", "delete"])
def test_imap_message_set_aside_stays_in_the_folder_when_the_others_are_moved_or_deleted(
        mailbox: Mailbox, handler: BounceHandler, processed: str) -> None:
    for raw in (dsn(1), hostile(DIE), dsn(2)):
        mailbox.append(raw)
    handled, aside = fetch(settings_for(mailbox, processed=processed, move_to="Done"),
                           handler)
    assert recipients(handled) == ["gone1@dest.test", "gone2@dest.test"] and len(aside) == 1
    [left] = mailbox.fetch_all("INBOX")
    assert DIE in left
    assert len(mailbox.fetch_all("Done")) == (2 if processed == "move" else 0)


def test_pop3_message_that_stalls_the_parser_is_set_aside_and_the_next_one_processed(
        mailbox: Mailbox, handler: BounceHandler) -> None:
    for raw in (dsn(1), hostile(STALL), dsn(2)):
        mailbox.append(raw)
    settings = settings_for(mailbox, "pop3", processed="delete")
    handled, aside = fetch(settings, handler)
    assert recipients(handled) == ["gone1@dest.test", "gone2@dest.test"]
    [stalled] = aside
    assert "longer than 1 s" in stalled.reason
    [left] = mailbox.fetch_all()  # the good ones deleted as configured, the hostile one kept
    assert STALL in left
    assert fetch(settings, handler) == ([], [])


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_adversarial_report_between_two_good_ones_does_not_stop_either(
        mailbox: Mailbox, tmp_path: Path, protocol: str) -> None:
    """Bodies that made the parser quadratic (issue 15): whatever the parser makes of them,
    within the budget or set aside, both good reports around them are processed."""
    store = SqliteStore(tmp_path / "s.db")
    bodies = [b" " * 300_000, b"!" * 300_000]
    mailbox.append(dsn(1))
    for body in bodies:
        mailbox.append(b"From: MAILER-DAEMON@x.test\r\nSubject: Undelivered Mail\r\n\r\n"
                       + body + b"\r\n")
    mailbox.append(dsn(2))
    started = time.monotonic()
    handled, aside = fetch(settings_for(mailbox, protocol), BounceHandler(
        store, load_plugins(), BouncesConfig()), budget=1.5)
    assert time.monotonic() - started < 30  # two budgets of 1.5 s at most, on a loaded machine
    assert {"gone1@dest.test", "gone2@dest.test"} <= set(recipients(handled))
    assert len(handled) + len(aside) == 4
    store.close()


def test_imap_progress_is_saved_after_each_message_so_a_crash_rereads_only_that_one(
        mailbox: Mailbox) -> None:
    for n in range(5):
        mailbox.append(report(n))
    state = MemoryState()
    reader = ImapReader(settings_for(mailbox, processed="none"), state)
    seen: list[str] = []

    def crash_on_third(message: Fetched) -> None:
        seen.append(message.id)
        if len(seen) == 3:
            raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):
        reader.read(crash_on_third)
    assert [m.id for m in collect(reader)] == ["3", "4", "5"]


def test_pop3_progress_is_saved_after_each_message_so_a_crash_rereads_only_that_one(
        mailbox: Mailbox) -> None:
    for n in range(3):
        mailbox.append(report(n))
    state = MemoryState()
    reader = Pop3Reader(settings_for(mailbox, "pop3"), state)

    def crash_on_second(message: Fetched) -> None:
        if b"Mail 1" in message.raw:
            raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):
        reader.read(crash_on_second)
    assert [b"Mail 1" in m.raw or b"Mail 2" in m.raw for m in collect(reader)] == [True, True]


def test_pop3_deletion_lost_with_a_crashed_session_is_made_in_the_next_one(
        mailbox: Mailbox, handler: BounceHandler) -> None:
    for n in range(3):
        mailbox.append(report(n))
    mailbox.append(hostile(DIE))
    settings = settings_for(mailbox, "pop3", processed="delete")
    state = MemoryState()

    def crash_on_second(message: Fetched) -> None:
        if b"Mail 1" in message.raw:
            raise RuntimeError("the process died here")

    with pytest.raises(RuntimeError):  # Mail 0 was handled, its DELE never committed
        Pop3Reader(settings, state).read(crash_on_second)
    assert len(mailbox.fetch_all()) == 4
    aside: list[SetAsideMessage] = []
    with ParseWorker(handler.plugins.parse_bounce, 1.0) as worker:
        def parse(message: Fetched) -> None:
            worker.parse(message.raw)

        Pop3Reader(settings, state).read(parse, aside.append)
    assert len(aside) == 1
    [left] = mailbox.fetch_all()  # Mail 0, 1 and 2 deleted; the one set aside kept
    assert DIE in left
    assert Pop3Reader(settings, state).read(parse) == 0
    assert len(mailbox.fetch_all()) == 1  # and never deleted later


def test_pop3_reads_a_message_with_a_one_megabyte_line_from_dovecot(mailbox: Mailbox) -> None:
    mailbox.append(report(1))
    mailbox.append(b"From: a@example.org\r\nSubject: long\r\n\r\n" + b"!" * 1_000_000 + b"\r\n")
    mailbox.append(report(2))
    got = collect(Pop3Reader(settings_for(mailbox, "pop3"), MemoryState()))
    assert len(got) == 3
    assert len(got[1].raw) <= MAX_BYTES and got[1].size > 1_000_000 and got[1].truncated
    assert b"Undelivered Mail 2" in got[2].raw


def test_imap_fetches_at_most_the_parser_cap_of_a_large_message(mailbox: Mailbox) -> None:
    mailbox.append(b"From: a@example.org\r\nSubject: big\r\n\r\n" + b"line\r\n" * 500_000)
    [big] = collect(ImapReader(settings_for(mailbox), MemoryState()))
    assert len(big.raw) == MAX_BYTES and big.size > 3_000_000


def plain(server: HostileImap | HostilePop3, protocol: str, password: str = SECRET) -> Any:
    return resolve_mailbox(BouncesConfig(
        protocol=protocol, host=server.host, port=server.port,  # type: ignore[arg-type]
        security=Security.NONE, allow_insecure_auth=True, login="b@example.org",
        password=Secret(password), timeout=5.0))


def test_pop3_lines_of_any_length_never_fail_the_fetch() -> None:
    messages = [report(1), b"Subject: x\r\n\r\n" + b"y" * 3_000_000 + b"\r\n.dot\r\n", report(2)]
    with HostilePop3(messages, password=SECRET, greeting_size=100_000) as server:
        got = collect(Pop3Reader(plain(server, "pop3"), MemoryState()))
    assert [m.id for m in got] == ["uid-1", "uid-2", "uid-3"]
    assert len(got[1].raw) == MAX_BYTES and got[1].size > 3_000_000
    assert got[2].raw == report(2)


def test_pop3_long_lines_come_back_byte_for_byte_around_the_read_chunk_size() -> None:
    lines = [b"a" * n for n in (65_533, 65_534, 65_535, 65_536, 131_070, 1)] + [b".", b"..x"]
    message = b"Subject: edges\r\n\r\n" + b"".join(line + b"\r\n" for line in lines)
    with HostilePop3([message]) as server:
        [got] = collect(Pop3Reader(plain(server, "pop3", "pw"), MemoryState()))
    assert got.raw == message and got.size == len(message) and not got.truncated


def test_pop3_message_the_server_refuses_is_reported_and_the_next_one_read() -> None:
    aside: list[SetAsideMessage] = []
    with HostilePop3([report(1), report(2), report(3)], password=SECRET,
                     refuse_retr=frozenset({2})) as server:
        got: list[Fetched] = []
        Pop3Reader(plain(server, "pop3"), MemoryState()).read(got.append, aside.append)
    assert [m.id for m in got] == ["uid-1", "uid-3"]
    assert [m.id for m in aside] == ["uid-2"] and "no such message" in aside[0].reason


def test_pop3_refusal_that_echoes_the_password_never_shows_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with HostilePop3([], echo_password=True) as server:
        with pytest.raises(MailboxError) as refused:
            collect(Pop3Reader(plain(server, "pop3"), MemoryState()))
        assert server.commands[1] == f"PASS {SECRET}".encode()  # it did get the password
        config = tmp_path / "mailfleet.toml"
        config.write_text(f'[deployment]\nstore = "{tmp_path / "m.db"}"\n\n'
                          f'[bounces]\nprotocol = "pop3"\nhost = "127.0.0.1"\n'
                          f'port = {server.port}\nsecurity = "none"\n'
                          f'allow_insecure_auth = true\nlogin = "b@example.org"\n'
                          f'password_env = "HOSTILE_PW"\n', encoding="utf-8")
        os.environ["HOSTILE_PW"] = SECRET
        try:
            with pytest.raises(SystemExit):
                main(["--config", str(config), "bounces", "fetch"])
        finally:
            del os.environ["HOSTILE_PW"]
    assert "wrong password ***" in str(refused.value) and SECRET not in str(refused.value)
    err = capsys.readouterr().err
    assert "wrong password ***" in err and "hunter2" not in err


@pytest.mark.parametrize("password", ['hunter2-"quoted"\\', SECRET],
                         ids=["ascii-by-LOGIN", "utf8-by-AUTHENTICATE-PLAIN"])
def test_imap_refusal_that_echoes_the_password_never_shows_it(password: str) -> None:
    with HostileImap(echo_password=True) as server:
        with pytest.raises(MailboxError, match="auth") as refused:
            collect(ImapReader(plain(server, "imap", password), MemoryState()))
        assert server.connections == 1  # a refused login is never retried
    text = str(refused.value)
    assert "wrong password" in text and "***" in text
    assert "hunter2" not in text and "quoted" not in text and "\\xd0" not in text


def test_imap_message_the_server_will_not_fetch_is_set_aside_and_the_others_read() -> None:
    aside: list[SetAsideMessage] = []
    with HostileImap([report(1), report(2), report(3)], unfetchable=frozenset({2})) as server:
        got: list[Fetched] = []
        reader = ImapReader(plain(server, "imap", "pw"), MemoryState())
        reader.read(got.append, aside.append)
        assert [m.id for m in got] == ["1", "3"] and got[1].raw == report(3)
        assert [m.id for m in aside] == ["2"] and "could not be read" in aside[0].reason
        assert b"$MailfleetSetAside" in server.flags[2]
        assert b"$MailfleetProcessed" in server.flags[1] | server.flags[3]


def test_imap_server_sending_an_endless_line_is_a_clean_read_error() -> None:
    with HostileImap(huge_line=2_000_000) as server:
        reader = ImapReader(plain(server, "imap", "pw"), MemoryState(), attempts=1)
        with pytest.raises(MailboxError, match="read"):
            collect(reader)


def test_parse_worker_sets_aside_a_stalled_message_and_parses_the_next_in_a_new_worker(
        ) -> None:
    plugins = load_plugins(extra=[("hostile", HostileParser())])
    with ParseWorker(plugins.parse_bounce, budget=0.5) as worker:
        with pytest.raises(SetAside, match=r"longer than 0\.5 s"):
            worker.parse(hostile(STALL))
        report_after = worker.parse(dsn(7))
    assert isinstance(report_after, BounceReport)
    assert [r.address for r in report_after.recipients] == ["gone7@dest.test"]


def parse_or_reason(worker: ParseWorker, raw: bytes) -> str:
    """The report's kind, or why the message was set aside."""
    try:
        return worker.parse(raw).kind
    except SetAside as exc:
        return exc.reason


def test_parse_worker_memory_is_capped_so_a_greedy_message_fails_alone() -> None:
    plugins = load_plugins(extra=[("hostile", HostileParser())])
    with ParseWorker(plugins.parse_bounce, budget=5) as worker:
        started = time.monotonic()
        outcome = parse_or_reason(worker, hostile(GREEDY))
        assert time.monotonic() - started < 5  # refused at once, no memory was filled
        # the core parser takes over from the plugin that failed, or the message is set aside
        assert outcome == "not-bounce" or "MemoryError" in outcome, outcome
        assert [r.address for r in worker.parse(dsn(8)).recipients] == ["gone8@dest.test"]
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY  # not here
