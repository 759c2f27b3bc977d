"""parse_bytes never raises: arbitrary bytes, mutated real bounces, huge messages."""

from __future__ import annotations

import time
import typing
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailfleet.bounces.parse import parse_bounce
from mailfleet.bounces.report import REASONS, BounceReport, Kind

KINDS = set(typing.get_args(Kind))
CORPUS = sorted((Path(__file__).parent / "data" / "bounce-corpus" / "eml").glob("*.eml"))


def _valid(report: BounceReport) -> None:
    assert isinstance(report, BounceReport)
    assert report.kind in KINDS
    assert all(r.reason in REASONS for r in report.recipients)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_a_valid_report(data: bytes) -> None:
    _valid(parse_bounce(data))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.data())
def test_mutated_real_bounces_give_a_valid_report(path: Path, data: st.DataObject) -> None:
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 20))):
        pos = data.draw(st.integers(0, max(0, len(raw) - 1)))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 200))]
        else:
            raw[pos:pos] = data.draw(st.sampled_from(
                [b"\r\n--", b"Content-Type: message/rfc822\r\n\r\n", b"charset=iso-2022-jp",
                 b"=?koi8-r?B?zsXU?=", b"\x1b$B", b"\r\n\r\n", b"<>@", b"boundary=\"x\""]))
    _valid(parse_bounce(bytes(raw)))


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=2000), st.sampled_from(["koi8-r", "cp1251", "iso-2022-jp", "utf-8",
                                                 "bogus-charset"]))
def test_any_text_in_any_declared_charset_gives_a_valid_report(text: str, charset: str) -> None:
    raw = (f"From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n"
           f"Content-Type: text/plain; charset={charset}\r\n\r\n").encode() + text.encode(
        "utf-8", "replace")
    _valid(parse_bounce(raw))


def test_nested_rfc822_inside_rfc822_is_parsed() -> None:
    inner = b"From: x@example.org\r\nMessage-ID: <inner@example.org>\r\n\r\nhi\r\n"
    raw = inner
    for i in range(30):
        raw = (b"From: MAILER-DAEMON@relay.example\r\nSubject: Undelivered Mail\r\n"
               b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n"
               b"--b%d\r\nContent-Type: message/rfc822\r\n\r\n" % (i, i) + raw
               + b"\r\n--b%d--\r\n" % i)
    _valid(parse_bounce(raw))


def test_huge_message_is_parsed_quickly() -> None:
    head = (b"From: MAILER-DAEMON@relay.example\r\nSubject: failure notice\r\n\r\n"
            b"<zoe@example.org>:\r\n550 5.1.1 user unknown\r\n")
    raw = head + b"x" * 60 + (b"A" * 998 + b"\r\n") * 30_000
    start = time.monotonic()
    report = parse_bounce(raw)
    assert time.monotonic() - start < 5
    _valid(report)
    assert [r.address for r in report.recipients] == ["zoe@example.org"]
