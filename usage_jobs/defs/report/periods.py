"""Report periods: each day, plus the rolling last 7 days ending on the last complete day."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Period:
    slug: str  # folder name under periods/
    kind: str  # day | rolling
    start: dt.date
    end: dt.date  # inclusive
    label: str

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def day_period(day: dt.date) -> Period:
    return Period(day.isoformat(), "day", day, day, day.strftime("%A %d %B %Y").replace(" 0", " "))


def rolling_period(last_day: dt.date, length: int) -> Period:
    start = last_day - dt.timedelta(days=length - 1)
    return Period(f"last-{length}-days", "rolling", start, last_day, f"Last {length} days ({start.isoformat()} to {last_day.isoformat()})")


def report_periods(days_with_data: list[dt.date]) -> list[Period]:
    """The periods to publish: rolling last 7 days first (the default view), then every day."""
    if not days_with_data:
        return []
    last_day = max(days_with_data)
    return [rolling_period(last_day, 7)] + [day_period(day) for day in sorted(days_with_data, reverse=True)]
