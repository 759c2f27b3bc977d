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
    #: ``data`` has CRLF line ends only, ends with CRLF and no line starts with a dot (a
    #: compiled template knows it): the client sends it without scanning it again
    wire_ready: bool = False


@attrs.frozen
class SendResult:
    """The outcome of one envelope.

    ``error`` is set when the letter as a whole failed (MAIL FROM, DATA, or every recipient
    refused); ``refused`` maps each recipient refused at RCPT while others were accepted.
    When the session broke mid-batch: ``in_doubt`` marks the letter whose message had gone
    without a final reply (it may have been delivered), ``attempted = False`` the letters the
    server never received (they keep their attempts).
    """

    envelope: Envelope
    error: SmtpError | None = None
    refused: Mapping[str, SmtpError] = attrs.field(factory=dict)
    in_doubt: bool = False
    attempted: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None


class SendObserver(Protocol):
    """Told by a session, letter by letter, what the server has: set it as the session's
    ``observer`` attribute (sessions without one are observed per batch only)."""

    async def data_starting(self, envelopes: Sequence[Envelope],
                            write: Callable[[], None]) -> None:
        """The letters' messages are ready to go (one with DATA, several pipelined with
        CHUNKING): make "they may be delivered from here on" durable, then call ``write`` at
        once (it puts the messages on the wire), then return. Until ``write`` is called the
        server has nothing of them."""
        ...

    def replied(self, result: SendResult) -> None:
        """The server's final reply for one letter (accepted or refused)."""
        ...


class SmtpSession(Protocol):
    """An open, authenticated session that carries many letters (RSET between them)."""

    async def send(self, envelopes: Sequence[Envelope],
                   stop: Callable[[SmtpError], bool] | None = None) -> list[SendResult]:
        """Send each envelope in order; one result per envelope, never an exception for a
        letter-level failure. A session that breaks mid-batch still returns one result per
        envelope (``in_doubt`` / ``attempted`` say what the server may have); a session may
        also raise :class:`SmtpError` for it, and the caller then relies on its observer.

        ``stop`` picks the failures after which nothing more is attempted (the letters left
        get that failure as their result)."""
        ...

    async def probe_sender(self, mail_from: str) -> None:
        """``MAIL FROM`` then ``RSET``: prove the sender is accepted without sending."""
        ...

    async def close(self) -> None:
        """``QUIT`` and close; never raises."""
        ...
