"""Daily partitions in the report time zone, starting at USAGE_START_DATE."""

from __future__ import annotations

import functools

import dagster as dg

from usage_jobs.settings import load_settings


@functools.cache
def daily_partitions() -> dg.DailyPartitionsDefinition:
    settings = load_settings()
    return dg.DailyPartitionsDefinition(start_date=settings.start_date.isoformat(), timezone=settings.timezone)
