"""The mailfleet_testing fixtures themselves, against the real servers on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import smtplib
import socket
import ssl
import time
from collections.abc import Callable

import psycopg
import pytest
from imapclient import IMAPClient

from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.dovecot import DovecotServer, Mailbox
from mailfleet_testing.postfix import PostfixServer
from mailfleet_testing.postgres import PostgresServer
from mailfleet_testing.pytest_plugin import SMTP_PASSWORD, SMTP_TOKEN, SMTP_USER, unavailable
from mailfleet_testing.smtp_sink import SmtpSink, run_smtp_source
from mailfleet_testing.smtpd import FakeSMTP

MSG = b"From: a@test.local\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


def _xoauth2(user: str, token: str) -> Callable[..., str]:
    def auth(challenge: bytes | None = None) -> str:
        # first call: initial response; after a 334 error challenge: an empty line (like Gmail)
        return f"user={user}\x01auth=Bearer {token}\x01\x01" if challenge is None else ""

    return auth


class RawSMTP:
    """Line-level SMTP client for what smtplib cannot do (pipelining, seeing the close)."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            lines.append(line.rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_peer(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# --- FakeSMTP ---


def test_starttls_with_test_ca_then_auth(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        assert not s.has_extn("auth")  # auth_require_tls: AUTH only after STARTTLS
        assert s.docmd("AUTH", "PLAIN")[0] == 538
        s.starttls(context=tls_certs.client_context())
        s.ehlo()
        assert {"PLAIN", "LOGIN", "XOAUTH2"} <= set(s.esmtp_features["auth"].split())
        assert s.has_extn("pipelining")
        assert s.has_extn("enhancedstatuscodes")
        s.user, s.password = SMTP_USER, SMTP_PASSWORD
        code, _ = s.auth("PLAIN", s.auth_plain)
        assert code == 235
        assert s.sendmail("a@test.local", ["b@example.com"], MSG) == {}
    (msg,) = smtp.messages
    assert msg.tls
    assert msg.login == SMTP_USER
    assert msg.rcpt_tos == ["b@example.com"]
    assert msg.message["Subject"] == "hi"
    assert [e.stage for e in smtp.events][:2] == ["CONNECT", "EHLO"]


def test_untrusted_certificate_refused(smtp_factory: Callable[..., FakeSMTP],
                                       tls_certs: TLSCerts) -> None:
    rogue = smtp_factory(tls=tls_certs.untrusted)
    with smtplib.SMTP(rogue.host, rogue.port, timeout=5) as s:
        s.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            s.starttls(context=tls_certs.client_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(rogue.host, rogue.tls_port, context=tls_certs.client_context(), timeout=5)


def test_starttls_not_offered_variant(smtp_factory: Callable[..., FakeSMTP]) -> None:
    plain_only = smtp_factory(starttls=False, users={"u@test.local": "pw"})
    with smtplib.SMTP(plain_only.host, plain_only.port, timeout=5) as s:
        s.ehlo()
        assert not s.has_extn("starttls")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            s.starttls()
        assert s.docmd("AUTH", "PLAIN")[0] == 538


def test_plain_auth_allowed_when_configured(smtp: FakeSMTP) -> None:
    smtp.auth_require_tls = False  # restored by reset()
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as s:
        s.login(SMTP_USER, SMTP_PASSWORD)
        s.sendmail("a@test.local", ["b@example.com"], MSG)
    assert smtp.messages[0].login == SMTP_USER
    assert not smtp.messages[0].tls


def test_implicit_tls_auth_plain_and_login(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    for mech in ("PLAIN", "LOGIN"):
        with smtplib.SMTP_SSL(smtp.host, smtp.tls_port, context=tls_certs.client_context(),
                              timeout=5) as s:
            s.ehlo()
            s.user, s.password = SMTP_USER, SMTP_PASSWORD
            authobj = s.auth_plain if mech == "PLAIN" else s.auth_login
            assert s.auth(mech, authobj)[0] == 235
            s.sendmail("a@test.local", ["b@example.com"], MSG)
    assert [m.tls for m in smtp.messages] == [True, True]
    assert {m.port for m in smtp.messages} == {smtp.tls_port}


def test_wrong_password_535_578(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    with smtplib.SMTP_SSL(smtp.host, smtp.tls_port, context=tls_certs.client_context(),
                          timeout=5) as s:
        s.ehlo()
        s.user, s.password = SMTP_USER, "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.auth("PLAIN", s.auth_plain)
    assert err.value.smtp_code == 535
    assert "5.7.8 Authentication credentials invalid" in str(err.value)


def test_xoauth2(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    ctx = tls_certs.client_context()
    with smtplib.SMTP_SSL(smtp.host, smtp.tls_port, context=ctx, timeout=5) as s:
        s.ehlo()
        assert s.auth("XOAUTH2", _xoauth2(SMTP_USER, SMTP_TOKEN))[0] == 235
        s.sendmail(SMTP_USER, ["b@example.com"], MSG)
    assert smtp.messages[0].login == SMTP_USER
    with smtplib.SMTP_SSL(smtp.host, smtp.tls_port, context=ctx, timeout=5) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.auth("XOAUTH2", _xoauth2(SMTP_USER, "expired"))
    assert err.value.smtp_code == 535


def test_scripted_550_on_one_rcpt(smtp: FakeSMTP) -> None:
    rule = smtp.add_rule("RCPT", "550 5.1.1 <gone@example.com>: user unknown", match=r"^gone@")
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as s:
        refused = s.sendmail("a@test.local", ["ok@example.com", "gone@example.com"], MSG)
    assert refused == {"gone@example.com": (550, b"5.1.1 <gone@example.com>: user unknown")}
    assert smtp.messages[0].rcpt_tos == ["ok@example.com"]
    assert rule.fired == 1


def test_421_closes_connection(smtp: FakeSMTP) -> None:
    smtp.add_rule("MAIL", "421 4.7.0 Try again later", times=1)
    raw = RawSMTP(smtp.port)
    try:
        raw.reply()
        raw.send(b"EHLO client.test\r\n")
        raw.reply()
        raw.send(b"MAIL FROM:<a@test.local>\r\n")
        assert raw.reply() == [b"421 4.7.0 Try again later"]
        assert raw.closed_by_peer()
    finally:
        raw.close()
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as s:  # times=1: next one is fine
        assert s.sendmail("a@test.local", ["b@example.com"], MSG) == {}


def test_421_greeting_and_multiline(smtp: FakeSMTP) -> None:
    smtp.add_rule("CONNECT", "421 4.3.2 Service not available", times=1)
    with pytest.raises(smtplib.SMTPConnectError) as err:
        smtplib.SMTP(smtp.host, smtp.port, timeout=5)
    assert err.value.smtp_code == 421
    smtp.add_rule("DATA", "550-5.4.5 Daily sending quota exceeded.\n550 5.4.5 Learn more")
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as s, \
            pytest.raises(smtplib.SMTPDataError) as derr:
        s.sendmail("a@test.local", ["b@example.com"], MSG)
    assert derr.value.smtp_code == 550
    assert derr.value.smtp_error == b"5.4.5 Daily sending quota exceeded.\n5.4.5 Learn more"
    assert smtp.messages == []


def test_rule_times_and_delay(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("AUTH", "454 4.7.0 Temporary authentication failure", times=1)
    with smtplib.SMTP_SSL(smtp.host, smtp.tls_port, context=tls_certs.client_context(),
                          timeout=5) as s:
        s.ehlo()
        s.user, s.password = SMTP_USER, SMTP_PASSWORD
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.auth("PLAIN", s.auth_plain)
        assert err.value.smtp_code == 454
        assert s.auth("PLAIN", s.auth_plain)[0] == 235
    smtp.add_rule("RCPT", "250 2.1.5 slow", delay=1.0)
    start = time.monotonic()
    with smtplib.SMTP(smtp.host, smtp.port, timeout=0.3) as s:
        with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
            s.sendmail("a@test.local", ["b@example.com"], MSG)
        s.close()
    assert time.monotonic() - start < 1.0


def test_pipelined_commands(smtp: FakeSMTP) -> None:
    smtp.add_rule("RCPT", "550 5.1.1 no such user", match="bad@")
    raw = RawSMTP(smtp.port)
    try:
        raw.reply()
        raw.send(b"EHLO client.test\r\n")
        assert b"250-PIPELINING" in raw.reply()
        raw.send(b"MAIL FROM:<a@test.local>\r\nRCPT TO:<bad@example.com>\r\n"
                 b"RCPT TO:<good@example.com>\r\nDATA\r\n")
        codes = [raw.reply()[0][:3] for _ in range(4)]
        assert codes == [b"250", b"550", b"250", b"354"]
        raw.send(b"Subject: p\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
        assert raw.reply()[0].startswith(b"250 2.0.0")
        assert raw.reply()[0].startswith(b"221")
    finally:
        raw.close()
    (msg,) = smtp.messages
    assert msg.rcpt_tos == ["good@example.com"]
    assert msg.data == b"Subject: p\r\n\r\n.dot\r\n"


def test_smtp_factory_independent_servers(smtp_factory: Callable[..., FakeSMTP],
                                          tls_certs: TLSCerts) -> None:
    one = smtp_factory(users={"one@test.local": "pw1"}, hostname="mx1.test")
    two = smtp_factory(users={"two@test.local": "pw2"}, hostname="mx2.test")
    assert one.port != two.port
    for server, user, pw in ((one, "one@test.local", "pw1"), (two, "two@test.local", "pw2")):
        with smtplib.SMTP_SSL(server.host, server.tls_port, context=tls_certs.client_context(),
                              timeout=5) as s:
            s.login(user, pw)
            s.sendmail(user, ["x@example.com"], MSG)
    assert [m.login for m in one.messages] == ["one@test.local"]
    assert [m.login for m in two.messages] == ["two@test.local"]


# --- Dovecot ---


@pytest.mark.servers
def test_dovecot_imaps_login_and_append_visible(mailbox: Mailbox, tls_certs: TLSCerts) -> None:
    mailbox.append(MSG)
    mailbox.append(MSG.replace(b"hi", b"bounce"), folder="Bounces")
    ctx = ssl.create_default_context(cafile=str(tls_certs.ca_file))
    with IMAPClient(mailbox.host, port=mailbox.imaps_port, ssl=True, ssl_context=ctx,
                    timeout=5) as c:
        c.login(mailbox.login, mailbox.password)
        c.select_folder("INBOX")
        uids = c.search("ALL")
        assert len(uids) == 1
        body = c.fetch(uids, ["RFC822"])[uids[0]][b"RFC822"]
        assert email.message_from_bytes(body, policy=email.policy.default)["Subject"] == "hi"
        assert c.folder_exists("Bounces")
    with IMAPClient(mailbox.host, port=mailbox.imap_port, ssl=False, timeout=5) as c:
        c.starttls(ctx)
        c.login(mailbox.login, mailbox.password)
        assert c.select_folder("Bounces")[b"EXISTS"] == 1


@pytest.mark.servers
def test_dovecot_pop3s_list(mailbox: Mailbox, tls_certs: TLSCerts) -> None:
    import poplib

    mailbox.append(MSG)
    mailbox.append(MSG)
    ctx = ssl.create_default_context(cafile=str(tls_certs.ca_file))
    pop = poplib.POP3_SSL(mailbox.host, mailbox.pop3s_port, context=ctx, timeout=5)
    try:
        pop.user(mailbox.login)
        pop.pass_(mailbox.password)
        _, listing, _ = pop.list()
        assert len(listing) == 2
    finally:
        pop.quit()
    with mailbox.pop3("starttls") as p:
        assert p.stat()[0] == 2


@pytest.mark.servers
def test_dovecot_mailboxes_are_isolated(dovecot: DovecotServer, mailbox: Mailbox) -> None:
    mailbox.append(MSG)
    assert dovecot.mailbox().fetch_all() == []
    assert len(dovecot.mailbox(mailbox.login).fetch_all()) == 1
    with dovecot.bounces().imap() as c:
        assert c.select_folder("INBOX", readonly=True) is not None


# --- Postfix / smtp-sink ---


@pytest.mark.servers
def test_postfix_accepts_and_relays_to_fake_smtp(postfix: PostfixServer, smtp: FakeSMTP) -> None:
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as s:
        assert s.sendmail("app@test.local", ["rcpt@example.com"], MSG) == {}
    (msg,) = smtp.wait_for_messages(1, timeout=10)
    assert msg.rcpt_tos == ["rcpt@example.com"]
    assert msg.mail_from == "app@test.local"
    assert b"by internal.test.local (Postfix)" in msg.data


@pytest.mark.servers
def test_postfix_sasl_and_real_dsn_into_mailbox(postfix: PostfixServer, smtp: FakeSMTP,
                                                mailbox: Mailbox, tls_certs: TLSCerts) -> None:
    smtp.add_rule("RCPT", "550 5.1.1 <gone@example.com>: user unknown", match="gone@")
    with smtplib.SMTP(postfix.host, postfix.port, timeout=10) as s:
        s.starttls(context=tls_certs.client_context())
        s.login(mailbox.login, mailbox.password)  # SASL through Dovecot
        s.sendmail(mailbox.address, ["gone@example.com"], MSG)
    (dsn_raw,) = mailbox.wait_for_messages(1, timeout=10)
    dsn = email.message_from_bytes(dsn_raw, policy=email.policy.default)
    assert dsn.get_content_type() == "multipart/report"
    assert "Status: 5.1.1" in dsn_raw.decode(errors="replace")


@pytest.mark.servers
def test_smtp_sink_accepts(smtp_sink: SmtpSink) -> None:
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as s:
        assert s.sendmail("a@test.local", ["b@example.com"], MSG) == {}
    result = run_smtp_source(smtp_sink.port, messages=50, sessions=2)
    assert result.returncode == 0, result.output


# --- PostgreSQL ---


@pytest.mark.servers
def test_postgres_dsn_connects(pg_dsn: str, postgres: PostgresServer) -> None:
    assert pg_dsn.startswith(f"postgresql://postgres@127.0.0.1:{postgres.port}/t_")
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE q (id serial PRIMARY KEY, v text)")
        conn.execute("INSERT INTO q (v) VALUES ('x')")
        row = conn.execute("SELECT current_database(), count(*) FROM q").fetchone()
    assert row == (pg_dsn.rsplit("/", 1)[1], 1)


# --- skip / fail policy ---


def test_missing_server_skips_locally_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("MAILFLEET_SERVERS_REQUIRED", raising=False)
    with pytest.raises(pytest.skip.Exception):
        unavailable("no dovecot")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        unavailable("no dovecot")
    monkeypatch.delenv("CI")
    monkeypatch.setenv("MAILFLEET_SERVERS_REQUIRED", "1")
    with pytest.raises(pytest.fail.Exception):
        unavailable("no dovecot")

