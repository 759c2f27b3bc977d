"""The Store contract, run against every store (SQLite and PostgreSQL) through its API only."""

from __future__ import annotations

import json

from mailfleet.clock import FakeClock
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import Template
from mailfleet.plugins.providers import Limits
from mailfleet.store.base import LetterRow, MailingRecord, Outcome, Recovery, Store

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR, DAY = 3600.0, 86400.0
TEMPLATE = Template(subject="Hi {{ name }}", text="Dear {{ name }}\n", sender="news@example.net")


def mailing(store: Store, count: int, *, start: int = 1, hold: bool = False,
            emails: list[str] | None = None) -> str:
    rows = [{"email": e, "name": f"N{i}"} for i, e in enumerate(
        emails or [f"user{i}@dest.test" for i in range(start, start + count)])]
    return create_mailing(store, TEMPLATE, rows, clock=FakeClock(T0), hold_in_data=hold).id


def sent(letters: tuple[LetterRow, ...], server: str = "a") -> list[Outcome]:
    return [Outcome(r.id, "sent", server, "a@example.org", None, None, r.attempts + 1,
                    charged=True) for r in letters]


def requeued(letters: tuple[LetterRow, ...], server: str = "a") -> list[Outcome]:
    return [Outcome(r.id, "queued", server, None, "quota", None, r.attempts)
            for r in letters]


def test_create_mailing_and_read_it_back(store: Store) -> None:
    mid = mailing(store, 3, emails=["a@dest.test", "b@dest.test", "a@dest.test"])
    record = store.get_mailing(mid)
    assert record is not None
    assert (record.state, record.total, record.message_id_domain) == ("active", 2, "example.net")
    assert record.template == TEMPLATE.to_dict()
    assert [m.id for m in store.list_mailings(["active"])] == [mid]
    assert store.list_mailings(["done"]) == []
    assert store.counts(mid) == {"queued": 2}
    assert store.get_mailing("nope") is None


def test_add_letters_ignores_duplicates_and_delete_removes_everything(store: Store) -> None:
    store.create_mailing(MailingRecord("m1", "one", T0, "draft", {"k": [1, "x"]}, "d.test"))
    assert store.add_letters("m1", [(1, "x@d.test", "{}"), (2, "y@d.test", '{"n": 1}'),
                                    (3, "x@d.test", "{}")]) == 2
    assert store.add_letters("m1", [(4, "y@d.test", "{}"), (5, "z@d.test", "{}")]) == 1
    assert store.add_letters("m1", []) == 0
    store.finish_creation("m1", 3, 1)
    record = store.get_mailing("m1")
    assert record is not None and (record.total, record.rejected) == (3, 1)
    assert store.find_letter("m1-1") is not None and store.find_letter("m1-3") is None
    store.delete_mailing("m1")
    assert store.get_mailing("m1") is None and store.counts("m1") == {}


def test_claims_never_exceed_the_hour_and_day_limits(store: Store) -> None:
    mid = mailing(store, 12)
    store.register_dispatcher("d1", T0)
    limits = Limits(per_hour=3, per_day=5)
    now, total = T0, 0
    claim = store.claim("d1", "a", limits, 10, now)
    assert len(claim.letters) == 3 and claim.reason == ""
    store.mark_sending([r.id for r in claim.letters], now)
    store.finish(sent(claim.letters), now)
    total += 3
    refused = store.claim("d1", "a", limits, 10, now + 60)
    assert (refused.letters, refused.reason, refused.until) == ((), "spent", now + HOUR)
    now += HOUR + 1
    claim = store.claim("d1", "a", limits, 10, now)
    assert len(claim.letters) == 2  # the day allows 2 more
    store.finish(sent(claim.letters), now)
    total += 2
    refused = store.claim("d1", "a", limits, 10, now)
    assert refused.reason == "spent" and refused.until == T0 + DAY
    quota = store.quota("a", limits, now)
    assert (quota.hour.used, quota.hour.remaining, quota.hour.frees_at) == (2, 1, None)
    assert (quota.day.used, quota.day.limit, quota.day.remaining) == (5, 5, 0)
    assert quota.day.frees_at == T0 + DAY and not quota.available
    assert quota.minute.limit is None and quota.minute.used == 2
    # another server's quota is its own
    other = store.claim("d1", "b", limits, 10, now)
    assert len(other.letters) == 3
    assert store.quota("b", limits, now).hour.used == 3
    assert store.counts(mid) == {"sent": 5, "claimed": 3, "queued": 4}
    assert store.by_server(mid) == {"a": 5}
    assert total == 5


def test_refunds_free_the_quota_and_charges_of_sent_letters_stay(store: Store) -> None:
    mid = mailing(store, 6)
    store.register_dispatcher("d1", T0)
    limits = Limits(per_hour=4)
    claim = store.claim("d1", "a", limits, 4, T0)
    assert len(claim.letters) == 4
    assert store.claim("d1", "a", limits, 4, T0).reason == "spent"
    store.finish(sent(claim.letters[:2]) + requeued(claim.letters[2:]), T0 + 5)
    quota = store.quota("a", limits, T0 + 5)
    assert (quota.hour.used, quota.hour.remaining) == (2, 2)
    again = store.claim("d1", "a", limits, 10, T0 + 10)
    assert [r.id for r in again.letters] == [r.id for r in claim.letters[2:]]
    assert store.counts(mid) == {"sent": 2, "claimed": 2, "queued": 2}
    # a sent letter's charge moves to the time it went: the hour frees an hour later
    store.finish(sent(again.letters), T0 + 20)
    refused = store.claim("d1", "a", limits, 10, T0 + 30)
    assert refused.reason == "spent" and refused.until == T0 + 5 + HOUR


def test_minute_limit_and_rolling_frees_at(store: Store) -> None:
    mailing(store, 5)
    store.register_dispatcher("d1", T0)
    limits = Limits(per_minute=2)
    first = store.claim("d1", "a", limits, 1, T0)
    second = store.claim("d1", "a", limits, 5, T0 + 30)
    assert (len(first.letters), len(second.letters)) == (1, 1)
    refused = store.claim("d1", "a", limits, 5, T0 + 40)
    assert refused.reason == "spent" and refused.until == T0 + 60
    assert len(store.claim("d1", "a", limits, 5, T0 + 61).letters) == 1


def test_calendar_window(store: Store) -> None:
    mailing(store, 5)
    store.register_dispatcher("d1", T0)
    limits = Limits(per_hour=2, window="calendar", timezone="Europe/Moscow")
    now = T0 + 30 * 60
    assert len(store.claim("d1", "a", limits, 5, now).letters) == 2
    refused = store.claim("d1", "a", limits, 5, now)
    assert refused.reason == "spent" and refused.until == T0 + HOUR
    assert len(store.claim("d1", "a", limits, 5, T0 + HOUR).letters) == 2


def test_block_and_unblock_a_server(store: Store) -> None:
    mailing(store, 2)
    store.register_dispatcher("d1", T0)
    store.block_server("a", T0 + 100, "provider quota: full")
    claim = store.claim("d1", "a", Limits(), 5, T0)
    assert (claim.letters, claim.reason, claim.until) == ((), "blocked", T0 + 100)
    quota = store.quota("a", Limits(), T0)
    assert (quota.blocked_until, quota.blocked_reason) == (T0 + 100, "provider quota: full")
    store.block_server("a", T0 + 200, "server failure: down")
    assert store.quota("a", Limits(), T0).blocked_until == T0 + 200
    assert store.quota("a", Limits(), T0 + 200).blocked_until is None  # expired
    store.unblock_server("a")
    assert len(store.claim("d1", "a", Limits(), 5, T0).letters) == 2


def test_suppression_list_and_skipped_on_claim(store: Store) -> None:
    mid = mailing(store, 4)
    store.suppress("User2@Dest.Test", "hard bounce", T0, source="bounce")
    store.suppress("zed@dest.test", "asked", T0 + 1)
    assert store.is_suppressed("user2@dest.test") and store.is_suppressed("USER2@DEST.TEST")
    assert store.suppressed() == [("user2@dest.test", "hard bounce", T0, "bounce"),
                                  ("zed@dest.test", "asked", T0 + 1, "manual")]
    store.suppress("zed@dest.test", "again", T0 + 2)
    assert store.suppressed()[1] == ("zed@dest.test", "again", T0 + 2, "manual")
    assert store.unsuppress("ZED@dest.test") and not store.unsuppress("zed@dest.test")
    store.register_dispatcher("d1", T0)
    claim = store.claim("d1", "a", Limits(per_hour=10), 10, T0)
    assert [r.email for r in claim.skipped] == ["user2@dest.test"]
    assert [r.email for r in claim.letters] == ["user1@dest.test", "user3@dest.test",
                                                "user4@dest.test"]
    assert store.quota("a", Limits(per_hour=10), T0).hour.used == 3  # skipped: not charged
    assert store.counts(mid) == {"claimed": 3, "skipped": 1}


def test_bounces_find_and_mark(store: Store) -> None:
    mid = mailing(store, 2)
    store.register_dispatcher("d1", T0)
    claim = store.claim("d1", "a", Limits(), 2, T0)
    store.finish(sent(claim.letters), T0 + 1)
    found = store.find_letter(f"{mid}-1")
    assert found is not None
    assert (found.letter_id, found.email, found.state, found.server, found.from_addr) == (
        f"{mid}-1", "user1@dest.test", "sent", "a", "a@example.org")
    assert (found.message_id, found.attempts, found.sent_at) == (
        f"<{mid}-1@example.net>", 1, T0 + 1)
    assert store.find_by_message_id(f"<{mid}-1@example.net>") == found
    assert store.find_by_message_id(f"<{mid}-1@other.net>") is None
    assert store.find_letter("garbage") is None and store.find_letter(f"{mid}-99") is None
    assert store.mark_bounced(f"{mid}-1", hard=False, reason="mailbox full", status="4.2.2",
                              diagnostic="452 full", now=T0 + 10)
    assert store.mark_bounced(f"{mid}-1", hard=False, reason="mailbox full", status=None,
                              diagnostic=None, now=T0 + 20)
    assert store.mark_bounced(f"{mid}-2", hard=True, reason="no such user", status="5.1.1",
                              diagnostic=None, now=T0 + 30)
    assert not store.mark_bounced("nope-1", hard=True, reason="x", status=None,
                                  diagnostic=None, now=T0)
    bounced = store.find_letter(f"{mid}-1")
    assert bounced is not None and bounced.state == "bounced"
    assert bounced.last_error == "bounced (soft): mailbox full"
    assert store.count_soft_bounces("USER1@dest.test", T0) == 2
    assert store.count_soft_bounces("user1@dest.test", T0 + 15) == 1
    assert store.count_soft_bounces("user2@dest.test", T0) == 0  # hard ones do not count
    assert store.by_server(mid) == {"a": 2}  # bounced letters went


def test_kv(store: Store) -> None:
    assert store.kv_get("imap:uid") is None
    store.kv_set("imap:uid", "41")
    store.kv_set("imap:uid", "42")
    assert store.kv_get("imap:uid") == "42"


def test_recover_requeues_claims_and_resends_or_holds_letters_in_data(store: Store) -> None:
    resend = mailing(store, 4)
    hold = mailing(store, 2, start=10, hold=True)
    store.register_dispatcher("crashed", T0)
    limits = Limits(per_hour=100)
    claim = store.claim("crashed", "a", limits, 10, T0)
    assert len(claim.letters) == 6
    in_data = [r for r in claim.letters if r.seq == 1 or r.mailing_id == hold]
    store.mark_sending([r.id for r in in_data], T0)
    # the dispatcher dies without a trace (its row is gone, its letters are not)
    store.unregister_dispatcher("crashed")
    found = store.recover(T0 + 5)
    assert (found.requeued, found.resent, found.held) == (3, 1, 2)
    assert store.counts(resend) == {"queued": 4}
    assert store.counts(hold) == {"held": 2}
    assert store.quota("a", limits, T0 + 5).hour.used == 3  # letters in DATA stay charged
    resent = store.find_letter(f"{resend}-1")
    assert resent is not None and resent.attempts == 1 and "same Message-ID" in str(
        resent.last_error)
    assert store.recover(T0 + 6) == Recovery()  # nothing more to do
    assert store.release_held(hold) == 2
    assert store.counts(hold) == {"queued": 2}


def test_recover_leaves_live_dispatchers_and_uses_the_lease_for_other_hosts(
        store: Store) -> None:
    mailing(store, 4)
    store.register_dispatcher("alive-here", T0)  # this process: alive
    assert len(store.claim("alive-here", "a", Limits(), 2, T0).letters) == 2
    host = store.host  # type: ignore[attr-defined]
    store.host = "another-machine"  # type: ignore[attr-defined]
    store.register_dispatcher("elsewhere", T0)
    store.host = host  # type: ignore[attr-defined]
    assert len(store.claim("elsewhere", "a", Limits(), 2, T0 + 60).letters) == 2
    assert store.recover(T0 + 300, lease=600).requeued == 0  # heartbeat fresh
    found = store.recover(T0 + 60 + 601, lease=600)
    assert found.requeued == 2  # only the other host's claims, after its lease ran out


def test_waiting_pause_cancel_and_completion(store: Store) -> None:
    one = mailing(store, 3)
    two = mailing(store, 2, start=10)
    assert store.waiting(None, T0) == (5, None)
    assert store.waiting([two], T0) == (2, None)
    store.register_dispatcher("d1", T0)
    claim = store.claim("d1", "a", Limits(), 1, T0, [two])
    assert [r.mailing_id for r in claim.letters] == [two]
    retry = [Outcome(claim.letters[0].id, "queued", "a", None, "451 later", T0 + 300, 1)]
    store.finish(retry, T0)
    assert store.waiting([two], T0) == (2, T0 + 300)
    assert store.claim("d1", "a", Limits(), 5, T0 + 1, [two]).letters[0].seq == 2
    for paused_id in (one, two):
        store.set_mailing_state(paused_id, "paused", "server x: auth refused")
    paused = store.get_mailing(one)
    assert paused is not None and (paused.state, paused.state_reason) == (
        "paused", "server x: auth refused")
    assert store.claim("d1", "a", Limits(), 5, T0 + 2).reason == "empty"
    assert store.waiting(None, T0) == (0, None)
    store.set_mailing_state(one, "active")
    store.cancel_mailing(two, T0)
    assert store.counts(two) == {"skipped": 1, "claimed": 1}
    cancelled = store.get_mailing(two)
    assert cancelled is not None and cancelled.state == "cancelled"
    claim = store.claim("d1", "a", Limits(), 5, T0 + 3)
    assert store.complete_finished() == []
    store.finish(sent(claim.letters), T0 + 4)
    assert store.complete_finished() == [one]
    done = store.get_mailing(one)
    assert done is not None and done.state == "done"
    assert json.loads(claim.letters[0].fields) == {"name": "N0"}


def test_one_journal_commit_marks_letters_in_data_and_records_outcomes(store: Store) -> None:
    mid = mailing(store, 3)
    store.register_dispatcher("d1", T0)
    limits = Limits(per_hour=100)
    first, second, third = store.claim("d1", "a", limits, 3, T0).letters
    store.record([first.id], [], T0)
    store.record([second.id], sent((first,)), T0 + 1)  # one's reply, the next one's DATA
    assert store.counts(mid) == {"sent": 1, "sending": 1, "claimed": 1}
    store.unregister_dispatcher("d1")  # killed here: only the letter in DATA is in doubt
    found = store.recover(T0 + 2)
    assert (found.requeued, found.resent, found.held) == (1, 1, 0)
    assert store.counts(mid) == {"sent": 1, "queued": 2}
    # the accepted letter and the one in DATA keep their charge; the untried one is refunded
    assert store.quota("a", limits, T0 + 2).hour.used == 2
    assert third.seq == 3 and store.find_letter(f"{mid}-3").attempts == 0  # type: ignore[union-attr]


def test_recover_holds_letters_in_doubt_when_the_deployment_says_so(store: Store) -> None:
    mid = mailing(store, 2)
    store.register_dispatcher("d1", T0)
    letters = store.claim("d1", "a", Limits(), 2, T0).letters
    store.mark_sending([letters[0].id], T0)
    store.unregister_dispatcher("d1")
    found = store.recover(T0 + 1, hold_in_doubt=True)
    assert (found.requeued, found.held) == (1, 1)
    assert store.counts(mid) == {"queued": 1, "held": 1}


def test_holders_say_who_holds_letters_and_when_they_come_back(store: Store) -> None:
    mid = mailing(store, 5)
    store.register_dispatcher("here", T0)
    store.claim("here", "a", Limits(), 2, T0)
    host = store.host  # type: ignore[attr-defined]
    store.host = "another-machine"  # type: ignore[attr-defined]
    store.register_dispatcher("there", T0)
    letters = store.claim("there", "a", Limits(), 2, T0).letters
    store.mark_sending([letters[0].id], T0)
    store.host = host  # type: ignore[attr-defined]
    found = {h.dispatcher: h for h in store.holders(mid, T0 + 1, lease=15)}
    assert (found["here"].alive, found["here"].claimed, found["here"].takeback_at) == (
        True, 2, None)
    assert (found["there"].alive, found["there"].claimed, found["there"].sending) == (
        None, 1, 1)
    assert found["there"].takeback_at == T0 + 15
    assert store.recover(T0 + 10, lease=15) == Recovery()
    assert store.recover(T0 + 16, lease=15).resent == 1  # its lease ran out
    assert [h.dispatcher for h in store.holders(None, T0 + 16)] == ["here"]


def test_the_circuit_breaker_counts_failures_blocks_with_backoff_and_closes_again(
        store: Store) -> None:
    limits = Limits()
    assert store.server_failed("a", T0, "dropped", lambda n: 10.0 * 2 ** (n - 1)) == (1, T0 + 10)
    assert store.server_failed("a", T0 + 10, "dropped", lambda n: 10.0 * 2 ** (n - 1)) == (
        2, T0 + 30)
    status = store.quota("a", limits, T0 + 11)
    assert (status.failures, status.blocked_until, status.blocked_reason) == (
        2, T0 + 30, "dropped")
    assert store.quota("b", limits, T0).failures == 0  # per server
    store.server_recovered("a")
    assert store.quota("a", limits, T0 + 31).failures == 0
    store.server_failed("a", T0 + 40, "dropped", lambda n: 5.0)
    store.unblock_server("a")
    status = store.quota("a", limits, T0 + 41)
    assert (status.failures, status.blocked_until) == (0, None)


def test_a_sent_letter_settled_later_keeps_its_charge_even_if_the_dispatcher_dies_first(
        store: Store) -> None:
    mid = mailing(store, 2)
    store.register_dispatcher("d1", T0)
    limits = Limits(per_hour=100)
    first, second = store.claim("d1", "a", limits, 2, T0).letters
    store.record([first.id], [], T0)
    outcome = Outcome(first.id, "sent", "a", "a@example.org", None, None, 1, charged=True,
                      settle=False)
    store.record([], [outcome], T0 + 1)  # its charge is settled with the batch, later
    store.unregister_dispatcher("d1")  # ... but the dispatcher dies before that
    found = store.recover(T0 + 2)
    assert (found.requeued, found.resent) == (1, 0)
    assert store.counts(mid) == {"sent": 1, "queued": 1}
    assert store.quota("a", limits, T0 + 2).hour.used == 1  # the sent letter stays charged
    store.record([], [], T0 + 3, settled=[first.id])
    assert store.quota("a", limits, T0 + 3).hour.used == 1 and second.seq == 2


def test_listings_come_out_in_code_point_order_on_every_store(store: Store) -> None:
    for mid in ("m_b", "mB", "ma"):  # created at one time: the id decides, byte by byte
        store.create_mailing(MailingRecord(mid, mid, T0, "active", {}, "d.test"))
    assert [m.id for m in store.list_mailings()] == ["mB", "m_b", "ma"]
    assert store.complete_finished() == ["mB", "m_b", "ma"]
    for email in ("zed@d.test", "ab@d.test", "a_b@d.test", "Ab.c@d.test"):
        store.suppress(email, "asked", T0)
    assert [email for email, *_ in store.suppressed()] == [
        "a_b@d.test", "ab.c@d.test", "ab@d.test", "zed@d.test"]
    mid = mailing(store, 4)
    for dispatcher, server in (("d_b", "b"), ("dB", "A")):
        store.register_dispatcher(dispatcher, T0)
        letters = store.claim(dispatcher, server, Limits(), 2, T0).letters
        store.finish(sent(letters[:1], server), T0)
    assert list(store.by_server(mid).items()) == [("A", 1), ("b", 1)]
    assert [h.dispatcher for h in store.holders(mid, T0)] == ["dB", "d_b"]
