"""Runs the anomaly method over the warehouse's daily usage and stores what it finds (no Dagster)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict

import duckdb

from usage_jobs.defs.keys.anomalies import WINDOW_DAYS, Finding, KeyDay, judge_key
from usage_jobs.warehouse import transaction


def detect(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> list[Finding]:
    """Findings for every key on the days start..end, from each key's history before them."""
    data_start = conn.execute("SELECT min(day) FROM daily_usage").fetchone()[0]
    if data_start is None:
        return []
    series: dict[str, dict[dt.date, KeyDay]] = defaultdict(dict)
    rows = conn.execute(
        "SELECT key_hash, day, model, sum(requests), sum(failed_requests), coalesce(sum(spend_usd), 0) FROM daily_usage "
        "WHERE day BETWEEN ? AND ? GROUP BY ALL ORDER BY ALL", [start - dt.timedelta(days=WINDOW_DAYS + 1), end]).fetchall()
    for key_hash, day, model, requests, failed, spend in rows:
        key_day = series[key_hash].setdefault(day, KeyDay())
        key_day.requests += requests
        key_day.failed += failed
        key_day.spend_usd += float(spend)
        key_day.models[model] = key_day.models.get(model, 0) + requests
    # A key's first day is its first day ever, not the first day of the history loaded here.
    first_seen = dict(conn.execute("SELECT key_hash, min(day) FROM daily_usage GROUP BY key_hash").fetchall())
    created = {k: c.date() for k, c in conn.execute("SELECT key_hash, created_at FROM inventory_keys WHERE created_at IS NOT NULL").fetchall()}
    per_day: dict[dt.date, list[int]] = defaultdict(list)
    for days in series.values():
        for day, key_day in days.items():
            per_day[day].append(key_day.requests)
    org_median = {day: statistics.median(counts) for day, counts in per_day.items()}
    window = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    findings = []
    for key_hash in sorted(series):
        findings += judge_key(key_hash, series[key_hash], window, org_median, created=created.get(key_hash), data_start=data_start,
                              first_day=first_seen[key_hash])
    return findings


def store(conn: duckdb.DuckDBPyConnection, findings: list[Finding], start: dt.date, end: dt.date) -> None:
    # The window's findings are replaced together: a re-run gives the same rows.
    with transaction(conn):
        conn.execute("DELETE FROM key_anomalies WHERE day BETWEEN ? AND ?", [start, end])
        if findings:
            conn.executemany("INSERT INTO key_anomalies VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [(f.key_hash, f.day, f.metric, f.value, f.baseline, f.score, f.reason) for f in findings])
