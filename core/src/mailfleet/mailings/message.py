"""Building one letter with correct headers (the mailing engine compiles templates instead).

Message-ID, Date, multipart/alternative text + HTML, RFC 2047 encoded display names and
subjects, IDNA domains; any CR/LF in a header value is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, localtime

import attrs

from mailfleet.addresses import check_header, normalize_address
from mailfleet.errors import HeaderError
from mailfleet.sending.identity import LETTER_ID_HEADER

_RESERVED = {"from", "to", "subject", "message-id", "date", "mime-version", "content-type",
             "content-transfer-encoding", "sender", "return-path"}


@attrs.frozen
class Letter:
    """The bytes of a built letter and its Message-ID (with angle brackets)."""

    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    message_id: str


def make_message_id(domain: str) -> str:
    """A fresh, globally unique Message-ID under ``domain``."""
    return f"<{uuid.uuid4().hex}@{domain}>"


def format_address(address: str, name: str = "") -> str:
    """``Name <local@domain>`` with the name RFC 2047 encoded when it is not ASCII."""
    address = normalize_address(address)
    check_header("display name", name)
    local, _, domain = address.partition("@")
    return str(Address(display_name=name, username=local, domain=domain))


def build_letter(
    *,
    from_addr: str,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    from_name: str = "",
    to_name: str = "",
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
    letter_id: str | None = None,
) -> Letter:
    """A complete RFC 5322 letter; raises AddressError or HeaderError on unsafe input."""
    from_addr = normalize_address(from_addr)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = format_address(from_addr, from_name)
    msg["To"] = format_address(to, to_name)
    msg["Subject"] = check_header("Subject", subject)
    msg["Date"] = format_datetime(localtime())
    message_id = message_id or make_message_id(from_addr.partition("@")[2])
    msg["Message-ID"] = check_header("Message-ID", message_id)
    if letter_id:
        msg[LETTER_ID_HEADER] = check_header(LETTER_ID_HEADER, letter_id)
    for name, value in (headers or {}).items():
        check_header(name, name)
        if name.lower() in _RESERVED or not name.isascii() or ":" in name or " " in name:
            raise HeaderError(f"header {name!r}: not allowed as an extra header (reserved or "
                              f"malformed)")
        msg[name] = check_header(name, value)
    msg.set_content(text, cte="quoted-printable" if not text.isascii() else "7bit")
    if html is not None:
        msg.add_alternative(html, subtype="html",
                            cte="quoted-printable" if not html.isascii() else "7bit")
    return Letter(msg.as_bytes(), message_id)

