"""What a failure means for the letter, the server and the mailing (mailfleet.sending.failure),
and the fleet diagnosing each failure once where the transport returns it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailfleet.clock import FakeClock
from mailfleet.config import parse_config
from mailfleet.errors import Classification, Diagnosis, SmtpError, Stage, StoreUnavailable
from mailfleet.events import EventType
from mailfleet.mailings.mailing import create_mailing
from mailfleet.mailings.template import Template
from mailfleet.plugin import hookimpl
from mailfleet.plugins.manager import load_plugins
from mailfleet.plugins.providers import Limits
from mailfleet.sending import failure
from mailfleet.sending.dispatcher import Dispatcher
from mailfleet.sending.fleet import Fleet
from mailfleet.sending.quota import block_until_reset
from mailfleet.sending.retry import RetryPolicy
from mailfleet.sending.servers import Server
from mailfleet.store.sqlite import SqliteStore
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.smtpd import FakeSMTP

NOW = 1_700_000_000.0
RETRY = RetryPolicy(max_attempts=3, backoff_initial=60.0, max_server_failures=2)
C = Classification


def diagnosed(classification: Classification, *, stage: Stage = Stage.DATA, code: int | None = 550,
              block: int | None = None, pause: bool = False, next_step: str = "") -> SmtpError:
    return SmtpError(stage, "the reply", code=code, server="s1").with_diagnosis(
        Diagnosis(classification, "what happened", next_step, block_seconds=block,
                  pause_mailings=pause))


# -- the letter -------------------------------------------------------------------------
def test_a_permanent_refusal_fails_the_letter_alone_with_a_failed_event() -> None:
    decided = failure.refused(diagnosed(C.PERMANENT), 0, RETRY, NOW)
    assert (decided.state, decided.attempts, decided.charged) == ("failed", 1, False)
    assert decided.event is EventType.FAILED and "what happened" in decided.detail
    assert not decided.stops_server and not decided.deferred


def test_a_transient_refusal_queues_the_letter_again_after_the_backoff() -> None:
    decided = failure.refused(diagnosed(C.TRANSIENT, code=451), 1, RETRY, NOW)
    assert (decided.state, decided.attempts) == ("queued", 2)
    assert decided.not_before == NOW + RETRY.backoff(2)
    assert decided.event is EventType.DEFERRED and decided.deferred
    assert not decided.stops_server


def test_a_transient_refusal_on_the_last_attempt_fails_the_letter() -> None:
    decided = failure.refused(diagnosed(C.TRANSIENT, code=451), 2, RETRY, NOW)
    assert (decided.state, decided.attempts, decided.not_before) == ("failed", 3, None)
    assert decided.event is EventType.FAILED
    assert decided.detail.startswith("gave up after 3 attempts: ")


@pytest.mark.parametrize("kind", [C.SERVER, C.QUOTA])
def test_a_server_or_quota_refusal_puts_the_letter_back_untouched_and_stops_the_server(
        kind: Classification) -> None:
    decided = failure.refused(diagnosed(kind), 2, RETRY, NOW)
    assert (decided.state, decided.attempts, decided.not_before) == ("queued", 2, None)
    assert not decided.charged and decided.event is None and not decided.deferred
    assert decided.stops_server and failure.stops_server(diagnosed(kind))


@pytest.mark.parametrize("kind", [C.PERMANENT, C.TRANSIENT])
def test_a_letter_failure_does_not_stop_the_server(kind: Classification) -> None:
    assert not failure.stops_server(diagnosed(kind))


def test_a_letter_not_attempted_goes_back_uncharged_with_its_attempts() -> None:
    decided = failure.not_attempted(diagnosed(C.SERVER), 3)
    assert (decided.state, decided.attempts, decided.charged) == ("queued", 3, False)
    assert decided.text is not None and decided.text.startswith("not attempted: ")
    assert decided.event is None and not decided.deferred
    assert failure.not_attempted(None, 3).text is None


def test_a_letter_of_a_batch_without_a_session_goes_back_with_the_reason() -> None:
    error = diagnosed(C.SERVER, stage=Stage.CONNECT, code=None)
    decided = failure.not_connected(error, 1)
    assert (decided.state, decided.attempts, decided.text) == ("queued", 1, str(error))
    assert decided.event is None


def test_a_letter_in_doubt_is_held_for_review_keeping_its_charge_when_asked() -> None:
    decided = failure.in_doubt(diagnosed(C.TRANSIENT, code=None), 0, RETRY, hold=True)
    assert (decided.state, decided.attempts, decided.charged) == ("held", 1, True)
    assert decided.event is None and not decided.deferred


def test_a_letter_in_doubt_is_resent_with_the_same_message_id_keeping_its_charge() -> None:
    decided = failure.in_doubt(None, 0, RETRY, hold=False)
    assert (decided.state, decided.attempts, decided.charged) == ("queued", 1, True)
    assert decided.text == "in doubt, resent with the same Message-ID: the session broke"
    assert decided.deferred and decided.event is None and decided.not_before is None


def test_a_letter_in_doubt_on_its_last_attempt_fails_with_an_event() -> None:
    decided = failure.in_doubt(None, 2, RETRY, hold=False)
    assert (decided.state, decided.attempts, decided.charged) == ("failed", 3, True)
    assert decided.event is EventType.FAILED and "the last one in doubt" in decided.detail


# -- the server and the mailing ---------------------------------------------------------
def test_a_provider_quota_blocks_the_server_for_the_diagnosed_block() -> None:
    decided = failure.server_stopped(diagnosed(C.QUOTA, block=5400), "s1", Limits(), NOW,
                                     broken=False)
    assert decided.status == "blocked" and decided.blocked_until == NOW + 5400
    assert decided.note == "provider quota: what happened"
    assert not decided.counts_for_mailings and decided.pause_mailings is None


def test_a_provider_quota_without_a_block_lasts_until_the_widest_window_resets() -> None:
    limits = Limits(per_hour=100)
    decided = failure.server_stopped(diagnosed(C.QUOTA), "s1", limits, NOW, broken=False)
    assert decided.blocked_until == block_until_reset(limits, NOW)


def test_a_verdict_that_needs_a_person_pauses_the_mailings_with_the_next_step() -> None:
    error = diagnosed(C.QUOTA, block=86400, pause=True, next_step="open the provider's page")
    decided = failure.server_stopped(error, "s1", Limits(), NOW, broken=False)
    assert decided.pause_mailings == "server s1: what happened. Next step: open the " \
                                     "provider's page"


def test_a_server_refusal_needing_a_person_rests_it_until_unblocked_without_revival() -> None:
    decided = failure.server_stopped(diagnosed(C.SERVER, pause=True), "s1", Limits(), NOW,
                                     broken=False)
    assert decided.status == "down" and not decided.revive
    assert decided.rest_after(1, RETRY) == failure.HELD_UNTIL_UNBLOCKED
    assert decided.pause_mailings == "server s1: what happened"


def test_a_server_refusal_with_a_block_rests_the_server_that_long() -> None:
    decided = failure.server_stopped(diagnosed(C.SERVER, block=600), "s1", Limits(), NOW,
                                     broken=False)
    assert decided.rest_after(4, RETRY) == 600.0 and decided.revive


def test_a_plain_server_refusal_rests_it_behind_the_breaker_and_counts_for_its_mailings() -> None:
    decided = failure.server_stopped(diagnosed(C.SERVER, stage=Stage.AUTH, code=535), "s1",
                                     Limits(), NOW, broken=False)
    assert decided.note == "server failure: what happened"
    assert decided.rest_after(2, RETRY) == RETRY.server_rest(2, broken=False)
    assert decided.counts_for_mailings and decided.revive and decided.pause_mailings is None


def test_a_broken_connection_rests_the_server_briefly_and_does_not_count_for_mailings() -> None:
    decided = failure.server_stopped(diagnosed(C.SERVER, stage=Stage.CONNECT, code=None), "s1",
                                     Limits(), NOW, broken=True)
    assert decided.note == "connection broke: what happened"
    assert decided.rest_after(1, RETRY) == RETRY.breaker_seconds
    assert not decided.counts_for_mailings


def test_a_mailing_pauses_after_max_server_failures_in_a_row() -> None:
    error = diagnosed(C.SERVER)
    assert failure.mailing_pause(1, error, RETRY) is None
    why = failure.mailing_pause(2, error, RETRY)
    assert why is not None and why.startswith("paused after 2 consecutive server failures")


@pytest.mark.parametrize(("code", "broken"), [(None, True), (421, True), (535, False),
                                              (454, False)])
def test_a_session_that_could_not_open_is_broken_only_without_a_usable_reply(
        code: int | None, broken: bool) -> None:
    assert failure.connection_broken(SmtpError(Stage.CONNECT, "x", code=code)) is broken


# -- diagnosed once, immutable ----------------------------------------------------------
def test_a_diagnosis_makes_a_new_error_and_leaves_the_failure_as_it_was() -> None:
    raw = SmtpError(Stage.DATA, "the reply", code=550)
    done = raw.with_diagnosis(Diagnosis(C.QUOTA, "limit"), "s1")
    assert (done.classification, done.server, done.diagnosis) == (C.QUOTA, "s1",
                                                                   Diagnosis(C.QUOTA, "limit"))
    assert (raw.classification, raw.server, raw.diagnosis) == (C.PERMANENT, None, None)
    with pytest.raises(AttributeError, match="immutable"):
        raw.classification = C.SERVER  # type: ignore[misc]


class _CountingDiagnoses:
    def __init__(self) -> None:
        self.errors: list[tuple[Stage, str]] = []

    @hookimpl(tryfirst=True)
    def mailfleet_diagnose(self, server: Server, error: SmtpError, locale: str) -> None:
        self.errors.append((error.stage, error.reply))


def test_a_refusal_that_stops_the_batch_is_diagnosed_once(
        tmp_path: Path, smtp_factory: Callable[..., FakeSMTP], tls_certs: TLSCerts) -> None:
    smtp = smtp_factory()
    smtp.users = {"a@example.org": "pw"}
    smtp.add_rule("DATA", "452 4.5.3 Your sending limit exceeded")
    counting = _CountingDiagnoses()
    entry: dict[str, Any] = {
        "name": "s1", "sender": "a@example.org", "host": "127.0.0.1", "port": smtp.tls_port,
        "security": "ssl", "password": "pw", "ca_file": str(tls_certs.ca_file),
        "timeout": 10.0, "connections": 1}
    fleet = Fleet(parse_config({"deployment": {"store": str(tmp_path / "s.db")},
                                "servers": [entry]}), load_plugins([("counting", counting)]))
    store = SqliteStore(tmp_path / "s.db")
    clock = FakeClock()
    people = [{"email": f"u{i}@dest.test"} for i in range(5)]
    create_mailing(store, Template(subject="Hi", text="Hello\n", sender="a@example.org"), people,
                   clock=clock)
    Dispatcher(fleet, store, clock=clock, batch_size=5,
               retry=RetryPolicy(connect_attempts=1)).run(until_idle=True)
    status = store.quota("s1", Limits(), clock.now())
    assert status.blocked_until is not None  # the quota verdict reached the server
    assert counting.errors == [(Stage.DATA, "Your sending limit exceeded")]


def test_an_unreachable_store_is_retried_for_store_retry_seconds_then_the_error_is_raised(
        ) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # an injected clock: no time passes
        waits.append(seconds)

    async def calls(error: Exception) -> int:
        tries = 0

        async def failing() -> None:
            nonlocal tries
            async for attempt in RetryPolicy(store_retry_seconds=5).store_retrying(
                    sleep, "the test's store"):
                with attempt:
                    tries += 1
                    raise error

        with pytest.raises(type(error)):
            await failing()
        return tries

    tries = asyncio.run(calls(StoreUnavailable("the database restarts")))
    assert tries == len(waits) + 1 and 5 <= sum(waits) < 7 and max(waits) == 2
    waits.clear()
    assert asyncio.run(calls(ValueError("a bug"))) == 1 and waits == []  # only the store's
