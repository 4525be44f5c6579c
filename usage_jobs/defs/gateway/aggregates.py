"""A day's aggregates of the `requests` table: day × team × key × model, tags, end users, errors and latency."""

from __future__ import annotations

import datetime as dt

import duckdb

from usage_jobs.warehouse import transaction

LATENCY_BUCKET_RATIO = 1.05  # daily_latency's bucket width: a percentile read from buckets is within 2.5% of the duration

USER_AGENT_TAG = "User-Agent:"  # LiteLLM tags every request with its client's User-Agent
# The measures every usage table has, over a group of requests.
_MEASURES = """
    count(*) AS requests,
    count(*) FILTER (status = 'success') AS successful_requests,
    count(*) FILTER (status = 'failure') AS failed_requests,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(total_tokens) AS total_tokens,
    -- Unpriced requests have no spend; the sum covers the priced ones and the count says what is missing.
    sum(spend_usd) AS spend_usd,
    count(*) FILTER (unpriced) AS unpriced_requests"""

_AGGREGATE_SQL = f"""
INSERT INTO daily_usage BY NAME
SELECT
    day, team_id, arg_max(team_alias, start_time) AS team_alias, key_hash, arg_max(key_alias, start_time) AS key_alias, model, {_MEASURES},
    sum(cached_input_tokens) AS cached_input_tokens,
    count(*) FILTER (tokens_estimated) AS estimated_requests,
    count(*) FILTER (spend_repriced) AS repriced_requests,
    sum(cache_savings_usd) AS cache_savings_usd,
    count(*) FILTER (cache_hit) AS cache_hit_requests,
    coalesce(sum(cached_input_tokens) FILTER (cache_savings_usd IS NULL), 0) AS cache_unpriced_tokens,
    min(start_time) AS first_request_at, max(start_time) AS last_request_at
FROM requests
WHERE day = $day
GROUP BY day, team_id, key_hash, model;

INSERT INTO daily_tag_usage BY NAME
WITH tagged AS (
    SELECT *, list_distinct(coalesce(request_tags, [])) AS tags,
        len(list_filter(list_distinct(coalesce(request_tags, [])), lambda t: NOT starts_with(t, '{USER_AGENT_TAG}'))) AS plain_tags
    FROM requests WHERE day = $day
), one_per_tag AS (
    SELECT *, unnest(CASE WHEN len(tags) > 0 THEN tags ELSE [NULL] END) AS tag, false AS user_agent_only FROM tagged
    UNION ALL BY NAME
    -- With User-Agent tags hidden, these requests are the ones without a tag.
    SELECT *, NULL AS tag, true AS user_agent_only FROM tagged WHERE len(tags) > 0 AND plain_tags = 0
)
SELECT day, tag, user_agent_only, team_id, model, {_MEASURES},
    count(*) FILTER (len(tags) > 1 AND tag IS NOT NULL) AS shared_requests,
    count(*) FILTER (plain_tags - CASE WHEN starts_with(tag, '{USER_AGENT_TAG}') OR tag IS NULL THEN 0 ELSE 1 END > 0) AS shared_requests_without_user_agent
FROM one_per_tag
GROUP BY day, tag, user_agent_only, team_id, model;

INSERT INTO daily_end_user_usage BY NAME
SELECT day, end_user, team_id, model, {_MEASURES}
FROM requests WHERE day = $day
GROUP BY day, end_user, team_id, model;

INSERT INTO daily_errors BY NAME
SELECT day, team_id, key_hash, model, error_class, error_code, error_message, count(*) AS failures
FROM requests WHERE day = $day AND status = 'failure'
GROUP BY day, team_id, key_hash, model, error_class, error_code, error_message;

INSERT INTO daily_latency BY NAME
SELECT day, model, key_hash, coalesce(stream, false) AS stream,
    greatest(floor(ln(greatest(ms, 1)) / ln({LATENCY_BUCKET_RATIO})), 0)::SMALLINT AS bucket,
    count(*) AS requests, sum(ms) AS duration_ms_sum
FROM (SELECT *, epoch_ms(end_time) - epoch_ms(start_time) AS ms FROM requests
      WHERE day = $day AND status = 'success' AND end_time >= start_time)
GROUP BY ALL;
"""
DAY_TABLES = ("daily_usage", "daily_tag_usage", "daily_end_user_usage", "daily_errors", "daily_latency")


def aggregate_day(conn: duckdb.DuckDBPyConnection, day: dt.date) -> int:
    """Rebuild one day of the aggregate tables; returns its `daily_usage` row count."""
    # Delete and insert in one transaction: re-running a day replaces it.
    with transaction(conn):
        for table in DAY_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE day = ?", [day.isoformat()])
        for statement in _AGGREGATE_SQL.split(";\n"):
            if statement.strip():
                conn.execute(statement, {"day": day})
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
