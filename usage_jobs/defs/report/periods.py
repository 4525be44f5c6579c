"""Report periods: each day, ISO week and calendar month with data, plus the rolling last 7
and last 30 days ending on the last complete day; and how a page moves between them."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

KINDS = ("day", "week", "month", "last-7-days", "last-30-days")
KIND_LABELS = {"day": "Day", "week": "Week", "month": "Month", "last-7-days": "Last 7 days", "last-30-days": "Last 30 days"}


@dataclass(frozen=True)
class Period:
    slug: str  # folder name under periods/
    kind: str  # one of KINDS
    start: dt.date
    end: dt.date  # inclusive
    label: str

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    @property
    def length(self) -> int:
        return (self.end - self.start).days + 1

    def previous_span(self) -> tuple[dt.date, dt.date]:
        """The period of the same kind just before this one (for the change in KPIs)."""
        if self.kind == "month":
            end = self.start - dt.timedelta(days=1)
            return end.replace(day=1), end
        return self.start - dt.timedelta(days=self.length), self.start - dt.timedelta(days=1)


def day_period(day: dt.date) -> Period:
    return Period(day.isoformat(), "day", day, day, day.strftime("%A %d %B %Y").replace(" 0", " "))


def week_period(day: dt.date) -> Period:
    year, week, _ = day.isocalendar()
    start = dt.date.fromisocalendar(year, week, 1)
    end = start + dt.timedelta(days=6)
    return Period(f"{year}-W{week:02d}", "week", start, end, f"Week {week} of {year} ({start.isoformat()} to {end.isoformat()})")


def month_period(day: dt.date) -> Period:
    start = day.replace(day=1)
    end = day.replace(day=calendar.monthrange(day.year, day.month)[1])
    return Period(start.strftime("%Y-%m"), "month", start, end, start.strftime("%B %Y"))


def rolling_period(last_day: dt.date, length: int) -> Period:
    start = last_day - dt.timedelta(days=length - 1)
    return Period(f"last-{length}-days", f"last-{length}-days", start, last_day,
                  f"Last {length} days ({start.isoformat()} to {last_day.isoformat()})")


def report_periods(days_with_data: list[dt.date]) -> list[Period]:
    """Every period to publish: the rolling ones first (last 7 days is the default view), then
    months, weeks and days, newest first."""
    if not days_with_data:
        return []
    days = sorted(set(days_with_data), reverse=True)
    last_day = days[0]
    months = {month_period(d).slug: month_period(d) for d in days}
    weeks = {week_period(d).slug: week_period(d) for d in days}
    return ([rolling_period(last_day, 7), rolling_period(last_day, 30)] + sorted(months.values(), key=lambda p: p.start, reverse=True)
            + sorted(weeks.values(), key=lambda p: p.start, reverse=True) + [day_period(d) for d in days])


@dataclass(frozen=True)
class Navigation:
    """Where a page can go: the previous/next period of its kind, and the other kinds."""

    previous: Period | None
    next: Period | None
    kinds: tuple[tuple[str, Period | None], ...]  # (kind label, period of that kind around this one)


def navigation(periods: list[Period]) -> dict[str, Navigation]:
    by_kind: dict[str, list[Period]] = {}
    for period in periods:
        by_kind.setdefault(period.kind, []).append(period)
    for kind_periods in by_kind.values():
        kind_periods.sort(key=lambda p: p.start)
    last_day = max(p.end for p in periods if p.kind == "day")
    result = {}
    for period in periods:
        same = by_kind[period.kind]
        index = same.index(period)
        anchor = min(period.end, last_day)
        kinds = []
        for kind in KINDS:
            candidates = by_kind.get(kind, [])
            # The period of that kind holding this one's last day (else the nearest before it);
            # the rolling periods always end on the last day, so every page links to them as they are.
            match = candidates[0] if kind.startswith("last-") and candidates else next((p for p in candidates if p.start <= anchor <= p.end), None)
            if match is None:
                earlier = [p for p in candidates if p.end <= anchor]
                match = earlier[-1] if earlier else None
            kinds.append((KIND_LABELS[kind], match))
        result[period.slug] = Navigation(same[index - 1] if index > 0 else None, same[index + 1] if index + 1 < len(same) else None, tuple(kinds))
    return result
