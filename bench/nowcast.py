"""Backtest of the calibrated estimate of unbilled days (usage_jobs/defs/billing/nowcast.py).

On a warehouse the pipeline has filled (by default the demo's: run `make demo` first), every
billed, comparable billing day × model is predicted from the days before it only, as if IG1
had not billed it yet, and compared with what IG1 billed. Beside it, the raw gateway
estimate's error: estimated tokens against billed tokens, and estimated cost (USD) against
billed cost converted to USD at the day's rate.

Errors are absolute percentage errors, |predicted − billed| ÷ billed, averaged (MAPE) per
model and over all day × model cells (cost: over the cells the gateway prices, the only ones
with a raw cost), and also for each day's total over all models. A day is
predicted only once `MIN_HISTORY` earlier billed days exist. Goal: the nowcast's error a
third of the raw error or less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

MIN_HISTORY = 7  # billed days before the first predicted one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, default=None, help="DuckDB file (default: USAGE_WAREHOUSE, the demo's)")
    args = parser.parse_args()

    import duckdb

    from usage_jobs.defs.billing import nowcast as nc
    from usage_jobs.settings import load_settings

    path = args.warehouse or load_settings().warehouse
    if not path.is_file():
        print(f"no warehouse at {path}: run `make demo` first (or pass --warehouse)", file=sys.stderr)
        return 2
    with duckdb.connect(str(path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT day, model, coalesce(estimated_input_tokens, 0) + coalesce(estimated_output_tokens, 0), estimated_cost_usd, "
            "billed_input_tokens + billed_output_tokens, billed_cost, billed_cost_usd, coalesce(estimated_input_tokens, 0) FROM reconciliation "
            "WHERE list_contains(?, status) ORDER BY day, model", [list(nc.CALIBRATION_STATUSES)]).fetchall()
    history = [nc.DayFigures(day, model, tokens, e_usd, b_tokens, b_cost, e_input) for day, model, tokens, e_usd, b_tokens, b_cost, _, e_input in rows]
    billed_usd = {(day, model): b_usd for day, model, *_, b_usd, _ in rows}
    days = sorted({f.day for f in history})
    if len(days) <= MIN_HISTORY:
        print(f"only {len(days)} billed days in {path}: not enough to backtest", file=sys.stderr)
        return 2

    errors: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))  # model → measure → errors
    day_totals: dict[dt.date, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 6)
    for day in days[MIN_HISTORY:]:
        calibrations = nc.calibrate(history, day)
        for figures in (f for f in history if f.day == day):
            if not figures.billed_tokens or not figures.billed_cost:
                continue
            item = nc.nowcast(nc.DayFigures(day, figures.model, figures.estimated_tokens, figures.estimated_cost_usd,
                                            estimated_input_tokens=figures.estimated_input_tokens), calibrations)
            e = errors[figures.model]
            e["raw tokens"].append(abs(figures.estimated_tokens - figures.billed_tokens) / figures.billed_tokens)
            e["nowcast tokens"].append(abs(item.tokens - figures.billed_tokens) / figures.billed_tokens)
            in_range = item.tokens_low <= figures.billed_tokens <= item.tokens_high
            e["tokens in range"].append(1.0 if in_range else 0.0)
            usd = billed_usd[(day, figures.model)]
            if figures.estimated_cost_usd is not None and usd:
                e["raw cost"].append(float(abs(figures.estimated_cost_usd - usd) / usd))
            if item.cost is not None:
                e["nowcast cost"].append(float(abs(item.cost - figures.billed_cost) / figures.billed_cost))
                e["cost in range"].append(1.0 if item.cost_low <= figures.billed_cost <= item.cost_high else 0.0)
                if figures.estimated_cost_usd is not None and usd:
                    e["nowcast cost, priced"].append(e["nowcast cost"][-1])
                    totals = day_totals[day]
                    totals[0] += figures.estimated_cost_usd
                    totals[1] += usd
                    totals[2] += item.cost
                    totals[3] += figures.billed_cost

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def pct(value: float | None) -> str:
        return "—" if value is None else f"{value * 100:.2f}%"

    def ratio(now: float | None, raw: float | None) -> str:
        return "—" if not now or not raw else f"{now / raw:.2f}"

    print(f"Nowcast backtest on {path}: {len(days) - MIN_HISTORY} billing days predicted ({days[MIN_HISTORY]} to {days[-1]}), "
          f"each from the days before it; window {nc.WINDOW_DAYS} billed days, median of daily ratios, range P10-P90\n")
    header = (f"{'model':36} {'cells':>5} {'raw tok':>8} {'now tok':>8} {'ratio':>6} {'raw cost':>9} {'now cost':>9} {'ratio':>6} "
              f"{'tok in rng':>10} {'cost in rng':>11}")
    print(header)
    print("-" * len(header))
    every: dict[str, list[float]] = defaultdict(list)
    for model in sorted(errors, key=lambda m: -len(errors[m]["raw tokens"])):
        e = errors[model]
        for measure, values in e.items():
            every[measure].extend(values)
        print(f"{model:36} {len(e['raw tokens']):>5} {pct(mean(e['raw tokens'])):>8} {pct(mean(e['nowcast tokens'])):>8} "
              f"{ratio(mean(e['nowcast tokens']), mean(e['raw tokens'])):>6} {pct(mean(e['raw cost'])):>9} {pct(mean(e['nowcast cost'])):>9} "
              f"{ratio(mean(e['nowcast cost']), mean(e['raw cost'])):>6} {pct(mean(e['tokens in range'])):>10} {pct(mean(e['cost in range'])):>11}")
    print("-" * len(header))
    print(f"{'all day × model cells':36} {len(every['raw tokens']):>5} {pct(mean(every['raw tokens'])):>8} {pct(mean(every['nowcast tokens'])):>8} "
          f"{ratio(mean(every['nowcast tokens']), mean(every['raw tokens'])):>6} {pct(mean(every['raw cost'])):>9} {pct(mean(every['nowcast cost'])):>9} "
          f"{'—':>6} {pct(mean(every['tokens in range'])):>10} {pct(mean(every['cost in range'])):>11}")
    priced_now, priced_raw = mean(every["nowcast cost, priced"]), mean(every["raw cost"])
    print(f"{'cells the gateway prices (cost)':36} {len(every['raw cost']):>5} {'':>8} {'':>8} {'':>6} {pct(priced_raw):>9} {pct(priced_now):>9} "
          f"{ratio(priced_now, priced_raw):>6}")
    raw_day = [float(abs(t[0] - t[1]) / t[1]) for t in day_totals.values() if t[1]]
    now_day = [float(abs(t[2] - t[3]) / t[3]) for t in day_totals.values() if t[3]]
    print(f"\nday totals (priced models), cost: raw {pct(mean(raw_day))}, nowcast {pct(mean(now_day))}, ratio {ratio(mean(now_day), mean(raw_day))}")
    tokens_goal = mean(every["nowcast tokens"]) <= mean(every["raw tokens"]) / 3
    cost_goal = priced_now is not None and priced_raw is not None and priced_now <= priced_raw / 3
    print("goal (nowcast error ≤ a third of the raw error, over the same cells): "
          f"tokens {'met' if tokens_goal else 'NOT met'}, cost {'met' if cost_goal else 'NOT met'} "
          "(a model the gateway does not price has no raw cost to compare with: its nowcast cost error is in its row)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
