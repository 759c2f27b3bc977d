"""Quota windows: which letters count against a limit now, and when the next one frees.

Windows are rolling by default (the last 60 s / 60 min / 24 h) or calendar (the clock
minute, hour or day in the server's time zone). The store keeps one ledger row per charged
letter; these functions turn limits and ledger times into counts, remaining and ``frees_at``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import attrs

from mailfleet.plugins.providers import Limits

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


@attrs.frozen
class WindowStatus:
    """One window of a server now: letters counted, the limit, what is left, and when the
    next letter frees (``None``: one may go now, or no limit)."""

    used: int
    limit: int | None
    remaining: int | None
    frees_at: float | None


@attrs.frozen
class QuotaStatus:
    """One server's quota now."""

    server: str
    minute: WindowStatus
    hour: WindowStatus
    day: WindowStatus
    blocked_until: float | None
    blocked_reason: str | None
    #: consecutive failures counted by the server's circuit breaker (0: closed, healthy)
    failures: int = 0

    def next_free(self, now: float) -> float:
        """When the next letter may go: now, the end of a block, or when a full window frees."""
        at = self.blocked_until or now
        for window in (self.minute, self.hour, self.day):
            if window.remaining == 0 and window.frees_at is not None:
                at = max(at, window.frees_at)
        return at

    @property
    def available(self) -> bool:
        return self.blocked_until is None and all(
            w.remaining is None or w.remaining > 0 for w in (self.minute, self.hour, self.day))



#: Charges of one server later than a start time.
Used = Callable[[float], int]
#: The time of the k-th oldest (1-based) charge of one server later than a start time.
Nth = Callable[[float, int], "float | None"]


def remaining_now(limits: Limits, now: float, used: Used, nth: Nth
              ) -> tuple[int | None, float | None]:
    """Letters that may still go now (``None``: no limit) and, when none may, the time the
    last full window frees one."""
    left_now: int | None = None
    frees: float | None = None
    for window in windows(limits):
        start = window.start(now)
        count = used(start)
        left = max(0, window.limit - count)
        left_now = left if left_now is None else min(left_now, left)
        if left == 0:
            at = window.frees_at(now, count, functools.partial(nth, start))
            if at is not None:
                frees = at if frees is None else max(frees, at)
    return left_now, frees


def window_status(limits: Limits, now: float, used: Used, nth: Nth
                  ) -> dict[str, WindowStatus]:
    """Used, limit, remaining and ``frees_at`` for the minute, hour and day (the last ones
    rolling, for the record, where the server has no such limit)."""
    found = {w.kind: w for w in windows(limits)}
    status: dict[str, WindowStatus] = {}
    for kind, seconds in SECONDS.items():
        window = found.get(kind)
        start = window.start(now) if window else now - seconds
        count = used(start)
        if window is None:
            status[kind] = WindowStatus(count, None, None, None)
            continue
        frees = window.frees_at(now, count, functools.partial(nth, start))
        status[kind] = WindowStatus(count, window.limit, max(0, window.limit - count), frees)
    return status
