"""What the report shows of IG1's billing for a period: reconciliation, variance by model, commit."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal

import duckdb

from usage_jobs.defs.billing.forecast import CommitForecast
from usage_jobs.defs.billing.nowcast import WINDOW_DAYS, Nowcast, unbilled_nowcasts
from usage_jobs.defs.billing.reconcile import stored_forecast, variance_pct
from usage_jobs.defs.report.periods import Period

# Days not billed yet or with incomplete logs would skew the comparison.
COMPARABLE_STATUSES = ["reconciled", "unpriced at the gateway", "not billed", "no gateway traffic"]


@dataclass(frozen=True)
class ReconciliationRow:
    """A day × model of the `reconciliation` table (the export, in its column order)."""

    date: str
    model: str
    estimated_input_tokens: int | None
    billed_input_tokens: int | None
    estimated_output_tokens: int | None
    billed_output_tokens: int | None
    token_variance_pct: float | None
    estimated_cost_usd: Decimal | None
    billed_cost: Decimal | None
    billed_currency: str | None
    billed_cost_usd: Decimal | None
    cost_variance_pct: float | None
    status: str
    estimated_requests: int | None
    billed_requests: int | None
    usd_rate: Decimal | None


RECONCILIATION_COLUMNS = [f.name for f in fields(ReconciliationRow)]


@dataclass(frozen=True)
class ModelVariance:
    """A model's comparable days summed: None for a cost when a day has no price or no USD rate."""

    model: str
    estimated_tokens: int
    billed_tokens: int
    billed_cost: Decimal
    estimated_cost_usd: Decimal | None
    billed_cost_usd: Decimal | None
    token_variance_pct: float | None
    cost_variance_pct: float | None


@dataclass(frozen=True)
class BillingTotals:
    estimated_tokens: int
    billed_tokens: int
    billed_cost: Decimal
    billed_cost_usd: Decimal | None  # None when a model's cost could not be converted
    priced_estimated_usd: Decimal  # the cost variance is over models priced and converted
    priced_billed_usd: Decimal
    token_variance_pct: float | None
    cost_variance_pct: float | None


@dataclass(frozen=True)
class BillingView:
    currency: str | None
    reconciliation: tuple[ReconciliationRow, ...]
    by_model: tuple[ModelVariance, ...]  # largest billed first
    totals: BillingTotals
    unbilled_days: tuple[str, ...]
    incomplete_days: tuple[str, ...]
    forecast: CommitForecast | None
    commit_currency: str | None
    commit_asked_on: str | None
    calibrated: tuple[Nowcast, ...] = ()  # days not billed yet: the calibrated estimate per day × model (nowcast.py)
    nowcast_window: int = WINDOW_DAYS

    @property
    def calibrated_total(self) -> tuple[Decimal, Decimal, Decimal] | None:
        """The calibrated cost of the period's unbilled days (contract currency) and its range."""
        priced = [n for n in self.calibrated if n.cost is not None]
        if not priced:
            return None
        return (sum((n.cost for n in priced), Decimal(0)), sum((n.cost_low for n in priced), Decimal(0)),
                sum((n.cost_high for n in priced), Decimal(0)))


def _by_model(conn: duckdb.DuckDBPyConnection, bounds: list[str]) -> tuple[ModelVariance, ...]:
    rows = conn.execute(
        "SELECT model, sum(coalesce(estimated_input_tokens, 0) + coalesce(estimated_output_tokens, 0)), "
        "sum(coalesce(billed_input_tokens, 0) + coalesce(billed_output_tokens, 0)), coalesce(sum(billed_cost), 0) AS billed, "
        "CASE WHEN bool_and(estimated_cost_usd IS NOT NULL) THEN coalesce(sum(estimated_cost_usd), 0) END, "
        "CASE WHEN bool_and(billed_cost_usd IS NOT NULL) THEN coalesce(sum(billed_cost_usd), 0) END "
        "FROM reconciliation WHERE day BETWEEN ? AND ? AND list_contains(?, status) GROUP BY model ORDER BY billed DESC, model",
        [*bounds, COMPARABLE_STATUSES]).fetchall()
    return tuple(ModelVariance(model, estimated, billed, cost, estimated_usd, billed_usd, variance_pct(billed, estimated, places=2),
                               variance_pct(billed_usd, estimated_usd, places=2))
                 for model, estimated, billed, cost, estimated_usd, billed_usd in rows)


def _totals(by_model: tuple[ModelVariance, ...]) -> BillingTotals:
    priced = [m for m in by_model if m.estimated_cost_usd is not None and m.billed_cost_usd is not None]
    estimated_tokens, billed_tokens = sum(m.estimated_tokens for m in by_model), sum(m.billed_tokens for m in by_model)
    priced_estimated, priced_billed = sum((m.estimated_cost_usd for m in priced), Decimal(0)), sum((m.billed_cost_usd for m in priced), Decimal(0))
    converted = all(m.billed_cost_usd is not None for m in by_model)
    return BillingTotals(
        estimated_tokens=estimated_tokens, billed_tokens=billed_tokens, billed_cost=sum((m.billed_cost for m in by_model), Decimal(0)),
        billed_cost_usd=sum((m.billed_cost_usd for m in by_model), Decimal(0)) if converted else None,
        priced_estimated_usd=priced_estimated, priced_billed_usd=priced_billed,
        token_variance_pct=variance_pct(billed_tokens, estimated_tokens, places=2), cost_variance_pct=variance_pct(priced_billed, priced_estimated, places=2))


def billing_view(conn: duckdb.DuckDBPyConnection, period: Period, with_forecast: bool) -> BillingView:
    bounds = [period.start.isoformat(), period.end.isoformat()]
    rows = tuple(ReconciliationRow(*row) for row in conn.execute(
        f"SELECT strftime(day, '%Y-%m-%d'), {', '.join(RECONCILIATION_COLUMNS[1:])} FROM reconciliation WHERE day BETWEEN ? AND ? ORDER BY day, model",
        bounds).fetchall())
    by_model = _by_model(conn, bounds)
    currency = next((r.billed_currency for r in rows if r.billed_currency), None)
    forecast, commit_currency, asked_on = stored_forecast(conn) if with_forecast else (None, None, None)
    return BillingView(
        currency=currency, reconciliation=rows, by_model=by_model, totals=_totals(by_model),
        unbilled_days=tuple(sorted({r.date for r in rows if r.status == "not billed yet"})),
        incomplete_days=tuple(sorted({r.date for r in rows if r.status == "gateway logs incomplete"})),
        forecast=forecast, commit_currency=commit_currency or currency, commit_asked_on=asked_on.isoformat() if asked_on else None,
        calibrated=tuple(unbilled_nowcasts(conn, period.start, period.end)),
    )
