import dagster as dg

from usage_jobs.definitions import defs


def test_definitions_load_with_every_asset_job_schedule_and_sensor():
    repository = defs.get_repository_def()
    assert {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()} == {
        "raw_gateway_logs", "gateway_requests", "daily_usage", "gateway_completeness", "key_inventory", "usage_report_site",
        "billed_usage", "billing_reconciliation", "billing_chargeback", "commit_status", "key_anomalies"}
    assert defs.resolve_job_def("daily_usage_job") is not None
    assert defs.resolve_job_def("site_job") is not None


def test_schedule_and_site_sensor_run_by_default():
    schedule = defs.resolve_schedule_def("daily_usage_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "15 1 * * *"
    sensor = defs.resolve_sensor_def("rebuild_site_after_daily_run")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_every_warehouse_writer_shares_one_pool():
    for asset in defs.assets:
        if asset.key != dg.AssetKey("raw_gateway_logs"):  # lands files, never opens the warehouse
            assert asset.op.pool == "duckdb_warehouse", asset.key
