"""`usage-report export`: a period's export files for any range of days (or any period of the site), outside the site.

The tables, columns, rounding and metadata are the site's own (`build.period_views`, `export_tables`,
`export_metadata`, `exports.render_csv/render_json`): a range equal to a site period gives the same data
files, but for the metadata naming the period; `--period SLUG` gives byte-identical ones."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from usage_jobs.defs.report.build import export_metadata, export_tables, period_views
from usage_jobs.defs.report.exports import FORMATS, ExportTable, write_exports
from usage_jobs.defs.report.periods import Period, day_runs


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says why and what to ask instead."""


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    period: Period
    files: list[dict]  # the manifest's entries: file, export, format, rows, bytes, sha256
    missing_days: list[str]  # days of the period the warehouse has not ingested


def ingested_days(conn: duckdb.DuckDBPyConnection) -> list[dt.date]:
    return [row[0] for row in conn.execute("SELECT day FROM ingest_days ORDER BY day").fetchall()]


def check_period(period: Period, days: list[dt.date]) -> list[dt.date]:
    """The period's ingested days; ExportError when it has none (naming the days the warehouse has)."""
    inside = [day for day in days if period.start <= day <= period.end]
    if not inside:
        held = f"it holds {day_runs(days)} ({len(days)} day(s))" if days else "it holds no day yet (run `usage-report run` first)"
        raise ExportError(f"no day from {period.start} to {period.end} is in the warehouse: {held}")
    return inside


def select_tables(tables: list[ExportTable], types: list[str] | None) -> list[ExportTable]:
    """The tables asked for, in the site's order (all of them without `types`); ExportError naming the known ones."""
    if not types:
        return tables
    known = [table.name for table in tables]
    unknown = [name for name in dict.fromkeys(types) if name not in known]
    if unknown:
        # The one export the site writes only sometimes: the statement needs IG1 billing, in one contract currency.
        why = (" (chargeback needs IG1 billing configured, IG1_MASTER_KEY, and one contract currency over the range)"
               if "chargeback" in unknown else "")
        raise ExportError(f"unknown export type{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                          f"the exports of this range are {', '.join(known)}{why}")
    return [table for table in tables if table.name in types]


def export_period(conn: duckdb.DuckDBPyConnection, period: Period, folder: Path, *, types: list[str] | None = None,
                  formats: tuple[str, ...] = FORMATS, timezone: str, billing_configured: bool, billing_timezone: str = "UTC",
                  hide_user_agent_tags: bool = False, generated_at: dt.datetime | None = None) -> ExportResult:
    """Write a period's exports (those of `types`, default all) into `folder`: the site's tables, columns and rules."""
    check_period(period, ingested_days(conn))
    views = period_views(conn, period, timezone=timezone, billing_configured=billing_configured, billing_timezone=billing_timezone,
                         hide_user_agent_tags=hide_user_agent_tags)
    tables = select_tables(export_tables(views), types)
    metadata = export_metadata(views, timezone=timezone, billing_configured=billing_configured, billing_timezone=billing_timezone)
    when = (generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")  # as the site's manifest says it
    files = write_exports(folder, tables, metadata, generated_at=when, formats=formats)
    return ExportResult(folder, period, files, list(metadata["missing_days"]))
