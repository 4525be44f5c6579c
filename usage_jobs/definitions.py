"""The Dagster definitions: `dagster dev -w workspace.yaml` and `usage-report` load these."""


import dagster as dg

from usage_jobs.defs.billing.assets import billed_usage, billing_chargeback, billing_reconciliation, commit_status
from usage_jobs.defs.billing.resources import BillingResource
from usage_jobs.defs.gateway.assets import daily_usage, gateway_requests, raw_gateway_logs
from usage_jobs.defs.gateway.completeness_assets import GatewayApiResource, gateway_completeness
from usage_jobs.defs.inventory.assets import key_inventory
from usage_jobs.defs.keys.assets import key_anomalies
from usage_jobs.defs.partitions import daily_partitions
from usage_jobs.defs.report.assets import usage_report_site
from usage_jobs.defs.resources import GatewayLogsResource, InventoryResource, SiteResource, WarehouseResource
from usage_jobs.settings import Settings, load_settings

GATEWAY_ASSETS = [raw_gateway_logs, gateway_requests, daily_usage, gateway_completeness, key_anomalies]
BILLING_ASSETS = [billed_usage, billing_reconciliation, billing_chargeback]
PARTITIONED_ASSETS = GATEWAY_ASSETS + BILLING_ASSETS
# The inventory and IG1's commit status are refreshed in a run of their own, before the site's:
# either may fail (its source down) without holding the site back, which states the outage.
REFRESH_ASSETS = [key_inventory, commit_status]
SITE_ASSETS = REFRESH_ASSETS + [usage_report_site]


def build_resources(settings: Settings) -> dict:
    # Secrets are read from the environment by Dagster (EnvVar), so they never enter run config.
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse), memory_limit=settings.duckdb_memory_limit),
        "gateway_logs": GatewayLogsResource(
            logs_dir=settings.logs_dir, source=settings.logs_source, landing_dir=str(settings.landing_dir),
            s3_endpoint_url=settings.s3_endpoint_url, fetch_concurrency=settings.fetch_concurrency,
            gateway_base_url=settings.gateway_base_url,
            gateway_admin_key=dg.EnvVar("GATEWAY_ADMIN_KEY") if settings.gateway_admin_key else None,
            timezone=settings.timezone,
            prices_file=str(settings.prices_file) if settings.prices_file else None,
            max_record_mb=settings.max_record_bytes / 1_000_000, max_rejected_share=settings.max_rejected_share,
        ),
        "gateway_api": GatewayApiResource(
            base_url=settings.gateway_base_url, admin_key=dg.EnvVar("GATEWAY_ADMIN_KEY") if settings.gateway_admin_key else None,
            max_retries=settings.billing_max_retries,
        ),
        "inventory": InventoryResource(
            gateway_base_url=settings.gateway_base_url,
            gateway_admin_key=dg.EnvVar("GATEWAY_ADMIN_KEY") if settings.gateway_admin_key else None,
            inventory_file=str(settings.inventory_file) if settings.inventory_file else None,
        ),
        "billing": BillingResource(
            base_url=settings.ig1_base_url, master_key=dg.EnvVar("IG1_MASTER_KEY") if settings.ig1_master_key else None,
            billing_timezone=settings.billing_timezone, refresh_days=settings.billing_refresh_days, usd_rate=settings.usd_rate,
            late_days=settings.billing_late_days, timeout_seconds=settings.billing_timeout_seconds,
            max_retries=settings.billing_max_retries, variance_warn_pct=settings.variance_warn_pct,
        ),
        "site": SiteResource(site_dir=str(settings.site_dir), timezone=settings.timezone, billing_configured=settings.billing_configured,
                             billing_timezone=settings.billing_timezone),
    }


daily_usage_job = dg.define_asset_job(
    "daily_usage_job", selection=PARTITIONED_ASSETS, partitions_def=daily_partitions(), executor_def=dg.in_process_executor,
    description="Ingest one day of gateway logs, aggregate it, and fetch and reconcile IG1's billing of it (and of the days before, which IG1 may have restated).",
)
refresh_job = dg.define_asset_job(
    "refresh_sources_job", selection=REFRESH_ASSETS, executor_def=dg.in_process_executor,
    description="Refresh the key/team inventory (gateway) and IG1's commit status (/usage); each fails on its own when its source is down.",
)
site_job = dg.define_asset_job(
    "site_job", selection=[usage_report_site], executor_def=dg.in_process_executor,
    description="Rebuild the report site from what the warehouse holds; the pages state any source that could not be refreshed.",
)


def _schedule(settings: Settings) -> dg.ScheduleDefinition:
    return dg.build_schedule_from_partitioned_job(
        daily_usage_job, name="daily_usage_schedule", hour_of_day=settings.schedule_time.hour,
        minute_of_hour=settings.schedule_time.minute, default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every day, ingest and aggregate the previous day.",
    )


def _next_step(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """After a daily run, refresh the inventory and commit status; after that, rebuild the site.

    Whether the run succeeded or failed: a billing or inventory outage fails its own assets,
    and the site is still published from what the warehouse holds."""
    run = context.dagster_run
    if run.job_name == refresh_job.name:
        return dg.RunRequest(run_key=f"site-after-{run.run_id}", job_name=site_job.name)
    return dg.RunRequest(run_key=f"refresh-after-{run.run_id}", job_name=refresh_job.name)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[daily_usage_job, refresh_job], request_jobs=[refresh_job, site_job],
                      default_status=dg.DefaultSensorStatus.RUNNING, name="rebuild_site_after_daily_run")
def rebuild_site_after_daily_run(context: dg.RunStatusSensorContext):
    """After each successful daily run, refresh the inventory and commit status, then rebuild the site."""
    return _next_step(context)


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.FAILURE, monitored_jobs=[daily_usage_job, refresh_job], request_jobs=[refresh_job, site_job],
                      default_status=dg.DefaultSensorStatus.RUNNING, name="rebuild_site_after_failed_run")
def rebuild_site_after_failed_run(context: dg.RunStatusSensorContext):
    """After a failed daily run (a day, or IG1 billing) or a failed refresh, still publish what the warehouse holds."""
    return _next_step(context)


def build_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        assets=PARTITIONED_ASSETS + SITE_ASSETS,
        jobs=[daily_usage_job, refresh_job, site_job],
        schedules=[_schedule(settings)],
        sensors=[rebuild_site_after_daily_run, rebuild_site_after_failed_run],
        resources=build_resources(settings),
    )


defs = build_definitions(load_settings())
