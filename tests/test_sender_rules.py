"""Provider sender rules as data, applied by the core's one sender policy
(mailfleet.sending.sender): a server's sender outside what the login may send as is refused
at load (or, where the provider rewrites, replaced by the login with the reason); a mailing's
fixed sender on such a server is replaced by the login; substitution is off by default
everywhere."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fleet_config import provider_fleet, resolve_with, server_entry

from mailfleet.cli.main import main
from mailfleet.errors import ConfigError
from mailfleet.plugins.manager import load_plugins
from mailfleet.secrets import Secret
from mailfleet.sending.sender import SenderRequest
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.pytest_plugin import SMTP_PASSWORD, SMTP_USER
from mailfleet_testing.smtpd import FakeSMTP


def problems(**fields: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve_with({"name": "s", "password": Secret("pw")}, **fields)
    return info.value.problems


@pytest.mark.parametrize(("provider", "login"), [("rambler", "me@rambler.ru"),
                                                 ("yandex", "me@yandex.ru"),
                                                 ("mailru", "me@mail.ru")])
def test_a_foreign_sender_is_refused_at_load_naming_the_key_and_the_fix(
        provider: str, login: str) -> None:
    [problem] = problems(provider=provider, login=login, sender="news@shop.example")
    assert problem.startswith("<memory>: servers[s].sender: ")
    assert f'set sender = "{login}"' in problem
    assert "news@shop.example is not the login" in problem


def test_rambler_refuses_aliases_yandex_takes_a_declared_alias() -> None:
    [problem] = problems(provider="rambler", login="me@rambler.ru", sender="me@rambler.ru",
                         aliases=("other@rambler.ru",))
    assert problem.startswith("<memory>: servers[s].aliases: Rambler sends only from the login")
    [server] = resolve_with({"name": "s", "password": Secret("pw")}, provider="yandex",
                            login="me@yandex.ru", sender="shop@yandex.ru",
                            aliases=("shop@yandex.ru",))
    assert server.sender == "shop@yandex.ru"


def test_a_provider_that_rewrites_the_from_sends_from_the_login_and_says_why() -> None:
    [server] = resolve_with({"name": "s", "password": Secret("pw")}, provider="gmail",
                            login="me@gmail.com", sender="news@shop.example")
    decision = load_plugins().sender_policy(server, SenderRequest(""))
    assert (decision.from_addr, decision.envelope_from, decision.substituted) == (
        "me@gmail.com", "me@gmail.com", True)
    assert "Gmail rewrites" in decision.reason and "the login me@gmail.com" in decision.reason


def test_a_mailings_fixed_sender_on_rambler_is_replaced_by_the_login() -> None:
    [server] = resolve_with({"name": "s", "password": Secret("pw")}, provider="rambler",
                            login="me@rambler.ru", sender="me@rambler.ru")
    decision = load_plugins().sender_policy(server, SenderRequest("news@shop.example", "Shop",
                                                                  "b+mf-1@shop.example"))
    assert (decision.from_addr, decision.envelope_from) == ("me@rambler.ru", "me@rambler.ru")
    assert "replaced by me@rambler.ru" in decision.reason


@pytest.mark.parametrize("provider", [None, "internal_smtp"])
def test_sender_substitution_is_off_unless_the_operator_ticks_it(provider: str | None) -> None:
    fields: dict[str, Any] = {"name": "s", "sender": "srv@example.com"}
    fields |= ({"host": "smtp.example.com"} if provider is None
               else {"kind": "internal", "provider": provider})
    [server] = resolve_with(fields)
    assert server.allow_sender_override is False
    decision = load_plugins().sender_policy(server, SenderRequest("news@brand.example"))
    assert decision.from_addr == "srv@example.com"


def test_rambler_server_sends_a_mailing_sender_from_the_login_over_smtp(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    box = "me@rambler.ru"
    fleet = provider_fleet(smtp, tls_certs, provider="rambler", box=box, server_password="pw")
    sent = asyncio.run(fleet.send_one(fleet.servers[0], to="rcpt@example.org", subject="s",
                                      text="t", from_addr="news@shop.example"))
    [received] = smtp.messages
    assert received.mail_from == box and box in received.message["From"]
    assert sent.sender.substituted


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_refuses_a_rambler_config_with_a_foreign_sender(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[servers]]\nname = "r"\nprovider = "rambler"\nlogin = "me@rambler.ru"\n'
                    'sender = "news@shop.example"\npassword_env = "P"\n', encoding="utf-8")
    code, _, err = run(capsys, "--config", str(path), "servers", "list")
    assert code == 2
    assert 'servers[r].sender: Rambler sends only from the login' in err
    assert 'set sender = "me@rambler.ru"' in err and "Traceback" not in err


def test_generic_server_without_override_sends_from_its_own_address(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, smtp: FakeSMTP,
        tls_certs: TLSCerts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", SMTP_PASSWORD)
    entry = server_entry(smtp, tls_certs, name="own")
    path = tmp_path / "c.toml"
    path.write_text("[[servers]]\n" + "\n".join(f"{k} = {json.dumps(v)}"
                                                 for k, v in entry.items()), encoding="utf-8")
    code, out, _ = run(capsys, "--config", str(path), "send", "--server", "own", "--to",
                       "r@example.org", "--subject", "s", "--text", "t", "--from",
                       "news@brand.example", "--json")
    assert code == 0, out
    data = json.loads(out)
    [received] = smtp.messages
    assert data["from"] == SMTP_USER and received.mail_from == SMTP_USER
    assert SMTP_USER in received.message["From"]
    assert "allow_sender_override = false" in data["sender_reason"]


PUBLIC = {"gmail": "a@gmail.com", "google-workspace": "a@corp.example",
          "yandex": "a@yandex.ru", "mailru": "a@mail.ru", "rambler": "a@rambler.ru"}


@pytest.mark.parametrize("provider", sorted(PUBLIC))
def test_every_provider_states_its_sender_rule_and_the_core_applies_it(provider: str) -> None:
    """The conformance of the sender rule: provider data only, one policy for all."""
    info = load_plugins().info(provider)
    assert info is not None and info.sender_rule and info.timeout > 0
    login = PUBLIC[provider]
    fields = {"name": "s", "password": Secret("pw"), "provider": provider, "login": login,
              "sender": "news@shop.example"}
    if info.foreign_sender == "refused":
        with pytest.raises(ConfigError, match=r"servers\[s\]\.sender: "):
            resolve_with(fields)
        return
    [server] = resolve_with(fields)
    decision = load_plugins().sender_policy(server, SenderRequest("news@shop.example"))
    assert (decision.from_addr, decision.substituted) == (login, True)
    assert info.sender_rule in decision.reason


def test_a_line_separator_in_a_servers_sender_name_is_a_config_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[servers]]\nname = "e"\nsender = "a@example.com"\nhost = "h.example.com"\n'
                    'sender_name = "Shop\\u2028Bcc: x@evil.example"\n', encoding="utf-8")
    code, _, err = run(capsys, "--config", str(path), "servers", "list")
    assert code == 2 and "servers[0].sender_name" in err and "U+2028" in err
    assert "Traceback" not in err
