"""The pure billing rules: allocation to the cent, exchange rates, the commit forecast."""

import datetime as dt
import math
import random
from decimal import Decimal
from fractions import Fraction

import pytest

from usage_jobs.defs.billing.allocation import allocate_cents, to_cents
from usage_jobs.defs.billing.forecast import commit_forecast
from usage_jobs.defs.billing.fx import FxError, load_usd_rates


def test_allocation_adds_up_exactly_for_awkward_amounts():
    rng = random.Random(5)
    for _ in range(500):
        total = rng.randint(0, 100_000)
        weights = [Decimal(rng.randint(0, 10**6)) / 10**rng.randint(0, 9) for _ in range(rng.randint(1, 80))]
        if not any(weights):
            weights[0] = Decimal(1)
        parts = allocate_cents(total, weights)
        assert sum(parts) == total and all(p >= 0 for p in parts)
        # Nobody is more than a cent away from their exact share.
        exact = [total * w / sum(weights) for w in weights]
        assert all(abs(p - e) < 1 for p, e in zip(parts, exact))


def _largest_remainder_in_fractions(total: int, weights: list) -> list[int]:
    """The rule computed independently, share by share in exact fractions."""
    exact = [Fraction(w) for w in weights]
    shares = [total * w / sum(exact) for w in exact]
    parts = [math.floor(share) for share in shares]
    for index in sorted(range(len(shares)), key=lambda i: (-(shares[i] - parts[i]), i))[:total - sum(parts)]:
        parts[index] += 1
    return parts


@pytest.mark.parametrize("kind", ["decimals of any scale", "small integers (ties)", "fractions", "negative total (a credit)"])
def test_allocation_is_the_exact_largest_remainder_split(kind):
    rng = random.Random(kind)
    for _ in range(300):
        size = rng.randint(1, 40)
        weights = {"decimals of any scale": lambda: Decimal(rng.randint(0, 10**12)).scaleb(-rng.randint(0, 20)),
                   "small integers (ties)": lambda: rng.choice([0, 1, 2, 3]),
                   "fractions": lambda: Fraction(rng.randint(0, 1000), rng.randint(1, 97)),
                   "negative total (a credit)": lambda: Decimal(rng.randint(0, 10**6)).scaleb(-6)}[kind]
        drawn = [weights() for _ in range(size)]
        if not any(drawn):
            drawn[0] = Decimal(1)
        total = rng.randint(-10_000, -1) if kind.startswith("negative") else rng.randint(0, 100_000)
        assert allocate_cents(total, drawn) == _largest_remainder_in_fractions(total, drawn)


def test_one_cent_among_many_goes_to_the_largest_share_and_ties_to_the_first():
    assert allocate_cents(1, [1, 3, 2]) == [0, 1, 0]
    assert allocate_cents(1, [1] * 12) == [1] + [0] * 11
    assert allocate_cents(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate_cents(0, [5, 5]) == [0, 0]


def test_zero_weights_take_nothing_and_all_zero_weights_are_refused():
    assert allocate_cents(1000, [0, 1, 0, 3]) == [0, 250, 0, 750]
    with pytest.raises(ValueError, match="must not all be zero"):
        allocate_cents(100, [0, 0])
    with pytest.raises(ValueError, match=">= 0"):
        allocate_cents(100, [1, -1])


def test_billed_amounts_round_half_up_to_the_cent():
    assert [to_cents(Decimal(v)) for v in ("12.345", "12.344999", "0.005", "0")] == [1235, 1234, 1, 0]


def test_a_constant_rate_or_the_latest_dated_rate_on_or_before_the_day(tmp_path):
    assert load_usd_rates("1.08").rate(dt.date(2020, 1, 1)) == Decimal("1.08")
    assert load_usd_rates(None).rate(dt.date(2026, 1, 1)) is None
    rates_file = tmp_path / "rates.csv"
    rates_file.write_text("date,usd_per_unit\n2026-11-02,1.10\n2026-11-06,1.12\n\n")
    rates = load_usd_rates(str(rates_file))
    assert rates.rate(dt.date(2026, 11, 1)) is None  # before the first rate: no conversion rather than a guess
    assert rates.rate(dt.date(2026, 11, 5)) == Decimal("1.10")  # the weekend and holidays use the last known rate
    assert rates.rate(dt.date(2026, 11, 30)) == Decimal("1.12")


@pytest.mark.parametrize(("content", "message"), [
    ("date,usd_per_unit\n2026-11-02,abc\n", "line 2: 'abc' is not a number"),
    ("2026-11-31,1.1\n", "line 1: '2026-11-31' is not a YYYY-MM-DD date"),
    ("date,usd_per_unit\n2026-11-02,-1\n", "must be a positive number"),
    ("date,usd_per_unit\n", "holds no rates"),
])
def test_a_bad_rates_file_is_refused_naming_the_line(tmp_path, content, message):
    rates_file = tmp_path / "rates.csv"
    rates_file.write_text(content)
    with pytest.raises(FxError, match=message):
        load_usd_rates(str(rates_file))
    with pytest.raises(FxError, match="neither a number nor an existing rates file"):
        load_usd_rates(str(tmp_path / "missing.csv"))


def test_the_forecast_projects_the_run_rate_to_month_end_and_finds_the_day_the_commit_runs_out():
    daily = {dt.date(2026, 11, d): Decimal(10) for d in range(1, 20)}
    forecast = commit_forecast(today=dt.date(2026, 11, 20), spent=Decimal(190), commit=Decimal(250), daily_costs=daily)
    assert forecast.run_rate_per_day == Decimal("10.00") and forecast.run_rate_days == 7
    assert forecast.projected_month_end == Decimal("300.00")  # 190 + 10 a day × 11 days (20th to 30th)
    assert forecast.exhausted_on == dt.date(2026, 11, 26)  # 60 left at 10 a day: 6 more days
    assert not forecast.already_exhausted and forecast.used_share == pytest.approx(0.76)


def test_a_commit_that_lasts_the_month_or_is_already_spent():
    daily = {dt.date(2026, 11, 28): Decimal(1), dt.date(2026, 11, 29): Decimal(3)}
    lasting = commit_forecast(today=dt.date(2026, 11, 30), spent=Decimal(50), commit=Decimal(100), daily_costs=daily)
    assert lasting.run_rate_per_day == Decimal("2.00") and lasting.run_rate_days == 2 and lasting.exhausted_on is None
    spent = commit_forecast(today=dt.date(2026, 11, 30), spent=Decimal(100), commit=Decimal(100), daily_costs=daily)
    assert spent.already_exhausted and spent.exhausted_on is None
    nothing = commit_forecast(today=dt.date(2026, 11, 3), spent=Decimal(0), commit=Decimal(100), daily_costs={})
    assert nothing.run_rate_per_day == 0 and nothing.projected_month_end == 0
