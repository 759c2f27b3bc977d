"""Quota windows: which letters count against a limit now, and when the next one frees.

Windows are rolling by default (the last 60 s / 60 min / 24 h) or calendar (the clock
minute, hour or day in the server's time zone). The store keeps one ledger row per charged
letter; these functions turn limits and ledger times into counts, remaining and ``frees_at``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import attrs

from mailfleet.providers import Limits

SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@attrs.frozen
class Window:
    """One limited window of a server: ``kind`` minute/hour/day and its limit."""

    kind: str
    limit: int
    calendar: bool
    timezone: str

    def start(self, now: float) -> float:
        """The earliest ledger time that still counts at ``now``."""
        if not self.calendar:
            return now - SECONDS[self.kind]
        zone = ZoneInfo(self.timezone)
        local = datetime.fromtimestamp(now, zone)
        if self.kind == "minute":
            local = local.replace(second=0, microsecond=0)
        elif self.kind == "hour":
            local = local.replace(minute=0, second=0, microsecond=0)
        else:
            local = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return local.timestamp()

    def next_reset(self, now: float) -> float:
        """For calendar windows: when the current window ends."""
        zone = ZoneInfo(self.timezone)
        start = datetime.fromtimestamp(self.start(now), zone)
        step = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1),
                "day": timedelta(days=1)}[self.kind]
        # wall-clock arithmetic, then back to an instant (DST days are 23 or 25 hours)
        return (start.replace(tzinfo=None) + step).replace(tzinfo=zone).timestamp()

    def frees_at(self, now: float, used: int, nth_oldest: Callable[[int], float | None]
                 ) -> float | None:
        """When the next letter may go; ``None`` when one may go now.

        ``nth_oldest(k)`` returns the time of the k-th oldest (1-based) ledger row in the
        window (used by rolling windows: that row leaving the window frees a letter).
        """
        if used < self.limit:
            return None
        if self.calendar:
            return self.next_reset(now)
        oldest = nth_oldest(used - self.limit + 1)
        return (oldest if oldest is not None else now) + SECONDS[self.kind]


def windows(limits: Limits) -> list[Window]:
    """The limited windows of ``limits`` (minute, hour, day; unlimited ones left out)."""
    calendar = limits.window == "calendar"
    out = []
    for kind, limit in (("minute", limits.per_minute), ("hour", limits.per_hour),
                        ("day", limits.per_day)):
        if limit is not None:
            out.append(Window(kind, limit, calendar, limits.timezone))
    return out


def block_until_reset(limits: Limits, now: float) -> float:
    """When a provider's "limit exceeded" block ends, if the provider gave no duration:
    the end of the longest limited window (a day when no limit is configured)."""
    found = windows(limits)
    if not found:
        return now + SECONDS["day"]
    widest = found[-1]
    return widest.next_reset(now) if widest.calendar else now + SECONDS[widest.kind]
