"""What the report shows of the data's own quality for a period: where every record went.

Per day: files read, records read, stored, rejected (by reason), duplicates (re-deliveries),
id collisions, estimated, re-priced and unpriced requests, files that are not request logs,
and, when the gateway's API is configured, its own daily totals against what was ingested.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import duckdb

from usage_jobs.defs.gateway.completeness import GAP_STATUSES, MISSING_REQUESTS, WAREHOUSE_INCOMPLETE
from usage_jobs.defs.report.periods import Period
from usage_jobs.defs.report.queries import rows_as_dicts


@dataclass(frozen=True, kw_only=True)
class QualityCounts:
    files: int
    records_read: int
    stored: int
    rejected: int
    duplicates: int
    id_collisions: int
    tokens_estimated: int
    spend_repriced: int
    unpriced: int
    tokens_missing: int
    unrecognised_files: int
    unrecognised_with_data: int
    gateway_requests: int | None  # None: the gateway's totals were not fetched for the day
    logged_requests: int | None
    missing_requests: int | None
    balanced: bool  # records read = stored + rejected + duplicates


@dataclass(frozen=True, kw_only=True)
class QualityDay(QualityCounts):
    date: str


DATA_QUALITY_COLUMNS = ["date"] + [f.name for f in fields(QualityCounts) if f.name != "balanced"]


@dataclass(frozen=True)
class RejectionReason:
    reason: str
    records: int
    files: int
    first_day: str


@dataclass(frozen=True)
class UnrecognisedFile:
    date: str
    source_file: str
    bytes: int
    holds_data: bool


@dataclass(frozen=True)
class CompletenessGap:
    """A UTC date × key × model where the logs miss requests, or tokens or spend differ from the gateway's."""

    date: str
    key_hash: str
    key_alias: str | None
    model: str
    status: str
    gateway_requests: int
    logged_requests: int
    missing: int
    gateway_tokens: int
    logged_tokens: int
    gateway_spend: float
    logged_spend: float


@dataclass(frozen=True)
class QualityView:
    days: tuple[QualityDay, ...]  # one row per ingested day (the export)
    totals: QualityCounts
    reasons: tuple[RejectionReason, ...]  # rejection reasons over the period, most frequent first
    unrecognised: tuple[UnrecognisedFile, ...]  # files under the logs root that are not request logs
    gaps: tuple[CompletenessGap, ...]
    completeness_checked: bool


def _has_table(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    return conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0] > 0


def _days(conn: duckdb.DuckDBPyConnection, bounds: list[str], completeness: bool) -> tuple[QualityDay, ...]:
    gateway, parameters = ((
        "SELECT day, sum(gateway_requests) AS gateway_requests, sum(logged_requests) AS logged_requests, "
        "sum(gateway_requests - logged_requests) FILTER (status = ?) AS missing_requests FROM gateway_completeness WHERE status <> ? GROUP BY day",
        [MISSING_REQUESTS, WAREHOUSE_INCOMPLETE]) if completeness else
        ("SELECT NULL::DATE AS day, NULL::BIGINT AS gateway_requests, NULL::BIGINT AS logged_requests, NULL::BIGINT AS missing_requests", []))
    rows = conn.execute(
        "SELECT strftime(day, '%Y-%m-%d') AS date, files, records_read, rows AS stored, rejected, duplicates, id_collisions, tokens_estimated, "
        "spend_repriced, unpriced, tokens_missing, unrecognised_files, unrecognised_with_data, g.gateway_requests, g.logged_requests, g.missing_requests, "
        f"records_read = rows + rejected + duplicates AS balanced FROM ingest_days LEFT JOIN ({gateway}) g USING (day) WHERE day BETWEEN ? AND ? ORDER BY day",
        [*parameters, *bounds])
    return tuple(QualityDay(**row) for row in rows_as_dicts(rows))


def quality_view(conn: duckdb.DuckDBPyConnection, period: Period) -> QualityView:
    bounds = [period.start.isoformat(), period.end.isoformat()]
    completeness = _has_table(conn, "gateway_completeness") and conn.execute(
        "SELECT count(*) FROM gateway_completeness WHERE day BETWEEN ? AND ?", bounds).fetchone()[0] > 0
    days = _days(conn, bounds, completeness)
    totals = QualityCounts(**{name: sum(getattr(day, name) or 0 for day in days) for name in DATA_QUALITY_COLUMNS[1:]},
                           balanced=all(day.balanced for day in days))
    reasons = conn.execute(
        "SELECT reason, count(*), count(DISTINCT source_file), strftime(min(day), '%Y-%m-%d') "
        "FROM rejected_records WHERE day BETWEEN ? AND ? GROUP BY reason ORDER BY count(*) DESC, reason", bounds).fetchall()
    unrecognised = conn.execute(
        "SELECT strftime(day, '%Y-%m-%d'), source_file, bytes, holds_data FROM unrecognised_files "
        "WHERE day BETWEEN ? AND ? ORDER BY holds_data DESC, day, source_file LIMIT 200", bounds).fetchall()
    gaps = conn.execute(
        "SELECT strftime(day, '%Y-%m-%d'), key_hash, key_alias, model, status, gateway_requests, logged_requests, "
        "gateway_requests - logged_requests AS missing, gateway_tokens, logged_tokens, gateway_spend, logged_spend "
        "FROM gateway_completeness WHERE day BETWEEN ? AND ? AND list_contains(?, status) "
        "ORDER BY missing DESC, day, key_hash, model LIMIT 100", [*bounds, list(GAP_STATUSES)]).fetchall() if completeness else []
    return QualityView(days=days, totals=totals, reasons=tuple(RejectionReason(*row) for row in reasons),
                       unrecognised=tuple(UnrecognisedFile(*row) for row in unrecognised), gaps=tuple(CompletenessGap(*row) for row in gaps),
                       completeness_checked=completeness)
