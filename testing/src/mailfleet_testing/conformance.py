"""The provider conformance suite: a test class a provider plugin subclasses with a few facts.

::

    from mailfleet_testing.conformance import ProviderConformance

    class TestAcmeConformance(ProviderConformance):
        provider_id = "acmeisp"             # the entry-point name
        mailbox = "someone@acme.example"    # an address at the provider

The checks run against the real fixture servers of :mod:`mailfleet_testing` on 127.0.0.1
(``smtp``, ``tls_certs``), with the plugin installed as users install it (entry points):

* the provider is installed and declared under its entry-point name;
* its presets resolve without objection and connect (TLS, AUTH, a sender probe) on the
  fixture server for each security mode they declare;
* its domains and hosts do not collide with another installed provider's;
* every standard failure (wrong password, app password required, sender refused, quota, spam
  block, greylisting, mailbox full) gets a classification and a diagnosis with a next step in
  English and in Russian; set :attr:`ProviderConformance.replies` to the provider's own texts;
* a letter really leaves with the From and envelope sender its sender rule promises, and a
  configured foreign ``sender`` is refused at load or rewritten to the login as declared;
* its hook implementations match the specs (names, arguments, ``def``/``async def``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import importlib.metadata
import inspect
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import pytest

from mailfleet import hookspecs
from mailfleet.config import Config, ServerConfig
from mailfleet.errors import Classification, ConfigError, SmtpError
from mailfleet.plugins.manager import Plugins, load_plugins
from mailfleet.plugins.providers import ProviderInfo, Security
from mailfleet.secrets import Secret
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.servers import Server, resolve_servers
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

__all__ = ["STANDARD_FAILURES", "ProviderConformance", "Replies"]

#: A provider's own replies for standard failures: ``{"quota": ("DATA", "550 ...")}``.
Replies = Mapping[str, tuple[str, str]]

C = Classification

#: Each standard failure: the SMTP stage of the fixture server where it happens, a typical
#: reply, and the classifications that are right for it.
STANDARD_FAILURES: Mapping[str, tuple[str, str, frozenset[Classification]]] = {
    "wrong_password": ("AUTH", "535 5.7.8 Authentication credentials invalid",
                       frozenset({C.SERVER})),
    "app_password_required": ("AUTH", "534 5.7.9 Application-specific password required",
                              frozenset({C.SERVER})),
    "sender_refused": ("MAIL", "553 5.7.1 Sender address rejected: not owned by user",
                       frozenset({C.SERVER, C.PERMANENT})),
    "quota": ("MAIL", "550 5.4.5 Daily sending quota exceeded", frozenset({C.QUOTA})),
    "spam_block": ("DATA", "554 5.7.1 Message rejected as spam", frozenset({C.PERMANENT,
                                                                             C.SERVER})),
    "greylisting": ("RCPT", "450 4.7.1 Greylisted, please try again later",
                    frozenset({C.TRANSIENT})),
    "mailbox_full": ("RCPT", "552 5.2.2 Mailbox full", frozenset({C.PERMANENT, C.TRANSIENT})),
}

PASSWORD = "conformance-app-password"  # noqa: S105 - a throwaway fixture credential
FOREIGN = "newsletter@foreign-brand.example"
_CYRILLIC = re.compile("[а-яА-ЯёЁ]")
_PORTS = {Security.SSL: "tls_port", Security.STARTTLS: "port", Security.NONE: "port"}


class ProviderConformance:
    """Subclass as ``TestXConformance`` and set :attr:`provider_id` and :attr:`mailbox`."""

    #: The provider id (the plugin's entry-point name).
    provider_id: ClassVar[str] = ""
    #: An address at the provider, used as the server's sender.
    mailbox: ClassVar[str] = ""
    #: The provider's own reply for a standard failure, as ``{"quota": ("DATA", "550 ...")}``;
    #: failures not listed use the typical reply of :data:`STANDARD_FAILURES`.
    replies: ClassVar[Replies] = {}

    # -- helpers ------------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One test per standard failure; AUTH failures only for providers that take AUTH."""
        if "failure" in metafunc.fixturenames:
            info = load_plugins().info(self.provider_id)
            takes_auth = info is None or bool(info.auth)  # unknown: let the test say so
            metafunc.parametrize("failure", [
                name for name, (stage, _, _) in sorted(STANDARD_FAILURES.items())
                if takes_auth or self.replies.get(name, (stage, ""))[0] != "AUTH"])

    @pytest.fixture
    def plugins(self) -> Plugins:
        return load_plugins()

    def info(self, plugins: Plugins) -> ProviderInfo:
        assert self.provider_id and self.mailbox, "set provider_id and mailbox on the subclass"
        info = plugins.info(self.provider_id)
        assert info is not None, f"provider {self.provider_id!r} is not installed"
        return info

    def server(self, plugins: Plugins, smtp: FakeSMTP, certs: TLSCerts,
               security: Security, **fields: Any) -> Server:
        """A server of this provider pointed at the fixture server in mode ``security``."""
        info = self.info(plugins)
        config = ServerConfig(
            name="conformance", kind=_kind(info), sender=self.mailbox, provider=self.provider_id,
            host="127.0.0.1", port=getattr(smtp, _PORTS[security]), security=security,
            ca_file=str(certs.ca_file), timeout=10,
            password=Secret(PASSWORD) if info.auth else None,
            allow_insecure_auth=security is Security.NONE, **fields)
        [server] = resolve_servers(Config(servers=(config,)), plugins)
        if server.login:
            smtp.users = {server.login: PASSWORD}
        smtp.auth_require_tls = security is not Security.NONE
        return server

    def modes(self, plugins: Plugins) -> list[Security]:
        info = self.info(plugins)
        return sorted({e.security for e in info.smtp}, key=str) or [Security.STARTTLS]

    # -- the checks ---------------------------------------------------------------------------
    def test_provider_is_installed_under_its_entry_point_name(self, plugins: Plugins) -> None:
        info = self.info(plugins)
        assert info.id == self.provider_id
        names = {ep.name for ep in importlib.metadata.entry_points(group="mailfleet")}
        assert self.provider_id in names
        assert info.name, "ProviderInfo.name is what users read"

    def test_presets_resolve_without_objection(self, plugins: Plugins) -> None:
        info = self.info(plugins)
        config = ServerConfig(name="preset", kind=_kind(info), sender=self.mailbox,
                              provider=self.provider_id,
                              password=Secret(PASSWORD) if info.auth else None)
        [server] = resolve_servers(Config(servers=(config,)), plugins)
        if info.smtp:
            first = info.smtp[0]
            assert (server.host, server.port, server.security) == (
                first.host, first.port, first.security)
        for endpoint in (*info.smtp, *info.imap, *info.pop3):
            assert endpoint.host and 0 < endpoint.port < 65536, endpoint

    def test_presets_connect_on_the_fixture_server_for_each_security_mode(
            self, plugins: Plugins, smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
        for security in self.modes(plugins):
            server = self.server(plugins, smtp, tls_certs, security)
            result = asyncio.run(Fleet(Config(), plugins).check(server))
            assert result.ok, (security, result)

    def test_domains_and_hosts_do_not_collide_with_other_providers(
            self, plugins: Plugins) -> None:
        info = self.info(plugins)
        mine = _distribution(self.provider_id)
        for other in plugins.providers.values():
            if other.id == self.provider_id or _distribution(other.id) == mine:
                continue
            assert not set(info.domains) & set(other.domains), other.id
            if info.domains and other.domains:  # providers without domains are explicit-only
                assert not info.served_hosts() & other.served_hosts(), other.id

    def test_standard_failure_is_diagnosed_with_a_next_step_in_english_and_russian(
            self, plugins: Plugins, smtp: FakeSMTP, tls_certs: TLSCerts, failure: str) -> None:
        stage, reply, allowed = STANDARD_FAILURES[failure]
        stage, reply = self.replies.get(failure, (stage, reply))
        security = self.modes(plugins)[0]
        server = self.server(plugins, smtp, tls_certs, security)
        smtp.add_rule(stage, reply)
        fleet = Fleet(Config(), plugins)
        with pytest.raises(SmtpError) as info:
            asyncio.run(fleet.send_one(server, to="rcpt@example.org", subject="hi", text="x"))
        error = info.value
        assert error.classification in allowed, (failure, error)
        for locale in ("en", "ru"):
            diagnosis = plugins.diagnose(server, error, locale).diagnosis
            assert diagnosis is not None and diagnosis.summary and diagnosis.next_step, locale
            if locale == "ru":
                assert _CYRILLIC.search(diagnosis.next_step), "the Russian step is not Russian"

    def test_a_letter_leaves_with_the_sender_the_rule_promises(
            self, plugins: Plugins, smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
        info = self.info(plugins)
        # Substitution is opt-in per server (allow_sender_override); where the provider
        # permits it, both the default and the opt-in are checked.
        choices = (False, True) if info.sender_substitution else (False,)
        fleet = Fleet(Config(), plugins)
        for count, opt_in in enumerate(choices, start=1):
            server = self.server(plugins, smtp, tls_certs, self.modes(plugins)[0],
                                 allow_sender_override=opt_in)
            sent = asyncio.run(fleet.send_one(server, to="rcpt@example.org", subject="From?",
                                              text="x", from_addr=FOREIGN))
            message = smtp.wait_for_messages(count)[-1]
            parsed = email.message_from_bytes(message.data, policy=email.policy.default)
            from_addr = email.utils.parseaddr(str(parsed["From"]))[1]
            assert from_addr == sent.sender.from_addr
            assert message.mail_from == sent.sender.envelope_from
            if opt_in:
                assert from_addr == FOREIGN
            else:
                assert from_addr.lower() in {server.sender.lower(), *server.aliases}
                assert sent.sender.substituted and sent.sender.reason
            if info.envelope_sender == "login" and server.login:
                assert message.mail_from == server.login

    def test_a_foreign_configured_sender_is_handled_as_the_provider_declares(
            self, plugins: Plugins, smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
        info = self.info(plugins)
        security = self.modes(plugins)[0]
        config = ServerConfig(
            name="foreign", kind=_kind(info), sender=FOREIGN,
            login=self.mailbox if info.auth else None,
            provider=self.provider_id, host="127.0.0.1", port=getattr(smtp, _PORTS[security]),
            security=security, ca_file=str(tls_certs.ca_file), timeout=10,
            password=Secret(PASSWORD) if info.auth else None,
            allow_insecure_auth=security is Security.NONE)
        if not info.sender_substitution and info.foreign_sender == "refused":
            with pytest.raises(ConfigError, match=r"servers\[foreign\]\.sender: "):
                resolve_servers(Config(servers=(config,)), plugins)
            return
        [server] = resolve_servers(Config(servers=(config,)), plugins)  # no objection
        if info.sender_substitution:
            return  # the server's own sender is the operator's choice
        if server.login:  # rewritten: the letter goes From the login, saying why
            smtp.users = {server.login: PASSWORD}
        smtp.auth_require_tls = security is not Security.NONE
        sent = asyncio.run(Fleet(Config(), plugins).send_one(
            server, to="rcpt@example.org", subject="From?", text="x"))
        parsed = email.message_from_bytes(smtp.wait_for_messages(1)[-1].data,
                                          policy=email.policy.default)
        from_addr = email.utils.parseaddr(str(parsed["From"]))[1]
        assert from_addr.lower() == self.mailbox.lower() == sent.sender.from_addr.lower()
        assert sent.sender.substituted and sent.sender.reason

    def test_hook_implementations_match_the_specs(self) -> None:
        [entry] = [ep for ep in importlib.metadata.entry_points(group="mailfleet")
                   if ep.name == self.provider_id]
        plugin = entry.load()
        specs = {n: f for n, f in vars(hookspecs).items() if n.startswith("mailfleet_")}
        for name in dir(plugin):
            function = getattr(plugin, name)
            if not hasattr(function, f"{hookspecs.PROJECT}_impl"):
                continue
            assert name in specs, f"{name} is no mailfleet hook (see docs/hooks.md)"
            wanted = set(inspect.signature(specs[name]).parameters)
            args = set(inspect.signature(function).parameters) - {"self"}
            assert args <= wanted, (name, args - wanted)
            if name not in hookspecs.AWAITED:
                assert not inspect.iscoroutinefunction(function), f"{name} must be a def"
        assert hasattr(plugin, "mailfleet_provider"), "a provider plugin declares itself"


def _kind(info: ProviderInfo) -> Literal["internal", "external"]:
    return "internal" if "internal" in info.kinds else "external"


def _distribution(provider_id: str) -> str | None:
    for ep in importlib.metadata.entry_points(group="mailfleet"):
        if ep.name == provider_id:
            return ep.dist.name if ep.dist else None
    return None
