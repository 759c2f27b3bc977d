"""Rules every provider plugin keeps: entry points, presets, SaaS port 25, texts, bounces."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from mailfleet.config import Config, Deployment, ServerConfig
from mailfleet.errors import ConfigError, SmtpError, Stage
from mailfleet.plugins.manager import load_plugins
from mailfleet.secrets import Secret
from mailfleet.sending.diagnosis import ReplyRule
from mailfleet.sending.servers import resolve_servers

PLUGINS = {  # provider id -> distribution
    "gmail": "mailfleet-gmail",
    "google-workspace": "mailfleet-gmail",
    "yandex": "mailfleet-yandex",
    "mailru": "mailfleet-mailru",
    "rambler": "mailfleet-rambler",
    "internal_smtp": "mailfleet-internal-smtp",
}
PUBLIC = {"gmail": "a@gmail.com", "google-workspace": "a@corp.example",
          "yandex": "a@yandex.ru", "mailru": "a@mail.ru", "rambler": "a@rambler.ru"}
RULE_MODULES = ["mailfleet_gmail.replies", "mailfleet_yandex.replies", "mailfleet_mailru.replies",
                "mailfleet_rambler.replies", "mailfleet_internal_smtp.replies"]
CORPUS = Path(__file__).parent / "data" / "bounce-corpus"


def test_every_provider_is_found_through_its_entry_point_and_distribution() -> None:
    records = {r.id: r for r in load_plugins().records()}
    for provider, distribution in PLUGINS.items():
        record = records[provider]
        assert record.distribution == distribution
        assert record.provider is not None and record.provider.id == provider
        assert "mailfleet_diagnose" in record.hooks


def test_no_domain_is_claimed_by_two_providers() -> None:
    seen: dict[str, str] = {}
    for info in load_plugins().providers.values():
        for domain in info.domains:
            assert domain not in seen, (domain, seen.get(domain), info.id)
            seen[domain] = info.id


@pytest.mark.parametrize("provider", sorted(PUBLIC))
def test_public_providers_have_tls_presets_for_smtp_imap_and_pop3(provider: str) -> None:
    info = load_plugins().info(provider)
    assert info is not None
    for endpoints in (info.smtp, info.imap, info.pop3):
        assert endpoints and endpoints[0].security == "ssl"
    assert all(e.port != 25 for e in info.smtp)
    assert not info.sender_substitution and not info.verp


@pytest.mark.parametrize("provider", sorted(PUBLIC))
def test_saas_refuses_a_user_server_on_port_25_and_exempts_the_operator_default(
        provider: str) -> None:
    def resolve(operator_default: bool) -> None:
        server = ServerConfig(name="s", sender=PUBLIC[provider], provider=provider, port=25,
                              password=Secret("pw"), operator_default=operator_default)
        resolve_servers(Config(deployment=Deployment(saas=True), servers=(server,)),
                        load_plugins())

    with pytest.raises(ConfigError) as info:
        resolve(False)
    [problem] = [p for p in info.value.problems if ".port:" in p]
    assert "port 25 is not allowed" in problem and "465" in problem and "587" in problem
    resolve(True)


@pytest.mark.parametrize("provider", sorted(PUBLIC))
def test_public_providers_refuse_allow_sender_override(provider: str) -> None:
    server = ServerConfig(name="s", sender=PUBLIC[provider], provider=provider,
                          password=Secret("pw"), allow_sender_override=True)
    with pytest.raises(ConfigError, match=r"servers\[s\]\.allow_sender_override: "):
        resolve_servers(Config(servers=(server,)), load_plugins())


def rules() -> list[tuple[str, ReplyRule]]:
    found = []
    for name in RULE_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            items = value if isinstance(value, tuple) else (value,)
            found += [(name, r) for r in items if isinstance(r, ReplyRule)]
    return found


def test_every_reply_rule_speaks_english_and_russian() -> None:
    assert len(rules()) > 30
    for module, rule in rules():
        assert set(rule.summary) == {"en", "ru"}, (module, rule.pattern)
        assert not rule.next_step or set(rule.next_step) == {"en", "ru"}, (module, rule.pattern)


def test_a_provider_reads_only_its_own_servers_replies() -> None:
    plugins = load_plugins()
    servers = {s.provider: s for s in resolve_servers(Config(servers=tuple(
        ServerConfig(name=p, sender=a, provider=p, password=Secret("pw"))
        for p, a in PUBLIC.items())), plugins)}
    error = SmtpError(Stage.AUTH, "5.7.0 NEOBHODIM parol prilozheniya / Application password "
                      "is REQUIRED", code=535, enhanced_status="5.7.0")
    mailru = plugins.diagnose(servers["mailru"], error, "en").diagnosis
    assert mailru is not None and "application password" in mailru.summary
    error = SmtpError(Stage.AUTH, "5.7.0 NEOBHODIM parol prilozheniya / Application password "
                      "is REQUIRED", code=535, enhanced_status="5.7.0")
    gmail = plugins.diagnose(servers["gmail"], error, "en").diagnosis
    assert gmail is not None and "Mail.ru" not in f"{gmail.summary} {gmail.next_step}"


def corpus(prefix: str) -> list[dict[str, object]]:
    truth = json.loads((CORPUS / "truth.json").read_text())
    return [t for t in truth if str(t["file"]).startswith(f"sisimai__{prefix}")]


@pytest.mark.parametrize("prefix", ["lhost-gmail", "lhost-yandex", "lhost-mailru",
                                    "rhost-gsuite"])
def test_provider_bounces_are_parsed_with_every_plugin_installed(prefix: str) -> None:
    """No provider adds a bounce parser: the core's parser reads these formats."""
    plugins = load_plugins()
    samples = corpus(prefix)
    assert samples
    for sample in samples:
        raw = (CORPUS / "eml" / str(sample["file"])).read_bytes()
        report = plugins.parse_bounce(raw)
        assert report.kind in ("bounce", "delay"), sample["file"]
        assert report.parser == "core", sample["file"]
        expected = [str(a).lower() for a in sample["recipients"] or []]  # type: ignore[attr-defined]
        assert [r.address.lower() for r in report.recipients] == expected, sample["file"]
