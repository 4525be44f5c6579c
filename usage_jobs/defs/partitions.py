"""Daily partitions in the report time zone, and the decorator arguments every daily warehouse asset shares.

The daily assets are declared without their partitions: `build_definitions` gives them the
partitions built from the settings (`daily_partitions`), so nothing reads the settings at import."""


import datetime as dt

import dagster as dg

from usage_jobs.defs.resources import WAREHOUSE_POOL
from usage_jobs.settings import Settings

# Single-run backfills, so that a date range is one run.
DAILY = dict(backfill_policy=dg.BackfillPolicy.single_run())


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """From USAGE_START_DATE (else USAGE_HISTORY_DAYS back), in USAGE_TIMEZONE."""
    return dg.DailyPartitionsDefinition(start_date=settings.first_day.isoformat(), timezone=settings.timezone)


def with_partitions(asset: dg.AssetsDefinition, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    return asset.map_asset_specs(lambda spec: spec.replace_attributes(partitions_def=partitions))


def daily_warehouse_asset(group_name: str) -> dict:
    """Single-run backfills; one warehouse writer at a time."""
    return dict(**DAILY, pool=WAREHOUSE_POOL, group_name=group_name, kinds={"duckdb"})


def partition_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[dt.date]:
    """The run's days: one partition, or a whole range in a single-run backfill (an asset check of a daily asset: its run's days)."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def first_partition_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> dt.date:
    return context.job_def.partitions_def.start.date()


def report_timezone(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> str:
    return context.job_def.partitions_def.timezone


def markdown_table(rows: list[tuple], header: tuple[str, ...]) -> str:
    """Rows as a Markdown table for materialisation metadata."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)
