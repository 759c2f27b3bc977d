"""Fuzzing the production parse path (``parse_bounce``): arbitrary bytes, mutated real
bounces and adversarial bodies give a valid report, within a time budget, with no error
swallowed by the parser's last guard (it logs one)."""

from __future__ import annotations

import logging
import time
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfleet.bounces.parse import parse_bounce
from mailfleet.bounces.report import REASONS, BounceReport, Kind

KINDS = set(typing.get_args(Kind))
CORPUS = sorted((Path(__file__).parent / "data" / "bounce-corpus" / "eml").glob("*.eml"))
BUDGET_S = 2.0
"""Per message, generous (shared machine); hostile bodies once took minutes."""


def _parse(raw: bytes, caplog: pytest.LogCaptureFixture) -> BounceReport:
    caplog.clear()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mailfleet.bounces.parse"):
        report = parse_bounce(raw)
    elapsed = time.monotonic() - start
    assert elapsed < BUDGET_S, f"{elapsed:.2f} s for {len(raw)} bytes"
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert isinstance(report, BounceReport)
    assert report.kind in KINDS
    assert all(r.reason in REASONS for r in report.recipients)
    assert all("@" in r.address and len(r.address) <= 254 for r in report.recipients)
    return report


def fuzz(examples: int) -> settings:
    """Bounded runs (the time budget is checked per message, not by hypothesis)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@fuzz(150)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_a_valid_report(caplog: pytest.LogCaptureFixture,
                                             data: bytes) -> None:
    _parse(data, caplog)


INSERTS = [b"\r\n--", b"Content-Type: message/rfc822\r\n\r\n", b"charset=iso-2022-jp",
           b"=?koi8-r?B?zsXU?=", b"\x1b$B", b"\r\n\r\n", b"<>@", b"boundary=\"x\"",
           b"Content-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\n",
           b"Final-Recipient: rfc822; ", b"Status: 5.1.1\r\n", b"Action: failed\r\n",
           b" " * 5000, b"!" * 5000, b"\r\n" * 3000, b"}" * 3000, b"<" * 3000,
           b"=?utf-8?B?" * 500, b"Content-Transfer-Encoding: base64\r\n", b"\xff\xfe\x00"]


@fuzz(80)
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_real_bounces_give_a_valid_report(caplog: pytest.LogCaptureFixture,
                                                  path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 20))):
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "repeat"]))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 200))]
        elif op == "insert":
            raw[pos:pos] = data.draw(st.sampled_from(INSERTS))
        else:  # a line of the message repeated many times
            start = raw.rfind(b"\n", 0, pos) + 1
            end = raw.find(b"\n", pos)
            line = bytes(raw[start:end + 1 if end >= 0 else len(raw)])[:300]
            raw[start:start] = line * data.draw(st.integers(2, 2000))
    _parse(bytes(raw), caplog)


TOKENS = [b" ", b"\t", b"\r\n", b"\n", b"!", b"#$&'*?^{|}~", b"<", b">", b"@", b"a@", b".",
          b"-", b"=", b'"', b"{", b"}", b"[", b"(", b"Cc: ", b"> To: ", b"Recipient: ",
          b"id <", b"for <", b"550 5.1.1 ", b"5.", b"user unknown", b"x@y.example",
          b"Final-Recipient: rfc822; ", b"Diagnostic-Code: smtp; ", b"<style>", b"=?utf-8?B?",
          b'"notificationType":"Bounce"', b'"emailAddress":"', b"--x\r\n", b"\xd0\xbf", b"\xff"]
HEADS = [b"From: MAILER-DAEMON@relay.example\r\nSubject: Undelivered Mail\r\n\r\n",
         b"From: postmaster@relay.example\r\nSubject: failure notice\r\n"
         b"Content-Type: text/html\r\n\r\n",
         b"From: MAILER-DAEMON@relay.example\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"x\"\r\n\r\n"
         b"--x\r\nContent-Type: message/delivery-status\r\n\r\n"]


@fuzz(40)
@given(st.sampled_from(HEADS),
       st.lists(st.tuples(st.sampled_from(TOKENS), st.integers(1, 40_000)), min_size=1,
                max_size=6))
def test_adversarial_bodies_are_parsed_within_the_time_budget(
        caplog: pytest.LogCaptureFixture, head: bytes, runs: list[tuple[bytes, int]]) -> None:
    body = b"".join(token * count for token, count in runs)[:600_000]
    _parse(head + body, caplog)


@fuzz(40)
@given(st.sampled_from(["Subject", "From", "To", "X-Failed-Recipients", "Content-Type",
                        "Auto-Submitted", "Message-ID"]),
       st.sampled_from(TOKENS), st.integers(1, 20_000))
def test_adversarial_header_values_are_parsed_within_the_time_budget(
        caplog: pytest.LogCaptureFixture, name: str, token: bytes, count: int) -> None:
    raw = (b"From: MAILER-DAEMON@relay.example\r\n" + name.encode() + b": " + token * count
           + b"\r\nSubject: failure notice\r\n\r\n<zoe@example.org>: 550 5.1.1 unknown\r\n")
    _parse(raw, caplog)


@fuzz(30)
@given(st.text(max_size=2000), st.sampled_from(["koi8-r", "cp1251", "iso-2022-jp", "utf-8",
                                                 "bogus-charset"]))
def test_any_text_in_any_declared_charset_gives_a_valid_report(
        caplog: pytest.LogCaptureFixture, text: str, charset: str) -> None:
    raw = (f"From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n"
           f"Content-Type: text/plain; charset={charset}\r\n\r\n").encode() + text.encode(
        "utf-8", "replace")
    _parse(raw, caplog)


def test_nested_rfc822_inside_rfc822_is_parsed(caplog: pytest.LogCaptureFixture) -> None:
    inner = b"From: x@example.org\r\nMessage-ID: <inner@example.org>\r\n\r\nhi\r\n"
    raw = inner
    for i in range(30):
        raw = (b"From: MAILER-DAEMON@relay.example\r\nSubject: Undelivered Mail\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n"
               b"--b%d\r\nContent-Type: message/rfc822\r\n\r\n" % (i, i) + raw
               + b"\r\n--b%d--\r\n" % i)
    _parse(raw, caplog)


def test_huge_message_is_parsed_quickly(caplog: pytest.LogCaptureFixture) -> None:
    head = (b"From: MAILER-DAEMON@relay.example\r\nSubject: failure notice\r\n\r\n"
            b"<zoe@example.org>:\r\n550 5.1.1 user unknown\r\n")
    raw = head + b"x" * 60 + (b"A" * 998 + b"\r\n") * 30_000
    report = _parse(raw, caplog)
    assert [r.address for r in report.recipients] == ["zoe@example.org"]
