"""The command line: JSON keys scripts rely on, readable output, and exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fleet_config import server_entry

from mailfleet.cli.main import main
from mailfleet.store import Store
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.pytest_plugin import SMTP_PASSWORD, SMTP_USER
from mailfleet_testing.smtpd import FakeSMTP


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def write_config(path: Path, *servers: dict[str, Any], saas: bool = False) -> Path:
    lines = [f"[deployment]\nsaas = {toml_value(saas)}\n"]
    for server in servers:
        lines.append("[[servers]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in server.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config(tmp_path: Path, smtp: FakeSMTP, tls_certs: TLSCerts,
           monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", SMTP_PASSWORD)
    return write_config(tmp_path / "mailfleet.toml",
                        server_entry(smtp, tls_certs, name="primary", priority=1),
                        server_entry(smtp, tls_certs, name="backup", security="starttls",
                                     priority=2))


def test_plugins_json_lists_id_distribution_version_domains(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plugins", "--json")
    rows = {row["id"]: row for row in json.loads(out)}
    assert code == 0
    assert {"id", "distribution", "version", "domains"} <= set(rows["yandex"])
    assert "ya.ru" in rows["yandex"]["domains"]
    assert rows["mailru"]["distribution"] == "mailfleet-mailru"


def test_servers_list_json_shows_presets_applied(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", {"name": "g", "sender": "me@gmail.com",
                                              "password_env": "X"})
    code, out, _ = run(capsys, "--config", str(path), "servers", "list", "--json")
    [row] = json.loads(out)
    assert code == 0
    assert {k: row[k] for k in ("name", "kind", "provider", "host", "port", "security",
                                "login", "sender")} == {
        "name": "g", "kind": "external", "provider": "gmail", "host": "smtp.gmail.com",
        "port": 465, "security": "ssl", "login": "me@gmail.com", "sender": "me@gmail.com"}


def test_servers_check_ok_for_every_server(capsys: pytest.CaptureFixture[str], config: Path,
                                           smtp: FakeSMTP) -> None:
    code, out, _ = run(capsys, "--config", str(config), "servers", "check", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [(r["name"], r["ok"]) for r in rows] == [("primary", True), ("backup", True)]
    assert set(rows[0]) >= {"name", "ok", "stage", "code", "enhanced_status", "reply",
                            "classification", "diagnosis"}
    assert not smtp.messages  # a probe sends nothing
    assert sum(e.stage == "MAIL" for e in smtp.events) == 2


def test_servers_check_failure_gives_stage_reply_diagnosis_and_exit_1(
        capsys: pytest.CaptureFixture[str], config: Path, smtp: FakeSMTP) -> None:
    smtp.add_rule("MAIL", "553 5.7.1 Sender address rejected: not owned by auth user.")
    code, out, _ = run(capsys, "--config", str(config), "servers", "check", "primary",
                       "--json")
    [row] = json.loads(out)
    assert code == 1
    assert (row["ok"], row["stage"], row["code"], row["enhanced_status"],
            row["classification"]) == (False, "mail_from", 553, "5.7.1", "server")
    assert "not owned by auth user" in row["reply"] and row["diagnosis"]


def test_servers_check_table_is_readable(capsys: pytest.CaptureFixture[str], config: Path,
                                         smtp: FakeSMTP) -> None:
    smtp.add_rule("AUTH", "535 5.7.8 Authentication credentials invalid")
    code, out, _ = run(capsys, "--config", str(config), "servers", "check", "backup")
    assert code == 1
    assert "backup: FAILED at auth (server) 535 5.7.8" in out and "diagnosis:" in out


def test_send_json_reports_message_id_server_and_senders(
        capsys: pytest.CaptureFixture[str], config: Path, smtp: FakeSMTP) -> None:
    code, out, _ = run(capsys, "--config", str(config), "send", "--server", "primary",
                       "--to", "reader@example.org", "--subject", "Hi", "--text", "Hello",
                       "--html", "<b>Hello</b>", "--json")
    data = json.loads(out)
    assert code == 0
    assert {k: data[k] for k in ("ok", "server", "from", "envelope_from")} == {
        "ok": True, "server": "primary", "from": SMTP_USER, "envelope_from": SMTP_USER}
    [received] = smtp.messages
    assert received.message["Message-ID"] == data["message_id"]
    assert received.rcpt_tos == ["reader@example.org"]


def test_send_failure_exits_1_with_the_diagnosis(capsys: pytest.CaptureFixture[str],
                                                  config: Path, smtp: FakeSMTP) -> None:
    smtp.add_rule("RCPT", "550 5.1.1 <x@example.org>: user unknown")
    code, out, _ = run(capsys, "--config", str(config), "send", "--server", "primary",
                       "--to", "x@example.org", "--subject", "s", "--text", "t", "--json")
    data = json.loads(out)
    assert code == 1
    assert (data["ok"], data["stage"], data["classification"]) == (False, "rcpt_to",
                                                                   "permanent")


def test_header_injection_in_subject_exits_2_before_connecting(
        capsys: pytest.CaptureFixture[str], config: Path, smtp: FakeSMTP) -> None:
    code, _, err = run(capsys, "--config", str(config), "send", "--server", "primary",
                       "--to", "x@example.org", "--subject", "a\r\nBcc: y@example.org",
                       "--text", "t")
    assert code == 2 and "CR, LF" in err
    assert not smtp.events


def test_bad_recipient_address_exits_2(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, _, err = run(capsys, "--config", str(config), "send", "--server", "primary",
                       "--to", "not an address", "--subject", "s", "--text", "t")
    assert code == 2 and "not an e-mail address" in err


def test_bad_config_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml", {"name": "x", "sender": "a@example.com",
                                              "host": "h.example.com", "prot": 465})
    code, _, err = run(capsys, "--config", str(path), "servers", "list")
    assert code == 2 and "servers[0].prot: unknown key" in err


def test_unknown_server_name_exits_2(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, _, err = run(capsys, "--config", str(config), "servers", "check", "nope")
    assert code == 2 and "primary, backup" in err


def test_missing_option_is_a_usage_error_with_exit_2(capsys: pytest.CaptureFixture[str],
                                                     config: Path) -> None:
    code, _, _ = run(capsys, "--config", str(config), "send", "--server", "primary")
    assert code == 2


def test_installed_console_script_runs(config: Path) -> None:
    script = Path(sys.executable).parent / "mailfleet"
    result = subprocess.run([str(script), "--config", str(config), "servers", "list", "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert [row["name"] for row in json.loads(result.stdout)] == ["primary", "backup"]


def test_secret_never_printed_by_any_command(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                             smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    secret = "Inline-Only-Secret-77"
    smtp.users = {SMTP_USER: secret}
    path = write_config(tmp_path / "c.toml", server_entry(smtp, tls_certs, password_env=None,
                                                         password=secret))
    outputs = []
    for args in (["servers", "list", "--json"], ["servers", "check"],
                 ["send", "--server", "test", "--to", "a@example.org", "--subject", "s",
                  "--text", "t", "--json"]):
        _, out, err = run(capsys, "--config", str(path), *args)
        outputs.append(out + err)
    smtp.users = {SMTP_USER: "different"}
    _, out, err = run(capsys, "--config", str(path), "servers", "check", "--json")
    outputs.append(out + err)
    assert all(secret not in text for text in outputs)
    assert '"ok": false' in outputs[-1]


def block_primary(store: Store) -> None:
    """Block the server ``primary`` for an hour after a provider's limit reply."""
    try:
        store.block_server("primary", time.time() + 3600, "550 5.4.5 Daily user sending limit")
    finally:
        store.close()


def check_primary(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, Any]:
    """``servers check primary --json``: the exit code and the one row."""
    code, out, _ = run(capsys, "--config", str(config), "servers", "check", "primary", "--json")
    [row] = json.loads(out)
    return code, row


def test_servers_check_does_not_contact_a_blocked_server_until_forced_or_unblocked(
        capsys: pytest.CaptureFixture[str], config: Path, smtp: FakeSMTP) -> None:
    from mailfleet.store.sqlite import SqliteStore

    block_primary(SqliteStore(config.parent / "mailfleet.db"))  # the default store
    code, row = check_primary(capsys, config)
    assert code == 1 and not smtp.events
    assert (row["ok"], row["classification"]) == (False, "quota")
    assert "Daily user sending limit" in row["reply"] and "blocked until" in row["diagnosis"]
    code, out, _ = run(capsys, "--config", str(config), "servers", "check", "primary",
                       "--force", "--json")
    assert code == 0 and json.loads(out)[0]["ok"] and smtp.events
    code, _, _ = run(capsys, "--config", str(config), "servers", "unblock", "primary")
    assert code == 0
    code, out, _ = run(capsys, "--config", str(config), "servers", "check", "primary", "--json")
    assert code == 0 and json.loads(out)[0]["ok"]


def test_servers_list_json_shows_the_effective_timeout_gmail_preset_over_a_minute(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.toml",
                        {"name": "g", "sender": "me@gmail.com", "password_env": "X"},
                        {"name": "y", "sender": "me@yandex.ru", "password_env": "X",
                         "timeout": 20.0},
                        {"name": "e", "sender": "a@example.com", "host": "smtp.example.com"})
    code, out, _ = run(capsys, "--config", str(path), "servers", "list", "--json")
    timeouts = {row["name"]: row["timeout"] for row in json.loads(out)}
    assert code == 0
    assert timeouts == {"g": 300.0, "y": 20.0, "e": 30.0}


def test_servers_check_reads_blocks_from_a_postgresql_store_too(
        capsys: pytest.CaptureFixture[str], config: Path, smtp: FakeSMTP, pg_dsn: str) -> None:
    from mailfleet.store.postgres import PostgresStore

    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[deployment]\n", f"[deployment]\nstore = {pg_dsn!r}\n", 1),
                      encoding="utf-8")
    block_primary(PostgresStore(pg_dsn))
    code, row = check_primary(capsys, config)
    assert code == 1 and not smtp.events
    assert (row["ok"], row["classification"]) == (False, "quota")
