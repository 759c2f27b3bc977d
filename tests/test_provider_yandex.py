"""Yandex plugin: presets, strict sender rule, replies (real SMTP over implicit TLS)."""

from __future__ import annotations

import asyncio

import pytest
from fleet_config import provider_fleet, resolve_with, send_error

from mailfleet.config import Config, ServerConfig
from mailfleet.errors import Classification, ConfigError
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.sender import SenderRequest
from mailfleet.sending.servers import Server, resolve_servers
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

BOX = "ivan@yandex.ru"
APP_PASSWORD = "qwertyuiopasdfgh"


def resolve(**fields: object) -> list[Server]:
    return resolve_with({"name": "y", "password": Secret("pw")}, **fields)


def fake_fleet(smtp: FakeSMTP, certs: TLSCerts, **options: object) -> Fleet:
    return provider_fleet(smtp, certs, provider="yandex", box=BOX,
                          server_password=APP_PASSWORD, **options)  # type: ignore[arg-type]


# -- presets and detection --------------------------------------------------------------------

@pytest.mark.parametrize("domain", ["yandex.ru", "yandex.com", "yandex.by", "yandex.kz",
                                    "yandex.ua", "ya.ru", "narod.ru"])
def test_yandex_domains_resolve_to_smtp_yandex_ru_465_ssl_with_full_address(domain: str) -> None:
    [server] = resolve(sender=f"ivan@{domain}")
    assert server.provider == "yandex"
    assert (server.host, server.port, server.security) == ("smtp.yandex.ru", 465, Security.SSL)
    assert server.login == f"ivan@{domain}"
    assert server.limits.per_day == 500
    assert server.limits.recipients_per_letter == 35


def test_yandex_360_domain_needs_the_explicit_provider() -> None:
    [server] = resolve(sender="boss@firm.example", provider="yandex")
    assert (server.provider, server.host, server.login) == ("yandex", "smtp.yandex.ru",
                                                            "boss@firm.example")


def test_local_part_login_is_kept_when_configured() -> None:
    [server] = resolve(sender=BOX, login="ivan")
    assert server.login == "ivan"


def test_yandex_imap_and_pop3_presets() -> None:
    info = load_plugins().info("yandex")
    assert info is not None
    assert [(e.host, e.port, e.security) for e in info.imap] == [
        ("imap.yandex.ru", 993, Security.SSL), ("imap.yandex.ru", 143, Security.STARTTLS)]
    assert [(e.host, e.port) for e in info.pop3] == [("pop.yandex.ru", 995),
                                                     ("pop.yandex.ru", 110)]


# -- sender rule ------------------------------------------------------------------------------

def test_sender_policy_never_uses_a_verp_envelope_sender() -> None:
    plugins = load_plugins()
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="y", sender=BOX, password=Secret("x")),)), plugins)
    decision = plugins.sender_policy(server, SenderRequest(BOX, "", "bounce+7@lists.example"))
    assert (decision.from_addr, decision.envelope_from) == (BOX, BOX)
    assert decision.substituted and "not owned by auth user" in decision.reason


def test_sender_policy_replaces_a_foreign_sender_and_keeps_a_declared_alias() -> None:
    plugins = load_plugins()
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="y", sender=BOX, password=Secret("x"), aliases=("ivan@ya.ru",)),)), plugins)
    foreign = plugins.sender_policy(server, SenderRequest("promo@shop.example"))
    assert (foreign.from_addr, foreign.envelope_from, foreign.substituted) == (BOX, BOX, True)
    alias = plugins.sender_policy(server, SenderRequest("ivan@ya.ru"))
    assert (alias.from_addr, alias.envelope_from, alias.substituted) == (
        "ivan@ya.ru", "ivan@ya.ru", False)


def test_validate_refuses_allow_sender_override() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(sender=BOX, allow_sender_override=True)
    [problem] = info.value.problems
    assert "allow_sender_override" in problem and "not owned by auth user" in problem


def test_a_foreign_from_is_sent_from_the_mailbox_over_smtp(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("MAIL", "553 5.7.1 Sender address rejected: not owned by auth user.",
                  match=r"^(?!ivan@yandex\.ru$)")
    fleet = fake_fleet(smtp, tls_certs)
    asyncio.run(fleet.send_one(fleet.servers[0], to="rcpt@example.org", subject="s", text="t",
                               from_addr="promo@shop.example"))
    [message] = smtp.wait_for_messages(1)
    assert message.mail_from == BOX


# -- replies ----------------------------------------------------------------------------------

REPLIES = [
    pytest.param("AUTH", "535 5.7.8 Error: authentication failed: This user does not have "
                 "access rights to this service", Classification.SERVER, None, False,
                 ["access for mail clients", "app password", "mail.yandex.ru/#setup/client"],
                 ["почтовым программам", "пароль приложения"], id="535-access-rights"),
    pytest.param("AUTH", "535 5.7.8 Error: authentication failed: Invalid user or password!",
                 Classification.SERVER, None, False,
                 ["did not accept", "app password", "login ="],
                 ["не принял", "пароль приложения"], id="535-invalid-user"),
    pytest.param("MAIL", "553 5.7.1 Sender address rejected: not owned by auth user.",
                 Classification.SERVER, None, False, ["refused the sender", "aliases"],
                 ["отклонил отправителя"], id="553-not-owned"),
    pytest.param("DATA", "554 5.7.1 Message rejected under suspicion of SPAM; "
                 "http://help.yandex.ru/mail/spam/sending-limits.xml",
                 Classification.QUOTA, 86400, False, ["sending limit", "extends it"],
                 ["лимит отправки", "продлевает"], id="554-sending-limits"),
    pytest.param("DATA", "554 5.7.1 [2] Message rejected under suspicion of SPAM; "
                 "https://ya.cc/1IrBc", Classification.SERVER, None, True,
                 ["suspected of spam", "https://ya.cc/1IrBc", "captcha"],
                 ["похожи на спам", "https://ya.cc/1IrBc", "капчу"], id="554-[2]-spam-captcha"),
    pytest.param("DATA", "554 5.7.1 [1] Message rejected under suspicion of SPAM; "
                 "https://ya.cc/1IrBc", Classification.PERMANENT, None, False,
                 ["spam filter rejected this letter"], ["спам-фильтр"], id="554-[1]-spam"),
    pytest.param("RCPT", "452 4.5.3 Error: too many recipients", Classification.TRANSIENT,
                 None, False, ["35"], ["35"], id="452-too-many-recipients"),
]


@pytest.mark.parametrize(("stage", "reply", "classification", "block", "pause", "english",
                          "russian"), REPLIES)
def test_yandex_reply_is_classified_and_explained_in_english_and_russian(
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


def test_spam_stop_surfaces_the_captcha_link_and_pauses_the_server(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("DATA", "554 5.7.1 [2] Message rejected under suspicion of SPAM; "
                  "https://ya.cc/68Bm7, f0a1b2c3")
    error = send_error(fake_fleet(smtp, tls_certs))
    assert error.diagnosis is not None
    assert error.diagnosis.url == "https://ya.cc/68Bm7"
    assert error.diagnosis.pause_mailings
    assert error.classification is Classification.SERVER


def test_servers_check_reports_that_client_access_is_off(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("AUTH", "535 5.7.8 Error: authentication failed: This user does not have "
                  "access rights to this service")
    fleet = fake_fleet(smtp, tls_certs, locale="ru")
    result = asyncio.run(fleet.check(fleet.servers[0]))
    assert not result.ok and result.stage == "auth" and result.code == 535
    assert result.diagnosis is not None
    assert "Почтовые программы" in result.diagnosis
    assert "https://yandex.com/support/passport/authorization/app-passwords.html" in \
        result.diagnosis


def test_servers_check_passes_with_the_right_app_password(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    fleet = fake_fleet(smtp, tls_certs)
    assert asyncio.run(fleet.check(fleet.servers[0])).ok
    assert any(e.stage == "MAIL" and e.argument == BOX for e in smtp.events)
