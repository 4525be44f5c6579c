"""Runs the anomaly method over the warehouse's daily usage and stores what it finds (no Dagster).

Only what the judged days need is read, whatever the length of the history: the keys with
traffic on those days (and the keys whose first day falls among the days re-judged for it),
their daily totals over the 28 days before, and, per key and day judged, the models it had
not used in those 28 days (found in SQL). A key's history before that window is asked for
only for the keys that first appear inside it (is it new, or back after a pause?)."""

from __future__ import annotations

import datetime as dt
import statistics

import duckdb

from usage_jobs.defs.keys.anomalies import WINDOW_DAYS, Finding, KeyDay, judge_key
from usage_jobs.warehouse import insert_rows, transaction

FIRST_DAY_METRIC = "first_day"


def detect(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, *, first_day_from: dt.date | None = None) -> list[Finding]:
    """Findings for every key on the days start..end, from each key's history before them; with
    `first_day_from`, also a new key's first-day finding on the days from then to start (its only
    judgement that the days after it change)."""
    data_start = conn.execute("SELECT min(day) FROM daily_usage").fetchone()[0]
    if data_start is None:
        return []
    rejudged_from = min(first_day_from or start, start)
    window_start = start - dt.timedelta(days=WINDOW_DAYS)  # the first day any judged day looks back to
    # Per key × day of the window, for the keys with traffic on a judged day or whose first day in the window is a re-judged day:
    # totals, the spend, and on the judged days the models not used in the 28 days before (a model used then can never make a
    # new-model finding, so only the unseen ones are passed on). The spend is summed as before: each model's exact sum as the
    # nearest double (exact below $900,000 a key, day and model: n / 10¹⁰ of two exact doubles), added in model order.
    rows = conn.execute(f"""
        WITH per_model AS (
            SELECT key_hash, day, model, sum(requests) AS requests, sum(failed_requests) AS failed,
                   CAST(coalesce(sum(spend_usd), 0) * 10000000000 AS HUGEINT)::DOUBLE / 10000000000.0::DOUBLE AS spend
            FROM daily_usage WHERE day BETWEEN $window_start AND $end GROUP BY ALL),
        keys AS (
            SELECT key_hash FROM per_model GROUP BY key_hash HAVING max(day) >= $start OR min(day) >= $rejudged_from),
        mine AS (SELECT p.* FROM per_model p SEMI JOIN keys USING (key_hash)),
        unseen AS (
            SELECT j.key_hash, j.day, j.model FROM mine j
            WHERE j.day >= $start AND NOT EXISTS (SELECT 1 FROM mine h WHERE h.key_hash = j.key_hash AND h.model = j.model
                                                  AND h.day BETWEEN j.day - {WINDOW_DAYS} AND j.day - 1))
        SELECT m.key_hash, m.day, sum(m.requests), sum(m.failed), list_reduce(list(m.spend ORDER BY m.model), lambda a, b: a + b),
               list(m.model ORDER BY m.model) FILTER (WHERE u.model IS NOT NULL),
               list(m.requests ORDER BY m.model) FILTER (WHERE u.model IS NOT NULL)
        FROM mine m LEFT JOIN unseen u USING (key_hash, day, model) GROUP BY m.key_hash, m.day ORDER BY m.key_hash, m.day""",
                        {"window_start": window_start, "start": start, "end": end, "rejudged_from": rejudged_from}).fetchall()
    series: dict[str, dict[dt.date, KeyDay]] = {}
    for key_hash, day, requests, failed, spend, new_models, new_counts in rows:
        series.setdefault(key_hash, {})[day] = KeyDay(requests, failed, spend, dict(zip(new_models, new_counts)) if new_models else {})
    if not series:
        return []
    # A key's first day is its first day ever, not the first day of the window loaded here: asked for the keys that first
    # appear in the window after its start; a key seen before the window counts as first seen the day before it.
    appearing = [key for key, days in series.items() if min(days) > window_start]
    earlier = set()
    if appearing:
        earlier = {key for (key,) in conn.execute("SELECT DISTINCT key_hash FROM daily_usage WHERE day < ? AND key_hash IN (SELECT unnest(?))",
                                                   [window_start, appearing]).fetchall()}
    first_seen = {key: (min(days) if key in appearing and key not in earlier else window_start - dt.timedelta(days=1))
                  for key, days in series.items()}
    created = {k: c.date() for k, c in conn.execute("SELECT key_hash, created_at FROM inventory_keys WHERE created_at IS NOT NULL").fetchall()}
    # The organisation's median key (requests a day), only on the days a key is first seen (a new key's first day without two
    # following days to compare with is judged against it).
    first_days = sorted({day for day in first_seen.values() if rejudged_from <= day <= end})
    org_median = {}
    if first_days:
        for day, counts in conn.execute("SELECT day, list(requests) FROM (SELECT day, key_hash, sum(requests) AS requests FROM daily_usage "
                                        "WHERE day IN (SELECT unnest(?)) GROUP BY ALL) GROUP BY day", [first_days]).fetchall():
            org_median[day] = statistics.median(counts)
    judged = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    rejudged = [rejudged_from + dt.timedelta(days=i) for i in range((start - rejudged_from).days)]
    findings = []
    for key_hash in sorted(series):
        findings += judge_key(key_hash, series[key_hash], rejudged + judged, org_median, created=created.get(key_hash), data_start=data_start,
                              first_day=first_seen[key_hash], first_day_only=set(rejudged))
    return findings


def store(conn: duckdb.DuckDBPyConnection, findings: list[Finding], start: dt.date, end: dt.date, *, first_day_from: dt.date | None = None) -> None:
    """The findings of days start..end replace theirs; on the days from `first_day_from` to start only the first-day
    findings are replaced (the others were judged on their own day and stay): a re-run gives the same rows."""
    with transaction(conn):
        conn.execute("DELETE FROM key_anomalies WHERE day BETWEEN ? AND ?", [start, end])
        if first_day_from is not None and first_day_from < start:
            conn.execute("DELETE FROM key_anomalies WHERE metric = ? AND day >= ? AND day < ?", [FIRST_DAY_METRIC, first_day_from, start])
        insert_rows(conn, "key_anomalies", [(f.key_hash, f.day, f.metric, f.value, f.baseline, f.score, f.reason) for f in findings])
