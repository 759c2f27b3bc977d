"""Bounce mailboxes with ``auth = "xoauth2"``: the token comes from the plugins, over the wire
to a real Dovecot that checks it (IMAP AUTHENTICATE XOAUTH2, POP3 AUTH XOAUTH2)."""

from __future__ import annotations

import pytest

from mailfleet.config import BouncesConfig
from mailfleet.errors import MailboxError
from mailfleet.mailbox.imap import Fetched, ImapReader
from mailfleet.mailbox.pop3 import Pop3Reader
from mailfleet.mailbox.settings import MailboxSettings, resolve_mailbox
from mailfleet.plugin import hookimpl
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Security
from mailfleet_testing.dovecot import DovecotServer, Mailbox

REPORT = (b"From: MAILER-DAEMON@test.local\r\nTo: bounces@test.local\r\nSubject: Undelivered\r\n"
          b"Message-ID: <x1@test.local>\r\n\r\nbody\r\n")


class Memory:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def kv_get(self, key: str) -> str | None:
        return self.values.get(key)

    def kv_set(self, key: str, value: str) -> None:
        self.values[key] = value


class TokenPlugin:
    """A host application's token store: one fresh token per mailbox login."""

    def __init__(self, dovecot: DovecotServer, *, forged: bool = False) -> None:
        self.dovecot = dovecot
        self.forged = forged
        self.asked: list[str] = []

    @hookimpl
    def mailfleet_mailbox_token(self, mailbox: MailboxSettings) -> str:
        self.asked.append(mailbox.login)
        token = self.dovecot.oauth2_token(mailbox.login)
        return token[:-4] + "AAAA" if self.forged else token


def settings(box: Mailbox, protocol: str, tokens: TokenPlugin | None) -> MailboxSettings:
    port = box.imaps_port if protocol == "imap" else box.pop3s_port
    config = BouncesConfig(protocol=protocol,  # type: ignore[arg-type]
                           host=box.host, port=port, security=Security.SSL, login=box.login,
                           auth="xoauth2", ca_file=str(box.ca_file), timeout=5.0)
    extra = [("tokens", tokens)] if tokens is not None else []
    return resolve_mailbox(config, load_plugins(extra=extra))


def reader(protocol: str, mailbox: MailboxSettings) -> ImapReader | Pop3Reader:
    cls = ImapReader if protocol == "imap" else Pop3Reader
    return cls(mailbox, Memory(), sleep=lambda _: None)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_mailbox_logs_in_with_the_plugins_oauth2_token(
        dovecot: DovecotServer, mailbox: Mailbox, protocol: str) -> None:
    mailbox.append(REPORT)
    tokens = TokenPlugin(dovecot)
    got: list[Fetched] = []
    reader(protocol, settings(mailbox, protocol, tokens)).read(got.append)
    assert [f.raw.replace(b"\r\n", b"\n") for f in got] == [REPORT.replace(b"\r\n", b"\n")]
    assert tokens.asked == [mailbox.login]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_mailbox_with_a_refused_token_fails_at_auth_without_retrying(
        dovecot: DovecotServer, mailbox: Mailbox, protocol: str) -> None:
    tokens = TokenPlugin(dovecot, forged=True)
    with pytest.raises(MailboxError) as info:
        reader(protocol, settings(mailbox, protocol, tokens)).read(lambda _: None)
    assert info.value.stage == "auth" and not info.value.transient
    assert tokens.asked == [mailbox.login]


def test_mailbox_without_a_token_plugin_says_which_hook_to_implement(
        mailbox: Mailbox) -> None:
    with pytest.raises(MailboxError, match="mailfleet_mailbox_token") as info:
        reader("imap", settings(mailbox, "imap", None)).read(lambda _: None)
    assert info.value.stage == "auth"
