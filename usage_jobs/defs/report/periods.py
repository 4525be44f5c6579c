"""Report periods: each day, ISO week, calendar month, quarter and year with data, plus the rolling
last 7 and last 30 days ending on the last complete day; and how a page moves between them.

A `range` period (any start to end, `usage-report export`) is never published: it is kept out of
`report_periods` and `navigation`."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

# The kinds the site publishes, in the order its navigation lists them.
KINDS = ("day", "week", "month", "quarter", "year", "last-7-days", "last-30-days")
KIND_LABELS = {"day": "Day", "week": "Week", "month": "Month", "quarter": "Quarter", "year": "Year", "last-7-days": "Last 7 days",
               "last-30-days": "Last 30 days"}
RANGE = "range"  # any start to end: exported on demand, never a page of the site


@dataclass(frozen=True)
class Period:
    slug: str  # folder name under periods/
    kind: str  # one of KINDS, or RANGE
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
        calendar_kinds = {"month": month_period, "quarter": quarter_period, "year": year_period}
        if self.kind in calendar_kinds:  # the calendar period before, of its own length
            before = calendar_kinds[self.kind](self.start - dt.timedelta(days=1))
            return before.start, before.end
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


def quarter_period(day: dt.date) -> Period:
    quarter = (day.month - 1) // 3 + 1
    start = dt.date(day.year, 3 * quarter - 2, 1)
    end = dt.date(day.year, 3 * quarter, calendar.monthrange(day.year, 3 * quarter)[1])
    return Period(f"{day.year}-Q{quarter}", "quarter", start, end, f"Q{quarter} {day.year}")


def year_period(day: dt.date) -> Period:
    return Period(str(day.year), "year", dt.date(day.year, 1, 1), dt.date(day.year, 12, 31), str(day.year))


def _day_label(day: dt.date) -> str:
    return f"{day.day} {day.strftime('%B %Y')}"


def range_period(start: dt.date, end: dt.date) -> Period:
    """Any span, both ends included (`usage-report export --start --end`): slug `2026-10-03_2026-11-12`."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    label = _day_label(start) if start == end else f"{_day_label(start)} to {_day_label(end)}"
    return Period(f"{start.isoformat()}_{end.isoformat()}", RANGE, start, end, label)


def rolling_period(last_day: dt.date, length: int) -> Period:
    start = last_day - dt.timedelta(days=length - 1)
    return Period(f"last-{length}-days", f"last-{length}-days", start, last_day,
                  f"Last {length} days ({start.isoformat()} to {last_day.isoformat()})")


def report_periods(days_with_data: list[dt.date]) -> list[Period]:
    """Every period to publish: the rolling ones first (last 7 days is the default view), then
    years, quarters, months, weeks and days, newest first."""
    if not days_with_data:
        return []
    days = sorted(set(days_with_data), reverse=True)
    last_day = days[0]
    spans = []
    for make in (year_period, quarter_period, month_period, week_period):
        periods = {make(d).slug: make(d) for d in days}
        spans += sorted(periods.values(), key=lambda p: p.start, reverse=True)
    return [rolling_period(last_day, 7), rolling_period(last_day, 30)] + spans + [day_period(d) for d in days]


SLUG_FORMS = "YYYY-MM-DD, YYYY-Www, YYYY-MM, YYYY-Qn, YYYY, last-7-days, last-30-days or START_END (YYYY-MM-DD_YYYY-MM-DD)"


def period_from_slug(slug: str, last_day: dt.date | None = None) -> Period:
    """The period a site folder is named after (`2026-11`, `2026-Q4`, `2026`, `2026-W47`, `2026-11-20`,
    `last-7-days` ending on `last_day`), or a range slug; ValueError naming the forms for anything else."""
    rolling = re.fullmatch(r"last-(7|30)-days", slug)
    if rolling:
        if last_day is None:
            raise ValueError(f"{slug} ends on the last ingested day, and no day is ingested")
        return rolling_period(last_day, int(rolling[1]))
    forms: list[tuple[str, object]] = [
        (r"(\d{4}-\d{2}-\d{2})", lambda m: day_period(dt.date.fromisoformat(m[1]))),
        (r"(\d{4})-W(\d{2})", lambda m: week_period(dt.date.fromisocalendar(int(m[1]), int(m[2]), 1))),
        (r"(\d{4}-\d{2})", lambda m: month_period(dt.date.fromisoformat(m[1] + "-01"))),
        (r"(\d{4})-Q([1-4])", lambda m: quarter_period(dt.date(int(m[1]), 3 * int(m[2]), 1))),
        (r"(\d{4})", lambda m: year_period(dt.date(int(m[1]), 1, 1))),
        (r"(\d{4}-\d{2}-\d{2})_(\d{4}-\d{2}-\d{2})", lambda m: range_period(dt.date.fromisoformat(m[1]), dt.date.fromisoformat(m[2]))),
    ]
    for pattern, make in forms:
        match = re.fullmatch(pattern, slug)
        if match:
            try:
                period = make(match)
            except ValueError as exc:  # 2026-13, 2026-W54, 2026-02-30, a range ending before it starts
                raise ValueError(f"{slug!r} names no period ({exc}): use {SLUG_FORMS}") from None
            if period.slug == slug:
                return period
            break  # e.g. 2026-W53 of a year of 52 weeks is week 1 of the next
    raise ValueError(f"{slug!r} names no period: use {SLUG_FORMS}")


@dataclass(frozen=True)
class Navigation:
    """Where a page can go: the previous/next period of its kind, and the other kinds."""

    previous: Period | None
    next: Period | None
    kinds: tuple[tuple[str, Period | None], ...]  # (kind label, period of that kind around this one)


def navigation(periods: list[Period]) -> dict[str, Navigation]:
    """Each published period's navigation (range periods have none: they are not pages)."""
    periods = [period for period in periods if period.kind in KINDS]
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


def consecutive_runs(days) -> list[tuple[dt.date, dt.date]]:
    """Days (dates, in any order, repeats allowed) as runs of consecutive days, (first, last) each, in order."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and day == runs[-1][1] + dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def day_runs(days: list[dt.date] | list[str], limit: int = 6) -> str:
    """Days as runs of consecutive days: `2026-11-01 to 2026-11-16, 2026-11-21`; past `limit` runs, the first and last ones."""
    runs = consecutive_runs(dt.date.fromisoformat(d) if isinstance(d, str) else d for d in days)
    text = [first.isoformat() if first == last else f"{first} to {last}" for first, last in runs]
    if len(text) > limit:
        text = text[: limit // 2] + [f"… ({len(text) - 2 * (limit // 2)} more runs) …"] + text[-(limit // 2):]
    return ", ".join(text)
