"""What the report shows of the data's own quality for a period: where every record went.

Per day: files read, records read, stored, rejected (by reason), duplicates (re-deliveries),
id collisions, estimated, re-priced and unpriced requests, files that are not request logs,
and, when the gateway's API is configured, its own daily totals against what was ingested.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from usage_jobs.defs.gateway.completeness import GAP_STATUSES, MISSING_REQUESTS, WAREHOUSE_INCOMPLETE
from usage_jobs.defs.report.periods import Period
from usage_jobs.defs.report.queries import rows_as_dicts

DATA_QUALITY_COLUMNS = ["date", "files", "records_read", "stored", "rejected", "duplicates", "id_collisions", "tokens_estimated",
                        "spend_repriced", "unpriced", "tokens_missing", "unrecognised_files", "unrecognised_with_data",
                        "gateway_requests", "logged_requests", "missing_requests"]


@dataclass
class QualityView:
    days: list[dict]  # one row per ingested day (the export)
    totals: dict
    reasons: list[dict]  # rejection reasons over the period, most frequent first
    unrecognised: list[dict]  # files under the logs root that are not request logs
    gaps: list[dict]  # UTC date × key × model where the logs miss requests, or tokens or spend differ
    completeness_checked: bool


def _has_table(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    return conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0] > 0


def quality_view(conn: duckdb.DuckDBPyConnection, period: Period) -> QualityView:
    bounds = [period.start.isoformat(), period.end.isoformat()]
    completeness = _has_table(conn, "gateway_completeness") and conn.execute(
        "SELECT count(*) FROM gateway_completeness WHERE day BETWEEN ? AND ?", bounds).fetchone()[0] > 0
    per_day_gateway = (
        "LEFT JOIN (SELECT day, sum(gateway_requests) AS gateway_requests, sum(logged_requests) AS logged_requests, "
        f"sum(gateway_requests - logged_requests) FILTER (status = '{MISSING_REQUESTS}') AS missing_requests "
        f"FROM gateway_completeness WHERE status <> '{WAREHOUSE_INCOMPLETE}' GROUP BY day) g USING (day)"
        if completeness else
        "LEFT JOIN (SELECT NULL::DATE AS day, NULL::BIGINT AS gateway_requests, NULL::BIGINT AS logged_requests, NULL::BIGINT AS missing_requests) g USING (day)")
    days = rows_as_dicts(conn.execute(
        "SELECT strftime(day, '%Y-%m-%d') AS date, files, records_read, rows AS stored, rejected, duplicates, id_collisions, tokens_estimated, "
        "spend_repriced, unpriced, tokens_missing, unrecognised_files, unrecognised_with_data, "
        f"g.gateway_requests, g.logged_requests, g.missing_requests FROM ingest_days {per_day_gateway} "
        "WHERE day BETWEEN ? AND ? ORDER BY day", bounds))
    for row in days:
        row["balanced"] = row["records_read"] == row["stored"] + row["rejected"] + row["duplicates"]
    totals = {name: sum(row[name] or 0 for row in days) for name in DATA_QUALITY_COLUMNS[1:]}
    totals["balanced"] = all(row["balanced"] for row in days)
    reasons = rows_as_dicts(conn.execute(
        "SELECT reason, count(*) AS records, count(DISTINCT source_file) AS files, strftime(min(day), '%Y-%m-%d') AS first_day "
        "FROM rejected_records WHERE day BETWEEN ? AND ? GROUP BY reason ORDER BY records DESC, reason", bounds))
    unrecognised = rows_as_dicts(conn.execute(
        "SELECT strftime(day, '%Y-%m-%d') AS date, source_file, bytes, holds_data FROM unrecognised_files "
        "WHERE day BETWEEN ? AND ? ORDER BY holds_data DESC, day, source_file LIMIT 200", bounds))
    gaps = rows_as_dicts(conn.execute(
        "SELECT strftime(day, '%Y-%m-%d') AS date, key_hash, key_alias, model, status, gateway_requests, logged_requests, "
        "gateway_requests - logged_requests AS missing, gateway_tokens, logged_tokens, gateway_spend, logged_spend "
        f"FROM gateway_completeness WHERE day BETWEEN ? AND ? AND status IN ({', '.join(repr(s) for s in GAP_STATUSES)}) "
        "ORDER BY missing DESC, day, key_hash, model LIMIT 100", bounds)) if completeness else []
    return QualityView(days=[{name: row[name] for name in DATA_QUALITY_COLUMNS} | {"balanced": row["balanced"]} for row in days],
                       totals=totals, reasons=reasons, unrecognised=unrecognised, gaps=gaps, completeness_checked=completeness)
