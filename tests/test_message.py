"""Letters: correct headers, encodings and refusal of header injection."""

from __future__ import annotations

import email
from email import policy

import pytest

from mailfleet.addresses import normalize_address
from mailfleet.errors import AddressError, HeaderError
from mailfleet.mailings.message import build_letter
from mailfleet.sending.identity import LETTER_ID_HEADER
from mailfleet.smtp.client import dot_stuff


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def test_letter_has_message_id_date_and_multipart_alternative() -> None:
    letter = build_letter(from_addr="news@example.com", to="a@example.org", subject="Hi",
                          text="plain body", html="<p>html body</p>", letter_id="L1")
    msg = parse(letter.data)
    assert msg["Message-ID"] == letter.message_id and letter.message_id.endswith("@example.com>")
    assert msg["Date"] and msg[LETTER_ID_HEADER] == "L1"
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]


def test_non_ascii_subject_and_display_name_are_rfc2047_encoded() -> None:
    letter = build_letter(from_addr="news@example.com", from_name="Новости Магазина",
                          to="a@example.org", subject="Скидки недели", text="Привет")
    head = letter.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head
    msg = parse(letter.data)
    assert str(msg["Subject"]) == "Скидки недели"
    assert msg["From"].addresses[0].display_name == "Новости Магазина"
    assert msg.get_content().strip() == "Привет"


def test_internationalised_domain_is_sent_in_idna_form() -> None:
    assert normalize_address("info@пример.рф") == "info@xn--e1afmkfd.xn--p1ai"
    letter = build_letter(from_addr="news@пример.рф", to="a@example.org", subject="s",
                          text="t")
    assert b"news@xn--e1afmkfd.xn--p1ai" in letter.data


@pytest.mark.parametrize("field", ["subject", "from_name", "to_name"])
def test_cr_lf_in_any_header_value_is_refused(field: str) -> None:
    values = {"subject": "s", "from_name": "", "to_name": ""}
    values[field] = "hello\r\nBcc: victim@example.org"
    with pytest.raises(HeaderError):
        build_letter(from_addr="news@example.com", to="a@example.org", text="t", **values)


def test_cr_lf_in_extra_header_is_refused() -> None:
    with pytest.raises(HeaderError):
        build_letter(from_addr="n@example.com", to="a@example.org", subject="s", text="t",
                     headers={"X-Campaign": "spring\nBcc: x@example.org"})


def test_extra_header_cannot_replace_a_reserved_one() -> None:
    with pytest.raises(HeaderError, match="reserved"):
        build_letter(from_addr="n@example.com", to="a@example.org", subject="s", text="t",
                     headers={"From": "ceo@example.com"})


@pytest.mark.parametrize("bad", ["", "plain", "a@@b.com", "a b@example.com",
                                 "a@example.com\r\nRCPT TO:<x@y.z>", "a@-bad-.com",
                                 "a@localhost", ".a@example.com", "Name <a@example.com>"])
def test_malformed_addresses_are_refused(bad: str) -> None:
    with pytest.raises(AddressError):
        normalize_address(bad)


def test_dot_stuffing_doubles_leading_dots_and_normalises_line_ends() -> None:
    assert dot_stuff(b"a\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert dot_stuff(b".start\r\n") == b"..start\r\n.\r\n"
