"""`mailfleet bounces parse`: one JSON object per file, with the keys scripts rely on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailfleet.cli.main import main

CORPUS = Path(__file__).parent / "data" / "bounce-corpus" / "eml"
RECIPIENT_KEYS = {"address", "action", "status", "reply_code", "reason", "hard", "diagnostic"}


def test_parse_prints_one_json_object_per_file_with_the_documented_keys(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    dsn = tmp_path / "dsn.eml"
    dsn.write_bytes(
        b"From: MAILER-DAEMON@mx.example.org\r\nTo: news@example.com\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: user unknown\r\n"
        b"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <m1-7@example.com>\r\nX-Mailfleet-Letter-Id: m1-7\r\n--b--\r\n")
    not_bounce = tmp_path / "hello.eml"
    not_bounce.write_bytes(b"From: a@example.org\r\nSubject: hello\r\n\r\nhi\r\n")
    main(["bounces", "parse", "--json", str(dsn), str(not_bounce)])
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert set(first) == {"file", "kind", "recipients", "original_message_id", "letter_id",
                          "reporting_mta"}
    assert (first["file"], first["kind"], first["letter_id"], first["original_message_id"],
            first["reporting_mta"]) == (str(dsn), "bounce", "m1-7", "<m1-7@example.com>",
                                        "mx.example.org")
    [recipient] = first["recipients"]
    assert set(recipient) == RECIPIENT_KEYS
    assert (recipient["address"], recipient["status"], recipient["reply_code"],
            recipient["reason"], recipient["hard"]) == (
        "gone@example.org", "5.1.1", "550", "userunknown", True)
    assert (second["kind"], second["recipients"], second["letter_id"]) == (
        "not-bounce", [], None)


def test_parse_table_lists_each_recipient(capsys: pytest.CaptureFixture[str]) -> None:
    sample = sorted(CORPUS.glob("sisimai__lhost-mailru-*.eml"))[0]
    main(["bounces", "parse", str(sample)])
    out = capsys.readouterr().out
    assert out.startswith("FILE") and sample.name in out and "bounce" in out


def test_parse_of_a_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bounces", "parse", "/nonexistent/report.eml"])
    assert exit_.value.code == 2
