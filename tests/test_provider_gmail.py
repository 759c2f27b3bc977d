"""Gmail and Google Workspace plugin: presets, sender rule, replies, XOAUTH2 (real SMTP)."""

from __future__ import annotations

import asyncio

import pytest
from fleet_config import provider_fleet, resolve_with, send_error

from mailfleet import hookimpl
from mailfleet.config import Config, ServerConfig
from mailfleet.errors import Classification, ConfigError
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Limits, Security
from mailfleet.secrets import Secret
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.sender import SenderRequest
from mailfleet.sending.servers import Server, resolve_servers
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

ACCOUNT = "john.doe@gmail.com"
APP_PASSWORD = "abcd efgh ijkl mnop"


def resolve(**fields: object) -> list[Server]:
    return resolve_with({"name": "g", "password": Secret("pw")}, **fields)


def fake_fleet(smtp: FakeSMTP, certs: TLSCerts, *, provider: str = "gmail",
               sender: str = ACCOUNT, **options: object) -> Fleet:
    """A fleet with one Gmail server pointed at the fake server's implicit-TLS port."""
    return provider_fleet(smtp, certs, provider=provider, box=sender,
                          server_password=APP_PASSWORD, **options)  # type: ignore[arg-type]


# -- presets and detection --------------------------------------------------------------------

def test_gmail_address_alone_resolves_to_smtp_gmail_com_465_ssl_with_full_address_login() -> None:
    [server] = resolve(sender=ACCOUNT)
    assert server.provider == "gmail"
    assert (server.host, server.port, server.security) == ("smtp.gmail.com", 465, Security.SSL)
    assert server.login == ACCOUNT
    assert server.limits.per_day == 500
    assert server.limits.recipients_per_letter == 100
    assert server.limits.window == "rolling"
    assert server.allow_sender_override is False


def test_googlemail_domain_is_detected_and_port_587_means_starttls() -> None:
    [server] = resolve(sender="jane@googlemail.com", port=587)
    assert server.provider == "gmail"
    assert (server.host, server.port, server.security) == ("smtp.gmail.com", 587,
                                                           Security.STARTTLS)


def test_gmail_imap_and_pop3_presets_serve_the_bounce_mailbox() -> None:
    info = load_plugins().info("gmail")
    assert info is not None
    assert (info.imap[0].host, info.imap[0].port, info.imap[0].security) == (
        "imap.gmail.com", 993, Security.SSL)
    assert (info.pop3[0].host, info.pop3[0].port) == ("pop.gmail.com", 995)
    assert "xoauth2" in info.auth and "app_password" in info.auth


def test_google_workspace_is_chosen_only_explicitly_and_has_workspace_limits() -> None:
    [server] = resolve(sender="ceo@corp.example", provider="google-workspace")
    assert server.provider == "google-workspace"
    assert (server.host, server.port, server.login) == ("smtp.gmail.com", 465,
                                                        "ceo@corp.example")
    assert server.limits.per_day == 2000
    assert server.limits.recipients_per_letter == 100
    with pytest.raises(ConfigError, match="host: required"):
        resolve(sender="ceo@corp.example")  # a custom domain is not guessed


def test_workspace_trial_limit_is_set_in_config_limits() -> None:
    [server] = resolve(sender="ceo@corp.example", provider="google-workspace",
                       limits=Limits(per_day=500))
    assert server.limits.per_day == 500
    assert server.limits.recipients_per_letter == 100


# -- sender rule ------------------------------------------------------------------------------

def test_sender_policy_replaces_a_foreign_from_with_the_account_and_says_gmail_rewrites() -> None:
    plugins = load_plugins()
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="g", sender=ACCOUNT, password=Secret("x")),)), plugins)
    decision = plugins.sender_policy(server, SenderRequest("news@shop.example", "Shop"))
    assert decision.from_addr == ACCOUNT
    assert decision.envelope_from == ACCOUNT
    assert decision.substituted
    assert "rewrites" in decision.reason and "Send mail as" in decision.reason
    assert "aliases" in decision.reason


def test_sender_policy_keeps_a_declared_send_mail_as_alias_and_drops_verp() -> None:
    plugins = load_plugins()
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="g", sender=ACCOUNT, password=Secret("x"), aliases=("news@shop.example",)),)),
        plugins)
    decision = plugins.sender_policy(
        server, SenderRequest("news@shop.example", "Shop", "bounce+42@shop.example"))
    assert decision.from_addr == "news@shop.example"
    assert decision.envelope_from == "news@shop.example"
    assert decision.substituted and "VERP" in decision.reason


def test_validate_refuses_allow_sender_override_with_the_alias_fix() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(sender=ACCOUNT, allow_sender_override=True)
    [problem] = info.value.problems
    assert "servers[g].allow_sender_override" in problem
    assert "rewrites" in problem and "aliases" in problem


def test_validate_refuses_a_local_part_login() -> None:
    with pytest.raises(ConfigError, match="login: Gmail's login is the full address"):
        resolve(sender=ACCOUNT, login="john.doe")


def test_send_one_with_a_foreign_from_goes_out_from_the_account(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    fleet = fake_fleet(smtp, tls_certs)
    sent = asyncio.run(fleet.send_one(fleet.servers[0], to="rcpt@example.org", subject="s",
                                      text="t", from_addr="ceo@other.example"))
    assert sent.sender.substituted
    [message] = smtp.wait_for_messages(1)
    assert message.mail_from == ACCOUNT
    assert message.login == ACCOUNT and message.tls
    assert ACCOUNT in str(message.message["From"])


# -- replies ----------------------------------------------------------------------------------

REPLIES = [
    pytest.param(
        "AUTH", "534-5.7.9 Application-specific password required. Learn more at\n"
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "
        "a1b2c3 - gsmtp", Classification.SERVER, None,
        ["app password", "2-Step Verification", "support.google.com/accounts/answer/185833"],
        ["пароль приложения", "двухэтапную"], id="534-5.7.9-app-password"),
    pytest.param(
        "AUTH", "535-5.7.8 Username and Password not accepted. For more information, go to\n"
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials x1 - gsmtp",
        Classification.SERVER, None, ["did not accept", "app password", "full address"],
        ["не принял", "пароль приложения"], id="535-5.7.8-bad-credentials"),
    pytest.param(
        "AUTH", "534-5.7.14 <https://accounts.google.com/signin/continue?sarp=1> Please log in "
        "via your web browser and\n534-5.7.14 then try again.\n534-5.7.14  Learn more at\n"
        "534 5.7.14  https://support.google.com/mail/answer/78754 z9 - gsmtp",
        Classification.SERVER, None, ["web browser", "mailfleet servers check"],
        ["через браузер"], id="534-5.7.14-web-login"),
    pytest.param(
        "AUTH", "454-4.7.0 Too many login attempts, please try again later. For more "
        "information, go to\n454 4.7.0  https://support.google.com/mail/answer/7126229 q - gsmtp",
        Classification.SERVER, 1800, ["too many login attempts", "30 minutes"],
        ["слишком много попыток"], id="454-4.7.0-login-attempts"),
    pytest.param(
        "DATA", "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
        "550-5.4.5 sending limits go to\n"
        "550 5.4.5  https://support.google.com/a/answer/166852 d7 - gsmtp",
        Classification.QUOTA, 86400, ["daily sending limit", "24 h", "without retrying"],
        ["дневной лимит", "24 ч"], id="550-5.4.5-daily-limit"),
    pytest.param(
        "DATA", "550 5.4.5 Daily user sending quota exceeded. k3 - gsmtp",
        Classification.QUOTA, 86400, ["daily sending limit"], ["дневной лимит"],
        id="550-5.4.5-daily-quota-old"),
    pytest.param(
        "RCPT", "452 4.5.3 Your message has too many recipients. For more information "
        "regarding Google's sending limits, go to https://support.google.com/mail/?p="
        "TooManyRecipientsError r - gsmtp", Classification.TRANSIENT, None,
        ["100", "another letter"], ["другим письмом"], id="452-4.5.3-too-many-recipients"),
    pytest.param(
        "RCPT", "550 5.5.3 too many recipients for this sender", Classification.QUOTA, 3600,
        ["refuses more recipients"], ["не принимает больше получателей"],
        id="550-5.5.3-too-many-recipients"),
]


@pytest.mark.parametrize(("stage", "reply", "classification", "block", "english", "russian"),
                         REPLIES)
def test_gmail_reply_is_classified_and_explained_in_english_and_russian(
        smtp: FakeSMTP, tls_certs: TLSCerts, stage: str, reply: str,
        classification: Classification, block: int | None, english: list[str],
        russian: list[str]) -> None:
    smtp.add_rule(stage, reply)
    for locale, words in (("en", english), ("ru", russian)):
        error = send_error(fake_fleet(smtp, tls_certs, locale=locale))
        assert error.classification is classification
        assert error.diagnosis is not None
        assert error.diagnosis.block_seconds == block
        text = f"{error.diagnosis.summary} {error.diagnosis.next_step}".lower()
        for word in words:
            assert word.lower() in text, (locale, word, text)


def test_servers_check_on_gmail_534_names_the_app_password_page(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("AUTH", "534-5.7.9 Application-specific password required. For more "
                  "information, go to\n534 5.7.9  https://support.google.com/mail/?p="
                  "InvalidSecondFactor b - gsmtp")
    fleet = fake_fleet(smtp, tls_certs)
    result = asyncio.run(fleet.check(fleet.servers[0]))
    assert not result.ok
    assert (result.stage, result.code, result.classification) == ("auth", 534, "server")
    assert result.diagnosis is not None
    assert "app password" in result.diagnosis
    assert "https://support.google.com/accounts/answer/185833" in result.diagnosis


def test_the_workspace_provider_reads_gmail_replies_too(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("DATA", "550 5.4.5 Daily user sending quota exceeded. k3 - gsmtp")
    error = send_error(fake_fleet(smtp, tls_certs, provider="google-workspace",
                                  sender="ceo@corp.example"))
    assert error.classification is Classification.QUOTA
    assert error.diagnosis is not None and error.diagnosis.block_seconds == 86400


# -- XOAUTH2 ----------------------------------------------------------------------------------

class Tokens:
    """A host application's token hook."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.asked: list[str] = []

    @hookimpl
    def mailfleet_oauth_token(self, server: object) -> str:
        self.asked.append(getattr(server, "name", "?"))
        return self.token


def test_xoauth2_sends_with_the_token_from_the_host_hook(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.tokens = {ACCOUNT: "ya29.fresh"}
    tokens = Tokens("ya29.fresh")
    fleet = fake_fleet(smtp, tls_certs, auth="xoauth2", password=None,
                       plugins=load_plugins(extra=[("tokens", tokens)]))
    asyncio.run(fleet.send_one(fleet.servers[0], to="rcpt@example.org", subject="s", text="t"))
    [message] = smtp.wait_for_messages(1)
    assert message.login == ACCOUNT
    assert tokens.asked == ["gmail"]
    assert any(e.stage == "AUTH" and e.argument.startswith("XOAUTH2") for e in smtp.events)


def test_xoauth2_refused_token_names_the_mail_google_com_scope(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.tokens = {ACCOUNT: "ya29.fresh"}
    fleet = fake_fleet(smtp, tls_certs, auth="xoauth2", password=None,
                       plugins=load_plugins(extra=[("tokens", Tokens("ya29.expired"))]))
    result = asyncio.run(fleet.check(fleet.servers[0]))
    assert not result.ok and result.stage == "auth" and result.classification == "server"
    assert result.diagnosis is not None
    assert "OAuth2 token" in result.diagnosis
    assert "https://mail.google.com/" in result.diagnosis
