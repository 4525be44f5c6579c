"""IG1 billing → `billed_usage` → `reconciliation` and `chargeback`; the month's `commit_status`."""


import datetime as dt
import time
from zoneinfo import ZoneInfo

import dagster as dg

from usage_jobs.defs.billing.client import BillingError
from usage_jobs.defs.billing.reconcile import (
    billing_window,
    chargeback,
    month_span,
    months_covered,
    months_to_refetch,
    reconcile,
    record_refetch,
    store_history,
    stored_forecast,
)
from usage_jobs.defs.billing.resources import BillingResource
from usage_jobs.defs.gateway.assets import NETWORK_RETRY, gateway_requests
from usage_jobs.defs.partitions import daily_warehouse_asset, first_partition_day, markdown_table, partition_days, report_timezone
from usage_jobs.defs.refreshes import IG1_USAGE, record_refresh
from usage_jobs.defs.resources import WAREHOUSE_POOL, WarehouseResource

BILLED_PRESENT_CHECK = "billing_arrived"
VARIANCE_CHECK = "variance_within_threshold"
NOT_CONFIGURED = "IG1 billing is not configured (IG1_MASTER_KEY not set): nothing fetched"


def _window(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, billing: BillingResource) -> tuple[dt.date, dt.date]:
    days = partition_days(context)
    return billing_window(days[0], days[-1], billing.refresh_days, first_partition_day(context))


def _today(billing: BillingResource) -> dt.date:
    return dt.datetime.now(ZoneInfo(billing.billing_timezone)).date()


def _failure(exc: BillingError) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False)


class BilledUsageConfig(dg.Config):
    """On demand: `refetch_month: "2026-10"` asks IG1 for that whole invoice month again (restatements, withdrawals)."""

    refetch_month: str = ""


@dg.asset(**daily_warehouse_asset("billing"), retry_policy=NETWORK_RETRY)
def billed_usage(context: dg.AssetExecutionContext, config: BilledUsageConfig, warehouse: WarehouseResource, billing: BillingResource):
    """IG1's billed usage per billing day × model, in the contract currency (`GET /usage/history`).

    Each run also asks again for the IG1_REFRESH_DAYS - 1 days before its own, because
    billing arrives late and can be restated: a restated day replaces its old figures, and a
    day billed before but absent from IG1's answer was withdrawn: it is cleared and marked.
    At month close (each run of a day after a month ends, until one for a day more than
    IG1_LATE_DAYS after it) and on demand (`refetch_month`), the whole month is fetched again, and its
    reconciliation and chargeback rebuilt; a run whose window holds the whole month (a backfill) has fetched it already."""
    if not billing.configured:
        return dg.MaterializeResult(metadata={"billing": NOT_CONFIGURED})
    start, end = _window(context, billing)
    today, earliest = _today(billing), first_partition_day(context)
    # Month close is judged by the run's last day, not the clock: a re-run of a partition does the same.
    # A month this run's own window fetches whole (a backfill over it) is not asked for a second time.
    covered = months_covered(start, end, earliest)
    with warehouse.connect() as conn:
        months = [month for month in months_to_refetch(conn, end, earliest) if month not in covered]
    if config.refetch_month:
        try:
            month_span(config.refetch_month)
        except ValueError as exc:
            raise dg.Failure(description=f"refetch_month: {exc}", allow_retries=False) from None
        months = sorted(set(months) | {config.refetch_month})
    spans = {month: (max(month_span(month)[0], earliest), min(month_span(month)[1], today)) for month in months}
    started = time.monotonic()
    with billing.client(log=context.log.warning) as client:
        try:
            history = client.history(start, end)
            refetched = {month: client.history(*span) for month, span in spans.items() if span[0] <= span[1]}
        except BillingError as exc:
            raise _failure(exc) from None
        calls = client.calls
    with warehouse.connect() as conn:
        stored = store_history(conn, history, start, end)
        closed = []
        for month, month_history in refetched.items():
            first, last = spans[month]
            again = store_history(conn, month_history, first, last)
            stored.restated_days += [day for day in again.restated_days if day not in stored.restated_days]
            stored.withdrawn_days += [day for day in again.withdrawn_days if day not in stored.withdrawn_days]
            # The month's figures may have changed outside the run's window: its reconciliation and shares follow them.
            reconcile(conn, first, last, billing_timezone=billing.billing_timezone, report_timezone=report_timezone(context), rates=billing.rates)
            chargeback(conn, first, last, billing_timezone=billing.billing_timezone, rates=billing.rates)
            if record_refetch(conn, month, end, billing.late_days):
                closed.append(month)
        closed += [month for month in covered if month not in refetched and record_refetch(conn, month, end, billing.late_days)]
    listed = lambda days: ", ".join(d.isoformat() for d in days) or "none"  # noqa: E731
    if stored.unbilled_days:
        context.log.warning(f"IG1 has not billed {listed(stored.unbilled_days)} yet")
    if stored.withdrawn_days:
        context.log.warning(f"IG1 withdrew its billing of {listed(stored.withdrawn_days)}: cleared and marked withdrawn")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": stored.rows, "window": f"{start} to {end}", "currency": history.currency,
        "billed days": len(stored.billed_days), "not billed yet": listed(stored.unbilled_days),
        "restated days": listed(sorted(stored.restated_days)), "withdrawn days": listed(sorted(stored.withdrawn_days)),
        "months fetched again": ", ".join(refetched) or "none", "months closed": ", ".join(closed) or "none",
        "API attempts": calls.attempts, "API retries": len(calls.retries), "waited before retries (s)": round(calls.waited_seconds, 2),
        "seconds": round(time.monotonic() - started, 3),
    })


@dg.asset(**daily_warehouse_asset("billing"), deps=[billed_usage, gateway_requests])
def billing_reconciliation(context: dg.AssetExecutionContext, warehouse: WarehouseResource, billing: BillingResource):
    """The gateway's estimate against IG1's bill, per billing day × model: input and output
    tokens, estimated cost (USD) against billed cost (contract currency and USD), and the
    variance in % as (billed − estimated) ÷ estimated × 100. Successful requests only:
    IG1 does not bill failures."""
    if not billing.configured:
        return dg.MaterializeResult(metadata={"billing": NOT_CONFIGURED})
    start, end = _window(context, billing)
    with warehouse.connect() as conn:
        rows = reconcile(conn, start, end, billing_timezone=billing.billing_timezone,
                         report_timezone=report_timezone(context), rates=billing.rates)
        summary = conn.execute(
            "SELECT model, sum(estimated_input_tokens + estimated_output_tokens), sum(billed_input_tokens + billed_output_tokens), "
            "round(avg(token_variance_pct), 2), round(avg(cost_variance_pct), 2) FROM reconciliation "
            "WHERE day BETWEEN ? AND ? AND status = 'reconciled' GROUP BY model ORDER BY model", [start, end]).fetchall()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": rows, "window": f"{start} to {end}",
        "variance by model": dg.MetadataValue.md(
            markdown_table(summary, ("model", "estimated tokens", "billed tokens", "token variance %", "cost variance %"))),
    })


# The checks read the reconciliation the asset stored, over the run's billing window.

@dg.asset_check(asset=billing_reconciliation, name=BILLED_PRESENT_CHECK, pool=WAREHOUSE_POOL,
                description="IG1 has billed every day with gateway traffic: a warning while late, a failure after IG1_LATE_DAYS.")
def billing_arrived(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, billing: BillingResource) -> dg.AssetCheckResult:
    if not billing.configured:
        return dg.AssetCheckResult(passed=True, description=NOT_CONFIGURED)
    start, end = _window(context, billing)
    with warehouse.connect() as conn:
        unbilled = [row[0] for row in conn.execute(
            "SELECT DISTINCT day FROM reconciliation WHERE day BETWEEN ? AND ? AND status = 'not billed yet' ORDER BY day", [start, end]).fetchall()]
    return _billing_arrived(unbilled, _today(billing), billing.late_days)


@dg.asset_check(asset=billing_reconciliation, name=VARIANCE_CHECK, pool=WAREHOUSE_POOL,
                description="Estimated and billed tokens and cost agree within USAGE_VARIANCE_WARN_PCT (warning otherwise).")
def variance_within_threshold(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, billing: BillingResource) -> dg.AssetCheckResult:
    if not billing.configured:
        return dg.AssetCheckResult(passed=True, description=NOT_CONFIGURED)
    start, end = _window(context, billing)
    with warehouse.connect() as conn:
        worst = conn.execute(
            "SELECT day, model, token_variance_pct, cost_variance_pct FROM reconciliation WHERE day BETWEEN ? AND ? AND status = 'reconciled' "
            "ORDER BY greatest(abs(token_variance_pct), coalesce(abs(cost_variance_pct), 0)) DESC, day, model LIMIT 1", [start, end]).fetchone()
    return _variance(worst, billing.variance_warn_pct)


def _billing_arrived(unbilled: list[dt.date], today: dt.date, late_days: int) -> dg.AssetCheckResult:
    """Unbilled days with traffic: a warning while IG1 may still be catching up, a failure once too late."""
    if not unbilled:
        return dg.AssetCheckResult(passed=True, description="IG1 has billed every reconciled day")
    overdue = [day for day in unbilled if (today - day).days > late_days]
    days = ", ".join(day.isoformat() for day in unbilled)
    severity = dg.AssetCheckSeverity.ERROR if overdue else dg.AssetCheckSeverity.WARN
    description = (f"IG1 billing is missing for {days}; " +
                   (f"{len(overdue)} day(s) more than {late_days} days old" if overdue else f"still within the {late_days}-day delay"))
    return dg.AssetCheckResult(passed=False, severity=severity, description=description,
                               metadata={"missing days": days, "overdue days": ", ".join(d.isoformat() for d in overdue) or "none",
                                         "late after days": late_days})


def _variance(worst: tuple | None, threshold: float) -> dg.AssetCheckResult:
    if worst is None:
        return dg.AssetCheckResult(passed=True, description="no reconciled day × model in the window")
    day, model, tokens, cost = worst
    largest = max(abs(tokens or 0), abs(cost or 0))
    return dg.AssetCheckResult(
        passed=largest <= threshold, severity=dg.AssetCheckSeverity.WARN,
        description=f"worst: {model} on {day}, tokens {tokens:+.2f}%, cost {'n/a' if cost is None else f'{cost:+.2f}%'} (threshold ±{threshold:g}%)",
        metadata={"worst day": day.isoformat(), "worst model": model, "token variance %": tokens,
                  "cost variance %": cost if cost is not None else "n/a", "threshold %": threshold},
    )


@dg.asset(**daily_warehouse_asset("billing"), deps=[billed_usage, gateway_requests])
def billing_chargeback(context: dg.AssetExecutionContext, warehouse: WarehouseResource, billing: BillingResource):
    """IG1's billed cost of each billing day × model shared among teams and keys in
    proportion to their estimated cost (tokens where the model is unpriced), per key and
    report day of the requests: the shares add up to the billed cost exactly. Billed usage the gateway never saw
    goes to the `not-seen-by-gateway` bucket; traffic without a team is the `unassigned` ("no team") bucket.
    Shares are kept at full precision: money is rounded once, on the monthly statement."""
    if not billing.configured:
        return dg.MaterializeResult(metadata={"billing": NOT_CONFIGURED})
    start, end = _window(context, billing)
    with warehouse.connect() as conn:
        rows = chargeback(conn, start, end, billing_timezone=billing.billing_timezone, rates=billing.rates)
        preview = conn.execute(
            "SELECT coalesce(any_value(team_alias), team_id), sum(allocated_cost), any_value(currency) FROM chargeback "
            "WHERE day BETWEEN ? AND ? GROUP BY team_id ORDER BY 2 DESC LIMIT 12", [start, end]).fetchall()
    return dg.MaterializeResult(metadata={"dagster/row_count": rows, "window": f"{start} to {end}",
                                          "allocated by team": dg.MetadataValue.md(markdown_table(preview, ("team", "allocated", "currency")))})


@dg.asset(deps=[billed_usage], pool=WAREHOUSE_POOL, group_name="billing", kinds={"duckdb"}, retry_policy=NETWORK_RETRY)
def commit_status(context: dg.AssetExecutionContext, warehouse: WarehouseResource, billing: BillingResource):
    """This month's spend and commit as IG1 reports them (`GET /usage`), recorded for the day
    asked, with the run-rate forecast of the month end and of the day the commit runs out.
    When IG1 cannot be reached the attempt is recorded in `source_refreshes` (the site says
    from which day its commit figures are) and the asset fails on its own."""
    if not billing.configured:
        return dg.MaterializeResult(metadata={"billing": NOT_CONFIGURED})
    with billing.client(log=context.log.warning) as client:
        try:
            status = client.usage()
        except BillingError as exc:
            with warehouse.connect() as conn:
                record_refresh(conn, IG1_USAGE, error=str(exc))
            raise _failure(exc) from None
    today = _today(billing)
    with warehouse.connect() as conn:
        currency = conn.execute("SELECT arg_max(currency, day) FROM billed_usage").fetchone()[0]
        conn.execute("DELETE FROM commit_status WHERE asked_on = ?", [today])
        conn.execute("INSERT INTO commit_status VALUES (?, ?, ?, ?, ?, ?)",
                     [today, today.strftime("%Y-%m"), status.current, status.commit, status.max_throughput, currency])
        record_refresh(conn, IG1_USAGE)
        forecast, _, _ = stored_forecast(conn, today)
    return dg.MaterializeResult(metadata={
        "month": forecast.month, "currency": currency or "unknown", "spent": float(status.current), "commit": float(status.commit),
        "used %": round(forecast.used_share * 100, 1), "run-rate per day": float(forecast.run_rate_per_day),
        "projected month end": float(forecast.projected_month_end),
        "commit runs out": "already exhausted" if forecast.already_exhausted
        else (forecast.exhausted_on.isoformat() if forecast.exhausted_on else "not this month"),
    })
