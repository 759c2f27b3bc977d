"""Delivery events, a fixed vocabulary the host application observes through a hook."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class EventType(enum.StrEnum):
    """What happened to a letter, a server or a mailing."""

    SENT = "sent"                        # the server accepted the letter
    FAILED = "failed"                    # the letter will never go (permanent failure)
    DEFERRED = "deferred"                # a transient failure; it will be retried
    SKIPPED = "skipped"                  # the recipient is suppressed
    QUOTA_EXHAUSTED = "quota_exhausted"  # a server's limit is spent or the provider said so
    RESUMED = "resumed"                  # a window reopened, or a mailing was resumed
    PAUSED = "paused"                    # a mailing paused itself or was paused
    BOUNCED = "bounced"                  # a bounce report marked the letter
    COMPLAINED = "complained"            # a feedback (ARF) report named the recipient
    SERVER_DOWN = "server_down"          # a server's connection broke; it rests (breaker open)
    RECOVERED = "recovered"              # letters of a stopped dispatcher were taken back


@attrs.frozen
class DeliveryEvent:
    """One event; ``detail`` is a human sentence, ``reason`` a bounce reason word."""

    type: EventType
    at: datetime
    mailing_id: str | None = None
    letter_id: str | None = None
    recipient: str | None = None
    server: str | None = None
    detail: str = ""
    reason: str | None = None
