"""`usage-report run` as a data engineer uses it."""

import datetime as dt
import json

import dagster as dg
import pytest

from conftest import DEMO_END
from usage_jobs import cli

ONE_RECORD = {"id": "ok", "startTime": "2026-11-10 10:00:00.0", "model_group": "bge-m3", "prompt_tokens": 3, "completion_tokens": 0}


def test_run_reports_progress_and_builds_the_site(cli_env, capsys):
    assert cli.main(["run", "--start", str(DEMO_END - dt.timedelta(days=1)), "--end", str(DEMO_END)]) == 0
    out = capsys.readouterr().out
    assert f"[1/2] {DEMO_END - dt.timedelta(days=1)}" in out and f"[2/2] {DEMO_END}" in out and "2/2 days ingested" in out
    assert (cli_env / "site" / "index.html").exists()
    assert "telemetry:\n  enabled: false" in (cli_env / "dagster_home" / "dagster.yaml").read_text()
    # The defined jobs ran on the instance in DAGSTER_HOME: what `dagster dev` shows.
    with dg.DagsterInstance.from_config(str(cli_env / "dagster_home")) as instance:
        runs = [(run.job_name, run.tags.get("dagster/asset_partition_range_start"), run.tags.get("dagster/asset_partition_range_end"), run.status)
                for run in reversed(instance.get_runs())]
    # The two days in one run (a single-run backfill), then the sources' refresh and the site.
    assert runs == [("daily_usage_job", str(DEMO_END - dt.timedelta(days=1)), str(DEMO_END), dg.DagsterRunStatus.SUCCESS),
                    ("refresh_sources_job", None, None, dg.DagsterRunStatus.SUCCESS), ("site_job", None, None, dg.DagsterRunStatus.SUCCESS)]


def test_run_exits_non_zero_naming_the_failed_day(cli_env, capsys):
    assert cli.main(["run", "--start", str(DEMO_END), "--end", str(DEMO_END + dt.timedelta(days=2)), "--no-site"]) == 1
    out = capsys.readouterr().out
    missing = DEMO_END + dt.timedelta(days=2)
    assert f"FAILED: No gateway logs for {missing}: no folder named {missing}" in out
    # The days run together failed: each one ran again on its own, the good ones stored, the bad one named.
    assert "The 3 days run together failed: each one is run again on its own" in out
    assert f"[1/3] {DEMO_END}  " in out and f"[3/3] {missing}  FAILED: No gateway logs" in out and "1/3 days ingested" in out
    assert "Traceback" not in out


def test_blocking_check_fails_the_day_when_too_many_records_are_rejected(cli_env, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "bad-logs" / "gcs" / "2026-11-10"
    folder.mkdir(parents=True)
    (folder / "b.ndjson").write_text("not json\n" * 5 + json.dumps(ONE_RECORD) + "\n")
    monkeypatch.setenv("USAGE_LOGS_DIR", str(tmp_path / "bad-logs"))
    assert cli.main(["run", "--start", "2026-11-10", "--end", "2026-11-10", "--no-site"]) == 1
    assert "check rejected_share_below_limit failed" in capsys.readouterr().out


def test_configuration_error_names_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("USAGE_TIMEZONE", "Nowhere/City")
    assert cli.main(["check-config"]) == 2
    assert "USAGE_TIMEZONE='Nowhere/City'" in capsys.readouterr().err


@pytest.mark.parametrize("days_ahead", [0, 3])
def test_run_for_a_day_not_over_yet_names_the_last_complete_day(cli_env, capsys, days_ahead):
    today = dt.datetime.now(dt.UTC).date()
    day = today + dt.timedelta(days=days_ahead)
    assert cli.main(["run", "--start", str(today - dt.timedelta(days=1)), "--end", str(day)]) == 2
    err = capsys.readouterr().err
    assert f"{day} is not over yet in UTC: the last complete day is {today - dt.timedelta(days=1)}" in err
    assert "Traceback" not in err


def test_run_names_a_file_that_is_not_a_request_log_and_warns(cli_env, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "logs2" / "2026-11-10"
    folder.mkdir(parents=True)
    (folder / "b.ndjson").write_text(json.dumps(ONE_RECORD) + "\n")
    (folder / "spend-export.csv").write_text("request_id,spend\nx,1\n")
    monkeypatch.setenv("USAGE_LOGS_DIR", str(tmp_path / "logs2"))
    assert cli.main(["run", "--start", "2026-11-10", "--end", "2026-11-10", "--no-site"]) == 0
    out = capsys.readouterr().out
    assert "not a request log (holds data!): 2026-11-10/spend-export.csv (21 bytes)" in out
    assert ("warning: check no_unrecognised_files_with_data warns: 1 file(s) under the logs root are not request logs but hold data: "
            "2026-11-10/spend-export.csv (21 bytes, on 2026-11-10)") in out


def test_a_runs_recorded_origin_holds_the_settings_but_no_secret(tmp_path):
    environ = {"USAGE_LOGS_DIR": str(tmp_path), "IG1_MASTER_KEY": "ig1-SECRET", "GATEWAY_BASE_URL": "http://127.0.0.1:4000",
               "GATEWAY_ADMIN_KEY": "sk-SECRET", "USAGE_ADMIN_TOKENS": "token-SECRET", "PATH": "/bin"}
    arguments = cli.Session(environ, "run").job_arguments
    assert arguments["settings_env"] == {"USAGE_LOGS_DIR": str(tmp_path), "GATEWAY_BASE_URL": "http://127.0.0.1:4000"}
    assert "SECRET" not in str(arguments)
