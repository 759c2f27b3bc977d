"""CHUNKING (RFC 3030): letters as ``BDAT <size> LAST``, a batch in one write, replies read
together; a server that offers CHUNKING and misbehaves; the real Postfix smtpd (3.4+ offers it).

The failure tests of ``test_smtp_transport.py`` and ``test_smtp_hostile.py`` run with CHUNKING
on and off; these are the cases only CHUNKING has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fleet_config import fleet_for, server_entry

from mailfleet.sending.envelope import Envelope, SendResult
from mailfleet.smtp import client as smtp_client
from mailfleet.smtp.client import SmtpClient
from mailfleet_testing.certs import TLSCerts
from mailfleet_testing.postfix import PostfixServer
from mailfleet_testing.pytest_plugin import SMTP_PASSWORD, SMTP_USER
from mailfleet_testing.smtpd import FakeSMTP


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLEET_TEST_PASSWORD", SMTP_PASSWORD)


@pytest.fixture
def chunking(smtp: FakeSMTP) -> Iterator[FakeSMTP]:
    """The test FakeSMTP offering CHUNKING; the memory of servers refusing BDAT is cleared."""
    smtp.chunking = True
    yield smtp
    smtp_client._NO_CHUNKING.clear()


def letters(count: int, body: bytes = b"x\r\n") -> list[Envelope]:
    return [Envelope(SMTP_USER, (f"r{i}@example.org",), b"Subject: %d\r\n\r\n%b" % (i, body),
                     f"L{i}") for i in range(1, count + 1)]


def send(entry: dict[str, object], *batches: list[Envelope]
         ) -> tuple[list[list[SendResult]], list[bool]]:
    """Each batch on a session of its own: the results and whether the session used BDAT."""
    fleet = fleet_for(entry)
    server = fleet.servers[0]

    async def run() -> tuple[list[list[SendResult]], list[bool]]:
        out, used = [], []
        for batch in batches:
            session = await fleet.plugins.connect(server)
            assert isinstance(session, SmtpClient)
            used.append(session.chunking)
            try:
                out.append(await session.send(batch))
            finally:
                await session.close()
        return out, used

    return asyncio.run(run())


def test_bdat_carries_the_message_as_is_dots_and_all(chunking: FakeSMTP,
                                                     tls_certs: TLSCerts) -> None:
    body = b".leading dot\r\n..two\r\nbare\nlf\r\n.\r\nend"
    [results], used = send(server_entry(chunking, tls_certs), letters(3, body))
    assert used == [True] and all(r.ok for r in results)
    expected = b"Subject: 1\r\n\r\n.leading dot\r\n..two\r\nbare\r\nlf\r\n.\r\nend\r\n"
    assert chunking.messages[0].data == expected  # never dot-stuffed, line ends made CRLF
    assert len({m.peer for m in chunking.messages}) == 1


def test_a_refused_recipient_fails_only_its_letter_and_the_batch_goes_on(
        chunking: FakeSMTP, tls_certs: TLSCerts) -> None:
    chunking.add_rule("RCPT", "550 5.1.1 no such user", match="r2@")
    chunking.add_rule("DATA", "554 5.7.1 rejected as spam", match="Subject: 4")
    [results], _ = send(server_entry(chunking, tls_certs), letters(5))
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert results[1].error is not None and results[1].error.code == 550
    assert results[3].error is not None and results[3].error.code == 554
    assert sorted(m.message["Subject"] for m in chunking.messages) == ["1", "3", "5"]


def test_a_server_hanging_after_bdat_leaves_the_letters_in_doubt(
        chunking: FakeSMTP, tls_certs: TLSCerts) -> None:
    chunking.add_rule("DATA", "250 late", match="Subject: 2", delay=1.5)
    [results], _ = send(server_entry(chunking, tls_certs, timeout=0.5), letters(3))
    assert results[0].ok
    assert all(r.in_doubt and r.attempted for r in results[1:])
    assert "no reply within 0.5 s" in str(results[1].error)


def test_a_server_offering_chunking_but_refusing_bdat_gets_data_from_the_next_session(
        chunking: FakeSMTP, tls_certs: TLSCerts) -> None:
    chunking.chunking = "unimplemented"
    entry = server_entry(chunking, tls_certs)
    (first, second), used = send(entry, letters(3), letters(3))
    assert used == [True, False]
    # it read the messages as commands and delivered none: nothing in doubt, nothing used
    assert all(not r.attempted and not r.in_doubt for r in first)
    assert "refused BDAT" in str(first[0].error)
    assert [r.ok for r in second] == [True, True, True]
    assert len(chunking.messages) == 3


def test_the_real_postfix_smtpd_takes_a_chunked_batch(
        postfix: PostfixServer, smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    entry = {"name": "postfix", "sender": SMTP_USER, "host": "127.0.0.1", "port": postfix.port,
             "security": "starttls", "auth": "none", "ca_file": str(tls_certs.ca_file),
             "timeout": 10.0}
    batch = letters(20, b".dot\r\nbody\r\n")
    batch[4] = Envelope(SMTP_USER, ("not an address@@",), b"Subject: bad\r\n\r\nx\r\n", "bad")
    [results], used = send(entry, batch)
    assert used == [True]  # Postfix 3.4+ offers CHUNKING
    assert [r.ok for r in results] == [i != 4 for i in range(20)]
    assert results[4].error is not None and results[4].error.code // 100 == 5
    relayed = smtp.wait_for_messages(19, timeout=30)
    bodies = {m.message["Subject"]: m.data.split(b"\r\n\r\n", 1)[1] for m in relayed}
    assert set(bodies) == {str(i) for i in range(1, 21) if i != 5}
    assert bodies["1"] == b".dot\r\nbody\r\n"


@pytest.mark.parametrize("offered", [False, True], ids=["data", "chunking"])
def test_letters_per_connection_reconnects_and_logs_in_again_transparently(
        smtp: FakeSMTP, tls_certs: TLSCerts, offered: bool) -> None:
    smtp.chunking = offered
    [results], _ = send(server_entry(smtp, tls_certs, letters_per_connection=2), letters(5))
    assert all(r.ok for r in results)
    peers = [m.peer for m in smtp.messages]
    assert [peers.count(p) for p in dict.fromkeys(peers)] == [2, 2, 1]  # 3 sessions, in order
    assert sum(e.stage == "AUTH" and e.reply.startswith("235") for e in smtp.events) == 3


def test_a_failed_reconnect_leaves_the_rest_of_the_batch_unattempted(
        smtp: FakeSMTP, tls_certs: TLSCerts) -> None:
    fleet = fleet_for(server_entry(smtp, tls_certs, letters_per_connection=2))
    server = fleet.servers[0]

    async def run() -> list[SendResult]:
        session = await fleet.plugins.connect(server)
        smtp.add_rule("CONNECT", "554 5.7.1 no more sessions today")  # the next greeting
        try:
            return await session.send(letters(4))
        finally:
            await session.close()

    results = asyncio.run(run())
    assert [r.ok for r in results[:2]] == [True, True]
    assert all(not r.attempted and not r.in_doubt for r in results[2:])
    assert "no more sessions today" in str(results[2].error)
    assert len(smtp.messages) == 2


def test_large_letters_go_in_several_writes_and_a_stop_keeps_the_rest_off_the_wire(
        chunking: FakeSMTP, tls_certs: TLSCerts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_client, "_MAX_WRITE", 64)  # every letter a write of its own
    chunking.add_rule("RCPT", "452 4.5.3 Your quota is spent", match="r2@")
    fleet = fleet_for(server_entry(chunking, tls_certs))
    server = fleet.servers[0]

    async def run() -> list[SendResult]:
        session = await fleet.plugins.connect(server)
        try:
            return await session.send(letters(5), lambda error: error.code == 452)
        finally:
            await session.close()

    results = asyncio.run(run())
    assert results[0].ok
    assert all(r.error is not None and r.error.code == 452 for r in results[1:])
    assert [e.argument for e in chunking.events if e.stage == "RCPT"] == [
        "r1@example.org", "r2@example.org"]  # letters 3 to 5 never went
    assert len(chunking.messages) == 1
