"""Behaviour of the core bounce parser per format, on small hand-written messages."""

from __future__ import annotations

from mailfleet import hookimpl
from mailfleet.bounces.mime import MAX_BYTES
from mailfleet.bounces.parse import parse_bounce
from mailfleet.bounces.report import REASONS, BounceReport
from mailfleet.plugins.manager import load_plugins

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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
    [rcpt] = report.recipients
    assert (rcpt.address, rcpt.status, rcpt.reason) == ("gina@example.org", "5.7.1", "blocked")


def test_x_failed_recipients_header_names_the_recipients() -> None:
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@relay.example>\r\n"
        b"X-Failed-Recipients: henry@example.org, ivy@example.org\r\n"
        b"Subject: Mail delivery failed\r\n\r\nSomething went wrong: 550 unknown user\r\n"
    )
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
    assert report.kind == "delivered"
    assert report.recipients[0].reason == "delivered"


def test_letter_id_from_verp_address_in_to_header() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nTo: bounces+mf-abc123@sender.example\r\n"
        b"Subject: failure notice\r\n\r\n<noah@example.org>:\r\nuser unknown (#5.1.1)\r\n"
    )
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
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
    report = parse_bounce(raw)
    [rcpt] = report.recipients
    assert rcpt.address == "petr@example.ru"
    assert rcpt.reason == "mailboxfull"


def test_ordinary_mail_is_not_a_bounce() -> None:
    raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: lunch?\r\n\r\nSee you at 12.\r\n"
    report = parse_bounce(raw)
    assert report.kind == "not-bounce"
    assert report.recipients == ()


def test_reasons_are_always_from_the_fixed_vocabulary() -> None:
    raw = (
        b"From: MAILER-DAEMON@x.example\r\nSubject: failure notice\r\n\r\n"
        b"<q@example.org>:\r\nsomething odd happened\r\n"
    )
    assert all(r.reason in REASONS for r in parse_bounce(raw).recipients)


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
    return parse_bounce(raw).recipients[0].reason


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
    report = parse_bounce(_dsn("5.1.1", "552 5.2.2 Over quota"))
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
    [rcpt] = parse_bounce(raw).recipients
    assert (rcpt.reason, rcpt.status) == ("expired", "4.4.7")


def test_envelope_expired_in_a_delay_report_is_final_class_5() -> None:
    text = "A message is delayed for the following recipients:\r\n\r\n" \
           "pia@example.org: Envelope expired\r\n"
    [rcpt] = parse_bounce(_dsn("4.4.7", None, text, action="delayed")).recipients
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


# --- recipients in less common layouts -------------------------------------------------


def _text_report(body: str, subject: str = "Undeliverable: Hello",
                 sender: str = "postmaster@mx.example.net") -> bytes:
    return (f"From: {sender}\r\nTo: news@sender.example\r\nSubject: {subject}\r\n"
            f"MIME-Version: 1.0\r\n\r\n{body}\r\n").encode()


def _dsn_fields(fields: str, text: str = "Delivery failed.") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: news@sender.example\r\n"
        "Subject: failure\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        f"--B\r\nContent-Type: text/plain\r\n\r\n{text}\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.example.net\r\n\r\n{fields}\r\n--B--\r\n"
    ).encode()


def _addresses(raw: bytes) -> list[str]:
    return [r.address for r in parse_bounce(raw).recipients]


def test_dsn_recipient_field_variants() -> None:
    for field in ("Final-Recipient: rfc822;<pia@example.org>",
                  "Final-Recipient: RFC822; pia@example.org (Pia)",
                  "Final-Recipient: X-Unix; |/usr/bin/procmail\r\n"
                  "Original-Recipient: rfc822;pia@example.org",
                  "Original-Recipient: rfc822; pia@example.org",
                  "Final-Recipient: rfc822; pia@mailhost\r\n"
                  "Original-Recipient: rfc822; pia@example.org"):
        raw = _dsn_fields(field + "\r\nAction: failed\r\nStatus: 5.1.1\r\n")
        assert _addresses(raw) == ["pia@example.org"], field


def test_nonstandard_dsn_actions_are_failures() -> None:
    for action in ("error", "bounced", "expired"):
        raw = _dsn_fields("Final-Recipient: rfc822; pia@example.org\r\n"
                          f"Action: {action}\r\nStatus: 5.0.0\r\n")
        report = parse_bounce(raw)
        assert report.kind == "bounce"
        assert [r.address for r in report.recipients] == ["pia@example.org"]
    raw = _dsn_fields("Final-Recipient: rfc822; pia@example.org\r\nAction: expired\r\n"
                      "Status: \r\nDiagnostic-Code: Connection timed out\r\n")
    [rcpt] = parse_bounce(raw).recipients
    assert (rcpt.reason, rcpt.status) == ("expired", "5.0.0")


def test_dsn_without_recipient_blocks_falls_back_to_the_returned_message() -> None:
    raw = (
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: news@sender.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your "
        "message could not\r\nbe delivered to one or more recipients.\r\n\r\n"
        "\t--- Delivery report unavailable ---\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n"
        "--B\r\nContent-Type: message/rfc822\r\n\r\n" + ORIGINAL.format(rcpt="pia@example.org")
        + "--B--\r\n"
    ).encode()
    [rcpt] = parse_bounce(raw).recipients
    assert (rcpt.address, rcpt.reason) == ("pia@example.org", "undefined")
    assert rcpt.status is not None and rcpt.status[0] == "5"


def test_text_layouts_of_many_mtas_name_the_recipient() -> None:
    bodies = [
        # Domino / Notes
        "Your message\r\n\r\n  Subject: Hello\r\n\r\nwas not delivered to:\r\n\r\n"
        "  pia@example.org\r\n\r\nbecause:\r\n\r\n  User pia not listed in Domino Directory\r\n",
        "Delivery Failure Report\r\n\r\nFailed Recipient: pia@example.org\r\n"
        "Reason: User not listed in public Name & Address Book\r\n",
        # GroupWise
        "The message cannot be delivered to:\r\n\r\n   pia@example.org\r\n\r\nUser not found\r\n",
        # Exchange 2003 / 2010+
        "The following recipient(s) cannot be reached:\r\n\r\n"
        "      pia@example.org on 4/29/2007 11:34 PM\r\n"
        "            The e-mail account does not exist at the organization.\r\n",
        "Delivery has failed to these recipients or groups:\r\n\r\n"
        "pia@example.org (pia@example.org)\r\nThe e-mail address you entered couldn't be "
        "found. Please contact your helpdesk at help@example.net.\r\n",
        # MS SMTPSVC, qmail-like with trailing junk, labelled field
        "Unable to deliver the message to the following recipients.\r\n\r\n"
        "<pia@example.org>.\r\n\r\n   550 5.1.1 Mailbox unavailable\r\n",
        "This report relates to your message.\r\n\r\nRecipient address: pia@example.org\r\n"
        "Reason: Mailbox full\r\n",
        # German, French, Spanish, Japanese, Russian
        "Ihre Nachricht konnte nicht zugestellt werden an:\r\n\r\n    pia@example.org\r\n\r\n"
        "Grund: 550 5.1.1 Benutzer unbekannt\r\n",
        "Votre message n'a pas pu être remis aux destinataires suivants :\r\n\r\n"
        "pia@example.org\r\n554 5.2.2 boîte pleine\r\n",
        "No se ha podido entregar el mensaje a los siguientes destinatarios:\r\n\r\n"
        "pia@example.org\r\n550 5.1.1 usuario desconocido\r\n",
        "以下の宛先へメールを配信できませんでした。\r\n\r\npia@example.org\r\n\r\n"
        "550 5.1.1 宛先不明\r\n",
        "Сообщение не было доставлено следующим адресатам:\r\n\r\n"
        "pia@example.org: пользователь не найден\r\n",
    ]
    for body in bodies:
        report = parse_bounce(_text_report(body))
        assert report.kind == "bounce", body
        assert [r.address for r in report.recipients] == ["pia@example.org"], body


def test_prose_addresses_are_not_recipients_when_the_original_names_one() -> None:
    body = (
        "The standard form of address here is firstname.lastname@example.org. The address\r\n"
        "to which your message was addressed, pia@example.org, does not exist.\r\n\r\n"
        "Perhaps you meant:    Pia Smith      +1 555 0100     psmith@example.org\r\n\r\n"
        "Original message as received is as follows:\r\n"
        ">Received: from mx.sender.example by mx.example.org\r\n"
        ">\tfor <pia@example.org>; Sun, 27 May 2001 14:21:25 -0700\r\n"
    )
    raw = _text_report(body, subject="FAILED MAIL to pia", sender="postmaster@example.org")
    assert _addresses(raw) == ["pia@example.org"]


def test_sender_that_mailed_itself_can_fail() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\nTo: admin@example.net\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nThis is the Postfix program at host mx.\r\n\r\n"
        b"<pia@example.org>: Name service error for domain example.org: Host not\r\n"
        b"    found, try again\r\n"
        b"--B\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: pia@example.org\r\nTo: pia@example.org\r\nSubject: test\r\n\r\nhi\r\n--B--\r\n"
    )
    assert _addresses(raw) == ["pia@example.org"]


def test_several_recipients_do_not_borrow_each_others_diagnostic() -> None:
    body = (
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        "  pia@example.org\r\n    SMTP error from remote mail server after RCPT TO:"
        "<pia@example.org>:\r\n    550 5.1.1 unknown user\r\n"
        "  quinn@example.net\r\n    Unrouteable address\r\n"
    )
    pia, quinn = parse_bounce(_text_report(body, sender="Mailer-Daemon@mx.example.net"))\
        .recipients
    assert (pia.status, pia.reason) == ("5.1.1", "userunknown")
    assert (quinn.status, quinn.reason) == ("5.0.0", "hostunknown")


def test_removal_recipient_of_an_opt_out_report() -> None:
    raw = (
        b"From: fbl@isp.example\r\nTo: abuse@sender.example\r\nSubject: report\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nopt-out\r\n"
        b"--B\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: opt-out\r\nUser-Agent: x/1\r\nVersion: 0.1\r\n"
        b"Removal-Recipient: pia@example.org\r\n--B--\r\n"
    )
    report = parse_bounce(raw)
    assert report.kind == "feedback"
    assert [r.address for r in report.recipients] == ["pia@example.org"]


# --- reasons: common real-world wordings ---------------------------------------------


def test_common_wordings_of_each_reason() -> None:
    cases = {
        "userunknown": [
            "550 5.1.1 <pia@example.org>: Recipient address rejected: User unknown in "
            "virtual mailbox table (in reply to RCPT TO command)",
            "550 Benutzer unbekannt (in reply to RCPT TO command)",
            "550 utilisateur inconnu (in reply to RCPT TO command)",
            "550 usuario desconocido (in reply to RCPT TO command)",
            "550 宛先不明 (in reply to RCPT TO command)",
            "550 Requested action not taken: mailbox unavailable (in reply to RCPT TO command)",
        ],
        "mailboxfull": ["552 5.2.2 Postfach voll", "552 boîte pleine", "552 buzón lleno",
                        "552 ящик переполнен", "552 user has exhausted allowed storage space",
                        "452 4.2.2 The email account that you tried to reach is over quota"],
        "suspend": ["550 5.2.1 The email account that you tried to reach is disabled",
                    "550 Konto gesperrt", "550 cuenta suspendida"],
        "hostunknown": ["Host or domain name not found. Name service error for name="
                        "example.invalid type=A: Host not found"],
        "norelaying": ["554 5.7.1 <pia@example.org>: Relay access denied",
                       "550 5.7.1 Unable to relay"],
        "blocked": ["554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
                    "zen.spamhaus.org",
                    "550 5.7.1 Your IP address is listed in the Barracuda Reputation Block List",
                    "450 4.7.1 Temporarily rejected: greylisted for 5 minutes"],
        "spamdetected": ["550 5.7.1 Message rejected as spam by Content Filtering",
                         "554 Message refused: SpamAssassin score too high"],
        "virusdetected": ["554 5.7.1 Virus found in message"],
        "authfailure": ["550 5.7.26 This message does not pass authentication checks",
                        "550 5.7.1 Email rejected per DMARC policy for example.com",
                        "550 SPF: 192.0.2.1 is not allowed to send mail from example.com",
                        "550 5.7.23 Message rejected: SPF validation failed"],
        "requireptr": ["550 5.7.25 The IP address sending this message does not have a PTR "
                       "record setup"],
        "mesgtoobig": ["552 5.3.4 Message size exceeds fixed maximum message size",
                       "552 message is larger than the maximum allowed size"],
        "speeding": ["421 4.7.0 Try again later, closing connection. (rate limit exceeded)"],
        "toomanyconn": ["421 Too many concurrent SMTP connections from this IP address"],
        "securityerror": ["530 5.7.0 Must issue a STARTTLS command first",
                          "450 4.7.0 TLS is required but not supported by the receiving server"],
        "rejected": ["550 5.7.1 <x@sender.example>: Sender address rejected: Domain not found",
                     "550 Sender verify failed"],
        "expired": ["Delivery attempts have been unsuccessful for 5 days"],
    }
    for reason, texts in cases.items():
        for text in texts:
            assert _reason(_postfix(text)) == reason, text


def test_temporary_failure_never_marks_the_address_dead() -> None:
    raw = _dsn("4.1.1", "450 4.1.1 <pia@example.org>: Recipient address rejected: "
               "User unknown in local recipient table", action="delayed")
    [rcpt] = parse_bounce(raw).recipients
    assert rcpt.reason == "userunknown"
    assert not rcpt.hard


def _said_by(host: str, diagnostic: str, address: str = "olga@example.org") -> bytes:
    return _postfix(diagnostic, address).replace(b"mx.example.org[", host.encode() + b"[")


def test_france_ptt_codes_decide_the_reason() -> None:
    cases = {
        "550 5.5.0 Adresse destinataire invalide. Invalid recipient. LPN007_416 "
        "(in reply to end of DATA command)": "userunknown",
        "421 4.2.0 Service refuse. Veuillez essayer plus tard. OFR005_505 [505]": "systemerror",
        "550 5.5.0 Service refuse. Veuillez essayer plus tard. LPN001_108": "blocked",
        "554 5.7.1 Client host rejected: #216 lpn LPN000_630": "policyviolation",
        "552 5.1.1 Boite du destinataire pleine. Recipient overquota. OFR_417": "mailboxfull",
    }
    for text, reason in cases.items():
        assert _reason(_said_by("smtp-in.orange.fr", text)) == reason, text
    # the code names its provider even when the host is unknown
    assert _reason(_postfix("421 4.2.0 Service refuse. OFR005_505 [505]")) == "systemerror"


def test_yahoo_user_texts_are_userunknown_even_after_data() -> None:
    text = ("554 delivery error: dd This user doesn't have a yahoo.com account "
            "(in reply to end of DATA command)")
    assert _reason(_said_by("mta6.am0.yahoodns.net", text)) == "userunknown"
    assert _reason(_said_by("mta6.am0.yahoodns.net", "553 5.7.2 [TSS09] All messages from "
                            "192.0.2.1 will be permanently deferred")) == "blocked"


def test_microsoft_mailbox_unavailable_is_userunknown() -> None:
    text = "550 Requested action not taken: mailbox unavailable (in reply to RCPT TO command)"
    assert _reason(_said_by("mx1.hotmail.com", text)) == "userunknown"
    text = "550 Requested action not taken: mailbox unavailable (in reply to end of DATA command)"
    assert _reason(_said_by("example-org.mail.protection.outlook.com", text)) == "userunknown"


def test_kddi_user_unknown_with_and_without_address() -> None:
    assert _reason(_said_by("lsean.ezweb.ne.jp", "550 <neko@ezweb.ne.jp>: User unknown",
                            "neko@ezweb.ne.jp")) == "userunknown"
    assert _reason(_said_by("lsean.ezweb.ne.jp", "550 : User unknown",
                            "neko@ezweb.ne.jp")) == "filtered"


def test_docomo_unknown_user_after_data_is_rejected() -> None:
    text = "550 Unknown user neko@docomo.ne.jp (in reply to end of DATA command)"
    assert _reason(_said_by("mfsmax.docomo.ne.jp", text, "neko@docomo.ne.jp")) == "rejected"
    text = "550 Unknown user neko@docomo.ne.jp (in reply to RCPT TO command)"
    assert _reason(_said_by("mfsmax.docomo.ne.jp", text, "neko@docomo.ne.jp")) == "userunknown"


def test_provider_codes_facebook_cox_mimecast_zoho() -> None:
    fb = ("550 5.1.1 RCP-P2 http://postmaster.facebook.com/response_codes#rcp "
          "Refused due to recipient preferences")
    assert _reason(_postfix(fb, "neko@facebook.com")) == "filtered"
    assert _reason(_said_by("cxr.mx.a.cloudfilter.net", "554 5.7.1 cox.net rejected - CXBL",
                            "neko@cox.net")) == "blocked"
    assert _reason(_said_by("service1.mimecast.com", "554 email rejected due to security "
                            "policies - MCSpamSignature.sa.2.2")) == "virusdetected"
    assert _reason(_said_by("smtpin.zoho.com", "554 5.7.1 Email cannot be delivered. Reason: "
                            "Email flagged as Spam. (in reply to RCPT TO command)")) == "rejected"


def test_provider_rule_needs_the_provider() -> None:
    # the same words from an unknown host keep the generic classification
    text = "554 email rejected due to security policies"
    assert _reason(_said_by("mx.example.net", text)) != "virusdetected"


def test_new_generic_phrases() -> None:
    assert _reason(_postfix("451 Could not load DRD for domain (example.com)")) == "systemerror"
    assert _reason(_postfix("554 Transaction failed")) == "systemerror"
    assert _reason(_postfix("500 Line limit exceeded")) == "mesgtoobig"
    assert _reason(_postfix("450 service permits 2 unverifyable sending IPs (in reply to "
                            "MAIL FROM command)")) == "requireptr"


def _arf(enclosed: str, fields: str = "") -> bytes:
    return (
        "From: fbl@isp.example\r\nTo: fbl-reports@sender.example\r\nSubject: Abuse Report\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        "--B\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nVersion: 1\r\n" + fields + "\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n" + enclosed + "\r\n--B--\r\n"
    ).encode()


def test_arf_complainant_from_microsoft_jmrp_header_of_the_enclosed_message() -> None:
    report = parse_bounce(_arf("From: news@sender.example\r\nTo: undisclosed-recipients:;\r\n"
                               "X-HmXmrOriginalRecipient: <ann@hotmail.example>\r\n"))
    assert [r.address for r in report.recipients] == ["ann@hotmail.example"]


def test_arf_with_redacted_to_takes_the_delivering_mta_header() -> None:
    report = parse_bounce(_arf("Delivered-To: bob@isp.example\r\nFrom: news@sender.example\r\n"
                               'To: "undisclosed"\r\n'))
    assert [r.address for r in report.recipients] == ["bob@isp.example"]


def test_arf_original_rcpt_to_wins_over_the_enclosed_to() -> None:
    report = parse_bounce(_arf("To: list@sender.example\r\n",
                               "Original-Rcpt-To: carol@isp.example\r\n"))
    assert [r.address for r in report.recipients] == ["carol@isp.example"]


def _text_bounce(reply: str) -> bytes:
    return ("From: MAILER-DAEMON@mx.example.net\r\nTo: news@sender.example\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n\r\n"
            f"<dan@example.org>: host mx.example.org[192.0.2.1] said: {reply}\r\n").encode()


def test_hard_only_when_the_code_or_a_specific_text_says_the_address_is_dead() -> None:
    cases = {
        "550 5.1.1 <dan@example.org>: Recipient address rejected: User unknown "
        "(in reply to RCPT TO command)": True,
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found by SMTP address lookup": True,
        "556 5.1.10 Recipient address has null MX": True,
        "550 User unknown (in reply to RCPT TO command)": True,
        # refused, but nothing says the mailbox does not exist
        "550 5.7.1 <dan@example.org>: Recipient address rejected: Access denied": False,
        "550 Recipient address rejected (in reply to RCPT TO command)": False,
        "550 5.7.1 User unknown (in reply to end of DATA command)": False,
        "452 4.1.1 <dan@example.org>: mailbox temporarily unknown": False,
        "550 5.2.1 mailbox disabled, not accepting messages": False,
    }
    got = {reply: parse_bounce(_text_bounce(reply)).recipients[0].hard for reply in cases}
    assert got == cases


def test_null_mx_code_gives_notaccept() -> None:
    [rcpt] = parse_bounce(_text_bounce("556 5.1.10 Recipient address has null MX")).recipients
    assert (rcpt.status, rcpt.reason, rcpt.hard) == ("5.1.10", "notaccept", True)


def test_address_type_prefix_is_not_part_of_the_failed_address() -> None:
    raw = (b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Delivery Failure\r\n\r\n"
           b"Your message could not be delivered to:\r\n\r\n"
           b"Recipient: smtp=Bob.Smith@Example.org\r\n550 5.1.1 user unknown\r\n")
    assert [r.address for r in parse_bounce(raw).recipients] == ["Bob.Smith@Example.org"]


class _PluginParser:
    """A plugin's bounce parser: answers for its own marker, else None; may fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[int] = []

    @hookimpl
    def mailfleet_parse_bounce(self, message: object, raw: bytes) -> BounceReport | None:
        self.seen.append(len(raw))
        if self.fail:
            raise RuntimeError("plugin bug")
        if b"X-Provider-Marker" in raw:
            return BounceReport(kind="feedback", parser="provider")
        return None


def test_plugin_bounce_parser_answers_first_and_gets_the_budgeted_bytes() -> None:
    plugin = _PluginParser()
    plugins = load_plugins([("provider", plugin)], entry_points=False)
    raw = b"X-Provider-Marker: 1\r\nSubject: x\r\n\r\n" + b"y" * (MAX_BYTES * 2)
    assert plugins.parse_bounce(raw).parser == "provider"
    assert plugin.seen and plugin.seen[0] <= MAX_BYTES


def test_failing_plugin_bounce_parser_leaves_the_report_to_the_core() -> None:
    plugins = load_plugins([("provider", _PluginParser(fail=True))], entry_points=False)
    raw = _text_bounce("550 5.1.1 <dan@example.org>: User unknown")
    assert [r.address for r in plugins.parse_bounce(raw).recipients] == ["dan@example.org"]


def test_a_generic_code_is_hard_only_with_a_permanent_reply_and_no_transport_failure() -> None:
    from mailfleet.bounces.reasons import is_hard

    # Sendmail quoting a remote "550 User unknown": the address is dead.
    assert is_hard("userunknown", "5.0.0", "550 <a@example.org>... User unknown")
    # The same words without a reply of the server's own (an appliance's "[User unknown]").
    assert not is_hard("userunknown", "5.0.0", "[User unknown]")
    # A session that broke says nothing about the address, whatever else the report quotes.
    assert not is_hard("hostunknown", "5.0.0",
                       "Remote protocol error; Connection reset by peer; 550 Host unknown")
    # A dead-address code needs no wording at all.
    assert is_hard("userunknown", "5.1.1", "")
