"""Behaviour of the core bounce parser per format, on small hand-written messages."""

from __future__ import annotations

from mailfleet.bounces.parse import parse_bytes
from mailfleet.bounces.report import REASONS

ORIGINAL = (
    "From: news@sender.example\r\nTo: {rcpt}\r\nSubject: Hello\r\n"
    "Message-ID: <orig-1@sender.example>\r\nX-Mailfleet-Letter-Id: L-42\r\n\r\nHi\r\n"
)


def test_rfc3464_dsn_gives_recipient_status_reason_and_ids() -> None:
    raw = (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: news@sender.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-1@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry, it failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.org>: User unknown\r\n\r\n"
        "--B\r\nContent-Type: message/rfc822\r\n\r\n" + ORIGINAL.format(rcpt="bob@example.org")
        + "--B--\r\n"
    ).encode()
    report = parse_bytes(raw)
    assert report.kind == "bounce"
    [rcpt] = report.recipients
    assert (rcpt.address, rcpt.status, rcpt.reply_code) == ("bob@example.org", "5.1.1", "550")
    assert rcpt.reason == "userunknown"
    assert rcpt.hard
    assert report.reporting_mta == "mx.example.net"
    assert report.original_message_id == "<orig-1@sender.example>"
    assert report.letter_id == "L-42"


def test_empty_delivery_status_part_falls_back_to_text() -> None:
    raw = (
        b"From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
        b"Subject: Delivery Status Notification (Failure)\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\n** Address not found **\r\n\r\n"
        b"Delivery to the following recipient failed permanently:\r\n\r\n"
        b"     carol@example.org\r\n\r\nThe response was:\r\n\r\n"
        b"550 5.1.1 The email account that you tried to reach does not exist.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n\r\n--B--\r\n"
    )
    report = parse_bytes(raw)
    assert report.kind == "bounce"
    assert [r.address for r in report.recipients] == ["carol@example.org"]
    assert report.recipients[0].status == "5.1.1"


def test_exim_text_bounce_lists_failed_addresses() -> None:
    raw = (
        "From: Mail Delivery System <Mailer-Daemon@mx.exim.example>\r\n"
        "To: news@sender.example\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        "  dave@example.org\r\n"
        "    host mx.example.org [192.0.2.1]\r\n"
        "    SMTP error from remote mail server after RCPT TO:<dave@example.org>:\r\n"
        "    550 5.2.2 Mailbox full\r\n\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n"
        + ORIGINAL.format(rcpt="dave@example.org")
    ).encode()
    report = parse_bytes(raw)
    assert report.kind == "bounce"
    [rcpt] = report.recipients
    assert rcpt.address == "dave@example.org"
    assert rcpt.reason == "mailboxfull"
    assert not rcpt.hard
    assert report.letter_id == "L-42"
    assert report.original_message_id == "<orig-1@sender.example>"


def test_qmail_bounce_gives_each_address_its_own_reason() -> None:
    raw = (
        "From: MAILER-DAEMON@q.example\r\nTo: news@sender.example\r\n"
        "Subject: failure notice\r\n\r\n"
        "Hi. This is the qmail-send program at q.example.\r\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n"
        "<erin@example.org>:\r\nSorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
        "<frank@example.org>:\r\n"
        "The users mailfolder is over the allowed quota (size). (#5.2.2)\r\n\r\n"
        "--- Below this line is a copy of the message.\r\n\r\n"
        + ORIGINAL.format(rcpt="erin@example.org")
    ).encode()
    report = parse_bytes(raw)
    got = {r.address: r.reason for r in report.recipients}
    assert got == {"erin@example.org": "userunknown", "frank@example.org": "mailboxfull"}
    assert report.reporting_mta == "q.example"


def test_postfix_text_bounce_without_dsn_part() -> None:
    raw = (
        b"From: MAILER-DAEMON@pf.example (Mail Delivery System)\r\nTo: news@sender.example\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n\r\n"
        b"This is the mail system at host pf.example.\r\n\r\n"
        b"I'm sorry to have to inform you that your message could not\r\n"
        b"be delivered to one or more recipients.\r\n\r\n"
        b"<gina@example.org>: host mx.example.org[192.0.2.2] said: 550 5.7.1 Client host\r\n"
        b"    rejected: listed on zen.spamhaus.org (in reply to RCPT TO command)\r\n"
    )
    report = parse_bytes(raw)
    [rcpt] = report.recipients
    assert (rcpt.address, rcpt.status, rcpt.reason) == ("gina@example.org", "5.7.1", "blocked")


def test_x_failed_recipients_header_names_the_recipients() -> None:
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@relay.example>\r\n"
        b"X-Failed-Recipients: henry@example.org, ivy@example.org\r\n"
        b"Subject: Mail delivery failed\r\n\r\nSomething went wrong: 550 unknown user\r\n"
    )
    report = parse_bytes(raw)
    assert [r.address for r in report.recipients] == ["henry@example.org", "ivy@example.org"]
    assert all(r.status and r.status.startswith("5") for r in report.recipients)


def test_arf_feedback_report_is_kind_feedback() -> None:
    raw = (
        "From: fbl@isp.example\r\nTo: abuse@sender.example\r\nSubject: FW: complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--B\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        "Original-Rcpt-To: jack@example.org\r\n\r\n"
        "--B\r\nContent-Type: message/rfc822\r\n\r\n" + ORIGINAL.format(rcpt="jack@example.org")
        + "--B--\r\n"
    ).encode()
    report = parse_bytes(raw)
    assert report.kind == "feedback"
    got = [(r.address, r.reason) for r in report.recipients]
    assert got == [("jack@example.org", "feedback")]
    assert report.letter_id == "L-42"


def test_rfc3834_auto_reply_is_kind_autoreply_with_reason_vacation() -> None:
    raw = (
        b"From: Kate <kate@example.org>\r\nTo: news@sender.example\r\n"
        b"Subject: Out of office: Hello\r\nAuto-Submitted: auto-replied\r\n\r\n"
        b"I am away until Monday.\r\n"
    )
    report = parse_bytes(raw)
    assert report.kind == "autoreply"
    got = [(r.address, r.reason) for r in report.recipients]
    assert got == [("kate@example.org", "vacation")]


def test_delay_warning_is_kind_delay_with_4xx_status() -> None:
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@relay.example>\r\n"
        b"Subject: Warning: message 1abc-000 delayed 24 hours\r\n\r\n"
        b"This message was created automatically by mail delivery software.\r\n"
        b"A message that you sent has not yet been delivered to one or more of its\r\n"
        b"recipients after more than 24 hours on the queue on relay.example.\r\n\r\n"
        b"The address to which the message has not yet been delivered is:\r\n\r\n"
        b"  liam@example.org\r\n    Delay reason: connection timed out\r\n\r\n"
        b"No action is required on your part. Delivery attempts will continue for some time.\r\n"
    )
    report = parse_bytes(raw)
    assert report.kind == "delay"
    [rcpt] = report.recipients
    assert rcpt.address == "liam@example.org"
    assert rcpt.status is not None
    assert rcpt.status[0] == "4"


def test_success_dsn_is_kind_delivered() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Successful Mail Delivery Report\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nDelivered.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.net\r\n"
        b"\r\nFinal-Recipient: rfc822; mia@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n"
        b"\r\n--B--\r\n"
    )
    report = parse_bytes(raw)
    assert report.kind == "delivered"
    assert report.recipients[0].reason == "delivered"


def test_letter_id_from_verp_address_in_to_header() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nTo: bounces+mf-abc123@sender.example\r\n"
        b"Subject: failure notice\r\n\r\n<noah@example.org>:\r\nuser unknown (#5.1.1)\r\n"
    )
    report = parse_bytes(raw)
    assert report.letter_id == "abc123"
    assert [r.address for r in report.recipients] == ["noah@example.org"]


def test_koi8r_russian_body_is_decoded_and_parsed() -> None:
    body = (
        "Это письмо создано автоматически.\r\nСообщение не может быть доставлено.\r\n"
        "The following address(es) failed:\r\n\r\n  olga@example.ru\r\n"
        "    550 5.1.1 Нет такого пользователя\r\n"
    )
    raw = (
        b"From: mailer-daemon@mx.example.ru\r\nSubject: =?koi8-r?B?7sXEz9PUwdfMxc7O?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=koi8-r\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body.encode("koi8-r")
    )
    report = parse_bytes(raw)
    assert report.kind == "bounce"
    [rcpt] = report.recipients
    assert rcpt.address == "olga@example.ru"
    assert rcpt.reason == "userunknown"


def test_cp1251_body_with_wrong_declared_charset_still_parses() -> None:
    body = ("Ваше сообщение не доставлено.\r\n\r\n<petr@example.ru>:\r\n"
            "ящик переполнен 552 5.2.2\r\n")
    raw = (
        b"From: MAILER-DAEMON@mx.example.ru\r\nSubject: Mail failure\r\n"
        b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\n" + body.encode("cp1251")
    )
    report = parse_bytes(raw)
    [rcpt] = report.recipients
    assert rcpt.address == "petr@example.ru"
    assert rcpt.reason == "mailboxfull"


def test_ordinary_mail_is_not_a_bounce() -> None:
    raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: lunch?\r\n\r\nSee you at 12.\r\n"
    report = parse_bytes(raw)
    assert report.kind == "not-bounce"
    assert report.recipients == ()


def test_reasons_are_always_from_the_fixed_vocabulary() -> None:
    raw = (
        b"From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n\r\n"
        b"<q@example.org>:\r\nsomething odd happened\r\n"
    )
    assert all(r.reason in REASONS for r in parse_bytes(raw).recipients)


def _postfix(diagnostic: str, address: str = "olga@example.org") -> bytes:
    return (
        "From: MAILER-DAEMON@pf.example (Mail Delivery System)\r\nTo: news@sender.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n\r\n"
        "This is the mail system at host pf.example.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        f"<{address}>: host mx.example.org[192.0.2.2] said: {diagnostic}\r\n"
    ).encode()


def _dsn(status: str, diagnostic: str | None, text: str = "It failed.",
         action: str = "failed") -> bytes:
    diag = f"Diagnostic-Code: smtp; {diagnostic}\r\n" if diagnostic else ""
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: news@sender.example\r\n"
        "Subject: Delivery Status Notification\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        f"--B\r\nContent-Type: text/plain\r\n\r\n{text}\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; pia@example.org\r\nAction: {action}\r\nStatus: {status}\r\n"
        + diag + "\r\n--B--\r\n"
    ).encode()


def _reason(raw: bytes) -> str:
    return parse_bytes(raw).recipients[0].reason


def test_user_unknown_at_rcpt_is_userunknown() -> None:
    raw = _postfix("550 User unknown (in reply to RCPT TO command)")
    assert _reason(raw) == "userunknown"


def test_user_unknown_after_end_of_data_is_filtered() -> None:
    raw = _postfix("550 User unknown (in reply to end of DATA command)")
    assert _reason(raw) == "filtered"


def test_remote_user_unknown_without_command_or_x11_status_is_filtered() -> None:
    assert _reason(_dsn("5.0.0", "550 Unknown user")) == "filtered"
    assert _reason(_dsn("5.1.1", "550 Unknown user")) == "userunknown"


def test_sendmail_transcript_names_the_refused_command() -> None:
    text = ("----- Transcript of session follows -----\r\n"
            "... while talking to mx.example.org.:\r\n>>> DATA\r\n"
            "<<< 550 <pia@example.org>... User unknown\r\n")
    assert _reason(_dsn("5.0.0", "550 <pia@example.org>... User unknown", text)) == "filtered"


def test_refusal_at_mail_from_is_rejected() -> None:
    raw = _postfix("550 5.7.1 Access denied (in reply to MAIL FROM command)")
    assert _reason(raw) == "rejected"


def test_refusal_at_helo_or_connection_is_blocked() -> None:
    raw = _postfix("554 5.7.1 Missing reverse DNS (in reply to EHLO command)")
    assert _reason(raw) == "blocked"


def test_relay_access_denied_is_norelaying() -> None:
    raw = _postfix("554 5.7.1 <olga@example.org>: Relay access denied (in reply to RCPT TO "
                   "command)")
    assert _reason(raw) == "norelaying"


def test_text_beats_generic_status_and_mailbox_full_beats_x11() -> None:
    assert _reason(_dsn("5.0.0", "550 5.0.0 Mailbox full")) == "mailboxfull"
    # the remote server's own code in the Diagnostic-Code is preferred to the Status field
    report = parse_bytes(_dsn("5.1.1", "552 5.2.2 Over quota"))
    assert (report.recipients[0].status, report.recipients[0].reason) == ("5.2.2",
                                                                          "mailboxfull")


def test_mx_lookup_failures_are_notaccept_and_temporary_dns_errors_networkerror() -> None:
    assert _reason(_dsn("5.4.4", "550 No mx record found for domain=example.org")) == \
        "notaccept"
    assert _reason(_dsn("4.0.0", "DNS Error: NXDOMAIN domain name not found",
                        action="delayed")) == "networkerror"


def test_specific_cause_beats_generic_expired_wording() -> None:
    text = ("<pia@example.org>... Deferred: Connection refused by mx.example.org.\r\n"
            "Message could not be delivered for 5 days\r\n")
    assert _reason(_dsn("4.4.7", None, text)) == "blocked"
    text = ("Unable to deliver message, because the message was forwarded more than the "
            "maximum allowed times. This could indicate a mail loop.\r\n")
    assert _reason(_dsn("4.4.6", None, text)) == "networkerror"


def test_not_listed_in_directory_is_userunknown_not_blocked() -> None:
    raw = _postfix("550 User not listed in public Name & Address Book")
    assert _reason(raw) != "blocked"


def test_ip_blocked_for_spam_is_blocked_and_blacklisted_url_is_spam() -> None:
    assert _reason(_postfix("550 Client host blocked for spamming issues")) == "blocked"
    assert _reason(_postfix("550 REJECTED - Blacklisted URL in message")) == "spamdetected"


def test_exim_retry_timeout_without_code_is_class_4() -> None:
    raw = (
        "From: Mail Delivery System <Mailer-Daemon@mx.exim.example>\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        "  quinn@example.org\r\n    retry timeout exceeded\r\n\r\n"
        "------ This is a copy of the message, including all the headers. ------\r\n"
        + ORIGINAL.format(rcpt="quinn@example.org")
    ).encode()
    [rcpt] = parse_bytes(raw).recipients
    assert (rcpt.reason, rcpt.status) == ("expired", "4.4.7")


def test_envelope_expired_in_a_delay_report_is_final_class_5() -> None:
    text = "A message is delayed for the following recipients:\r\n\r\n" \
           "pia@example.org: Envelope expired\r\n"
    [rcpt] = parse_bytes(_dsn("4.4.7", None, text, action="delayed")).recipients
    assert rcpt.status is not None and rcpt.status[0] == "5"
    assert rcpt.reason == "expired"


def test_google_groups_refusal_is_rejected_in_any_language() -> None:
    raw = (
        "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n"
        "Subject: Delivery Status Notification (Failure)\r\n"
        "X-Failed-Recipients: team@googlegroups.com\r\n\r\n"
        "Hallo, die Gruppe (team) ist möglicherweise nicht vorhanden.\r\n"
    ).encode()
    assert _reason(raw) == "rejected"


def test_unrecognised_diagnostic_is_onhold() -> None:
    assert _reason(_dsn("5.0.0", "550 Flux capacitor says no")) == "onhold"
