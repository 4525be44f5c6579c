"""`gateway_completeness`: the logs against the gateway's own daily totals, per UTC date × key × model."""


import time

import dagster as dg

from usage_jobs.defs.gateway.assets import NETWORK_RETRY, gateway_requests
from usage_jobs.defs.gateway.completeness import (
    GAP_STATUSES,
    TEAM_ACTIVITY,
    USER_ACTIVITY,
    Comparison,
    GatewayActivityError,
    comparisons,
    fetch_daily_activity,
    is_auth_error,
    store_comparisons,
    utc_dates_of,
)
from usage_jobs.defs.partitions import daily_warehouse_asset, markdown_table, partition_days
from usage_jobs.defs.resources import GatewayLogsResource, WarehouseResource

LOGS_COMPLETE_CHECK = "logs_complete"
NOT_CONFIGURED = "not configured"
PREVIEW_ROWS = 20


class GatewayApiResource(dg.ConfigurableResource):
    """The gateway's management API (LiteLLM proxy): base URL and an admin key (GATEWAY_ADMIN_KEY).

    `activity_endpoint` is `/user/daily/activity` (every request with a key) or
    `/team/daily/activity` (only keys that belong to a team)."""

    base_url: str | None = None
    admin_key: str | None = None
    activity_endpoint: str = USER_ACTIVITY
    timeout_seconds: float = 60.0
    max_retries: int = 4

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.admin_key)


def _lines_table(lines: list[Comparison]) -> str:
    rows = [(c.day.isoformat(), c.key_label(), c.model, c.gateway_requests, c.logged_requests, c.missing_requests,
             c.gateway_tokens, c.logged_tokens, round(c.gateway_spend, 6), round(c.logged_spend, 6), c.status) for c in lines]
    return markdown_table(rows, ("UTC date", "key", "model", "gateway requests", "logged requests", "missing",
                                 "gateway tokens", "logged tokens", "gateway spend", "logged spend", "status"))


@dg.asset(
    **daily_warehouse_asset("gateway"),
    deps=[gateway_requests],
    retry_policy=NETWORK_RETRY,
    # Computed in the asset, not read back from the warehouse: whether the gateway's totals could be
    # read at all (and the "not checked" outcome when it is down) is known only inside the step.
    check_specs=[dg.AssetCheckSpec(
        LOGS_COMPLETE_CHECK, asset="gateway_completeness",
        description="The logs hold every request the gateway counted in its own daily totals (per UTC date × key × model), "
                    "with the same tokens and spend."),
    ],
)
def gateway_completeness(context: dg.AssetExecutionContext, warehouse: WarehouseResource, gateway_logs: GatewayLogsResource,
                         gateway_api: GatewayApiResource):
    """The gateway's own daily totals (LiteLLM `/user/daily/activity`: requests, tokens and spend
    per UTC date × key × model) against the requests the warehouse holds, stored in
    `gateway_completeness`. LiteLLM's daily totals are by the UTC date of the request's start
    and by model group, so the logs are counted the same way; a UTC date is compared only
    once every report day it overlaps is ingested. Without GATEWAY_BASE_URL and
    GATEWAY_ADMIN_KEY nothing is checked."""
    if not gateway_api.configured:
        context.log.info("No gateway API configured (GATEWAY_BASE_URL, GATEWAY_ADMIN_KEY): the logs are not checked against its totals")
        return dg.MaterializeResult(
            metadata={"gateway": NOT_CONFIGURED},
            check_results=[dg.AssetCheckResult(check_name=LOGS_COMPLETE_CHECK, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                               metadata={"gateway": NOT_CONFIGURED}, description="Not checked: no gateway API configured")],
        )
    days = utc_dates_of(partition_days(context), gateway_logs.timezone)
    started = time.monotonic()
    fallback = TEAM_ACTIVITY if gateway_api.activity_endpoint == USER_ACTIVITY else None
    try:
        rows = fetch_daily_activity(gateway_api.base_url, gateway_api.admin_key, days[0], days[-1], endpoint=gateway_api.activity_endpoint,
                                    fallback_endpoint=fallback, timeout=gateway_api.timeout_seconds, max_retries=gateway_api.max_retries,
                                    log=context.log.warning)
    except GatewayActivityError as exc:
        if is_auth_error(exc):
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        # The gateway being unreachable does not make the logs wrong: say so, and let the run go on.
        context.log.warning(f"The gateway's daily totals could not be read: {exc}")
        return dg.MaterializeResult(
            metadata={"gateway": gateway_api.base_url, "error": str(exc)},
            check_results=[dg.AssetCheckResult(check_name=LOGS_COMPLETE_CHECK, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                               metadata={"error": str(exc)}, description=f"Not checked: {exc}")],
        )
    with warehouse.connect() as conn:
        lines = comparisons(conn, rows, days, timezone=gateway_logs.timezone)
        stored = store_comparisons(conn, lines, days)
    gaps = [c for c in lines if c.is_gap]
    gaps.sort(key=lambda c: (-c.missing_requests, c.day, c.key_hash, c.model))
    by_status: dict[str, int] = {}
    for line in lines:
        by_status[line.status] = by_status.get(line.status, 0) + 1
    namings = sorted({r.naming for r in rows}) or ["model_group"]
    days_text = ", ".join(d.isoformat() for d in days)
    missing = sum(c.missing_requests for c in gaps)
    for gap in gaps[:PREVIEW_ROWS]:
        context.log.warning(gap.describe())
    check_metadata = {
        "UTC dates": days_text, "gaps": len(gaps), "missing requests": missing,
        "gaps by status": ", ".join(f"{s}: {sum(c.status == s for c in gaps)}" for s in GAP_STATUSES if any(c.status == s for c in gaps)) or "none",
    }
    if gaps:
        check_metadata["worst"] = gaps[0].describe()
        check_metadata["gap list"] = dg.MetadataValue.md(_lines_table(gaps[:PREVIEW_ROWS]))
    description = (f"{len(gaps)} key × model × day where the logs miss requests or differ (the worst: {gaps[0].describe()})"
                   if gaps else f"The logs hold every request the gateway counted on {days_text} (UTC)")
    preview = gaps[:PREVIEW_ROWS] or sorted(lines, key=lambda c: -c.gateway_requests)[:PREVIEW_ROWS]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": stored, "rows": stored, "UTC dates": days_text,
            "source": f"{gateway_api.base_url.rstrip('/')}{gateway_api.activity_endpoint}", "model naming": ", ".join(namings),
            "gateway requests": sum(c.gateway_requests for c in lines), "logged requests": sum(c.logged_requests for c in lines),
            "missing requests": missing,
            "lines by status": ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())) or "none",
            "preview": dg.MetadataValue.md(_lines_table(preview)) if preview else "no traffic on either side",
            "seconds": round(time.monotonic() - started, 3),
        },
        check_results=[dg.AssetCheckResult(check_name=LOGS_COMPLETE_CHECK, passed=not gaps, severity=dg.AssetCheckSeverity.WARN,
                                           metadata=check_metadata, description=description)],
    )
