"""Hostile reports: no body makes the production parse path slow (every regex on report text
is linear), and oversized or deeply nested messages are parsed within the input budget."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailfleet.bounces.parse import parse_bounce
from mailfleet.bounces.report import BounceReport

HEAD = (b"From: MAILER-DAEMON@relay.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        b"To: sender@shop.example\r\n\r\n")
GOOD = b"<zoe@example.org>: host mx.example.org said: 550 5.1.1 User unknown\r\n\r\n"
# Generous bounds (the machine is shared): each of these took from 5 s to minutes before.
BUDGET_S = 2.0

HOSTILE = {
    "1 MB single line of punctuation": b"!#$&'*?^{|}~" * 90_000,
    "1 MB single line of '!'": b"!" * 1_000_000,
    "40,000 spaces": b" " * 40_000,
    "40,000 spaces then a letter": b" " * 40_000 + b"x",
    "40,000 '!'": b"!" * 40_000,
    "40,000 blank lines": b"\r\n" * 40_000,
    "20,000 Cc: lines": b"Cc: \r\n" * 20_000,
    "20,000 Cc: lines with addresses": b"Cc: <a@b.example>, c@d.example\r\n" * 20_000,
    "20,000 quoted To: lines": b"> To: a@b.example\r\n" * 20_000,
    "spaces and tabs on many lines": b" \t\r\n" * 50_000,
    "a run of '@'": b"x" + b"@" * 200_000,
    "'<' and '@' in one angle address": b"<" + b"a@" * 100_000,
    "recipient label with a long domain": b"Recipient: a@" + b".," * 200_000,
    "Final-Recipient after many spaces": b" " * 100_000 + b"Final-Recipient: rfc822; a@b.example",
    "an unclosed message id": b"id <" * 100_000,
    "id followed by spaces": b"id" + b" " * 100_000,
    "a run of dashes": b"-" * 300_000,
    "'for <' without an end": b"for <a@" * 60_000,
    "20,000 addresses": b"a@b.example " * 20_000,
    "50,000 folded DSN lines": b"Final-Recipient: rfc822; a@b.example\r\nDiagnostic-Code: x\r\n"
                               + b" folded\r\n" * 50_000,
    "braces of an SES body": b'{"notificationType":"Bounce", ' + b"}" * 100_000,
    "unclosed SES address": b'"notificationType":"Bounce" ' + b'"emailAddress":"' * 30_000,
    "100,000 lone CR line ends": b"x:\r" * 100_000,
}


def _report(raw: bytes) -> tuple[BounceReport, float]:
    start = time.monotonic()
    report = parse_bounce(raw)
    return report, time.monotonic() - start


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_body_is_parsed_well_under_the_time_budget(body: bytes) -> None:
    report, elapsed = _report(HEAD + body)
    assert isinstance(report, BounceReport)
    assert elapsed < BUDGET_S, f"{elapsed:.2f} s"


# bodies that are not themselves a (pasted) delivery-status report or an SES notification
NOISE = {name: body for name, body in HOSTILE.items()
         if b"Final-Recipient" not in body and b"notificationType" not in body}


@pytest.mark.parametrize("body", list(NOISE.values()), ids=list(NOISE))
def test_hostile_text_after_a_real_failure_keeps_the_failed_recipient(body: bytes) -> None:
    report, elapsed = _report(HEAD + GOOD + body[:200_000])
    assert elapsed < BUDGET_S, f"{elapsed:.2f} s"
    assert "zoe@example.org" in [r.address for r in report.recipients]


def test_unclosed_style_element_in_html_is_linear() -> None:
    raw = (b"From: MAILER-DAEMON@relay.example\r\nSubject: Undeliverable\r\n"
           b"Content-Type: text/html\r\n\r\n" + b"<style>" * 50_000 + b"<" * 100_000)
    report, elapsed = _report(raw)
    assert elapsed < BUDGET_S, f"{elapsed:.2f} s"
    assert report.kind == "not-bounce"


def _multipart(parts: list[bytes], boundary: bytes = b"b") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return (b"From: MAILER-DAEMON@relay.example\r\nSubject: Undelivered Mail\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary
            + b"\"\r\n\r\n" + body + b"--" + boundary + b"--\r\n")


def _deep(depth: int) -> bytes:
    raw = b"Content-Type: text/plain\r\n\r\n<zoe@example.org>: 550 5.1.1 User unknown\r\n"
    for level in range(depth, 0, -1):
        boundary = b"b%d" % level
        raw = (b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n--"
               + boundary + b"\r\n" + raw + b"\r\n--" + boundary + b"--\r\n")
    return b"From: MAILER-DAEMON@relay.example\r\nSubject: Undelivered Mail\r\n" + raw


def test_report_over_the_input_budget_is_parsed_on_its_first_part_with_a_note() -> None:
    first = b"Content-Type: text/plain\r\n\r\n" + GOOD
    filler = b"Content-Type: text/plain\r\n\r\n" + (b"y" * 76 + b"\r\n") * 4_000
    raw = _multipart([first] + [filler] * 100)  # 30 MB over 100 text parts
    assert len(raw) > 30_000_000
    report, elapsed = _report(raw)
    assert elapsed < BUDGET_S, f"{elapsed:.2f} s"
    assert [r.address for r in report.recipients] == ["zoe@example.org"]
    assert report.note and f"of {len(raw):,} bytes" in report.note


def test_report_within_the_budget_has_no_note() -> None:
    report, _ = _report(HEAD + GOOD)
    assert report.note is None


def test_size_of_a_partly_read_message_is_named_in_the_note() -> None:
    report = parse_bounce(HEAD + GOOD, size=40_000_000)
    assert [r.address for r in report.recipients] == ["zoe@example.org"]
    assert report.note and "of 40,000,000 bytes" in report.note


def test_thousand_deep_multipart_is_parsed_in_bounded_time() -> None:
    report, elapsed = _report(_deep(1_000))
    assert elapsed < BUDGET_S, f"{elapsed:.2f} s"
    assert [r.address for r in report.recipients] == ["zoe@example.org"]
    assert report.recipients[0].hard


def test_thirty_megabyte_report_through_the_reader_path_stays_under_100_mb_rss(
        tmp_path: Path) -> None:
    path = tmp_path / "big.eml"
    with path.open("wb") as out:
        out.write(HEAD + GOOD)
        for _ in range(30):
            out.write((b"z" * 1022 + b"\r\n") * 1024)
    # peak RSS of the child's own address space (VmHWM: ru_maxrss would count the parent's
    # pages, since Linux keeps it across exec)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mailfleet.plugins.manager import load_plugins\n"
        "raw = Path(sys.argv[1]).read_bytes()\n"
        "report = load_plugins().parse_bounce(raw)\n"
        "assert [r.address for r in report.recipients] == ['zoe@example.org'], report\n"
        "status = Path('/proc/self/status').read_text()\n"
        "print(next(x.split()[1] for x in status.splitlines() if x.startswith('VmHWM')))\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=120, check=True)
    rss_mb = int(done.stdout.strip()) / 1024
    assert rss_mb < 100, f"{rss_mb:.0f} MB"


DSN_HEAD = (b"From: MAILER-DAEMON@relay.example\r\nMIME-Version: 1.0\r\nContent-Type: "
            b"multipart/report; report-type=delivery-status; boundary=\"x\"\r\n\r\n--x\r\n"
            b"Content-Type: message/delivery-status\r\n\r\n")


@pytest.mark.parametrize("body", [b"\r\n" * 40_000, b"\r" * 300_000, b"A: b\r" * 50_000,
                                  b"Final-Recipient: rfc822; a@b.example\r\n\r\n" * 10_000],
                         ids=["blank lines", "lone CRs", "CR-ended fields", "10,000 blocks"])
def test_hostile_delivery_status_part_is_parsed_well_under_the_time_budget(body: bytes) -> None:
    report, elapsed = _report(DSN_HEAD + body)
    assert isinstance(report, BounceReport)
    assert elapsed < BUDGET_S, f"{elapsed:.2f} s"
