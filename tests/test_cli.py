"""`usage-report run` as a data engineer uses it."""

import datetime as dt
import json

import pytest

from conftest import DEMO_END
from usage_jobs import cli


@pytest.fixture
def env(demo_org, tmp_path, monkeypatch):
    monkeypatch.setenv("USAGE_LOGS_DIR", str(demo_org / "logs"))
    monkeypatch.setenv("USAGE_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("USAGE_SITE_DIR", str(tmp_path / "site"))
    monkeypatch.setenv("USAGE_INVENTORY_FILE", str(demo_org / "inventory.json"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path


def test_run_reports_progress_and_builds_the_site(env, capsys):
    assert cli.main(["run", "--start", str(DEMO_END - dt.timedelta(days=1)), "--end", str(DEMO_END)]) == 0
    out = capsys.readouterr().out
    assert f"[1/2] {DEMO_END - dt.timedelta(days=1)}" in out and f"[2/2] {DEMO_END}" in out and "2/2 days ingested" in out
    assert (env / "site" / "index.html").exists()
    assert "telemetry:\n  enabled: false" in (env / "dagster_home" / "dagster.yaml").read_text()


def test_run_exits_non_zero_naming_the_failed_day(env, capsys):
    assert cli.main(["run", "--start", str(DEMO_END), "--end", str(DEMO_END + dt.timedelta(days=2)), "--no-site"]) == 1
    out = capsys.readouterr().out
    missing = DEMO_END + dt.timedelta(days=2)
    assert f"FAILED: No gateway logs for {missing}: no folder named {missing}" in out
    assert "Traceback" not in out


def test_blocking_check_fails_the_day_when_too_many_records_are_rejected(env, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "bad-logs" / "gcs" / "2026-11-10"
    folder.mkdir(parents=True)
    (folder / "b.ndjson").write_text("not json\n" * 5 + json.dumps({"id": "ok", "startTime": "2026-11-10 10:00:00.0", "model_group": "bge-m3", "prompt_tokens": 3, "completion_tokens": 0}) + "\n")
    monkeypatch.setenv("USAGE_LOGS_DIR", str(tmp_path / "bad-logs"))
    assert cli.main(["run", "--start", "2026-11-10", "--end", "2026-11-10", "--no-site"]) == 1
    assert "check rejected_share_below_limit failed" in capsys.readouterr().out


def test_configuration_error_names_the_setting(monkeypatch, capsys):
    monkeypatch.setenv("USAGE_TIMEZONE", "Nowhere/City")
    assert cli.main(["check-config"]) == 2
    assert "USAGE_TIMEZONE='Nowhere/City'" in capsys.readouterr().err
