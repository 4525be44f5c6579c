"""Abnormal consumption per virtual key → `key_anomalies`."""


import datetime as dt

import dagster as dg

from usage_jobs.defs.gateway.assets import daily_usage
from usage_jobs.defs.inventory.assets import key_inventory
from usage_jobs.defs.keys.anomalies import FIRST_DAY_FOLLOWING
from usage_jobs.defs.keys.detect import detect, store
from usage_jobs.defs.partitions import daily_warehouse_asset, first_partition_day, markdown_table, partition_days
from usage_jobs.defs.resources import WarehouseResource


@dg.asset(**daily_warehouse_asset("keys"), deps=[daily_usage, key_inventory])
def key_anomalies(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Abnormal days per key against the key's own trailing 28 days: robust z-scores of daily
    requests, spend and failure rate (weekdays and weekends apart), first use of a model,
    and first-day spikes of new keys. Each run judges its own days and re-judges a new key's
    first day among the 7 days before them, because that day is judged against the days
    that follow it; only those days' rows are read, whatever the length of the history."""
    days = partition_days(context)
    start = max(days[0] - dt.timedelta(days=FIRST_DAY_FOLLOWING), first_partition_day(context))
    with warehouse.connect() as conn:
        findings = detect(conn, days[0], days[-1], first_day_from=start)
        store(conn, findings, days[0], days[-1], first_day_from=start)
    preview = [(f.day.isoformat(), f.key_hash[:12], f.metric, f.reason) for f in findings[-10:]]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(findings), "window": f"{start} to {days[-1]}", "abnormal key-days": len({(f.key_hash, f.day) for f in findings}),
        "latest findings": dg.MetadataValue.md(markdown_table(preview, ("day", "key", "metric", "reason")) if preview else "none"),
    })
