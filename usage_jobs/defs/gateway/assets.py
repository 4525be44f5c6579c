"""Gateway request logs → `requests` (one row per request) → `daily_usage` aggregates."""


import datetime as dt
import re
import time
from pathlib import Path

import dagster as dg

from usage_jobs.defs.gateway.aggregates import aggregate_day, totals_mismatch
from usage_jobs.defs.gateway.ingest import DaySource, IngestStats, MissingLogsError, ingest_days
from usage_jobs.defs.gateway.landing import LandingError, LandingStats, land_bucket_day
from usage_jobs.defs.gateway.layout import GATEWAY_API
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.gateway.spend_api import land_spend_logs_day
from usage_jobs.defs.partitions import DAILY, daily_warehouse_asset, markdown_table, partition_days
from usage_jobs.defs.resources import WAREHOUSE_POOL, GatewayLogsResource, WarehouseResource

# Network-bound assets retry what may pass (timeouts, resets, 5xx once the client gave up); a clear
# failure (dg.Failure with allow_retries=False: missing logs, bad credentials) is not retried.
NETWORK_RETRY = dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
REJECTED_SHARE_CHECK = "rejected_share_below_limit"
UNIQUE_REQUESTS_CHECK = "requests_unique"
UNRECOGNISED_CHECK = "no_unrecognised_files_with_data"
TOTALS_CHECK = "aggregates_match_requests"
STATS_COLUMNS = ("rows", "rejected", "duplicates", "id_collisions", "tokens_estimated", "spend_repriced", "unpriced", "tokens_missing",
                 "files", "records_read", "unrecognised_files")


# What the two steps log of each day, read back by `usage-report run` to print a day's line as soon as it is stored.
DAY_LANDED = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2}): [\d,]+ objects listed, (?P<fetched>[\d,]+) fetched \((?P<mb>[\d.,]+) MB\), "
                        r"(?P<already>[\d,]+) already landed, ")
DAY_STORED = re.compile(r"^(?P<day>\d{4}-\d{2}-\d{2}): (?P<rows>[\d,]+) requests, (?P<rejected>[\d,]+) rejected, (?P<duplicates>[\d,]+) duplicates, "
                        r"(?P<id_collisions>[\d,]+) id collisions, (?P<tokens_estimated>[\d,]+) estimated, (?P<unpriced>[\d,]+) unpriced from ")


def parse_day_log(pattern: re.Pattern, message: str) -> dict | None:
    """The figures of a day's line of the run's log (`day` as text, numbers as int), or None for another line."""
    found = pattern.match(message or "")
    if found is None:
        return None
    return {name: value if name == "day" else float(value.replace(",", "")) if name == "mb" else int(value.replace(",", ""))
            for name, value in found.groupdict().items()}


@dg.asset(**DAILY, group_name="gateway", kinds={"s3", "gcs", "azure"}, retry_policy=NETWORK_RETRY)
def raw_gateway_logs(context: dg.AssetExecutionContext, gateway_logs: GatewayLogsResource):
    """The day's raw gateway logs as local files: a local folder is read in place; a bucket
    (s3://, gs://, az://) or the gateway's /spend/logs/v2 is copied into the landing folder
    first (the day's and the next day's objects, fetched concurrently, never twice), so a
    re-run of the day reads the same files offline."""
    remote = gateway_logs.remote_source
    if remote is None:
        return dg.MaterializeResult(metadata={"source": "local folder, read in place", "path": gateway_logs.logs_dir})
    landed = []
    for day in partition_days(context):
        try:
            stats = _land(gateway_logs, day, context.log.info)
        except LandingError as exc:
            raise dg.Failure(description=f"{day}: {exc}", allow_retries=False) from None
        context.log.info(f"{day}: {stats.listed:,} objects listed, {stats.fetched:,} fetched ({stats.bytes_fetched / 1e6:.1f} MB), "
                         f"{stats.already_landed:,} already landed, in {stats.seconds:.1f} s")  # read back by DAY_LANDED
        landed.append(stats)
    totals = {field: sum(getattr(s, field) for s in landed) for field in ("listed", "fetched", "already_landed", "bytes_fetched", "retries")}
    return dg.MaterializeResult(metadata={
        "source": f"{remote}/spend/logs/v2" if gateway_logs.source_kind == GATEWAY_API else remote,
        "landing folder": str(gateway_logs.local_root()),
        "objects listed": totals["listed"], "objects fetched": totals["fetched"], "already landed": totals["already_landed"],
        "MB fetched": round(totals["bytes_fetched"] / 1e6, 3), "retries": totals["retries"],
        "seconds": round(sum(s.seconds for s in landed), 2),
    })


def _land(gateway_logs: GatewayLogsResource, day: dt.date, progress) -> LandingStats:
    landing_dir = Path(gateway_logs.landing_dir)
    if gateway_logs.source_kind == GATEWAY_API:
        return land_spend_logs_day(gateway_logs.gateway_base_url, gateway_logs.gateway_admin_key, day, gateway_logs.timezone, landing_dir,
                                   refetch=gateway_logs.refetch, max_retries=gateway_logs.gateway_max_retries, progress=progress)
    return land_bucket_day(gateway_logs.logs_dir, day, gateway_logs.timezone, landing_dir, endpoint_url=gateway_logs.s3_endpoint_url,
                           concurrency=gateway_logs.fetch_concurrency, refetch=gateway_logs.refetch, progress=progress)


@dg.asset(**daily_warehouse_asset("gateway"), deps=[raw_gateway_logs])
def gateway_requests(context: dg.AssetExecutionContext, warehouse: WarehouseResource, gateway_logs: GatewayLogsResource):
    """Every gateway request of the day, one row each, from the LiteLLM log files.

    Reads the day's folders (and the next day's, for requests written after midnight),
    drops re-deliveries (same request id and start time), estimates missing token counts
    from logged text (cl100k, flagged), re-prices requests without a cost (flagged), marks
    unpriced models, and records every unusable record in `rejected_records` with its
    reason. Files that are not request logs are named in `unrecognised_files`; each day's
    counts are in `ingest_days`. Prompt and response text is never stored."""
    prices = load_prices(Path(gateway_logs.prices_file) if gateway_logs.prices_file else None)
    where = DaySource(logs_dir=gateway_logs.local_root(), timezone=gateway_logs.timezone, prices=prices,
                      max_record_bytes=int(gateway_logs.max_record_mb * 1_000_000), source=gateway_logs.source_kind)
    days = partition_days(context)
    all_stats: list[IngestStats] = []
    with warehouse.connect() as conn:
        # A range (a backfill) is read and validated a few days ahead in worker processes; this step stores each day in turn.
        began = time.monotonic()
        try:
            for stats in ingest_days(conn, where, days):
                context.log.info(f"{stats.day}: {stats.rows:,} requests, {stats.rejected:,} rejected, {stats.duplicates:,} duplicates, "
                                 f"{stats.id_collisions:,} id collisions, {stats.tokens_estimated:,} estimated, {stats.unpriced:,} unpriced "
                                 f"from {stats.files:,} files; {stats.unrecognised_files:,} unrecognised files "
                                 f"({len(all_stats) + 1}/{len(days)} days in {time.monotonic() - began:.1f} s)")  # read back by DAY_STORED
                all_stats.append(stats)
        except MissingLogsError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        first, last = all_stats[0].day, all_stats[-1].day
        reasons = conn.execute(
            "SELECT reason, count(*) AS records FROM rejected_records WHERE day BETWEEN ? AND ? GROUP BY reason ORDER BY records DESC, reason LIMIT 10",
            [first, last],
        ).fetchall()
        unrecognised = _unrecognised_with_data(conn, first, last)

    totals = {field: sum(getattr(s, field) for s in all_stats) for field in STATS_COLUMNS}
    listed = unrecognised[:20]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": totals["rows"],
        **{name.replace("_", " "): value for name, value in totals.items()},
        "rejection reasons": dg.MetadataValue.md(markdown_table(reasons, ("reason", "records")) if reasons else "none"),
        "unrecognised files with data": dg.MetadataValue.md(markdown_table(listed, ("day", "file", "bytes")) if listed else "none"),
    })


def _unrecognised_with_data(conn, first, last) -> list[tuple[str, str, int]]:
    return conn.execute(
        "SELECT strftime(day, '%Y-%m-%d'), source_file, bytes FROM unrecognised_files WHERE day BETWEEN ? AND ? AND holds_data "
        "ORDER BY day, source_file", [first, last]).fetchall()


# The checks read what the asset stored (`ingest_days`, `requests`, `unrecognised_files`) for the run's days.

@dg.asset_check(asset=gateway_requests, name=REJECTED_SHARE_CHECK, blocking=True, pool=WAREHOUSE_POOL,
                description="The share of input records rejected stays under USAGE_MAX_REJECTED_SHARE.")
def rejected_share_below_limit(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                               gateway_logs: GatewayLogsResource) -> dg.AssetCheckResult:
    days = partition_days(context)
    with warehouse.connect() as conn:
        day, rejected, records_read = conn.execute(
            "SELECT day, rejected, records_read FROM ingest_days WHERE day BETWEEN ? AND ? "
            "ORDER BY coalesce(rejected / nullif(records_read, 0), 0) DESC, day LIMIT 1", [days[0], days[-1]]).fetchone()
    share = rejected / records_read if records_read else 0.0
    limit = gateway_logs.max_rejected_share
    return dg.AssetCheckResult(
        passed=share <= limit,
        metadata={"worst day": day.isoformat(), "rejected share": round(share, 6), "limit": limit, "rejected": rejected, "records read": records_read},
        description=f"{day}: {rejected:,} of {records_read:,} records rejected ({share:.2%}, limit {limit:.2%})",
    )


def requests_stored_twice(conn, first: dt.date, last: dt.date) -> tuple[int, str | None]:
    """Requests of the days first..last stored twice (same request id and start time), and one such id.

    Only those days and the day on either side are read, whatever the length of the history: a
    request's day is its start time's day in the report time zone, so its re-delivery is stored on
    the same day (or, after a change of time zone, on the day next to it); a copy on a neighbouring
    day counts, twins within that day do not (they are that day's)."""
    return conn.execute(
        "SELECT count(*), min(request_id) FROM (SELECT request_id FROM requests WHERE day BETWEEN $before AND $after "
        "GROUP BY request_id, start_time HAVING count(*) > 1 AND bool_or(day BETWEEN $first AND $last))",
        {"before": first - dt.timedelta(days=1), "after": last + dt.timedelta(days=1), "first": first, "last": last}).fetchone()


@dg.asset_check(asset=gateway_requests, name=UNIQUE_REQUESTS_CHECK, pool=WAREHOUSE_POOL,
                description="No request (request id and start time) is stored twice; ids reused with another start time are counted as collisions.")
def requests_unique(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    days = partition_days(context)
    with warehouse.connect() as conn:
        twice, example = requests_stored_twice(conn, days[0], days[-1])
        collisions = conn.execute("SELECT coalesce(sum(id_collisions), 0) FROM ingest_days WHERE day BETWEEN ? AND ?", [days[0], days[-1]]).fetchone()[0]
    return dg.AssetCheckResult(
        passed=twice == 0, metadata={"requests stored twice": twice, "id collisions": collisions},
        description=(f"{twice:,} requests stored twice between {days[0]} and {days[-1]} (e.g. id {example})" if twice else
                     f"no request stored twice; {collisions:,} ids reused with another start time kept as separate requests"),
    )


@dg.asset_check(asset=gateway_requests, name=UNRECOGNISED_CHECK, pool=WAREHOUSE_POOL,
                description="No file under the logs root that is not a request log holds data (it may be logs in a format the product does not read).")
def no_unrecognised_files_with_data(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    days = partition_days(context)
    with warehouse.connect() as conn:
        unrecognised = _unrecognised_with_data(conn, days[0], days[-1])
    return dg.AssetCheckResult(
        passed=not unrecognised, severity=dg.AssetCheckSeverity.WARN, metadata={"files with data": len(unrecognised)},
        description=(f"{len(unrecognised):,} file(s) under the logs root are not request logs but hold data: "
                     + ", ".join(f"{name} ({size:,} bytes, on {day})" for day, name, size in unrecognised[:5])
                     + (" …" if len(unrecognised) > 5 else "")) if unrecognised else "every file under the logs root is a request log",
    )


@dg.asset(**daily_warehouse_asset("gateway"), deps=[gateway_requests])
def daily_usage(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Requests, tokens (input, output, cached) and spend per day × team × key × model."""
    rows = 0
    with warehouse.connect() as conn:
        for day in partition_days(context):
            rows += aggregate_day(conn, day)
        first, last = context.partition_keys[0], context.partition_keys[-1]
        preview = conn.execute(
            "SELECT model, sum(requests), sum(total_tokens), round(sum(spend_usd), 4) FROM daily_usage WHERE day BETWEEN ? AND ? "
            "GROUP BY model ORDER BY 2 DESC LIMIT 10",
            [first, last],
        ).fetchall()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows, "rows": rows,
        "preview by model": dg.MetadataValue.md(markdown_table(preview, ("model", "requests", "total tokens", "spend (USD)"))),
    })


@dg.asset_check(asset=daily_usage, name=TOTALS_CHECK, pool=WAREHOUSE_POOL, description="Aggregates add up to the request-level totals of the day.")
def aggregates_match_requests(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        mismatches = [f"{day}: {m}" for day in partition_days(context) for m in totals_mismatch(conn, day)]
    return dg.AssetCheckResult(
        passed=not mismatches, metadata={"mismatches": "\n".join(mismatches) or "none"},
        description=f"{len(mismatches)} mismatch(es): " + "; ".join(mismatches[:5]) if mismatches else "every aggregate adds up to its requests")
