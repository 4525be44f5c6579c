"""The calibrated estimate of unbilled days, on histories whose ratios are known."""

import datetime as dt
import random
from decimal import Decimal

import pytest

from usage_jobs.defs.billing import nowcast as nc
from usage_jobs.defs.billing.forecast import commit_forecast

FIRST = dt.date(2026, 10, 1)


def _history(model: str, days: int, token_ratio: float, cost_ratio: float, *, noise: float = 0.01, priced: bool = True, seed: int = 1,
             start: dt.date = FIRST, outliers: dict[int, float] | None = None) -> list[nc.DayFigures]:
    rng = random.Random(seed)
    rows = []
    for index in range(days):
        tokens = rng.randint(200_000, 2_000_000)
        usd = Decimal(tokens) * Decimal("0.0000012")
        factor = (outliers or {}).get(index, 1.0)
        billed_tokens = round(tokens * token_ratio * factor * rng.uniform(1 - noise, 1 + noise))
        base = usd if priced else Decimal(tokens) * Decimal("0.000001")
        billed_cost = (base * Decimal(repr(cost_ratio * factor * rng.uniform(1 - noise, 1 + noise)))).quantize(Decimal("0.000001"))
        rows.append(nc.DayFigures(start + dt.timedelta(days=index), model, tokens, usd if priced else None, billed_tokens, billed_cost))
    return rows


def test_recovers_known_ratios_and_a_range_around_them():
    history = _history("qwen", 20, 1.12, 0.87)
    before = FIRST + dt.timedelta(days=20)
    calibration = nc.calibrate(history, before)["qwen"]
    assert calibration.tokens.median == pytest.approx(1.12, rel=0.01)
    assert calibration.cost_per_usd.median == pytest.approx(0.87, rel=0.01)
    assert calibration.tokens.days == nc.WINDOW_DAYS
    assert calibration.tokens.low < 1.12 < calibration.tokens.high and calibration.tokens.high - calibration.tokens.low < 0.03

    target = nc.DayFigures(before, "qwen", 1_000_000, Decimal("1.2"))
    item = nc.nowcast(target, nc.calibrate(history, before))
    assert item.tokens == pytest.approx(1_120_000, rel=0.01)
    assert float(item.cost) == pytest.approx(1.2 * 0.87, rel=0.01)
    assert item.tokens_low <= item.tokens <= item.tokens_high and item.cost_low <= item.cost <= item.cost_high
    assert item.source == "qwen" and item.history_days == nc.WINDOW_DAYS


def test_an_outlier_day_barely_moves_the_estimate():
    clean = nc.calibrate(_history("m", 14, 1.05, 0.9), FIRST + dt.timedelta(days=14))["m"]
    spiked = nc.calibrate(_history("m", 14, 1.05, 0.9, outliers={9: 3.0}), FIRST + dt.timedelta(days=14))["m"]
    assert spiked.tokens.median == pytest.approx(1.05, rel=0.01)
    assert spiked.cost_per_usd.median == pytest.approx(0.9, rel=0.01)
    assert abs(spiked.tokens.median - clean.tokens.median) < 0.01
    assert spiked.tokens.high < 1.5  # the 90th percentile of 14 days is not the outlier itself


def test_only_the_recent_billed_days_count():
    old = _history("m", 20, 1.5, 1.4, start=FIRST)
    recent = _history("m", 14, 1.1, 0.9, start=FIRST + dt.timedelta(days=20), seed=2)
    calibration = nc.calibrate(old + recent, FIRST + dt.timedelta(days=34))["m"]
    assert calibration.tokens.median == pytest.approx(1.1, rel=0.01)
    # Days on or after the target day never count (the backtest's "as if unbilled").
    assert nc.calibrate(old + recent, FIRST + dt.timedelta(days=20))["m"].tokens.median == pytest.approx(1.5, rel=0.01)


def test_unpriced_models_use_cost_per_token_and_new_models_all_models():
    history = _history("priced", 10, 1.1, 0.9) + _history("preview", 10, 1.2, 0.5, priced=False, seed=3)
    before = FIRST + dt.timedelta(days=10)
    calibrations = nc.calibrate(history, before)
    assert calibrations["preview"].cost_per_usd is None
    assert calibrations["preview"].cost_per_token.median == pytest.approx(0.5e-6, rel=0.01)
    item = nc.nowcast(nc.DayFigures(before, "preview", 2_000_000, None), calibrations)
    assert float(item.cost) == pytest.approx(1.0, rel=0.01)
    newcomer = nc.nowcast(nc.DayFigures(before, "brand-new", 1_000_000, Decimal(1)), calibrations)
    assert newcomer.source == nc.ALL_MODELS and 1.1 <= newcomer.tokens / 1_000_000 <= 1.2
    assert newcomer.cost is not None  # the pooled ratio (priced only on days every model was priced: per token here)
    nothing = nc.nowcast(nc.DayFigures(before, "x", 1000, Decimal(1)), {})
    assert nothing.cost is None and nothing.tokens == 1000 and nothing.source == "no billed history"


def test_commit_forecast_counts_unbilled_days_at_their_calibrated_cost():
    today = dt.date(2026, 11, 20)
    billed = {today - dt.timedelta(days=d): Decimal(10) for d in range(2, 9)}  # yesterday not billed yet
    calibrated = {today - dt.timedelta(days=1): nc.CalibratedDay(today - dt.timedelta(days=1), Decimal(12), Decimal(11), Decimal(13), ())}
    without = commit_forecast(today=today, spent=Decimal(180), commit=Decimal(300), daily_costs=billed)
    with_ = commit_forecast(today=today, spent=Decimal(180), commit=Decimal(300), daily_costs=billed, calibrated=calibrated)
    assert with_.spent_total == Decimal(192) and with_.calibrated_days == (today - dt.timedelta(days=1),)
    assert (with_.calibrated_low, with_.calibrated_high) == (Decimal(11), Decimal(13))
    assert with_.run_rate_calibrated_days == 1 and with_.run_rate_per_day == Decimal("10.29")  # (6×10 + 12) / 7
    assert with_.projected_month_end == (Decimal(192) + Decimal(72) / 7 * 11).quantize(Decimal("0.01"))
    assert with_.projected_month_end > without.projected_month_end
    assert with_.exhausted_on == today + dt.timedelta(days=10) and without.exhausted_on is None  # 12 days of runway: past the month
    # A billed day is never replaced by its calibrated estimate; last month's unbilled day counts in the run-rate only.
    again = commit_forecast(today=dt.date(2026, 12, 2), spent=Decimal(5), commit=Decimal(300), daily_costs={dt.date(2026, 11, 30): Decimal(10)},
                            calibrated={dt.date(2026, 12, 1): nc.CalibratedDay(dt.date(2026, 12, 1), Decimal(8), Decimal(7), Decimal(9), ()),
                                        dt.date(2026, 11, 30): nc.CalibratedDay(dt.date(2026, 11, 30), Decimal(99), Decimal(99), Decimal(99), ())})
    assert again.spent_total == Decimal(13) and again.run_rate_per_day == Decimal(9)


def test_unpriced_models_fit_their_prices_per_input_and_output_token():
    rng = random.Random(9)
    price_in, price_out = 0.11e-6, 0.66e-6
    history = []
    for index in range(14):
        e_in, e_out = rng.randint(20_000, 60_000), rng.randint(2_000, 30_000)  # the mix moves a lot from day to day
        factor = 2.5 if index == 6 else rng.uniform(0.99, 1.01)  # one outlier day
        cost = Decimal(repr(round((e_in * price_in + e_out * price_out) * factor, 6)))
        history.append(nc.DayFigures(FIRST + dt.timedelta(days=index), "preview", e_in + e_out, None, e_in + e_out, cost, e_in))
    before = FIRST + dt.timedelta(days=14)
    fit = nc.calibrate(history, before)["preview"].prices
    assert fit.input == pytest.approx(price_in, rel=0.05) and fit.output == pytest.approx(price_out, rel=0.03)
    assert fit.days == 13  # the outlier day left out
    target = nc.DayFigures(before, "preview", 50_000, None, estimated_input_tokens=10_000)  # an output-heavy day
    item = nc.nowcast(target, nc.calibrate(history, before))
    expected = 10_000 * price_in + 40_000 * price_out
    assert float(item.cost) == pytest.approx(expected, rel=0.02) and item.cost_low <= item.cost <= item.cost_high
    per_token = nc.calibrate(history, before)["preview"].cost_per_token.median * 50_000
    assert abs(per_token - expected) / expected > 0.2  # what a plain cost-per-token median would have said
