"""Sender policy: which From and envelope sender a letter really uses on a server."""

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
