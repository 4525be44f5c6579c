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
    run_rate_per_day: Decimal  # mean cost (billed, or calibrated where not billed yet) of the last days
    run_rate_days: int
    projected_month_end: Decimal
    exhausted_on: dt.date | None  # projected day the commit runs out, None when it lasts the month
    already_exhausted: bool
    calibrated: Decimal = Decimal(0)  # calibrated cost of this month's days not billed yet, counted in spent_total
    calibrated_low: Decimal = Decimal(0)
    calibrated_high: Decimal = Decimal(0)
    calibrated_days: tuple[dt.date, ...] = ()
    run_rate_calibrated_days: int = 0  # of the run-rate's days, those at their calibrated cost

    @property
    def spent_total(self) -> Decimal:
        """Billed (IG1's figure) plus the calibrated estimate of the month's days not billed yet."""
        return self.spent + self.calibrated

    @property
    def used_share(self) -> float:
        return float(self.spent_total / self.commit) if self.commit else 0.0

    @property
    def projected_share(self) -> float:
        return float(self.projected_month_end / self.commit) if self.commit else 0.0


def commit_forecast(*, today: dt.date, spent: Decimal, commit: Decimal, daily_costs: dict[dt.date, Decimal],
                    calibrated: dict | None = None) -> CommitForecast:
    """Project the month from `spent` (IG1's /usage `current`), the billed cost of recent days and the
    calibrated cost of the days not billed yet (`calibrated`: day → `nowcast.CalibratedDay`).

    Spent so far is `spent` plus the calibrated cost of this month's unbilled days before `today`.
    The run-rate is the mean cost over the last RUN_RATE_DAYS days before `today` that are billed
    or calibrated (falling back to fewer when there are fewer); the days left are today up to the
    month's last day."""
    calibrated = {day: item for day, item in (calibrated or {}).items() if day < today and day not in daily_costs}
    last_day = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    costs = {**{day: item.cost for day, item in calibrated.items()}, **daily_costs}
    recent = sorted(day for day in costs if day < today)[-RUN_RATE_DAYS:]
    rate = (sum(costs[day] for day in recent) / len(recent)) if recent else Decimal(0)
    this_month = [item for day, item in sorted(calibrated.items()) if day.strftime("%Y-%m") == today.strftime("%Y-%m")]
    extra = sum((item.cost for item in this_month), Decimal(0))
    total = spent + extra
    days_left = (last_day - today).days + 1
    projected = total + rate * days_left
    exhausted_on = None
    if total < commit and rate > 0:
        runway_days = int((commit - total) / rate)  # whole days the remaining commit covers
        day = today + dt.timedelta(days=runway_days)
        exhausted_on = day if day <= last_day else None
    cents = Decimal("0.01")
    return CommitForecast(
        as_of=recent[-1] if recent else today - dt.timedelta(days=1), month=today.strftime("%Y-%m"), spent=spent, commit=commit,
        run_rate_per_day=rate.quantize(cents, ROUND_HALF_UP), run_rate_days=len(recent),
        projected_month_end=projected.quantize(cents, ROUND_HALF_UP), exhausted_on=exhausted_on, already_exhausted=spent >= commit,
        calibrated=extra.quantize(cents, ROUND_HALF_UP),
        calibrated_low=sum((item.low for item in this_month), Decimal(0)).quantize(cents, ROUND_HALF_UP),
        calibrated_high=sum((item.high for item in this_month), Decimal(0)).quantize(cents, ROUND_HALF_UP),
        calibrated_days=tuple(item.day for item in this_month), run_rate_calibrated_days=sum(1 for day in recent if day in calibrated),
    )
