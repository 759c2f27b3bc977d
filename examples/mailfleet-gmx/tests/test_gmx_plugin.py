"""The example GMX plugin, installed from its own folder: conformance, discovery, blocking,
and its override of the core's generic diagnosis."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from mailfleet.config import Config, ServerConfig
from mailfleet.errors import SmtpError
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Security
from mailfleet.secrets import Secret
from mailfleet.sending.fleet import Fleet
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.conformance import ProviderConformance, Replies
from mailfleet_testing.smtpd import FakeSMTP

BOX = "shop.news@gmx.net"
BAD_LOGIN = "535 Authentication credentials invalid"


class TestGmxConformance(ProviderConformance):
    provider_id = "gmx"
    mailbox = BOX
    replies: ClassVar[Replies] = {
        "wrong_password": ("AUTH", BAD_LOGIN),
        "spam_block": ("DATA", "554-Transaction failed\r\n554-Reject due to policy "
                               "restrictions.\r\n554 For explanation visit "
                               "https://postmaster.gmx.net/en/error-messages?ip=192.0.2.1&c=hi"),
    }


def test_gmx_is_discovered_through_its_entry_point() -> None:
    [record] = [r for r in load_plugins().records() if r.id == "gmx"]
    assert record.distribution == "mailfleet-gmx"
    assert record.provider is not None and "gmx.de" in record.provider.domains
    assert "mailfleet_diagnose" in record.hooks


def test_disabling_gmx_leaves_its_addresses_to_the_generic_plugin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_plugins().provider_for(None, BOX) == "gmx"
    monkeypatch.setenv("MAILFLEET_DISABLE_PLUGINS", "gmx")
    plugins = load_plugins()
    assert "gmx" not in plugins.providers
    assert plugins.provider_for(None, BOX, host="mail.gmx.net") == "generic"


def _wrong_password(smtp: FakeSMTP, certs: TLSCerts) -> SmtpError:
    smtp.users = {BOX: "right"}
    smtp.add_rule("AUTH", BAD_LOGIN)
    config = Config(servers=(ServerConfig(
        name="gmx", sender=BOX, login=BOX, host="127.0.0.1", port=smtp.tls_port,
        security=Security.SSL,
        provider="gmx" if "gmx" in load_plugins().providers else None,
        ca_file=str(certs.ca_file), password=Secret("right"), timeout=10),))
    fleet = Fleet(config)
    with pytest.raises(SmtpError) as info:
        asyncio.run(fleet.send_one(fleet.servers[0], to="a@example.org", subject="s", text="t"))
    return info.value


def test_gmx_overrides_the_generic_reading_of_a_refused_login(
        smtp: FakeSMTP, tls_certs: TLSCerts, monkeypatch: pytest.MonkeyPatch) -> None:
    error = _wrong_password(smtp, tls_certs)
    assert error.diagnosis is not None
    assert "allow access via POP3 and IMAP" in error.diagnosis.next_step
    monkeypatch.setenv("MAILFLEET_DISABLE_PLUGINS", "gmx")
    generic = _wrong_password(smtp, tls_certs)
    assert generic.diagnosis is not None
    assert "POP3" not in generic.diagnosis.next_step
    assert "check the login and password" in generic.diagnosis.next_step
