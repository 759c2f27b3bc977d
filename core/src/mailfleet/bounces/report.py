"""What a bounce parser returns: the report's kind and each failed recipient.

Reasons come from a fixed vocabulary (see ``docs/bounces.md`` for each one's meaning).
"""

from __future__ import annotations

from typing import Literal

import attrs

Kind = Literal["bounce", "delay", "feedback", "autoreply", "delivered", "not-bounce"]

REASONS: frozenset[str] = frozenset({
    "userunknown", "hostunknown", "hasmoved", "mailboxfull", "filtered", "rejected",
    "blocked", "spamdetected", "virusdetected", "policyviolation", "securityerror",
    "authfailure", "badreputation", "requireptr", "notcompliantrfc", "norelaying",
    "notaccept", "mesgtoobig", "contenterror", "exceedlimit", "speeding", "toomanyconn",
    "suspend", "expired", "systemerror", "networkerror", "mailererror", "syntaxerror",
    "onhold", "undefined", "delivered", "feedback", "vacation",
})


@attrs.frozen
class FailedRecipient:
    """One recipient of a report.

    ``status`` is the RFC 3463 code (``5.1.1``), ``reply_code`` the SMTP code (``550``),
    ``reason`` a word of :data:`REASONS`; ``hard`` is true when the address itself is dead
    (user unknown, host unknown, moved), so it must be suppressed at once.
    """

    address: str
    action: str | None = None
    status: str | None = None
    reply_code: str | None = None
    reason: str = "undefined"
    hard: bool = False
    diagnostic: str | None = None


@attrs.frozen
class BounceReport:
    """A parsed report: its ``kind``, recipients, and how to find the letter it answers."""

    kind: Kind
    recipients: tuple[FailedRecipient, ...] = ()
    original_message_id: str | None = None
    letter_id: str | None = None
    reporting_mta: str | None = None
    parser: str = "core"
    note: str | None = None
    """Set when the message was not read whole (it exceeded the input budget)."""
