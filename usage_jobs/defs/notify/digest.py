"""The admins' daily digest of one report day, read from the warehouse: what a reader of the site
would look at first, in a message.

Numbers come from the site's own readers (`period_data`, `billing_view`), so the digest and the
pages agree. "The usual" is the median, per figure, of the same weekday in the previous
USUAL_WEEKS weeks, over the days that were ingested (weekends and weekdays differ too much to
share a baseline). Nothing here knows Dagster: the run's failed checks are handed in."""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass
from decimal import Decimal

import duckdb

from usage_jobs.defs.billing.forecast import CommitForecast
from usage_jobs.defs.billing.reconcile import billing_window
from usage_jobs.defs.report.billing_view import billing_view
from usage_jobs.defs.report.periods import Period, day_period, month_period
from usage_jobs.defs.report.queries import period_data

USUAL_WEEKS = 4


@dataclass(frozen=True)
class Totals:
    requests: int
    total_tokens: int
    spend_usd: Decimal


@dataclass(frozen=True)
class Item:
    """One line of a list: what, about whom, why, and the site page that shows it (a path relative to the site)."""

    kind: str
    subject: str
    text: str
    path: str | None = None


@dataclass(frozen=True)
class FailedCheck:
    asset: str
    check: str
    severity: str  # ERROR | WARN
    description: str


@dataclass(frozen=True)
class Digest:
    day: dt.date
    ingested: bool  # False: the day is not in the warehouse (its run failed or has not happened)
    totals: Totals
    usual: Totals | None  # None without a comparable day
    usual_days: int
    attention: tuple[Item, ...]  # the site's list for the day: anomalies, budgets, expired or blocked keys still used
    variance_threshold_pct: float
    variance_days: tuple[dt.date, dt.date]  # the billing days the daily run reconciles again
    outliers: tuple[Item, ...]
    forecast: CommitForecast | None
    commit_currency: str | None
    failed_checks: tuple[FailedCheck, ...]

    @property
    def day_path(self) -> str:
        return f"periods/{self.day.isoformat()}/index.html"

    @property
    def billing_path(self) -> str:
        return f"periods/{month_period(self.day).slug}/reconciliation.html"


def _usual(conn: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[Totals | None, int]:
    """The median requests, tokens and spend of the same weekday in the previous USUAL_WEEKS weeks that were ingested."""
    weeks = [day - dt.timedelta(weeks=i) for i in range(1, USUAL_WEEKS + 1)]
    rows = conn.execute(
        "SELECT i.day, coalesce(sum(u.requests), 0), coalesce(sum(u.total_tokens), 0), coalesce(sum(u.spend_usd), 0) "
        "FROM ingest_days i LEFT JOIN daily_usage u USING (day) WHERE list_contains(?, i.day) GROUP BY i.day", [weeks]).fetchall()
    if not rows:
        return None, 0
    return Totals(*(statistics.median(row[i] for row in rows) for i in (1, 2, 3))), len(rows)


def _outliers(rows, threshold: float) -> tuple[Item, ...]:
    """Reconciled day × model rows whose token or cost variance is beyond the threshold (as `variance_within_threshold` judges)."""
    items = []
    for row in rows:
        largest = max(abs(row.token_variance_pct or 0), abs(row.cost_variance_pct or 0))
        if row.status == "reconciled" and largest > threshold:
            cost = "n/a" if row.cost_variance_pct is None else f"{row.cost_variance_pct:+.1f}%"
            items.append(Item("variance", row.model, f"{row.date}: tokens {row.token_variance_pct or 0:+.1f}%, cost {cost}",
                              f"periods/{row.date}/reconciliation.html"))
    return tuple(items)


def build_digest(conn: duckdb.DuckDBPyConnection, day: dt.date, *, variance_warn_pct: float, refresh_days: int, billing_configured: bool,
                 failed_checks: tuple[FailedCheck, ...] = ()) -> Digest:
    """The digest of `day` (a report day), from a warehouse connection (read-only is enough)."""
    data = period_data(conn, day_period(day), pages=False)
    # A key's page is its month's (a day has none), at the day's row.
    key_path = f"periods/{day.isoformat()[:7]}/key.html?k={{}}#d-{day.isoformat()}"
    attention = tuple(Item(item.kind, item.subject, item.text, key_path.format(item.page) if item.page else None) for item in data.attention)
    usual, usual_days = _usual(conn, day)
    start, end = billing_window(day, day, refresh_days, dt.date.min)
    billing = billing_view(conn, Period("digest", "range", start, end, ""), with_forecast=billing_configured)
    return Digest(
        day=day, ingested=not data.missing_days,
        totals=Totals(data.totals.requests, data.totals.total_tokens, data.totals.spend_usd or Decimal(0)),
        usual=usual, usual_days=usual_days, attention=attention, variance_threshold_pct=variance_warn_pct, variance_days=(start, end),
        outliers=_outliers(billing.reconciliation, variance_warn_pct) if billing_configured else (),
        forecast=billing.forecast, commit_currency=billing.commit_currency, failed_checks=failed_checks,
    )
