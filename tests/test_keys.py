"""Key activity: statuses and budgets on a constructed inventory, and the anomaly method on
series with known answers."""

import datetime as dt
import json
import random

import pytest

from helpers import payload, write
from usage_jobs import warehouse
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.inventory.parse import parse_inventory
from usage_jobs.defs.inventory.store import store_inventory
from usage_jobs.defs.keys.anomalies import KeyDay, judge_key
from usage_jobs.defs.keys.budgets import budget_flag, budget_window_days
from usage_jobs.defs.report.periods import day_period
from usage_jobs.defs.report.queries import period_data

DAY = dt.date(2026, 11, 10)
START = dt.date(2026, 9, 1)


def _key(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def activity(tmp_path):
    """Six keys, one of each status, with budgets at 50%, 85% and 120% of their spend."""
    inventory_keys = [
        {"token": _key(1), "key_alias": "active", "team_id": "t1", "max_budget": 0.02, "budget_duration": "30d", "created_at": "2026-01-01T00:00:00Z"},
        {"token": _key(2), "key_alias": "unused-now", "team_id": "t1", "created_at": "2026-01-01T00:00:00Z", "user_id": "ana@example.org"},
        {"token": _key(3), "key_alias": "never-used", "team_id": "t1", "created_at": "2026-03-01T00:00:00Z", "user_id": "bob@example.org"},
        {"token": _key(4), "key_alias": "expired", "team_id": "t1", "expires": "2026-11-01T00:00:00Z", "max_budget": 0.0047, "budget_duration": "30d"},
        {"token": _key(5), "key_alias": "blocked", "team_id": "t1", "blocked": True, "max_budget": 0.0083, "budget_duration": "7d"},
        {"token": _key(6), "key_alias": "teamless", "team_id": None},
    ]
    teams = [{"team_id": "t1", "team_alias": "Team One", "max_budget": 0.03, "budget_duration": "30d"}]
    conn = warehouse.connect(tmp_path / "w.duckdb")
    store_inventory(conn, parse_inventory(inventory_keys, teams, "test"))
    logs = tmp_path / "logs"
    records = {DAY: [], DAY - dt.timedelta(days=5): []}
    for n in (1, 4, 5, 6):
        team = None if n == 6 else "t1"
        for i in range(10):  # 10 requests of $0.001 each on the day
            records[DAY].append(payload(f"r{n}-{i}", metadata={"user_api_key_hash": _key(n), "user_api_key_alias": f"k{n}", "user_api_key_team_id": team}))
    records[DAY - dt.timedelta(days=5)].append(
        payload("old-2", start="2026-11-05 10:00:00.000000", metadata={"user_api_key_hash": _key(2), "user_api_key_team_id": "t1"}))
    for day, day_records in records.items():
        write(logs / "gcs" / day.isoformat() / "batch.ndjson", "\n".join(json.dumps(r | {"startTime": f"{day} 10:00:00.000000"}) for r in day_records) + "\n")
        ingest_day(conn, logs_dir=logs, day=day, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
        aggregate_day(conn, day)
    return period_data(conn, day_period(DAY))


def test_every_key_gets_its_status(activity):
    statuses = {k.key_alias: k.status for k in activity.keys}
    assert statuses == {"active": "active", "unused-now": "unused in the period", "never-used": "never used", "expired": "expired but still used",
                        "blocked": "blocked but still used", "teamless": "no team"}
    unused = {k.key_alias: (k.owner, k.age_days) for k in activity.keys if not k.requests}
    assert unused == {"unused-now": ("ana@example.org", 313), "never-used": ("bob@example.org", 254)}


@pytest.mark.parametrize("made_by", ["this version", "a version before the day aggregates kept first and last uses"])
def test_a_keys_first_and_last_use_are_read_from_the_day_aggregates(tmp_path, made_by):
    """A key's first and last request (its status, the key table's columns) come from `daily_usage`, one row per day, key and model,
    not from every request ever stored; a warehouse made before those columns has them filled from its requests when opened."""
    path, logs = tmp_path / "w.duckdb", tmp_path / "logs"
    conn = warehouse.connect(path)
    store_inventory(conn, parse_inventory([{"token": _key(n), "team_id": "t1"} for n in (1, 2)], [{"team_id": "t1"}], "test"))
    starts = {_key(1): ["2026-11-07 08:00:00", "2026-11-07 17:30:00", "2026-11-09 09:15:00", "2026-11-10 06:00:00", "2026-11-10 23:59:00"],
              _key(2): ["2026-11-07 12:00:00", "2026-11-08 00:00:01"]}
    by_day: dict[str, list[str]] = {}
    for key_hash, times in starts.items():
        for n, start in enumerate(times):
            record = payload(f"{key_hash[-1]}-{n}", start=f"{start}.000000", metadata={"user_api_key_hash": key_hash, "user_api_key_team_id": "t1"})
            by_day.setdefault(start[:10], []).append(json.dumps(record))
    for day, lines in by_day.items():
        write(logs / "gcs" / day / "batch.ndjson", "\n".join(lines) + "\n")
        ingest_day(conn, logs_dir=logs, day=dt.date.fromisoformat(day), timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
        aggregate_day(conn, dt.date.fromisoformat(day))
    if made_by != "this version":
        conn.execute("ALTER TABLE daily_usage DROP COLUMN first_request_at")
        conn.execute("ALTER TABLE daily_usage DROP COLUMN last_request_at")
        conn.execute("UPDATE schema_version SET version = 'older'")
        conn.close()
        conn = warehouse.connect(path)
    utc = dt.UTC
    expected = {_key(1): (dt.datetime(2026, 11, 7, 8, tzinfo=utc), dt.datetime(2026, 11, 10, 23, 59, tzinfo=utc)),
                _key(2): (dt.datetime(2026, 11, 7, 12, tzinfo=utc), dt.datetime(2026, 11, 8, 0, 0, 1, tzinfo=utc))}
    assert {k: tuple(v) for k, *v in conn.execute("SELECT key_hash, min(start_time), max(start_time) FROM requests GROUP BY ALL").fetchall()} == expected
    assert {k: tuple(v) for k, *v in conn.execute(
        "SELECT key_hash, min(first_request_at), max(last_request_at) FROM daily_usage GROUP BY ALL").fetchall()} == expected
    keys = {k.key_hash: k for k in period_data(conn, day_period(DAY)).keys}
    assert {k: (key.first_request_at, key.last_request_at) for k, key in keys.items()} == expected
    assert (keys[_key(1)].status, keys[_key(2)].status) == ("active", "unused in the period")


def test_budgets_are_flagged_at_80_and_100_percent(activity):
    flags = {k.key_alias: (k.budget_used_pct, k.budget_flag) for k in activity.keys if k.max_budget}
    assert flags == {"active": (50.0, None), "expired": (pytest.approx(212.8, abs=0.1), "over budget"),
                     "blocked": (pytest.approx(120.5, abs=0.1), "over budget")}
    team = next(t for t in activity.teams if t.team_id == "t1")
    assert (team.budget_flag, team.budget_used_pct) == ("over budget", 103.3)  # 31 requests of $0.001 in 30 days against $0.03
    kinds = {item.kind for item in activity.attention}
    assert {"over budget", "expired but still used", "blocked but still used"} <= kinds
    assert budget_flag(85, 100) == (0.85, "near budget") and budget_flag(79.9, 100)[1] is None and budget_flag(5, None) == (None, None)


def test_budget_durations_read_as_litellm_writes_them():
    assert [budget_window_days(d) for d in ("30d", "1mo", "24h", "7d", "2w", "90m", None, "monthly")] == [30, 30, 1, 7, 14, 1, None, None]


# --- the anomaly method on series with known answers ---------------------------------

def _series(values: dict[dt.date, int], failures: dict[dt.date, int] | None = None, model: str = "m1") -> dict[dt.date, KeyDay]:
    failures = failures or {}
    return {day: KeyDay(requests=n, failed=failures.get(day, 0), spend_usd=n * 0.01, models={model: n}) for day, n in values.items() if n}


def _days(n: int) -> list[dt.date]:
    return [START + dt.timedelta(days=i) for i in range(n)]


def _judge(series, day, *, created=None):
    return judge_key("k", series, [day], {day: 20.0}, created=created, data_start=START)


def _weekly(n: int, rng: random.Random, weekday: int = 40, weekend: int = 10) -> dict[dt.date, int]:
    return {d: max(0, round(rng.gauss(weekend if d.weekday() >= 5 else weekday, 3))) for d in _days(n)}


def test_a_flat_or_rhythmic_history_raises_nothing():
    flat = {d: 30 for d in _days(60)}
    assert all(not _judge(_series(flat), d) for d in _days(60))
    rng = random.Random(1)
    weekly = _weekly(60, rng)
    assert all(not _judge(_series(weekly), d) for d in _days(60))  # Mondays after quiet weekends are not spikes


def test_a_steady_trend_raises_nothing():
    trend = {d: 20 + i // 3 for i, d in enumerate(_days(60))}  # +50% over two months
    assert all(not _judge(_series(trend), d) for d in _days(60))


def test_a_spike_is_found_with_its_baseline_and_score():
    rng = random.Random(2)
    values = _weekly(45, rng)
    spike_day = dt.date(2026, 10, 14)  # a Wednesday
    values[spike_day] = 8 * 40
    findings = _judge(_series(values), spike_day)
    assert {f.metric for f in findings} == {"requests", "spend_usd"}
    requests = next(f for f in findings if f.metric == "requests")
    assert requests.value == 320 and requests.baseline == pytest.approx(40, abs=4) and requests.score > 8


def test_a_failure_burst_and_a_new_model_are_found():
    rng = random.Random(3)
    values = _weekly(45, rng)
    burst_day = dt.date(2026, 10, 13)
    failures = {d: round(n * 0.03) for d, n in values.items()}
    failures[burst_day] = round(values[burst_day] * 0.6)
    assert [f.metric for f in _judge(_series(values, failures), burst_day)] == ["failure_rate"]
    series = _series(values)
    series[burst_day].models["qwen35-397b-a17b-instruct-general"] = 25
    assert [f.metric for f in _judge(series, burst_day)] == ["new_model"]


def test_a_new_keys_first_day_spike_is_found_and_a_normal_first_day_is_not():
    first = dt.date(2026, 10, 7)  # a Wednesday
    values = {first + dt.timedelta(days=i): 12 for i in range(10)}
    values[first] = 72
    assert [f.metric for f in _judge(_series(values), first, created=first)] == ["first_day"]
    values[first] = 12
    assert _judge(_series(values), first, created=first) == []
    values[first] = 72  # an old key seen for the first time in the data is not a new key
    assert _judge(_series(values), first, created=dt.date(2025, 1, 1)) == []


@pytest.mark.parametrize("first", [dt.date(2026, 10, 7), dt.date(2026, 10, 10), dt.date(2026, 10, 11)], ids=["Wednesday", "Saturday", "Sunday"])
def test_a_first_day_finding_is_final_a_week_after_the_first_day(first):
    """A new key's first day is judged against the days of its kind in the week after it: what comes later changes neither the
    finding nor its baseline, so the past pages showing it are not rendered again by every new day."""
    week = {first + dt.timedelta(days=i): 12 for i in range(1, 8)} | {first: 72}
    settled = _judge(_series(week), first, created=first)
    assert [(f.metric, f.baseline) for f in settled] == [("first_day", 12)]
    later = week | {first + dt.timedelta(days=i): 500 for i in range(8, 15)}
    assert _judge(_series(later), first, created=first) == settled


def test_too_little_history_raises_nothing():
    values = {d: 30 for d in _days(8)}
    values[_days(8)[-1]] = 500
    assert _judge(_series(values), _days(8)[-1]) == []
