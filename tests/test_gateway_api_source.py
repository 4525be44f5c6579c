"""The gateway's API as the only way to the logs: /spend/logs/v2 landed, ingested and checked
against the gateway's own daily totals, through real Dagster runs and a fake LiteLLM gateway."""

import datetime as dt

import dagster as dg
import pytest

from fake_gateway import FakeGateway, day_of_traffic, spend_log_row
from usage_jobs import warehouse
from usage_jobs.definitions import GATEWAY_ASSETS, build_resources, partitioned
from usage_jobs.settings import load_settings

ADMIN_KEY = "sk-admin-API-SOURCE-5d2f"
DAY, NEXT = dt.date(2026, 11, 10), dt.date(2026, 11, 11)
KEY_A, KEY_B = "a1" * 32, "b2" * 32


def _traffic() -> tuple[list[dict], set[str]]:
    rows = day_of_traffic(DAY, {(KEY_A, "qwen35-35b-a3b-instruct"): 1300, (KEY_B, "bge-m3"): 400})
    rows += day_of_traffic(NEXT, {(KEY_A, "qwen35-35b-a3b-instruct"): 60}, prefix="next")
    # Exactly at midnight: both days' API windows include it; it belongs to the next day only.
    rows.append(spend_log_row("at-midnight", dt.datetime.combine(NEXT, dt.time(), dt.UTC), api_key=KEY_B, model_group="bge-m3"))
    # Requests the gateway counted in its daily totals whose log rows are gone.
    lost = {row["request_id"] for row in rows if row["api_key"] == KEY_B and row["startTime"].date() == DAY}
    return rows, set(sorted(lost)[:3])


@pytest.fixture
def gateway():
    rows, lost = _traffic()
    with FakeGateway(ADMIN_KEY, rows, missing_from_logs=lost) as server:
        server.rows, server.lost = rows, lost
        yield server


def test_api_source_lands_ingests_and_names_what_the_logs_miss(gateway, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", ADMIN_KEY)
    settings = load_settings({"USAGE_LOGS_SOURCE": "gateway-api", "GATEWAY_BASE_URL": gateway.url, "GATEWAY_ADMIN_KEY": ADMIN_KEY,
                              "USAGE_LANDING_DIR": str(tmp_path / "landing"), "USAGE_WAREHOUSE": str(tmp_path / "w.duckdb"),
                              "USAGE_SITE_DIR": str(tmp_path / "site"), "USAGE_START_DATE": "2026-11-01"})
    instance = dg.DagsterInstance.ephemeral()
    results = [dg.materialize(partitioned(GATEWAY_ASSETS, settings), partition_key=day.isoformat(), resources=build_resources(settings), instance=instance)
               for day in (DAY, NEXT)]
    assert all(result.success for result in results)

    served = [row for row in gateway.rows if row["request_id"] not in gateway.lost]
    expected = {day: sorted(r["request_id"] for r in served if r["startTime"].date() == day) for day in (DAY, NEXT)}
    with warehouse.session(settings.warehouse, read_only=True) as conn:
        for day in (DAY, NEXT):
            assert sorted(r[0] for r in conn.execute("SELECT request_id FROM requests WHERE day = ?", [day]).fetchall()) == expected[day]
            read, stored, rejected, duplicates = conn.execute(
                "SELECT records_read, rows, rejected, duplicates FROM ingest_days WHERE day = ?", [day]).fetchone()
            assert (read, stored, rejected, duplicates) == (len(expected[day]), len(expected[day]), 0, 0)
        assert conn.execute("SELECT day FROM requests WHERE request_id = 'at-midnight'").fetchall() == [(NEXT,)]

    check = [e for e in results[0].get_asset_check_evaluations() if e.check_name == "logs_complete"][0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "bge-m3" in check.description and KEY_B[:8] in check.description
    landed = results[0].asset_materializations_for_node("raw_gateway_logs")[0].metadata
    assert landed["objects fetched"].value == 2  # 1,701 rows at 1,000 a page
    assert ADMIN_KEY not in str(landed) and ADMIN_KEY not in check.description

    # The data-quality view shows the comparison: the key, the model and both counts.
    from usage_jobs.defs.report.build import build_site

    with warehouse.session(settings.warehouse) as conn:
        build_site(conn, tmp_path / "site", timezone="UTC", billing_configured=False)
    page = (tmp_path / "site" / "periods" / DAY.isoformat() / "quality.html").read_text()
    gateway_count = sum(1 for r in gateway.rows if r["api_key"] == KEY_B and r["startTime"].date() == DAY)
    assert f"<code>{KEY_B[:12]}</code></td><td><bdi>bge-m3</bdi></td>" in page and "missing requests" in page
    assert f'<td class="num">{gateway_count:,}</td><td class="num">{gateway_count - 3:,}</td>' in page
