"""A small generated organisation through real Dagster materialisations into a real DuckDB file."""

import csv
import datetime as dt
import hashlib
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import DEMO_DAYS, DEMO_END, read_all_records
from usage_jobs.definitions import DAILY_ASSETS, SITE_ASSETS, build_resources, partitioned
from usage_jobs.settings import load_settings

DAYS = [DEMO_END - dt.timedelta(days=i) for i in range(DEMO_DAYS - 1, -1, -1)]


def _settings(demo_org: Path, tmp_path: Path):
    return load_settings({
        "USAGE_LOGS_DIR": str(demo_org / "logs"), "USAGE_WAREHOUSE": str(tmp_path / "usage.duckdb"),
        "USAGE_SITE_DIR": str(tmp_path / "site"), "USAGE_INVENTORY_FILE": str(demo_org / "inventory.json"),
        "USAGE_START_DATE": "2026-01-01",
    })


def _materialise(settings, days):
    instance = dg.DagsterInstance.ephemeral()
    resources = build_resources(settings)
    for day in days:
        result = dg.materialize(partitioned(DAILY_ASSETS, settings), partition_key=day.isoformat(), resources=resources, instance=instance)
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
    assert dg.materialize(SITE_ASSETS, resources=resources, instance=instance).success
    return instance


def _expected_by_day(demo_org: Path) -> dict[str, dict]:
    """Totals computed here from the raw files, without the product's reader."""
    seen = set()
    totals: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for record in read_all_records(demo_org / "logs"):
        request_id = record.get("id") or record.get("request_id")
        if request_id in seen:
            continue
        seen.add(request_id)
        start = record["startTime"]
        if isinstance(start, (int, float)):
            day = dt.datetime.fromtimestamp(start, dt.UTC).date().isoformat()
        else:
            day = start[:10]
        day_totals = totals[day]
        day_totals["requests"] += 1
        day_totals["failed_requests" if record["status"] == "failure" else "successful_requests"] += 1
        if record.get("prompt_tokens") is not None:
            day_totals["logged_input_tokens"] += record["prompt_tokens"]
            day_totals["logged_output_tokens"] += record["completion_tokens"]
        cost = record.get("response_cost", record.get("spend"))
        if cost:
            day_totals["logged_spend"] += Decimal(str(cost))
    return totals


@pytest.fixture(scope="module")
def built(demo_org, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("e2e")
    settings = _settings(demo_org, tmp_path)
    _materialise(settings, DAYS)
    return settings


def test_warehouse_matches_totals_computed_from_the_raw_files(built, demo_org):
    expected = _expected_by_day(demo_org)
    conn = duckdb.connect(str(built.warehouse), read_only=True)
    for day in DAYS:
        key = day.isoformat()
        requests, successful, failed, logged_in, logged_out, logged_spend = conn.execute(
            "SELECT count(*), count(*) FILTER (status = 'success'), count(*) FILTER (status = 'failure'), "
            "coalesce(sum(input_tokens) FILTER (NOT tokens_estimated), 0), coalesce(sum(output_tokens) FILTER (NOT tokens_estimated), 0), "
            "coalesce(sum(spend_usd) FILTER (NOT spend_repriced AND NOT unpriced), 0) FROM requests WHERE day = ?", [key]).fetchone()
        assert (requests, successful, failed) == (expected[key]["requests"], expected[key]["successful_requests"], expected[key]["failed_requests"])
        assert (logged_in, logged_out) == (expected[key]["logged_input_tokens"], expected[key]["logged_output_tokens"])
        assert logged_spend == pytest.approx(expected[key]["logged_spend"], abs=Decimal("0.000001"))
        # Aggregates add up to the request-level totals.
        assert conn.execute("SELECT sum(requests), sum(total_tokens), sum(spend_usd) FROM daily_usage WHERE day = ?", [key]).fetchone() == \
            conn.execute("SELECT count(*), sum(total_tokens), sum(spend_usd) FROM requests WHERE day = ?", [key]).fetchone()
    duplicates = conn.execute("SELECT sum(duplicates) FROM ingest_days").fetchone()[0]
    assert duplicates > 0  # the generator delivers some requests twice; they are stored once
    assert conn.execute("SELECT count(*) - count(DISTINCT request_id) FROM requests").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM inventory_keys").fetchone()[0] == 60


def test_daily_export_matches_the_warehouse(built):
    site = built.site_dir
    conn = duckdb.connect(str(built.warehouse), read_only=True)
    for day in DAYS:
        rows = list(csv.DictReader((site / "periods" / day.isoformat() / "exports" / "daily.csv").open(encoding="utf-8")))
        assert len(rows) == 1
        requests, tokens, spend = conn.execute("SELECT count(*), sum(total_tokens), sum(spend_usd) FROM requests WHERE day = ?", [day.isoformat()]).fetchone()
        assert (int(rows[0]["requests"]), int(rows[0]["total_tokens"])) == (requests, tokens)
        assert Decimal(rows[0]["spend_usd"]) == spend.quantize(Decimal("0.000001"))
    week = json.loads((site / "periods" / "last-7-days" / "exports" / "daily.json").read_text())
    assert [r["date"] for r in week["data"]] == [(DEMO_END - dt.timedelta(days=i)).isoformat() for i in range(6, -1, -1)]
    csv_rows = list(csv.DictReader((site / "periods" / "last-7-days" / "exports" / "daily.csv").open()))
    assert [int(r["requests"]) for r in csv_rows] == [r["requests"] for r in week["data"]]
    assert week["metadata"]["missing_days"] == [(DEMO_END - dt.timedelta(days=i)).isoformat() for i in range(6, DEMO_DAYS - 1, -1)]
    index = (site / "index.html").read_text()
    assert "Last 7 days" in index and "Top keys" in index and "Breakdown by model" in index and "UTC" in index
    assert "http://" not in index and "https://" not in index


def test_rerunning_a_day_gives_identical_rows_and_byte_identical_exports(built):
    def snapshot():
        conn = duckdb.connect(str(built.warehouse), read_only=True)
        rows = conn.execute("SELECT * FROM requests ORDER BY request_id").fetchall()
        aggregates = conn.execute("SELECT * FROM daily_usage ORDER BY ALL").fetchall()
        rejected = conn.execute("SELECT * FROM rejected_records ORDER BY ALL").fetchall()
        conn.close()
        exports = {p.relative_to(built.site_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in sorted(built.site_dir.rglob("exports/*")) if p.name != "manifest.json"}
        return rows, aggregates, rejected, exports

    before = snapshot()
    _materialise(built, DAYS[-1:])
    after = snapshot()
    assert before[0] == after[0] and before[1] == after[1] and before[2] == after[2]
    assert before[3] == after[3] and before[3]


def test_without_billing_settings_everything_runs_and_the_report_says_billing_is_missing(built):
    site = built.site_dir
    assert "IG1 billing is not configured (IG1_MASTER_KEY)" in (site / "index.html").read_text()
    assert not (site / "periods" / "last-7-days" / "reconciliation.html").exists()
    reconciliation = json.loads((site / "periods" / "last-7-days" / "exports" / "reconciliation.json").read_text())
    assert reconciliation["data"] == [] and reconciliation["metadata"]["billed_currency"] is None
    teams = list(csv.DictReader((site / "periods" / "last-7-days" / "exports" / "teams.csv").open(encoding="utf-8")))
    assert teams and all(t["billed_cost_allocated"] == "" for t in teams)
    conn = duckdb.connect(str(built.warehouse), read_only=True)
    assert conn.execute("SELECT count(*) FROM billed_usage").fetchone()[0] == 0
    assert sum(int(t["requests"]) for t in teams) == conn.execute(
        "SELECT count(*) FROM requests WHERE day BETWEEN ? AND ?", [DAYS[0], DAYS[-1]]).fetchone()[0]
