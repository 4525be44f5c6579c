"""The `focus` export: day × team × model rows in the FinOps FOCUS 1.2 columns.

With IG1 billing configured, the rows are the period's **billing days** (IG1_BILLING_TIMEZONE):
a billed day carries IG1's cost allocated to the team (contract currency, the exact share),
with the billing day's span as its charge period; a billing day IG1 has not billed yet carries
the gateway's USD estimate of that same billing day. Without billing, the rows are report days
and the gateway's USD estimate. A gateway-estimated row holding requests of a model with no
price has `x_Unpriced = true` (its cost leaves them out: 0 when all are), so it is never a
silent $0 — even when the model's failed requests, priced at 0, are in the same row.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb

from usage_jobs.defs.billing.reconcile import BUCKET_LABELS, NOT_SEEN, requests_window
from usage_jobs.defs.report.exports import DayRows
from usage_jobs.defs.report.periods import Period, consecutive_runs
from usage_jobs.defs.report.queries import TeamModelDay

FOCUS_COLUMNS = [
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingAccountType", "BillingCurrency", "BillingPeriodEnd",
    "BillingPeriodStart", "CapacityReservationId", "CapacityReservationStatus", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory", "CommitmentDiscountId", "CommitmentDiscountName",
    "CommitmentDiscountQuantity", "CommitmentDiscountStatus", "CommitmentDiscountType", "CommitmentDiscountUnit", "ConsumedQuantity",
    "ConsumedUnit", "ContractedCost", "ContractedUnitPrice", "EffectiveCost", "InvoiceId", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
    "PricingCategory", "PricingCurrency", "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice",
    "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
    "ServiceCategory", "ServiceName", "ServiceSubcategory", "SkuId", "SkuMeter", "SkuPriceDetails", "SkuPriceId", "SubAccountId",
    "SubAccountName", "SubAccountType", "Tags", "x_EstimatedCostUsd", "x_Unpriced",
]
MILLION = Decimal(1_000_000)
FOCUS_MONEY = frozenset({"PricingQuantity", "BilledCost", "ContractedCost", "EffectiveCost", "ListCost", "ContractedUnitPrice", "ListUnitPrice",
                         "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost", "PricingCurrencyListUnitPrice", "x_EstimatedCostUsd"})


@functools.lru_cache(maxsize=4096)  # four per row, of a few dozen distinct days
def _utc(day: dt.date, timezone: str) -> str:
    """Midnight of a report day, as a UTC timestamp (FOCUS charge periods are UTC)."""
    return dt.datetime.combine(day, dt.time(), ZoneInfo(timezone)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ChargeCell:
    """A day × team × model to charge: the day in `timezone` (a billing day, or a report day without billing)."""

    day: dt.date
    timezone: str
    team_id: str
    team_alias: str | None
    model: str
    tokens: int
    cost: Decimal
    currency: str
    estimated_usd: Decimal | None
    unpriced: bool


# Billing days × team × model: IG1's cost shared exactly (chargeback), or, where IG1 has not billed the day, the gateway's
# estimate of the same billing day (requests bucketed by the billing day of their start).
_BILLED_CELLS = """
SELECT day, team_id, arg_max(team_alias, team_alias IS NOT NULL), model, sum(tokens), sum(allocated_cost), any_value(currency),
    sum(spend_usd)
FROM chargeback WHERE day BETWEEN $start AND $end GROUP BY day, team_id, model
"""
_ESTIMATED_CELLS = """
SELECT CAST(timezone($tz, start_time) AS DATE) AS billing_day, team_id, arg_max(team_alias, start_time), model, sum(total_tokens),
    sum(spend_usd), bool_or(unpriced)
FROM requests
WHERE day BETWEEN $first_day AND $last_day AND start_time >= $begin AND start_time < $finish
GROUP BY billing_day, team_id, model
"""


def _cells(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, billing_timezone: str) -> list[ChargeCell]:
    """Billing days start..end × team × model: billed days from the chargeback, the others from the gateway's estimate."""
    billed_days = {row[0] for row in conn.execute("SELECT day FROM billing_days WHERE billed AND day BETWEEN ? AND ?", [start, end]).fetchall()}
    not_seen_tokens = {(day, model): tokens for day, model, tokens in conn.execute(
        "SELECT day, model, input_tokens + output_tokens FROM billed_usage WHERE day BETWEEN ? AND ?", [start, end]).fetchall()}
    cells = []
    for day, team_id, alias, model, tokens, cost, currency, estimated in conn.execute(
            _BILLED_CELLS, {"start": start, "end": end}).fetchall():
        if team_id == NOT_SEEN:  # no gateway count: IG1's own
            tokens = not_seen_tokens.get((day, model), 0)
        cells.append(ChargeCell(day, billing_timezone, team_id, alias or BUCKET_LABELS.get(team_id), model, int(tokens), cost, currency, estimated, False))
    for day, team_id, alias, model, tokens, spend, unpriced in conn.execute(_ESTIMATED_CELLS, requests_window(start, end, billing_timezone)).fetchall():
        if day not in billed_days:
            cells.append(ChargeCell(day, billing_timezone, team_id, alias or BUCKET_LABELS.get(team_id), model, int(tokens),
                                    Decimal(spend or 0), "USD", spend, bool(unpriced)))
    return sorted(cells, key=lambda c: (c.day, c.team_id, c.model))


# How many cells `_cells` gives each billing day, counted in SQL without building them.
_CELL_COUNTS = """
SELECT day, count(*) FROM (
    SELECT DISTINCT day, team_id, model FROM chargeback WHERE day BETWEEN $start AND $end
    UNION ALL
    SELECT DISTINCT CAST(timezone($tz, start_time) AS DATE) AS day, team_id, model FROM requests
    WHERE day BETWEEN $first_day AND $last_day AND start_time >= $begin AND start_time < $finish
        AND CAST(timezone($tz, start_time) AS DATE) NOT IN (SELECT day FROM billing_days WHERE billed AND day BETWEEN $start AND $end))
GROUP BY day ORDER BY day
"""


def focus_day_rows(conn: duckdb.DuckDBPyConnection, period: Period, *, billing_timezone: str) -> DayRows:
    """With billing, the period's FOCUS rows a billing day at a time, a day's rows its own whatever the period (its cells' names
    are the chargeback's and the requests' of that day): built for the days asked only. A large period's days mostly come as the
    text of their day period (exports.ExportDays); built whole, a year of 180 days at 3,000 keys took 3.6 CPU-s a build."""
    days = {_utc(day, billing_timezone): (day, n) for day, n in conn.execute(
        _CELL_COUNTS, requests_window(period.start, period.end, billing_timezone) | {"start": period.start, "end": period.end}).fetchall()}

    def fetch(wanted: list[str]) -> dict[str, list[dict]]:
        rows: dict[str, list[dict]] = {day: [] for day in wanted}
        for first, last in consecutive_runs(days[day][0] for day in wanted):
            for row in focus_rows(_cells(conn, first, last, billing_timezone)):
                rows[row["ChargePeriodStart"]].append(row)
        return rows

    return DayRows({day: n for day, (_, n) in days.items()}, fetch)


def report_day_cells(team_model_daily: Iterable[TeamModelDay], *, timezone: str) -> list[ChargeCell]:
    """Without billing: the report days × team × model and the gateway's USD estimate."""
    return [ChargeCell(dt.date.fromisoformat(c.date), timezone, c.team_id, c.team_alias, c.model, c.total_tokens, Decimal(c.spend_usd or 0), "USD",
                       c.spend_usd, c.unpriced_requests > 0) for c in team_model_daily]


@functools.lru_cache(maxsize=4096)  # one a row, for a few hundred teams: a quarter's 49,000 rows made 49,000 json.dumps
def _tags(team: str) -> str:
    return json.dumps({"team": team}, ensure_ascii=False, sort_keys=True)


def focus_rows(cells: Sequence[ChargeCell]) -> list[dict]:
    rows = []
    for cell in cells:
        day = cell.day
        cost, currency, unpriced = cell.cost, cell.currency, cell.unpriced
        tokens = cell.tokens
        unit_price = (cost / tokens * MILLION) if tokens else Decimal(0)  # per million tokens, the pricing unit
        month_start = day.replace(day=1)
        next_month = (month_start + dt.timedelta(days=32)).replace(day=1)
        team = cell.team_alias or cell.team_id
        rows.append({
            "AvailabilityZone": None, "BilledCost": cost, "BillingAccountId": "ig1-organisation", "BillingAccountName": "IG1 AI",
            "BillingAccountType": "Organization", "BillingCurrency": currency,
            "BillingPeriodEnd": _utc(next_month, cell.timezone), "BillingPeriodStart": _utc(month_start, cell.timezone),
            "CapacityReservationId": None, "CapacityReservationStatus": None, "ChargeCategory": "Usage", "ChargeClass": None,
            "ChargeDescription": f"{cell.model} tokens used by team {team}", "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": _utc(day + dt.timedelta(days=1), cell.timezone), "ChargePeriodStart": _utc(day, cell.timezone),
            "CommitmentDiscountCategory": None, "CommitmentDiscountId": None, "CommitmentDiscountName": None, "CommitmentDiscountQuantity": None,
            "CommitmentDiscountStatus": None, "CommitmentDiscountType": None, "CommitmentDiscountUnit": None,
            "ConsumedQuantity": tokens, "ConsumedUnit": "Tokens", "ContractedCost": cost, "ContractedUnitPrice": unit_price,
            "EffectiveCost": cost, "InvoiceId": None, "InvoiceIssuerName": "IG1", "ListCost": cost, "ListUnitPrice": unit_price,
            "PricingCategory": "Standard", "PricingCurrency": currency, "PricingCurrencyContractedUnitPrice": unit_price,
            "PricingCurrencyEffectiveCost": cost, "PricingCurrencyListUnitPrice": unit_price,
            "PricingQuantity": Decimal(tokens) / MILLION, "PricingUnit": "1000000 Tokens",
            "ProviderName": "IG1", "PublisherName": "IG1", "RegionId": None, "RegionName": None,
            "ResourceId": cell.model, "ResourceName": cell.model, "ResourceType": "Model",
            "ServiceCategory": "AI and Machine Learning", "ServiceName": "IG1 AI models", "ServiceSubcategory": "Generative AI",
            "SkuId": cell.model, "SkuMeter": "Tokens", "SkuPriceDetails": None, "SkuPriceId": f"{cell.model}:tokens",
            "SubAccountId": cell.team_id, "SubAccountName": team, "SubAccountType": "Team",
            "Tags": _tags(team),
            "x_EstimatedCostUsd": cell.estimated_usd, "x_Unpriced": unpriced,
        })
    return rows
