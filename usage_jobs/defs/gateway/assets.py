"""Gateway request logs → `requests` (one row per request) → `daily_usage` aggregates."""


from pathlib import Path

import dagster as dg

from usage_jobs.defs.gateway.aggregates import aggregate_day, totals_mismatch
from usage_jobs.defs.gateway.ingest import IngestStats, MissingLogsError, ingest_day
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.partitions import daily_warehouse_asset, markdown_table, partition_days
from usage_jobs.defs.resources import GatewayLogsResource, WarehouseResource

REJECTED_SHARE_CHECK = "rejected_share_below_limit"
UNIQUE_IDS_CHECK = "request_ids_unique"
TOTALS_CHECK = "aggregates_match_requests"


@dg.asset(
    **daily_warehouse_asset("gateway"),
    check_specs=[
        dg.AssetCheckSpec(REJECTED_SHARE_CHECK, asset="gateway_requests", blocking=True,
                          description="The share of input records rejected stays under USAGE_MAX_REJECTED_SHARE."),
        dg.AssetCheckSpec(UNIQUE_IDS_CHECK, asset="gateway_requests", description="No request id appears twice in the warehouse."),
    ],
)
def gateway_requests(context: dg.AssetExecutionContext, warehouse: WarehouseResource, gateway_logs: GatewayLogsResource):
    """Every gateway request of the day, one row each, from the LiteLLM log files.

    Reads the day's folders (and the next day's, for requests written after midnight),
    de-duplicates by request id, estimates missing token counts from logged text
    (cl100k, flagged), re-prices requests without a cost (flagged), marks unpriced
    models, and records every unusable record in `rejected_records` with its reason.
    Prompt and response text is never stored."""
    prices = load_prices(Path(gateway_logs.prices_file) if gateway_logs.prices_file else None)
    all_stats: list[IngestStats] = []
    with warehouse.connect() as conn:
        for day in partition_days(context):
            try:
                stats = ingest_day(conn, logs_dir=Path(gateway_logs.logs_dir), day=day, timezone=gateway_logs.timezone,
                                   prices=prices, max_record_bytes=int(gateway_logs.max_record_mb * 1_000_000))
            except MissingLogsError as exc:
                raise dg.Failure(description=str(exc), allow_retries=False) from None
            context.log.info(f"{day}: {stats.rows:,} requests, {stats.rejected:,} rejected, {stats.duplicates:,} duplicates from {stats.files:,} files")
            all_stats.append(stats)
        duplicated = conn.execute("SELECT count(*) FROM (SELECT request_id FROM requests GROUP BY request_id HAVING count(*) > 1)").fetchone()[0]
        reasons = conn.execute(
            "SELECT reason, count(*) AS records FROM rejected_records WHERE day BETWEEN ? AND ? GROUP BY reason ORDER BY records DESC, reason LIMIT 10",
            [all_stats[0].day, all_stats[-1].day],
        ).fetchall()

    worst = max(all_stats, key=lambda s: s.rejected_share)
    limit = gateway_logs.max_rejected_share
    totals = {field: sum(getattr(s, field) for s in all_stats) for field in
              ("rows", "rejected", "duplicates", "tokens_estimated", "spend_repriced", "unpriced", "tokens_missing", "files", "records_read")}
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": totals["rows"],
            "rows": totals["rows"],
            "rejected": totals["rejected"],
            "duplicates": totals["duplicates"],
            "estimated": totals["tokens_estimated"],
            "re-priced": totals["spend_repriced"],
            "unpriced": totals["unpriced"],
            "tokens missing": totals["tokens_missing"],
            "files": totals["files"],
            "records read": totals["records_read"],
            "rejection reasons": dg.MetadataValue.md(markdown_table(reasons, ("reason", "records")) if reasons else "none"),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=REJECTED_SHARE_CHECK,
                passed=worst.rejected_share <= limit,
                metadata={"worst day": worst.day, "rejected share": round(worst.rejected_share, 6), "limit": limit,
                          "rejected": worst.rejected, "records read": worst.records_read},
                description=f"{worst.day}: {worst.rejected_share:.2%} of records rejected (limit {limit:.2%})",
            ),
            dg.AssetCheckResult(check_name=UNIQUE_IDS_CHECK, passed=duplicated == 0, metadata={"duplicated ids": duplicated}),
        ],
    )


@dg.asset(
    **daily_warehouse_asset("gateway"),
    deps=[gateway_requests],
    check_specs=[dg.AssetCheckSpec(TOTALS_CHECK, asset="daily_usage", description="Aggregates add up to the request-level totals of the day.")],
)
def daily_usage(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Requests, tokens (input, output, cached) and spend per day × team × key × model."""
    rows = 0
    mismatches: list[str] = []
    with warehouse.connect() as conn:
        for day in partition_days(context):
            rows += aggregate_day(conn, day)
            mismatches += [f"{day}: {m}" for m in totals_mismatch(conn, day)]
        first, last = context.partition_keys[0], context.partition_keys[-1]
        preview = conn.execute(
            "SELECT model, sum(requests), sum(total_tokens), round(sum(spend_usd), 4) FROM daily_usage WHERE day BETWEEN ? AND ? "
            "GROUP BY model ORDER BY 2 DESC LIMIT 10",
            [first, last],
        ).fetchall()
    return dg.MaterializeResult(
        metadata={"dagster/row_count": rows, "rows": rows,
                  "preview by model": dg.MetadataValue.md(markdown_table(preview, ("model", "requests", "total tokens", "spend (USD)")))},
        check_results=[dg.AssetCheckResult(check_name=TOTALS_CHECK, passed=not mismatches, metadata={"mismatches": "\n".join(mismatches) or "none"})],
    )
