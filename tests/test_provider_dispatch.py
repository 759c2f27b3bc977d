"""Provider diagnoses driving the dispatcher: block, requeue, fail over, pause (real SMTP)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mailfleet.clock import FakeClock
from mailfleet.config import parse_config
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import Template
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.retry import RetryPolicy
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

TEMPLATE = Template(subject="Hello {{ name }}", text="Dear {{ name }}\n", sender="news@example.net")
PEOPLE = [{"email": f"user{i}@dest.test", "name": f"User {i}"} for i in range(1, 6)]


def entry(name: str, smtp: FakeSMTP, certs: TLSCerts, sender: str, priority: int,
          **extra: Any) -> dict[str, Any]:
    smtp.users = {sender: "app-password"}
    return {"name": name, "sender": sender, "host": "127.0.0.1", "port": smtp.tls_port,
            "security": "ssl", "password": "app-password", "ca_file": str(certs.ca_file),
            "timeout": 10.0, "connections": 1, "priority": priority, **extra}


def run(tmp_path: Path, entries: list[dict[str, Any]]) -> tuple[SqliteStore, FakeClock, str]:
    store_path = tmp_path / "store.db"
    fleet = Fleet(parse_config({"deployment": {"store": str(store_path)},
                                "servers": entries}), load_plugins())
    store = SqliteStore(store_path)
    clock = FakeClock()
    mailing = create_mailing(store, TEMPLATE, PEOPLE, clock=clock).id
    Dispatcher(fleet, store, clock=clock, batch_size=5,
               retry=RetryPolicy(connect_attempts=1)).run(until_idle=True)
    return store, clock, mailing


def test_yandex_sending_limit_blocks_the_server_24h_and_the_letters_go_via_the_next(
        tmp_path: Path, smtp_factory: Callable[..., FakeSMTP], tls_certs: TLSCerts) -> None:
    yandex, backup = smtp_factory(), smtp_factory()
    yandex.add_rule("DATA", "554 5.7.1 Message rejected under suspicion of SPAM; "
                    "http://help.yandex.ru/mail/spam/sending-limits.xml")
    store, clock, _ = run(tmp_path, [
        entry("yandex", yandex, tls_certs, "ivan@yandex.ru", 10, provider="yandex"),
        entry("backup", backup, tls_certs, "b@example.org", 20)])
    status = store.quota("yandex", load_plugins().info("yandex").limits, clock.now())  # type: ignore[union-attr]
    assert status.blocked_until is not None
    assert status.blocked_until - clock.now() >= 86400 - 60
    assert "sending limit" in (status.blocked_reason or "")
    assert sorted(r for m in backup.messages for r in m.rcpt_tos) == sorted(
        p["email"] for p in PEOPLE)
    assert not yandex.messages
    data_attempts = [e for e in yandex.events if e.stage == "DATA"]
    assert len(data_attempts) == 1  # stopped at once: no further attempt extends the block


def test_mailru_disabled_account_pauses_the_mailings_and_tells_the_user(
        tmp_path: Path, smtp_factory: Callable[..., FakeSMTP], tls_certs: TLSCerts) -> None:
    mailru = smtp_factory()
    mailru.add_rule("DATA", "550 message sending for this account is disabled")
    store, _, mailing = run(tmp_path, [
        entry("mailru", mailru, tls_certs, "olga@mail.ru", 10, provider="mailru")])
    record = store.get_mailing(mailing)
    assert record is not None and record.state == "paused"
    assert "e.mail.ru" in record.state_reason  # the next step reaches the user
    assert not mailru.messages
