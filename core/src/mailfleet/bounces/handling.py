"""Acting on bounce reports: match the letter, mark it, suppress dead addresses, tell the host.

A hard bounce or a complaint suppresses the address at once; soft bounces suppress it once
``soft_bounce_limit`` of them arrive within ``soft_bounce_window_days``. Handling a report
twice changes nothing more than handling it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

from mailfleet.bounces.mime import MAX_BYTES
from mailfleet.bounces.report import BounceReport, FailedRecipient
from mailfleet.clock import Clock, SystemClock
from mailfleet.config import BouncesConfig
from mailfleet.events import DeliveryEvent, EventType
from mailfleet.mailbox.budget import PARSE_BUDGET, ParseWorker, SetAsideMessage
from mailfleet.mailbox.imap import Fetched, ImapReader
from mailfleet.mailbox.pop3 import Pop3Reader
from mailfleet.mailbox.settings import MailboxSettings
from mailfleet.plugins.manager import Plugins
from mailfleet.store.base import LetterRecord, Store

log = logging.getLogger(__name__)

DAY = 86_400.0


@attrs.frozen
class Handled:
    """What one report did: its parse, the letter it answered, addresses suppressed."""

    report: BounceReport
    letter: LetterRecord | None
    marked: bool
    suppressed: tuple[str, ...]


class BounceHandler:
    """Applies reports to the store; events reach the host through ``mailfleet_event``."""

    def __init__(self, store: Store, plugins: Plugins, config: BouncesConfig | None = None,
                 clock: Clock | None = None) -> None:
        self.store = store
        self.plugins = plugins
        self.config = config or BouncesConfig()
        self.clock = clock or SystemClock()

    def handle(self, raw: bytes) -> Handled:
        """Parse ``raw`` (its first ``MAX_BYTES``, as the mailbox reader does) in this process
        and apply it; never raises for a malformed message."""
        return self.apply(self.plugins.parse_bounce(raw[:MAX_BYTES]))

    def apply(self, report: BounceReport) -> Handled:
        """Apply a parsed report to the store and tell the host."""
        letter = self._letter(report)
        suppressed: list[str] = []
        marked = False
        if report.kind == "bounce":
            for recipient in report.recipients:
                marked |= self._bounce(letter, recipient, suppressed)
        elif report.kind == "feedback":
            for address in self._complainers(report, letter):
                self._suppress(address, "complaint", suppressed)
                self._emit(EventType.COMPLAINED, letter, address, "feedback",
                           "the recipient reported the letter as spam")
        return Handled(report, letter, marked, tuple(suppressed))

    def _letter(self, report: BounceReport) -> LetterRecord | None:
        letter = None
        if report.letter_id:
            letter = self.store.find_letter(report.letter_id)
        if letter is None and report.original_message_id:
            letter = self.store.find_by_message_id(report.original_message_id)
        return letter

    def _bounce(self, letter: LetterRecord | None, recipient: FailedRecipient,
                suppressed: list[str]) -> bool:
        now = self.clock.now()
        address = recipient.address.lower()
        ours = letter is not None and letter.email.lower() == address
        marked = False
        if ours and letter is not None and letter.state != "bounced":
            marked = self.store.mark_bounced(
                letter.letter_id, hard=recipient.hard, reason=recipient.reason,
                status=recipient.status, diagnostic=recipient.diagnostic, now=now)
            self._emit(EventType.BOUNCED, letter, address, recipient.reason,
                       f"{'hard' if recipient.hard else 'soft'} bounce {recipient.status or ''}"
                       f": {recipient.diagnostic or ''}".strip())
        if recipient.hard:
            self._suppress(address, f"bounced-hard: {recipient.reason}", suppressed)
        elif ours:
            since = now - self.config.soft_bounce_window_days * DAY
            if self.store.count_soft_bounces(address, since) >= self.config.soft_bounce_limit:
                self._suppress(address, f"bounced-soft x{self.config.soft_bounce_limit}",
                               suppressed)
        return marked

    def _complainers(self, report: BounceReport, letter: LetterRecord | None) -> list[str]:
        addresses = [r.address.lower() for r in report.recipients if "@" in r.address]
        if not addresses and letter is not None:
            addresses = [letter.email.lower()]
        return addresses

    def _suppress(self, address: str, reason: str, suppressed: list[str]) -> None:
        if not self.store.is_suppressed(address):
            self.store.suppress(address, reason, self.clock.now(), source="bounce")
            suppressed.append(address)

    def _emit(self, kind: EventType, letter: LetterRecord | None, address: str,
              reason: str, detail: str) -> None:
        self.plugins.emit(DeliveryEvent(
            kind, at=_utc(self.clock.now()), mailing_id=letter.mailing_id if letter else None,
            letter_id=letter.letter_id if letter else None, recipient=address,
            server=letter.server if letter else None, detail=detail, reason=reason))


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def fetch_bounces(settings: MailboxSettings, handler: BounceHandler,
                  on_result: Callable[[Handled | SetAsideMessage], Any] | None = None, *,
                  budget: float = PARSE_BUDGET) -> int:
    """Read the mailbox once and apply every new report; return how many messages were
    taken. Each message is parsed by the production parser in a worker process within
    ``budget`` seconds (see :mod:`mailfleet.mailbox.budget`) and recorded in the mailbox at
    once; ``on_result`` hears of each one, handled or set aside."""
    reader = (ImapReader if settings.protocol == "imap" else Pop3Reader)(settings, handler.store)
    def report(result: Handled | SetAsideMessage) -> None:
        if isinstance(result, SetAsideMessage):
            log.warning("bounce mailbox: message %s set aside: %s", result.id, result.reason)
        if on_result is not None:
            on_result(result)

    with ParseWorker(handler.plugins.parse_bounce, budget) as worker:

        def handle(message: Fetched) -> None:
            if message.truncated:
                log.info("message %s: %d bytes, only the first %d parsed", message.id,
                         message.size, len(message.raw))
            report(handler.apply(worker.parse(message.raw)))

        return reader.read(handle, report)
