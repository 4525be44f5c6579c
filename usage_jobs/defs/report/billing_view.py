"""What the report shows of IG1's billing for a period: reconciliation, chargeback, commit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb

from usage_jobs.defs.billing.forecast import CommitForecast
from usage_jobs.defs.billing.reconcile import stored_forecast, variance_pct
from usage_jobs.defs.report.periods import Period
from usage_jobs.defs.report.queries import rows_as_dicts

RECONCILIATION_COLUMNS = ["date", "model", "estimated_input_tokens", "billed_input_tokens", "estimated_output_tokens", "billed_output_tokens",
                          "token_variance_pct", "estimated_cost_usd", "billed_cost", "billed_currency", "billed_cost_usd", "cost_variance_pct",
                          "status", "estimated_requests", "billed_requests", "usd_rate"]


@dataclass
class BillingView:
    currency: str | None
    reconciliation: list[dict]  # day × model rows (the export)
    by_model: list[dict]  # period totals per model, with variances
    totals: dict
    unbilled_days: list[str]
    incomplete_days: list[str]
    forecast: CommitForecast | None
    commit_currency: str | None
    commit_asked_on: str | None


def billing_view(conn: duckdb.DuckDBPyConnection, period: Period, with_forecast: bool) -> BillingView:
    bounds = [period.start.isoformat(), period.end.isoformat()]
    rows = rows_as_dicts(conn.execute(
        "SELECT strftime(day, '%Y-%m-%d') AS date, * EXCLUDE (day) FROM reconciliation WHERE day BETWEEN ? AND ? ORDER BY day, model", bounds))
    rows = [{name: row[name] for name in RECONCILIATION_COLUMNS} for row in rows]
    models: dict[str, dict] = {}
    for row in rows:
        if row["status"] not in ("reconciled", "unpriced at the gateway", "not billed", "no gateway traffic"):
            continue  # days not billed yet or with incomplete logs would skew the comparison
        m = models.setdefault(row["model"], {"model": row["model"], "estimated_tokens": 0, "billed_tokens": 0, "estimated_cost_usd": Decimal(0),
                                             "billed_cost": Decimal(0), "billed_cost_usd": Decimal(0), "priced": True, "converted": True})
        m["estimated_tokens"] += (row["estimated_input_tokens"] or 0) + (row["estimated_output_tokens"] or 0)
        m["billed_tokens"] += (row["billed_input_tokens"] or 0) + (row["billed_output_tokens"] or 0)
        m["billed_cost"] += row["billed_cost"] or 0
        m["priced"] &= row["estimated_cost_usd"] is not None
        m["converted"] &= row["billed_cost_usd"] is not None
        m["estimated_cost_usd"] += row["estimated_cost_usd"] or 0
        m["billed_cost_usd"] += row["billed_cost_usd"] or 0
    by_model = []
    for m in sorted(models.values(), key=lambda m: (-m["billed_cost"], m["model"])):
        m["estimated_cost_usd"] = m["estimated_cost_usd"] if m["priced"] else None
        m["billed_cost_usd"] = m["billed_cost_usd"] if m["converted"] else None
        m["token_variance_pct"] = variance_pct(m["billed_tokens"], m["estimated_tokens"], places=2)
        m["cost_variance_pct"] = variance_pct(m["billed_cost_usd"], m["estimated_cost_usd"], places=2)
        by_model.append(m)
    priced = [m for m in by_model if m["estimated_cost_usd"] is not None and m["billed_cost_usd"] is not None]
    totals = {
        "estimated_tokens": sum(m["estimated_tokens"] for m in by_model), "billed_tokens": sum(m["billed_tokens"] for m in by_model),
        "billed_cost": sum((m["billed_cost"] for m in by_model), Decimal(0)),
        "billed_cost_usd": sum((m["billed_cost_usd"] for m in by_model), Decimal(0)) if all(m["billed_cost_usd"] is not None for m in by_model) else None,
        "priced_estimated_usd": sum((m["estimated_cost_usd"] for m in priced), Decimal(0)),
        "priced_billed_usd": sum((m["billed_cost_usd"] for m in priced), Decimal(0)),
    }
    totals["token_variance_pct"] = variance_pct(totals["billed_tokens"], totals["estimated_tokens"], places=2)
    totals["cost_variance_pct"] = variance_pct(totals["priced_billed_usd"], totals["priced_estimated_usd"], places=2)
    currency = next((r["billed_currency"] for r in rows if r["billed_currency"]), None)
    forecast, commit_currency, asked_on = stored_forecast(conn) if with_forecast else (None, None, None)
    return BillingView(
        currency=currency, reconciliation=rows, by_model=by_model, totals=totals,
        unbilled_days=sorted({r["date"] for r in rows if r["status"] == "not billed yet"}),
        incomplete_days=sorted({r["date"] for r in rows if r["status"] == "gateway logs incomplete"}),
        forecast=forecast, commit_currency=commit_currency or currency, commit_asked_on=asked_on.isoformat() if asked_on else None,
    )
