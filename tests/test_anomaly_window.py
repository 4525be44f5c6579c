"""Key anomalies judged on the run's days only (issue 14): day-by-day runs that judge their own day
(and a new key's first day among the 7 before) end with the very findings of runs that judged
all 7 days before theirs again, and a window judged alone gives what the whole history gives."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from usage_jobs import warehouse
from usage_jobs.defs.keys.anomalies import FIRST_DAY_FOLLOWING
from usage_jobs.defs.keys.detect import detect, store

FIRST = dt.date(2026, 1, 1)
DAYS = 75


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    """Keys that start late, pause longer than the window, try a new model, spike, fail in bursts, change team."""
    rng = random.Random(5)
    conn = warehouse.connect(tmp_path_factory.mktemp("anomalies") / "w.duckdb")
    models = [f"model-{i}" for i in range(6)]
    rows, created = [], []
    for k in range(45):
        key = f"key-{k:02d}"
        first = rng.randint(0, DAYS - 1) if k % 3 == 0 else 0
        pause_from, pause_days = (rng.randint(10, DAYS - 10), rng.randint(5, 40)) if k % 4 == 1 else (0, 0)
        rate, usual = rng.lognormvariate(2, 1.2), rng.sample(models, 2)
        if k % 5:
            created.append((key, dt.datetime.combine(FIRST + dt.timedelta(days=first - rng.choice([0, 1, 6])), dt.time(8))))
        for d in range(first, DAYS):
            if pause_from <= d < pause_from + pause_days:
                continue
            day = FIRST + dt.timedelta(days=d)
            mean = rate * (0.3 if day.weekday() >= 5 else 1) * (8 if rng.random() < 0.03 else 1) * (6 if d == first and k % 2 else 1)
            for model in sorted(set(usual + ([rng.choice(models)] if rng.random() < 0.06 else []))):
                requests = max(0, int(rng.gauss(mean / 2, (mean / 2) ** 0.5 + 0.5))) if model in usual else rng.choice([3, 15, 40])
                if requests:
                    failed = int(requests * (0.6 if rng.random() < 0.03 else 0.03 * rng.random()))
                    for team in ("team-a", "team-b") if rng.random() < 0.05 else ("team-a",):
                        spend = Decimal(round(rng.uniform(0.0001, 0.02) * requests, 10)).quantize(Decimal("1e-10"))
                        rows.append((day, team, key, model, requests, requests - failed, failed, spend))
    conn.executemany("INSERT INTO daily_usage (day, team_id, key_hash, model, requests, successful_requests, failed_requests, input_tokens, "
                     "output_tokens, total_tokens, cached_input_tokens, spend_usd, unpriced_requests, estimated_requests, repriced_requests) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, ?, 0, 0, 0)", rows)
    conn.executemany("INSERT INTO inventory_keys (key_hash, created_at) VALUES (?, ?)", created)
    yield conn
    conn.close()


def _table(conn) -> list[tuple]:
    return conn.execute("SELECT * FROM key_anomalies ORDER BY ALL").fetchall()


def _run_day(conn, day: dt.date, *, whole_window: bool) -> None:
    start = max(day - dt.timedelta(days=FIRST_DAY_FOLLOWING), FIRST)
    if whole_window:  # as before issue 14: every metric of the 7 days before the run's day judged again
        store(conn, detect(conn, start, day), start, day)
    else:
        store(conn, detect(conn, day, day, first_day_from=start), day, day, first_day_from=start)


def test_day_by_day_runs_give_the_findings_of_runs_that_judged_the_whole_window(conn):
    last = FIRST + dt.timedelta(days=DAYS - 1)
    assert {f.metric for f in detect(conn, FIRST, last)} == {"requests", "spend_usd", "failure_rate", "new_model", "first_day"}
    conn.execute("DELETE FROM key_anomalies")
    for i in range(DAYS):
        _run_day(conn, FIRST + dt.timedelta(days=i), whole_window=True)
    expected = _table(conn)
    conn.execute("DELETE FROM key_anomalies")
    for i in range(DAYS):
        _run_day(conn, FIRST + dt.timedelta(days=i), whole_window=False)
    assert _table(conn) == expected
    # The last day run again changes nothing.
    _run_day(conn, last, whole_window=False)
    assert _table(conn) == expected


def test_a_key_back_after_a_long_pause_is_not_new(conn):
    # Keys whose traffic begins inside the window but existed before it: their history decides, not the window.
    last = FIRST + dt.timedelta(days=DAYS - 1)
    whole = {(f.key_hash, f.day, f.metric) for f in detect(conn, FIRST, last) if f.day >= last - dt.timedelta(days=20)}
    windowed = {(f.key_hash, f.day, f.metric) for f in detect(conn, last - dt.timedelta(days=20), last)}
    assert windowed == whole
