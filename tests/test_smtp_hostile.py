"""Hostile and failing SMTP servers: every wait is bounded, a broken session keeps its results.

Real servers on 127.0.0.1: ``HostileSMTP`` breaks the protocol (huge or endless replies, no
line end, one byte every few tenths of a second, silence), FakeSMTP drops the connection in
DATA or answers 421 mid-batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest
from fleet_config import fleet_for, server_entry

from mailfleet.errors import Classification, SmtpError
from mailfleet.sending.envelope import Envelope, SendResult
from mailfleet.smtp.client import SmtpClient, open_session
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.pytest_plugin import SMTP_PASSWORD, SMTP_USER
from mailfleet_testing.smtpd import FakeSMTP, HostileSMTP


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", SMTP_PASSWORD)


def hostile_fleet(port: int, timeout: float = 1.0):  # type: ignore[no-untyped-def]
    return fleet_for({"name": "hostile", "sender": SMTP_USER, "host": "127.0.0.1",
                      "port": port, "security": "none", "auth": "none", "timeout": timeout})


@pytest.mark.parametrize("behaviour", ["huge_greeting", "no_crlf", "slow", "endless",
                                       "huge_ehlo"])
def test_a_hostile_reply_is_a_typed_server_error_within_the_timeout(behaviour: str) -> None:
    with HostileSMTP(behaviour, interval=0.2) as hostile:
        server = hostile_fleet(hostile.port, timeout=1.0).servers[0]
        start = time.monotonic()
        with pytest.raises(SmtpError) as info:
            asyncio.run(open_session(server))
        took = time.monotonic() - start
    assert info.value.classification is Classification.SERVER
    # the whole reply has one deadline: a byte every 0.2 s cannot stretch a 1 s timeout, and
    # closing the broken session adds at most about a second
    assert took < 3.5, f"{behaviour}: {took:.1f} s"


def test_one_byte_every_few_tenths_of_a_second_does_not_extend_the_deadline() -> None:
    with HostileSMTP("slow", interval=0.3) as hostile:
        server = hostile_fleet(hostile.port, timeout=1.0).servers[0]
        start = time.monotonic()
        with pytest.raises(SmtpError) as info:
            asyncio.run(open_session(server))
        took = time.monotonic() - start
    assert "no reply within 1 s" in info.value.reply
    assert took < 3.0  # a per-read timeout would wait for ever (each byte comes in time)


def test_close_never_raises_and_never_waits_long_on_a_server_that_ignores_quit() -> None:
    with HostileSMTP("mute") as hostile:
        server = hostile_fleet(hostile.port, timeout=10.0).servers[0]

        async def run() -> float:
            client = SmtpClient(server)
            await client.connect()
            start = time.monotonic()
            await client.close()
            await client.close()  # twice is fine
            return time.monotonic() - start

        assert asyncio.run(run()) < 2.0  # QUIT unanswered: dropped after about a second


def envelopes(count: int) -> list[Envelope]:
    return [Envelope(SMTP_USER, (f"r{i}@example.org",), f"Subject: {i}\r\n\r\nx\r\n".encode(),
                     f"L{i}") for i in range(1, count + 1)]


class Observer:
    def __init__(self) -> None:
        self.log: list[str] = []

    async def data_starting(self, envelopes: Sequence[Envelope],
                            write: Callable[[], None]) -> None:
        self.log += [f"data {envelope.letter_id}" for envelope in envelopes]
        write()

    def replied(self, result: SendResult) -> None:
        self.log.append(f"{'ok' if result.ok else 'refused'} {result.envelope.letter_id}")


def send_batch(smtp: FakeSMTP, certs: TLSCerts, pipelining: bool, count: int = 5,
               chunking: bool = False) -> tuple[list[SendResult], Observer]:
    fleet = fleet_for(server_entry(smtp, certs))
    server = fleet.servers[0]
    observer = Observer()
    smtp.chunking = chunking

    async def run() -> list[SendResult]:
        session = await fleet.plugins.connect(server)
        assert isinstance(session, SmtpClient)
        assert session.chunking is chunking
        if not pipelining:
            session.extensions.pop("PIPELINING")
        session.observer = observer
        try:
            first = await session.send(envelopes(count))
            again = await session.send(envelopes(1))  # the session is gone: not attempted
            assert [r.attempted for r in again] == [False]
            return first
        finally:
            await session.close()

    return asyncio.run(run()), observer


WIRES = [pytest.param(True, False, id="pipelined-data"), pytest.param(False, False, id="data"),
         pytest.param(True, True, id="pipelined-chunking"), pytest.param(False, True, id="bdat")]


@pytest.mark.parametrize(("pipelining", "chunking"), WIRES)
def test_a_connection_dropped_in_data_keeps_every_letters_result(
        smtp: FakeSMTP, tls_certs: TLSCerts, pipelining: bool, chunking: bool) -> None:
    smtp.add_rule("DATA", "250 never sent", match="Subject: 3", drop=True)
    results, observer = send_batch(smtp, tls_certs, pipelining, chunking=chunking)
    assert [r.ok for r in results[:2]] == [True, True]  # accepted ones keep their success
    assert results[2].in_doubt and results[2].attempted  # its message went, no reply came
    subjects = [m.message["Subject"] for m in smtp.messages]
    if pipelining and chunking:  # the whole batch went in one write: every BDAT unanswered
        assert subjects[:3] == ["1", "2", "3"]  # 4 and 5 may have been taken: in doubt too
        assert [(r.in_doubt, r.attempted) for r in results[3:]] == [(True, True)] * 2
        assert observer.log == [f"data L{i}" for i in range(1, 6)] + ["ok L1", "ok L2"]
    else:
        assert subjects == ["1", "2", "3"]
        assert [(r.in_doubt, r.attempted) for r in results[3:]] == [(False, False)] * 2
        assert observer.log == ["data L1", "ok L1", "data L2", "ok L2", "data L3"]


@pytest.mark.parametrize(("pipelining", "chunking"), WIRES)
def test_a_421_mid_batch_returns_results_and_uses_no_attempt_of_the_letters_left(
        smtp: FakeSMTP, tls_certs: TLSCerts, pipelining: bool, chunking: bool) -> None:
    smtp.add_rule("RCPT", "421 4.7.0 Too busy, closing", match="r2@", times=1)
    results, observer = send_batch(smtp, tls_certs, pipelining, chunking=chunking)
    assert results[0].ok
    assert all(not r.attempted and not r.in_doubt for r in results[1:])
    assert results[1].error is not None and results[1].error.code == 421
    assert len(smtp.messages) == 1
    if not (pipelining and chunking):
        assert "data L2" not in observer.log


@pytest.mark.parametrize(("pipelining", "chunking"), WIRES)
def test_a_421_after_the_message_is_a_refusal_not_a_doubt(
        smtp: FakeSMTP, tls_certs: TLSCerts, pipelining: bool, chunking: bool) -> None:
    smtp.add_rule("DATA", "421 4.3.2 Shutting down", match="Subject: 2", times=1)
    results, _ = send_batch(smtp, tls_certs, pipelining, count=3, chunking=chunking)
    assert results[0].ok and not results[1].in_doubt and not results[1].attempted
    assert not results[2].attempted and len(smtp.messages) == 1
