"""What travels over an SMTP session: envelopes in, per-letter results out."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import attrs

from mailfleet.errors import SmtpError


@attrs.frozen
class Envelope:
    """One letter ready to send: the envelope sender, the recipients and the message bytes."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")
    letter_id: str | None = None


@attrs.frozen
class SendResult:
    """The outcome of one envelope.

    ``error`` is set when the letter as a whole failed (MAIL FROM, DATA, or every recipient
    refused); ``refused`` maps each recipient refused at RCPT while others were accepted.
    """

    envelope: Envelope
    error: SmtpError | None = None
    refused: Mapping[str, SmtpError] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


class SmtpSession(Protocol):
    """An open, authenticated session that carries many letters (RSET between them)."""

    async def send(self, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None = None) -> list[SendResult]:
        """Send each envelope in order; one result per envelope, never an exception for a
        letter-level failure. A failure that breaks the session raises :class:`SmtpError`.

        ``stop`` picks the failures after which nothing more is attempted (the letters left
        get that failure as their result)."""
        ...

    async def probe_sender(self, mail_from: str) -> None:
        """``MAIL FROM`` then ``RSET``: prove the sender is accepted without sending."""
        ...

    async def close(self) -> None:
        """``QUIT`` and close; never raises."""
        ...
