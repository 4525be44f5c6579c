"""The `focus` export: day × team × model rows in the FinOps FOCUS 1.2 columns.

Billed cost is IG1's billed cost allocated to the team (contract currency) when billing
is configured, else the gateway's USD estimate; a row whose model has no price and no
billing carries a cost of 0 and `x_Unpriced = true`, so it is never a silent $0.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

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


def _utc(day: dt.date, timezone: str) -> str:
    """Midnight of a report day, as a UTC timestamp (FOCUS charge periods are UTC)."""
    return dt.datetime.combine(day, dt.time(), ZoneInfo(timezone)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def focus_rows(team_model_daily: Sequence[TeamModelDay], *, timezone: str) -> list[dict]:
    rows = []
    for cell in team_model_daily:
        day = dt.date.fromisoformat(cell.date)
        billed = cell.billed_cost_allocated
        unpriced = billed is None and cell.spend_usd is None
        cost = Decimal(billed) if billed is not None else Decimal(cell.spend_usd or 0)
        currency = cell.billed_currency if billed is not None else "USD"
        tokens = cell.total_tokens
        unit_price = (cost / tokens * MILLION) if tokens else Decimal(0)  # per million tokens, the pricing unit
        month_start = day.replace(day=1)
        next_month = (month_start + dt.timedelta(days=32)).replace(day=1)
        team = cell.team_alias or cell.team_id
        rows.append({
            "AvailabilityZone": None, "BilledCost": cost, "BillingAccountId": "ig1-organisation", "BillingAccountName": "IG1 AI",
            "BillingAccountType": "Organization", "BillingCurrency": currency,
            "BillingPeriodEnd": _utc(next_month, "UTC"), "BillingPeriodStart": _utc(month_start, "UTC"),
            "CapacityReservationId": None, "CapacityReservationStatus": None, "ChargeCategory": "Usage", "ChargeClass": None,
            "ChargeDescription": f"{cell.model} tokens used by team {team}", "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": _utc(day + dt.timedelta(days=1), timezone), "ChargePeriodStart": _utc(day, timezone),
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
            "Tags": json.dumps({"team": team}, ensure_ascii=False, sort_keys=True),
            "x_EstimatedCostUsd": cell.spend_usd, "x_Unpriced": unpriced,
        })
    return rows
