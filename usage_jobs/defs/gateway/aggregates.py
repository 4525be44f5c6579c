"""Day × team × key × model aggregates of the `requests` table."""

from __future__ import annotations

import datetime as dt

import duckdb

from usage_jobs.warehouse import transaction

_AGGREGATE_SQL = """
INSERT INTO daily_usage
SELECT
    day, team_id, arg_max(team_alias, start_time), key_hash, arg_max(key_alias, start_time), model,
    count(*),
    count(*) FILTER (status = 'success'),
    count(*) FILTER (status = 'failure'),
    sum(input_tokens), sum(output_tokens), sum(total_tokens), sum(cached_input_tokens),
    -- Unpriced requests have no spend; the sum covers the priced ones and the count says what is missing.
    sum(spend_usd),
    count(*) FILTER (unpriced),
    count(*) FILTER (tokens_estimated),
    count(*) FILTER (spend_repriced)
FROM requests
WHERE day = ?
GROUP BY day, team_id, key_hash, model
"""


def aggregate_day(conn: duckdb.DuckDBPyConnection, day: dt.date) -> int:
    """Rebuild one day of `daily_usage`; returns its row count."""
    # Delete and insert in one transaction: re-running a day replaces it.
    with transaction(conn):
        conn.execute("DELETE FROM daily_usage WHERE day = ?", [day.isoformat()])
        conn.execute(_AGGREGATE_SQL, [day.isoformat()])
    return conn.execute("SELECT count(*) FROM daily_usage WHERE day = ?", [day.isoformat()]).fetchone()[0]


def totals_mismatch(conn: duckdb.DuckDBPyConnection, day: dt.date) -> list[str]:
    """Measures whose aggregate total differs from the request-level total for the day."""
    measures = ["requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "cached_input_tokens", "spend_usd"]
    aggregated = conn.execute(
        "SELECT " + ", ".join(f"coalesce(sum({m}), 0)" for m in measures) + " FROM daily_usage WHERE day = ?", [day.isoformat()]
    ).fetchone()
    direct = conn.execute(
        "SELECT count(*), count(*) FILTER (status = 'success'), count(*) FILTER (status = 'failure'), coalesce(sum(input_tokens), 0), "
        "coalesce(sum(output_tokens), 0), coalesce(sum(total_tokens), 0), coalesce(sum(cached_input_tokens), 0), coalesce(sum(spend_usd), 0) "
        "FROM requests WHERE day = ?",
        [day.isoformat()],
    ).fetchone()
    return [f"{m}: aggregates {a} vs requests {d}" for m, a, d in zip(measures, aggregated, direct) if a != d]
