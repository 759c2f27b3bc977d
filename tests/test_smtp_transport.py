"""The SMTP transport against real aiosmtpd servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import pytest
from fleet_config import fleet_for, send_error, server_entry

from mailfleet import hookimpl
from mailfleet.errors import Classification, Stage
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.envelope import Envelope
from mailfleet.sending.fleet import Fleet
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.pytest_plugin import SMTP_PASSWORD, SMTP_TOKEN, SMTP_USER
from mailfleet_testing.smtpd import FakeSMTP


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", SMTP_PASSWORD)


@pytest.fixture(params=[False, True], ids=["data", "chunking"])
def wire(request: pytest.FixtureRequest, smtp: FakeSMTP) -> bool:
    """The failure tests run with DATA and with CHUNKING (BDAT) offered by the server."""
    smtp.chunking = request.param
    return bool(request.param)


def send(fleet: Fleet, to: str = "rcpt@example.org") -> str:
    sent = asyncio.run(fleet.send_one(fleet.servers[0], to=to, subject="Hello", text="Body"))
    return sent.message_id


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_letter_arrives_over_tls_with_auth(smtp: FakeSMTP, tls_certs: TLSCerts,
                                           security: str) -> None:
    message_id = send(fleet_for(server_entry(smtp, tls_certs, security=security)))
    [received] = smtp.messages
    assert received.tls and received.login == SMTP_USER
    assert received.message["Message-ID"] == message_id


def test_plain_connection_without_auth_sends(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    send(fleet_for(server_entry(smtp, tls_certs, security="none", login=None,
                                password_env=None)))
    [received] = smtp.messages
    assert not received.tls and received.login is None


def test_starttls_that_was_asked_for_is_never_skipped(smtp_factory, tls_certs: TLSCerts) -> None:  # type: ignore[no-untyped-def]
    no_tls = smtp_factory(starttls=False, users={SMTP_USER: SMTP_PASSWORD},
                          auth_require_tls=False)
    error = send_error(fleet_for(server_entry(no_tls, tls_certs, security="starttls")))
    assert error.stage is Stage.TLS and "does not offer" in error.reply
    assert not no_tls.messages and not any(e.stage == "AUTH" for e in no_tls.events)


def test_untrusted_certificate_is_refused(smtp_factory, tls_certs: TLSCerts) -> None:  # type: ignore[no-untyped-def]
    bad = smtp_factory(tls=tls_certs.untrusted, users={SMTP_USER: SMTP_PASSWORD})
    error = send_error(fleet_for(server_entry(bad, tls_certs, security="ssl")))
    assert error.stage is Stage.TLS and error.classification is Classification.SERVER
    assert "certificate" in error.reply
    assert not bad.messages


def test_certificate_check_is_off_only_when_written_out(smtp_factory, tls_certs: TLSCerts) -> None:  # type: ignore[no-untyped-def]
    bad = smtp_factory(tls=tls_certs.untrusted, users={SMTP_USER: SMTP_PASSWORD})
    send(fleet_for(server_entry(bad, tls_certs, security="ssl", tls_verify=False)))
    assert len(bad.messages) == 1


def test_wrong_password_is_a_server_error_at_auth(smtp: FakeSMTP, tls_certs: TLSCerts,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", "not-the-password")
    error = send_error(fleet_for(server_entry(smtp, tls_certs)))
    assert (error.stage, error.code, error.enhanced_status) == (Stage.AUTH, 535, "5.7.8")
    assert error.classification is Classification.SERVER
    assert error.diagnosis is not None and "login" in error.diagnosis.summary


def test_client_refuses_auth_over_plain_connection(smtp_factory, tls_certs: TLSCerts) -> None:  # type: ignore[no-untyped-def]
    lax = smtp_factory(users={SMTP_USER: SMTP_PASSWORD}, auth_require_tls=False)
    fleet = fleet_for(server_entry(lax, tls_certs, security="none", allow_insecure_auth=True))
    send(fleet)  # explicitly allowed: goes
    assert lax.messages[0].login == SMTP_USER


@pytest.mark.parametrize(("stage", "reply"), [
    ("MAIL", "451 4.3.0 Try again later"),
    ("RCPT", "450 4.2.0 Mailbox busy"),
    ("DATA", "451 4.7.1 Greylisted, come back later"),
])
@pytest.mark.usefixtures("wire")
def test_4xx_replies_are_transient(smtp: FakeSMTP, tls_certs: TLSCerts, stage: str,
                                   reply: str) -> None:
    smtp.add_rule(stage, reply)
    error = send_error(fleet_for(server_entry(smtp, tls_certs)))
    assert error.classification is Classification.TRANSIENT
    assert error.code == int(reply[:3]) and error.enhanced_status == reply.split()[1]


@pytest.mark.usefixtures("wire")
def test_5xx_on_rcpt_is_permanent_for_that_recipient(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("RCPT", "550 5.1.1 <gone@example.org>: user unknown", match="gone@")
    error = send_error(fleet_for(server_entry(smtp, tls_certs)), "gone@example.org")
    assert (error.stage, error.classification) == (Stage.RCPT_TO, Classification.PERMANENT)
    assert error.recipient == "gone@example.org"


@pytest.mark.usefixtures("wire")
def test_sender_refused_at_mail_from_is_a_server_error(smtp: FakeSMTP,
                                                       tls_certs: TLSCerts) -> None:
    smtp.add_rule("MAIL", "553 5.7.1 Sender address rejected: not owned by auth user.")
    error = send_error(fleet_for(server_entry(smtp, tls_certs)))
    assert (error.stage, error.classification) == (Stage.MAIL_FROM, Classification.SERVER)


@pytest.mark.usefixtures("wire")
def test_554_at_data_is_permanent(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("DATA", "554 5.7.1 Message rejected as spam")
    error = send_error(fleet_for(server_entry(smtp, tls_certs)))
    assert (error.stage, error.classification) == (Stage.DATA, Classification.PERMANENT)


@pytest.mark.usefixtures("wire")
def test_421_closes_the_session_and_is_transient(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("MAIL", "421 4.7.0 Try again later, closing connection.")
    error = send_error(fleet_for(server_entry(smtp, tls_certs)))
    assert (error.code, error.classification) == (421, Classification.TRANSIENT)


def test_421_greeting_is_transient_at_connect(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("CONNECT", "421 4.3.2 Service not available")
    error = send_error(fleet_for(server_entry(smtp, tls_certs)))
    assert (error.stage, error.classification) == (Stage.CONNECT, Classification.TRANSIENT)


def test_refused_connection_is_a_server_error(tls_certs: TLSCerts) -> None:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fleet = fleet_for({"name": "down", "sender": SMTP_USER, "host": "127.0.0.1", "port": port,
                       "security": "none", "timeout": 2.0})
    error = send_error(fleet)
    assert (error.stage, error.classification) == (Stage.CONNECT, Classification.SERVER)


@pytest.mark.usefixtures("wire")
def test_timeout_applies_to_every_reply(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("RCPT", "250 2.1.5 OK", delay=1.5)
    error = send_error(fleet_for(server_entry(smtp, tls_certs, timeout=0.3)))
    assert error.stage is Stage.RCPT_TO and "no reply within 0.3 s" in error.reply
    assert error.classification is Classification.TRANSIENT


@pytest.mark.usefixtures("wire")
def test_one_session_carries_many_letters_pipelined(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    fleet = fleet_for(server_entry(smtp, tls_certs))
    server = fleet.servers[0]
    smtp.add_rule("RCPT", "550 5.1.1 no such user", match="r7@")
    envelopes = [Envelope(SMTP_USER, (f"r{i}@example.org",), f"Subject: {i}\r\n\r\n.{i}\r\n"
                          .encode()) for i in range(30)]

    async def run() -> list[bool]:
        session = await fleet.plugins.connect(server)
        try:
            return [r.ok for r in await fleet.plugins.send(server, session, envelopes)]
        finally:
            await session.close()

    oks = asyncio.run(run())
    assert oks == [i != 7 for i in range(30)]
    assert len(smtp.messages) == 29
    assert len({m.peer for m in smtp.messages}) == 1
    assert sum(e.stage == "EHLO" for e in smtp.events) == 1
    assert smtp.messages[0].data.rstrip().endswith(b".0")  # dot-unstuffed (or sent as is)


@pytest.mark.usefixtures("wire")
def test_one_refused_recipient_does_not_fail_the_letter(smtp: FakeSMTP,
                                                        tls_certs: TLSCerts) -> None:
    smtp.add_rule("RCPT", "550 5.1.1 unknown", match="bad@")
    fleet = fleet_for(server_entry(smtp, tls_certs))
    server = fleet.servers[0]

    async def run() -> object:
        session = await fleet.plugins.connect(server)
        try:
            [result] = await session.send([Envelope(SMTP_USER, ("ok@example.org",
                                                                "bad@example.org"), b"x\r\n")])
            return result
        finally:
            await session.close()

    result = asyncio.run(run())
    assert result.ok and set(result.refused) == {"bad@example.org"}  # type: ignore[attr-defined]
    assert smtp.messages[0].rcpt_tos == ["ok@example.org"]


def test_xoauth2_uses_a_token_from_the_host_plugin(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    class Tokens:
        @hookimpl
        def mailfleet_oauth_token(self, server: object) -> str:
            return SMTP_TOKEN

    fleet = fleet_for(server_entry(smtp, tls_certs, auth="xoauth2", password_env=None),
                      plugins=load_plugins(extra=[("tokens", Tokens())]))
    send(fleet)
    assert smtp.messages[0].login == SMTP_USER


def test_xoauth2_without_a_token_fails_at_auth_with_the_fix(smtp: FakeSMTP,
                                                             tls_certs: TLSCerts) -> None:
    fleet = fleet_for(server_entry(smtp, tls_certs, auth="xoauth2", password_env=None))
    error = send_error(fleet)
    assert error.stage is Stage.AUTH and "mailfleet_oauth_token" in error.reply


def test_secrets_never_reach_errors_reprs_or_logs(smtp: FakeSMTP, tls_certs: TLSCerts,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    secret = "Sup3r-Secret-Pa55"
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", secret)
    smtp.add_rule("AUTH", f"535 5.7.8 bad credentials for password {secret}")
    caplog.set_level(logging.DEBUG)
    fleet = fleet_for(server_entry(smtp, tls_certs))
    error = send_error(fleet)
    import base64
    encoded = base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode()
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mailfleet"))
    assert "AUTH ***" in ours  # the AUTH line was logged, masked
    for text in (str(error), repr(error), error.reply, repr(fleet.servers[0]),
                 repr(fleet.config), ours):
        assert secret not in text and encoded not in text


def test_auth_login_is_used_when_the_server_offers_only_login(
        smtp_factory, tls_certs: TLSCerts) -> None:  # type: ignore[no-untyped-def]
    login_only = smtp_factory(users={SMTP_USER: SMTP_PASSWORD}, auth_mechanisms=("LOGIN",))
    send(fleet_for(server_entry(login_only, tls_certs)))
    assert login_only.messages[0].login == SMTP_USER
    assert [e.argument.split()[0] for e in login_only.events if e.stage == "AUTH"] == ["LOGIN"]


def test_no_common_auth_mechanism_fails_at_auth_naming_what_was_offered(
        smtp_factory, tls_certs: TLSCerts) -> None:  # type: ignore[no-untyped-def]
    oauth_only = smtp_factory(users={SMTP_USER: SMTP_PASSWORD}, auth_mechanisms=("XOAUTH2",))
    error = send_error(fleet_for(server_entry(oauth_only, tls_certs)))
    assert error.stage is Stage.AUTH and "offered: XOAUTH2" in error.reply


def test_plain_text_bytes_after_starttls_agreement_are_refused(tls_certs: TLSCerts) -> None:
    """STARTTLS command injection: a reply smuggled in before the handshake is never read."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"220 evil.test ESMTP\r\n")
            conn.recv(1024)  # EHLO
            conn.sendall(b"250-evil.test\r\n250 STARTTLS\r\n")
            conn.recv(1024)  # STARTTLS
            conn.sendall(b"220 2.0.0 Ready\r\n250 2.7.0 injected\r\n")
            conn.recv(1024)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    fleet = fleet_for({"name": "evil", "sender": SMTP_USER, "host": "127.0.0.1", "port": port,
                       "security": "starttls", "ca_file": str(tls_certs.ca_file),
                       "timeout": 5.0})
    error = send_error(fleet)
    listener.close()
    assert error.stage is Stage.TLS and "after agreeing to STARTTLS" in error.reply


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_sender_stops_the_batch_and_the_rest_share_its_error(
        smtp: FakeSMTP, tls_certs: TLSCerts, pipelining: bool, wire: bool) -> None:
    smtp.add_rule("MAIL", "550-5.4.5 Daily user sending limit exceeded.\n"
                          "550 5.4.5 https://support.google.com/a/answer/166852 - gsmtp",
                  times=1)
    fleet = fleet_for(server_entry(smtp, tls_certs))
    server = fleet.servers[0]
    envelopes = [Envelope(SMTP_USER, (f"r{i}@example.org",), b"Subject: x\r\n\r\nx\r\n")
                 for i in range(5)]

    async def run() -> list[object]:
        session = await fleet.plugins.connect(server)
        if not pipelining:
            session.extensions.pop("PIPELINING")  # type: ignore[attr-defined]
        try:
            return list(await session.send(envelopes))
        finally:
            await session.close()

    results = asyncio.run(run())
    if wire and pipelining:  # the batch was on the wire in one write: each has its own reply
        assert results[0].error is not None and results[0].error.code == 550  # type: ignore[attr-defined]
        assert [r.ok for r in results[1:]] == [True] * 4  # type: ignore[attr-defined]
        assert len(smtp.messages) == 4
        return
    assert sum(e.stage == "MAIL" for e in smtp.events) == 1  # no further attempts
    assert not smtp.messages
    errors = [r.error for r in results]  # type: ignore[attr-defined]
    assert all(e is not None and e.code == 550 and e.enhanced_status == "5.4.5"
               and "Daily user sending limit" in e.reply for e in errors)


def test_a_failure_stop_picks_ends_the_batch_without_completing_the_letter_in_flight(
        smtp: FakeSMTP, tls_certs: TLSCerts, wire: bool) -> None:
    smtp.add_rule("DATA", "451 Ratelimit exceeded for mailbox sender@test.local. Try again "
                          "later.", match="Subject: 2", times=1)
    fleet = fleet_for(server_entry(smtp, tls_certs))
    server = fleet.servers[0]
    envelopes = [Envelope(SMTP_USER, (f"r{i}@example.org",), f"Subject: {i}\r\n\r\nx\r\n"
                          .encode()) for i in range(1, 6)]

    async def run() -> tuple[list[object], bool]:
        session = await fleet.plugins.connect(server)
        try:
            results = await fleet.plugins.send(server, session, envelopes,
                                               lambda error: error.code == 451)
            closed = session._writer is None  # type: ignore[attr-defined]
            return list(results), closed
        finally:
            await session.close()

    results, closed = asyncio.run(run())
    if wire:  # CHUNKING: the letters after it were on the wire already and got their replies
        assert [r.ok for r in results] == [True, False, True, True, True]  # type: ignore[attr-defined]
        assert "Ratelimit exceeded" in results[1].error.reply  # type: ignore[attr-defined]
        assert len(smtp.wait_for_messages(4)) == 4
        return
    assert [r.ok for r in results] == [True, False, False, False, False]  # type: ignore[attr-defined]
    assert all("Ratelimit exceeded" in r.error.reply for r in results[1:])  # type: ignore[attr-defined]
    assert closed  # letter 3 was already in DATA: dropped with the connection
    assert [m.message["Subject"] for m in smtp.wait_for_messages(1)] == ["1"]
    # letter 3's commands were on the wire (the server may or may not have read them before the
    # connection dropped); letters 4 and 5 were never attempted
    assert sum(e.stage == "MAIL" for e in smtp.events) <= 3
