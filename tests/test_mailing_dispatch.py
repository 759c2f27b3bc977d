"""The dispatcher against real aiosmtpd servers, with an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
import test_mailing_support as support
from test_mailing_support import (
    Recorder,
    dispatcher,
    make_fleet,
    new_mailing,
    recipients_of,
    server_entry,
)

from mailfleet.clock import FakeClock
from mailfleet.errors import Classification, Diagnosis, SmtpError
from mailfleet.hookspecs import hookimpl
from mailfleet.mailings.template import Template
from mailfleet.plugins.manager import load_plugins
from mailfleet.sending.servers import Server
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

certs = support.certs
servers = support.servers



def setup(tmp_path: Path, entries: list[dict[str, object]], recorder: Recorder | None = None
          ) -> tuple[SqliteStore, FakeClock, object]:
    db = tmp_path / "mailfleet.db"
    return SqliteStore(db), FakeClock(), make_fleet(entries, db, recorder)


def test_fill_first_uses_servers_in_priority_order_until_each_limit_is_spent(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, c = servers
    store, clock, fleet = setup(tmp_path, [
        server_entry("a", a, certs, limits={"per_hour": 4}, connections=2),
        server_entry("b", b, certs, limits={"per_hour": 3}, connections=2),
        server_entry("c", c, certs, limits={"per_hour": 100})])
    new_mailing(store, 10, clock)
    report = dispatcher(fleet, store, clock, batch_size=2).run(until_idle=True)  # type: ignore[arg-type]
    assert report.sent == 10
    assert sorted(recipients_of(a)) == sorted(f"user{i}@dest.test" for i in range(1, 5))
    assert sorted(recipients_of(b)) == sorted(f"user{i}@dest.test" for i in range(5, 8))
    assert sorted(recipients_of(c)) == sorted(f"user{i}@dest.test" for i in range(8, 11))


def test_hour_and_day_limits_are_never_exceeded_and_waiting_letters_resume_by_themselves(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    store, clock, fleet = setup(tmp_path, [
        server_entry("a", a, certs, limits={"per_hour": 3, "per_day": 5})])
    created = new_mailing(store, 8, clock)
    first = dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    assert (first.sent, first.waiting) == (3, 5)
    assert first.resume_at == clock.now() + 3600
    quota = store.quota("a", fleet.server("a").limits, clock.now())  # type: ignore[attr-defined]
    assert (quota.hour.used, quota.hour.remaining, quota.day.remaining) == (3, 0, 2)
    start = clock.now()
    full = dispatcher(fleet, store, clock).run()  # type: ignore[arg-type]
    assert full.sent == 5 and full.waiting == 0
    sent_at = sorted(at for (at,) in store.db.execute(
        "SELECT sent_at FROM letters WHERE state='sent'"))
    for t in sent_at:  # no rolling hour holds more than 3, no rolling day more than 5
        assert sum(1 for u in sent_at if t - 3600 < u <= t) <= 3
        assert sum(1 for u in sent_at if t - 86400 < u <= t) <= 5
    assert clock.now() - start >= 86400  # the last 3 letters waited for the day window
    assert store.counts(created.id) == {"sent": 8}
    assert len(a.messages) == 8


def test_calendar_hour_window_reopens_at_the_top_of_the_hour(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    store, clock, fleet = setup(tmp_path, [server_entry(
        "a", servers[0], certs,
        limits={"per_hour": 2, "window": "calendar", "timezone": "Europe/Moscow"})])
    clock.advance(30 * 60)  # 00:30 UTC
    new_mailing(store, 3, clock)
    report = dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    assert report.sent == 2
    assert report.resume_at == clock.now() + 30 * 60  # 01:00, not 01:30


def test_two_dispatchers_on_one_store_file_share_the_limit_exactly(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    db = tmp_path / "shared.db"
    entries = [server_entry("a", a, certs, limits={"per_hour": 7}, connections=3)]
    clock = FakeClock()
    one, two = SqliteStore(db), SqliteStore(db)
    new_mailing(one, 30, clock)
    first = dispatcher(make_fleet(entries, db), one, clock, batch_size=2)
    second = dispatcher(make_fleet(entries, db), two, clock, batch_size=2)

    async def both() -> tuple[int, int]:
        r1, r2 = await asyncio.gather(first.arun(until_idle=True),
                                      second.arun(until_idle=True))
        return r1.sent, r2.sent

    sent = asyncio.run(both())
    assert sum(sent) == 7
    assert len(a.messages) == 7


def test_provider_quota_reply_blocks_the_server_and_the_letter_goes_uncharged_to_the_next(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("MAIL", "550 5.7.1 Daily sending quota exceeded", times=None)
    recorder = Recorder()
    store, clock, fleet = setup(tmp_path, [server_entry("a", a, certs),
                                           server_entry("b", b, certs)], recorder)
    new_mailing(store, 5, clock)
    report = dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    assert report.sent == 5 and len(b.messages) == 5 and not a.messages
    quota = store.quota("a", fleet.server("a").limits, clock.now())  # type: ignore[attr-defined]
    assert quota.blocked_until == clock.now() + 3600
    assert "quota" in (quota.blocked_reason or "")
    assert quota.hour.used == 0  # refunded: nothing was charged to a
    assert "quota_exhausted" in recorder.types()


class CaptchaPlugin:
    @hookimpl
    def mailfleet_diagnose(self, server: Server, error: SmtpError, locale: str
                           ) -> Diagnosis | None:
        if "captcha" in error.reply:
            return Diagnosis(Classification.QUOTA, "the provider asks to solve a captcha",
                             next_step="log in to the web mail", block_seconds=600,
                             pause_mailings=True)
        return None


def test_pause_mailings_diagnosis_pauses_every_mailing_with_the_reason(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    a.add_rule("DATA", "554 5.7.1 Message rejected: spam, solve the captcha")
    db = tmp_path / "m.db"
    store, clock = SqliteStore(db), FakeClock()
    from mailfleet.config import parse_config
    from mailfleet.sending.fleet import Fleet
    fleet = Fleet(parse_config({"servers": [server_entry("a", a, certs)]}),
                  load_plugins([("captcha", CaptchaPlugin())], entry_points=False))
    created = new_mailing(store, 3, clock)
    report = dispatcher(fleet, store, clock).run(until_idle=True)
    mailing = store.get_mailing(created.id)
    assert mailing is not None and mailing.state == "paused"
    assert "captcha" in mailing.state_reason and "web mail" in mailing.state_reason
    assert report.sent == 0 and store.counts(created.id).get("queued") == 3


class AccountStoppedPlugin:
    @hookimpl
    def mailfleet_diagnose(self, server: Server, error: SmtpError, locale: str
                           ) -> Diagnosis | None:
        if "captcha" in error.reply:
            return Diagnosis(Classification.SERVER, "the account is stopped",
                             next_step="open the link", pause_mailings=True)
        return None


def test_a_reply_that_needs_a_person_blocks_the_server_until_unblocked(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("DATA", "554 5.7.1 [2] Message rejected; solve the captcha")
    store, clock = SqliteStore(tmp_path / "m.db"), FakeClock()
    from mailfleet.config import parse_config
    from mailfleet.sending.fleet import Fleet
    fleet = Fleet(parse_config({"servers": [server_entry("a", a, certs),
                                            server_entry("b", b, certs)]}),
                  load_plugins([("stopped", AccountStoppedPlugin())], entry_points=False))
    created = new_mailing(store, 3, clock)
    report = dispatcher(fleet, store, clock).run(until_idle=True)
    assert report.sent == 0 and not b.messages  # the letters wait for a person, not for b
    mailing = store.get_mailing(created.id)
    assert mailing is not None and mailing.state == "paused" and "open the link" in \
        mailing.state_reason
    blocked = store.quota("a", fleet.server("a").limits, clock.now()).blocked_until
    assert blocked is not None and blocked - clock.now() > 300 * 86_400


def test_auth_failure_fails_over_to_the_next_server(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    store, clock, fleet = setup(tmp_path, [
        server_entry("a", a, certs, password="wrong"), server_entry("b", b, certs)])
    created = new_mailing(store, 4, clock)
    report = dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    assert report.sent == 4 and len(b.messages) == 4 and not a.messages
    assert store.by_server(created.id) == {"b": 4}
    quota = store.quota("a", fleet.server("a").limits, clock.now())  # type: ignore[attr-defined]
    assert quota.blocked_until is not None and "refused the login" in (
        quota.blocked_reason or "")


def test_many_consecutive_server_failures_pause_the_mailing_and_say_why(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    from mailfleet.sending.retry import RetryPolicy
    a = servers[0]
    store, clock, fleet = setup(tmp_path, [server_entry("a", a, certs, password="wrong")])
    created = new_mailing(store, 2, clock)
    retry = RetryPolicy(connect_attempts=1, server_rest_seconds=60, max_server_failures=3)
    dispatcher(fleet, store, clock, retry=retry).run()  # type: ignore[arg-type]
    mailing = store.get_mailing(created.id)
    assert mailing is not None and mailing.state == "paused"
    assert "3 consecutive server failures" in mailing.state_reason


def test_transient_4xx_is_retried_with_backoff_on_the_same_server(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    a.add_rule("RCPT", "451 4.7.1 Greylisted, try again later", match="user2@", times=2)
    recorder = Recorder()
    store, clock, fleet = setup(tmp_path, [server_entry("a", a, certs),
                                           server_entry("b", b, certs)], recorder)
    created = new_mailing(store, 3, clock)
    report = dispatcher(fleet, store, clock).run()  # type: ignore[arg-type]
    assert report.sent == 3 and report.deferred == 2
    assert sorted(recipients_of(a)) == ["user1@dest.test", "user2@dest.test", "user3@dest.test"]
    assert not b.messages
    assert clock.slept == [60.0, 120.0]  # exponential backoff from the retry policy
    assert recorder.types().count("deferred") == 2
    letter = store.find_letter(f"{created.id}-2")
    assert letter is not None and letter.attempts == 3


def test_transient_failures_give_up_after_max_attempts_from_the_retry_table(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    a.add_rule("RCPT", "450 4.2.0 Mailbox busy", match="user1@")
    store, clock = SqliteStore(tmp_path / "m.db"), FakeClock()
    fleet = make_fleet([server_entry("a", a, certs)], tmp_path / "m.db",
                       retry={"max_attempts": 3, "backoff_initial": 10.0})
    created = new_mailing(store, 2, clock)
    report = dispatcher(fleet, store, clock).run()  # type: ignore[arg-type]
    assert (report.sent, report.failed) == (1, 1)
    assert store.counts(created.id) == {"sent": 1, "failed": 1}
    assert clock.slept == [10.0, 20.0]  # backoff from the config's [retry] table


def test_permanent_failure_fails_that_letter_only(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    a.add_rule("RCPT", "550 5.1.1 <user2@dest.test>: user unknown", match="user2@")
    recorder = Recorder()
    store, clock, fleet = setup(tmp_path, [server_entry("a", a, certs)], recorder)
    created = new_mailing(store, 3, clock)
    report = dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    assert (report.sent, report.failed) == (2, 1)
    letter = store.find_letter(f"{created.id}-2")
    assert letter is not None and letter.state == "failed"
    assert "user unknown" in (letter.last_error or "")
    assert store.quota("a", fleet.server("a").limits, clock.now()).hour.used == 2  # type: ignore[attr-defined]
    assert "failed" in recorder.types()


def test_suppressed_recipients_are_skipped_never_sent(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    recorder = Recorder()
    store, clock, fleet = setup(tmp_path, [server_entry("a", a, certs)], recorder)
    created = new_mailing(store, 4, clock)
    store.suppress("USER3@dest.test", "unsubscribed", clock.now())  # suppressed after creation
    report = dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    assert (report.sent, report.skipped) == (3, 1)
    assert "user3@dest.test" not in recipients_of(a)
    assert store.counts(created.id) == {"sent": 3, "skipped": 1}
    assert "skipped" in recorder.types()


def test_sender_is_substituted_only_where_the_server_forbids_it_and_recorded(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a, b, _ = servers
    store, clock, fleet = setup(tmp_path, [
        server_entry("a", a, certs, allow_sender_override=False, limits={"per_hour": 1}),
        server_entry("b", b, certs, allow_sender_override=True)])
    created = new_mailing(store, 2, clock)
    dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    [on_a], [on_b] = a.messages, b.messages
    assert on_a.mail_from == "a@example.org" and "a@example.org" in on_a.message["From"]
    assert on_b.mail_from == "news@example.net" and "news@example.net" in on_b.message["From"]
    first, second = (store.find_letter(f"{created.id}-{i}") for i in (1, 2))
    assert first is not None and first.from_addr == "a@example.org"
    assert second is not None and second.from_addr == "news@example.net"


def test_empty_template_sender_is_filled_from_the_server(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts) -> None:
    a = servers[0]
    store, clock, fleet = setup(tmp_path, [server_entry("a", a, certs, sender_name="Shop")])
    template = Template(subject="Hi", text="Hello {{ name }}")
    new_mailing(store, 1, clock, template=template)
    dispatcher(fleet, store, clock).run(until_idle=True)  # type: ignore[arg-type]
    [message] = a.messages
    assert message.mail_from == "a@example.org"
    assert message.message["From"] == "Shop <a@example.org>"


def test_a_slow_batch_keeps_renewing_the_dispatchers_lease(
        tmp_path: Path, servers: list[FakeSMTP], certs: TLSCerts,
        monkeypatch: pytest.MonkeyPatch) -> None:
    a = servers[0]
    a.add_rule("DATA", "250 2.0.0 Ok: queued", delay=0.4)  # a slow server: ~1.2 s per batch
    store, clock, fleet = setup(tmp_path, [server_entry("a", a, certs)])
    renewals: list[str] = []
    register = store.register_dispatcher

    def counting(dispatcher_id: str, now: float, servers: Sequence[str] = ()) -> None:
        renewals.append(dispatcher_id)
        register(dispatcher_id, now, servers)

    monkeypatch.setattr(store, "register_dispatcher", counting)
    new_mailing(store, 3, clock)
    slow = dispatcher(fleet, store, clock, batch_size=3)  # type: ignore[arg-type]
    slow.heartbeat_seconds = 0.1
    assert slow.run(until_idle=True).sent == 3
    assert len(renewals) >= 4 and set(renewals) == {slow.id}  # registered, then renewed
