"""The one place that knows the shape of IG1's billing responses (DESIGN §3.3).

`/usage/history` is documented only as a "per-model, per-day breakdown"; anything that
is not exactly the shape below is refused with a message naming the field, so a change
on IG1's side stops the run instead of filling the warehouse with wrong figures. Model
names are normalised by the rule the gateway logs follow (`usage_jobs.names.normalise_name`),
so the two sides name a model alike; two rows that normalise to the same day × model are refused.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from usage_jobs.names import normalise_name


class BillingFormatError(ValueError):
    """An IG1 response is not in the shape the product understands."""


@dataclass(frozen=True)
class CommitStatus:
    current: Decimal  # this month's spend so far, contract currency
    commit: Decimal  # the monthly commit, contract currency
    max_throughput: float | None


@dataclass(frozen=True)
class BilledRow:
    day: dt.date
    model: str
    input_tokens: int
    output_tokens: int
    requests: int | None
    cost: Decimal


@dataclass(frozen=True)
class BilledHistory:
    currency: str
    rows: list[BilledRow]


def _fail(endpoint: str, where: str, problem: str) -> BillingFormatError:
    return BillingFormatError(f"IG1 {endpoint} returned an unexpected response: {where} {problem}")


def _count(endpoint: str, where: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(endpoint, where, f"is {value!r}, expected a whole number >= 0")
    return value


def _money(endpoint: str, where: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _fail(endpoint, where, f"is {value!r}, expected an amount >= 0")
    return Decimal(str(value))


def parse_usage(document: Any) -> CommitStatus:
    """`GET /usage` → `{"current": 1.2468, "commit": 1000, "max_throughput": 100}`."""
    if not isinstance(document, dict):
        raise _fail("/usage", "the body", f"is a {type(document).__name__}, expected an object")
    for name in ("current", "commit"):
        if name not in document:
            raise _fail("/usage", f"field {name!r}", "is missing")
    throughput = document.get("max_throughput")
    if throughput is not None and (isinstance(throughput, bool) or not isinstance(throughput, (int, float))):
        raise _fail("/usage", "max_throughput", f"is {throughput!r}, expected a number")
    return CommitStatus(_money("/usage", "current", document["current"]), _money("/usage", "commit", document["commit"]),
                        float(throughput) if throughput is not None else None)


def parse_history(document: Any, start: dt.date, end: dt.date) -> BilledHistory:
    """`GET /usage/history` → `{"currency": "EUR", "data": [{"date", "model", "input_tokens", "output_tokens", "requests"?, "cost"}]}`."""
    endpoint = "/usage/history"
    if not isinstance(document, dict):
        raise _fail(endpoint, "the body", f"is a {type(document).__name__}, expected an object")
    currency = document.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise _fail(endpoint, "currency", f"is {currency!r}, expected an ISO 4217 code such as 'EUR'")
    data = document.get("data")
    if not isinstance(data, list):
        raise _fail(endpoint, "data", f"is {type(data).__name__ if data is not None else 'missing'}, expected a list")
    rows: list[BilledRow] = []
    seen: set[tuple[dt.date, str]] = set()
    for index, item in enumerate(data):
        where = f"data[{index}]"
        if not isinstance(item, dict):
            raise _fail(endpoint, where, f"is a {type(item).__name__}, expected an object")
        try:
            day = dt.date.fromisoformat(item.get("date")) if isinstance(item.get("date"), str) else None
        except ValueError:
            day = None
        if day is None:
            raise _fail(endpoint, f"{where}.date", f"is {item.get('date')!r}, expected YYYY-MM-DD")
        if not start <= day <= end:
            raise _fail(endpoint, f"{where}.date", f"is {day}, outside the requested {start} to {end}")
        raw_model = item.get("model")
        # The same rule as the gateway logs (usage_jobs.names): " qwen3-32b\t" from IG1 is the logs' "qwen3-32b".
        model = normalise_name(raw_model) if isinstance(raw_model, str) else None
        if model is None:
            raise _fail(endpoint, f"{where}.model", f"is {raw_model!r}, expected a model name")
        if (day, model) in seen:
            raise _fail(endpoint, where, f"repeats {day} × {model}")
        seen.add((day, model))
        rows.append(BilledRow(
            day=day, model=model,
            input_tokens=_count(endpoint, f"{where}.input_tokens", item.get("input_tokens")),
            output_tokens=_count(endpoint, f"{where}.output_tokens", item.get("output_tokens")),
            requests=_count(endpoint, f"{where}.requests", item.get("requests"), optional=True),
            cost=_money(endpoint, f"{where}.cost", item.get("cost")),
        ))
    return BilledHistory(currency=currency, rows=rows)
