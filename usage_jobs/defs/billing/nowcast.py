"""A calibrated estimate of the days IG1 has not billed yet (the nowcast). No Dagster here.

The gateway's figures differ from IG1's bill in a steady way per model: IG1 counts with
the model's own tokenizer and chat template, and prices in its own currency. So the
recent billed ÷ estimated ratios of a model, applied to the gateway's figures of a day
not billed yet, say what IG1 will bill for it far better than the raw estimate.

Method, per model and for a day D not billed yet (status "not billed yet"):

* History: the model's last `WINDOW_DAYS` (14) billing days before D that IG1 billed and
  that compare (status `reconciled` or `unpriced at the gateway`: complete gateway logs,
  billed, with gateway traffic), no older than `MAX_AGE_DAYS` (45) before D.
* One ratio per history day: billed tokens ÷ estimated tokens (input + output), and billed
  cost (contract currency) ÷ estimated cost (USD, the gateway's) — a ratio in contract
  currency per estimated USD, so IG1's prices, the tokenizer difference and the exchange
  rate are calibrated together.
* A model the gateway does not price has no estimated cost: its effective prices per
  estimated input and output token are fitted over the same days (least squares on
  relative errors, an outlier day — residual over 3× the median — left out and the fit
  done again; range from the 10th–90th percentile of the residuals); without the
  input/output split or with a negative price, billed cost ÷ estimated tokens (median).
* The point estimate is the **median of the daily ratios** (an outlier day — an incident,
  a restatement, a day of unusual content — moves it little); the **range** is the 10th
  to 90th percentile of the same daily ratios (linear interpolation), applied to the
  day's estimate the same way.
* A model with fewer than `MIN_DAYS` (3) history days takes the ratios of all models
  together (daily ratios of the day totals), labelled as such; with no history at all the
  day has no calibrated cost.

The commit forecast adds the calibrated cost of the month's unbilled days to IG1's
spend so far, and counts them in its run-rate (`forecast.commit_forecast`).
`bench/nowcast.py` backtests the method on the demo: each billed day predicted from the
days before it, as if it were not billed yet.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

WINDOW_DAYS = 14
MAX_AGE_DAYS = 45
MIN_DAYS = 3
LOW_QUANTILE, HIGH_QUANTILE = 0.10, 0.90
CALIBRATION_STATUSES = ("reconciled", "unpriced at the gateway")
UNBILLED_STATUS = "not billed yet"
ALL_MODELS = "all models"


@dataclass(frozen=True)
class DayFigures:
    """One billing day × model: the gateway's estimate and, once billed, IG1's figures."""

    day: dt.date
    model: str
    estimated_tokens: int
    estimated_cost_usd: Decimal | None  # None: the gateway has no price for the model
    billed_tokens: int | None = None
    billed_cost: Decimal | None = None  # contract currency
    estimated_input_tokens: int | None = None  # the rest of estimated_tokens is output; None when unknown


@dataclass(frozen=True)
class Ratio:
    median: float
    low: float
    high: float
    days: int


@dataclass(frozen=True)
class PriceFit:
    """Billed cost ≈ input × estimated input tokens + output × estimated output tokens, fitted over the window."""

    input: float
    output: float
    low: float  # 10th and 90th percentile of the days' relative residuals: the range is prediction × (1 + low … 1 + high)
    high: float
    days: int


@dataclass(frozen=True)
class Calibration:
    source: str  # the model itself, or ALL_MODELS
    tokens: Ratio | None
    cost_per_usd: Ratio | None  # contract currency per estimated USD
    cost_per_token: Ratio | None  # contract currency per estimated token (models the gateway does not price)
    prices: PriceFit | None = None  # contract currency per estimated input and output token (models the gateway does not price)


@dataclass(frozen=True)
class Nowcast:
    """A day × model not billed yet: the gateway's estimate and what IG1 is expected to bill."""

    day: dt.date
    model: str
    estimated_tokens: int
    estimated_cost_usd: Decimal | None
    tokens: int
    tokens_low: int
    tokens_high: int
    cost: Decimal | None  # contract currency; None without any billed history
    cost_low: Decimal | None
    cost_high: Decimal | None
    source: str  # whose ratios: the model's or ALL_MODELS
    history_days: int


def summarise(ratios: list[float]) -> Ratio | None:
    if not ratios:
        return None
    values = np.asarray(ratios, dtype=float)
    low, median, high = np.quantile(values, [LOW_QUANTILE, 0.5, HIGH_QUANTILE])
    return Ratio(float(median), float(low), float(high), len(ratios))


def fit_prices(days: list[DayFigures]) -> PriceFit | None:
    """Effective prices per estimated input and output token, by least squares on relative errors (each day
    weighs the same); a day whose residual is over 3× the median one is left out and the fit done again.
    None with fewer than MIN_DAYS days, without the input/output split, or when a price comes out negative."""
    usable = [d for d in days if d.estimated_input_tokens is not None and d.billed_cost and d.estimated_tokens > 0]
    if len(usable) < MIN_DAYS:
        return None
    x = np.array([[d.estimated_input_tokens, d.estimated_tokens - d.estimated_input_tokens] for d in usable], dtype=float)
    y = np.array([float(d.billed_cost) for d in usable])
    keep = np.ones(len(usable), dtype=bool)
    for _ in range(2):
        coefficients, *_ = np.linalg.lstsq(x[keep] / y[keep, None], np.ones(int(keep.sum())), rcond=None)
        residuals = x @ coefficients / y - 1
        typical = np.median(np.abs(residuals[keep]))
        keep = np.abs(residuals) <= max(3 * typical, 1e-9)
        if keep.sum() < MIN_DAYS:
            return None
    if (coefficients < 0).any():
        return None
    low, high = np.quantile(residuals[keep], [LOW_QUANTILE, HIGH_QUANTILE])
    return PriceFit(float(coefficients[0]), float(coefficients[1]), float(low), float(high), int(keep.sum()))


def _ratios(days: list[DayFigures]) -> Calibration | None:
    tokens = [d.billed_tokens / d.estimated_tokens for d in days if d.estimated_tokens > 0 and d.billed_tokens is not None]
    per_usd = [float(d.billed_cost / d.estimated_cost_usd) for d in days
               if d.estimated_cost_usd is not None and d.estimated_cost_usd > 0 and d.billed_cost is not None]
    per_token = [float(d.billed_cost) / d.estimated_tokens for d in days if d.estimated_tokens > 0 and d.billed_cost is not None]
    if not tokens and not per_token:
        return None
    prices = fit_prices(days) if not per_usd else None
    return Calibration(days[0].model if days else ALL_MODELS, summarise(tokens), summarise(per_usd), summarise(per_token), prices)


def _comparable(figures: DayFigures, before: dt.date) -> bool:
    return (figures.day < before and (before - figures.day).days <= MAX_AGE_DAYS and figures.billed_tokens is not None
            and figures.billed_cost is not None and figures.estimated_tokens > 0)


def calibrate(history: Iterable[DayFigures], before: dt.date, window: int = WINDOW_DAYS) -> dict[str, Calibration]:
    """Per model (and ALL_MODELS), the ratios of its last `window` comparable billed days before `before`."""
    by_model: dict[str, list[DayFigures]] = defaultdict(list)
    for figures in history:
        if _comparable(figures, before):
            by_model[figures.model].append(figures)
    calibrations: dict[str, Calibration] = {}
    for model, days in by_model.items():
        recent = sorted(days, key=lambda f: f.day)[-window:]
        if len(recent) >= MIN_DAYS and (calibration := _ratios(recent)):
            calibrations[model] = calibration
    # All models together: one figure per day (the day's totals), the same window of days.
    totals: dict[dt.date, list] = defaultdict(lambda: [0, Decimal(0), 0, Decimal(0), True])
    for days in by_model.values():
        for f in days:
            row = totals[f.day]
            row[0] += f.estimated_tokens
            row[2] += f.billed_tokens
            row[3] += f.billed_cost
            if f.estimated_cost_usd is None:
                row[4] = False  # the day's cost ratio would mix priced and unpriced models
            else:
                row[1] += f.estimated_cost_usd
    pooled = [DayFigures(day, ALL_MODELS, e_tokens, e_cost if priced else None, b_tokens, b_cost)
              for day, (e_tokens, e_cost, b_tokens, b_cost, priced) in sorted(totals.items())][-window:]
    if pooled and (calibration := _ratios(pooled)):
        calibrations[ALL_MODELS] = Calibration(ALL_MODELS, calibration.tokens, calibration.cost_per_usd, calibration.cost_per_token)
    return calibrations


def _apply(ratio: Ratio | None, base) -> tuple[float, float, float] | None:
    if ratio is None or base is None:
        return None
    base = float(base)
    return base * ratio.median, base * ratio.low, base * ratio.high


def nowcast(figures: DayFigures, calibrations: dict[str, Calibration]) -> Nowcast:
    """The calibrated estimate of one day × model from the calibrations of the days before it."""
    calibration = calibrations.get(figures.model) or calibrations.get(ALL_MODELS)
    tokens = _apply(calibration.tokens if calibration else None, figures.estimated_tokens)
    cost = None
    if calibration:
        if figures.estimated_cost_usd is not None and calibration.cost_per_usd is not None:
            cost = _apply(calibration.cost_per_usd, figures.estimated_cost_usd)
        elif calibration.prices is not None and figures.estimated_input_tokens is not None:
            fit = calibration.prices
            value = fit.input * figures.estimated_input_tokens + fit.output * (figures.estimated_tokens - figures.estimated_input_tokens)
            cost = value, value * (1 + fit.low), value * (1 + fit.high)
        else:
            cost = _apply(calibration.cost_per_token, figures.estimated_tokens)
    if tokens is None:
        tokens = (float(figures.estimated_tokens),) * 3
    money = [None, None, None] if cost is None else [Decimal(repr(round(value, 6))) for value in cost]
    ratio = calibration.tokens if calibration and calibration.tokens else None
    return Nowcast(
        day=figures.day, model=figures.model, estimated_tokens=figures.estimated_tokens, estimated_cost_usd=figures.estimated_cost_usd,
        tokens=round(tokens[0]), tokens_low=round(tokens[1]), tokens_high=round(tokens[2]),
        cost=money[0], cost_low=money[1], cost_high=money[2],
        source=calibration.source if calibration else "no billed history", history_days=ratio.days if ratio else 0)


# --- from the warehouse -------------------------------------------------------------

_FIGURES_SQL = """
SELECT day, model, status, coalesce(estimated_input_tokens, 0) + coalesce(estimated_output_tokens, 0), estimated_cost_usd,
    billed_input_tokens + billed_output_tokens, billed_cost, coalesce(estimated_input_tokens, 0)
FROM reconciliation WHERE day BETWEEN ? AND ? ORDER BY day, model
"""


def unbilled_nowcasts(conn, start: dt.date, end: dt.date) -> list[Nowcast]:
    """The calibrated estimate of every day × model in start..end that IG1 has not billed yet."""
    rows = conn.execute(_FIGURES_SQL, [start - dt.timedelta(days=MAX_AGE_DAYS), end]).fetchall()
    history = [DayFigures(day, model, tokens, e_cost, b_tokens, b_cost, e_input) for day, model, status, tokens, e_cost, b_tokens, b_cost, e_input in rows
               if status in CALIBRATION_STATUSES]
    targets = [DayFigures(day, model, tokens, e_cost, estimated_input_tokens=e_input) for day, model, status, tokens, e_cost, _, _, e_input in rows
               if status == UNBILLED_STATUS and start <= day <= end and tokens > 0]
    calibrations: dict[dt.date, dict[str, Calibration]] = {}
    result = []
    for target in targets:
        if target.day not in calibrations:
            calibrations[target.day] = calibrate(history, target.day)
        result.append(nowcast(target, calibrations[target.day]))
    return result


@dataclass(frozen=True)
class CalibratedDay:
    day: dt.date
    cost: Decimal
    low: Decimal
    high: Decimal
    uncalibrated_models: tuple[str, ...]  # models of the day with no cost (no billed history)


def calibrated_days(conn, start: dt.date, end: dt.date) -> dict[dt.date, CalibratedDay]:
    """Per day not billed yet, the calibrated cost of all its models (contract currency), with its range."""
    by_day: dict[dt.date, list[Nowcast]] = defaultdict(list)
    for item in unbilled_nowcasts(conn, start, end):
        by_day[item.day].append(item)
    return {day: CalibratedDay(day, sum((n.cost for n in items if n.cost is not None), Decimal(0)),
                               sum((n.cost_low for n in items if n.cost_low is not None), Decimal(0)),
                               sum((n.cost_high for n in items if n.cost_high is not None), Decimal(0)),
                               tuple(n.model for n in items if n.cost is None))
            for day, items in sorted(by_day.items())}
