"""How IG1 counts and bills the demo traffic: the ground truth the emulator serves.

The gateway counts tokens with cl100k; IG1 counts them with each model's official
tokenizer (ratios per tokenizer family and kind of content, `OFFICIAL_TO_CL100K`, with a
little per-request spread), adds chat-template tokens, bills nothing for failed
requests, bills cached input at its own rate, and prices in EUR. Billing days are UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from usage_jobs.demo.catalogue import OFFICIAL_TO_CL100K, TEMPLATE_TOKENS_PER_MESSAGE, TEMPLATE_TOKENS_PER_REPLY, CatalogueModel

CURRENCY = "EUR"
MAX_THROUGHPUT = 100


@dataclass(frozen=True)
class BilledRequest:
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: float  # EUR


def bill_request(model: CatalogueModel, workload: str, request_id: str, *, prompt: int, completion: int, cached: int, messages: int) -> BilledRequest:
    """IG1's count and price of one successful request, from its true (cl100k) usage."""
    spread = random.Random(request_id).gauss(1.0, 0.02)
    ratio = OFFICIAL_TO_CL100K[model.tokenizer][workload] * min(max(spread, 0.94), 1.06)
    template = TEMPLATE_TOKENS_PER_MESSAGE * messages if model.kind == "chat" else 0
    input_tokens = round(prompt * ratio) + template
    output_tokens = round(completion * ratio) + (TEMPLATE_TOKENS_PER_REPLY if model.kind == "chat" else 0)
    cached_tokens = min(round(cached * ratio), input_tokens)
    price_in, price_out, price_cached = model.ig1_eur
    cost = ((input_tokens - cached_tokens) * price_in + cached_tokens * price_cached + output_tokens * price_out) / 1e6
    return BilledRequest(input_tokens, output_tokens, cached_tokens, cost)


class Ledger:
    """Billed usage per UTC day × model, as IG1's /usage/history reports it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, 0, 0.0])

    def add(self, day: dt.date, model: str, billed: BilledRequest) -> None:
        row = self.rows[(day.isoformat(), model)]
        row[0] += billed.input_tokens
        row[1] += billed.output_tokens
        row[2] += 1
        row[3] += billed.cost

    def document(self, last_day: dt.date) -> dict:
        """The ledger file: daily rows, plus a monthly commit sized so the forecast has something to say."""
        data = [{"date": day, "model": model, "input_tokens": i, "output_tokens": o, "requests": n, "cost": round(cost, 6)}
                for (day, model), (i, o, n, cost) in sorted(self.rows.items())]
        recent = [row["cost"] for row in data if (last_day - dt.date.fromisoformat(row["date"])).days < 14]
        daily = sum(recent) / 14 if recent else 0.0
        days_in_month = (last_day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - last_day.replace(day=1)
        # A commit under the month's run-rate: the demo shows the day it runs out.
        commit = max(10, math.floor(daily * days_in_month.days * 0.85 / 5) * 5)
        return {"currency": CURRENCY, "commit": commit, "max_throughput": MAX_THROUGHPUT, "data": data}


def write_usd_rates(path: Path, first_day: dt.date, last_day: dt.date, seed: int) -> None:
    """A dated EUR→USD rates file (`date,usd_per_unit`), one row per business day, as a treasury export would give."""
    rng = random.Random(f"fx-{seed}")
    rate = 1.08
    lines = ["date,usd_per_unit"]
    day = first_day - dt.timedelta(days=3)
    while day <= last_day:
        rate = round(min(max(rate + rng.gauss(0, 0.003), 1.02), 1.14), 4)
        if day.weekday() < 5:
            lines.append(f"{day.isoformat()},{rate}")
        day += dt.timedelta(days=1)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_ledger(path: Path, ledger: Ledger, last_day: dt.date) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ledger.document(last_day), indent=1) + "\n", encoding="utf-8")
