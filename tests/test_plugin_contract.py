"""The plugin contract: one public API, every hook through pluggy, hooks that compose."""

from __future__ import annotations

import ast
import asyncio
import base64
import importlib.metadata
import inspect
import types
from collections.abc import Generator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import mailfleet.plugin as api
from mailfleet import hookspecs
from mailfleet.config import BouncesConfig, Config, ServerConfig, parse_config
from mailfleet.errors import ConfigError, MailboxError, SmtpError, Stage
from mailfleet.events import DeliveryEvent, EventType
from mailfleet.mailbox.settings import resolve_mailbox
from mailfleet.plugin import (
    Envelope,
    OutgoingLetter,
    ProviderInfo,
    SenderRequest,
    SendResult,
    Server,
    hookimpl,
)
from mailfleet.plugins.manager import Plugins, load_plugins
from mailfleet.plugins.providers import Security
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.servers import resolve_servers
from mailfleet_testing.smtpd import FakeSMTP

ROOT = Path(__file__).parents[1]
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("mailfleet_"))


# -- one public API ---------------------------------------------------------------------------

def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def _plugin_sources() -> list[Path]:
    return sorted([*ROOT.glob("plugins/*/src/**/*.py"), *ROOT.glob("examples/*/src/**/*.py")])


def test_builtin_plugins_import_only_the_public_plugin_api() -> None:
    sources = _plugin_sources()
    assert len(sources) > 10
    offending = [(str(p.relative_to(ROOT)), module) for p in sources for module in _imports(p)
                 if (module == "mailfleet" or module.startswith("mailfleet."))
                 and module != "mailfleet.plugin"]
    assert offending == []


def test_core_names_no_plugin_id() -> None:
    ids = {ep.name for ep in importlib.metadata.entry_points(group="mailfleet")}
    assert {"gmail", "yandex", "mailru", "rambler", "internal_smtp"} <= ids
    named = []
    for path in (ROOT / "core" / "src" / "mailfleet").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value in ids:
                named.append((path.name, node.lineno, node.value))
    assert named == []


def test_public_plugin_api_exports_what_a_provider_needs() -> None:
    needed = {"hookimpl", "ProviderInfo", "Endpoint", "Limits", "Security", "ReplyRule",
              "match_rules", "Diagnosis", "Classification", "SmtpError", "Stage", "Server",
              "Deployment", "Envelope", "SendResult", "SmtpSession", "BounceReport",
              "DeliveryEvent", "EventType", "SenderRequest", "SenderDecision",
              "OutgoingLetter", "MailboxSettings"}
    assert needed <= set(api.__all__)
    assert all(hasattr(api, name) for name in api.__all__)


# -- every hook through pluggy ----------------------------------------------------------------

class Spool:
    """A transport that keeps letters in a list (as a file or queue transport would)."""

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    async def send(self, envelopes: Sequence[Envelope],
                   stop: object = None) -> list[SendResult]:
        self.sent.extend(envelopes)
        return [SendResult(e) for e in envelopes]

    async def probe_sender(self, mail_from: str) -> None:
        return None

    async def close(self) -> None:
        return None


class SpoolProvider:
    """A provider whose sessions are :class:`Spool` objects."""

    def __init__(self) -> None:
        self.session = Spool()

    @hookimpl
    def mailfleet_provider(self) -> ProviderInfo:
        return ProviderInfo(id="spool", name="Spool", auth=("password", "xoauth2"))

    @hookimpl
    async def mailfleet_connect(self, server: Server) -> Spool:
        return self.session


def spool_server(plugins: Plugins, **fields: Any) -> Server:
    config = Config(servers=(ServerConfig(name="s", sender="a@example.com",
                                          host="spool.invalid", provider="spool", **fields),))
    [server] = resolve_servers(config, plugins)
    return server


def _wrapper_plugin(hook: str, seen: list[str]) -> object:
    @hookimpl(wrapper=True)
    def wrapper() -> Generator[None, Any, Any]:
        seen.append(hook)
        return (yield)

    return _module(hook, wrapper)


def _module(hook: str, function: Any) -> types.ModuleType:
    """A plugin module holding one hook implementation."""
    module = types.ModuleType(f"plugin_{hook}")
    setattr(module, hook, function)
    return module


def _drive(hook: str, plugins: Plugins, spool: SpoolProvider) -> None:
    server = spool_server(plugins, auth="xoauth2") if hook == "mailfleet_oauth_token" \
        else spool_server(plugins)
    envelope = Envelope("a@example.com", ("b@example.org",), b"Subject: s\r\n\r\nbody\r\n")
    if hook in ("mailfleet_connect", "mailfleet_oauth_token"):
        asyncio.run(plugins.connect(server))
    elif hook in ("mailfleet_send", "mailfleet_prepare_letter", "mailfleet_sign_letter"):
        asyncio.run(plugins.send(server, spool.session, [envelope]))
    elif hook == "mailfleet_sender_policy":
        plugins.sender_policy(server, SenderRequest("a@example.com"))
    elif hook == "mailfleet_diagnose":
        plugins.diagnose(server, SmtpError(Stage.DATA, "451 try later", code=451))
    elif hook == "mailfleet_parse_bounce":
        plugins.parse_bounce(b"Subject: hello\r\n\r\nnot a bounce\r\n")
    elif hook == "mailfleet_event":
        plugins.emit(DeliveryEvent(EventType.SENT, datetime.now(UTC)))
    elif hook == "mailfleet_mailbox_token":
        settings = resolve_mailbox(BouncesConfig(host="imap.example.com", login="b@example.com",
                                                 auth="xoauth2"), plugins)
        with pytest.raises(MailboxError):
            settings.oauth_token()
    # mailfleet_provider and mailfleet_validate_server ran while loading and resolving.


@pytest.mark.parametrize("hook", HOOKS)
def test_wrapper_implementation_wraps_every_hook(hook: str) -> None:
    seen: list[str] = []
    spool = SpoolProvider()
    plugins = load_plugins(extra=[("spool", spool), ("wrap", _wrapper_plugin(hook, seen))],
                           entry_points=False)
    _drive(hook, plugins, spool)
    assert hook in seen


def test_provider_declaration_is_a_hook_call_per_plugin() -> None:
    seen: list[str] = []
    plugins = load_plugins(extra=[("spool", SpoolProvider()),
                                  ("wrap", _wrapper_plugin("mailfleet_provider", seen))],
                           entry_points=False)
    assert set(plugins.providers) == {"spool"}
    # One call for each plugin that implements the hook (the spool provider), each wrapped.
    assert seen == ["mailfleet_provider"]


def test_validate_objections_of_every_plugin_are_reported_together() -> None:
    class Strict:
        @hookimpl
        def mailfleet_validate_server(self, server: Server) -> list[str]:
            return [f"servers[{server.name}].priority: policy wants 1"]

    class Picky:
        @hookimpl
        def mailfleet_validate_server(self, server: Server) -> list[str]:
            return [f"servers[{server.name}].timeout: policy wants 5"]

    plugins = load_plugins(extra=[("spool", SpoolProvider()), ("strict", Strict()),
                                  ("picky", Picky())], entry_points=False)
    with pytest.raises(ConfigError) as info:
        spool_server(plugins)
    text = "\n".join(info.value.problems)
    assert "priority: policy wants 1" in text and "timeout: policy wants 5" in text


def test_hook_deprecated_with_warn_on_impl_warns_the_plugin_at_registration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class Observer:
        @hookimpl
        def mailfleet_event(self, event: DeliveryEvent) -> None:
            return None

    opts = dict(hookspecs.mailfleet_event.mailfleet_spec)  # type: ignore[attr-defined]
    opts["warn_on_impl"] = DeprecationWarning("mailfleet_event goes; use mailfleet_observe")
    monkeypatch.setattr(hookspecs.mailfleet_event, "mailfleet_spec", opts)
    with pytest.warns(DeprecationWarning, match="use mailfleet_observe"):
        load_plugins(extra=[("observer", Observer())], entry_points=False)


# -- async hooks that can decline -------------------------------------------------------------

def _decliner(hook: str, style: str) -> object:
    if style == "def":
        def declined(*args: Any) -> None:
            return None
        impl: Any = declined
    else:
        async def declined_async(*args: Any) -> None:
            return None
        impl = declined_async
    argnames = list(inspect.signature(getattr(hookspecs, hook)).parameters)
    source = f"def {hook}({', '.join(argnames)}):\n    return impl({', '.join(argnames)})\n"
    namespace: dict[str, Any] = {"impl": impl}
    exec(source, namespace)  # noqa: S102 - a hook function with the spec's exact arguments
    return _module(hook, hookimpl(namespace[hook]))


@pytest.mark.parametrize("style", ["def", "async def"])
def test_async_connect_implementation_can_decline(style: str) -> None:
    spool = SpoolProvider()
    # Registered last, so called first: its refusal must hand over to the spool provider.
    plugins = load_plugins(extra=[("spool", spool),
                                  ("decliner", _decliner("mailfleet_connect", style))],
                           entry_points=False)
    session = asyncio.run(plugins.connect(spool_server(plugins)))
    assert session is spool.session


@pytest.mark.parametrize("style", ["def", "async def"])
def test_async_send_implementation_can_decline(style: str) -> None:
    spool = SpoolProvider()
    plugins = load_plugins(extra=[("spool", spool),
                                  ("decliner", _decliner("mailfleet_send", style))],
                           entry_points=False)
    envelope = Envelope("a@example.com", ("b@example.org",), b"Subject: s\r\n\r\nbody\r\n")
    [result] = asyncio.run(plugins.send(spool_server(plugins), spool.session, [envelope]))
    assert result.ok and spool.session.sent == [envelope]


@pytest.mark.parametrize("style", ["def", "async def"])
def test_async_oauth_token_can_decline_and_answer(style: str) -> None:
    class Tokens:
        @hookimpl
        async def mailfleet_oauth_token(self, server: Server) -> str:
            return "ya29.fresh"

    plugins = load_plugins(extra=[("spool", SpoolProvider()), ("tokens", Tokens()),
                                  ("decliner", _decliner("mailfleet_oauth_token", style))],
                           entry_points=False)
    token = asyncio.run(plugins.oauth_token(spool_server(plugins, auth="xoauth2")))
    assert token == "ya29.fresh"


# -- bounce parsing --------------------------------------------------------------------------

ACME_BOUNCE = (b"From: robot@acme.example\r\nSubject: undeliverable\r\n"
               b"X-Acme-Bounce: gone@example.org\r\n\r\nYour letter could not be delivered.\r\n")


def test_bounce_parser_plugin_answers_its_format_before_the_core_parser() -> None:
    class AcmeBounces:
        @hookimpl
        def mailfleet_parse_bounce(self, message: Any, raw: bytes) -> api.BounceReport | None:
            if message["X-Acme-Bounce"] is None:
                return None
            return api.BounceReport(kind="bounce", parser="acme", recipients=(
                api.FailedRecipient(str(message["X-Acme-Bounce"]), hard=True),))

    plugins = load_plugins(extra=[("acme", AcmeBounces())])
    report = plugins.parse_bounce(ACME_BOUNCE)
    assert (report.kind, report.parser) == ("bounce", "acme")
    assert [r.address for r in report.recipients] == ["gone@example.org"]
    other = plugins.parse_bounce(b"Subject: hello\r\n\r\nnot a bounce\r\n")
    assert (other.kind, other.parser) == ("not-bounce", "core")  # declined: the core answered


def test_a_failing_bounce_parser_plugin_falls_back_to_the_core_parser(
        caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @hookimpl
        def mailfleet_parse_bounce(self, message: Any, raw: bytes) -> None:
            raise RuntimeError("parser bug")

    report = load_plugins(extra=[("broken", Broken())]).parse_bounce(ACME_BOUNCE)
    assert report.parser == "core" and "parser bug" in caplog.text


# -- hooks that compose -----------------------------------------------------------------------

@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def test_dkim_and_a_third_party_header_both_apply(
        smtp: FakeSMTP, dkim_key: tuple[Path, bytes]) -> None:
    key_file, txt = dkim_key

    class Campaign:
        @hookimpl
        def mailfleet_prepare_letter(self, server: Server, letter: OutgoingLetter) -> None:
            letter.add_header("List-Unsubscribe", "<mailto:unsubscribe@shop.example>")

    plugins = load_plugins(extra=[("campaign", Campaign())])
    config = Config(servers=(ServerConfig(
        name="local", kind="internal", sender="news@shop.example", host="127.0.0.1",
        port=smtp.port, security=Security.NONE, timeout=10,
        options={"dkim_selector": "mail", "dkim_domain": "shop.example",
                 "dkim_key_file": str(key_file)}),))
    fleet = Fleet(config, plugins)
    asyncio.run(fleet.send_one(fleet.servers[0], to="a@example.org", subject="Hi", text="x"))
    [message] = smtp.wait_for_messages(1)
    assert message.message["List-Unsubscribe"] == "<mailto:unsubscribe@shop.example>"
    assert message.data.startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return txt if name.rstrip(b".") == b"mail._domainkey.shop.example" else b""

    assert dkim.verify(message.data, dnsfunc=dns)  # the signature covers the added header
    signature = message.message["DKIM-Signature"].replace(" ", "").replace("\n", "")
    assert "list-unsubscribe" in signature.lower()


def test_outgoing_letter_refuses_header_injection() -> None:
    letter = OutgoingLetter("a@example.com", ("b@example.org",), b"Subject: s\r\n\r\nx")
    with pytest.raises(ValueError, match="CR, LF"):
        letter.add_header("X-Note", "one\r\nBcc: victim@example.org")


# -- provider options, detection by host, mailbox auth ----------------------------------------

def mailru_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"servers": [{"name": "box", "sender": "box@mail.ru", "password_env": "UNSET_PW",
                         "options": options}]}


def test_unknown_provider_option_is_refused_with_the_key_path_and_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        Fleet(parse_config(mailru_config({"ratelimit_block_second": 60}), "fleet.toml"))
    text = "\n".join(info.value.problems)
    assert "servers[box].options.ratelimit_block_second: unknown key" in text
    assert "did you mean ratelimit_block_seconds?" in text


def test_bad_provider_option_value_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as info:
        Fleet(parse_config(mailru_config({"ratelimit_block_seconds": -5})))
    text = "\n".join(info.value.problems)
    assert "servers[box].options.ratelimit_block_seconds: expected a positive number" in text


def test_good_provider_options_reach_the_plugin_typed() -> None:
    fleet = Fleet(parse_config(mailru_config({"ratelimit_block_seconds": 90})))
    assert fleet.servers[0].provider_options.ratelimit_block_seconds == 90


def test_options_for_a_provider_without_options_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"servers\[x\]\.options: provider 'generic' takes "
                                          r"no options"):
        Fleet(parse_config({"servers": [{"name": "x", "sender": "a@corp.example",
                                         "host": "smtp.corp.example", "options": {"a": 1}}]}))


def test_provider_is_detected_by_smtp_host_with_a_corporate_login() -> None:
    fleet = Fleet(parse_config({"servers": [{
        "name": "corp", "sender": "sales@company.example", "login": "sales@company.example",
        "host": "smtp.yandex.ru", "password_env": "UNSET_PW"}]}))
    [server] = fleet.servers
    assert server.provider == "yandex"
    assert (server.port, server.security) == (465, Security.SSL)


def test_host_detection_beats_the_address_domain() -> None:
    plugins = load_plugins()
    assert plugins.provider_for(None, "me@yandex.ru", host="smtp.mail.ru") == "mailru"
    assert plugins.provider_for(None, "me@yandex.ru", host="smtp.corp.example") == "yandex"
    assert plugins.provider_for(None, "me@corp.example", host="SMTP.Gmail.com") == "gmail"


def test_mailbox_token_comes_from_the_plugins() -> None:
    class Tokens:
        @hookimpl
        def mailfleet_mailbox_token(self, mailbox: api.MailboxSettings) -> str | None:
            return f"token-for-{mailbox.login}" if mailbox.protocol == "imap" else None

    plugins = load_plugins(extra=[("tokens", Tokens())])
    config = BouncesConfig(login="bounces@yandex.ru", auth="xoauth2")
    settings = resolve_mailbox(config, plugins)
    assert settings.host == "imap.yandex.ru"  # no password needed with xoauth2
    assert settings.oauth_token() == "token-for-bounces@yandex.ru"
    pop3 = resolve_mailbox(BouncesConfig(login="bounces@yandex.ru", auth="xoauth2",
                                         protocol="pop3"), plugins)
    with pytest.raises(MailboxError, match="mailfleet_mailbox_token"):
        pop3.oauth_token()


# -- tracing ----------------------------------------------------------------------------------

def test_trace_prints_each_hook_call_and_answer_with_secrets_masked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Tokens:
        @hookimpl
        def mailfleet_oauth_token(self, server: Server) -> str:
            return "ya29.very-secret"

    monkeypatch.setenv("MAILFLEET_TRACE_PLUGINS", "1")
    spool = SpoolProvider()
    plugins = load_plugins(extra=[("spool", spool), ("tokens", Tokens())], entry_points=False)
    server = spool_server(plugins, auth="xoauth2")
    asyncio.run(plugins.connect(server))
    plugins.diagnose(server, SmtpError(Stage.DATA, "451 try later", code=451))
    err = capsys.readouterr().err
    assert "mailfleet_oauth_token(server=" in err and "-> tokens answered ***" in err
    assert "mailfleet_connect(" in err and "oauth_token=***" in err
    assert "-> spool answered" in err
    assert "mailfleet_diagnose(" in err and "-> generic answered Diagnosis(" in err
    assert "very-secret" not in err
