"""Abnormal consumption per virtual key, judged against the key's own trailing history.

The method (documented in the README):
* **Spikes** in daily requests and spend, and **failure bursts**: a robust z-score of the
  day against the median and MAD of the same kind of day (weekday or weekend) in the key's
  previous 28 days, zeros included once the key exists: z = (x − median) ÷ (1.4826 × MAD),
  with a floor on the scale so a flat history does not make every wobble infinite. A day
  is flagged only with enough history (10 weekdays or 4 weekend days) and only when the
  change is also large in plain terms (a ratio to the median and a minimum count). For
  keys with few requests a day, where a z-score is coarse, a request count whose Poisson
  tail under the key's own mean rate is below 1e-6 counts as unusual too.
* **New model**: a model the key has not used in its previous 28 days (with at least 7
  days of history), used for 10 requests or more in the day.
* **First-day spike of a new key**: the key's first day against the following days of the
  same kind (weekday or weekend, within 7 days), or, before two of those exist, against
  the median key of the organisation that day.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Collection
from dataclasses import dataclass, field

WINDOW_DAYS = 28
Z_THRESHOLD = 8.0
MIN_WEEKDAYS, MIN_WEEKEND_DAYS = 10, 4
MAD_SCALE = 1.4826
SPIKE_RATIO = {"requests": 3.0, "spend_usd": 4.0}
SCALE_FLOOR = {"requests": 1.0, "spend_usd": 0.01, "failure_rate": 0.05}
MIN_REQUESTS_SPIKE = 10
POISSON_P, POISSON_MIN_REQUESTS = 1e-6, 5  # small keys: a count this unlikely under the key's own mean rate
MIN_FAILURES, MIN_FAILURE_RATE = 5, 0.3
NEW_MODEL_MIN_REQUESTS, NEW_MODEL_MIN_HISTORY = 10, 7
FIRST_DAY_RATIO, FIRST_DAY_MIN_REQUESTS = 3.0, 5
# A first day is judged against the week after it: its finding, and the past pages showing it, settle within 7 days.
FIRST_DAY_FOLLOWING = 7
NEW_WITHOUT_INVENTORY_AFTER = 14  # without an inventory, a key first seen this many days after the data starts is new


@dataclass
class KeyDay:
    requests: int = 0
    failed: int = 0
    spend_usd: float = 0.0
    models: dict[str, int] = field(default_factory=dict)  # model → requests

    @property
    def failure_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0


_ABSENT = KeyDay()  # a day without requests (read only)


@dataclass(frozen=True)
class Finding:
    key_hash: str
    day: dt.date
    metric: str  # requests | spend_usd | failure_rate | new_model | first_day
    value: float
    baseline: float
    score: float
    reason: str


def _robust_z(value: float, history: list[float], floor: float) -> tuple[float, float]:
    median = statistics.median(history)
    mad = statistics.median(abs(x - median) for x in history)
    return median, (value - median) / max(MAD_SCALE * mad, floor)


def poisson_tail(count: int, rate: float) -> float:
    """P(X >= count) for X ~ Poisson(rate)."""
    if count <= 0:
        return 1.0
    rate = max(rate, 1e-9)
    below = sum(math.exp(k * math.log(rate) - rate - math.lgamma(k + 1)) for k in range(count))
    return max(0.0, 1.0 - below)


def _same_kind(day: dt.date, other: dt.date) -> bool:
    return (day.weekday() >= 5) == (other.weekday() >= 5)


def judge_key(key_hash: str, series: dict[dt.date, KeyDay], days: list[dt.date], org_median_requests: dict[dt.date, float], *,
              created: dt.date | None, data_start: dt.date, first_day: dt.date | None = None,
              first_day_only: Collection[dt.date] = ()) -> list[Finding]:
    """Findings for one key on `days`, from its daily series (absent days are zeros).

    `first_day` is the key's first day ever, when the series starts later (default: the series'
    first day). `created` is the key's creation day from the inventory, if known: a key is new on
    its first day if it was created then (or, without an inventory, if it first appears well after
    the data starts). On the days of `first_day_only` only a new key's first day is judged (the
    one judgement that later days can change)."""
    if not series:
        return []
    first = first_day or min(series)
    new_key = created >= first - dt.timedelta(days=1) if created else first > data_start + dt.timedelta(days=NEW_WITHOUT_INVENTORY_AFTER)
    last_known = max(series)
    findings = []
    for day in days:
        today = series.get(day)
        if today is None or today.requests == 0:
            continue
        if day in first_day_only:
            if day == first:
                findings += _first_day(key_hash, series, first, today, last_known, new_key, org_median_requests)
            continue
        previous = [day - dt.timedelta(days=i) for i in range(1, WINDOW_DAYS + 1) if day - dt.timedelta(days=i) >= first]
        history = [series.get(d, _ABSENT) for d in previous if _same_kind(day, d)]
        enough = len(history) >= (MIN_WEEKEND_DAYS if day.weekday() >= 5 else MIN_WEEKDAYS)
        if enough:
            for metric in ("requests", "spend_usd"):
                value = float(getattr(today, metric))
                median, z = _robust_z(value, [float(getattr(h, metric)) for h in history], SCALE_FLOOR[metric])
                ratio_ok = value >= SPIKE_RATIO[metric] * max(median, SCALE_FLOOR[metric])
                if metric == "requests":
                    # Few requests a day: a robust z-score is coarse, so the Poisson tail of the key's own mean rate decides.
                    mean = statistics.fmean(h.requests for h in history)
                    unusual = (z >= Z_THRESHOLD and today.requests >= MIN_REQUESTS_SPIKE) or (
                        today.requests >= POISSON_MIN_REQUESTS and poisson_tail(today.requests, max(mean, 0.5)) < POISSON_P)
                else:
                    unusual = z >= Z_THRESHOLD and today.requests >= MIN_REQUESTS_SPIKE
                if unusual and ratio_ok:
                    findings.append(Finding(key_hash, day, metric, value, median, round(z, 2),
                                            f"{metric.replace('_usd', '')} {value:,.4g} against a median of {median:,.4g} "
                                            f"on comparable days (robust z {z:.1f})"))
            rates = [h.failure_rate for h in history if h.requests]
            if len(rates) >= (MIN_WEEKEND_DAYS if day.weekday() >= 5 else MIN_WEEKDAYS) // 2:
                median, z = _robust_z(today.failure_rate, rates, SCALE_FLOOR["failure_rate"])
                if z >= Z_THRESHOLD and today.failed >= MIN_FAILURES and today.failure_rate >= MIN_FAILURE_RATE:
                    findings.append(Finding(key_hash, day, "failure_rate", round(today.failure_rate, 4), round(median, 4), round(z, 2),
                                            f"{today.failed} of {today.requests} requests failed ({today.failure_rate:.0%}) "
                                            f"against a median of {median:.0%} (robust z {z:.1f})"))
        seen_models = {m for d in previous if d in series for m in series[d].models}
        if len([d for d in previous if d in series]) >= NEW_MODEL_MIN_HISTORY:
            for model, count in sorted(today.models.items()):
                if model not in seen_models and count >= NEW_MODEL_MIN_REQUESTS:
                    findings.append(Finding(key_hash, day, "new_model", count, 0, float(count),
                                            f"first use of {model} in {WINDOW_DAYS} days, {count} requests"))
        if day == first:
            findings += _first_day(key_hash, series, first, today, last_known, new_key, org_median_requests)
    return findings


def _first_day(key_hash: str, series: dict[dt.date, KeyDay], first: dt.date, today: KeyDay, last_known: dt.date, new_key: bool,
               org_median_requests: dict[dt.date, float]) -> list[Finding]:
    if not new_key or today.requests < FIRST_DAY_MIN_REQUESTS:
        return []
    after = [first + dt.timedelta(days=i) for i in range(1, FIRST_DAY_FOLLOWING + 1)]
    following = [series.get(d, _ABSENT).requests for d in after if d <= last_known and _same_kind(first, d)]
    baseline = statistics.median(following) if len(following) >= 2 else org_median_requests.get(first, 0.0)
    if today.requests < FIRST_DAY_RATIO * max(baseline, 1.0):
        return []
    return [Finding(key_hash, first, "first_day", today.requests, baseline, round(today.requests / max(baseline, 1.0), 2),
                    f"first day of a new key: {today.requests} requests against {baseline:,.3g} "
                    + ("on the days after it" if len(following) >= 2 else "for the median key that day"))]
