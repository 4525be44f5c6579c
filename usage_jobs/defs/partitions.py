"""Daily partitions in the report time zone, starting at USAGE_START_DATE, and the
decorator arguments every daily warehouse asset shares."""


import datetime as dt
import functools

import dagster as dg

from usage_jobs.defs.resources import WAREHOUSE_POOL
from usage_jobs.settings import load_settings


@functools.cache
def daily_partitions() -> dg.DailyPartitionsDefinition:
    settings = load_settings()
    return dg.DailyPartitionsDefinition(start_date=settings.start_date.isoformat(), timezone=settings.timezone)


def daily_warehouse_asset(group_name: str) -> dict:
    """Daily partitions; single-run backfills so `--partition-range` works; one warehouse writer at a time."""
    return dict(partitions_def=daily_partitions(), backfill_policy=dg.BackfillPolicy.single_run(),
                pool=WAREHOUSE_POOL, group_name=group_name, kinds={"duckdb"})


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The run's days: one partition, or a whole range in a single-run backfill."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def markdown_table(rows: list[tuple], header: tuple[str, ...]) -> str:
    """Rows as a Markdown table for materialisation metadata."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return "\n".join(lines)
