"""Mail.ru plugin: presets, application password, sender rule, rate limits (real SMTP)."""

from __future__ import annotations

import asyncio

import pytest
from fleet_config import provider_fleet, resolve_with, send_error

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

BOX = "olga@mail.ru"
APP_PASSWORD = "Zx9vQw8rTy7uIo6p"
NEOBHODIM = ("535 5.7.0 NEOBHODIM parol prilozheniya "
             "https://help.mail.ru/mail/security/protection/external / Application password is "
             "REQUIRED")
APP_PASSWORD_PAGE = "https://help.mail.ru/mail/security/protection/external"


def resolve(**fields: object) -> list[Server]:
    return resolve_with({"name": "m", "password": Secret("pw")}, **fields)


def fake_fleet(smtp: FakeSMTP, certs: TLSCerts, **options: object) -> Fleet:
    return provider_fleet(smtp, certs, provider="mailru", box=BOX,
                          server_password=APP_PASSWORD, **options)  # type: ignore[arg-type]


# -- presets and detection --------------------------------------------------------------------

@pytest.mark.parametrize("domain", ["mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"])
def test_mailru_domains_resolve_to_smtp_mail_ru_465_ssl_with_full_address(domain: str) -> None:
    [server] = resolve(sender=f"olga@{domain}")
    assert server.provider == "mailru"
    assert (server.host, server.port, server.security) == ("smtp.mail.ru", 465, Security.SSL)
    assert server.login == f"olga@{domain}"


def test_security_starttls_selects_port_587() -> None:
    [server] = resolve(sender=BOX, security=Security.STARTTLS)
    assert (server.host, server.port) == ("smtp.mail.ru", 587)


def test_default_limits_are_conservative_and_config_limits_override_them() -> None:
    [default] = resolve(sender=BOX)
    assert (default.limits.per_hour, default.limits.per_day,
            default.limits.recipients_per_letter) == (50, 300, 30)
    [tuned] = resolve(sender=BOX, limits=Limits(per_day=1000))
    assert (tuned.limits.per_hour, tuned.limits.per_day) == (50, 1000)


def test_mailru_imap_and_pop3_presets() -> None:
    info = load_plugins().info("mailru")
    assert info is not None
    assert (info.imap[0].host, info.imap[0].port) == ("imap.mail.ru", 993)
    assert (info.pop3[0].host, info.pop3[0].port) == ("pop.mail.ru", 995)
    assert info.auth == ("app_password",)


# -- sender rule ------------------------------------------------------------------------------

def test_sender_policy_keeps_the_login_as_envelope_sender_even_for_an_alias() -> None:
    plugins = load_plugins()
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="m", sender=BOX, password=Secret("x"), aliases=("olga@bk.ru",)),)), plugins)
    alias = plugins.sender_policy(server, SenderRequest("olga@bk.ru", "", "b+1@bk.ru"))
    assert (alias.from_addr, alias.envelope_from) == ("olga@bk.ru", BOX)
    assert "not local sender" in alias.reason
    foreign = plugins.sender_policy(server, SenderRequest("x@shop.example"))
    assert (foreign.from_addr, foreign.envelope_from, foreign.substituted) == (BOX, BOX, True)


def test_validate_refuses_allow_sender_override_and_a_bad_ratelimit_option() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(sender=BOX, allow_sender_override=True,
                options={"ratelimit_block_seconds": "1h"})
    problems = "\n".join(info.value.problems)
    assert "allow_sender_override: Mail.ru refuses any envelope sender but the login" in problems
    assert "options.ratelimit_block_seconds: expected an integer (got '1h')" in problems


# -- the application password -----------------------------------------------------------------

@pytest.mark.parametrize("locale", ["en", "ru"])
def test_servers_check_with_a_wrong_password_says_an_application_password_is_needed(
        smtp: FakeSMTP, tls_certs: TLSCerts, locale: str) -> None:
    """The fake server checks the password and answers with Mail.ru's real text."""
    smtp.add_rule("AUTH", NEOBHODIM)
    fleet = fake_fleet(smtp, tls_certs, locale=locale, password="my-account-password")
    result = asyncio.run(fleet.check(fleet.servers[0]))
    assert not result.ok
    assert (result.stage, result.code, result.classification) == ("auth", 535, "server")
    assert result.diagnosis is not None
    assert APP_PASSWORD_PAGE in result.diagnosis
    assert "https://account.mail.ru/user/2-step-auth/passwords" in result.diagnosis
    if locale == "en":
        assert "an application password is required" in result.diagnosis
        assert "Access to Mail via IMAP, POP and SMTP" in result.diagnosis
    else:
        assert "нужен пароль для внешнего приложения" in result.diagnosis


def test_any_auth_refusal_points_to_the_application_password(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    fleet = fake_fleet(smtp, tls_certs, password="wrong")  # the fake's own 535 text
    result = asyncio.run(fleet.check(fleet.servers[0]))
    assert not result.ok and result.code == 535
    assert result.diagnosis is not None and "application password" in result.diagnosis


def test_check_over_587_starttls_passes_with_the_application_password(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    fleet = fake_fleet(smtp, tls_certs, starttls=True)
    assert asyncio.run(fleet.check(fleet.servers[0])).ok


# -- other replies ----------------------------------------------------------------------------

REPLIES = [
    pytest.param("MAIL", "550 not local sender over smtp", Classification.SERVER, None, False,
                 ["envelope sender must be the login"], ["должен совпадать с логином"],
                 id="550-not-local-sender"),
    pytest.param("DATA", f"451 Ratelimit exceeded for mailbox {BOX}. Try again later.",
                 Classification.QUOTA, 3600, False, ["rate limit", "1 h"], ["лимит", "1 ч"],
                 id="451-ratelimit"),
    pytest.param("DATA", "550 message sending for this account is disabled",
                 Classification.SERVER, None, True, ["disabled sending", "change the password"],
                 ["запретил отправку", "смените пароль"], id="550-sending-disabled"),
    pytest.param("DATA", "550 spam message rejected. Please visit "
                 "http://help.mail.ru/notspam-support/id?c=AbC~ or  report details to "
                 "abuse@corp.mail.ru. Error code: 1A2B. ID: 3C4D.", Classification.PERMANENT,
                 None, False, ["http://help.mail.ru/notspam-support/id?c=AbC~",
                               "abuse@corp.mail.ru"], ["спам-фильтр"], id="550-spam"),
    pytest.param("RCPT", "550 Message was not accepted -- invalid mailbox.  Local mailbox "
                 "rcpt@example.org is unavailable: user not found", Classification.PERMANENT,
                 None, False, ["no working mailbox rcpt@example.org"], ["нет действующего"],
                 id="550-invalid-mailbox"),
]


@pytest.mark.parametrize(("stage", "reply", "classification", "block", "pause", "english",
                          "russian"), REPLIES)
def test_mailru_reply_is_classified_and_explained_in_english_and_russian(
        smtp: FakeSMTP, tls_certs: TLSCerts, stage: str, reply: str,
        classification: Classification, block: int | None, pause: bool, english: list[str],
        russian: list[str]) -> None:
    smtp.add_rule(stage, reply)
    for locale, words in (("en", english), ("ru", russian)):
        error = send_error(fake_fleet(smtp, tls_certs, locale=locale))
        assert error.classification is classification
        assert error.diagnosis is not None
        assert error.diagnosis.block_seconds == block
        assert error.diagnosis.pause_mailings is pause
        text = f"{error.diagnosis.summary} {error.diagnosis.next_step}".lower()
        for word in words:
            assert word.lower() in text, (locale, word, text)


def test_ratelimit_block_follows_the_server_option(smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("DATA", f"451 Ratelimit exceeded for mailbox {BOX}. Try again later.")
    fleet = fake_fleet(smtp, tls_certs, options={"ratelimit_block_seconds": 5400})
    error = send_error(fleet)
    assert error.diagnosis is not None
    assert error.diagnosis.block_seconds == 5400
    assert "1 h 30 min" in error.diagnosis.next_step
