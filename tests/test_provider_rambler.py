"""Rambler plugin: presets, client-access hint, the host-bound spam-block rule (real SMTP)."""

from __future__ import annotations

import asyncio

import attrs
import pytest
from fleet_config import provider_fleet, resolve_with, send_error

from mailfleet.config import Config, ServerConfig
from mailfleet.errors import Classification, ConfigError, SmtpError, Stage
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.sender import SenderRequest
from mailfleet.sending.servers import Server, resolve_servers
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

BOX = "petr@rambler.ru"
PASSWORD = "rambler-pw"
SPAM = "554 5.7.1 Spam message rejected; If this is not spam contact abuse team"


def resolve(**fields: object) -> list[Server]:
    return resolve_with({"name": "r", "password": Secret("pw")}, **fields)


def fake_fleet(smtp: FakeSMTP, certs: TLSCerts, **options: object) -> Fleet:
    return provider_fleet(smtp, certs, provider="rambler", box=BOX,
                          server_password=PASSWORD, **options)  # type: ignore[arg-type]


# -- presets and detection --------------------------------------------------------------------

@pytest.mark.parametrize("domain", ["rambler.ru", "lenta.ru", "autorambler.ru", "myrambler.ru",
                                    "ro.ru", "r0.ru", "rambler.ua"])
def test_rambler_domains_resolve_to_smtp_rambler_ru_465_ssl_with_full_address(
        domain: str) -> None:
    [server] = resolve(sender=f"petr@{domain}")
    assert server.provider == "rambler"
    assert (server.host, server.port, server.security) == ("smtp.rambler.ru", 465, Security.SSL)
    assert server.login == f"petr@{domain}"


def test_legacy_host_mail_rambler_ru_is_accepted_with_its_preset_port() -> None:
    [server] = resolve(sender=BOX, host="mail.rambler.ru")
    assert (server.host, server.port, server.security) == ("mail.rambler.ru", 465, Security.SSL)


def test_rambler_imap_and_pop3_presets() -> None:
    info = load_plugins().info("rambler")
    assert info is not None
    assert (info.imap[0].host, info.imap[0].port) == ("imap.rambler.ru", 993)
    assert (info.pop3[0].host, info.pop3[0].port) == ("pop.rambler.ru", 995)


# -- sender rule ------------------------------------------------------------------------------

def test_sender_policy_sends_only_from_the_login() -> None:
    plugins = load_plugins()
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="r", sender=BOX, password=Secret("x")),)), plugins)
    decision = plugins.sender_policy(server, SenderRequest("news@shop.example", "", "b@x.example"))
    assert (decision.from_addr, decision.envelope_from, decision.substituted) == (BOX, BOX, True)


def test_validate_refuses_allow_sender_override() -> None:
    with pytest.raises(ConfigError, match="allow_sender_override: Rambler sends only from the "
                                          "login"):
        resolve(sender=BOX, allow_sender_override=True)


# -- replies ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("locale", "words"), [
    ("en", ["access for mail clients", "https://mail.rambler.ru/settings/mailapps"]),
    ("ru", ["доступ для почтовых программ", "https://mail.rambler.ru/settings/mailapps"]),
])
def test_auth_failure_tells_to_switch_on_mail_client_access(
        smtp: FakeSMTP, tls_certs: TLSCerts, locale: str, words: list[str]) -> None:
    fleet = fake_fleet(smtp, tls_certs, locale=locale, password="wrong")
    result = asyncio.run(fleet.check(fleet.servers[0]))
    assert not result.ok and result.stage == "auth" and result.classification == "server"
    assert result.diagnosis is not None
    for word in words:
        assert word in result.diagnosis


def test_spam_text_from_a_non_rambler_host_is_left_to_the_generic_diagnosis(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    smtp.add_rule("DATA", SPAM + " [203.0.113.7]")
    error = send_error(fake_fleet(smtp, tls_certs))  # host 127.0.0.1
    assert error.classification is Classification.PERMANENT
    assert error.diagnosis is not None
    assert "abuse@rambler-co.ru" not in error.diagnosis.next_step
    assert not error.diagnosis.pause_mailings


@pytest.mark.parametrize(("locale", "words"), [
    ("en", ["sending IP address 203.0.113.7", "abuse@rambler-co.ru", "steps you took"]),
    ("ru", ["IP-адрес отправителя 203.0.113.7", "abuse@rambler-co.ru", "принятые меры"]),
])
def test_spam_text_from_smtp_rambler_ru_names_the_ip_and_the_abuse_address(
        smtp: FakeSMTP, tls_certs: TLSCerts, locale: str, words: list[str]) -> None:
    """The reply comes over SMTP from the fake server; it is read as from smtp.rambler.ru."""
    smtp.add_rule("DATA", SPAM + " [203.0.113.7]")
    fleet = fake_fleet(smtp, tls_certs)
    error = send_error(fleet)
    rambler = attrs.evolve(fleet.servers[0], host="smtp.rambler.ru")
    diagnosed = fleet.plugins.diagnose(rambler, error, locale)
    assert diagnosed.classification is Classification.SERVER
    assert diagnosed.diagnosis is not None and diagnosed.diagnosis.pause_mailings
    text = f"{diagnosed.diagnosis.summary} {diagnosed.diagnosis.next_step}"
    for word in words:
        assert word in text


def test_spam_block_without_an_ip_in_the_reply_says_so() -> None:
    plugins = load_plugins()
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="r", sender=BOX, password=Secret("x")),)), plugins)
    error = SmtpError(Stage.DATA, "5.7.1 Spam message rejected; If this is not spam contact "
                      "abuse", code=554, enhanced_status="5.7.1")
    diagnosis = plugins.diagnose(server, error, "en").diagnosis
    assert diagnosis is not None
    assert "not given in the reply" in diagnosis.summary
