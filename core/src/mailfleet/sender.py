"""Sender policy: which From and envelope sender a letter really uses on a server.

VERP: with ``[bounces] verp = true`` each letter asks for the envelope sender
``<bounce local part>+mf-<letter id>@<domain>``, so its bounce names the letter even when the
report quotes nothing of it; providers that refuse foreign envelope senders drop it.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class SenderRequest:
    """What the mailing wants: the From address and name, and an envelope sender
    (``None``: same as From; a VERP address when the mailing asks for one)."""

    from_addr: str
    from_name: str = ""
    envelope_from: str | None = None


@attrs.frozen
class SenderDecision:
    """What will really be used, and why (``substituted``: the request was overridden)."""

    from_addr: str
    from_name: str
    envelope_from: str
    substituted: bool
    reason: str


VERP_MARK = "+mf-"
LETTER_ID = "{letter_id}"


def verp_template(address: str) -> str:
    """The VERP envelope sender for ``address``, with ``{letter_id}`` still to fill."""
    local, _, domain = address.rpartition("@")
    return f"{local}{VERP_MARK}{LETTER_ID}@{domain}"


def envelope_for(decided: str, letter_id: str) -> str:
    """The envelope sender of one letter: the VERP template filled in, or ``decided`` as is."""
    return decided.replace(LETTER_ID, letter_id) if LETTER_ID in decided else decided
