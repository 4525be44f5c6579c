"""The month's commit: spend so far, run-rate projection to month end, the day it runs out."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

RUN_RATE_DAYS = 7


@dataclass(frozen=True)
class CommitForecast:
    as_of: dt.date  # the last complete billed day the projection starts from
    month: str
    spent: Decimal
    commit: Decimal
    run_rate_per_day: Decimal  # mean billed cost of the last complete billed days
    run_rate_days: int
    projected_month_end: Decimal
    exhausted_on: dt.date | None  # projected day the commit runs out, None when it lasts the month
    already_exhausted: bool

    @property
    def used_share(self) -> float:
        return float(self.spent / self.commit) if self.commit else 0.0

    @property
    def projected_share(self) -> float:
        return float(self.projected_month_end / self.commit) if self.commit else 0.0


def commit_forecast(*, today: dt.date, spent: Decimal, commit: Decimal, daily_costs: dict[dt.date, Decimal]) -> CommitForecast:
    """Project the month from `spent` (IG1's /usage `current`) and the billed cost of recent days.

    The run-rate is the mean billed cost over the last RUN_RATE_DAYS days before `today`
    that IG1 has billed (falling back to fewer when there are fewer); the days left are
    today up to the month's last day."""
    last_day = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    recent = sorted(day for day in daily_costs if day < today)[-RUN_RATE_DAYS:]
    rate = (sum(daily_costs[day] for day in recent) / len(recent)) if recent else Decimal(0)
    days_left = (last_day - today).days + 1
    projected = spent + rate * days_left
    exhausted_on = None
    if spent < commit and rate > 0:
        runway_days = int((commit - spent) / rate)  # whole days the remaining commit covers
        day = today + dt.timedelta(days=runway_days)
        exhausted_on = day if day <= last_day else None
    cents = Decimal("0.01")
    return CommitForecast(
        as_of=recent[-1] if recent else today - dt.timedelta(days=1), month=today.strftime("%Y-%m"), spent=spent, commit=commit,
        run_rate_per_day=rate.quantize(cents, ROUND_HALF_UP), run_rate_days=len(recent),
        projected_month_end=projected.quantize(cents, ROUND_HALF_UP), exhausted_on=exhausted_on, already_exhausted=spent >= commit,
    )
