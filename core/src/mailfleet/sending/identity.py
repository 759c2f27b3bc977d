"""How a letter is named: its id, its Message-ID, its VERP address and its letter-id header.

One format and one parser each, so that a bounce report (which may quote any of them) leads
back to the letter that was sent:

- the letter id is ``<mailing id>-<sequence number>`` (``m1a2b3c4d5e6f-42``);
- its Message-ID is ``<letter id@domain>`` (the mailing's ``message_id_domain``), the same
  at every attempt, so a letter resent after a crash is recognised as one;
- its VERP envelope sender is ``<local>+mf-<letter id>@<domain>`` of the bounce mailbox;
- the header ``X-Mailfleet-Letter-Id: <letter id>`` is in every letter of a mailing.
"""

from __future__ import annotations

import re

LETTER_ID_HEADER = "X-Mailfleet-Letter-Id"
VERP_MARK = "+mf-"

#: The letter-id header as quoted in a bounce (folded or not, in angle brackets or not).
LETTER_ID_RE = re.compile(
    r"X-Mailfleet-Letter-Id:[ \t]*(?:\r?\n[ \t]+)?<?([A-Za-z0-9._:=\-]{1,128})",
    re.IGNORECASE)
#: A VERP address anywhere in a text: its letter id.
VERP_RE = re.compile(r"\+mf-([A-Za-z0-9._=\-]{1,128})@", re.IGNORECASE)


def letter_id(mailing_id: str, seq: int) -> str:
    """The id of letter number ``seq`` of a mailing."""
    return f"{mailing_id}-{seq}"


def parse_letter_id(text: str) -> tuple[str, int] | None:
    """``(mailing id, sequence number)`` of a letter id, or ``None`` if it is not one."""
    mailing, _, seq = text.strip().rpartition("-")
    if not mailing or not seq.isdigit():
        return None
    return mailing, int(seq)


def message_id(letter: str, domain: str) -> str:
    """The Message-ID of a letter (with angle brackets)."""
    return f"<{letter}@{domain}>"


def parse_message_id(text: str) -> str | None:
    """The letter id inside a Message-ID (angle brackets optional), or ``None``."""
    local, at, _ = text.strip().strip("<>").rpartition("@")
    return local if at and parse_letter_id(local) is not None else None


def verp_address(address: str, letter: str) -> str:
    """The VERP envelope sender naming ``letter`` under the mailbox ``address``."""
    local, _, domain = address.rpartition("@")
    return f"{local}{VERP_MARK}{letter}@{domain}"


def parse_verp(text: str) -> str | None:
    """The letter id of the first VERP address in ``text``, or ``None``."""
    found = VERP_RE.search(text)
    return found.group(1) if found else None
