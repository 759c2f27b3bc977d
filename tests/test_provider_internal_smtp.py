"""Internal SMTP plugin: localhost preset, SaaS rule, sendmail binary, DKIM signing.

The local MTA is a private Postfix (fixture ``postfix``, skipped when Postfix cannot run
here) relaying to the fake SMTP server; the same DKIM path is also proven against aiosmtpd
(FakeSMTP) directly, so it always runs.
"""

from __future__ import annotations

import asyncio
import base64
import email
import json
import stat
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fleet_config import resolve_with

from mailfleet.config import Config, Deployment, ServerConfig
from mailfleet.errors import Classification, ConfigError, SmtpError
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Security
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.sender import SenderRequest
from mailfleet.sending.servers import Server, resolve_servers
from mailfleet_testing.postfix import PostfixServer
from mailfleet_testing.smtpd import FakeSMTP

SENDER = "noreply@shop.example"


def resolve(deployment: Deployment | None = None, **fields: object) -> list[Server]:
    return resolve_with({"name": "local", "kind": "internal", "sender": SENDER}, deployment,
                        **fields)


def fleet_with(**fields: object) -> Fleet:
    fields.setdefault("name", "local")
    fields.setdefault("kind", "internal")
    fields.setdefault("sender", SENDER)
    fields.setdefault("timeout", 10)
    return Fleet(Config(servers=(ServerConfig(**fields),)))  # type: ignore[arg-type]


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    """A fresh RSA key file and the TXT record publishing its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    path = tmp_path / "dkim.key"
    path.write_bytes(pem)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def verify(data: bytes, txt: bytes) -> bool:
    """dkimpy's verify with DNS answered from ``txt`` for mail._domainkey.shop.example."""
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        del timeout
        return txt if name.rstrip(b".") == b"mail._domainkey.shop.example" else b""
    return bool(dkim.verify(data, dnsfunc=dnsfunc))


def dkim_options(key_file: Path) -> dict[str, str]:
    return {"dkim_selector": "mail", "dkim_domain": "shop.example",
            "dkim_key_file": str(key_file)}


# -- presets, sender rule, SaaS ---------------------------------------------------------------

def test_sender_alone_resolves_to_localhost_25_without_auth_or_tls() -> None:
    [server] = resolve()
    assert server.provider == "internal_smtp"
    assert (server.host, server.port, server.security) == ("localhost", 25, Security.NONE)
    assert (server.login, server.auth) == (None, "none")
    assert server.allow_sender_override is False


def test_sender_substitution_is_off_by_default_and_allowed_when_ticked() -> None:
    plugins = load_plugins()
    [plain] = resolve_servers(Config(servers=(ServerConfig(
        name="local", kind="internal", sender=SENDER),)), plugins)
    kept = plugins.sender_policy(plain, SenderRequest("sales@brand.example", "Brand"))
    assert (kept.from_addr, kept.substituted) == (SENDER, True)
    [server] = resolve_servers(Config(servers=(ServerConfig(
        name="local", kind="internal", sender=SENDER, allow_sender_override=True),)), plugins)
    decision = plugins.sender_policy(server, SenderRequest("sales@brand.example", "Brand",
                                                           "bounce+1@shop.example"))
    assert (decision.from_addr, decision.envelope_from) == ("sales@brand.example",
                                                            "bounce+1@shop.example")
    assert not decision.substituted


def test_saas_refuses_an_internal_server_that_is_not_the_operators() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(Deployment(saas=True))
    [problem] = info.value.problems
    assert "operator_default = true" in problem and "465" in problem and "587" in problem


def test_saas_accepts_the_operators_internal_server() -> None:
    [server] = resolve(Deployment(saas=True), operator_default=True)
    assert server.port == 25


# -- sendmail binary --------------------------------------------------------------------------

def fake_sendmail(tmp_path: Path, exit_code: int = 0, stderr: str = "") -> tuple[Path, Path]:
    """A real executable that records its argv and stdin as JSON, then exits."""
    out = tmp_path / "sendmail-calls.jsonl"
    script = tmp_path / "sendmail"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"with open({str(out)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], "
        "'stdin': sys.stdin.buffer.read().decode('latin-1')}) + '\\n')\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_code})\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, out


def calls(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_sendmail_option_pipes_each_letter_to_the_binary(tmp_path: Path) -> None:
    script, out = fake_sendmail(tmp_path)
    fleet = fleet_with(options={"sendmail": str(script)})
    assert asyncio.run(fleet.check(fleet.servers[0])).ok
    sent = asyncio.run(fleet.send_one(fleet.servers[0], to="-rcpt@example.org", subject="Hi",
                                      text="line one\n.\nline three"))
    [call] = calls(out)
    assert call["argv"] == ["-i", "-f", SENDER, "--", "-rcpt@example.org"]
    stdin = str(call["stdin"])
    assert "\r\n" not in stdin
    message = email.message_from_string(stdin)
    assert message["Subject"] == "Hi"
    assert message["Message-ID"] == sent.message_id
    assert "\n.\n" in message.get_payload()


@pytest.mark.parametrize(("code", "classification", "words"), [
    (75, Classification.TRANSIENT, "retried later"),
    (67, Classification.PERMANENT, "check the recipient"),
    (78, Classification.SERVER, "MTA's log"),
])
def test_sendmail_exit_status_decides_the_classification(
        tmp_path: Path, code: int, classification: Classification, words: str) -> None:
    script, _ = fake_sendmail(tmp_path, exit_code=code, stderr="queue file write error\n")
    fleet = fleet_with(options={"sendmail": str(script)})
    with pytest.raises(SmtpError) as info:
        asyncio.run(fleet.send_one(fleet.servers[0], to="a@example.org", subject="s", text="t"))
    assert info.value.classification is classification
    assert f"exited with status {code}: queue file write error" in info.value.reply
    assert info.value.diagnosis is not None and words in info.value.diagnosis.next_step


def test_validate_refuses_a_sendmail_path_that_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"options.sendmail: .*does not exist"):
        resolve(options={"sendmail": str(tmp_path / "missing")})


# -- DKIM -------------------------------------------------------------------------------------

def test_dkim_signature_through_sendmail_verifies_with_the_published_key(
        tmp_path: Path, dkim_key: tuple[Path, bytes]) -> None:
    key_file, txt = dkim_key
    script, out = fake_sendmail(tmp_path)
    fleet = fleet_with(options={"sendmail": str(script), **dkim_options(key_file)})
    asyncio.run(fleet.send_one(fleet.servers[0], to="a@example.org", subject="Signed",
                               text="body"))
    [call] = calls(out)
    data = str(call["stdin"]).encode("latin-1")
    assert data.startswith(b"DKIM-Signature:")
    assert b"d=shop.example" in data and b"s=mail" in data
    assert verify(data, txt)
    assert not verify(data.replace(b"body", b"tampered"), txt)


def test_dkim_signature_over_smtp_to_aiosmtpd_verifies(
        smtp: FakeSMTP, dkim_key: tuple[Path, bytes]) -> None:
    key_file, txt = dkim_key
    fleet = fleet_with(host="127.0.0.1", port=smtp.port, security=Security.NONE,
                       options=dkim_options(key_file))
    asyncio.run(fleet.send_one(fleet.servers[0], to="a@example.org", subject="Signed",
                               text="body"))
    [message] = smtp.wait_for_messages(1)
    assert message.login is None
    assert verify(message.data, txt)


def test_dkim_signature_survives_a_real_postfix_relay(
        postfix: PostfixServer, smtp: FakeSMTP, dkim_key: tuple[Path, bytes]) -> None:
    key_file, txt = dkim_key
    fleet = fleet_with(host="127.0.0.1", port=postfix.port, security=Security.NONE,
                       options=dkim_options(key_file))
    asyncio.run(fleet.send_one(fleet.servers[0], to="someone@example.org", subject="Via Postfix",
                               text="relayed body"))
    [message] = smtp.wait_for_messages(1, timeout=30)
    assert message.rcpt_tos == ["someone@example.org"]
    assert b"Received:" in message.data  # it really went through Postfix
    assert verify(message.data, txt)


def test_validate_refuses_incomplete_or_unreadable_dkim_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(options={"dkim_selector": "mail"})
    text = "\n".join(info.value.problems)
    assert "options.dkim_domain: required" in text and "options.dkim_key_file: required" in text
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM RSA private key"):
        resolve(options={**dkim_options(bad)})
