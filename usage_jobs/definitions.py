"""The Dagster definitions, built from one settings object: `dagster dev`, `dg` and `usage-report` load them.

Nothing here reads the environment at import: the `@dg.definitions` entry reads the settings
when the code location loads; tests, benches and the CLI call `build_definitions(settings)`."""

import warnings

import dagster as dg

from usage_jobs import collector
from usage_jobs.defs.billing.assets import (
    billed_usage,
    billing_arrived,
    billing_chargeback,
    billing_reconciliation,
    commit_status,
    variance_within_threshold,
)
from usage_jobs.defs.billing.resources import BillingResource
from usage_jobs.defs.gateway.assets import (
    aggregates_match_requests,
    daily_usage,
    gateway_requests,
    no_unrecognised_files_with_data,
    raw_gateway_logs,
    rejected_share_below_limit,
    requests_unique,
)
from usage_jobs.defs.gateway.completeness_assets import GatewayApiResource, gateway_completeness
from usage_jobs.defs.inventory.assets import key_inventory
from usage_jobs.defs.keys.assets import key_anomalies
from usage_jobs.defs.notify.jobs import digest_job
from usage_jobs.defs.notify.resources import notify_resource
from usage_jobs.defs.notify.sensors import digest_sensor, failure_sensor
from usage_jobs.defs.partitions import daily_partitions, with_partitions
from usage_jobs.defs.report.assets import usage_report_site
from usage_jobs.defs.resources import GatewayLogsResource, InventoryResource, SiteResource, WarehouseResource
from usage_jobs.settings import Settings, load_settings

GATEWAY_ASSETS = [raw_gateway_logs, gateway_requests, daily_usage, gateway_completeness, key_anomalies]
BILLING_ASSETS = [billed_usage, billing_reconciliation, billing_chargeback]
DAILY_ASSETS = GATEWAY_ASSETS + BILLING_ASSETS
# Checks of the daily assets that read the warehouse; they run in the same run, after their asset.
DAILY_CHECKS = [rejected_share_below_limit, requests_unique, no_unrecognised_files_with_data, aggregates_match_requests,
                billing_arrived, variance_within_threshold]
# The inventory and IG1's commit status are refreshed in a run of their own, before the site's:
# either may fail (its source down) without holding the site back, which states the outage.
REFRESH_ASSETS = [key_inventory, commit_status]
SITE_ASSETS = REFRESH_ASSETS + [usage_report_site]

DAILY_JOB = "daily_usage_job"
REFRESH_JOB = "refresh_sources_job"
SITE_JOB = "site_job"
# The daily assets whose yesterday's partition the freshness checks watch.
WATCHED_FOR_FRESHNESS = ("daily_usage", "key_anomalies")


def partitioned(assets: list[dg.AssetsDefinition], settings: Settings) -> list[dg.AssetsDefinition]:
    """Daily assets with the settings' daily partitions, as `build_definitions` gives them, and their checks."""
    partitions = daily_partitions(settings)
    keys = {asset.key for asset in assets}
    return [with_partitions(asset, partitions) for asset in assets] + [check for check in DAILY_CHECKS if {key.asset_key for key in check.check_keys} <= keys]


def build_resources(settings: Settings, refetch: bool = False) -> dict:
    """`refetch`: fetch a remote day's objects again even where already landed (`usage-report run --refetch`)."""
    # Secrets are read from the environment by Dagster (EnvVar), so they never enter run config or the UI.
    gateway_admin_key = dg.EnvVar("GATEWAY_ADMIN_KEY") if settings.gateway_admin_key else None
    return {
        "warehouse": WarehouseResource(path=str(settings.warehouse), memory_limit=settings.duckdb_memory_limit),
        "gateway_logs": GatewayLogsResource(
            logs_dir=settings.logs_dir, source=settings.logs_source, landing_dir=str(settings.landing_dir),
            s3_endpoint_url=settings.s3_endpoint_url, fetch_concurrency=settings.fetch_concurrency,
            gateway_base_url=settings.gateway_base_url, gateway_admin_key=gateway_admin_key, gateway_max_retries=settings.gateway_max_retries,
            timezone=settings.timezone,
            prices_file=str(settings.prices_file) if settings.prices_file else None,
            max_record_mb=settings.max_record_mb, max_rejected_share=settings.max_rejected_share, refetch=refetch,
        ),
        "gateway_api": GatewayApiResource(base_url=settings.gateway_base_url, admin_key=gateway_admin_key, max_retries=settings.gateway_max_retries),
        "inventory": InventoryResource(gateway_base_url=settings.gateway_base_url, gateway_admin_key=gateway_admin_key,
                                       max_retries=settings.gateway_max_retries,
                                       inventory_file=str(settings.inventory) if settings.inventory else None),
        "billing": BillingResource(
            base_url=settings.ig1_base_url, master_key=dg.EnvVar("IG1_MASTER_KEY") if settings.ig1_master_key else None,
            billing_timezone=settings.billing_timezone, refresh_days=settings.billing_refresh_days, usd_rates=settings.usd_rates.by_first_day(),
            late_days=settings.billing_late_days, timeout_seconds=settings.billing_timeout_seconds,
            max_retries=settings.billing_max_retries, variance_warn_pct=settings.variance_warn_pct,
        ),
        "site": SiteResource(site_dir=str(settings.site_dir), timezone=settings.timezone, billing_configured=settings.billing_configured,
                             billing_timezone=settings.billing_timezone, hide_user_agent_tags=settings.hide_user_agent_tags,
                             chromium=str(settings.chromium) if settings.chromium else None),
        "notify": notify_resource(settings),
    }


def _next_step(context: dg.RunStatusSensorContext) -> dg.RunRequest:
    """After a daily run, refresh the inventory and commit status; after that, rebuild the site.

    Whether the run succeeded or failed: a billing or inventory outage fails its own assets,
    and the site is still published from what the warehouse holds."""
    run = context.dagster_run
    if run.job_name == REFRESH_JOB:
        return dg.RunRequest(run_key=f"site-after-{run.run_id}", job_name=SITE_JOB)
    return dg.RunRequest(run_key=f"refresh-after-{run.run_id}", job_name=REFRESH_JOB)


def _site_sensors(daily_job, refresh_job, site_job) -> list[dg.SensorDefinition]:
    """One sensor per outcome of a daily or refresh run: the site is published after either."""
    sensors = []
    for status, name, description in (
        (dg.DagsterRunStatus.SUCCESS, "rebuild_site_after_daily_run",
         "After each successful daily run, refresh the inventory and commit status, then rebuild the site."),
        (dg.DagsterRunStatus.FAILURE, "rebuild_site_after_failed_run",
         "After a failed daily run (a day, or IG1 billing) or a failed refresh, still publish what the warehouse holds."),
    ):
        sensors.append(dg.run_status_sensor(run_status=status, monitored_jobs=[daily_job, refresh_job], request_jobs=[refresh_job, site_job],
                                            default_status=dg.DefaultSensorStatus.RUNNING, name=name, description=description)(_next_step))
    return sensors


def build_definitions(settings: Settings, refetch: bool = False) -> dg.Definitions:
    """Partitions, assets, resources, jobs, schedule, checks and sensors from one settings object."""
    partitions = daily_partitions(settings)
    freshness_checks, freshness_sensor = _freshness(settings, partitions)
    daily_job = dg.define_asset_job(
        # The freshness checks are the sensor's to run, not the job's: they judge whether its runs came.
        DAILY_JOB, selection=dg.AssetSelection.assets(*DAILY_ASSETS) - dg.AssetSelection.checks(*freshness_checks),
        partitions_def=partitions, executor_def=dg.in_process_executor,
        description="Ingest gateway logs of a day (or a range, in one run), aggregate them, and fetch and reconcile IG1's billing of it "
                    "(and of the days before, which IG1 may have restated).",
    )
    refresh_job = dg.define_asset_job(
        REFRESH_JOB, selection=REFRESH_ASSETS, executor_def=dg.in_process_executor,
        description="Refresh the key/team inventory (gateway) and IG1's commit status (/usage); each fails on its own when its source is down.",
    )
    site_job = dg.define_asset_job(
        SITE_JOB, selection=[usage_report_site], executor_def=dg.in_process_executor,
        description="Rebuild the report site from what the warehouse holds; the pages state any source that could not be refreshed.",
    )
    schedule = dg.build_schedule_from_partitioned_job(
        daily_job, name="daily_usage_schedule", hour_of_day=settings.schedule_time.hour, minute_of_hour=settings.schedule_time.minute,
        default_status=dg.DefaultScheduleStatus.RUNNING, description="Every day, ingest and aggregate the previous day.",
    )
    digest = digest_job(DAILY_JOB)
    return dg.Definitions(
        assets=partitioned(DAILY_ASSETS, settings) + SITE_ASSETS,
        asset_checks=freshness_checks,
        jobs=[daily_job, refresh_job, site_job, digest],
        schedules=[schedule],
        sensors=[*_site_sensors(daily_job, refresh_job, site_job), freshness_sensor, digest_sensor(settings, site_job, digest),
                 failure_sensor([daily_job, refresh_job, site_job, digest])],
        resources=build_resources(settings, refetch),
    )


def _freshness(settings: Settings, partitions: dg.PartitionsDefinition) -> tuple[list, dg.SensorDefinition]:
    """Checks that yesterday's partition of the watched assets exists by USAGE_FRESHNESS_DEADLINE, and their sensor.

    Dagster 1.13 marks these builders superseded by FreshnessPolicy, which judges when an asset
    was last materialised, not whether a given day's partition exists: the check asked for here."""
    deadline = settings.freshness_deadline
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        checks = dg.build_time_partition_freshness_checks(
            assets=[with_partitions(asset, partitions) for asset in DAILY_ASSETS if asset.key.to_user_string() in WATCHED_FOR_FRESHNESS],
            deadline_cron=f"{deadline.minute} {deadline.hour} * * *", timezone=settings.timezone, severity=dg.AssetCheckSeverity.WARN,
        )
        sensor = dg.build_sensor_for_freshness_checks(freshness_checks=checks, name="freshness_checks_sensor",
                                                      default_status=dg.DefaultSensorStatus.RUNNING)
    return list(checks), sensor


@dg.definitions
def defs() -> dg.Definitions:
    """What `dagster dev` and `dg` load: the definitions from the process environment's settings."""
    collector.tune()  # each process Dagster starts for the product (code server, run worker) loads this first
    return build_definitions(load_settings())
