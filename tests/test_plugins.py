"""The plugin manager: discovery, blocking, duplicates, and provider-scoped hook calls."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pluggy
import pytest

from mailfleet import hookimpl
from mailfleet.config import parse_config
from mailfleet.errors import PluginError
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import ProviderInfo
from mailfleet.sending.sender import SenderRequest
from mailfleet.sending.servers import resolve_servers

BUILT_INS = {"gmail": "mailfleet-gmail", "yandex": "mailfleet-yandex",
             "mailru": "mailfleet-mailru", "rambler": "mailfleet-rambler",
             "internal_smtp": "mailfleet-internal-smtp"}


@pytest.fixture
def fake_distribution(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Install a throwaway distribution with a ``mailfleet`` entry point on sys.path."""
    added: list[str] = []

    def install(dist: str, ep_name: str, module: str, source: str) -> None:
        root = tmp_path / dist
        info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[mailfleet]\n{ep_name} = {module}\n")
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        sys.path.insert(0, str(root))
        added.append(str(root))

    yield install
    for path in added:
        sys.path.remove(path)
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        del sys.modules[name]


def test_entry_points_discover_all_five_built_in_distributions() -> None:
    records = {r.id: r for r in load_plugins().records()}
    for provider_id, dist in BUILT_INS.items():
        assert records[provider_id].distribution == dist
        assert records[provider_id].provider is not None
        assert "mailfleet_provider" in records[provider_id].hooks
    assert records["generic"].distribution == "mailfleet"


def test_disable_env_var_blocks_listed_plugin_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_DISABLE_PLUGINS", "gmail, rambler")
    plugins = load_plugins()
    ids = {r.id for r in plugins.records()}
    assert "gmail" not in ids and "rambler" not in ids and "yandex" in ids
    assert plugins.provider_for(None, "someone@gmail.com") == "generic"


def test_third_party_plugin_is_found_through_the_entry_point_group(fake_distribution) -> None:  # type: ignore[no-untyped-def]
    fake_distribution("mailfleet-acme", "acme", "thirdparty_acme", '''
        from mailfleet import hookimpl
        from mailfleet.plugins.providers import ProviderInfo
        @hookimpl
        def mailfleet_provider():
            return ProviderInfo(id="acme", name="Acme", domains=("acme.test",))
    ''')
    plugins = load_plugins()
    record = next(r for r in plugins.records() if r.id == "acme")
    assert record.distribution == "mailfleet-acme" and record.version == "0.1"
    assert plugins.provider_for(None, "x@acme.test") == "acme"


def test_duplicate_provider_id_is_refused(fake_distribution) -> None:  # type: ignore[no-untyped-def]
    fake_distribution("mailfleet-gmail-fork", "gmail", "thirdparty_gmail", '''
        from mailfleet import hookimpl
        from mailfleet.plugins.providers import ProviderInfo
        @hookimpl
        def mailfleet_provider():
            return ProviderInfo(id="gmail", name="Fork")
    ''')
    with pytest.raises(PluginError, match="two plugins claim the id 'gmail'"):
        load_plugins()


def test_provider_id_must_equal_entry_point_name() -> None:
    class Liar:
        @hookimpl
        def mailfleet_provider(self) -> ProviderInfo:
            return ProviderInfo(id="other", name="Liar")

    with pytest.raises(PluginError, match="must equal the entry-point name"):
        load_plugins(extra=[("liar", Liar())])


def test_unknown_hook_implementation_fails_check_pending() -> None:
    class Typo:
        @hookimpl
        def mailfleet_sender_polcy(self) -> None:
            return None

    with pytest.raises(pluggy.PluginValidationError):
        load_plugins(extra=[("typo", Typo())])


def test_provider_hooks_reach_only_the_servers_own_provider() -> None:
    calls: list[str] = []

    def provider_plugin(pid: str) -> object:
        class P:
            @hookimpl
            def mailfleet_provider(self) -> ProviderInfo:
                return ProviderInfo(id=pid, name=pid, domains=(f"{pid}.test",))

            @hookimpl
            def mailfleet_validate_server(self, server: object, deployment: object) -> list[str]:
                calls.append(pid)
                return []
        return P()

    plugins = load_plugins(extra=[("alpha", provider_plugin("alpha")),
                                  ("beta", provider_plugin("beta"))], entry_points=False)
    config = parse_config({"servers": [{"name": "a", "sender": "x@alpha.test",
                                        "host": "smtp.alpha.test"}]})
    resolve_servers(config, plugins)
    assert calls == ["alpha"]


def test_provider_answer_overrides_the_generic_plugin() -> None:
    class Strict:
        @hookimpl
        def mailfleet_provider(self) -> ProviderInfo:
            return ProviderInfo(id="strict", name="Strict", domains=("strict.test",))

        @hookimpl
        def mailfleet_sender_policy(self, server, wanted):  # type: ignore[no-untyped-def]
            from mailfleet.sending.sender import SenderDecision
            return SenderDecision(server.sender, "", server.sender, True, "strict says so")

    plugins = load_plugins(extra=[("strict", Strict())], entry_points=False)
    config = parse_config({"servers": [{"name": "s", "sender": "me@strict.test",
                                        "host": "smtp.strict.test",
                                        "allow_sender_override": True}]})
    [server] = resolve_servers(config, plugins)
    decision = plugins.sender_policy(server, SenderRequest("boss@other.test"))
    assert decision.reason == "strict says so" and decision.from_addr == "me@strict.test"


def test_generic_sender_policy_substitutes_only_where_allowed() -> None:
    plugins = load_plugins(entry_points=False)
    config = parse_config({"servers": [
        {"name": "open", "sender": "srv@example.com", "host": "h.example.com",
         "allow_sender_override": True},
        {"name": "closed", "sender": "srv@example.com", "host": "h.example.com",
         "allow_sender_override": False, "sender_name": "Server"}]})
    open_, closed = resolve_servers(config, plugins)
    wanted = SenderRequest("news@brand.example", "Brand")
    assert plugins.sender_policy(open_, wanted).from_addr == "news@brand.example"
    decision = plugins.sender_policy(closed, wanted)
    assert (decision.from_addr, decision.envelope_from, decision.substituted) == (
        "srv@example.com", "srv@example.com", True)
    assert "does not allow sender substitution" in decision.reason


def test_failing_event_observer_never_breaks_sending(caplog: pytest.LogCaptureFixture) -> None:
    from datetime import UTC, datetime

    from mailfleet.events import DeliveryEvent, EventType

    seen: list[EventType] = []

    class Broken:
        @hookimpl
        def mailfleet_event(self, event: DeliveryEvent) -> None:
            raise RuntimeError("observer bug")

    class Good:
        @hookimpl
        def mailfleet_event(self, event: DeliveryEvent) -> None:
            seen.append(event.type)

    plugins = load_plugins(extra=[("broken", Broken()), ("good", Good())], entry_points=False)
    plugins.emit(DeliveryEvent(EventType.SENT, datetime.now(UTC)))
    assert seen == [EventType.SENT]
    assert "observer bug" in caplog.text


def test_hook_mailfleet_connect_lets_a_plugin_supply_its_own_transport() -> None:
    import asyncio
    from collections.abc import Sequence

    from mailfleet.sending.envelope import Envelope, SendResult
    from mailfleet.sending.fleet import Fleet

    delivered: list[Envelope] = []

    class Spool:
        """A transport that writes letters to a list (as a file or queue transport would)."""

        async def send(self, envelopes: Sequence[Envelope],
                       stop: object = None) -> list[SendResult]:
            delivered.extend(envelopes)
            return [SendResult(e) for e in envelopes]

        async def probe_sender(self, mail_from: str) -> None:
            return None

        async def close(self) -> None:
            return None

    class SpoolProvider:
        @hookimpl
        def mailfleet_provider(self) -> ProviderInfo:
            return ProviderInfo(id="spool", name="Spool")

        @hookimpl
        def mailfleet_connect(self, server, oauth_token):  # type: ignore[no-untyped-def]
            async def open_spool() -> Spool:
                return Spool()
            return open_spool()

    plugins = load_plugins(extra=[("spool", SpoolProvider())], entry_points=False)
    fleet = Fleet(parse_config({"servers": [{"name": "s", "sender": "a@example.com",
                                             "host": "spool.invalid", "provider": "spool"}]}),
                  plugins)
    sent = asyncio.run(fleet.send_one(fleet.servers[0], to="b@example.org", subject="s",
                                      text="t"))
    [envelope] = delivered
    assert envelope.rcpt_to == ("b@example.org",) and sent.message_id.encode() in envelope.data
    assert asyncio.run(fleet.check(fleet.servers[0])).ok


def test_hook_mailfleet_send_lets_a_plugin_change_the_bytes(
        smtp, tls_certs, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import attrs
    from fleet_config import fleet_for, server_entry

    from mailfleet_testing.pytest_plugin import SMTP_PASSWORD

    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", SMTP_PASSWORD)

    class Stamp:
        @hookimpl
        def mailfleet_send(self, server, session, envelopes):  # type: ignore[no-untyped-def]
            return session.send([attrs.evolve(e, data=b"X-Stamp: yes\r\n" + e.data)
                                 for e in envelopes])

    fleet = fleet_for(server_entry(smtp, tls_certs),
                      plugins=load_plugins(extra=[("stamp", Stamp())], entry_points=False))
    asyncio.run(fleet.send_one(fleet.servers[0], to="b@example.org", subject="s", text="t"))
    assert smtp.messages[0].message["X-Stamp"] == "yes"
