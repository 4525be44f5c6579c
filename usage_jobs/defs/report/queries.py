"""What a report page shows for one period, read from the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from usage_jobs.defs.report.periods import Period

DAILY_COLUMNS = ["date", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                 "cached_input_tokens", "unpriced_requests", "estimated_requests"]


MODEL_COLUMNS = ["model", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                 "billed_input_tokens", "billed_output_tokens", "billed_cost", "billed_currency", "unpriced_requests"]
TEAM_COLUMNS = ["team_id", "team_alias", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens",
                "spend_usd", "billed_cost_allocated", "top_model", "billed_currency", "unpriced_requests"]


@dataclass
class PeriodData:
    period: Period
    daily: list[dict]
    totals: dict
    top_keys: list[dict]
    models: list[dict]
    teams: list[dict]
    missing_days: list[str]
    rejected: int
    duplicates: int
    spend_by_model_day: dict[str, dict[str, Decimal]] = field(default_factory=dict)


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def period_data(conn: duckdb.DuckDBPyConnection, period: Period) -> PeriodData:
    bounds = [period.start.isoformat(), period.end.isoformat()]
    daily = _dicts(conn.execute(
        """
        WITH days AS (SELECT CAST(d AS DATE) AS date FROM generate_series(CAST(? AS DATE), CAST(? AS DATE), INTERVAL 1 DAY) t(d))
        SELECT strftime(days.date, '%Y-%m-%d') AS date,
            coalesce(sum(u.requests), 0) AS requests, coalesce(sum(u.successful_requests), 0) AS successful_requests,
            coalesce(sum(u.failed_requests), 0) AS failed_requests, coalesce(sum(u.input_tokens), 0) AS input_tokens,
            coalesce(sum(u.output_tokens), 0) AS output_tokens, coalesce(sum(u.total_tokens), 0) AS total_tokens,
            coalesce(sum(u.spend_usd), 0) AS spend_usd, coalesce(sum(u.cached_input_tokens), 0) AS cached_input_tokens,
            coalesce(sum(u.unpriced_requests), 0) AS unpriced_requests, coalesce(sum(u.estimated_requests), 0) AS estimated_requests
        FROM days LEFT JOIN daily_usage u ON u.day = days.date
        GROUP BY days.date ORDER BY days.date
        """, bounds))
    totals = {name: sum(row[name] for row in daily) for name in DAILY_COLUMNS[1:]}
    top_keys = _dicts(conn.execute(
        """
        SELECT u.key_hash, coalesce(arg_max(u.key_alias, u.day), any_value(k.key_alias)) AS key_alias,
            u.team_id, coalesce(any_value(t.team_alias), arg_max(u.team_alias, u.day)) AS team_alias,
            sum(u.requests) AS requests, sum(u.failed_requests) AS failed_requests, sum(u.total_tokens) AS total_tokens,
            coalesce(sum(u.spend_usd), 0) AS spend_usd, sum(u.unpriced_requests) AS unpriced_requests
        FROM daily_usage u
        LEFT JOIN inventory_keys k ON k.key_hash = u.key_hash
        LEFT JOIN inventory_teams t ON t.team_id = u.team_id
        WHERE u.day BETWEEN ? AND ?
        GROUP BY u.key_hash, u.team_id
        ORDER BY spend_usd DESC, requests DESC, u.key_hash LIMIT 10
        """, bounds))
    # Billed columns are IG1's billing days in the period (they equal report days when both are UTC).
    models = _dicts(conn.execute(
        """
        WITH used AS (
            SELECT model, sum(requests) AS requests, sum(successful_requests) AS successful_requests, sum(failed_requests) AS failed_requests,
                sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(total_tokens) AS total_tokens,
                sum(spend_usd) AS spend_usd, sum(unpriced_requests) AS unpriced_requests
            FROM daily_usage WHERE day BETWEEN $1 AND $2 GROUP BY model),
        billed AS (
            SELECT model, sum(input_tokens) AS billed_input_tokens, sum(output_tokens) AS billed_output_tokens, sum(cost) AS billed_cost,
                any_value(currency) AS billed_currency
            FROM billed_usage WHERE day BETWEEN $1 AND $2 GROUP BY model)
        SELECT model, coalesce(requests, 0) AS requests, coalesce(successful_requests, 0) AS successful_requests,
            coalesce(failed_requests, 0) AS failed_requests, coalesce(input_tokens, 0) AS input_tokens, coalesce(output_tokens, 0) AS output_tokens,
            coalesce(total_tokens, 0) AS total_tokens, CASE WHEN used.model IS NULL THEN 0 ELSE spend_usd END AS spend_usd,
            billed_input_tokens, billed_output_tokens, billed_cost, billed_currency, coalesce(unpriced_requests, 0) AS unpriced_requests
        FROM used FULL JOIN billed USING (model)
        ORDER BY coalesce(spend_usd, 0) DESC, requests DESC, model
        """, bounds))
    teams = _dicts(conn.execute(
        """
        WITH by_model AS (
            SELECT team_id, model, sum(requests) AS requests, sum(successful_requests) AS successful_requests, sum(failed_requests) AS failed_requests,
                sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens, sum(total_tokens) AS total_tokens,
                sum(spend_usd) AS spend_usd, sum(unpriced_requests) AS unpriced_requests, arg_max(team_alias, day) AS seen_alias
            FROM daily_usage WHERE day BETWEEN $1 AND $2 GROUP BY team_id, model),
        used AS (
            SELECT team_id, any_value(seen_alias) AS seen_alias, sum(requests) AS requests, sum(successful_requests) AS successful_requests,
                sum(failed_requests) AS failed_requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                sum(total_tokens) AS total_tokens, sum(spend_usd) AS spend_usd, sum(unpriced_requests) AS unpriced_requests,
                arg_max(model, (coalesce(spend_usd, 0), total_tokens, requests)) AS top_model
            FROM by_model GROUP BY team_id),
        allocated AS (
            SELECT team_id, sum(allocated_cost) AS billed_cost_allocated, any_value(currency) AS billed_currency
            FROM chargeback WHERE day BETWEEN $1 AND $2 GROUP BY team_id)
        SELECT team_id, coalesce(t.team_alias, used.seen_alias) AS team_alias, coalesce(requests, 0) AS requests,
            coalesce(successful_requests, 0) AS successful_requests, coalesce(failed_requests, 0) AS failed_requests,
            coalesce(input_tokens, 0) AS input_tokens, coalesce(output_tokens, 0) AS output_tokens, coalesce(total_tokens, 0) AS total_tokens,
            CASE WHEN used.team_id IS NULL THEN 0 ELSE spend_usd END AS spend_usd, billed_cost_allocated, top_model, billed_currency,
            coalesce(unpriced_requests, 0) AS unpriced_requests
        FROM used FULL JOIN allocated USING (team_id) LEFT JOIN inventory_teams t USING (team_id)
        ORDER BY coalesce(spend_usd, 0) DESC, requests DESC, team_id
        """, bounds))
    by_model_day: dict[str, dict[str, Decimal]] = {}
    for model, day, spend in conn.execute(
        "SELECT model, strftime(day, '%Y-%m-%d'), coalesce(sum(spend_usd), 0) FROM daily_usage WHERE day BETWEEN ? AND ? GROUP BY ALL ORDER BY ALL", bounds
    ).fetchall():
        by_model_day.setdefault(model, {})[day] = spend
    ingested = {row[0] for row in conn.execute("SELECT strftime(day, '%Y-%m-%d') FROM ingest_days WHERE day BETWEEN ? AND ?", bounds).fetchall()}
    rejected, duplicates = conn.execute(
        "SELECT coalesce(sum(rejected), 0), coalesce(sum(duplicates), 0) FROM ingest_days WHERE day BETWEEN ? AND ?", bounds
    ).fetchone()
    return PeriodData(
        period=period, daily=daily, totals=totals, top_keys=top_keys, models=models, teams=teams,
        missing_days=[row["date"] for row in daily if row["date"] not in ingested],
        rejected=int(rejected), duplicates=int(duplicates), spend_by_model_day=by_model_day,
    )
