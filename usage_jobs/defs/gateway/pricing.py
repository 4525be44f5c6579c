"""The price table used to re-price requests logged with tokens but no cost.

Format (USD per 1,000,000 tokens):
`{"models": {"<public model name>": {"input": 0.6, "output": 3.6, "cached_input": 0.15}}}`.
A model missing from the table is *unpriced*: its spend is unknown, never $0.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from usage_jobs.warehouse import insert_rows


class PriceTableError(ValueError):
    pass


@dataclass(frozen=True)
class ModelPrice:
    input: float
    output: float
    cached_input: float


def load_prices(path: Path | None = None) -> dict[str, ModelPrice]:
    """Prices per model from a JSON file (the built-in IG1 list prices by default)."""
    source = str(path) if path else "built-in prices.json"
    raw = path.read_text() if path else resources.files("usage_jobs").joinpath("data/prices.json").read_text()
    try:
        models = json.loads(raw)["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PriceTableError(f"{source}: expected {{\"models\": {{name: {{input, output}}}}}} ({exc})") from None
    prices = {}
    for name, entry in models.items():
        try:
            price_in, price_out = float(entry["input"]), float(entry["output"])
            cached = float(entry.get("cached_input", price_in))
        except (KeyError, TypeError, ValueError) as exc:
            raise PriceTableError(f"{source}: model {name!r} needs numeric 'input' and 'output' prices ({exc})") from None
        if min(price_in, price_out, cached) < 0:
            raise PriceTableError(f"{source}: model {name!r} has a negative price")
        prices[name] = ModelPrice(price_in, price_out, cached)
    return prices


def register_prices(conn: duckdb.DuckDBPyConnection, prices: dict[str, ModelPrice]) -> None:
    """Expose the table to SQL as the temporary table `prices` (USD per token)."""
    conn.execute("CREATE OR REPLACE TEMP TABLE prices (model VARCHAR PRIMARY KEY, input DOUBLE, output DOUBLE, cached_input DOUBLE)")
    insert_rows(conn, "prices", [(name, p.input / 1e6, p.output / 1e6, p.cached_input / 1e6) for name, p in sorted(prices.items())])
