import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from usage_jobs.definitions import build_definitions
from usage_jobs.settings import load_settings

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(load_settings({"USAGE_START_DATE": "2026-01-01"}))


def test_definitions_load_with_every_asset_job_schedule_and_sensor(defs):
    repository = defs.get_repository_def()
    assert {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()} == {
        "raw_gateway_logs", "gateway_requests", "daily_usage", "gateway_completeness", "key_inventory", "usage_report_site",
        "billed_usage", "billing_reconciliation", "billing_chargeback", "commit_status", "key_anomalies"}
    for job in ("daily_usage_job", "refresh_sources_job", "site_job"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_job_def("daily_usage_job").partitions_def.start.date().isoformat() == "2026-01-01"


def test_schedule_and_sensors_run_by_default(defs):
    schedule = defs.resolve_schedule_def("daily_usage_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "15 1 * * *"
    for name in ("rebuild_site_after_daily_run", "rebuild_site_after_failed_run", "freshness_checks_sensor"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def test_every_asset_and_check_that_opens_the_warehouse_shares_one_pool(defs):
    for node in defs.assets:  # assets and the checks that read the warehouse
        if node.node_def.name != "raw_gateway_logs":  # lands files, never opens the warehouse
            assert node.node_def.pool == "duckdb_warehouse", node.node_def.name


@pytest.mark.parametrize("asset, checks", [
    ("gateway_requests", {"rejected_share_below_limit", "requests_unique", "no_unrecognised_files_with_data"}),
    ("daily_usage", {"aggregates_match_requests", "freshness_check"}),
    ("billing_reconciliation", {"billing_arrived", "variance_within_threshold"}),
])
def test_checks_are_asset_checks_of_their_asset_in_the_daily_job(defs, asset, checks):
    job = defs.resolve_job_def("daily_usage_job")
    in_job = {key.name for key in job.asset_layer.asset_graph.asset_check_keys if key.asset_key == dg.AssetKey(asset)}
    assert in_job == checks - {"freshness_check"}  # the freshness checks are run by their sensor
    declared = {key.name for key in defs.get_repository_def().asset_graph.asset_check_keys if key.asset_key == dg.AssetKey(asset)}
    assert declared == checks


@pytest.mark.parametrize("asset, reads", [
    ("key_anomalies", {"daily_usage", "key_inventory"}),
    ("commit_status", {"billed_usage"}),
    ("billing_reconciliation", {"billed_usage", "gateway_requests"}),
    ("usage_report_site", {"daily_usage", "key_anomalies", "key_inventory", "commit_status", "billing_reconciliation", "billing_chargeback"}),
])
def test_assets_declare_the_tables_they_read(defs, asset, reads):
    graph = defs.get_repository_def().asset_graph
    assert {key.to_user_string() for key in graph.get(dg.AssetKey(asset)).parent_keys} == reads


@pytest.mark.parametrize("asset, retried", [
    ("raw_gateway_logs", True), ("billed_usage", True), ("key_inventory", True), ("commit_status", True), ("gateway_completeness", True),
    ("gateway_requests", False), ("usage_report_site", False),
])
def test_network_bound_assets_retry(defs, asset, retried):
    policy = defs.resolve_assets_def(asset).op.retry_policy
    assert (policy is not None and policy.max_retries > 0) == retried


def test_yesterdays_partition_has_a_freshness_check_by_the_configured_hour():
    defs = build_definitions(load_settings({"USAGE_FRESHNESS_DEADLINE": "07:30", "USAGE_TIMEZONE": "Europe/Paris"}))
    checks = {key.asset_key.to_user_string() for check in defs.asset_checks for key in check.check_keys}
    assert checks == {"daily_usage", "key_anomalies"}
    (check,) = [c for c in defs.asset_checks if any(k.asset_key.to_user_string() == "daily_usage" for k in c.check_keys)]
    spec = next(iter(check.check_specs))
    assert spec.metadata["dagster/freshness_params"].value["deadline_cron"] == "30 7 * * *"
    assert spec.metadata["dagster/freshness_params"].value["timezone"] == "Europe/Paris"


def _bare_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith(("USAGE_", "IG1_", "GATEWAY_", "DAGSTER_"))}


def test_dg_check_defs_passes_with_no_settings_in_the_environment():
    dg_cli = Path(sys.executable).parent / "dg"
    done = subprocess.run([str(dg_cli), "check", "defs"], cwd=ROOT, env=_bare_environment(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr


def test_importing_the_code_reads_no_setting():
    # A bad setting in the environment: reading it at import would fail.
    code = "import usage_jobs.definitions, usage_jobs.cli, usage_jobs.defs.partitions; print('imported')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_bare_environment() | {"USAGE_TIMEZONE": "Mars/Base"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr
